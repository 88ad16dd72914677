#!/usr/bin/env bash
# Benchmarks: `agentwire dev` (SQLite, durable) beside the Durable Streams reference server
# (`@durable-streams/server`, in memory and file-backed), all on loopback, the same
# workloads against each in one run, one table with ratios against the in-memory
# reference. Then wrk's append rate against each, as a cross-check of the harness.
#
#   bash tests/bench/run.sh [agentwire-bench options, e.g. --appends 2000]
#
# Release builds; the servers run one at a time under load, the bench on the same 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

cargo build --release --locked -p agentwire -p agentwire-bench
[ -d tests/bench/reference/node_modules ] ||
  npm ci --prefix tests/bench/reference --no-audit --no-fund

data="$(mktemp -d)"
source tests/services.sh
pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

# agentwire dev: SQLite in WAL mode with synchronous=FULL, group commit; real tokens.
export AGENTWIRE_SECRET="bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
aw_port="$(free_port)"
target/release/agentwire dev --listen "127.0.0.1:$aw_port" --data-dir "$data/agentwire" \
  --no-demo-agent >"$data/agentwire.log" 2>&1 &
pids+=($!)
aw_pid=$!
token="$(target/release/agentwire token --data-dir "$data/agentwire" --session '*' --role admin)"
aw="http://127.0.0.1:$aw_port"

mem_port="$(free_port)"
PORT="$mem_port" node tests/bench/reference/server.mjs >"$data/ref-memory.log" 2>&1 &
pids+=($!)
mem_pid=$!
file_port="$(free_port)"
PORT="$file_port" DATA_DIR="$data/ref-file" node tests/bench/reference/server.mjs \
  >"$data/ref-file.log" 2>&1 &
pids+=($!)
file_pid=$!
mem="http://127.0.0.1:$mem_port"
file="http://127.0.0.1:$file_port"
wait_up "$aw/healthz" agentwire "$data/agentwire.log"
wait_up "$mem/v1/stream/up" "the reference server" "$data/ref-memory.log"
wait_up "$file/v1/stream/up" "the file-backed reference server" "$data/ref-file.log"

echo "agentwire $aw, reference in memory $mem, reference file-backed $file"
target/release/agentwire-bench \
  --target "agentwire=$aw;ws;token=$token;pid=$aw_pid;durability=fsync (SQLite WAL, synchronous=FULL, group commit)" \
  --target "ref-file=$file;pid=$file_pid;durability=fdatasync per append (log file + LMDB)" \
  --target "ref-memory=$mem;pid=$mem_pid;durability=nothing (process memory)" \
  --fsync-dir "$data" --reference ref-memory "$@"

if command -v wrk >/dev/null 2>&1; then
  echo
  echo "wrk cross-check: 100-byte JSON appends for 5 s, one stream per run"
  printf '| server | 1 connection | 16 connections |\n|---|---|---|\n'
  body='{"seq":0,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
  cat >"$data/append.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '$body'
LUA
  for server in "agentwire=$aw" "ref-file=$file" "ref-memory=$mem"; do
    name="${server%%=*}"; url="${server#*=}"
    rates=()
    for connections in 1 16; do
      stream="$url/v1/stream/wrk-$name-$connections"
      curl -sf -X PUT -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
        "$stream" >/dev/null
      threads=$(( connections < 2 ? 1 : 2 ))
      out="$(wrk -t"$threads" -c"$connections" -d5s -s "$data/append.lua" "$stream")"
      if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "wrk saw errors from $name" >&2; exit 1; fi
      rates+=("$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")")
    done
    echo "| $name | ${rates[0]}/s | ${rates[1]}/s |"
  done
else
  echo "wrk is not installed (apt-get install wrk): skipping the cross-check" >&2
fi
