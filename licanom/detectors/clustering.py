"""Anomalies as the minority of two clusters in the encoder's latent space (thesis 3.3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

ClusterMethod = Literal["kmeans", "gmm"]
CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "gmm")


def _flatten(latent: ArrayLike) -> NDArray[np.float64]:
    """Latent of shape `(n, *bottleneck)` as `(n, d)`; a 1-D input is `(n, 1)`."""
    arr = np.asarray(latent, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError("latent must have a sample axis, shape (n, *bottleneck)")
    arr = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))
    if arr.shape[1] == 0:
        raise ValueError(f"latent has no features per sample, shape {np.shape(latent)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("latent must be finite (no NaN or inf)")
    return arr


def cluster_anomalies(
    latent: ArrayLike, method: ClusterMethod, seed: int = 0
) -> NDArray[np.int8]:
    """Label each sample 1 (anomaly) or 0 by two-cluster clustering of its latent vector.

    `latent` of shape `(n, *bottleneck)` (e.g. `(n, 12, 6)` for TCN_AE) is flattened to
    `(n, d)` and clustered by scikit-learn's `KMeans(n_clusters=2, n_init=10)` or
    `GaussianMixture(n_components=2)`, both with `random_state=seed`, so the labels are
    deterministic for a seed. The smaller cluster is the anomaly class (label 1), the larger
    normal (0). Returns labels of shape `(n,)`, dtype int8.

    All zeros, with no clustering, when there is no minority to speak of: fewer than 2
    samples, all latent vectors identical, or two clusters of equal size.
    """
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {CLUSTER_METHODS}")
    x = _flatten(latent)
    n = x.shape[0]
    labels = np.zeros(n, dtype=np.int8)
    if n < 2 or np.all(x == x[0]):
        return labels

    if method == "kmeans":
        from sklearn.cluster import KMeans

        assigned = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(x)
    else:
        from sklearn.mixture import GaussianMixture

        assigned = GaussianMixture(n_components=2, random_state=seed).fit_predict(x)

    counts = np.bincount(assigned, minlength=2)
    if counts[0] == counts[1]:
        return labels
    minority = int(np.argmin(counts))
    labels[assigned == minority] = 1
    return labels


@dataclass(frozen=True)
class ClusterResult:
    """Labels of shape `(n,)` (1 = anomaly) and their count, for the results table."""

    labels: NDArray[np.int8]
    n_anomalies: int
    method: str


def cluster_result(latent: ArrayLike, method: ClusterMethod, seed: int = 0) -> ClusterResult:
    """`cluster_anomalies` with the anomaly count attached."""
    labels = cluster_anomalies(latent, method, seed=seed)
    return ClusterResult(labels=labels, n_anomalies=int(labels.sum()), method=method)
