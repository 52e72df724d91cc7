"""Score one log with a detector trained on another (``licanom detect --train-logs A --logs B``).

The other log is read as a night would be: validated, encoded with the training log's vocabulary
(a value first seen in it encodes as 0.0), cut with the training settings, and scored by the
trained detector with its threshold. Unlike a night, rows of a product the training log does not hold
are scored too (another log may be another vendor's, on purpose), and :class:`ScoredLog` counts them
so that the command says so; a context model judges "new to the key" against the training
log's key pairs. Every mode: fixed chunks, and per-key (or key-and-machine) sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from licanom.ops import bundle as bundle_lib
from licanom.data import pipeline
from licanom.data.chunk import NotEnoughDataError
from licanom.config import Config
from licanom.data.context_vector import KeyHistory
from licanom.ops.detect import is_context_model
from licanom.detectors.sequence.sessions import SEQUENCE_COLUMNS, make_sequences
from licanom.data.privacy import secret_env_name
from licanom.data.validate import ValidationResult

SCORE_SPLIT = "score"  # the ``split`` of every item of the scored log


@dataclass(frozen=True)
class ScoredLog:
    """The other log's validation and its scored items: chunks (CHUNK_COLUMNS) or sequences."""

    validation: ValidationResult
    chunks: pl.DataFrame | None
    sequences: pl.DataFrame | None
    # the products of the scored log that the training log does not hold, and their valid rows:
    # scored all the same (their values encode as unseen), and said so
    unseen_products: tuple[int, ...] = ()
    unseen_product_rows: int = 0

    @property
    def items(self) -> pl.DataFrame:
        scored = self.chunks if self.chunks is not None else self.sequences
        assert scored is not None
        return scored


def trained_bundle(detector: Any, trained: pipeline.Prepared, cfg: Config) -> bundle_lib.ModelBundle:
    """The detector with what scoring needs from its training log (the bundle a night loads)."""
    return bundle_lib.ModelBundle(
        vendor=cfg.vendor, detector=detector, vocabulary=trained.encoded.vocabulary,
        chunk=cfg.chunk, encode=cfg.encode,
        product_ids=(),  # another log may hold other products: their values encode as unseen
        pseudonym_env=secret_env_name(cfg.vendor, cfg.privacy.secret_env) if cfg.privacy.pseudonymise else None,
        key_history=KeyHistory.from_rows(trained.encoded.frame, levels=True) if is_context_model(detector.model) else None,
        absent_fields=bundle_lib.absent_fields(trained.validation.valid),
    )


def score_other_log(detector: Any, trained: pipeline.Prepared, raw: pl.DataFrame, cfg: Config) -> ScoredLog:
    """Score ``raw`` (another log) with ``detector``, trained on ``trained`` with settings ``cfg``."""
    validation = pipeline.validate(raw, cfg.validate_, private=cfg.privacy.pseudonymise)
    known = trained.validation.valid["ProductId"].unique().implode()
    unseen = validation.valid.filter(~pl.col("ProductId").is_in(known))["ProductId"]
    unseen_products, unseen_rows = tuple(sorted(unseen.unique().to_list())), unseen.len()
    if cfg.sequence.mode != "chunks":
        encoded = pipeline.encode(validation.valid, cfg.encode, trained.encoded.vocabulary,
                                  pipeline.pseudonym_secret(cfg))
        seqs = make_sequences(encoded.frame, by=cfg.sequence.mode, period=timedelta(hours=cfg.sequence.period_hours),
                              max_length=cfg.sequence.max_length)
        scores = np.asarray(detector.decision_function(list(seqs.X)), dtype=np.float64)
        sequences = seqs.meta.with_columns(
            pl.lit(SCORE_SPLIT).alias("split"),
            pl.lit(detector.model).alias("model"),
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(float(detector.threshold_)).alias("threshold"),
            pl.Series("is_anomaly", scores > detector.threshold_),
        ).select(SEQUENCE_COLUMNS)
        return ScoredLog(validation=validation, chunks=None, sequences=sequences, unseen_products=unseen_products,
                         unseen_product_rows=unseen_rows)
    bundle = trained_bundle(detector, trained, cfg)
    windows = bundle_lib.make_windows(bundle, validation.valid)
    if windows.chunks is None:
        raise NotEnoughDataError(
            f"the log to score has {validation.valid.height} valid rows, fewer than one chunk of {cfg.chunk.size}")
    chunks = bundle_lib.score_windows(bundle, windows)
    return ScoredLog(validation=validation, chunks=chunks, sequences=None, unseen_products=unseen_products,
                     unseen_product_rows=unseen_rows)
