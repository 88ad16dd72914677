#!/usr/bin/env bash
# One reply streamed by each agent SDK into one `agentwire dev` (release, SQLite, loopback),
# same arguments: tokens per second it sustains unpaced, and the agent process's CPU per
# token unpaced and paced at model-like rates. Default coalescing (100 ms, 8 KiB) in both.
#
#   bash tests/bench/sdk.sh [--tokens 200000]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tokens=200000
[[ "${1:-}" == "--tokens" ]] && tokens="$2"

cargo build --release --locked -p agentwire -p agentwire-bench
venv=target/python-sdk-venv
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check httpx==0.29.0 hatchling==1.33.0
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall ./clients/python

data="$(mktemp -d)"
source tests/services.sh
trap 'kill ${server:-} 2>/dev/null || true; rm -rf "$data"' EXIT
port="$(free_port)"
target/release/agentwire dev --listen "127.0.0.1:$port" --data-dir "$data/agentwire" \
  --insecure --no-demo-agent >"$data/agentwire.log" 2>&1 &
server=$!
url="http://127.0.0.1:$port"
wait_up "$url/healthz" agentwire "$data/agentwire.log"

run() { # run NAME TOKENS RATE
  local n=$((RANDOM))
  case "$1" in
    rust) target/release/reply-bench --url "$url" --tokens "$2" --rate "$3" --session "bench-rs-$n" ;;
    python) "$venv/bin/python" clients/python/bench/reply_bench.py --url "$url" --tokens "$2" --rate "$3" --session "bench-py-$n" ;;
  esac
}
{
  for sdk in rust python; do run $sdk "$tokens" 0; done
  for rate in 50 1000; do
    for sdk in rust python; do run $sdk $((rate * 5)) "$rate"; done # 5 s each
  done
} >"$data/results.jsonl"
python3 - "$data/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'sdk':<8}{'tokens':>9}{'paced at':>10}{'tokens/s':>12}{'CPU s':>8}{'CPU µs/token':>14}{'appends':>9}{'CPU % of a core':>17}")
for r in rows:
    pace = f"{r['rate']}/s" if r["rate"] else "unpaced"
    share = 100 * r["cpu_s"] / r["seconds"]
    print(f"{r['sdk']:<8}{r['tokens']:>9}{pace:>10}{r['tokens_per_s']:>12,.0f}{r['cpu_s']:>8.2f}{r['cpu_us_per_token']:>14.2f}{r['appends']:>9}{share:>16.1f}%")
PY
