#!/usr/bin/env bash
# Every test: the Rust workspace (unit, contract, HTTP and end-to-end tests), then the
# Durable Streams conformance suite against a fresh `agentwire dev`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo test --workspace --locked

conformance="$root/tests/conformance"
if [ ! -d "$conformance/node_modules/@durable-streams/server-conformance-tests" ]; then
  npm ci --prefix "$conformance" --no-audit --no-fund
fi

data="$(mktemp -d)"
out="$(mktemp)"
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
  rm -rf "$data" "$out"
}
trap cleanup EXIT

# The suite gives each test 5 s, and two of them wait for a long-poll to time out at the
# tail, so the server under test answers idle long-polls after 1 s (the default is 20 s).
# The suite sends no tokens, so authentication is off for this run (--insecure).
"$root/target/debug/agentwire" dev --listen 127.0.0.1:0 --data-dir "$data" \
  --long-poll-timeout-ms 1000 --insecure >"$out" &
server=$!
for _ in $(seq 1 100); do
  url="$(sed -n 's/^agentwire dev listening on //p' "$out")"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "agentwire dev did not start" >&2; exit 1; }

echo "Durable Streams conformance suite against agentwire dev at $url"
report="$data/conformance.json"
status=0
(cd "$conformance" && CONFORMANCE_URL="$url" npx vitest run --reporter=default --reporter=json --outputFile="$report") || status=$?
node -e '
  const r = require(process.argv[1])
  console.log(`conformance: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`)
' "$report"
exit "$status"
