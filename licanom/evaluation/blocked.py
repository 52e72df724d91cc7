"""Measure every detector and decision rule on simulated vendors with planted anomalies.

Over vendors of each licensing profile (:data:`licanom.sim.simulate.PROFILES`) and several seeds,
every registered detector is fitted without labels and judged against the simulator's labels:

* detectors (a registry of :class:`Candidate` factories, one per name): the thesis's eight
  autoencoders, the four sequence models (LSTM/GRU + OC-SVM/SVDD), the context models
  ``Tail_context``, ``IForest_context`` and ``LOF_context`` (:mod:`licanom.detectors.context`), and the classical
  baselines scikit-learn ``IsolationForest`` and ``LocalOutlierFactor(novelty=True)``, each on
  the chunks' summary vectors (``distinct_*``) and on the flattened chunks ``(n_chunks, size * 8)``;
* decisions: the thresholds of :mod:`licanom.detectors.thresholds` on the detector's training scores
  (``M2``, ``M3``, ``quantile``, ``pot``, ``budget``, and ``M1`` when asked: it retrains), clustering of the
  latent code (``GMM``, ``KMeans``) for detectors that have one (``encode``), and ``own``, the
  baselines' own scikit-learn ``predict`` (``contamination="auto"``: IsolationForest's fixed
  offset -0.5, LOF's 1.5; no contamination share is given to any detector);
* ``oracle``, an upper bound and not a usable decision: the out-of-fold scores cut at the
  threshold that lets ``EvalSettings.oracle_budget`` false alarms per 10,000 chunks through,
  chosen *with the labels*. It shows how much of a detector's ranking a well-placed
  threshold would turn into found events; :func:`recommend` never picks it.

Protocol (``EvalSettings.protocol``). The simulator plants anomalies all through the log, and a
vendor's few events (one or two per kind a month) are all needed to measure recall per kind, so
no chunk is set aside as a labelled test set. Labels are never seen by a fit.

* ``"blocked"`` (default): the chunks are cut into ``folds`` contiguous blocks in time; each
  block is scored by a model fitted on the other blocks, with the vocabulary built from those
  blocks' rows only (values first seen in the scored block encode as 0.0, as at night in
  production), and the thresholds come from that model's training scores. Every chunk thus
  gets an out-of-sample score and decision. With two folds this costs one fit on all the
  data. Scores of the folds' models are pooled for AUROC/AUPRC (out-of-fold scores).
* ``"all"``: as the thesis, fit on every chunk and score every chunk (transductive). Then M2,
  the largest training score, can flag nothing by construction, and ``quantile`` flags its
  share exactly.

Metrics of each (profile, seed, detector, decision), on all chunks:

* ``auroc``, ``auprc`` (``average_precision_score``) of the detector's score: the same for all
  decisions of a detector; NaN when the chunks hold one class only.
* ``precision``, ``recall``, ``f1`` of the chunk decisions against the truth (a chunk is
  anomalous when it holds a labelled row); ``precision`` is NaN when nothing is flagged.
* ``recall_<kind>`` per anomaly kind, ``event_recall`` over all events and ``mean_kind_recall``
  (the mean over kinds present): an event is found when any chunk holding one of its labelled
  rows is flagged. Events with no row in any chunk (quarantined, or in the dropped tail) are
  left out.
* ``false_alarms_per_10k``: flagged normal chunks per 10,000 chunks scored.
* ``false_alarms_elsewhere_per_10k``: the same without the flagged normal chunks that hold a
  request of an event's key (its address, for an event without a key) in the event's clock
  hours (:func:`incident_chunks`): the owner's own requests in the hours a key was shared, or
  a floating key's legitimate seats during its over-use. They count as false alarms above, as
  the truth says, and a vendor sees them in the same time frame as the event; this column says
  how many alarms fall outside any incident.
* ``train_seconds`` (fits, summed over folds), ``score_seconds`` (scoring the held-out chunks),
  ``decision_seconds`` (the threshold, or encoding and clustering; M1's retraining shows here).

:func:`aggregate` takes the mean over seeds; :func:`recommend` picks a default per vendor size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import polars as pl

from licanom.detectors import thresholds as th
from licanom.data.chunk import make_chunks
from licanom.detectors.clustering import cluster_anomalies
from licanom.detectors.context import chunk_context
from licanom.detectors.decision import DECISIONS, DEFAULT_MIN_SEVERITY, Calibration
from licanom.data.columns import SUMMARY_COLUMNS
from licanom.config import ChunkConfig, Config, ContextConfig, DetectConfig, EncodeConfig, TrainConfig
from licanom.evaluation.labels import auroc, chunk_truth, windows_holding
from licanom.sim.simulate import ANOMALY_KINDS, PROFILES, SimulatedLog, simulate

if TYPE_CHECKING:
    from licanom.data.pipeline import Prepared
    from licanom.ops.tracking import Tracker

Inputs = Literal["chunks", "flat", "summary", "context"]
EvalProtocol = Literal["blocked", "all"]

THRESHOLD_DECISIONS: tuple[str, ...] = ("severity", "M2", "M3", "quantile", "pot", "budget")
CLUSTER_DECISIONS: tuple[str, ...] = ("GMM", "KMeans")
OWN_DECISION = "own"
# Not a decision a vendor can use: the threshold is set with the labels (see EvalSettings.oracle_budget).
ORACLE_DECISION = "oracle"
KIND_COLUMNS: tuple[str, ...] = tuple(f"recall_{k}" for k in ANOMALY_KINDS)

KEY_COLUMNS: tuple[str, ...] = ("profile", "detector", "family", "inputs", "decision")
# Columns of every row of the per-seed frame, in order (the aggregated table: see TABLE_COLUMNS).
METRIC_COLUMNS: tuple[str, ...] = (
    "n_chunks", "n_train_chunks", "n_anomalous_chunks", "n_events",
    "auroc", "auprc", "flagged", "precision", "recall", "f1", "false_alarms_per_10k",
    "false_alarms_elsewhere_per_10k", "event_recall", "mean_kind_recall", *KIND_COLUMNS,
    "train_seconds", "score_seconds", "decision_seconds",
)
PER_SEED_COLUMNS: tuple[str, ...] = ("profile", "seed", *KEY_COLUMNS[1:], *METRIC_COLUMNS)
TABLE_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, "n_seeds", *METRIC_COLUMNS)
# The columns of the printed / markdown table (the CSV holds all of TABLE_COLUMNS).
REPORT_COLUMNS: tuple[str, ...] = (
    "profile", "detector", "decision", "auroc", "auprc", "precision", "recall", "f1",
    "false_alarms_per_10k", "false_alarms_elsewhere_per_10k", "mean_kind_recall", *KIND_COLUMNS,
    "train_seconds", "score_seconds",
)
_INT_COLUMNS = ("n_chunks", "n_anomalous_chunks", "n_events", "flagged")


# ---------------------------------------------------------------------------------------------
# Detectors and the registry


class Detector(Protocol):
    """What the evaluation needs of a detector (the PyOD/scikit-learn contract).

    ``fit(X)`` sets ``decision_scores_``, the training scores ``(n,)``; ``decision_function``
    gives ``(n,)`` scores, higher = more anomalous. A detector with an ``encode(X)`` method
    (the latent code) is also judged with clustering; one whose candidate has
    ``own_decision=True`` with its own ``predict(X)`` (1 = anomaly).
    """

    decision_scores_: np.ndarray | None

    def fit(self, X: np.ndarray) -> Any: ...

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Candidate:
    """A named detector to evaluate: ``make()`` returns a fresh, unfitted one.

    ``inputs`` is what it reads: ``"chunks"`` ``(n, size, 8)``, ``"flat"`` ``(n, size * 8)`` or
    ``"summary"``, the distinct-value vector ``(n, 8)``, or ``"context"``, the context vector
    (licanom.detectors.context) ``(n, len(CONTEXT_COLUMNS))``.
    """

    name: str
    family: str
    make: Callable[[], Detector]
    inputs: Inputs = "chunks"
    own_decision: bool = False


CandidateFactory = Callable[["EvalSettings"], Candidate]
_REGISTRY: dict[str, CandidateFactory] = {}


def register(name: str, factory: CandidateFactory) -> None:
    """Add (or replace) a detector under ``name``; ``factory(settings)`` builds its Candidate."""
    _REGISTRY[name] = factory


def registered() -> tuple[str, ...]:
    """Every detector name the evaluation knows, in registration order."""
    return tuple(_REGISTRY)


def make_candidates(names: Iterable[str], settings: EvalSettings) -> tuple[Candidate, ...]:
    """The candidates called ``names``; raises ValueError on a name not registered."""
    names = tuple(names)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; registered: {', '.join(_REGISTRY)}")
    return tuple(_REGISTRY[n](settings) for n in names)


def _autoencoder(name: str) -> CandidateFactory:
    def factory(settings: EvalSettings) -> Candidate:
        from licanom.detectors.autoencoders.detector import AutoencoderDetector

        train = settings.train

        def make() -> Detector:
            return AutoencoderDetector(
                model=name, threshold="M3", epochs=train.epochs, batch_size=train.batch_size,
                lr=train.lr, val_fraction=train.val_fraction, patience=train.patience,
                seed=train.seed, threads=train.threads, progress_bar=False,
            )

        return Candidate(name, "autoencoder", make, "chunks")

    return factory


def _sequence(name: str) -> CandidateFactory:
    """A sequence model (LSTM/GRU + OC-SVM/SVDD) on the chunks; its own decision is its boundary."""
    def factory(settings: EvalSettings) -> Candidate:
        from licanom.detectors.sequence.detector import SequenceDetector

        train = settings.train

        def make() -> Detector:
            return SequenceDetector(model=name, solver="gradient", epochs=train.epochs,
                                    batch_size=train.batch_size, seed=train.seed, threads=train.threads)

        return Candidate(name, "sequence", make, "chunks", own_decision=True)

    return factory


def _context(name: str) -> CandidateFactory:
    """A product context model (licanom.detectors.context.ContextDetector) on the chunks' context vectors."""
    def factory(settings: EvalSettings) -> Candidate:
        from licanom.ops.detect import make_detector

        def make() -> Detector:  # the product's context settings; every decision is measured on
            # its training scores, so its own threshold is any named one
            return make_detector(name, settings.train, settings.detect, context=ContextConfig(threshold="budget"))

        return Candidate(name, "context", make, "context")

    return factory


def _baseline(kind: Literal["iforest", "lof"], inputs: Inputs) -> CandidateFactory:
    def factory(settings: EvalSettings) -> Candidate:
        name = f"{'IForest' if kind == 'iforest' else 'LOF'}_{inputs}"
        scale = kind == "lof" and inputs == "summary"  # flat chunks already lie in [0, 1]

        def make() -> Detector:
            from licanom.detectors.baselines import SklearnDetector

            return SklearnDetector(model=name, kind=kind, scale=scale, seed=settings.train.seed)

        return Candidate(name, "classical", make, inputs, own_decision=True)

    return factory


def _autoencoder_names() -> tuple[str, ...]:
    from licanom.detectors.autoencoders.nets import NETS

    return tuple(NETS)


AUTOENCODERS: tuple[str, ...] = _autoencoder_names()
BASELINES: tuple[str, ...] = ("IForest_summary", "IForest_flat", "LOF_summary", "LOF_flat")
CONTEXT: tuple[str, ...] = ("Tail_context", "IForest_context", "LOF_context")
for _name in AUTOENCODERS:
    register(_name, _autoencoder(_name))
SEQUENCE: tuple[str, ...] = ("LSTM_OCSVM", "LSTM_SVDD", "GRU_OCSVM", "GRU_SVDD")
for _name in SEQUENCE:
    register(_name, _sequence(_name))
for _name in CONTEXT:
    register(_name, _context(_name))
for _kind, _inp in (("iforest", "summary"), ("iforest", "flat"), ("lof", "summary"), ("lof", "flat")):
    register(f"{'IForest' if _kind == 'iforest' else 'LOF'}_{_inp}", _baseline(_kind, _inp))  # type: ignore[arg-type]
# What a worker process of run_evaluation(jobs > 1) knows: the registry as importing this module builds it.
_REGISTERED_ON_IMPORT: dict[str, CandidateFactory] = dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------
# Settings and results


@dataclass(frozen=True)
class EvalSettings:
    """What to evaluate: vendors (profiles x seeds x days), detectors, decisions, protocol.

    ``models`` are registered names (:func:`registered`); ``thresholds`` any of
    :data:`licanom.detectors.thresholds.THRESHOLDS` ("M1" retrains ``detect.m1_max_rounds`` times per
    fold); ``clustering`` adds GMM and KMeans for detectors with a latent code. ``train`` sets
    the autoencoders' training (epochs, batch size, seed, threads), ``detect`` the M1 rounds and
    the clustering seed, ``chunk`` the windows. One torch thread by default: on a shared
    two-core machine two contending threads trained several times slower.
    """

    profiles: tuple[str, ...] = PROFILES
    seeds: tuple[int, ...] = tuple(range(1, 13))  # as make eval: with three, one event moves a kind's recall by a third
    days: int = 21
    models: tuple[str, ...] = (*AUTOENCODERS, *BASELINES)
    thresholds: tuple[str, ...] = THRESHOLD_DECISIONS
    clustering: bool = True
    protocol: EvalProtocol = "blocked"
    folds: int = 2
    anomaly_rate: float = 1.0
    oracle_budget: float | None = 50.0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, threads=1))
    detect: DetectConfig = field(default_factory=lambda: DetectConfig(m1=False))
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)

    def check(self) -> None:
        """Raise ValueError on settings the evaluation cannot run."""
        bad = [p for p in self.profiles if p not in PROFILES]
        if bad or not self.profiles:
            raise ValueError(f"unknown or no profile(s) {bad}; expected some of {PROFILES}")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not self.anomaly_rate >= 0.0:  # a multiplier of the simulator's number of events
            raise ValueError(f"anomaly_rate must be non-negative, got {self.anomaly_rate!r}")
        unknown = [n for n in self.models if n not in _REGISTRY]
        if unknown or not self.models:
            raise ValueError(f"unknown or no detector(s) {unknown}; registered: {', '.join(_REGISTRY)}")
        bad_th = [t for t in self.thresholds if t not in DECISIONS]
        if bad_th:
            raise ValueError(f"unknown threshold(s) {bad_th}; expected some of {DECISIONS}")
        if self.protocol not in ("blocked", "all"):
            raise ValueError(f"unknown protocol {self.protocol!r}; expected 'blocked' or 'all'")
        if self.protocol == "blocked" and self.folds < 2:
            raise ValueError("the blocked protocol needs at least 2 folds")
        if self.oracle_budget is not None and not 0 <= self.oracle_budget <= 10_000:
            raise ValueError(f"oracle_budget is false alarms per 10,000 chunks, got {self.oracle_budget!r}")

    def as_params(self) -> dict[str, object]:
        """Flat parameters (for MLflow and the report)."""
        return {
            "profiles": ",".join(self.profiles), "seeds": ",".join(map(str, self.seeds)),
            "days": self.days, "models": ",".join(self.models),
            "thresholds": ",".join(self.thresholds), "clustering": self.clustering,
            "protocol": self.protocol, "folds": self.folds if self.protocol == "blocked" else 1,
            "anomaly_rate": self.anomaly_rate, "oracle_budget": self.oracle_budget, "epochs": self.train.epochs,
            "batch_size": self.train.batch_size, "train_seed": self.train.seed,
            "m1_max_rounds": self.detect.m1_max_rounds, "clustering_seed": self.detect.clustering_seed,
            "chunk_size": self.chunk.size, "chunk_stride": self.chunk.stride, "encoder": self.encode.encoder,
        }


@dataclass(frozen=True)
class Evaluation:
    """Per-seed rows (PER_SEED_COLUMNS), their mean over seeds (TABLE_COLUMNS), the settings."""

    per_seed: pl.DataFrame
    table: pl.DataFrame
    settings: EvalSettings
    seconds: float
    jobs: int = 1  # vendors evaluated at once: with more than one, the measured seconds are shared

    def write(self, out_dir: Path, recommendation: pl.DataFrame | None = None) -> list[Path]:
        """``evaluation.csv``, ``evaluation_per_seed.csv``, ``evaluation.md`` (and the
        recommendation's ``.csv``/``.md`` when given) in ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "evaluation.csv", out / "evaluation_per_seed.csv", out / "evaluation.md"]
        self.table.write_csv(paths[0])
        self.per_seed.write_csv(paths[1])
        paths[2].write_text(report_markdown(self.table) + "\n")
        if recommendation is not None:
            paths += [out / "recommendation.csv", out / "recommendation.md"]
            recommendation.write_csv(paths[3])
            paths[4].write_text(to_markdown(recommendation) + "\n")
        return paths


# ---------------------------------------------------------------------------------------------
# Metrics (pure functions of arrays)


def auprc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of the scores (scikit-learn); NaN when only one class is present."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(average_precision_score(y, scores))


def decision_metrics(y_true: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Chunk-level ``flagged``, ``precision``, ``recall``, ``f1``, ``false_alarms_per_10k``.

    Precision is NaN when nothing is flagged, recall when there is nothing to find, F1 when
    both; false alarms are flagged normal chunks per 10,000 chunks (all of ``y_true``).
    """
    y = np.asarray(y_true, dtype=bool)
    f = np.asarray(flagged, dtype=bool)
    if y.shape != f.shape:
        raise ValueError(f"y_true {y.shape} and flagged {f.shape} differ in shape")
    tp, fp, fn = int((y & f).sum()), int((~y & f).sum()), int((y & ~f).sum())
    nan = float("nan")
    return {
        "flagged": float(tp + fp),
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
        "false_alarms_per_10k": false_alarms_per_10k(y, f),
    }


def false_alarms_per_10k(y_true: np.ndarray, flagged: np.ndarray) -> float:
    """Flagged chunks without a labelled row, per 10,000 chunks (NaN for no chunks)."""
    y = np.asarray(y_true, dtype=bool)
    f = np.asarray(flagged, dtype=bool)
    return float(1e4 * (f & ~y).sum() / len(y)) if len(y) else float("nan")


def flag_at_budget(y_true: np.ndarray, scores: np.ndarray, per_10k: float) -> np.ndarray:
    """Flag the highest scores, down to the threshold that lets at most ``per_10k`` false alarms
    per 10,000 chunks through (chosen with the labels ``y_true``: an upper bound, not a rule).
    Scores tied with the first normal chunk left out are left out too; NaN scores never flag."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    allowed = int(np.floor(per_10k * len(s) / 1e4 + 1e-9))
    normal = np.sort(s[~y & ~np.isnan(s)])[::-1]
    if allowed >= len(normal):
        return ~np.isnan(s)
    return s > normal[allowed]


def incident_chunks(rows: pl.DataFrame, events: pl.DataFrame, starts: np.ndarray, size: int) -> np.ndarray:
    """Bool per chunk: it holds a request of an event's key (the event's address where it has no
    key) in the event's clock hours, from the hour of its start to the end of the hour of its end.

    ``rows`` are the chunked, time-ordered rows (``Time``, ``Key``, ``IP``), ``events`` the
    simulator's events (``key``, ``ip``, ``start_time``, ``end_time``), ``starts`` and ``size``
    the chunks' first rows and length. The hours are the context signals' buckets, so a chunk
    that shares a bucket with an event's requests is part of the same incident.
    """
    frame = rows.select(pl.col("Time"), pl.col("Key").cast(pl.String).fill_null(""),
                        pl.col("IP").cast(pl.String).fill_null(""))
    hits = []
    for e in events.iter_rows(named=True):
        if not (e["key"] or e["ip"]):
            continue  # an event with neither names no requests
        who = (pl.col("Key") == e["key"]) if e["key"] else (pl.col("IP") == e["ip"])
        h0 = pl.lit(e["start_time"]).dt.truncate("1h")
        h1 = pl.lit(e["end_time"]).dt.truncate("1h") + pl.duration(hours=1)
        hits.append(who & (pl.col("Time") >= h0) & (pl.col("Time") < h1))
    marked = frame.select(pl.any_horizontal(hits))[:, 0].to_numpy() if hits else np.zeros(frame.height, bool)
    return windows_holding(marked, starts, size)


def event_overlaps(row_ids: pl.Series | np.ndarray, labels: pl.DataFrame, starts: np.ndarray, size: int) -> pl.DataFrame:
    """Which chunks hold rows of which events: a frame ``event``, ``chunk`` (unique pairs).

    ``row_ids`` are the Ids of the chunked (time-ordered) rows, ``labels`` the simulator's
    labels (``Id``, ``event``), ``starts`` each chunk's first row (sorted) and ``size`` its
    length; overlapping windows (stride < size) are handled. Labelled rows in no chunk drop out.
    """
    rows = pl.DataFrame({"Id": pl.Series(np.asarray(row_ids), dtype=pl.Int64)}).with_row_index("row")
    hit = rows.join(labels.select(pl.col("Id").cast(pl.Int64), "event"), on="Id", how="inner")
    r = hit["row"].to_numpy().astype(np.int64)
    ev = hit["event"].to_numpy().astype(np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    lo = np.searchsorted(starts, r - size + 1, side="left")  # chunks with start in (r - size, r]
    hi = np.searchsorted(starts, r, side="right")
    n = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(r)), n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return (
        pl.DataFrame({"event": ev[owner], "chunk": (lo[owner] + offset).astype(np.int64)})
        .unique()
        .sort("event", "chunk")
    )


def events_found(overlaps: pl.DataFrame, flagged: np.ndarray) -> pl.DataFrame:
    """Per event with at least one chunk: ``event``, ``found`` (any of its chunks flagged)."""
    f = np.asarray(flagged, dtype=bool)
    return (
        overlaps.with_columns(pl.Series("flag", f[overlaps["chunk"].to_numpy()] if overlaps.height else [], dtype=pl.Boolean))
        .group_by("event")
        .agg(pl.col("flag").any().alias("found"))
        .sort("event")
    )


def kind_recall(found: pl.DataFrame, events: pl.DataFrame, kinds: Sequence[str] = ANOMALY_KINDS) -> dict[str, float]:
    """Share of each kind's events found (``events``: ``event``, ``kind``); NaN without events.

    Also ``event_recall`` (all events) and ``mean_kind_recall`` (mean over kinds present).
    """
    joined = found.join(events.select("event", "kind"), on="event", how="inner")
    out: dict[str, float] = {}
    for kind in kinds:
        sel = joined.filter(pl.col("kind") == kind)["found"]
        out[f"recall_{kind}"] = float(sel.mean()) if sel.len() else float("nan")  # type: ignore[arg-type]
    present = [v for v in out.values() if not math.isnan(v)]
    out["event_recall"] = float(joined["found"].mean()) if joined.height else float("nan")  # type: ignore[arg-type]
    out["mean_kind_recall"] = float(np.mean(present)) if present else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class _Vendor:
    """One prepared simulated vendor: the chunks of each fold, the truth and event overlaps."""

    prepared: Prepared
    fold_X: tuple[np.ndarray, ...]     # per fold: X of every chunk, encoded with that fold's vocabulary
    test_blocks: tuple[np.ndarray, ...]  # per fold: indices of the chunks it scores
    truth: np.ndarray
    incident: np.ndarray  # per chunk: holds an event's key (address) in the event's hours
    overlaps: pl.DataFrame
    events: pl.DataFrame
    summary: np.ndarray
    context: np.ndarray | None  # the context vectors, when a candidate reads them


def _prepare_vendor(sim: SimulatedLog, settings: EvalSettings, context: bool = True) -> _Vendor:
    from licanom.data.derive import derive
    from licanom.data.encode import get_encoder
    from licanom.data.pipeline import prepare

    cfg = Config(chunk=settings.chunk, encode=settings.encode)
    prepared = prepare(sim.log, cfg)
    chunks = prepared.chunks
    starts = chunks.meta["start_row"].to_numpy()
    n = chunks.n_chunks
    if settings.protocol == "all":
        fold_X: tuple[np.ndarray, ...] = (chunks.X,)
        blocks: tuple[np.ndarray, ...] = (np.arange(n),)
    else:
        if n < 2 * settings.folds:
            raise ValueError(f"{n} chunks are too few for {settings.folds} folds")
        blocks = tuple(np.array_split(np.arange(n), settings.folds))
        derived = derive(prepared.validation.valid)
        if not derived["Id"].equals(prepared.encoded.frame["Id"]):
            raise AssertionError("the derived rows are not in the encoded frame's order")
        encoder = get_encoder(cfg.encode.encoder)
        xs = []
        for block in blocks:
            train_chunks = np.setdiff1d(np.arange(n), block)
            rows = np.unique((starts[train_chunks, None] + np.arange(chunks.size)[None, :]).ravel())
            vocabulary = encoder.fit(derived[rows])
            frame = encoder.encode(derived, vocabulary)
            xs.append(make_chunks(frame, size=chunks.size, stride=chunks.stride, partial=settings.chunk.partial).X)
        fold_X = tuple(xs)
    encoded = prepared.encoded.frame
    return _Vendor(
        prepared=prepared,
        fold_X=fold_X,
        test_blocks=blocks,
        truth=chunk_truth(encoded, chunks, sim.labels),
        incident=incident_chunks(encoded, sim.events, starts, chunks.size),
        overlaps=event_overlaps(encoded["Id"], sim.labels, starts, chunks.size),
        events=sim.events,
        summary=chunks.meta.select(SUMMARY_COLUMNS).to_numpy().astype(np.float64),
        context=chunk_context(encoded, starts, chunks.size) if context else None,
    )


def _inputs(candidate: Candidate, X: np.ndarray, vendor: _Vendor) -> np.ndarray:
    if candidate.inputs == "chunks":
        return X
    if candidate.inputs == "flat":
        return X.reshape(len(X), -1)
    if candidate.inputs == "summary":
        return vendor.summary
    if candidate.inputs == "context":
        assert vendor.context is not None, "the vendor was prepared without context vectors"
        return vendor.context
    raise ValueError(f"{candidate.name}: unknown inputs {candidate.inputs!r}")


def _decisions(candidate: Candidate, detector: Detector, settings: EvalSettings) -> tuple[str, ...]:
    out = list(settings.thresholds)
    if settings.clustering and callable(getattr(detector, "encode", None)):
        out += CLUSTER_DECISIONS
    if candidate.own_decision:
        out.append(OWN_DECISION)
    return tuple(out)


def evaluate_candidate(candidate: Candidate, vendor: _Vendor, settings: EvalSettings) -> list[dict[str, object]]:
    """Fit ``candidate`` per fold, score the held-out chunks, and judge every decision."""
    n = len(vendor.truth)
    scores = np.full(n, np.nan)
    flags: dict[str, np.ndarray] = {}
    seconds = {"train": 0.0, "score": 0.0}
    decision_seconds: dict[str, float] = {}
    n_train = []
    for X_all, test in zip(vendor.fold_X, vendor.test_blocks, strict=True):
        data = _inputs(candidate, X_all, vendor)
        train_idx = np.setdiff1d(np.arange(n), test) if settings.protocol == "blocked" else test
        n_train.append(len(train_idx))
        t0 = time.perf_counter()
        detector = candidate.make()
        detector.fit(data[train_idx])
        t1 = time.perf_counter()
        scores[test] = detector.decision_function(data[test])
        seconds["train"] += t1 - t0
        seconds["score"] += time.perf_counter() - t1
        train_scores = np.asarray(detector.decision_scores_, dtype=np.float64)
        decisions = _decisions(candidate, detector, settings)
        latent, encode_seconds = None, 0.0
        if any(d in CLUSTER_DECISIONS for d in decisions):  # one latent code for both clusterings
            t0 = time.perf_counter()
            latent = detector.encode(data[test])  # type: ignore[attr-defined]
            encode_seconds = time.perf_counter() - t0
        for decision in decisions:
            t0 = time.perf_counter()
            flagged = _decide(decision, candidate, detector, data, train_idx, test, scores[test], train_scores,
                              latent, settings)
            spent = time.perf_counter() - t0 + (encode_seconds if decision in CLUSTER_DECISIONS else 0.0)
            decision_seconds[decision] = decision_seconds.get(decision, 0.0) + spent
            flags.setdefault(decision, np.zeros(n, dtype=bool))[test] = flagged
    if settings.oracle_budget is not None:
        flags[ORACLE_DECISION] = flag_at_budget(vendor.truth, scores, settings.oracle_budget)
        decision_seconds[ORACLE_DECISION] = 0.0
    base = {
        "detector": candidate.name, "family": candidate.family, "inputs": candidate.inputs,
        "n_chunks": n, "n_train_chunks": float(np.mean(n_train)),
        "n_anomalous_chunks": int(vendor.truth.sum()), "n_events": int(vendor.overlaps["event"].n_unique()),
        "auroc": auroc(vendor.truth, scores), "auprc": auprc(vendor.truth, scores),
        "train_seconds": seconds["train"], "score_seconds": seconds["score"],
    }
    rows = []
    for decision, flagged in flags.items():
        found = events_found(vendor.overlaps, flagged)
        rows.append({
            **base, "decision": decision,
            **decision_metrics(vendor.truth, flagged),
            "false_alarms_elsewhere_per_10k": false_alarms_per_10k(vendor.truth | vendor.incident, flagged),
            **kind_recall(found, vendor.events),
            "decision_seconds": decision_seconds[decision],
        })
    return rows


def _decide(
    decision: str, candidate: Candidate, detector: Detector, data: np.ndarray, train_idx: np.ndarray,
    test: np.ndarray, test_scores: np.ndarray, train_scores: np.ndarray, latent: np.ndarray | None,
    settings: EvalSettings,
) -> np.ndarray:
    """Bool per held-out chunk: flagged by ``decision`` (``latent``: the held-out chunks' code)."""
    if decision == OWN_DECISION:
        return np.asarray(detector.predict_own(data[test]), dtype=bool)  # type: ignore[attr-defined]
    if decision in CLUSTER_DECISIONS:
        assert latent is not None
        method = "gmm" if decision == "GMM" else "kmeans"
        return cluster_anomalies(latent, method, seed=settings.detect.clustering_seed).astype(bool)
    if decision == "M1":
        def fit_score(train: np.ndarray, held: np.ndarray) -> np.ndarray:
            return candidate.make().fit(train).decision_function(held)

        value = th.m1(data[train_idx], fit_score, max_rounds=settings.detect.m1_max_rounds, seed=settings.train.seed)
        if value is None:  # the thesis's "na": flags nothing
            return np.zeros(len(test), dtype=bool)
        return test_scores > value
    if decision == "severity":  # the detector's own calibration (out-of-fold for the context models)
        severity_of = getattr(detector, "severity_of", None) or Calibration.fit(train_scores).severity
        return np.asarray(severity_of(test_scores) >= DEFAULT_MIN_SEVERITY)
    value = th.threshold_from_errors(decision, train_scores)
    assert value is not None
    return test_scores > value


def evaluate_vendor(
    sim: SimulatedLog,
    candidates: Sequence[Candidate],
    settings: EvalSettings,
    *,
    profile: str,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Rows of PER_SEED_COLUMNS for one simulated vendor and every candidate x decision."""
    vendor = _prepare_vendor(sim, settings, context=any(c.inputs == "context" for c in candidates))
    rows: list[dict[str, object]] = []
    for cand in candidates:
        t0 = time.perf_counter()
        got = evaluate_candidate(cand, vendor, settings)
        rows += [{"profile": profile, "seed": seed, **r} for r in got]
        if progress:
            progress(f"{profile} seed {seed}: {cand.name} ({vendor.prepared.chunks.n_chunks} chunks) "
                     f"in {time.perf_counter() - t0:.1f} s")
    return _per_seed_frame(rows)


def _per_seed_frame(rows: Sequence[Mapping[str, object]]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {c: pl.Float64() for c in METRIC_COLUMNS}
    schema.update({c: pl.Int64() for c in _INT_COLUMNS})
    schema.update(profile=pl.String(), seed=pl.Int64(), detector=pl.String(), family=pl.String(),
                  inputs=pl.String(), decision=pl.String())
    frame = pl.DataFrame([{c: r.get(c) for c in PER_SEED_COLUMNS} for r in rows], schema={c: schema[c] for c in PER_SEED_COLUMNS})
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def run_evaluation(
    settings: EvalSettings | None = None,
    candidates: Sequence[Candidate] | None = None,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> Evaluation:
    """Simulate each profile x seed, evaluate every candidate (default: ``settings.models``).

    ``jobs > 1`` evaluates up to that many vendors at once in a pool of spawned worker
    processes, each building the candidates of ``settings.models`` from the registry as
    importing this module makes it. So it needs ``candidates=None``, and a detector registered
    (or replaced) later in this process only is refused: evaluate it with one job. A script
    that calls this with ``jobs > 1`` needs the ``if __name__ == "__main__":`` guard that
    spawned processes need. The rows are the same, in the same order, as with one job (every
    fit is seeded); only the measured seconds differ, since the vendors share the machine.
    ``progress`` then hears one line per finished vendor instead of one per detector. When a
    vendor fails, the vendors not yet started are cancelled and its error is raised.
    """
    settings = settings or EvalSettings()
    settings.check()
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs!r}")
    vendors = [(profile, seed) for profile in settings.profiles for seed in settings.seeds]
    workers = min(jobs, len(vendors))
    if workers > 1:
        if candidates is not None:
            raise ValueError("jobs > 1 builds the candidates from settings.models in each process: "
                             "pass candidates=None, or use jobs=1 for candidates built here")
        late = [n for n in settings.models if _REGISTERED_ON_IMPORT.get(n) is not _REGISTRY[n]]
        if late:
            raise ValueError(f"detector(s) {late} were registered after licanom.evaluation.blocked was imported, which "
                             "the worker processes do not see: use jobs=1")
    t0 = time.perf_counter()
    if workers == 1:
        cands = tuple(candidates) if candidates is not None else make_candidates(settings.models, settings)
        frames = [_evaluate_simulated(settings, cands, profile, seed, progress) for profile, seed in vendors]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        done: dict[tuple[str, int], pl.DataFrame] = {}
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch/polars threads
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        futures = {pool.submit(_evaluate_simulated, settings, None, p, s): (p, s) for p, s in vendors}
        try:
            for finished, future in enumerate(as_completed(futures), start=1):
                profile, seed = futures[future]
                done[(profile, seed)] = future.result()
                if progress:
                    progress(f"{profile} seed {seed}: done ({finished}/{len(vendors)} vendors, "
                             f"{time.perf_counter() - t0:.0f} s)")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # the error now: no vendor not yet started runs
            raise
        pool.shutdown()
        frames = [done[v] for v in vendors]
    per_seed = pl.concat(frames)
    return Evaluation(per_seed=per_seed, table=aggregate(per_seed), settings=settings,
                      seconds=time.perf_counter() - t0, jobs=workers)


def _evaluate_simulated(
    settings: EvalSettings,
    candidates: Sequence[Candidate] | None,
    profile: str,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """One simulated vendor's rows (a module-level function: a worker process runs it)."""
    cands = tuple(candidates) if candidates is not None else make_candidates(settings.models, settings)
    sim = simulate(profile, seed=seed, days=settings.days, anomaly_rate=settings.anomaly_rate)
    return evaluate_vendor(sim, cands, settings, profile=profile, seed=seed, progress=progress)


def aggregate(per_seed: pl.DataFrame) -> pl.DataFrame:
    """Mean over seeds per (profile, detector, decision) of every metric (nulls skipped)."""
    keys = list(KEY_COLUMNS)
    order = per_seed.select(keys).unique(maintain_order=True).with_row_index("_order")
    return (
        per_seed.with_columns(pl.col(pl.Float64).fill_nan(None))
        .group_by(keys)
        .agg(pl.len().alias("n_seeds"), *[pl.col(c).cast(pl.Float64).mean() for c in METRIC_COLUMNS])
        .join(order, on=keys)
        .sort("_order")
        .select(TABLE_COLUMNS)
    )


# ---------------------------------------------------------------------------------------------
# Reporting


def to_markdown(frame: pl.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table: numbers right-aligned, floats to ``digits`` places,
    nulls and NaN empty."""
    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    numeric = [dt.is_numeric() for dt in frame.dtypes]
    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " |",
    ]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def report_markdown(table: pl.DataFrame, digits: int = 3) -> str:
    """The aggregated table in REPORT_COLUMNS, short headers (``fa/10k``, ``r_<kind>``)."""
    view = table.select([c for c in REPORT_COLUMNS if c in table.columns])
    view = view.rename({c: c.replace("recall_", "r_") for c in KIND_COLUMNS if c in view.columns}
                       | {"false_alarms_per_10k": "fa/10k", "false_alarms_elsewhere_per_10k": "fa_elsewhere/10k",
                          "mean_kind_recall": "kind_recall",
                          "train_seconds": "train_s", "score_seconds": "score_s"})
    return to_markdown(view, digits)


RECOMMENDATION_COLUMNS: tuple[str, ...] = (
    "size", "profiles", "n_train_chunks", "detector", "family", "decision", "mean_kind_recall",
    "false_alarms_per_10k", "auprc", "f1", "cost_seconds", "meets_limit", *KIND_COLUMNS, "note",
)


def recommend(
    table: pl.DataFrame,
    *,
    small_max_train_chunks: float = 500.0,
    max_false_alarms: float = 50.0,
    weak_recall: float = 0.5,
    tie: float = 1e-9,
) -> pl.DataFrame:
    """A default detector and decision per vendor size, by a fixed rule on the aggregated table.

    Size: a profile is ``small`` when its models trained on at most ``small_max_train_chunks``
    chunks on average (``n_train_chunks``), else ``large``. Within a size, every (detector,
    decision) is averaged over its profiles; among those with ``false_alarms_per_10k`` below
    ``max_false_alarms`` the highest ``mean_kind_recall`` wins; recalls within ``tie`` of the
    best are a tie, broken by the lower cost (train + score + decision seconds), then by name.
    When none meets the limit, the one with the fewest false alarms is chosen
    (``meets_limit`` false). ``note`` names the kinds no detector found at all under the limit
    (chunk-level detection cannot find them here) and the kinds the choice finds less than
    ``weak_recall`` of. The ``oracle`` rows (thresholds set with the labels) are never chosen.
    """
    sized = table.with_columns(
        pl.when(pl.col("n_train_chunks").mean().over("profile") <= small_max_train_chunks)
        .then(pl.lit("small")).otherwise(pl.lit("large")).alias("size"),
        (pl.col("train_seconds") + pl.col("score_seconds") + pl.col("decision_seconds")).alias("cost_seconds"),
    )
    metrics = ["mean_kind_recall", "false_alarms_per_10k", "auprc", "f1", "cost_seconds", "n_train_chunks", *KIND_COLUMNS]
    rows = []
    for size in ("small", "large"):
        part = sized.filter((pl.col("size") == size) & (pl.col("decision") != ORACLE_DECISION))
        if part.height == 0:
            continue
        profiles = ",".join(part["profile"].unique(maintain_order=True).to_list())
        per = (
            part.group_by("detector", "family", "decision", maintain_order=True)
            .agg(*[pl.col(c).mean() for c in metrics])
            .filter(pl.col("mean_kind_recall").is_not_null())
        )
        if per.height == 0:
            continue
        ok = per.filter(pl.col("false_alarms_per_10k") < max_false_alarms)
        if ok.height:
            best = ok["mean_kind_recall"].max()
            ties = ok.filter(pl.col("mean_kind_recall") >= best - tie)  # type: ignore[operator]
            chosen = ties.sort("cost_seconds", "detector", "decision").row(0, named=True)
        else:
            chosen = per.sort("false_alarms_per_10k", "cost_seconds", "detector", "decision").row(0, named=True)
        notes = []
        if not ok.height:
            notes.append(f"no detector stays under {max_false_alarms:g} false alarms per 10k chunks")
        unfound = [k for k in ANOMALY_KINDS if ok.height and not (ok[f"recall_{k}"].fill_null(0.0) > 0).any()]
        if unfound:
            notes.append("no detector found any event of: " + ", ".join(unfound))
        weak = [k for k in ANOMALY_KINDS if k not in unfound and chosen[f"recall_{k}"] is not None
                and chosen[f"recall_{k}"] < weak_recall]
        if weak:
            notes.append(f"the choice finds under {weak_recall:.0%} of: " + ", ".join(weak))
        rows.append({**chosen, "size": size, "profiles": profiles, "meets_limit": bool(ok.height),
                     "note": "; ".join(notes)})
    schema = {c: pl.Float64() for c in RECOMMENDATION_COLUMNS}
    schema.update(size=pl.String(), profiles=pl.String(), detector=pl.String(), family=pl.String(),
                  decision=pl.String(), meets_limit=pl.Boolean(), note=pl.String())
    return pl.DataFrame([{c: r.get(c) for c in RECOMMENDATION_COLUMNS} for r in rows],
                        schema={c: schema[c] for c in RECOMMENDATION_COLUMNS})


# ---------------------------------------------------------------------------------------------
# MLflow

_RUN_METRICS = ("precision", "recall", "f1", "false_alarms_per_10k", "event_recall", "mean_kind_recall")
_DETECTOR_METRICS = ("auroc", "auprc", "train_seconds", "score_seconds")


def evaluation_metrics(table: pl.DataFrame) -> dict[str, float]:
    """MLflow metrics from the aggregated table: ``<profile>/<detector>/<metric>`` for the
    score's metrics and seconds, ``<profile>/<detector>/<decision>/<metric>`` for decisions."""
    out: dict[str, float] = {}
    for row in table.iter_rows(named=True):
        stem = f"{row['profile']}/{row['detector']}"
        for m in _DETECTOR_METRICS:
            if row[m] is not None:
                out[f"{stem}/{m}"] = float(row[m])
        for m in _RUN_METRICS:
            if row[m] is not None:
                out[f"{stem}/{row['decision']}/{m}"] = float(row[m])
    return out


def log_evaluation(
    tracker: Tracker,
    evaluation: Evaluation,
    recommendation: pl.DataFrame | None = None,
    *,
    experiment: str = "evaluation",
    run_name: str | None = None,
) -> str:
    """One MLflow run (experiment ``<prefix><experiment>``) with the settings as parameters,
    the per-detector metrics, and the tables as CSV and markdown artifacts; returns its id."""
    s = evaluation.settings
    name = run_name or f"evaluate {len(s.profiles)} profiles x {len(s.seeds)} seeds, {s.days} days"
    run_id = tracker.start_run(experiment, name, "evaluation")
    try:
        tracker.log_params(run_id, {**s.as_params(), "seconds": round(evaluation.seconds, 1), "jobs": evaluation.jobs})
        items = list(evaluation_metrics(evaluation.table).items())
        for start in range(0, len(items), 900):  # MLflow takes at most 1000 metrics a batch
            tracker.log_metrics(run_id, dict(items[start:start + 900]))
        tracker.log_frame(run_id, evaluation.table, "evaluation.csv")
        tracker.log_frame(run_id, evaluation.per_seed, "evaluation_per_seed.csv")
        tracker.log_text(run_id, report_markdown(evaluation.table) + "\n", "evaluation.md")
        if recommendation is not None:
            tracker.log_frame(run_id, recommendation, "recommendation.csv")
            tracker.log_text(run_id, to_markdown(recommendation) + "\n", "recommendation.md")
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    return run_id

