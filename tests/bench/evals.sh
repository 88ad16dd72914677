#!/usr/bin/env bash
# Eval throughput: items per second of an eval run of N items (default 1000) against the
# demo agent served by dispatch, beside the same questions posted straight into sessions
# (the agent path alone), in one run. Release builds, all on loopback.
#
#   bash tests/bench/evals.sh [eval-bench options, e.g. --items 1000 --concurrency 32]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

cargo build --release --locked -p agentwire -p agentwire-bench
data="$(mktemp -d)"
source tests/services.sh
pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

port="$(free_port)"
target/release/agentwire dev --listen "127.0.0.1:$port" --data-dir "$data/agentwire" \
  --insecure --no-demo-agent >"$data/agentwire.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$port"
wait_up "$url/healthz" agentwire "$data/agentwire.log"
# A fast demo agent (short replies, no pacing to speak of), one worker of one pool.
target/release/agentwire demo-agent --url "$url" --pattern 'bench-*' --pool bench \
  --concurrency 64 --tokens 20 --rate 100000 --linger-ms 5 >"$data/agent.log" 2>&1 &
pids+=($!)
sleep 1
target/release/eval-bench --url "$url" "$@"
