#!/usr/bin/env bash
# Nightly clustering: traces clustered per second and peak memory at 10,000 and 100,000
# traces with the local default (hashed TF-IDF, SVD, HDBSCAN on a 4,000 sample, the rest
# assigned), beside the same pipeline in scikit-learn on the same texts, in one run.
# Each run is its own process, so each peak resident set is its own.
#
#   bash tests/bench/clusters.sh [SIZES...]     # default: 10000 100000
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
sizes=("${@:-10000 100000}")
read -r -a sizes <<<"${sizes[*]}"

cargo build --release --locked -p agentwire-bench --bin cluster-bench
venv="${AGENTWIRE_BENCH_VENV:-target/bench-venv}"
if ! "$venv/bin/python" -c 'import sklearn' 2>/dev/null; then
  python3 -m venv "$venv"
  # numpy 2.2: scikit-learn 1.7's HDBSCAN epsilon search fails on numpy 2.3.
  "$venv/bin/pip" install -q 'scikit-learn==1.7.2' 'numpy==2.2.6'
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "| traces | agentwire: s | traces/s | peak MiB | clusters | scikit-learn 1.7: s | traces/s | peak MiB | clusters |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
  ours=$(target/release/cluster-bench --traces "$n" --texts "$work/texts.txt")
  peer=$("$venv/bin/python" tests/bench/clusters_peer.py "$work/texts.txt")
  python3 - "$n" "$ours" "$peer" <<'PY'
import json, sys
n, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
row = lambda r: f"{r['seconds']:.2f} | {r['traces_per_second']:,.0f} | {r['peak_rss_mib']:.0f} | {r['clusters']}"
print(f"| {int(n):,} | {row(a)} | {row(b)} |")
PY
done
