"""Train the configured autoencoders on a prepared log and score every chunk.

Produces the per-chunk results (the ``licanom detect`` contract) and the thesis's results
table (Figures 4.1-4.3): per model, its bottleneck and depth, and the number of test chunks
flagged under M1, M2, M3, GMM and KMeans, plus training seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from licanom import thresholds as th
from licanom.clustering import cluster_anomalies
from licanom.columns import ERROR_COLUMNS, FEATURES, SUMMARY_COLUMNS
from licanom.config import DetectConfig, TrainConfig
from licanom.models.detector import AutoencoderDetector
from licanom.pipeline import Prepared

# Columns of chunks.parquet, in order. Other tools read this file: extend, never rename.
CHUNK_COLUMNS: tuple[str, ...] = (
    "chunk", "first_id", "last_id", "start_time", "end_time", "split", "model",
    "score", "threshold", "is_anomaly", "top_feature", *SUMMARY_COLUMNS, *ERROR_COLUMNS,
)
RESULT_COLUMNS: tuple[str, ...] = (
    "model", "bottleneck", "depth", "M1", "M2", "M3", "GMM", "KMeans", "quantile", "pot",
    "threshold_M1", "threshold_M2", "threshold_M3", "test_chunks", "train_seconds",
    "epochs", "train_loss", "val_loss",
)


@dataclass(frozen=True)
class ModelOutcome:
    """One trained model: its detector, per-chunk scores and its row of the results table."""

    detector: AutoencoderDetector
    scores: np.ndarray          # (n_chunks,)
    feature_errors: np.ndarray  # (n_chunks, 8)
    row: dict[str, object]


@dataclass(frozen=True)
class Detection:
    """Per-chunk results of the primary model and the results table over every model."""

    chunks: pl.DataFrame
    results: pl.DataFrame
    outcomes: tuple[ModelOutcome, ...]

    @property
    def primary(self) -> ModelOutcome:
        return self.outcomes[0]

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.chunks.write_parquet(out_dir / "chunks.parquet")
        if len(self.outcomes) > 1:
            self.results.write_csv(out_dir / "results.csv")


def make_detector(model: str, train: TrainConfig, detect: DetectConfig, **extra: object) -> AutoencoderDetector:
    return AutoencoderDetector(
        model=model,
        threshold=detect.threshold,
        threshold_params=tuple(sorted(detect.threshold_params.items())),
        epochs=train.epochs,
        batch_size=train.batch_size,
        lr=train.lr,
        val_fraction=train.val_fraction,
        patience=train.patience,
        seed=train.seed,
        threads=train.threads,
        m1_max_rounds=detect.m1_max_rounds,
        **extra,  # type: ignore[arg-type]
    )


def evaluate_model(
    detector: AutoencoderDetector, X: np.ndarray, test_mask: np.ndarray, detect: DetectConfig
) -> ModelOutcome:
    """Fit on the training chunks, score all chunks, fill the model's results-table row."""
    X_train, X_test = X[~test_mask], X[test_mask]
    detector.fit(X_train)
    feature_errors = detector.feature_errors(X)
    scores = feature_errors.mean(axis=1)
    train_errors = detector.decision_scores_
    assert train_errors is not None and detector.report_ is not None and detector.net_ is not None
    test_scores = scores[test_mask]

    m1 = detector.m1_threshold(X_train) if detect.m1 else None
    values = {"M1": m1, "M2": th.m2(train_errors), "M3": th.m3(train_errors),
              "quantile": th.quantile(train_errors), "pot": th.pot(train_errors)}

    def count(t: float | None) -> int | None:
        return None if t is None else int((test_scores > t).sum())

    clusters = {}
    if len(X_test) >= 2:
        latent = detector.encode(X_test)
        for method, name in (("gmm", "GMM"), ("kmeans", "KMeans")):
            clusters[name] = int(cluster_anomalies(latent, method, seed=detect.clustering_seed).sum())
    report = detector.report_
    row: dict[str, object] = {
        "model": detector.model,
        "bottleneck": str(tuple(detector.net_.bottleneck)),
        "depth": detector.net_.depth,
        **{k: count(v) for k, v in values.items()},
        "GMM": clusters.get("GMM"),
        "KMeans": clusters.get("KMeans"),
        "threshold_M1": m1,
        "threshold_M2": values["M2"],
        "threshold_M3": values["M3"],
        "test_chunks": int(test_mask.sum()),
        "train_seconds": round(report.seconds, 2),
        "epochs": report.epochs_run,
        "train_loss": report.train_loss[-1] if report.train_loss else None,
        "val_loss": report.val_loss[-1] if report.val_loss else None,
    }
    return ModelOutcome(detector=detector, scores=scores, feature_errors=feature_errors, row=row)


def scored_chunks(meta: pl.DataFrame, model: str, feature_errors: np.ndarray, threshold: float) -> pl.DataFrame:
    """Chunk metadata (with ``split``) plus scores in the CHUNK_COLUMNS contract.

    ``feature_errors`` is ``(n_chunks, 8)``; the score is its mean, ``top_feature`` its argmax.
    """
    scores = feature_errors.mean(axis=1)
    return meta.with_columns(
        pl.lit(model).alias("model"),
        pl.Series("score", scores, dtype=pl.Float64),
        pl.lit(float(threshold)).alias("threshold"),
        pl.Series("is_anomaly", scores > threshold),
        pl.Series("top_feature", np.asarray(FEATURES)[feature_errors.argmax(axis=1)], dtype=pl.String),
        *(pl.Series(name, feature_errors[:, j], dtype=pl.Float64) for j, name in enumerate(ERROR_COLUMNS)),
    ).select(CHUNK_COLUMNS)


def chunk_results(prepared: Prepared, outcome: ModelOutcome) -> pl.DataFrame:
    """One row per chunk (train and test) in the CHUNK_COLUMNS contract."""
    det = outcome.detector
    assert det.threshold_ is not None
    return scored_chunks(prepared.chunk_table(), det.model, outcome.feature_errors, det.threshold_)


def detect(
    prepared: Prepared,
    train: TrainConfig,
    detect_cfg: DetectConfig,
    models: Sequence[str] | None = None,
    on_model: Callable[[ModelOutcome], None] | None = None,
) -> Detection:
    """Train each model on the training chunks; the first model gives the chunk results."""
    models = tuple(models or train.models)
    outcomes = []
    for model in models:
        outcome = evaluate_model(
            make_detector(model, train, detect_cfg), prepared.chunks.X, prepared.test_mask, detect_cfg
        )
        outcomes.append(outcome)
        if on_model:
            on_model(outcome)
    return Detection(
        chunks=chunk_results(prepared, outcomes[0]),
        results=results_frame([o.row for o in outcomes]),
        outcomes=tuple(outcomes),
    )


def results_frame(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    """The results table from models' rows (nullable counts where M1 or clustering gave none)."""
    return pl.DataFrame(list(rows), schema_overrides={
        "M1": pl.Int64, "GMM": pl.Int64, "KMeans": pl.Int64, "threshold_M1": pl.Float64,
        "train_loss": pl.Float64, "val_loss": pl.Float64,
    }).select(RESULT_COLUMNS)


def format_results(results: pl.DataFrame) -> str:
    """The results table as the thesis prints it ("na" where M1 found no threshold)."""
    cols = ("model", "bottleneck", "depth", "M1", "M2", "M3", "GMM", "KMeans", "train_seconds")
    header = f"{'Model name':<15}{'Bottleneck':<12}{'Depth':>6}{'M1':>7}{'M2':>7}{'M3':>7}{'GMM':>7}{'KMeans':>8}{'Train [s]':>11}"
    lines = [header]
    for row in results.select(cols).iter_rows(named=True):
        def cell(v: object) -> str:
            return "na" if v is None else str(v)
        lines.append(
            f"{row['model']:<15}{row['bottleneck']:<12}{row['depth']:>6}{cell(row['M1']):>7}{cell(row['M2']):>7}"
            f"{cell(row['M3']):>7}{cell(row['GMM']):>7}{cell(row['KMeans']):>8}{row['train_seconds']:>11.1f}"
        )
    return "\n".join(lines)
