#!/usr/bin/env bash
# Builds every Lambda function with cargo-lambda (from PyPI, with zig, so the bootstraps
# link against a glibc old enough for provided.al2023) and prints each bootstrap's size.
# Usage: bash functions/build.sh [--arm64]   (default x86_64; arm64 needs the aarch64 target)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../infra/venv.sh
source infra/venv.sh --with-cargo-lambda
arch=--x86-64
[ "${1:-}" = "--arm64" ] && arch=--arm64
# One bootstrap per function of the template, each linking only what that function runs.
mapfile -t bins < <(sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\).*/\1/p' infra/template.yaml)
# Each function's own package, built on its own: `--bin` alone selects every workspace
# member and unifies their features, which put the CLI's TLS provider (aws-lc, about
# 1.5 MiB) in every bootstrap, and packages built together unify theirs too (the scorer's
# fast regex engines would be in the judge's and the evals' bootstraps). Crates with the
# same features are compiled once and shared by the builds.
# The HTTP function bundles the grading page: build it first.
[ -d clients/node_modules ] || npm ci --prefix clients --no-audit --no-fund
npm run build --prefix clients
# With panic = "abort" nothing unwinds: no unwind tables (about 0.5 MiB a bootstrap; a
# panic still prints its message). cargo-lambda's own default, when RUSTFLAGS is unset, is
# just the target CPU, kept here.
cpu=haswell
[ "$arch" = "--arm64" ] && cpu=neoverse-n1
# Optimised for size: the functions wait on DynamoDB, S3 and API Gateway far longer than
# they compute, and a smaller bootstrap loads faster (with the package fix above: 12.3 to
# 8.9 MB for the WebSocket function; cold starts stay under 12 ms, tests/bench/coldstart.sh).
# Local builds (`agentwire dev`, the benchmarks) keep opt-level 3.
for bin in "${bins[@]}"; do
  CARGO_PROFILE_RELEASE_OPT_LEVEL="${CARGO_PROFILE_RELEASE_OPT_LEVEL:-s}" \
    RUSTFLAGS="${RUSTFLAGS:--C target-cpu=$cpu -C force-unwind-tables=no}" \
    cargo lambda build --release --locked "$arch" --package "agentwire-fn-${bin#agentwire-}" --bin "$bin"
done
# The goal is at most 8 MB each; over it is reported, not fatal (the deploy still works:
# Lambda's limit for a zipped package is 50 MB).
limit=8000000
for bin in "${bins[@]}"; do
  file="target/lambda/$bin/bootstrap"
  size=$(stat -c %s "$file")
  glibc=$(objdump -T "$file" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
  printf '%-22s %9d bytes (%.1f MiB), needs %s\n' "$bin" "$size" "$(echo "$size / 1048576" | bc -l)" "$glibc"
  [ "$size" -le "$limit" ] || echo "  $bin is over the 8 MB goal by $(( (size - limit) / 1000 )) kB"
done
