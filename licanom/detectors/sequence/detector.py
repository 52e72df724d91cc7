"""LSTM/GRU + OC-SVM/SVDD detectors (Ergen, Mirza & Kozat) in the scikit-learn/PyOD style.

    det = SequenceDetector("GRU_SVDD", solver="qp", hidden=16, lam=0.05).fit(X)
    det.decision_function(X)   # (n,) higher = more anomalous; > 0 is outside the boundary
    det.predict(X)             # (n,) int8, 1 where the score exceeds det.threshold_
    det.encode(X)              # (n, hidden), or (n, 2·hidden) for a pair of poolings: the pooled features h̄

``X`` is a list of float arrays ``(n_i, n_features)`` of any lengths ``n_i ≥ 1``, or one array
``(n, T, n_features)`` of fixed chunks. ``y`` (optional, ``(n,)``): +1 normal, -1 anomaly,
0 unknown.

Choices:

* ``lam`` is the sheet's λ ∈ (0, 1] (ν-like): every unlabelled sequence has slack weight
  ``C = 1/(nλ)`` with ``n`` the number of training sequences. Labelled ones have ``C_L``
  (``labeled_weight``; None: the same ``1/(nλ)``) and enter with their label ``y``:
  OC-SVM ``y (wᵀh̄ − ρ) ≥ −ξ``, SVDD ``y (R² − ‖h̄ − c‖²) ≥ −ξ``. All labelled: supervised.
* ``tau`` is the smoothing of the hinge in ``F_τ`` (solver "gradient"); the smoothed and exact
  objectives differ by at most ``log(2)/τ`` per unit of slack weight.
* ``decision_function`` = OC-SVM ``ρ − wᵀh̄``, SVDD ``‖h̄ − c‖² − R²``: the sign-flipped margin
  of the paper's ``l(X)``, so higher = more anomalous and the model's own boundary is 0.
  ``threshold_`` is the boundary 0 unless ``contamination`` is set, in which case at most that
  share of the training scores lies above it; either way it sits between two distinct training
  scores, never on a tie (licanom.detectors.sequence.decide), and ``predict`` flags strictly above it.
* ``converged_`` (and ``convergence_``, fields for a metrics store): qp converged when the
  primal settled within ``tol`` and every SMO solve reached its KKT tolerance; gradient when
  the final SMO converged and the last epoch changed ``F_τ`` by at most ``grad_tol``
  (relative). A model that did not converge logs a warning saying so.
* solver "gradient": joint stochastic gradient on ``F_τ`` through Lightning (length-bucketed
  mini-batches; each batch's objective is an unbiased estimate of ``F_τ``); the head starts
  from the exact dual solution at the initial features. ``epochs`` passes over the data.
* solver "qp": outer iterations of [SMO to convergence with θ fixed (warm-started), record the
  primal objective with the exact hinge, one Cayley step of θ with α fixed]. The θ step
  descends the primal optimum ``P(θ) = −f(α*, θ)`` (Danskin), i.e. ascends the dual objective
  ``f`` in θ: OC-SVM ``−½‖Σ α_i y_i h̄_i‖²``, SVDD ``Σ α_i y_i ‖h̄_i − c‖²``. So both solvers
  minimise the same primal. Only support vectors (α > 0) are run forward and backward.
  The step size adapts: a step that lowers ``P`` is kept and the next tried twice as long, one
  that does not is undone and halved (a fixed ``lr`` moved the gate weights by about 0.02 in
  ten steps on HDFS: the network never trained). At most ``epochs`` trial steps; converged when a kept step
  changes ``P`` by at most ``tol·|P|`` or no step down to ``lr/1024`` lowers it. The head is
  always the dual solution at the final θ.
* The recurrent gate weights stay orthonormal throughout (see licanom.detectors.sequence.nets).
* ``accelerator`` defaults to "cpu": these small recurrent nets and an SMO in numpy gain
  little from a GPU. "auto"/"gpu" use CUDA when present (not exercised by the tests).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from licanom.detectors.base import BaseDetector
from licanom.detectors.autoencoders.detector import (_quiet_lightning, _threads, fit_interruptible, load_payload,
                                                     save_payload)
from licanom.detectors.sequence.data import BucketBatchSampler, Sequences, TrainingSet, length_batches, whole_batch
from licanom.detectors.sequence.decide import Convergence, tie_safe_threshold
from licanom.detectors.sequence.nets import POOLINGS, SequenceSVM, StiefelSGD
from licanom.detectors.sequence.svm import DualSolution, feasible_start, primal_objective, solve_dual

log = logging.getLogger(__name__)
SAVE_FORMAT = 1  # an optional "convergence" entry was added later; older files load without it
ERGEN_MODELS: tuple[str, ...] = ("LSTM_OCSVM", "LSTM_SVDD", "GRU_OCSVM", "GRU_SVDD")
NEXT_EVENT_MODELS: tuple[str, ...] = ("DeepLog",)
# every sequence model, by name: the joint recurrent + one-class SVM models and the next-event model
SEQUENCE_MODELS: tuple[str, ...] = (*ERGEN_MODELS, *NEXT_EVENT_MODELS)
SOLVERS: tuple[str, ...] = ("gradient", "qp")
SCORE_BATCH = 1024

SequenceInput = np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...]


@dataclass(frozen=True)
class TrainingHistory:
    """Per epoch ("gradient": mean batch ``F_τ``) or per outer iteration ("qp": the primal
    objective with the exact hinge, entry 0 before any θ step): objective and seconds.
    ``converged``: "qp" stopped on ``tol``; None for "gradient" (runs every epoch)."""

    objective: tuple[float, ...]
    seconds: tuple[float, ...]
    converged: bool | None


@dataclass
class SequenceDetector(BaseDetector):
    """A jointly trained recurrent feature extractor and one-class SVM (by ``model`` name).

    Settings (stored as given; checked in :meth:`fit`):
      model: one of SEQUENCE_MODELS (cell _ head).
      solver: "gradient" (smoothed objective, Lightning) or "qp" (SMO + Cayley steps).
      hidden: size m of the recurrent state and of the pooled features.
      pooling: "mean-max" (the mean and each unit's largest value over the steps, side by side:
      2·hidden features), "max", "mean", "last" (final state) or "max-min";
      unit_norm: the pooled features scaled to length 1 (licanom.detectors.sequence.nets).
      lam: λ ∈ (0, 1]; tau: hinge smoothing (gradient); lr: step size of every update.
      epochs: passes over the data (gradient) or most trial θ steps (qp); tol: qp's stopping rule.
      batch_size: sequences per batch (training, and per θ-step batch in qp).
      labeled_weight: ``C_L`` of labelled sequences (None: ``1/(nλ)``).
      contamination: None (threshold at the boundary, 0) or the share flagged in training.
      seed: weights and shuffling (repeatable on CPU); threads: torch intra-op threads.
      accelerator: "cpu", "auto" or "gpu"; progress_bar: Lightning's bar (gradient solver).
      loggers: Lightning loggers that receive ``train/loss`` per epoch (both solvers).
    """

    family: ClassVar[str] = "sequence"
    reads: ClassVar[str] = "chunks"  # or per-entity sequences (licanom.detectors.sequence.sessions), of any length

    model: str = "LSTM_OCSVM"
    solver: str = "gradient"
    hidden: int = 16
    pooling: str = "mean-max"
    unit_norm: bool = True
    lam: float = 0.05
    tau: float = 100.0
    epochs: int = 30
    lr: float = 0.02
    batch_size: int = 64
    tol: float = 1e-4
    grad_tol: float = 1e-2
    labeled_weight: float | None = None
    contamination: float | None = None
    seed: int = 0
    threads: int | None = None
    accelerator: str = "cpu"
    progress_bar: bool = False
    loggers: tuple[Any, ...] = field(default=(), repr=False)

    # fitted attributes (PyOD names)
    net_: SequenceSVM | None = field(default=None, init=False, repr=False)
    n_features_: int | None = field(default=None, init=False)
    decision_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    threshold_: float | None = field(default=None, init=False)
    labels_: np.ndarray | None = field(default=None, init=False, repr=False)
    w_: np.ndarray | None = field(default=None, init=False, repr=False)
    rho_: float | None = field(default=None, init=False)
    c_: np.ndarray | None = field(default=None, init=False, repr=False)
    radius2_: float | None = field(default=None, init=False)
    alpha_: np.ndarray | None = field(default=None, init=False, repr=False)
    history_: TrainingHistory | None = field(default=None, init=False, repr=False)
    converged_: bool | None = field(default=None, init=False)
    convergence_: Convergence | None = field(default=None, init=False, repr=False)
    _smo_unconverged: int = field(default=0, init=False, repr=False)
    _qp_trials: int = field(default=0, init=False, repr=False)
    _qp_stop: str = field(default="", init=False, repr=False)

    # --- training -----------------------------------------------------------------------
    def fit(self, X: SequenceInput, y: np.ndarray | None = None) -> SequenceDetector:
        """Train on sequences ``X``; ``y`` ``(n,)`` in {+1 normal, −1 anomaly, 0 unknown} or None."""
        self._check_settings()
        data = Sequences(X)
        labels = _check_y(y, len(data))
        n = len(data)
        sign = np.where(labels < 0, -1.0, 1.0)
        c_u = 1.0 / (n * self.lam)
        c_l = c_u if self.labeled_weight is None else float(self.labeled_weight)
        C = np.where(labels == 0, c_u, c_l)
        feasible_start(sign, C)  # raises early, with advice, when the SVM has no solution
        torch.manual_seed(self.seed)
        self._smo_unconverged = 0
        net = SequenceSVM(self.model, data.n_features, self.hidden, self.pooling, self.unit_norm)
        with _threads(self.threads):
            if self.solver == "qp":
                alpha, history = self._fit_qp(net, data, sign, C)
            else:
                alpha, history = None, self._fit_gradient(net, data, sign, C)
        self.net_ = net.cpu().eval()
        self.n_features_ = data.n_features
        self.alpha_ = alpha
        self.history_ = history
        self._set_head_attributes()
        self.convergence_ = self._convergence(history)
        self.converged_ = self.convergence_.converged
        if not self.converged_:
            log.warning("%s (%s solver) did not converge: %s", self.model, self.solver, self.convergence_.reason)
        self.decision_scores_ = self._scores(data)
        self.threshold_ = tie_safe_threshold(self.decision_scores_, self.contamination)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int8)
        return self

    def _convergence(self, history: TrainingHistory) -> Convergence:
        obj = history.objective
        # relative change of the objective over the last step, as qp's stopping rule measures it
        change = (abs(obj[-1] - obj[-2]) / abs(obj[-2]) if obj[-2] else float(obj[-1] != obj[-2])) \
            if len(obj) >= 2 else None
        smo = self._smo_unconverged
        smo_note = f"; {smo} SMO solve(s) stopped on their iteration cap" if smo else ""
        if self.solver == "qp":
            steps = len(obj) - 1
            trials = getattr(self, "_qp_trials", steps)
            tried = f"{steps} θ steps kept of {trials} tried"
            if history.converged and not smo:
                return Convergence(True, f"{self._qp_stop or 'primal settled'} after {tried}", steps, smo, change)
            why = (f"{self._qp_stop or 'primal settled'} after {tried}" if history.converged
                   else f"stopped after {tried} (epochs) with relative change "
                        f"{'n/a' if change is None else f'{change:.3g}'} > tol {self.tol:g}")
            return Convergence(False, why + smo_note, steps, smo, change)
        if change is None:
            return Convergence(False, f"one epoch only: no change to judge{smo_note}", len(obj), smo, None)
        if change <= self.grad_tol and not smo:
            return Convergence(True, f"last epoch changed F_τ by {change:.3g} <= grad_tol {self.grad_tol:g}",
                               len(obj), smo, change)
        return Convergence(False, f"last epoch changed F_τ by {change:.3g} (grad_tol {self.grad_tol:g}){smo_note}",
                           len(obj), smo, change)

    def _check_settings(self) -> None:
        if self.model not in ERGEN_MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid: {', '.join(ERGEN_MODELS)}")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; valid: {', '.join(SOLVERS)}")
        if not 0.0 < self.lam <= 1.0:
            raise ValueError(f"lam must be in (0, 1], got {self.lam}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("hidden, epochs and batch_size must be >= 1")
        if self.tau <= 0 or self.lr <= 0 or self.tol < 0 or self.grad_tol < 0:
            raise ValueError("tau and lr must be > 0, tol and grad_tol >= 0")
        if self.labeled_weight is not None and self.labeled_weight <= 0:
            raise ValueError(f"labeled_weight must be > 0, got {self.labeled_weight}")
        if self.contamination is not None and not 0.0 < self.contamination < 1.0:
            raise ValueError(f"contamination must be in (0, 1), got {self.contamination}")
        if self.accelerator not in ("cpu", "auto", "gpu", "cuda"):
            raise ValueError(f"unknown accelerator {self.accelerator!r}; valid: cpu, auto, gpu")

    def _device(self) -> torch.device:
        if self.accelerator == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda")

    def _solve(self, net: SequenceSVM, data: Sequences, sign: np.ndarray, C: np.ndarray,
               alpha0: np.ndarray | None = None) -> tuple[DualSolution, np.ndarray]:
        H = _encode(net, data, SCORE_BATCH).double().numpy()
        sol = solve_dual(net.head.dual_kind, H, C, y=sign, alpha0=alpha0)
        if not sol.converged:
            self._smo_unconverged += 1
            log.warning("SMO stopped after %d iterations with KKT gap %.3g", sol.iterations, sol.gap)
        return sol, H

    def _fit_gradient(self, net: SequenceSVM, data: Sequences, sign: np.ndarray, C: np.ndarray) -> TrainingHistory:
        import pytorch_lightning as L
        from torch.utils.data import DataLoader

        from licanom.detectors.sequence.module import SequenceSVMModule

        sol, _ = self._solve(net, data, sign, C)  # start the head at the exact SVM of θ₀
        net.head.set_from(sol)
        module = SequenceSVMModule(net, lr=self.lr, tau=self.tau)
        loader = DataLoader(
            TrainingSet(data, sign, C * len(data)),
            batch_sampler=BucketBatchSampler(data.lengths, self.batch_size, self.seed),
            collate_fn=whole_batch, num_workers=0,
        )
        quiet = _quiet_lightning()
        quiet.__enter__()
        try:
            trainer = L.Trainer(
                max_epochs=self.epochs,
                accelerator="gpu" if self._device().type == "cuda" else "cpu",
                devices=1,
                logger=list(self.loggers) if self.loggers else False,
                enable_checkpointing=False,
                enable_progress_bar=bool(self.progress_bar and sys.stderr.isatty()),
                enable_model_summary=False,
                num_sanity_val_steps=0,
                limit_val_batches=0,
                use_distributed_sampler=False,
                deterministic=False,
            )
            fit_interruptible(trainer, module, train_dataloaders=loader)
        finally:
            quiet.__exit__(None, None, None)
        net.cpu()
        sol, _ = self._solve(net, data, sign, C)  # the exact head for the trained θ (F_∞'s minimiser)
        net.head.set_from(sol)
        return TrainingHistory(tuple(module.history), tuple(module.seconds), None)

    def _fit_qp(self, net: SequenceSVM, data: Sequences, sign: np.ndarray,
                C: np.ndarray) -> tuple[np.ndarray, TrainingHistory]:
        """Alternate SMO (θ fixed) and Cayley steps of θ (α fixed) with a monotone step-size rule.

        Every trial step costs one SMO solve, which the next step needs anyway. A step that
        lowers the primal ``P`` is kept and the next one tried twice as long; one that does not
        is undone and the step halved. At most ``epochs`` trials; converged when a kept step
        changes ``P`` by at most ``tol·|P|``, or when no step down to ``lr/1024`` lowers it
        (θ is then stationary at the resolution that matters).
        """
        device = self._device()
        net.to(device)
        opt = StiefelSGD(net.param_groups(self.lr, train_head=False), lr=self.lr)
        objective: list[float] = []
        seconds: list[float] = []
        converged = False
        t0 = time.perf_counter()
        sol, H = self._solve(net, data, sign, C)
        net.head.set_from(sol)
        objective.append(primal_objective(sol.kind, H, sol.coef, sol.offset, sign, C))
        seconds.append(time.perf_counter() - t0)
        self._log_objective(objective[-1], 0)
        step, floor = self.lr, self.lr / 1024
        self._qp_trials, self._qp_stop = 0, ""
        undone = 0.0  # seconds of undone trials, counted with the next kept step
        for _ in range(self.epochs):
            t0 = time.perf_counter()
            self._qp_trials += 1
            kept = {k: v.detach().clone() for k, v in net.encoder.state_dict().items()}
            for group in opt.param_groups:
                group["lr"] = step
            self._theta_step(net, opt, data, sign, sol, device)
            trial, H_trial = self._solve(net, data, sign, C, alpha0=sol.alpha)
            value = primal_objective(trial.kind, H_trial, trial.coef, trial.offset, sign, C)
            if value >= objective[-1]:  # no descent: undo the step, try a shorter one
                net.encoder.load_state_dict(kept)
                undone += time.perf_counter() - t0
                step /= 2
                if step < floor:
                    converged, self._qp_stop = True, "no θ step down to lr/1024 lowers the primal"
                    break
                continue
            sol = trial
            net.head.set_from(sol)
            objective.append(value)
            seconds.append(time.perf_counter() - t0 + undone)
            undone = 0.0
            self._log_objective(value, len(objective) - 1)
            step *= 2
            if abs(objective[-1] - objective[-2]) <= self.tol * abs(objective[-2]):
                converged, self._qp_stop = True, f"primal settled within tol {self.tol:g}"
                break
        seconds[-1] += undone
        net.head.set_from(sol)
        return sol.alpha, TrainingHistory(tuple(objective), tuple(seconds), converged)

    def _log_objective(self, value: float, step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics({"train/loss": value}, step=step)

    def _theta_step(self, net: SequenceSVM, opt: StiefelSGD, data: Sequences, sign: np.ndarray,
                    sol: DualSolution, device: torch.device) -> None:
        """One step of θ on ``−f(α, θ)`` with α fixed; the gradient is accumulated over the SVs."""
        net.train()
        opt.zero_grad()
        coef = torch.as_tensor(sol.coef, dtype=torch.float32, device=device)
        ay = sol.alpha * sign
        sv = np.flatnonzero(sol.alpha > 0)
        for part in length_batches(data.lengths[sv], self.batch_size):
            idx = sv[part]
            x, lengths = data.batch(idx)
            h = net.encoder(x.to(device), lengths)
            a = torch.as_tensor(ay[idx], dtype=torch.float32, device=device)
            if net.head.kind == "OCSVM":
                loss = -(coef * (a.unsqueeze(1) * h).sum(dim=0)).sum()  # ∇ of −½‖Σ α y h̄‖²
            else:
                loss = (a * ((h - coef) ** 2).sum(dim=1)).sum()  # ∇ of Σ α y ‖h̄ − c‖² (Σ α y = 1)
            loss.backward()
        opt.step()
        net.eval()

    def _set_head_attributes(self) -> None:
        net = self._net()
        coef = net.head.coef.detach().double().numpy().copy()
        offset = float(net.head.offset.detach())
        if net.head.kind == "OCSVM":
            self.w_, self.rho_, self.c_, self.radius2_ = coef, offset, None, None
        else:
            self.w_, self.rho_, self.c_, self.radius2_ = None, None, coef, offset

    # --- scoring ------------------------------------------------------------------------
    def _net(self) -> SequenceSVM:
        if self.net_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return self.net_

    def _data(self, X: SequenceInput) -> Sequences:
        return Sequences(X, n_features=self._net().encoder.n_features)

    def _scores(self, data: Sequences) -> np.ndarray:
        net = self._net()
        with torch.inference_mode(), _threads(self.threads):
            return net.head.score(_encode(net, data, SCORE_BATCH)).double().numpy()

    def encode(self, X: SequenceInput) -> np.ndarray:
        """The pooled recurrent features ``h̄``, float32 ``(n, hidden)`` (``2·hidden`` for a pair of poolings)."""
        data = self._data(X)
        with _threads(self.threads):
            return _encode(self._net(), data, SCORE_BATCH).numpy()

    def decision_function(self, X: SequenceInput) -> np.ndarray:
        """Anomaly score per sequence ``(n,)``: OC-SVM ``ρ − wᵀh̄``, SVDD ``‖h̄ − c‖² − R²``."""
        return self._scores(self._data(X))

    def predict(self, X: SequenceInput) -> np.ndarray:
        """1 for sequences whose score exceeds ``threshold_``, else 0 (int8, ``(n,)``)."""
        if self.threshold_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to one file (tensors and plain values only)."""
        net = self._net()
        settings = {k: getattr(self, k) for k in (
            "model", "solver", "hidden", "pooling", "unit_norm", "lam", "tau", "epochs", "lr", "batch_size", "tol",
            "grad_tol", "labeled_weight", "contamination", "seed",
        )}
        history = self.history_ or TrainingHistory((), (), None)
        payload = {
            "format": SAVE_FORMAT,
            "settings": settings,
            "n_features": net.encoder.n_features,
            "state_dict": net.state_dict(),
            "threshold": self.threshold_,
            "decision_scores": torch.from_numpy(np.asarray(self.decision_scores_, dtype=np.float64)),
            "alpha": None if self.alpha_ is None else torch.from_numpy(self.alpha_),
            "history": {"objective": list(history.objective), "seconds": list(history.seconds),
                        "converged": history.converged},
            "convergence": None if self.convergence_ is None else vars(self.convergence_).copy(),
        }
        return save_payload(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> SequenceDetector:
        payload = load_payload(path, SAVE_FORMAT)
        # files written before pooling was a setting pooled by the mean, unscaled
        det = cls(**{"pooling": "mean", "unit_norm": False, **payload["settings"]})
        net = SequenceSVM(det.model, payload["n_features"], det.hidden, det.pooling, det.unit_norm)
        net.load_state_dict(payload["state_dict"])
        det.net_ = net.eval()
        det.n_features_ = payload["n_features"]
        det.threshold_ = payload["threshold"]
        det.decision_scores_ = payload["decision_scores"].numpy()
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int8)
        det.alpha_ = None if payload["alpha"] is None else payload["alpha"].numpy()
        h = payload["history"]
        det.history_ = TrainingHistory(tuple(h["objective"]), tuple(h["seconds"]), h["converged"])
        if payload.get("convergence") is not None:
            det.convergence_ = Convergence(**payload["convergence"])
            det.converged_ = det.convergence_.converged
        det._set_head_attributes()
        return det


def build_detector(model: str, **settings: Any) -> Any:
    """The detector named ``model`` (one of SEQUENCE_MODELS) with the given settings: a
    :class:`SequenceDetector` or, for "DeepLog", a :class:`licanom.detectors.sequence.deeplog.DeepLogDetector`."""
    if model not in SEQUENCE_MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(SEQUENCE_MODELS)}")
    if model in NEXT_EVENT_MODELS:
        from licanom.detectors.sequence.deeplog import DeepLogDetector

        return DeepLogDetector(model=model, **settings)
    return SequenceDetector(model=model, **settings)


def load_detector(path: str | Path) -> Any:
    """A saved sequence model of either kind, by the model name stored in it."""
    payload = load_payload(path, SAVE_FORMAT)
    if payload["settings"]["model"] in NEXT_EVENT_MODELS:
        from licanom.detectors.sequence.deeplog import DeepLogDetector

        return DeepLogDetector.load(path)
    return SequenceDetector.load(path)


def _check_y(y: np.ndarray | None, n: int) -> np.ndarray:
    if y is None:
        return np.zeros(n, dtype=np.int8)
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) like X, got {y.shape}")
    if not np.isin(y, (-1, 0, 1)).all():
        raise ValueError("y must hold +1 (normal), -1 (anomaly) or 0 (unknown)")
    return y.astype(np.int8)


def _encode(net: SequenceSVM, data: Sequences, batch_size: int) -> Tensor:
    """Pooled features ``(n, hidden)`` float32 on the CPU, in ``data``'s order, without gradients."""
    device = next(net.parameters()).device
    out = torch.empty(len(data), net.encoder.out_features)
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        for idx in length_batches(data.lengths, batch_size):
            x, lengths = data.batch(idx)
            out[torch.from_numpy(idx)] = net.encoder(x.to(device), lengths).float().cpu()
    net.train(was_training)
    return out
