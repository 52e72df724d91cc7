"""Cut the encoded log into windows of consecutive requests (thesis 3.1.2) and split them.

A window holds ``size`` consecutive requests; windows start every ``stride`` requests (no
overlap when ``stride == size``, the thesis's choice). Inside each window the time column is
normalised to [0, 1] (first request 0, last 1; a window whose requests share one timestamp
is all zeros). Rows after the last full window form the *tail*: with ``partial="drop"`` (the
default) they are left out and reported, so that the next night's run can prepend them;
with ``partial="overlap"`` one extra window ending at the last row covers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from licanom.columns import FEATURE_COLUMNS, SUMMARY_COLUMNS, SUMMARY_SOURCES


class NotEnoughDataError(ValueError):
    """The log is empty or shorter than one window."""


@dataclass(frozen=True)
class Chunks:
    """Windows of the log.

    ``X``: float32 ``(n_chunks, size, 8)`` in the thesis's column order (FEATURES).
    ``meta``: one row per chunk: ``chunk``, ``first_id``, ``last_id``, ``start_time``,
    ``end_time``, ``start_row`` and the summary vector ``distinct_<feature>``.
    ``tail_rows``: rows after the last window, not in any chunk (``partial="drop"``).
    """

    X: np.ndarray
    meta: pl.DataFrame
    size: int
    stride: int
    tail_rows: int

    @property
    def n_chunks(self) -> int:
        return int(self.X.shape[0])


def window_starts(n_rows: int, size: int, stride: int, partial: Literal["drop", "overlap"]) -> np.ndarray:
    """Row index where each window starts; raises NotEnoughDataError if no window fits."""
    if size < 2 or stride < 1:
        raise ValueError(f"chunk size must be >= 2 and stride >= 1, got {size}, {stride}")
    if n_rows == 0:
        raise NotEnoughDataError("the log has no valid rows: nothing to chunk")
    if n_rows < size:
        raise NotEnoughDataError(
            f"the log has {n_rows} valid rows, fewer than one chunk of {size} requests; "
            "collect more data or lower chunk.size"
        )
    starts = np.arange(0, n_rows - size + 1, stride, dtype=np.int64)
    if partial == "overlap" and starts[-1] + size < n_rows:
        starts = np.append(starts, n_rows - size)
    return starts


def _normalise_time(X: np.ndarray, t: np.ndarray) -> None:
    """Write (t - t_first) / (t_last - t_first) per window into X[..., 0], in place."""
    t0 = t[:, :1]
    span = t[:, -1:] - t0
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(span > 0, (t - t0) / np.where(span > 0, span, 1.0), 0.0)
    X[:, :, 0] = norm.astype(np.float32)


def _summary(encoded: pl.DataFrame, starts: np.ndarray, size: int, stride: int) -> pl.DataFrame:
    """Distinct raw values per column in each window (thesis 3.4)."""
    sources = [src for _, src in SUMMARY_SOURCES]
    if stride == size and (len(starts) == 0 or starts[-1] == (len(starts) - 1) * size):
        n = len(starts) * size
        return (
            encoded.head(n)
            .select(
                (pl.int_range(n, dtype=pl.Int64) // size).alias("chunk"),
                *[pl.col(src).alias(name) for name, src in zip(SUMMARY_COLUMNS, sources, strict=True)],
            )
            .group_by("chunk", maintain_order=True)
            .agg(pl.all().n_unique().cast(pl.Int32))
            .drop("chunk")
        )
    # Overlapping windows: dense integer codes, then distinct counts by sorting each window.
    codes = np.stack(
        [encoded[src].rank("dense").fill_null(0).to_numpy().astype(np.int64) for src in sources],
        axis=1,
    )
    idx = starts[:, None] + np.arange(size)[None, :]
    w = np.sort(codes[idx], axis=1)
    counts = 1 + (np.diff(w, axis=1) != 0).sum(axis=1)
    return pl.DataFrame(
        {name: counts[:, j].astype(np.int32) for j, name in enumerate(SUMMARY_COLUMNS)}
    )


def make_chunks(
    encoded: pl.DataFrame,
    size: int = 100,
    stride: int | None = None,
    partial: Literal["drop", "overlap"] = "drop",
) -> Chunks:
    """Cut a time-ordered encoded log (see licanom.encode) into windows."""
    stride = size if stride is None else stride
    n_rows = encoded.height
    starts = window_starts(n_rows, size, stride, partial)
    rows = encoded.select(FEATURE_COLUMNS).to_numpy().astype(np.float32, copy=False)
    t = encoded["f_time"].to_numpy().astype(np.float64, copy=False)
    if stride == size and partial == "drop":
        n = len(starts) * size
        X = rows[:n].reshape(len(starts), size, rows.shape[1]).copy()
        tw = t[:n].reshape(len(starts), size)
    else:
        idx = starts[:, None] + np.arange(size)[None, :]
        X = rows[idx]
        tw = t[idx]
    _normalise_time(X, tw)

    ends = starts + size - 1
    ids = encoded["Id"].to_numpy()
    times = encoded["Time"]
    meta = pl.DataFrame(
        {
            "chunk": np.arange(len(starts), dtype=np.int64),
            "first_id": ids[starts],
            "last_id": ids[ends],
            "start_time": times.gather(starts),
            "end_time": times.gather(ends),
            "start_row": starts,
        }
    ).hstack(_summary(encoded, starts, size, stride))
    tail = n_rows - int(ends[-1]) - 1
    return Chunks(X=X, meta=meta, size=size, stride=stride, tail_rows=max(tail, 0))


def split_chunks(
    n_chunks: int,
    method: Literal["shuffle", "time"] = "shuffle",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Boolean mask, True for test chunks: a seeded shuffled split (the thesis's 80:20) or the
    last ``test_fraction`` of chunks in time order."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(n_chunks * test_fraction))
    if n_chunks - n_test < 1:
        raise NotEnoughDataError(f"{n_chunks} chunk(s) leave none to train on")
    mask = np.zeros(n_chunks, dtype=bool)
    if method == "time":
        mask[n_chunks - n_test:] = True
    elif method == "shuffle":
        mask[np.random.default_rng(seed).permutation(n_chunks)[:n_test]] = True
    else:
        raise ValueError(f"unknown split method {method!r}")
    return mask
