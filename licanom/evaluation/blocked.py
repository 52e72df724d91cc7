"""The blocked evaluation of every detector and decision rule on simulated vendors (see :mod:`licanom.evaluation`'s
summary in :mod:`.metrics`): the candidates, the settings, the folds and the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import polars as pl

from licanom.detectors import catalog
from licanom.detectors import thresholds as th
from licanom.data.chunk import make_chunks
from licanom.detectors.clustering import cluster_anomalies
from licanom.data.context_vector import chunk_context
from licanom.detectors.decision import DECISIONS, DEFAULT_MIN_SEVERITY, Calibration
from licanom.data.columns import SUMMARY_COLUMNS
from licanom.config import ChunkConfig, Config, ContextConfig, DetectConfig, EncodeConfig, TrainConfig
from licanom.evaluation.labels import auroc, chunk_truth
from licanom.sim import PROFILES, SimulatedLog, simulate
from licanom.evaluation.metrics import (
    CLUSTER_DECISIONS,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    ORACLE_DECISION,
    OWN_DECISION,
    PER_SEED_COLUMNS,
    TABLE_COLUMNS,
    THRESHOLD_DECISIONS,
    _INT_COLUMNS,
    auprc,
    decision_metrics,
    event_overlaps,
    events_found,
    false_alarms_per_10k,
    flag_at_budget,
    incident_chunks,
    kind_recall,
)
from licanom.evaluation.output import report_markdown, to_markdown


if TYPE_CHECKING:
    from licanom.data.pipeline import Prepared
    from licanom.ops.tracking import Tracker

Inputs = Literal["chunks", "flat", "summary", "context"]
EvalProtocol = Literal["blocked", "all"]


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

    ``inputs`` is what it reads: ``"chunks"`` ``(n, size, n_features)`` (the encoder's columns: 8,
    the thesis's, or the rows mode's), ``"flat"`` ``(n, size * n_features)`` or
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
        from licanom.data.encode import input_mode
        from licanom.detectors.autoencoders.detector import AutoencoderDetector

        train = settings.train
        inputs = input_mode(settings.encode.encoder)  # the rows encoder's chunks have the rows mode's columns

        def make() -> Detector:
            return AutoencoderDetector(
                model=name, inputs=inputs, threshold="M3", epochs=train.epochs, batch_size=train.batch_size,
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


# the catalog's names (checked against the networks in tests/test_layers.py): importing this
# module, as each of its worker processes does, imports no torch
AUTOENCODERS: tuple[str, ...] = catalog.AUTOENCODERS
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
        # scikit-learn's own cut for the baselines (their predict follows the decision setting);
        # a sequence model's own boundary is its predict
        own = getattr(detector, "predict_own", detector.predict)
        return np.asarray(own(data[test]), dtype=bool)
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
    # the detector's own calibration (out-of-fold for the context models), its level alone: a
    # blocked fold is not a night, so the severity decision's night rule has nothing to read here
    if decision == "severity":
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
