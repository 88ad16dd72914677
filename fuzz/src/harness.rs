//! The harness every target runs in: a counting global allocator with a per-input bound, a
//! panic flag that also sees panics on other threads (tokio tasks, the SQLite writer), a
//! per-input time bound, and the stable engine (seed corpus plus random mutations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Heap growth one input may cause, at most: this constant plus [`ALLOC_PER_INPUT_BYTE`]
/// times the input's length. Peaks above it fail the input as an unbounded allocation.
pub const ALLOC_BASE_BYTES: usize = 32 << 20;
/// Heap growth allowed per byte of input, on top of [`ALLOC_BASE_BYTES`].
pub const ALLOC_PER_INPUT_BYTE: usize = 64;
/// Wall time one input may take before it fails as a hang.
pub const INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest input the stable engine generates (libFuzzer uses its own `-max_len`).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Counts live heap bytes and their peak, for every thread.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `p` came from this allocator with `layout`, as the caller guarantees.
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc` and `alloc`.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grow(new_size);
        }
        q
    }
}

fn grow(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Set by the panic hook: a panic anywhere (a spawned task, a blocking thread) fails the
/// input that was running, not only one that reaches the target's own thread.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// One input at a time: the allocation counters are process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

thread_local! {
    /// Inside [`upstream`]: a panic there is a known third-party bug, not a failure.
    static UPSTREAM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if UPSTREAM.with(|u| u.get()) {
                return;
            }
            PANICKED.store(true, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Runs third-party code with a known, reported panic on some inputs (see fuzz/README.md,
/// "Findings"): `None` when it panicked, so the target skips the input and fuzzing goes on
/// past it. Only for code outside this workspace; ours must never panic.
pub fn upstream<T>(f: impl FnOnce() -> T) -> Option<T> {
    UPSTREAM.with(|u| u.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    UPSTREAM.with(|u| u.set(false));
    outcome.ok()
}

/// One target's input handler, with whatever state it keeps across inputs.
pub type Runner = Box<dyn FnMut(&[u8]) + Send>;

/// A fuzz target: a name (its corpus folder) and how to build its runner. The runner keeps
/// whatever state the target needs (a runtime, a SQLite log in a temporary folder) across
/// inputs; it must not panic, allocate without bound, or hang on any input.
pub struct Target {
    pub name: &'static str,
    /// Byte strings the mutator likes to insert: tokens of the format under test.
    pub dictionary: &'static [&'static str],
    pub make: fn() -> Runner,
}

/// Why one input failed.
#[derive(Debug)]
pub enum Failure {
    Panic,
    Allocation { peak: usize, bound: usize },
    Hang(Duration),
}

/// The allocation bound for an input of `len` bytes.
pub fn alloc_bound(len: usize) -> usize {
    ALLOC_BASE_BYTES.saturating_add(ALLOC_PER_INPUT_BYTE.saturating_mul(len))
}

/// Runs one input under the harness's checks; returns the peak heap growth it caused.
pub fn check(runner: &mut (dyn FnMut(&[u8]) + Send), input: &[u8]) -> Result<usize, Failure> {
    install_panic_hook();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    PANICKED.store(false, Ordering::SeqCst);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| runner(input)));
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    if outcome.is_err() || PANICKED.load(Ordering::SeqCst) {
        return Err(Failure::Panic);
    }
    let bound = alloc_bound(input.len());
    if peak > bound {
        return Err(Failure::Allocation { peak, bound });
    }
    if elapsed > INPUT_TIMEOUT {
        return Err(Failure::Hang(elapsed));
    }
    Ok(peak)
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed seed inputs of `target`: every file in `fuzz/corpus/<target>/`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    seeds.sort();
    seeds
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?}: expected a whole number"),
    }
}

/// Writes a failing input under `fuzz/artifacts/<target>/` and panics with how to replay it.
fn report(target: &str, input: &[u8], failure: Failure) -> ! {
    let dir = fuzz_dir().join("artifacts").join(target);
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let path = dir.join(format!("failure-{hash:016x}"));
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, input))
        .map(|()| path.display().to_string())
        .unwrap_or_else(|e| format!("(not saved: {e})"));
    let shown: String = input
        .iter()
        .take(2048)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    panic!(
        "fuzz target `{target}` failed: {failure:?}\ninput ({} bytes): b\"{shown}\"\nsaved to {saved}\n\
         replay: AGENTWIRE_FUZZ_INPUT={saved} cargo test -p agentwire-fuzz --test fuzz {target} -- --ignored --exact",
        input.len()
    );
}

/// The stable engine, for `cargo test`: replays the seeds, then mutates them until the time
/// bound. `AGENTWIRE_FUZZ_SECONDS` (default 6) bounds each target's run,
/// `AGENTWIRE_FUZZ_CASES` optionally bounds its inputs, `AGENTWIRE_FUZZ_SEED` fixes the
/// random sequence (printed on every run), and `AGENTWIRE_FUZZ_INPUT=<file or folder>`
/// replays one input (or a folder's, in name order, through one runner) instead.
pub fn run(target: &Target) {
    let mut runner = (target.make)();
    if let Ok(path) = std::env::var("AGENTWIRE_FUZZ_INPUT") {
        // A folder replays its files in name order through one runner: a sequence of
        // requests against the same log.
        let path = Path::new(&path);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(dir) => dir.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![path.to_owned()],
        };
        files.sort();
        for file in files {
            let input = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("AGENTWIRE_FUZZ_INPUT={}: {e}", file.display()));
            match check(runner.as_mut(), &input) {
                Ok(peak) => eprintln!(
                    "{}: {} passes (peak heap growth {peak} bytes)",
                    target.name,
                    file.display()
                ),
                Err(failure) => report(target.name, &input, failure),
            }
        }
        return;
    }
    let seconds = env_u64("AGENTWIRE_FUZZ_SECONDS").unwrap_or(6);
    let max_cases = env_u64("AGENTWIRE_FUZZ_CASES").unwrap_or(u64::MAX);
    let seed = env_u64("AGENTWIRE_FUZZ_SEED").unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let seeds = seeds(target.name);
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/{} has no seed inputs",
        target.name
    );
    let mut max_peak = (0, 0);
    for (_, input) in &seeds {
        match check(runner.as_mut(), input) {
            Ok(peak) => max_peak = max_peak.max((peak, input.len())),
            Err(failure) => report(target.name, input, failure),
        }
    }
    // Seeds stay; mutants drift through a small pool so mutations can stack over inputs.
    let mut pool: Vec<Vec<u8>> = seeds.into_iter().map(|(_, b)| b).collect();
    let fixed = pool.len();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut cases = 0u64;
    while Instant::now() < deadline && cases < max_cases {
        let mut input = pool[rng.usize(..pool.len())].clone();
        let other = pool[rng.usize(..pool.len())].clone();
        crate::mutate::mutate(&mut rng, &mut input, &other, target.dictionary);
        match check(runner.as_mut(), &input) {
            Ok(peak) => max_peak = max_peak.max((peak, input.len())),
            Err(failure) => report(target.name, &input, failure),
        }
        if rng.u8(..8) == 0 {
            if pool.len() < fixed + 256 {
                pool.push(input);
            } else {
                let slot = fixed + rng.usize(..256);
                pool[slot] = input;
            }
        }
        cases += 1;
    }
    eprintln!(
        "{}: {} seeds and {cases} mutated inputs passed in {seconds} s (AGENTWIRE_FUZZ_SEED={seed}); \
         largest heap growth {} bytes, for an input of {} bytes",
        target.name, fixed, max_peak.0, max_peak.1
    );
}
