"""Train the configured autoencoders on a prepared log and score every chunk.

Produces the per-chunk results (the ``licanom detect`` contract) and the thesis's results
table (Figures 4.1-4.3): per model, its bottleneck and depth, and the number of test chunks
flagged under M1, M2, M3, GMM and KMeans, plus training seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from licanom.detectors import thresholds as th
from licanom.detectors.clustering import cluster_anomalies
from licanom.detectors.decision import FLAGGED_BY
from licanom.data.columns import ERROR_COLUMNS, FEATURES, SUMMARY_COLUMNS
from licanom.data.chunk import NotEnoughDataError, split_chunks
from licanom.config import AUTO, ContextConfig, DetectConfig, EncodeConfig, SequenceConfig, SplitConfig, TrainConfig
from licanom.detectors.sequence.sessions import SEQUENCE_COLUMNS
from licanom.data.pipeline import Prepared

# Columns of chunks.parquet, in order. Other tools read this file: extend, never rename.
CHUNK_COLUMNS: tuple[str, ...] = (
    "chunk", "first_id", "last_id", "start_time", "end_time", "split", "model",
    "score", "threshold", "is_anomaly", "top_feature", *SUMMARY_COLUMNS, *ERROR_COLUMNS, "severity",
    "flagged_by",
)
RESULT_COLUMNS: tuple[str, ...] = (
    "model", "bottleneck", "depth", "M1", "M2", "M3", "GMM", "KMeans", "quantile", "pot", "budget",
    "threshold_M1", "threshold_M2", "threshold_M3", "test_chunks", "train_seconds",
    "epochs", "train_loss", "val_loss", "converged", "convergence", "M1_status",
)
# M1_status: why the M1 column (and threshold_M1) holds a value or none. Found: a threshold and
# its count; none found: M1 ran and found no threshold (the thesis's "na"); off: not run (detect.m1
# false, --no-m1); n/a: the model has no M1 (the sequence models). Printed in the table in place of
# a count; results.csv (added last: a reader of the other columns reads them as before) writes it.
M1_FOUND, M1_NONE_FOUND, M1_OFF, M1_NOT_APPLICABLE = "found", "none found", "off", "n/a"


@dataclass(frozen=True)
class ModelOutcome:
    """One trained model: its detector, per-chunk scores and its row of the results table."""

    detector: Any                       # a licanom.detectors.BaseDetector
    scores: np.ndarray                  # (n_chunks,)
    feature_errors: np.ndarray | None   # (n_chunks, 8); None for the sequence and context models
    row: dict[str, object]
    top_features: np.ndarray | None = None  # (n_chunks,) context column names (the context model)


@dataclass(frozen=True)
class Detection:
    """Per-chunk results of the primary model and the results table over every model."""

    chunks: pl.DataFrame | None          # CHUNK_COLUMNS; None in a per-key sequence mode
    results: pl.DataFrame
    outcomes: tuple[ModelOutcome, ...]
    sequences: pl.DataFrame | None = None  # per-sequence results (licanom.detectors.sequence.sessions.SEQUENCE_COLUMNS)

    @property
    def primary(self) -> ModelOutcome:
        return self.outcomes[0]

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.chunks is not None:
            self.chunks.write_parquet(out_dir / "chunks.parquet")
        if self.sequences is not None:
            self.sequences.write_parquet(out_dir / "sequences.parquet")
        if len(self.outcomes) > 1:
            self.results.write_csv(out_dir / "results.csv")


def family(model: str) -> str:
    """The registered family of ``model`` (autoencoder, sequence, context, classical)."""
    from licanom.detectors import spec

    return spec(model).family


def is_sequence_model(model: str) -> bool:
    """True for the sequence models (licanom.detectors.sequence): the ones that read per-entity sequences too."""
    return family(model) == "sequence"


def is_context_model(model: str) -> bool:
    """True for the models that read the chunks' context vector (licanom.detectors.context)."""
    return family(model) == "context"


def model_inputs(model: str, prepared: Prepared) -> np.ndarray:
    """What ``model`` reads of the prepared chunks (its registered ``inputs``): the chunks
    ``(n, size, 8)``, the context vectors ``(n, len(CONTEXT_COLUMNS))``, the summary vectors..."""
    from licanom.detectors import inputs_of, spec

    return inputs_of(spec(model).inputs, prepared.chunks, prepared.encoded.frame)


def make_detector(model: str, train: TrainConfig, detect: DetectConfig,
                  sequence: SequenceConfig | None = None, context: ContextConfig | None = None,
                  encode: EncodeConfig | None = None, **extra: object) -> Any:
    """The detector of a registered model name, with the configured settings (the registry's
    :func:`licanom.detectors.build`). Every family decides by ``severity`` unless a threshold is
    named: ``detect.threshold`` for the autoencoders and baselines, ``context.threshold`` (resolved
    for the vendor's size when it is auto: :meth:`licanom.config.Config.for_size`) for the context
    models; the sequence models flag the top ``sequence.contamination`` of their training scores
    (or, with null, decide by their own learned boundary)."""
    from licanom.detectors import build

    return build(model, train, detect, sequence, context, encode, **extra)


def take(X: Any, mask: np.ndarray) -> Any:
    """The rows of ``X`` where ``mask`` is True: an array, or a list of variable-length sequences."""
    if isinstance(X, np.ndarray):
        return X[mask]
    return [x for x, keep in zip(X, mask, strict=True) if keep]


def evaluate_model(
    detector: Any, X: Any, test_mask: np.ndarray, detect: DetectConfig, y: np.ndarray | None = None,
    days: np.ndarray | None = None,
) -> ModelOutcome:
    """Fit on the training chunks (or sequences), score all, fill the model's results-table row.

    ``y`` (sequence models only): +1 normal, -1 anomaly, 0 unknown per item; only the training
    items' labels are used. ``days``: when each chunk began, in days (:meth:`licanom.data.chunk.Chunks.days`),
    for the families that read them (:meth:`~licanom.detectors.base.BaseDetector.fit_with_days`);
    only the training chunks' are used.
    """
    X_train, X_test = take(X, ~test_mask), take(X, test_mask)
    top_features = None
    if detector.family in ("context", "classical"):
        detector.fit_with_days(X_train, None if days is None else np.asarray(days)[~test_mask])
        feature_errors = None
        scores = detector.decision_function(X)
        top_features = detector.top_columns(X)
        has_m1 = hasattr(detector, "m1_threshold")
        m1 = detector.m1_threshold(X_train) if detect.m1 and has_m1 else None
        bottleneck, depth = f"({np.asarray(X).reshape(len(X), -1).shape[1]},)", 0
        seconds, epochs_run, train_loss, val_loss = getattr(detector, "seconds_", 0.0), 0, None, None
    elif detector.family != "autoencoder":
        detector.fit(X_train, None if y is None else np.asarray(y)[~test_mask])
        feature_errors = None
        scores = detector.decision_function(X)
        history = detector.history_
        has_m1, m1 = False, None
        # the pooled features the head reads (twice the hidden size for a pair of poolings)
        encoder = getattr(getattr(detector, "net_", None), "encoder", None)
        bottleneck, depth = f"({getattr(encoder, 'out_features', detector.hidden)},)", 1
        seconds = float(sum(history.seconds)) if history else 0.0
        epochs_run = len(history.objective) if history else 0
        train_loss = history.objective[-1] if history and history.objective else None
        val_loss = None
    else:
        detector.fit_with_days(X_train, None if days is None else np.asarray(days)[~test_mask])
        errors = detector.errors(X)
        scores = errors.score
        # the thesis's 8 columns fill the error_* columns; the rows mode names its top column instead
        feature_errors = errors.columns if errors.columns.shape[1] == len(ERROR_COLUMNS) else None
        if feature_errors is None:
            top_features = np.asarray(detector.explain_columns())[errors.top_columns.argmax(axis=1)]
        assert detector.report_ is not None and detector.net_ is not None
        has_m1 = True
        m1 = detector.m1_threshold(X_train) if detect.m1 else None
        report = detector.report_
        bottleneck, depth = str(tuple(detector.net_.bottleneck)), detector.net_.depth
        seconds, epochs_run = report.seconds, report.epochs_run
        train_loss = report.train_loss[-1] if report.train_loss else None
        val_loss = report.val_loss[-1] if report.val_loss else None
    train_errors = detector.decision_scores_
    assert train_errors is not None
    test_scores = scores[test_mask]
    values = {"M1": m1, "M2": th.m2(train_errors), "M3": th.m3(train_errors),
              "quantile": th.quantile(train_errors), "pot": th.pot(train_errors), "budget": th.budget(train_errors)}

    def count(t: float | None) -> int | None:
        return None if t is None else int((test_scores > t).sum())

    clusters = {}
    if len(X_test) >= 2 and callable(getattr(detector, "encode", None)):
        latent = detector.encode(X_test)
        for method, name in (("gmm", "GMM"), ("kmeans", "KMeans")):
            clusters[name] = int(cluster_anomalies(latent, method, seed=detect.clustering_seed).sum())
    convergence = getattr(detector, "convergence_", None)  # the sequence models' solvers (licanom.detectors.sequence.decide)
    row: dict[str, object] = {
        "model": detector.model,
        "bottleneck": bottleneck,
        "depth": depth,
        **{k: count(v) for k, v in values.items()},
        "GMM": clusters.get("GMM"),
        "KMeans": clusters.get("KMeans"),
        "threshold_M1": m1,
        "threshold_M2": values["M2"],
        "threshold_M3": values["M3"],
        "test_chunks": int(test_mask.sum()),
        "train_seconds": round(seconds, 2),
        "epochs": epochs_run,
        "train_loss": train_loss,
        "val_loss": val_loss,
        # True / False; null where the training makes no claim (fixed epochs, DeepLog, the others)
        "converged": None if convergence is None else convergence.converged,
        "convergence": None if convergence is None else convergence.reason,
        "M1_status": (M1_NOT_APPLICABLE if not has_m1 else M1_OFF if not detect.m1
                      else M1_NONE_FOUND if m1 is None else M1_FOUND),
    }
    return ModelOutcome(detector=detector, scores=scores, feature_errors=feature_errors, row=row,
                        top_features=top_features)


def chunk_nights(meta: pl.DataFrame) -> np.ndarray:
    """Each chunk's night for the decision's night rule: the UTC day its first request is in."""
    return meta["start_time"].dt.epoch("d").to_numpy()


def chunk_decision(detector: Any, meta: pl.DataFrame, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chunks' severity and the detector's decision on them (its threshold and, by severity,
    the night rule over :func:`chunk_nights`): :func:`scored_chunks`' ``severity`` and ``flags``."""
    severity = detector.severity_of(scores)
    return severity, detector.flags(scores, chunk_nights(meta), severity)


def scored_chunks(meta: pl.DataFrame, model: str, feature_errors: np.ndarray | None, threshold: float,
                  scores: np.ndarray | None = None, top_features: np.ndarray | None = None,
                  severity: np.ndarray | None = None, flags: np.ndarray | None = None) -> pl.DataFrame:
    """Chunk metadata (with ``split``) plus scores in the CHUNK_COLUMNS contract.

    ``feature_errors`` is ``(n_chunks, 8)``; the score is its mean, ``top_feature`` its argmax.
    A model without per-column errors gives ``scores`` instead, and the ``error_*`` columns are
    null; ``top_feature`` is then ``top_features`` (the context model: the context column
    furthest above its typical value) or null (the sequence models). ``severity``: the calibrated
    0-100 of each score (:meth:`licanom.detectors.BaseDetector.severity_of`), null when not given.
    ``flags``: the detector's decision (:meth:`licanom.detectors.BaseDetector.flags`); when not
    given, ``score > threshold``. ``flagged_by`` says why each flagged chunk was
    (:data:`licanom.detectors.decision.FLAGGED_BY`):
    a flag that its score does not carry above ``threshold`` is the night rule's.
    """
    if feature_errors is not None:
        scores = feature_errors.mean(axis=1) if scores is None else scores
        top = pl.Series("top_feature", np.asarray(FEATURES)[feature_errors.argmax(axis=1)], dtype=pl.String)
        errors = [pl.Series(name, feature_errors[:, j], dtype=pl.Float64) for j, name in enumerate(ERROR_COLUMNS)]
    else:
        assert scores is not None, "give feature_errors or scores"
        top = (pl.lit(None, dtype=pl.String).alias("top_feature") if top_features is None
               else pl.Series("top_feature", np.asarray(top_features), dtype=pl.String))
        errors = [pl.lit(None, dtype=pl.Float64).alias(name) for name in ERROR_COLUMNS]
    above = np.asarray(scores, dtype=np.float64) > threshold
    flagged = above if flags is None else np.asarray(flags, dtype=bool)
    return meta.with_columns(
        pl.lit(model).alias("model"),
        pl.Series("score", scores, dtype=pl.Float64),
        pl.lit(float(threshold)).alias("threshold"),
        pl.Series("is_anomaly", flagged),
        top,
        *errors,
        (pl.lit(None, dtype=pl.Float64) if severity is None else pl.Series(np.asarray(severity, dtype=np.float64)))
        .alias("severity"),
        pl.when(pl.Series(flagged & above)).then(pl.lit(FLAGGED_BY[0]))
        .when(pl.Series(flagged)).then(pl.lit(FLAGGED_BY[1])).otherwise(pl.lit(None, pl.String)).alias("flagged_by"),
    ).select(CHUNK_COLUMNS)


def night_rule_flags(chunks: pl.DataFrame) -> int:
    """How many of the scored chunks (:func:`scored_chunks`) the night rule flagged (0 for chunks
    stored without ``flagged_by``)."""
    if "flagged_by" not in chunks.columns:
        return 0
    return int((chunks["flagged_by"] == FLAGGED_BY[1]).sum())


def chunk_results(prepared: Prepared, outcome: ModelOutcome) -> pl.DataFrame:
    """One row per chunk (train and test) in the CHUNK_COLUMNS contract."""
    det = outcome.detector
    assert det.threshold_ is not None
    meta = prepared.chunk_table()
    return scored_chunks(meta, det.model, outcome.feature_errors, det.threshold_, outcome.scores,
                         outcome.top_features, *chunk_decision(det, meta, outcome.scores))


def require_training_chunks(prepared: Prepared) -> None:
    """Raise :class:`NotEnoughDataError` where the log gives fewer than 2 training chunks: every
    detector fits what is normal on two chunks at the least (``licanom detect`` and the training
    flow refuse such a log with this one message, before any model is fitted)."""
    n_train = int((~prepared.test_mask).sum())
    if n_train < 2:
        c = prepared.chunks
        raise NotEnoughDataError(
            f"the log gives {c.n_chunks} chunk(s) of {c.size} requests, {n_train} of them for training; a "
            f"detector needs at least 2 training chunks: give a longer log")


def refuse_labels_unlearnt(models: Sequence[str]) -> None:
    """Labels are learnt by the sequence models only (semi-supervised); a run of ``models`` that
    holds none of them would train as if no labels were given: a ValueError saying so, before any
    model is fitted. A run of some sequence models and some others is taken (:func:`labels_unlearnt`)."""
    if any(is_sequence_model(m) for m in models):
        return
    from licanom.config import sequence_models

    raise ValueError(
        f"labels are learnt by the sequence models only ({', '.join(sequence_models())}); "
        f"{', '.join(models)} learn{'s' if len(models) == 1 else ''} without them: leave the labels out, "
        "or train a sequence model")


def resolved_train(prepared: Prepared, train: TrainConfig, models: Sequence[str] = ()) -> TrainConfig:
    """``train`` with ``models: auto`` resolved by the vendor's size (its training chunks), as
    :func:`detect` trains it; as given where ``models`` are named or the models are."""
    if not models and train.models == (AUTO,):
        return train.resolved(int((~prepared.test_mask).sum()))
    return train


LABELS_NAMED = 5  # unmatched labels named in the warning or the refusal, the first ones


def unmatched_labels(labels: pl.DataFrame, rows: pl.DataFrame, source: str, pseudonymised: bool = False,
                     tail_rows: int = 0) -> str | None:
    """How ``labels`` (``Id`` or ``Key``, with both ``Id``, and ``label``) meet the log they label:
    ``rows``, its valid rows as the models read them (``Prepared.encoded.frame``: the keys
    pseudonymised where the vendor asks), the last ``tail_rows`` of them in no item (the chunk
    mode's rows after the last full chunk, :attr:`licanom.data.chunk.Chunks.tail_rows`: no model
    scores or learns from them). None where each labelled Id (key) is in an item; one line where
    some are not, counting those of no row and those of the tail rows apart and naming the first
    few (no model learns from them: a warning); where none is, a ValueError naming ``source`` (the
    labels file), as a wrong file would train as if unlabelled. Keys are matched as the models see
    them: with ``pseudonymised`` a real key matches no pseudonym, which the refusal names as the
    likely cause."""
    key = "Id" if "Id" in labels.columns else "Key"
    kind = pl.Int64 if key == "Id" else pl.String
    labelled = labels.select(pl.col(key).cast(kind)).unique(maintain_order=True)
    log = rows.select(pl.col(key).cast(kind))
    unmatched = labelled.join(log.unique(), on=key, how="anti", maintain_order="left")
    itemised = log.head(max(log.height - tail_rows, 0)).unique()
    outside = (labelled.join(unmatched, on=key, how="anti", maintain_order="left")
               .join(itemised, on=key, how="anti", maintain_order="left"))
    if unmatched.height == 0 and outside.height == 0:
        return None
    what = "Ids" if key == "Id" else "keys"

    def first(values: pl.DataFrame) -> str:
        named = ", ".join(str(v) for v in values[key].head(LABELS_NAMED).to_list())
        return f"{'first: ' if values.height > LABELS_NAMED else ''}{named}"

    def verb(n: int) -> str:
        return f"{n:,} {'is' if n == 1 else 'are'}"

    in_tail = f"in valid rows no chunk holds, the {tail_rows:,} tail rows after the last full chunk"
    unlearnt = unmatched.height + outside.height
    if unlearnt < labelled.height:
        if outside.height == 0:
            return (f"{unmatched.height:,} of the {labelled.height:,} labelled {what} of {source} "
                    f"{'is' if unmatched.height == 1 else 'are'} in no valid row of the log trained on "
                    f"({first(unmatched)}): no model learns from {'it' if unmatched.height == 1 else 'them'}")
        parts = ([f"{verb(unmatched.height)} in no valid row of the log trained on ({first(unmatched)})"]
                 if unmatched.height else [])
        parts.append(f"{verb(outside.height)} {in_tail} ({first(outside)})")
        return (f"{unlearnt:,} of the {labelled.height:,} labelled {what} of {source} "
                f"{'is' if unlearnt == 1 else 'are'} learnt by no model: {'; '.join(parts)}")
    none = (f"none of its {labelled.height:,} labelled {what} is" if labelled.height > 1
            else f"its one labelled {what[:-1]} is not")
    if outside.height:
        parts = [f"{verb(unmatched.height)} in no valid row of the log trained on"] if unmatched.height else []
        parts.append(f"{verb(outside.height)} {in_tail}")
        raise ValueError(f"{source}: {none} in a chunk of the log trained on ({first(labelled)}): "
                         f"{', '.join(parts)}; nothing was trained")
    cause = ("the vendor's keys are pseudonymised (privacy.pseudonymise) and the models see each key's pseudonym, "
             "which no real key matches: label by Id instead; nothing was trained" if key == "Key" and pseudonymised
             else "are they this log's labels? Nothing was trained")
    raise ValueError(f"{source}: {none} in a valid row of the log trained on ({first(unmatched)}): {cause}")


def labels_unlearnt(models: Sequence[str]) -> tuple[str, ...]:
    """Those of ``models`` that learn without labels (every one but the sequence models)."""
    return tuple(m for m in models if not is_sequence_model(m))


def detect(
    prepared: Prepared,
    train: TrainConfig,
    detect_cfg: DetectConfig,
    models: Sequence[str] | None = None,
    on_model: Callable[[ModelOutcome], None] | None = None,
    sequence: SequenceConfig | None = None,
    labels: pl.DataFrame | None = None,
    split: SplitConfig | None = None,
    context: ContextConfig | None = None,
    encode: EncodeConfig | None = None,
) -> Detection:
    """Train each model and score every chunk (or entity sequence); the first model gives the
    per-item results.

    ``sequence.mode`` "key" / "key-machine" scores each licence key's (and machine's) requests
    per period with the sequence models (autoencoders need fixed chunks); ``labels`` (``Id`` or
    ``Key`` and ``label`` in {+1, -1, 0}) make the sequence models semi-supervised; the other models
    learn without them, and labels for a run of none of the sequence models are refused
    (:func:`refuse_labels_unlearnt`).
    """
    from licanom.detectors.sequence.sessions import aggregate_row_labels, make_sequences, sequence_labels

    n_train = int((~prepared.test_mask).sum())
    train = resolved_train(prepared, train, models)
    context = (context or ContextConfig()).resolved(train.is_small(n_train))
    models = tuple(models or train.models)
    seq = sequence or SequenceConfig()
    if seq.mode != "chunks":
        fixed = [m for m in models if not is_sequence_model(m)]
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} need fixed-size chunks; sequence mode {seq.mode!r} takes the "
                "sequence models only (LSTM_OCSVM, LSTM_SVDD, GRU_OCSVM, GRU_SVDD, DeepLog)"
            )
        seqs = make_sequences(prepared.encoded.frame, by=seq.mode, period=timedelta(hours=seq.period_hours),
                              max_length=seq.max_length)
        split = split or SplitConfig()
        X: Any = list(seqs.X)
        test_mask = split_chunks(seqs.n_sequences, split.method, split.test_fraction, split.seed)
        y = None if labels is None else sequence_labels(seqs, labels)
    else:
        X, test_mask = prepared.chunks.X, prepared.test_mask
        require_training_chunks(prepared)
        y = None
        if labels is not None:
            refuse_labels_unlearnt(models)
            if "Id" not in labels.columns:
                raise ValueError("labels for chunks are keyed by log Id (columns Id and label)")
            ids = prepared.encoded.frame["Id"].to_numpy()
            starts = prepared.chunks.meta["start_row"].to_numpy()
            y = aggregate_row_labels([ids[a:a + prepared.chunks.size] for a in starts], labels)
    outcomes = []
    vectors: np.ndarray | None = None  # the context vectors, computed once for the context models
    for model in models:
        detector = make_detector(model, train, detect_cfg, seq, context, encode)
        inputs = X
        if is_context_model(model):
            vectors = model_inputs(model, prepared) if vectors is None else vectors
            inputs = vectors
        outcome = evaluate_model(detector, inputs, test_mask, detect_cfg, y if is_sequence_model(model) else None,
                                 prepared.chunks.days())
        outcomes.append(outcome)
        if on_model:
            on_model(outcome)
    results = results_frame([o.row for o in outcomes])
    if seq.mode != "chunks":
        det = outcomes[0].detector
        per_sequence = seqs.meta.with_columns(
            pl.Series("split", np.where(test_mask, "test", "train")),
            pl.lit(det.model).alias("model"),
            pl.Series("score", outcomes[0].scores, dtype=pl.Float64),
            pl.lit(float(det.threshold_)).alias("threshold"),
            pl.Series("is_anomaly", outcomes[0].scores > det.threshold_),
        ).select(SEQUENCE_COLUMNS)
        return Detection(chunks=None, results=results, outcomes=tuple(outcomes), sequences=per_sequence)
    return Detection(chunks=chunk_results(prepared, outcomes[0]), results=results, outcomes=tuple(outcomes))


def entity_training_rows(rows: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """The derived ``rows`` of the training log that the entity model of a detect run is fitted
    on: those within the time span of the training items (``items``: the scored chunks or
    sequences, with ``split``), from the first training item's start to the last one's end.

    Entities are whole UTC days and clock hours of a key, machine code or address, so they cannot
    follow a split of 100-request chunks: a split in time ("time") gives its first part, a shuffled
    split (the default) spreads training items over the whole log and so gives all of it (every
    day, as the chunk models see every day)."""
    train = items.filter(pl.col("split") == "train")
    if train.height == 0:
        raise ValueError("no training items to fit the entity model on")
    start, end = train["start_time"].min(), train["end_time"].max()
    return rows.filter(pl.col("Time").is_between(start, end))


def entity_results(train_rows: pl.DataFrame, items: pl.DataFrame, score_rows: pl.DataFrame | None = None) -> pl.DataFrame:
    """The entity results of a detect run (:data:`licanom.detectors.entities.ENTITY_COLUMNS`,
    most severe first, as the nightly flow's ``entities.parquet``).

    ``train_rows``: the derived rows of the training log (``Prepared.encoded.frame``,
    pseudonymised where the vendor asks); ``items``: its scored chunks or sequences. The model is
    fitted on :func:`entity_training_rows` and scores ``score_rows`` (derived rows of another log,
    ``--train-logs``), or all of ``train_rows`` (train and test items alike, as chunks.parquet
    holds both). Raises ValueError when the training rows hold too few entities."""
    from licanom.detectors.entities import EntityModel

    model = EntityModel().fit(entity_training_rows(train_rows, items))
    return model.score(train_rows if score_rows is None else score_rows)


def results_frame(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    """The results table from models' rows (nullable counts where M1 or clustering gave none)."""
    return pl.DataFrame(list(rows), schema_overrides={
        "M1": pl.Int64, "GMM": pl.Int64, "KMeans": pl.Int64, "threshold_M1": pl.Float64,
        "train_loss": pl.Float64, "val_loss": pl.Float64, "converged": pl.Boolean, "convergence": pl.String,
        "M1_status": pl.String,
    }).select(RESULT_COLUMNS)


def format_results(results: pl.DataFrame) -> str:
    """The results table as the thesis prints it; where M1 gives no count, its column says why
    (M1_status: "none found", the thesis's "na"; "off"; "n/a"), and "na" for a table without
    M1_status (one written before it was added). The other counts print "na" where they give none."""
    cols = ("model", "bottleneck", "depth", "M1", "M2", "M3", "GMM", "KMeans", "train_seconds")
    w = max([15, *(len(str(m)) + 2 for m in results["model"])])  # a name never runs into the next column
    header = (f"{'Model name':<{w}}{'Bottleneck':<12}{'Depth':>6}{'M1':>12}{'M2':>7}{'M3':>7}{'GMM':>7}{'KMeans':>8}"
              f"{'Train [s]':>11}")
    status = results["M1_status"] if "M1_status" in results.columns else pl.Series([None] * results.height)
    lines = [header]
    for row, why in zip(results.select(cols).iter_rows(named=True), status, strict=True):
        def cell(v: object, none: str = "na") -> str:
            return none if v is None else str(v)
        lines.append(
            f"{row['model']:<{w}}{row['bottleneck']:<12}{row['depth']:>6}{cell(row['M1'], why or 'na'):>12}"
            f"{cell(row['M2']):>7}{cell(row['M3']):>7}{cell(row['GMM']):>7}{cell(row['KMeans']):>8}"
            f"{row['train_seconds']:>11.1f}"
        )
    return "\n".join(lines)
