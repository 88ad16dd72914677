#!/usr/bin/env bash
# Every test: the Rust workspace (unit, contract, handler and end-to-end tests), the Durable
# Streams conformance suite against a fresh `agentwire dev`, the browser client's unit
# tests, and the demo chat in Chromium. Installs what is missing (npm packages; Debian's
# chromium when run as root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { echo; echo "=== $*"; }

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    step "installing Debian's chromium for the browser tests"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi
for dir in tests/conformance clients; do
  [ -d "$dir/node_modules" ] || npm ci --prefix "$dir" --no-audit --no-fund
done

step "Rust tests"
cargo test --workspace --locked

step "browser client: build, typecheck, unit tests"
npm run build --prefix clients
npm run typecheck --prefix clients
npm test --prefix clients

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
  --long-poll-timeout-ms 1000 --insecure --no-demo-agent >"$out" &
server=$!
for _ in $(seq 1 100); do
  url="$(sed -n 's/^agentwire dev listening on //p' "$out")"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "agentwire dev did not start" >&2; exit 1; }

step "Durable Streams conformance suite against agentwire dev at $url"
report="$data/conformance.json"
status=0
(cd tests/conformance && CONFORMANCE_URL="$url" npx vitest run --reporter=default --reporter=json --outputFile="$report") || status=$?
node -e '
  const r = require(process.argv[1])
  console.log(`conformance: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`)
' "$report"
[ "$status" = 0 ] || exit "$status"

step "demo chat in Chromium (screenshot: artifacts/demo-mid-reply.png)"
npm run test:browser --prefix clients
