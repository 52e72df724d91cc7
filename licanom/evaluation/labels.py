"""Ground truth for measuring detectors on labelled (simulated) logs; detectors never see it."""

from __future__ import annotations

import numpy as np
import polars as pl

from licanom.data.chunk import Chunks


def row_labels(encoded: pl.DataFrame, labels: pl.DataFrame) -> np.ndarray:
    """Bool per row of the (time-ordered) encoded frame: True where the row's Id is labelled."""
    return encoded["Id"].is_in(labels["Id"].implode()).to_numpy()


def windows_holding(marked: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Bool per window ``starts[i] .. starts[i] + size - 1``: True when it holds a marked row."""
    csum = np.concatenate([[0], np.cumsum(np.asarray(marked, dtype=np.int64))])
    starts = np.asarray(starts, dtype=np.int64)
    return (csum[starts + size] - csum[starts]) > 0


def chunk_truth(encoded: pl.DataFrame, chunks: Chunks, labels: pl.DataFrame) -> np.ndarray:
    """Bool per chunk: True when the chunk holds at least one labelled row."""
    return windows_holding(row_labels(encoded, labels), chunks.meta["start_row"].to_numpy(), chunks.size)


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, scores))
