#!/usr/bin/env bash
# Lambda cold starts: each function of infra/template.yaml (its bootstrap, its
# environment) started 20 times against a local Lambda Runtime API, timed from exec to its
# first `next`; min and median init per function. moto's server stands in for Secrets
# Manager (the token secret is read at init). Builds nothing: run functions/build.sh first.
#
#   bash tests/bench/coldstart.sh [--lambda-dir DIR] [--starts N] [coldstart.py options]
#
# DIR defaults to target/lambda; AGENTWIRE_S3_VENV picks moto's venv (as in the tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

data="$(mktemp -d)"
source tests/services.sh
trap stop_services EXIT

moto="$(moto_server_bin)"
port="$(free_port)"
"$moto" -H 127.0.0.1 -p "$port" >"$data/moto.log" 2>&1 &
service_pids+=($!)
wait_up "http://127.0.0.1:$port" "moto's server" "$data/moto.log"

python3 tests/bench/coldstart.py --moto "http://127.0.0.1:$port" "$@"
