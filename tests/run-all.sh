#!/usr/bin/env bash
# Every test: the Rust workspace (unit, contract, handler and end-to-end tests; the AWS
# adapters against DynamoDB Local and moto's S3 server), the Durable Streams conformance
# suite against `agentwire dev` on SQLite and on the AWS adapters, the SAM template's
# offline checks, the browser client's unit tests, the demo chat and the grading page in
# Chromium, and the Python SDK (wheel, mypy --strict, pytest against agentwire dev).
# Installs what is missing (npm packages, Python venvs; Debian's chromium when run as
# root). DynamoDB Local runs on the machine's Java 17.
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
for dir in tests/conformance tests/dynamodb clients; do
  [ -d "$dir/node_modules" ] || npm ci --prefix "$dir" --no-audit --no-fund
done

data="$(mktemp -d)"
source tests/services.sh
# shellcheck disable=SC2086 # `server` is one pid or nothing
trap 'stop_services ${server:-}' EXIT

step "starting DynamoDB Local and moto's S3 server"
start_aws_engines

step "SAM template: cfn-lint, sam validate --lint, our assertions (offline)"
bash infra/check.sh

step "browser client and grading page: build (the HTTP function bundles the page)"
npm run build --prefix clients

step "Rust tests"
# With the AWS adapters compiled into the binary, so the conformance runs below reuse it.
cargo test --workspace --locked --features agentwire/aws

step "fuzz targets, bounded run (every parser of untrusted input; longer: bash fuzz/run.sh --minutes 30)"
# The same build as above (same features), so only the fuzz binary links. One target at a
# time, 6 s each: about 60 s in all, on any number of cores.
AGENTWIRE_FUZZ_SECONDS="${AGENTWIRE_FUZZ_SECONDS:-6}" \
  cargo test --workspace --locked --features agentwire/aws --test fuzz -- --ignored --test-threads=1

step "cost benchmark, smoke run (the real figures: bash tests/bench/cost.sh)"
cargo run --locked --quiet -p agentwire-cost -- --tokens 100 --rates 150 --subscribers 1

step "browser client: typecheck, unit tests"
npm run typecheck --prefix clients
npm test --prefix clients

# The suite gives each test 5 s, and two of them wait for a long-poll to time out at the
# tail, so the server under test answers idle long-polls after 1 s (the default is 20 s).
# The suite sends no tokens, so authentication is off for these runs (--insecure).
conformance() {
  local name=$1
  shift
  local out="$data/$name.out"
  "$root/target/debug/agentwire" dev --listen 127.0.0.1:0 --data-dir "$data/$name" \
    --long-poll-timeout-ms 1000 --insecure --no-demo-agent "$@" >"$out" &
  server=$!
  local url=""
  for _ in $(seq 1 100); do
    url="$(sed -n 's/^agentwire dev listening on //p' "$out")"
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "agentwire dev ($name) did not start" >&2; exit 1; }
  step "Durable Streams conformance suite against agentwire dev on $name at $url"
  local report="$data/$name.json" status=0
  (cd tests/conformance && CONFORMANCE_URL="$url" CONFORMANCE_SUBSCRIPTIONS="$subscriptions" \
    npx vitest run --reporter=default --reporter=json --outputFile="$report") || status=$?
  node -e '
    const r = require(process.argv[1])
    console.log(`conformance (${process.argv[2]}): ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`)
  ' "$report" "$name"
  kill "$server" 2>/dev/null || true
  server=""
  [ "$status" = 0 ] || exit "$status"
}

# The protocol's Node reference server passes the subscription tests too: the suite's
# expectations are the protocol's, not this server's.
step "Durable Streams subscription tests against the Node reference server"
node tests/conformance/reference-server.mjs >"$data/reference.out" &
server=$!
for _ in $(seq 1 100); do
  reference="$(sed -n 's/^listening on //p' "$data/reference.out")"
  [ -n "$reference" ] && break
  sleep 0.1
done
[ -n "$reference" ] || { echo "the reference server did not start" >&2; exit 1; }
(cd tests/conformance && CONFORMANCE_URL="$reference" CONFORMANCE_SUBSCRIPTIONS=1 \
  npx vitest run -t "Reserved subscription APIs")
kill "$server" 2>/dev/null || true
server=""

# Subscriptions (webhooks, pull-wake) in full on both backends.
subscriptions=1
conformance sqlite
# The Lambda functions' wiring: DynamoDB log and registry, S3 blobs, inline pushes through
# the management API, live reads polling DynamoDB, subscriptions in the session table.
conformance aws --backend aws --dynamodb-endpoint "$AGENTWIRE_DYNAMODB_ENDPOINT" \
  --s3-endpoint "$AGENTWIRE_S3_ENDPOINT" --dynamodb-table conformance

step "demo chat and grading page in Chromium (screenshots under artifacts/)"
npm run test:browser --prefix clients

step "Python SDK: wheel, mypy --strict, pytest against agentwire dev, the example from a fresh virtualenv"
bash clients/python/check.sh
