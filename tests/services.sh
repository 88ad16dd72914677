# Local engines for the tests and benchmarks, sourced by tests/run-all.sh and
# tests/bench/*.sh: DynamoDB Local (on the machine's Java 17) and moto's S3 server (its own
# venv), each on a free loopback port. The caller sets `data` (a scratch directory) and
# calls `stop_services` on exit.

service_pids=()

# Kills every engine started here (and any pids given), then removes `data`.
stop_services() {
  for pid in "$@" ${service_pids[@]+"${service_pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
}

# wait_up URL NAME [LOG]: waits up to 60 s for URL to answer.
wait_up() {
  node -e '
    const deadline = Date.now() + 60000
    const poll = () => fetch(process.argv[1]).then(() => process.exit(0),
      () => Date.now() > deadline ? process.exit(1) : setTimeout(poll, 100))
    poll()' "$1" || { [ -n "${3:-}" ] && cat "$3"; echo "$2 did not start" >&2; exit 1; }
}

# Prints the path of moto's server, installing it into its own venv on first use.
moto_server_bin() {
  local venv="${AGENTWIRE_S3_VENV:-target/s3-venv}"
  if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' >&2
  fi
  echo "$venv/bin/moto_server"
}

# Starts both engines and exports AGENTWIRE_DYNAMODB_ENDPOINT and AGENTWIRE_S3_ENDPOINT.
start_aws_engines() {
  [ -d tests/dynamodb/node_modules ] || npm ci --prefix tests/dynamodb --no-audit --no-fund
  local port
  port="$(free_port)"
  PORT="$port" node tests/dynamodb/start.mjs >"$data/dynamodb.log" 2>&1 &
  service_pids+=($!)
  export AGENTWIRE_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
  wait_up "$AGENTWIRE_DYNAMODB_ENDPOINT" "DynamoDB Local" "$data/dynamodb.log"

  local moto
  moto="$(moto_server_bin)"
  port="$(free_port)"
  "$moto" -H 127.0.0.1 -p "$port" >"$data/s3.log" 2>&1 &
  service_pids+=($!)
  export AGENTWIRE_S3_ENDPOINT="http://127.0.0.1:$port"
  wait_up "$AGENTWIRE_S3_ENDPOINT" "the S3 server" "$data/s3.log"
}
