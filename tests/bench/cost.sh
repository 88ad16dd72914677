#!/usr/bin/env bash
# Cost per 1M streamed tokens on AWS: starts DynamoDB Local and moto's S3 server, then
# runs the canned agent workload through the AWS adapters (tests/cost) at 50 and 150
# tokens/s with 1 and 5 subscribers, with the agent SDK's default coalescing and, for
# comparison, with a 250 ms linger.
#
#   bash tests/bench/cost.sh [agentwire-cost options, e.g. --tokens 3000]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

cargo build --locked -p agentwire-cost
data="$(mktemp -d)"
source tests/services.sh
trap stop_services EXIT
start_aws_engines

target/debug/agentwire-cost "$@"
echo
target/debug/agentwire-cost --linger-ms 250 "$@"
