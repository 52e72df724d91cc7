"""Reconstruction-error detectors in the scikit-learn/PyOD style around the thesis's autoencoders.

    det = AutoencoderDetector("LSTM_AE_Deep2", threshold="M3", epochs=10).fit(X_train)
    det.decision_function(X)   # (n_chunks,) the chunk's reconstruction error, higher = worse
    det.predict(X)             # (n_chunks,) 1 where the error exceeds det.threshold_
    det.feature_errors(X)      # (n_chunks, n_features) the error of each column
    det.row_errors(X)          # (n_chunks, chunk_size) the error of each request
    det.errors(X)              # all of them at once (ReconstructionErrors)
    det.encode(X)              # (n_chunks, *bottleneck) the latent code

    AutoencoderDetector("TCN_AE", inputs="rows")  # the same network on the rows mode's chunks

``X`` is float32 of shape ``(n_chunks, chunk_size, n_features)`` (see licanom.data.chunk): the
thesis's 8 columns (``inputs="thesis"``, any encoder but "rows") or the rows mode's
``len(ROW_FEATURES)`` (``inputs="rows"``, licanom.data.encode.RowsEncoder). In the rows mode the
magnitude columns (:data:`licanom.data.encode.ROW_SCALED`, all ``log1p`` of seconds or counts) are
standardised with the training rows' median and interquartile range, the range at least one log
unit (:data:`ROW_SCALE_FLOOR`), kept with the model; the 0/1 columns enter as they are. The floor
matters where one licence model's fixed rhythm fills most training rows (a floating product's
heartbeats on a vendor that also sells node-locked keys): an IQR of a fraction of a log unit
would put every other model's ordinary rows ten or more units out, and their errors would drown
the strange rows'. The thesis's mode is left exactly as the thesis
has it.

The score of a chunk (``score``): ``"mean"``, the thesis's mean absolute error over the window;
``"topk"``, the mean error of its ``top_k`` worst requests (a request's error is its mean over
the columns), so that a few strange requests among a hundred ordinary ones are not averaged
away; ``"mean+topk"``, the sum of the two, which keeps a chunk that is strange all through (a
runaway client filling it) as high as one with a few strange requests (a brute-force try);
``"max-z"``, the larger of the two, each first standardised with the median and interquartile
range of the training chunks' values (kept with the model), so that neither drowns the other
where normal traffic mixes licence models and the worst requests of an ordinary chunk already
vary a lot (a sum lets the wider of the two decide the ranking alone).
``"auto"`` is ``"mean"`` for the thesis's inputs and ``"max-z"`` for the rows mode
(benchmarks/results/autoencoder-modes.md, benchmarks/results/autoencoders-nightly.md).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from licanom.detectors import thresholds as th
from licanom.detectors.base import BaseDetector
from licanom.detectors.decision import DECISIONS, decide
from licanom.detectors.autoencoders.nets import NETS, AutoencoderNet, build_net, tune_cpu_allocator

INPUTS: tuple[str, ...] = ("thesis", "rows")
SCORES: tuple[str, ...] = ("auto", "mean", "topk", "mean+topk", "max-z")
# The rows mode's smallest scale of a magnitude column, in log units (a factor e in seconds or counts).
ROW_SCALE_FLOOR = 1.0

log = logging.getLogger(__name__)
SAVE_FORMAT = 1


@dataclass(frozen=True)
class TrainingReport:
    """What a fit did: per-epoch losses, seconds, epochs run, whether it resumed, and where it ran
    (``"cpu"`` or ``"cuda:0"``: Lightning's ``accelerator="auto"`` picks a GPU when present)."""

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    seconds: float
    epochs_run: int
    resumed: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class ReconstructionErrors:
    """A batch of chunks' reconstruction errors (absolute, in the network's input units).

    ``rows``: ``(n, chunk_size)`` each request's mean over the columns; ``columns``:
    ``(n, n_features)`` each column's mean over the window; ``top_columns``: ``(n, n_features)``
    each column's mean over the chunk's ``top_k`` worst requests (what made them strange);
    ``score``: ``(n,)`` the detector's chunk score.
    """

    rows: np.ndarray
    columns: np.ndarray
    top_columns: np.ndarray
    score: np.ndarray


@dataclass
class AutoencoderDetector(BaseDetector):
    """An autoencoder of the thesis (by name) with a decision on its reconstruction error.

    Settings (stored as given; checked in :meth:`fit`):
      model: one of licanom.detectors.autoencoders.nets.NETS.
      inputs: "thesis" (the thesis's 8 columns) or "rows" (licanom.data.encode.ROW_FEATURES).
      score: the chunk score, "mean", "topk", "mean+topk", "max-z" or "auto" (see the module
        text); top_k: its k.
      threshold: "severity" (the calibrated 0-100, licanom.detectors.decision), "M2", "M3",
        "quantile", "pot", "budget" (from the training errors) or "M1" (retrains, thesis A.1;
        falls back to M3 when M1 finds none and says so in ``threshold_method_``).
      threshold_params: keyword arguments of the threshold function (e.g. (("bins", 20),)).
      epochs, batch_size, lr: training (Adam, MAE loss).
      val_fraction: share of the training chunks held out for ``val/loss`` and early stopping.
      patience: early-stopping patience in epochs (None: train all epochs).
      seed: seeds weights, shuffling and the validation split (repeatable on CPU).
      threads: torch intra-op threads while fitting/scoring (None: torch's default).
      accelerator: Lightning's accelerator ("auto" uses a GPU when present).
      checkpoint_dir: where to keep checkpoints so that an interrupted fit resumes.
      progress_bar: None shows Lightning's bar when stderr is a terminal.
    """

    family: ClassVar[str] = "autoencoder"
    reads: ClassVar[str] = "chunks"

    model: str = "LSTM_AE_Deep2"
    inputs: str = "thesis"
    score: str = "auto"
    top_k: int = 5
    threshold: str = "M3"
    threshold_params: tuple[tuple[str, Any], ...] = ()
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    val_fraction: float = 0.1
    patience: int | None = None
    seed: int = 0
    threads: int | None = None
    accelerator: str = "auto"
    checkpoint_dir: str | None = None
    progress_bar: bool | None = None
    m1_max_rounds: int = 5
    loggers: tuple[Any, ...] = field(default=(), repr=False)

    # fitted attributes (PyOD names)
    net_: AutoencoderNet | None = field(default=None, init=False, repr=False)
    decision_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    threshold_: float | None = field(default=None, init=False)
    threshold_method_: str | None = field(default=None, init=False)
    labels_: np.ndarray | None = field(default=None, init=False, repr=False)
    report_: TrainingReport | None = field(default=None, init=False, repr=False)
    center_: np.ndarray | None = field(default=None, init=False, repr=False)  # rows mode: the scaling
    scale_: np.ndarray | None = field(default=None, init=False, repr=False)
    # score "max-z": median and IQR of the training chunks' (mean, top-k) errors
    score_center_: np.ndarray | None = field(default=None, init=False, repr=False)
    score_scale_: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def features(self) -> tuple[str, ...]:
        """The names of the input columns (FEATURES or ROW_FEATURES)."""
        from licanom.data.encode import INPUT_FEATURES

        return INPUT_FEATURES[self.inputs]

    @property
    def score_method(self) -> str:
        """The chunk score in use: "mean", "topk", "mean+topk" or "max-z"."""
        if self.score == "auto":
            return "max-z" if self.inputs == "rows" else "mean"
        return self.score

    # --- training -----------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: None = None) -> AutoencoderDetector:
        """Train on chunks ``X`` (n, chunk_size, n_features); set the threshold from its errors."""
        X = _check_X(X)
        if self.model not in NETS:
            raise ValueError(f"unknown model {self.model!r}; valid: {', '.join(NETS)}")
        if self.threshold not in DECISIONS:
            raise ValueError(f"unknown decision {self.threshold!r}; valid: {', '.join(DECISIONS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown inputs {self.inputs!r}; valid: {', '.join(INPUTS)}")
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; valid: {', '.join(SCORES)}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if X.shape[2] != len(self.features):
            raise ValueError(f"inputs={self.inputs!r} has {len(self.features)} columns, X has {X.shape[2]}")
        self.center_, self.scale_ = self._fit_scaling(X)
        Xs = self._scaled(X)
        self.net_, self.report_ = self._train(Xs, self.epochs, self.checkpoint_dir)
        errors = self._errors(self.net_, Xs, fitting=True)
        self.score_center_, self.score_scale_ = self._fit_score_scaling(errors)
        self.decision_scores_ = self._chunk_score(errors)
        self._set_calibration(None)  # severity: calibrated on the training errors
        self.threshold_, self.threshold_method_ = self._threshold(Xs, self.decision_scores_)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int8)
        return self

    def _train(self, X: np.ndarray, epochs: int, checkpoint_dir: str | None) -> tuple[AutoencoderNet, TrainingReport]:
        import pytorch_lightning as L
        from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

        from licanom.detectors.autoencoders.module import STEPS_PER_CALL, AutoencoderModule, LossHistory, chunk_loader

        tune_cpu_allocator()  # keep activation buffers cached between steps (10-20% on CPU)
        L.seed_everything(self.seed, workers=True, verbose=False)
        net = build_net(self.model, chunk_size=X.shape[1], n_features=X.shape[2])
        module = AutoencoderModule(net, lr=self.lr)
        rng = np.random.default_rng(self.seed)
        n_val = int(round(len(X) * self.val_fraction)) if len(X) >= 10 else 0
        order = rng.permutation(len(X))
        X_t = torch.from_numpy(np.ascontiguousarray(X))
        train = X_t[np.sort(order[n_val:])]
        val = X_t[np.sort(order[:n_val])] if n_val else None

        history = LossHistory()
        callbacks: list[Any] = [history]
        if self.patience is not None and val is not None:
            callbacks.append(EarlyStopping(monitor="val/loss", patience=self.patience, mode="min"))
        ckpt_path = None
        if checkpoint_dir:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=1, every_n_epochs=1))
            last = Path(checkpoint_dir) / "last.ckpt"
            ckpt_path = str(last) if _readable_checkpoint(last) else None
        progress = self.progress_bar if self.progress_bar is not None else sys.stderr.isatty()
        quiet = _quiet_lightning()
        quiet.__enter__()
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=self.accelerator,
            devices=1,
            logger=list(self.loggers) if self.loggers else False,
            callbacks=callbacks,
            enable_checkpointing=bool(checkpoint_dir),
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=False,
        )
        t0 = time.perf_counter()
        try:
            with _threads(self.threads):
                fit_interruptible(
                    trainer, module,
                    train_dataloaders=chunk_loader(train, self.batch_size, shuffle=True, seed=self.seed,
                                                   steps=STEPS_PER_CALL),
                    val_dataloaders=chunk_loader(val, max(self.batch_size, 512), shuffle=False) if val is not None else None,
                    ckpt_path=ckpt_path,
                )
        finally:
            quiet.__exit__(None, None, None)
        seconds = time.perf_counter() - t0
        device = str(trainer.strategy.root_device)  # the module is back on the CPU after fit
        net = module.net.cpu().eval()  # scoring runs on the CPU, where the nightly scoring runs
        report = TrainingReport(
            train_loss=tuple(history.train), val_loss=tuple(history.val), seconds=seconds,
            epochs_run=int(trainer.current_epoch), resumed=ckpt_path is not None, device=device,
        )
        return net, report

    def _fit_scaling(self, X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Rows mode: median and IQR of the magnitude columns over the training rows (the IQR at
        least :data:`ROW_SCALE_FLOOR`)."""
        if self.inputs != "rows":
            return None, None
        from licanom.data.encode import ROW_FEATURES, ROW_SCALED

        rows = X.reshape(-1, X.shape[2])
        center = np.zeros(X.shape[2], dtype=np.float32)
        scale = np.ones(X.shape[2], dtype=np.float32)
        idx = [ROW_FEATURES.index(c) for c in ROW_SCALED]
        q25, q50, q75 = np.percentile(rows[:, idx], [25, 50, 75], axis=0)
        center[idx] = q50
        scale[idx] = np.maximum(q75 - q25, ROW_SCALE_FLOOR)
        return center, scale

    def _fit_score_scaling(self, errors: ReconstructionErrors) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Score "max-z": median and IQR of the training chunks' (mean, top-k) errors (an IQR of 0
        becomes the standard deviation, or 1 where that is 0 too); (None, None) for another score."""
        if self.score_method != "max-z":
            return None, None
        parts = np.stack([errors.columns.mean(axis=1), errors.top_columns.mean(axis=1)], axis=1)
        q25, q50, q75 = np.percentile(parts, [25, 50, 75], axis=0)
        spread = np.where(q75 - q25 > 0, q75 - q25, parts.std(axis=0))
        return q50, np.where(spread > 0, spread, 1.0)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        if self.center_ is None or self.scale_ is None:
            return X
        return ((X - self.center_) / self.scale_).astype(np.float32)

    def _threshold(self, X: np.ndarray, errors: np.ndarray) -> tuple[float, str]:
        return decide(self.threshold, X, errors, self._m1_fit_score, dict(self.threshold_params),
                         max_rounds=self.m1_max_rounds, seed=self.seed)

    def _m1_fit_score(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Train on ``train`` and score ``test`` (both already scaled)."""
        net, _ = self._train(train, self.epochs, None)
        stats = self._fit_score_scaling(self._errors(net, train, fitting=True))
        return self._chunk_score(self._errors(net, test, fitting=True), stats)

    def m1_threshold(self, X: np.ndarray) -> float | None:
        """M1 (thesis A.1) on ``X`` with this detector's settings; None for the thesis's "na"."""
        X = _check_X(X)
        if self.center_ is None and self.inputs == "rows":
            self.center_, self.scale_ = self._fit_scaling(X)
        return th.m1(self._scaled(X), self._m1_fit_score, max_rounds=self.m1_max_rounds, seed=self.seed)

    # --- scoring ------------------------------------------------------------------------
    def _net(self) -> AutoencoderNet:
        if self.net_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return self.net_

    def _errors(self, net: AutoencoderNet, Xs: np.ndarray, fitting: bool = False) -> ReconstructionErrors:
        """The errors of already-scaled chunks, in batches; ``fitting``: without the chunk score
        (NaN), which the "max-z" score's standardisation, fitted on them, must come first for
        (:meth:`_chunk_score`)."""
        n, length, d = Xs.shape
        k = min(self.top_k, length)
        rows = np.empty((n, length), dtype=np.float64)
        columns = np.empty((n, d), dtype=np.float64)
        top = np.empty((n, d), dtype=np.float64)
        with torch.inference_mode(), _threads(self.threads):
            for s in range(0, n, 2048):
                xb = torch.from_numpy(np.ascontiguousarray(Xs[s:s + 2048]))
                err = (net(xb) - xb).abs()  # (b, length, d)
                row = err.mean(dim=2)
                worst = row.topk(k, dim=1).indices  # (b, k)
                rows[s:s + 2048] = row.double().numpy()
                columns[s:s + 2048] = err.mean(dim=1).double().numpy()
                top[s:s + 2048] = err.gather(1, worst.unsqueeze(2).expand(-1, -1, d)).mean(dim=1).double().numpy()
        errors = ReconstructionErrors(rows=rows, columns=columns, top_columns=top, score=np.full(n, np.nan))
        return errors if fitting else replace(errors, score=self._chunk_score(errors))

    def _chunk_score(self, errors: ReconstructionErrors,
                     stats: tuple[np.ndarray | None, np.ndarray | None] | None = None) -> np.ndarray:
        """The chunk score of :attr:`score_method` from the errors; ``stats``: the "max-z"
        standardisation (default: the fitted one)."""
        mean = errors.columns.mean(axis=1)  # = the mean of the rows' errors
        worst = errors.top_columns.mean(axis=1)  # = the mean of the k worst rows' errors
        method = self.score_method
        if method == "max-z":
            center, scale = stats if stats is not None else (self.score_center_, self.score_scale_)
            if center is None or scale is None:
                raise RuntimeError('score "max-z" needs the training errors\' standardisation: call fit() first')
            return np.maximum((mean - center[0]) / scale[0], (worst - center[1]) / scale[1])
        return mean if method == "mean" else worst if method == "topk" else mean + worst

    def errors(self, X: np.ndarray) -> ReconstructionErrors:
        """Per request, per column, per column over the worst requests, and the chunk score."""
        net = self._net()
        X = _check_X(X, net.chunk_size, net.n_features)
        return self._errors(net, self._scaled(X))

    def feature_errors(self, X: np.ndarray) -> np.ndarray:
        """Mean absolute error of each column over the window, shape ``(n_chunks, n_features)``."""
        return self.errors(X).columns

    def explain(self, X: np.ndarray) -> np.ndarray:
        """Each input column's error over the chunk's worst requests ``(n_chunks, n_features)``:
        which of :attr:`features` the network could not reconstruct."""
        return self.errors(X).top_columns

    def explain_columns(self) -> tuple[str, ...]:
        return self.features

    def row_errors(self, X: np.ndarray) -> np.ndarray:
        """Mean absolute error of each request over the columns, shape ``(n_chunks, chunk_size)``."""
        return self.errors(X).rows

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per chunk, shape ``(n_chunks,)``: the MAE over the window (thesis,
        ``score="mean"``), the mean error of the ``top_k`` worst requests (``"topk"``), their
        sum (``"mean+topk"``) or the larger of the two standardised (``"max-z"``)."""
        return self.errors(X).score

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for chunks whose score exceeds ``threshold_``, else 0 (int8, ``(n_chunks,)``)."""
        if self.threshold_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The encoder's latent code, shape ``(n_chunks, *bottleneck)``."""
        net = self._net()
        X = _check_X(X, net.chunk_size, net.n_features)
        X = self._scaled(X)
        parts = []
        with torch.inference_mode(), _threads(self.threads):
            for s in range(0, len(X), 2048):
                parts.append(net.encode(torch.from_numpy(np.ascontiguousarray(X[s:s + 2048]))).numpy())
        return np.concatenate(parts) if parts else np.empty((0, *net.bottleneck), dtype=np.float32)

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to one file (tensors and plain values only)."""
        net = self._net()
        settings = {k: getattr(self, k) for k in (
            "model", "inputs", "score", "top_k", "threshold", "epochs", "batch_size", "lr", "val_fraction", "patience",
            "seed", "m1_max_rounds",
        )}
        settings["threshold_params"] = [list(p) for p in self.threshold_params]
        payload = {
            "format": SAVE_FORMAT,
            "settings": settings,
            "chunk_size": net.chunk_size,
            "n_features": net.n_features,
            "state_dict": net.state_dict(),
            "threshold": self.threshold_,
            "threshold_method": self.threshold_method_,
            "decision_scores": torch.from_numpy(np.asarray(self.decision_scores_, dtype=np.float64)),
            "train_loss": list(self.report_.train_loss) if self.report_ else [],
            "val_loss": list(self.report_.val_loss) if self.report_ else [],
            "seconds": self.report_.seconds if self.report_ else 0.0,
            "device": self.report_.device if self.report_ else "cpu",
        }
        if self.center_ is not None and self.scale_ is not None:
            payload["center"] = torch.from_numpy(np.asarray(self.center_, dtype=np.float32))
            payload["scale"] = torch.from_numpy(np.asarray(self.scale_, dtype=np.float32))
        if self.score_center_ is not None and self.score_scale_ is not None:
            payload["score_center"] = torch.from_numpy(np.asarray(self.score_center_, dtype=np.float64))
            payload["score_scale"] = torch.from_numpy(np.asarray(self.score_scale_, dtype=np.float64))
        return save_payload(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> AutoencoderDetector:
        payload = load_payload(path, SAVE_FORMAT)
        settings = dict(payload["settings"])
        settings["threshold_params"] = tuple(tuple(p) for p in settings["threshold_params"])
        det = cls(**settings)
        if "score_center" in payload:
            det.score_center_, det.score_scale_ = payload["score_center"].numpy(), payload["score_scale"].numpy()
        elif det.score_method == "max-z":  # saved before "max-z" was the rows mode's "auto": what it was fitted with
            det.score = "mean+topk"
        net = build_net(det.model, chunk_size=payload["chunk_size"], n_features=payload["n_features"])
        net.load_state_dict(payload["state_dict"])
        det.net_ = net.eval()
        if "center" in payload:
            det.center_, det.scale_ = payload["center"].numpy(), payload["scale"].numpy()
        det.threshold_ = payload["threshold"]
        det.threshold_method_ = payload["threshold_method"]
        det.decision_scores_ = payload["decision_scores"].numpy()
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int8)
        det.report_ = TrainingReport(
            tuple(payload["train_loss"]), tuple(payload["val_loss"]), payload["seconds"], len(payload["train_loss"]),
            device=payload.get("device", "cpu"),
        )
        return det


def save_payload(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a detector's payload (tensors and plain values) atomically: a temporary file, then a
    rename, so a half-written model is never left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_payload(path: str | Path, expected_format: int) -> dict[str, Any]:
    """A payload written by :func:`save_payload` (tensors and plain values only), format checked."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != expected_format:
        raise ValueError(f"{path}: unsupported detector file format {payload.get('format')!r}")
    return payload


def _readable_checkpoint(path: Path) -> bool:
    """True when ``path`` holds a whole checkpoint; a truncated one (a run killed while writing
    it) is removed, so that the rerun restarts cleanly instead of failing."""
    if not path.exists():
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is treated the same way
        log.warning("checkpoint %s is unreadable (%s): training starts from scratch", path, err)
        path.unlink(missing_ok=True)
        return False
    return True


def _check_X(X: np.ndarray, chunk_size: int | None = None, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"X must have shape (n_chunks, chunk_size, n_features), got {X.shape}")
    if len(X) == 0:
        raise ValueError("X holds no chunks")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    if chunk_size is not None and X.shape[1:] != (chunk_size, n_features):
        raise ValueError(f"X has chunks of shape {X.shape[1:]}, the model was fitted on {(chunk_size, n_features)}")
    return X


class _threads:
    """Set torch's intra-op threads for a block, then restore them."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        if self.n:
            torch.set_num_threads(self.old)


class _quiet_lightning:
    """Silence Lightning's start-up chatter (GPU/TPU availability, tips); keep real warnings."""

    def __enter__(self) -> None:
        self.levels = {}
        for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
            logger = logging.getLogger(name)
            self.levels[name] = logger.level
            logger.setLevel(logging.WARNING)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*The number of training batches.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        warnings.filterwarnings("ignore", message=".*litlogger.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")

    def __exit__(self, *exc: object) -> None:
        self.warnings.__exit__(*exc)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


def fit_interruptible(trainer: Any, module: Any, **kwargs: Any) -> None:
    """``trainer.fit(module, **kwargs)``, with Ctrl-C raised again as :class:`KeyboardInterrupt`.

    On Ctrl-C Lightning tears the fit down, sets SIGINT to ignored and calls ``sys.exit(1)``: a
    caller would take that for a failure and a terminal's next Ctrl-C would be lost. Here the
    interrupt reaches the caller as one (``licanom``: "interrupted", exit 130) and SIGINT's handler
    is put back."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        trainer.fit(module, **kwargs)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and previous is not None and signal.getsignal(signal.SIGINT) != previous:
            signal.signal(signal.SIGINT, previous)
