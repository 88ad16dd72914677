#!/usr/bin/env bash
# Clustering quality against the datasets' own categories: `agentwire import` writes the
# traces, `agentwire cluster` clusters them as the nightly job does, and
# `agentwire-quality clusters` prints the adjusted Rand index and V-measure against
# tau-bench's tasks and task kinds and RAGTruth's source questions, beside the same
# clusters' sizes assigned at random. Pass embedding options to `agentwire cluster` after
# the data directory (for example --embeddings-url URL) to measure another embedding;
# with --embedding-model-dir DIR the binary is built with the `minilm` feature (in
# target/minilm, so the default build stays as it is).
#
#   bash tests/quality/clusters.sh [DATA_DIR [CLUSTER OPTIONS...]]   # default: ../shared/data
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
data="$(cd "${1:-$root/../shared/data}" && pwd)"
shift || true
extra=("$@")

cargo build --release --locked -p agentwire -p agentwire-quality
aw="$root/target/release/agentwire"
if [[ " ${extra[*]-} " == *" --embedding-model-dir "* ]]; then
  CARGO_PROFILE_RELEASE_LTO=false cargo build --release --locked -p agentwire \
    --features agentwire/minilm --target-dir "$root/target/minilm"
  aw="$root/target/minilm/release/agentwire"
fi
quality="$root/target/release/agentwire-quality"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$aw" import tau-bench --file "$data/tau-bench/gpt-4o-airline-dev.json" --out "$work/tau" >/dev/null
"$aw" import ragtruth --responses "$data/ragtruth-qa/responses-train.jsonl" \
  --sources "$data/ragtruth-qa/sources-train.jsonl" --out "$work/rag" >/dev/null

run() {
  local name=$1 dataset=$2 title=$3
  shift 3
  "$aw" cluster --traces "$work/$name" --out "$work/$name.jsonl" "$@" ${extra[@]+"${extra[@]}"} >/dev/null 2>"$work/$name.log"
  echo "($(head -1 "$work/$name.log"))"
  echo
  "$quality" clusters --members "$work/$name.jsonl" "--$dataset" "$dataset_file" --title "$title"
}

dataset_file="$data/tau-bench/gpt-4o-airline-dev.json"
run tau tau-bench "tau-bench airline dev (100 runs: 25 tasks x 4 trials), requests, defaults (min cluster size 5, epsilon 0.7)"
run tau tau-bench "tau-bench, requests, min cluster size 4 (the trials per task)" --min-cluster-size 4
run tau tau-bench "tau-bench, requests, min cluster size 4, epsilon 0 (HDBSCAN's own selection)" --min-cluster-size 4 --epsilon 0
dataset_file="$data/ragtruth-qa/responses-train.jsonl"
run rag ragtruth "RAGTruth QA train (3,356 responses: 839 questions x 4 models), requests, defaults"
run rag ragtruth "RAGTruth, requests, min cluster size 4, epsilon 0" --min-cluster-size 4 --epsilon 0
