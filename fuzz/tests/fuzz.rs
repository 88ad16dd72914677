//! The stable fuzz run: every target on its seed corpus, then mutated inputs for
//! `AGENTWIRE_FUZZ_SECONDS` (default 6) each. Ignored by default so `cargo test --workspace`
//! stays quick; `tests/run-all.sh` runs them with `-- --ignored`.

use agentwire_fuzz::{harness, target};

fn run(name: &str) {
    harness::run(target(name).expect("a known target"));
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn offset() {
    run("offset");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn headers() {
    run("headers");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn content() {
    run("content");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn fork() {
    run("fork");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn token() {
    run("token");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn ws_message() {
    run("ws_message");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn ws_event() {
    run("ws_event");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn http_router() {
    run("http_router");
}

#[test]
#[ignore = "fuzzing: run with -- --ignored (tests/run-all.sh does)"]
fn http_event() {
    run("http_event");
}

/// Not ignored: the harness itself must catch what it promises to, or every target's run
/// proves nothing.
#[test]
fn the_harness_fails_panics_huge_allocations_and_panics_on_other_threads() {
    let mut panics = |data: &[u8]| assert!(data.is_empty(), "boom");
    assert!(harness::check(&mut panics, b"").is_ok());
    assert!(matches!(
        harness::check(&mut panics, b"x"),
        Err(harness::Failure::Panic)
    ));
    let mut hoards = |data: &[u8]| {
        let v = vec![1u8; harness::alloc_bound(data.len()) + 1];
        std::hint::black_box(&v);
    };
    assert!(matches!(
        harness::check(&mut hoards, b"abc"),
        Err(harness::Failure::Allocation { .. })
    ));
    let mut elsewhere = |_: &[u8]| {
        let _ = std::thread::spawn(|| panic!("in a task")).join();
    };
    assert!(matches!(
        harness::check(&mut elsewhere, b""),
        Err(harness::Failure::Panic)
    ));
    for target in agentwire_fuzz::TARGETS {
        assert!(
            !harness::seeds(target.name).is_empty(),
            "{} has seeds",
            target.name
        );
    }
}
