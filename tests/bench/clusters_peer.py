"""The peer of cluster-bench: the same pipeline in scikit-learn, on the same texts.

TF-IDF over words and word pairs (sublinear tf, English stop words), truncated SVD to 24
dimensions, unit rows, HDBSCAN (min_cluster_size 5, min_samples 5, epsilon 0.7) on a
sample of 4,000, every other row joined to the nearest cluster centre within the
cluster's farthest member. Prints one JSON line like cluster-bench.
"""
import json
import resource
import sys
import time

import numpy as np
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

texts = open(sys.argv[1], encoding="utf-8").read().splitlines()
started = time.perf_counter()
features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english").fit_transform(texts)
embedded = time.perf_counter() - started
rng = np.random.default_rng(7)
sample = np.sort(rng.choice(len(texts), size=min(4000, len(texts)), replace=False))
svd = TruncatedSVD(n_components=24, random_state=7).fit(features[sample])
points = normalize(svd.transform(features))
labels = np.full(len(texts), -1)
labels[sample] = HDBSCAN(min_cluster_size=5, min_samples=5, cluster_selection_epsilon=0.7).fit_predict(points[sample])
clusters = sorted(set(labels[sample]) - {-1})
if clusters and len(sample) < len(texts):
    centres = np.stack([points[sample][labels[sample] == c].mean(axis=0) for c in clusters])
    radii = np.array([np.linalg.norm(points[sample][labels[sample] == c] - centres[i], axis=1).max() for i, c in enumerate(clusters)])
    rest = np.setdiff1d(np.arange(len(texts)), sample)
    for start in range(0, len(rest), 10000):
        chunk = rest[start:start + 10000]
        d = np.linalg.norm(points[chunk][:, None, :] - centres[None, :, :], axis=2)
        best = d.argmin(axis=1)
        ok = d[np.arange(len(chunk)), best] <= radii[best]
        labels[chunk[ok]] = np.array(clusters)[best[ok]]
seconds = time.perf_counter() - started
print(json.dumps({
    "traces": len(texts),
    "seconds": seconds,
    "embed_seconds": embedded,
    "traces_per_second": len(texts) / seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "clusters": len(clusters),
    "noise": int((labels == -1).sum()),
}))
