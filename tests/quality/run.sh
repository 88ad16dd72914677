#!/usr/bin/env bash
# Scorer quality on labelled data, end to end through the product's own commands:
# `agentwire import` writes the archive layout, `agentwire score` scores it as the scorer
# job does, and `agentwire-quality` compares the records with the datasets' labels, beside
# baselines computed in the same run. Writes EVALS-run.md (copy the tables into EVALS.md).
#
#   bash tests/quality/run.sh [DATA_DIR]    # default: ../shared/data beside the checkout
#
# DATA_DIR holds ragtruth-qa/{responses,sources}-train.jsonl and
# tau-bench/gpt-4o-airline-dev.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
data="$(cd "${1:-$root/../shared/data}" && pwd)"

cargo build --release --locked -p agentwire -p agentwire-quality
aw="$root/target/release/agentwire"
quality="$root/target/release/agentwire-quality"
work="$(mktemp -d)"
trap 'kill ${dev_pid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
out="$root/EVALS-run.md"

echo "=== RAGTruth QA (train split): groundedness against the labelled hallucinations"
"$aw" import ragtruth --responses "$data/ragtruth-qa/responses-train.jsonl" \
  --sources "$data/ragtruth-qa/sources-train.jsonl" --out "$work/ragtruth"
"$aw" score --traces "$work/ragtruth/traces" --out "$work/ragtruth.jsonl"
"$quality" ragtruth --traces "$work/ragtruth" --scores "$work/ragtruth.jsonl" \
  --markdown "$work/ragtruth.md" --grades-out "$work/ragtruth-grades.jsonl"

echo "=== RAGTruth QA (train split): calibrating groundedness on the labels as expert grades"
"$aw" calibrate --scorer groundedness --criterion grounded --grades "$work/ragtruth-grades.jsonl" \
  --scores "$work/ragtruth.jsonl" --out "$work/scoring-calibrated.toml" | tee "$work/calibrate.txt"
"$aw" calibrate --scorer groundedness --criterion grounded --grades "$work/ragtruth-grades.jsonl" \
  --scores "$work/ragtruth.jsonl" --json >"$work/calibrate.json"

echo "=== tau-bench airline (dev half): tool_use against the runs' rewards"
tau="$data/tau-bench/gpt-4o-airline-dev.json"
"$aw" import tau-bench --file "$tau" --out "$work/tau"
"$aw" import tau-bench --file "$tau" --without-expected-actions --out "$work/tau-bare"
"$aw" score --traces "$work/tau/traces" --out "$work/tau.jsonl"
"$aw" score --traces "$work/tau-bare/traces" --out "$work/tau-bare.jsonl"
"$quality" tau-bench --traces "$work/tau" --scores "$work/tau.jsonl" \
  --scores-without "$work/tau-bare.jsonl" --markdown "$work/tau.md"

echo "=== tau-bench airline (dev half): a replay eval run through agentwire dev's evals API"
mkdir -p "$work/replay"
"$aw" import tau-bench --file "$tau" --out "$work/replay" --tenant local
"$aw" dev --listen 127.0.0.1:0 --data-dir "$work/replay" --insecure --no-demo-agent \
  >"$work/replay-dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 100); do
  url="$(sed -n 's/^agentwire dev listening on //p' "$work/replay-dev.log")"
  [ -n "$url" ] && break
  sleep 0.1
done
"$aw" eval --url "$url" dataset from-traces tau-dev --sessions 'tau-*'
"$aw" eval --url "$url" run --dataset tau-dev --replay | tee "$work/replay.txt"
kill "$dev_pid"

echo "=== speed: every deterministic scorer on the RAGTruth traces, one core"
"$quality" bench --traces "$work/ragtruth/traces" | tee "$work/bench.md"

echo "=== speed: the LLM judge against a local OpenAI-compatible server, beside the endpoint alone"
"$quality" judge-bench --traces "$work/ragtruth/traces" | tee "$work/judge-bench.md"

{
  echo "# Scorer quality run, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
  echo
  echo "## RAGTruth QA train: groundedness"
  cat "$work/ragtruth.md"
  echo
  echo "## RAGTruth QA train: calibrating groundedness (labels as expert grades)"
  echo
  echo '```'
  cat "$work/calibrate.txt"
  echo '```'
  echo
  echo "## tau-bench airline dev: tool_use"
  cat "$work/tau.md"
  echo
  echo "## tau-bench airline dev: a replay eval run"
  echo
  echo '```'
  cat "$work/replay.txt"
  echo '```'
  echo
  echo "## Speed"
  cat "$work/bench.md"
  echo
  echo "## The judge's speed"
  cat "$work/judge-bench.md"
} >"$out"
echo "written: $out"
