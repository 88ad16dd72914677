#!/usr/bin/env bash
# Fuzz every target (or those named) for a while: coverage-guided with libFuzzer when a
# nightly toolchain is there, else the stable engine. Usage:
#   bash fuzz/run.sh [--minutes N] [--stable] [TARGET...]
# --minutes is the whole run (default 30), shared evenly between the targets. Corpora grow
# in target/fuzz-corpus/<target>/ (seeded from fuzz/corpus/<target>/); failing inputs land
# in fuzz/artifacts/<target>/, each replayable with
#   AGENTWIRE_FUZZ_INPUT=<file> cargo test -p agentwire-fuzz --test fuzz <target> -- --ignored --exact
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

minutes=30
engine=auto
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
    --stable) engine=stable; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$minutes" in ''|*[!0-9]*) echo "--minutes takes a whole number, not '$minutes'" >&2; exit 2 ;; esac
[ ${#targets[@]} -gt 0 ] || targets=(offset headers content fork token ws_message ws_event http_router http_event)
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "unknown target '$t' (no fuzz/corpus/$t)" >&2; exit 2; }
done
seconds=$(( minutes * 60 / ${#targets[@]} ))
[ "$seconds" -gt 0 ] || seconds=1
if [ "$engine" = auto ]; then
  if rustup run nightly rustc --version >/dev/null 2>&1; then engine=libfuzzer; else engine=stable; fi
fi
echo "fuzzing ${targets[*]} for $seconds s each ($engine)"

if [ "$engine" = stable ]; then
  status=0
  for t in "${targets[@]}"; do
    AGENTWIRE_FUZZ_SECONDS=$seconds cargo test --locked -p agentwire-fuzz --test fuzz "$t" -- --ignored --exact --nocapture || status=1
  done
  exit "$status"
fi

# What cargo-fuzz does, without needing it: SanitizerCoverage for libFuzzer's feedback,
# in a target dir of its own (the flags rebuild every crate). Overflow checks and debug
# assertions stay on; unwinding too, so the harness sees panics.
export CARGO_TARGET_DIR="$root/target/fuzz-libfuzzer"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_PANIC=unwind CARGO_PROFILE_RELEASE_STRIP=none
# An explicit --target keeps the flags off build scripts and proc macros (as cargo-fuzz does).
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
cargo +nightly build --locked --release --target "$host" -p agentwire-fuzz --features libfuzzer \
  --bin agentwire-libfuzzer
bin="$CARGO_TARGET_DIR/$host/release/agentwire-libfuzzer"
status=0
for t in "${targets[@]}"; do
  corpus="$root/target/fuzz-corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "=== $t ($seconds s)"
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  # -rss_limit_mb backs the harness's own allocation bound, -timeout its hang bound; fork
  # mode goes on past a crash (a known one in the seeds must not end the run).
  AGENTWIRE_FUZZ_TARGET=$t "$bin" "$corpus" -max_total_time="$seconds" -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -artifact_prefix="fuzz/artifacts/$t/" || status=$?
  after=$(ls "fuzz/artifacts/$t" | wc -l)
  if [ "$after" -gt "$before" ]; then
    echo "!!! $t: $((after - before)) failing input(s) in fuzz/artifacts/$t/" >&2
    status=1
  fi
done
[ "$status" = 0 ] || echo "failures: replay each with AGENTWIRE_FUZZ_INPUT=<file> cargo test -p agentwire-fuzz --test fuzz <target> -- --ignored --exact" >&2
exit "$status"
