//! The libFuzzer entry point (nightly, coverage-guided): `AGENTWIRE_FUZZ_TARGET` names the
//! target. Built and run by `fuzz/run.sh`; each input runs under the same harness checks
//! as the stable engine, so a panic, a huge allocation or a hang is a crash to libFuzzer.
#![no_main]

use std::sync::{Mutex, OnceLock};

use agentwire_fuzz::harness::{self, Runner};

fn runner() -> &'static Mutex<(&'static str, Runner)> {
    static RUNNER: OnceLock<Mutex<(&'static str, Runner)>> = OnceLock::new();
    RUNNER.get_or_init(|| {
        let name = std::env::var("AGENTWIRE_FUZZ_TARGET").unwrap_or_default();
        let Some(target) = agentwire_fuzz::target(&name) else {
            let names: Vec<_> = agentwire_fuzz::TARGETS.iter().map(|t| t.name).collect();
            eprintln!("AGENTWIRE_FUZZ_TARGET={name:?}: expected one of {names:?}");
            std::process::exit(2);
        };
        Mutex::new((target.name, (target.make)()))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut guard = runner().lock().unwrap_or_else(|p| p.into_inner());
    let (name, runner) = &mut *guard;
    if let Err(failure) = harness::check(runner.as_mut(), data) {
        panic!("fuzz target `{name}` failed: {failure:?}");
    }
});
