"""Two-cluster anomaly labelling of latent vectors: minority, flattening, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from licanom.detectors.clustering import CLUSTER_METHODS, ClusterResult, cluster_anomalies, cluster_result


def planted(n_normal: int = 190, n_far: int = 10, shape: tuple[int, ...] = (4,)) -> np.ndarray:
    """Latents of shape (n_normal + n_far, *shape): a tight far cluster in the last rows."""
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(n_normal, *shape))
    far = 20.0 + 0.1 * rng.normal(size=(n_far, *shape))
    return np.concatenate((normal, far))


@pytest.mark.parametrize("method", CLUSTER_METHODS)
def test_minority_cluster_is_the_anomaly(method: str) -> None:
    labels = cluster_anomalies(planted(), method)
    assert labels.dtype == np.int8
    assert labels.shape == (200,)
    np.testing.assert_array_equal(labels, np.r_[np.zeros(190), np.ones(10)])


@pytest.mark.parametrize("method", CLUSTER_METHODS)
def test_3d_latents_are_flattened(method: str) -> None:
    latent = planted(shape=(6, 3))  # e.g. a TCN_AE_Small bottleneck
    labels = cluster_anomalies(latent, method)
    assert labels.shape == (200,)
    assert labels[-10:].all() and not labels[:-10].any()


@pytest.mark.parametrize("method", CLUSTER_METHODS)
def test_deterministic_for_a_seed(method: str) -> None:
    latent = np.random.default_rng(5).normal(size=(120, 3))  # no clear structure
    first = cluster_anomalies(latent, method, seed=7)
    np.testing.assert_array_equal(first, cluster_anomalies(latent, method, seed=7))


@pytest.mark.parametrize("method", CLUSTER_METHODS)
@pytest.mark.parametrize(
    "latent",
    [np.zeros((0, 3)), np.ones((1, 3)), np.full((50, 2, 2), 0.7)],
    ids=["empty", "one-sample", "identical"],
)
def test_degenerate_inputs_give_all_zeros(method: str, latent: np.ndarray) -> None:
    labels = cluster_anomalies(latent, method)
    assert labels.shape == (latent.shape[0],)
    assert not labels.any()


@pytest.mark.parametrize("method", CLUSTER_METHODS)
def test_tie_gives_all_zeros(method: str) -> None:
    latent = np.r_[np.zeros((5, 2)), np.full((5, 2), 10.0)]
    assert not cluster_anomalies(latent, method).any()


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_anomalies(planted(), "dbscan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        cluster_anomalies(np.array([[0.0], [np.nan]]), "kmeans")
    with pytest.raises(ValueError, match="sample axis"):
        cluster_anomalies(np.float64(1.0), "kmeans")


def test_cluster_result_counts() -> None:
    result = cluster_result(planted(), "kmeans")
    assert isinstance(result, ClusterResult)
    assert result.n_anomalies == 10
    assert result.method == "kmeans"
    assert result.labels.sum() == 10
