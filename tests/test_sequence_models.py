"""LSTM/GRU + OC-SVM/SVDD detectors: smooth hinge, Cayley steps, SMO, pooling, quality floor, contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.svm import OneClassSVM

from licanom.detectors.sequence import (
    ERGEN_MODELS,
    SequenceDetector,
    build_detector,
    cayley_step,
    orthonormality_error,
    smooth_hinge,
    solve_dual,
)
from licanom.detectors.sequence.data import Sequences
from licanom.detectors.sequence.nets import SequenceEncoder, StiefelSGD
from licanom.detectors.sequence.svm import primal_objective


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def outage_sequences(
    n_normal: int, n_anomalous: int, seed: int, outage: tuple[float, float] = (0.4, 0.7), noise: float = 0.1,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Variable-length (15..40 steps) two-feature activity traces and their truth (True = anomalous).

    Normal: a periodic activity (period 4-6 steps, random phase) around a positive level.
    Anomalous: the same, but the activity stops (drops to 0) for a stretch of ``outage`` of its
    length. A pooling that let the zero padding leak into the mean would make short normal
    sequences look like outages.
    """
    rng = np.random.default_rng(seed)
    X, truth = [], []
    for k in range(n_normal + n_anomalous):
        n = int(rng.integers(15, 41))
        t = np.arange(n)
        phase = 2 * np.pi * t / rng.uniform(4, 6) + rng.uniform(0, 2 * np.pi)
        x = np.stack([1 + 0.5 * np.sin(phase), 0.3 + 0.2 * np.cos(phase)], axis=1)
        if k >= n_normal:
            length = int(round(n * rng.uniform(*outage)))
            start = int(rng.integers(0, n - length + 1))
            x[start:start + length] = 0.0
        X.append((x + noise * rng.normal(size=x.shape)).astype(np.float32))
        truth.append(k >= n_normal)
    order = rng.permutation(len(X))
    return [X[i] for i in order], np.array(truth)[order]


@pytest.fixture(scope="module")
def planted():
    return outage_sequences(72, 8, seed=0), outage_sequences(72, 8, seed=1)


# --- smooth hinge ---------------------------------------------------------------------------
def test_smooth_hinge_gap_is_uniformly_bounded_and_shrinks():
    u = np.concatenate([np.linspace(-50, 50, 20001), [-1e6, 1e6]])
    worst = []
    for tau in (1.0, 10.0, 100.0, 1000.0):
        gap = smooth_hinge(u, tau) - np.maximum(0.0, u)
        assert np.isfinite(gap).all()
        assert gap.min() >= 0.0 and gap.max() <= np.log(2) / tau + 1e-12
        assert gap[np.argmin(np.abs(u))] == pytest.approx(np.log(2) / tau, rel=1e-3)  # the bound is attained at 0
        worst.append(gap.max())
        torch_value = smooth_hinge(torch.from_numpy(u), tau).numpy()
        np.testing.assert_allclose(torch_value, smooth_hinge(u, tau), rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(worst) < 0)
    with pytest.raises(ValueError):
        smooth_hinge(u, 0.0)


# --- Cayley steps ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 4), (8, 8), (3, 7), (4, 16, 2)])
def test_cayley_steps_stay_on_the_stiefel_manifold(shape):
    gen = torch.Generator().manual_seed(0)
    W = torch.linalg.qr(torch.randn(*shape, generator=gen, dtype=torch.float64)).Q
    if shape[-2] < shape[-1]:  # wide: orthonormal rows
        W = torch.linalg.qr(torch.randn(*shape[:-2], shape[-1], shape[-2], generator=gen, dtype=torch.float64)).Q.mT
    W = W.float().contiguous()
    target = torch.randn(*shape, generator=gen)
    loss = lambda M: float(((M - target) ** 2).sum())  # noqa: E731
    start = loss(W)
    for _ in range(200):
        G = 2 * (W - target)
        W = cayley_step(W, G, lr=0.05)
        assert orthonormality_error(W) < 1e-5
    assert loss(W) < start  # the steps descend
    with pytest.raises(ValueError):
        cayley_step(W, G[..., :1], 0.1)


def test_cayley_polish_stops_float32_drift():
    gen = torch.Generator().manual_seed(1)
    W = torch.linalg.qr(torch.randn(4, 16, 16, generator=gen, dtype=torch.float64)).Q.float()
    for _ in range(2000):
        W = cayley_step(W, torch.randn(4, 16, 16, generator=gen), lr=0.1)
    assert orthonormality_error(W) < 1e-6


def test_stiefel_sgd_keeps_every_gate_block_orthonormal():
    torch.manual_seed(0)
    enc = SequenceEncoder("LSTM", n_features=3, hidden=2)  # wide input blocks (2 x 3)
    assert enc.orthonormality_error() < 1e-6
    opt = StiefelSGD([{"params": list(enc.orthonormal_weights()), "gates": enc.gates}], lr=0.2)
    x, lengths = torch.randn(5, 6, 3), torch.tensor([6, 3, 1, 5, 2])
    for _ in range(100):
        opt.zero_grad()
        enc(x, lengths).pow(2).sum().backward()
        opt.step()
    assert enc.orthonormality_error() < 1e-5


# --- SMO ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "m", "lam"), [(83, 5, 0.1), (151, 8, 0.3)])  # νn not whole: ρ is unique
def test_smo_ocsvm_matches_sklearn(n, m, lam):
    H = np.random.default_rng(n).normal(size=(n, m)) + 1.5
    C = 1.0 / (n * lam)
    sol = solve_dual("ocsvm", H, C, tol=1e-9)
    assert sol.converged
    assert sol.alpha.sum() == pytest.approx(1.0, abs=1e-12)
    assert sol.alpha.min() >= 0.0 and sol.alpha.max() <= C * (1 + 1e-12)
    # scikit-learn solves the same dual scaled by νn (Σα = νn, 0 ≤ α ≤ 1)
    sk = OneClassSVM(kernel="linear", nu=lam, tol=1e-10, shrinking=False).fit(H)
    scale = lam * n
    np.testing.assert_allclose(sol.score(H), -sk.decision_function(H) / scale, atol=1e-5)
    assert sol.offset == pytest.approx(float(np.ravel(sk.offset_)[0]) / scale, rel=1e-5)
    np.testing.assert_allclose(sol.coef, np.ravel(sk.coef_) / scale, atol=1e-5)
    assert primal_objective("ocsvm", H, sol.coef, sol.offset, np.ones(n), np.full(n, C)) == pytest.approx(
        -sol.objective, rel=1e-5)


@pytest.mark.parametrize("kind", ["ocsvm", "svdd"])
def test_smo_kkt_with_labels(kind):
    rng = np.random.default_rng(3)
    n = 60
    H = rng.normal(size=(n, 4)) + np.array([2.0, 1.0, 0.0, 0.0])
    H[:5] *= 0.2  # labelled anomalies, near the origin
    y = np.ones(n)
    y[:5] = -1.0
    C = np.where(np.arange(n) < 10, 0.5, 1.0 / (n * 0.2))
    sol = solve_dual(kind, H, C, y=y, tol=1e-10)
    assert sol.converged
    assert float(y @ sol.alpha) == pytest.approx(1.0, abs=1e-12)
    assert sol.alpha.min() >= 0.0 and (sol.alpha <= C * (1 + 1e-12)).all()
    margin = y * sol.score(H)  # y·score ≤ 0 inside, > 0 a violation
    tol = 1e-6
    assert (margin[sol.alpha <= 1e-12] <= tol).all()
    assert (margin[sol.alpha >= C - 1e-12] >= -tol).all()
    free = (sol.alpha > 1e-12) & (sol.alpha < C - 1e-12)
    assert free.any() and np.abs(margin[free]).max() <= tol
    assert primal_objective(kind, H, sol.coef, sol.offset, y, C) == pytest.approx(-sol.objective, rel=1e-6)
    with pytest.raises(ValueError, match="infeasible"):
        solve_dual(kind, H, 1e-4)


# --- pooling --------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_batch_pools_exactly_like_one_by_one(cell):
    torch.manual_seed(0)
    enc = SequenceEncoder(cell, n_features=3, hidden=6, pooling="mean", unit_norm=False)
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (7, 1, 12, 3, 12, 5)]
    data = Sequences(seqs)
    x, lengths = data.batch(np.arange(len(seqs)))
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 1e3  # whatever sits in the padding must not matter
    with torch.no_grad():
        batched = enc(x, lengths)
        alone = torch.cat([enc(torch.from_numpy(s)[None], torch.tensor([len(s)])) for s in seqs])
        means = torch.stack([enc.rnn(torch.from_numpy(s)[None])[0][0].mean(0) for s in seqs])
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone, means, atol=1e-6, rtol=0)
    # the other poolings keep to the real steps too
    with torch.no_grad():
        outs = [enc.rnn(torch.from_numpy(s)[None])[0][0] for s in seqs]
        for pooling, want in (("max", [o.amax(0) for o in outs]), ("last", [o[-1] for o in outs]),
                              ("mean-max", [torch.cat([o.mean(0), o.amax(0)]) for o in outs]),
                              ("max-min", [torch.cat([o.amax(0), o.amin(0)]) for o in outs])):
            enc.pooling = pooling
            torch.testing.assert_close(enc(x, lengths), torch.stack(want), atol=1e-6, rtol=0)
            assert enc(x, lengths).shape[1] == enc.out_features
        enc.pooling, enc.unit_norm = "mean-max", True
        torch.testing.assert_close(enc(x, lengths).norm(dim=1), torch.ones(len(seqs)), atol=1e-6, rtol=0)


def test_fixed_chunks_and_equal_length_lists_agree():
    X = np.random.default_rng(1).normal(size=(12, 9, 2)).astype(np.float32)
    det = SequenceDetector("GRU_SVDD", solver="qp", hidden=4, epochs=1, lam=0.5, threads=1).fit(X)
    np.testing.assert_array_equal(det.decision_function(X), det.decision_function(list(X)))
    assert det.encode(X).shape == (12, 8)  # mean and max pooled side by side
    np.testing.assert_allclose(np.linalg.norm(det.encode(X), axis=1), 1.0, rtol=1e-5)  # on the unit sphere


# --- every variant --------------------------------------------------------------------------
VARIANTS = [(model, solver) for model in ERGEN_MODELS for solver in ("gradient", "qp")]


@pytest.mark.parametrize(("model", "solver"), VARIANTS)
def test_variant_contract_and_quality(model, solver, planted, tmp_path):
    (X, _), (X_test, truth) = planted
    det = build_detector(
        model, solver=solver, hidden=8, lam=0.3, epochs=8, lr=0.02 if solver == "gradient" else 0.1,
        batch_size=32, seed=0, threads=1,
    ).fit(X)

    # fitted attributes
    n = len(X)
    assert det.decision_scores_.shape == (n,) and np.isfinite(det.decision_scores_).all()
    # the boundary 0, or just above the training scores tied on it (free support vectors sit there)
    assert det.threshold_ >= 0.0
    assert np.all(np.abs(det.decision_scores_[(det.decision_scores_ > 0) & (det.decision_scores_ <= det.threshold_)])
                  <= 1e-6)
    assert set(np.unique(det.labels_)) <= {0, 1}
    assert 0.15 <= det.labels_.mean() <= 0.4  # about λ of the training set lies outside the boundary
    if model.endswith("OCSVM"):
        assert det.w_.shape == (16,) and np.isfinite(det.rho_)  # mean and max pooled side by side and det.c_ is None and det.radius2_ is None
    else:
        assert det.c_.shape == (16,) and det.radius2_ >= 0 and det.w_ is None and det.rho_ is None
    history = det.history_
    assert len(history.objective) == len(history.seconds) >= 2
    assert np.isfinite(history.objective).all()
    assert history.objective[-1] < history.objective[0]  # the joint training descends its objective
    if solver == "gradient":
        assert len(history.objective) == 8 and history.converged is None and det.alpha_ is None
    else:
        assert det.alpha_.sum() == pytest.approx(1.0)
    assert det.net_.encoder.orthonormality_error() < 1e-5

    # the planted outages score higher (held-out sequences)
    scores = det.decision_function(X_test)
    assert scores.shape == (len(X_test),)
    auc = roc_auc_score(truth, scores)
    assert auc >= 0.9, f"{model}/{solver}: AUROC {auc:.3f}"
    labels = det.predict(X_test)
    assert labels.dtype == np.int8 and set(np.unique(labels)) <= {0, 1}

    # identical scores after a save and load round-trip
    again = SequenceDetector.load(det.save(tmp_path / f"{model}-{solver}.pt"))
    np.testing.assert_array_equal(again.decision_function(X_test), scores)
    assert (again.model, again.solver, again.threshold_) == (model, solver, det.threshold_)
    assert again.history_ == det.history_
    assert again.convergence_ == det.convergence_ and again.converged_ == det.converged_


def test_qp_keeps_only_steps_that_lower_the_primal(planted):
    (X, _), _ = planted
    det = SequenceDetector("GRU_OCSVM", solver="qp", hidden=4, epochs=6, lr=1e-3, tol=0.0, lam=0.3, threads=1).fit(X)
    objective = np.array(det.history_.objective)
    assert len(objective) >= 2 and np.all(np.diff(objective) < 0)  # a step that does not descend is undone
    assert "kept of 6 tried" in det.convergence_.reason
    from licanom.detectors.sequence.nets import SequenceSVM

    torch.manual_seed(0)  # the detector's seed: its starting network
    start = SequenceSVM("GRU_OCSVM", 2, 4).encoder.rnn.weight_ih_l0.detach()
    assert float((det.net_.encoder.rnn.weight_ih_l0.detach() - start).norm()) > 1e-3  # the θ steps moved the network


def test_a_file_saved_before_pooling_was_a_setting_loads_as_mean_pooled(planted, tmp_path):
    (X, _), _ = planted
    det = SequenceDetector("LSTM_SVDD", solver="qp", hidden=4, epochs=1, lam=0.3, pooling="mean", unit_norm=False,
                           threads=1).fit(X)
    path = det.save(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["settings"]["pooling"], payload["settings"]["unit_norm"]
    torch.save(payload, path)
    again = SequenceDetector.load(path)
    assert (again.pooling, again.unit_norm) == ("mean", False)
    np.testing.assert_array_equal(again.decision_function(X), det.decision_function(X))


def test_labelled_anomalies_help_on_harder_data():
    X, truth = outage_sequences(68, 12, seed=0, outage=(0.05, 0.2), noise=0.3)
    X_test, truth_test = outage_sequences(68, 12, seed=1, outage=(0.05, 0.2), noise=0.3)
    y = np.zeros(len(X), dtype=np.int8)
    y[np.flatnonzero(truth)[:4]] = -1  # a third of the anomalies labelled
    y[np.flatnonzero(~truth)[:8]] = 1
    settings = dict(solver="qp", hidden=8, lam=0.3, epochs=10, lr=0.05, seed=1, threads=1, labeled_weight=1.0)
    unsupervised = SequenceDetector("LSTM_SVDD", **settings).fit(X)
    semi = SequenceDetector("LSTM_SVDD", **settings).fit(X, y)
    auc_u = roc_auc_score(truth_test, unsupervised.decision_function(X_test))
    auc_s = roc_auc_score(truth_test, semi.decision_function(X_test))
    assert auc_s >= auc_u + 0.05, f"unsupervised {auc_u:.3f}, semi-supervised {auc_s:.3f}"
    supervised = SequenceDetector("LSTM_SVDD", **settings).fit(X, np.where(truth, -1, 1))  # every sequence labelled
    assert roc_auc_score(truth_test, supervised.decision_function(X_test)) >= auc_u + 0.05
    rank = lambda s: (s[:, None] > s[None, :]).mean(axis=1)  # noqa: E731  share of sequences scored lower
    assert rank(semi.decision_scores_)[y == -1].mean() > rank(unsupervised.decision_scores_)[y == -1].mean()


def test_contamination_sets_the_threshold_from_training_scores():
    X, _ = outage_sequences(30, 3, seed=2)
    det = SequenceDetector("LSTM_OCSVM", solver="qp", hidden=4, epochs=2, lam=0.3, contamination=0.1, threads=1).fit(X)
    s = np.sort(det.decision_scores_)
    assert det.labels_.sum() == int(np.sum(det.decision_scores_ > det.threshold_)) == 3  # floor(0.1 * 33)
    assert s[-4] < det.threshold_ < s[-3]  # between two distinct training scores


def test_gradient_solver_logs_train_loss_per_epoch():
    from pytorch_lightning.loggers import Logger

    class Collect(Logger):
        def __init__(self) -> None:
            super().__init__()
            self.metrics: list[tuple[int | None, dict]] = []

        @property
        def name(self) -> str:
            return "collect"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            pass

        def log_metrics(self, metrics, step=None) -> None:
            self.metrics.append((step, dict(metrics)))

    X, _ = outage_sequences(20, 2, seed=3)
    sink = Collect()
    det = SequenceDetector("GRU_OCSVM", hidden=4, epochs=3, batch_size=8, threads=1, loggers=(sink,)).fit(X)
    logged = [m["train/loss"] for _, m in sink.metrics if "train/loss" in m]
    assert len(logged) == 3
    np.testing.assert_allclose(logged, det.history_.objective, rtol=1e-6)


# --- failure cases --------------------------------------------------------------------------
def test_bad_inputs_and_settings_are_clear():
    X, _ = outage_sequences(10, 0, seed=4)
    with pytest.raises(ValueError, match="no sequences"):
        SequenceDetector().fit([])
    with pytest.raises(ValueError, match="no sequences"):
        SequenceDetector().fit(np.zeros((0, 5, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="no steps"):
        SequenceDetector().fit([X[0], np.zeros((0, 2), dtype=np.float32)])
    with pytest.raises(ValueError, match="different feature counts"):
        SequenceDetector().fit([X[0], np.zeros((4, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="shape"):
        SequenceDetector().fit(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        SequenceDetector().fit([np.full((3, 2), np.nan, dtype=np.float32)])
    with pytest.raises(ValueError, match="unknown model"):
        SequenceDetector("LSTM_AE").fit(X)
    with pytest.raises(ValueError, match="unknown model"):
        build_detector("TCN_SVDD")
    with pytest.raises(ValueError, match="unknown solver"):
        SequenceDetector(solver="adam").fit(X)
    with pytest.raises(ValueError, match="lam"):
        SequenceDetector(lam=0.0).fit(X)
    with pytest.raises(ValueError, match="y must"):
        SequenceDetector().fit(X, np.full(len(X), 2))
    with pytest.raises(ValueError, match="y must"):
        SequenceDetector().fit(X, np.zeros(3))
    with pytest.raises(ValueError, match="infeasible"):  # every sequence a labelled anomaly
        SequenceDetector(solver="qp").fit(X, -np.ones(len(X)))
    with pytest.raises(RuntimeError, match="not fitted"):
        SequenceDetector().decision_function(X)

    det = SequenceDetector("LSTM_SVDD", solver="qp", hidden=4, epochs=1, threads=1).fit(X)
    with pytest.raises(ValueError, match="fitted on 2"):
        det.decision_function([np.zeros((5, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="no sequences"):
        det.predict([])


# --- ties at the threshold ------------------------------------------------------------------
def test_a_threshold_never_sits_on_a_tie():
    from licanom.detectors.sequence import tie_safe_threshold

    # 94 distinct low scores, then a tie group of 6 at 5.0 that straddles the top 1%... and the top 5%
    scores = np.r_[np.linspace(0.0, 1.0, 94), np.full(6, 5.0)]
    t = tie_safe_threshold(scores, 0.01)
    assert (scores > t).sum() == 0 and 1.0 < t < 5.0 or t >= 5.0  # never the whole group
    assert (scores > t).sum() <= 1
    t = tie_safe_threshold(scores, 0.06)  # room for the whole group: it is flagged, the threshold between
    assert (scores > t).sum() == 6 and 1.0 < t < 5.0
    t = tie_safe_threshold(scores, 0.05)  # not enough room: none of it
    assert (scores > t).sum() == 0
    # round-off copies of one value are one tie; the boundary 0 on a tie moves above the group
    boundary = np.r_[np.full(10, -1.0), np.full(5, 3e-9), np.full(5, -2e-9), np.full(3, 2.0)]
    t = tie_safe_threshold(boundary, None)
    assert (boundary > t).sum() == 3 and 3e-9 < t < 2.0
    assert tie_safe_threshold(np.array([-1.0, 1.0]), None) == 0.0
    # an identical held-out sequence scores like its training copies: not flagged either
    X = [np.tile(np.array([[1.0, 0.5]], dtype=np.float32), (8, 1))] * 40 + outage_sequences(10, 0, seed=5)[0]
    det = SequenceDetector("GRU_SVDD", solver="qp", hidden=4, epochs=2, lam=0.3, contamination=0.05, threads=1).fit(X)
    assert det.predict(X[:1]).sum() == 0 or det.labels_[:40].all()


# --- convergence ----------------------------------------------------------------------------
def test_a_solver_that_did_not_converge_says_so(caplog):
    X, _ = outage_sequences(30, 3, seed=6)
    with caplog.at_level("WARNING", logger="licanom.detectors.sequence.detector"):
        det = SequenceDetector("LSTM_SVDD", solver="qp", hidden=4, epochs=1, tol=0.0, lam=0.3, threads=1).fit(X)
    assert det.converged_ is False and det.convergence_.converged is False
    assert "did not converge" in caplog.text and "LSTM_SVDD" in caplog.text
    metrics = det.convergence_.as_metrics()
    assert metrics["converged"] == 0.0 and metrics["outer_iterations"] == 1.0
    det = SequenceDetector("LSTM_SVDD", solver="qp", hidden=4, epochs=50, tol=0.5, lam=0.3, threads=1).fit(X)
    assert det.converged_ is True and det.convergence_.as_metrics()["converged"] == 1.0
    det = SequenceDetector("GRU_OCSVM", hidden=4, epochs=2, grad_tol=0.0, lam=0.3, threads=1).fit(X)
    assert det.converged_ is False and "grad_tol" in det.convergence_.reason


def test_an_smo_that_stops_on_its_cap_is_counted(monkeypatch):
    import licanom.detectors.sequence.detector as detector_module

    capped = lambda *a, **k: solve_dual(*a, **{**k, "max_iter": 1})  # noqa: E731
    monkeypatch.setattr(detector_module, "solve_dual", capped)
    X, _ = outage_sequences(30, 3, seed=7)
    det = SequenceDetector("GRU_SVDD", solver="qp", hidden=4, epochs=3, tol=1.0, lam=0.3, threads=1).fit(X)
    assert det.converged_ is False and det.convergence_.smo_unconverged >= 1
    assert "SMO" in det.convergence_.reason


# --- DeepLog --------------------------------------------------------------------------------
def event_sequences(n: int, seed: int, planted: bool = False) -> list[np.ndarray]:
    """One-hot event sequences (6 events) of the cycle 0-1-2-3 twice, with a noise column
    beside the events; ``planted`` turns the second 0 -> 1 into 0 -> 2 (both events seen in
    training, that transition never)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        events = np.arange(8) % 4
        if planted:
            events[5] = 2
        x = np.zeros((8, 7), dtype=np.float32)
        x[np.arange(8), events] = 1.0
        x[:, 6] = rng.uniform(0.4, 0.6, 8)
        out.append(x)
    return out


@pytest.fixture(scope="module")
def deeplog():
    from licanom.detectors.sequence import DeepLogDetector

    X = event_sequences(60, seed=0)
    return DeepLogDetector(window=8, top_g=1, hidden=16, layers=1, embedding=4, epochs=30, lr=0.01,
                           batch_size=32, event_columns=tuple(range(6)), seed=0, threads=1).fit(X)


def test_deeplog_flags_a_planted_unseen_transition(deeplog, tmp_path):
    normal, planted = event_sequences(20, seed=1), event_sequences(20, seed=2, planted=True)
    assert deeplog.predict(normal).sum() == 0 and (deeplog.misses(normal) == 0).all()
    assert deeplog.predict(planted).all() and (deeplog.misses(planted) >= 1).all()
    assert roc_auc_score(np.r_[np.zeros(20), np.ones(20)],
                         deeplog.decision_function(normal + planted)) >= 0.95
    unseen = [x.copy() for x in normal[:3]]
    for x in unseen:
        x[5, :6] = 0.0
        x[5, 5] = 1.0  # event 5, never in training
    assert deeplog.predict(unseen).all()
    cut = [x[:3] for x in normal[:5]]  # ends too early: the end is not among the top g
    assert deeplog.predict(cut).all()
    # a saved and loaded model scores identically
    from licanom.detectors.sequence import load_detector

    again = load_detector(deeplog.save(tmp_path / "deeplog.pt"))
    np.testing.assert_array_equal(again.decision_function(planted), deeplog.decision_function(planted))
    assert again.threshold_ == deeplog.threshold_ and again.event_columns == deeplog.event_columns
    assert deeplog.encode(planted).shape == (20, 16)
    steps = deeplog.step_scores(planted[:2])
    assert [len(s) for s in steps] == [len(x) + 1 for x in planted[:2]]  # each step and the end


def branching_sequences(n: int, seed: int, planted: bool = False) -> list[np.ndarray]:
    """Events 0 x 3 0 x 3 4 5 with x drawn from {1, 2} at each place (both normal: the next event
    after 0 is a coin toss); ``planted`` makes the second x a 4 (seen in training, never there)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        events = np.array([0, rng.integers(1, 3), 3, 0, 4 if planted else rng.integers(1, 3), 3, 4, 5])
        x = np.zeros((8, 7), dtype=np.float32)
        x[np.arange(8), events] = 1.0
        x[:, 6] = rng.uniform(0.4, 0.6, 8)
        out.append(x)
    return out


def test_deeplog_chooses_g_on_held_out_training_sequences(tmp_path):
    from licanom.detectors.sequence import DeepLogDetector, load_detector

    settings = dict(window=8, hidden=16, layers=1, embedding=4, epochs=30, lr=0.01, batch_size=32,
                    event_columns=tuple(range(6)), seed=0, threads=1)
    X = branching_sequences(80, seed=0)
    normal, planted = branching_sequences(20, seed=1), branching_sequences(20, seed=2, planted=True)
    # one candidate: a coin-toss event is a miss half the time, so normal sequences are flagged
    fixed = DeepLogDetector(top_g=1, **settings).fit(X)
    assert fixed.g_ == 1 and fixed.predict(normal).mean() > 0.5
    # chosen on a fifth of the training sequences held out: the smallest g flagging none of them
    det = DeepLogDetector(top_g=1, validation=0.2, validation_fpr=0.0, **settings).fit(X)
    assert det.n_validation_ == 16 and det.g_ == 2 and det.g_end_ == 1
    assert det.predict(normal).sum() == 0 and det.predict(planted).all()
    assert det.predict([x[:5] for x in normal[:5]]).all()  # ends too early: the end has one candidate
    again = load_detector(det.save(tmp_path / "chosen.pt"))
    assert (again.g_, again.g_end_) == (2, 1) == again.choose_g()
    assert det.choose_g(validation_fpr=0.99) == (1, 1)  # a budget that tolerates the coin tosses
    np.testing.assert_array_equal(again.decision_function(planted), det.decision_function(planted))
    with pytest.raises(ValueError, match="held out"):
        DeepLogDetector(validation=0.01, epochs=1).fit(event_sequences(3, seed=0))


def test_deeplog_is_registered_beside_the_ergen_models():
    from licanom.config import DetectConfig, SequenceConfig, TrainConfig
    from licanom.ops.detect import is_sequence_model, make_detector
    from licanom.detectors.sequence.sessions import EVENT_COLUMNS
    from licanom.detectors.sequence import SEQUENCE_MODELS, DeepLogDetector

    assert "DeepLog" in SEQUENCE_MODELS and is_sequence_model("DeepLog")
    assert isinstance(build_detector("DeepLog", window=3), DeepLogDetector)
    det = make_detector("DeepLog", TrainConfig(models=("DeepLog",)), DetectConfig(), SequenceConfig(mode="key"))
    assert det.event_columns == EVENT_COLUMNS and det.window == 10 and det.top_g == 9
    with pytest.raises(ValueError, match="event_columns"):
        DeepLogDetector(event_columns=(0, 9), epochs=1).fit(event_sequences(3, seed=0))
    with pytest.raises(ValueError, match="labelled anomalous"):
        DeepLogDetector(epochs=1).fit(event_sequences(3, seed=0), -np.ones(3))
    with pytest.raises(RuntimeError, match="not fitted"):
        DeepLogDetector().decision_function(event_sequences(3, seed=0))


def test_a_truncated_solve_reaches_the_results_and_the_tracker(monkeypatch, tmp_path):
    """The training flow's variant run: a sequence model whose SMO stops on its iteration cap is
    converged=False in its results row, in an MLflow metric and in a tag saying why."""
    from contextlib import contextmanager

    import licanom.detectors.sequence.detector as detector_module
    from licanom.config import Config
    from licanom.ops.detect import RESULT_COLUMNS
    from licanom.data.pipeline import prepare
    from licanom.ops.training import train_variant
    from tests.conftest import make_raw_log

    class Tracker:  # records what the training path sends to MLflow
        def __init__(self) -> None:
            self.metrics: dict[str, float] = {}
            self.tags: dict[str, str] = {}

        @contextmanager
        def run(self, *args, **kwargs):
            yield "run-1"

        def log_metrics(self, run_id, metrics, step=0) -> None:
            self.metrics.update({k: v for k, v in metrics.items() if v is not None})

        def set_tags(self, run_id, tags) -> None:
            self.tags.update(tags)

        def __getattr__(self, name):  # params, dataset, epochs, plots: not asserted here
            return lambda *args, **kwargs: None

    capped = lambda *a, **k: solve_dual(*a, **{**k, "max_iter": 1})  # noqa: E731
    monkeypatch.setattr(detector_module, "solve_dual", capped)
    cfg = Config(train={"models": ["LSTM_SVDD"], "epochs": 1, "threads": 1}, sequence={"solver": "qp", "hidden": 4},
                 output_dir=str(tmp_path))
    prepared = prepare(make_raw_log(1200), cfg)
    tracker = Tracker()
    variant = train_variant(tracker, cfg, prepared, "LSTM_SVDD", "parent", tmp_path / "work")
    row = variant.row.row(0, named=True)
    assert tuple(variant.row.columns) == RESULT_COLUMNS
    assert row["converged"] is False and "SMO" in row["convergence"]
    assert tracker.metrics["convergence/converged"] == 0.0 and tracker.metrics["convergence/smo_unconverged"] >= 1
    assert tracker.tags["converged"] == "false" and "SMO" in tracker.tags["convergence"]
