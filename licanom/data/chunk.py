"""Cut the encoded log into windows of consecutive requests (thesis 3.1.2) and split them.

A window holds ``size`` consecutive requests; windows start every ``stride`` requests (no
overlap when ``stride == size``, the thesis's choice). Inside each window the time column is
normalised to [0, 1] (first request 0, last 1; a window whose requests share one timestamp
is all zeros). Rows after the last full window form the *tail*: with ``partial="drop"`` (the
default) they are left out and reported, so that the next night's run can prepend them;
with ``partial="overlap"`` one extra window ending at the last row covers them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import polars as pl

from licanom.data.codes import ENTITY_TEXTS, TextCodes, in_threads, text_ids
from licanom.data.columns import CATEGORICAL, FEATURE_COLUMNS, SUMMARY_COLUMNS, SUMMARY_SOURCES


T = TypeVar("T")


class NotEnoughDataError(ValueError):
    """The log is empty or shorter than one window."""


@dataclass(frozen=True)
class Chunks:
    """Windows of the log.

    ``X``: float32 ``(n_chunks, size, 8)`` in the thesis's column order (FEATURES), or, for a
    frame of the rows encoder, ``(n_chunks, size, len(ROW_FEATURES))`` (licanom.data.encode).
    ``meta``: one row per chunk: ``chunk``, ``first_id``, ``last_id``, ``start_time``,
    ``end_time``, ``start_row`` and the summary vector ``distinct_<feature>``.
    ``tail_rows``: rows after the last window, not in any chunk (``partial="drop"``).
    ``codes``: the integer codes of the entity texts of the rows the windows were cut from, where
    the summary counted on them (the context vector of those rows reuses them), else None.
    """

    X: np.ndarray
    meta: pl.DataFrame
    size: int
    stride: int
    tail_rows: int
    codes: TextCodes | None = None

    @property
    def n_chunks(self) -> int:
        return int(self.X.shape[0])

    def days(self) -> np.ndarray:
        """When each chunk's first request came, in days since 1970-01-01 UTC (float64, ``(n_chunks,)``:
        the whole part its UTC day, the fraction its time of day): what a detector that looks for a
        pattern recurring day after day, or at one hour of every day, reads beside its inputs."""
        return self.meta["start_time"].dt.epoch("ms").to_numpy().astype(np.float64) / 86_400_000.0


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


def _windows(values: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """``values`` cut into windows ``(len(starts), size, ...)``: a view when they tile a range."""
    n = len(starts) * size
    first = int(starts[0]) if len(starts) else 0
    if first + n <= len(values) and np.array_equal(starts, first + np.arange(0, n, size)):
        return values[first : first + n].reshape(len(starts), size, *values.shape[1:])
    return values[starts[:, None] + np.arange(size)[None, :]]


def _normalise_time(X: np.ndarray, t: np.ndarray) -> None:
    """Write (t - t_first) / (t_last - t_first) per window into X[..., 0], in place."""
    t0 = t[:, :1]
    span = t[:, -1:] - t0
    flat = span[:, 0] <= 0  # all requests of the window share one timestamp
    norm = t - t0
    norm /= np.where(flat[:, None], 1.0, span)
    norm[flat] = 0.0
    X[:, :, 0] = norm


def _distinct_per_window(
    values: np.ndarray, starts: np.ndarray, size: int, block: int = 4096
) -> np.ndarray:
    """How many distinct values each window holds, on integer codes (no strings).

    A block of windows at a time (small temporaries); windows already in order (time) are
    counted without sorting.
    """
    counts = np.empty(len(starts), dtype=np.int32)
    for b0 in range(0, len(starts), block):
        w = _windows(values, starts[b0 : b0 + block], size)
        if not (w[:, 1:] >= w[:, :-1]).all():
            w = np.sort(w, axis=1)
        counts[b0 : b0 + block] = 1 + np.count_nonzero(w[:, 1:] != w[:, :-1], axis=1)
    return counts


def _codes(encoded: pl.DataFrame, source: str, feature: str, shared: TextCodes | None = None) -> np.ndarray:
    """Integer codes of a column's raw values: equal codes for equal values, and only then.

    Numbers and times are their own codes. Text uses its feature column: known values encode
    as distinct positive floats, whose bit patterns serve; values the vocabulary does not know
    (0.0) get codes of their own from their raw text, so that several unseen values count as
    several. Text without a feature column reads its codes from ``shared`` where they are held
    and the column has no null (where a null and an empty text are the same to them).
    """
    col = encoded[source]
    if col.dtype != pl.String:
        codes = col.to_physical()
        if codes.null_count():
            codes = codes.fill_null(0 if codes.null_count() == codes.len() else codes.max() + 1)
        if codes.dtype in (pl.Int8, pl.UInt8, pl.Int16, pl.UInt16, pl.Boolean):
            codes = codes.cast(pl.Int32)  # numpy sorts 32-bit integers much faster than 8-bit ones
        return codes.to_numpy()
    f = encoded[feature] if feature in encoded.columns else None
    if f is None or f.dtype != pl.Float32:
        held = shared.get(encoded, source) if shared is not None and not col.null_count() else None
        return held if held is not None else _text_codes(col)
    codes = f.to_numpy().view(np.uint32)
    unseen = np.flatnonzero(codes == 0)
    if unseen.size:
        codes = codes.copy()
        codes[unseen] = np.uint32(2**31) + _text_codes(col.gather(unseen))
    return codes


def _text_codes(text: pl.Series) -> np.ndarray:
    """Codes of texts: equal codes for equal texts, and only then (null: one more than any).

    The codes are the texts' ids in categories of this call's own (one hash per row; polars'
    global categories would keep every text of a long-running process)."""
    codes = text_ids(text)
    if codes.null_count():
        codes = codes.fill_null((codes.max() or 0) + 1)  # type: ignore[operator]
    return codes.to_numpy()


def _text_sources(encoded: pl.DataFrame) -> list[str]:
    """The entity texts the summary codes from their text (no feature column holds them)."""
    features = dict(CATEGORICAL)
    return [c for c in ENTITY_TEXTS if c in encoded.columns and encoded.schema[c] == pl.String
            and encoded.schema.get(f"f_{features[c]}") != pl.Float32]


def _summary(encoded: pl.DataFrame, starts: np.ndarray, size: int, codes: TextCodes | None = None,
             beside: Callable[[], T] | None = None) -> tuple[pl.DataFrame, T | None]:
    """Distinct raw values per column in each window (thesis 3.4); ``codes``: the entity texts'
    codes where the caller has them. ``beside``: a task run on the same two threads (the
    feature windows), its result returned with the summary."""
    features = {raw: f"f_{feature}" for raw, feature in CATEGORICAL}

    def count(source: str) -> np.ndarray:
        return _distinct_per_window(_codes(encoded, source, features.get(source, ""), codes), starts, size)

    sources = [src for _, src in SUMMARY_SOURCES]
    # numpy's sorts and copies release the GIL
    other, *counts = in_threads([beside or (lambda: None), *(lambda src=src: count(src) for src in sources)])
    return pl.DataFrame(dict(zip(SUMMARY_COLUMNS, counts, strict=True))), other


def _feature_windows(
    encoded: pl.DataFrame, starts: np.ndarray, size: int, block: int = 1 << 16
) -> np.ndarray:
    """X: the feature columns cut into windows, float32 ``(n_chunks, size, 8)``, time normalised.

    Written a block of rows at a time, each block while it is in cache, with no float64 copy
    of the matrix; windows that tile the log are written in place, overlapping ones gathered.
    """
    n_chunks, n_rows = len(starts), encoded.height
    columns = [
        (j, encoded[name].to_numpy()) for j, name in enumerate(FEATURE_COLUMNS) if name != "f_time"
    ]
    t = encoded["f_time"].to_numpy()
    tiled = n_chunks * size <= n_rows and np.array_equal(starts, np.arange(0, n_chunks * size, size))
    rows = np.empty((n_chunks * size if tiled else n_rows, len(FEATURE_COLUMNS)), dtype=np.float32)
    if not tiled:
        for lo in range(0, n_rows, block):
            for j, values in columns:
                rows[lo : lo + block, j] = values[lo : lo + block]
        X = rows[starts[:, None] + np.arange(size)[None, :]]
    else:
        X = rows.reshape(n_chunks, size, len(FEATURE_COLUMNS))
    per_block = max(1, block // size)
    for w0 in range(0, n_chunks, per_block):
        w1 = min(w0 + per_block, n_chunks)
        if tiled:
            r0, r1 = w0 * size, w1 * size
            for j, values in columns:
                rows[r0:r1, j] = values[r0:r1]
            tw = t[r0:r1].reshape(w1 - w0, size)
        else:
            tw = t[starts[w0:w1, None] + np.arange(size)[None, :]]
        _normalise_time(X[w0:w1], tw)
    return X


def is_rows_mode(encoded: pl.DataFrame) -> bool:
    """True for a frame of the rows encoder (licanom.data.encode.RowsEncoder), False for the thesis's."""
    from licanom.data.encode import ROW_FEATURE_COLUMNS

    return all(c in encoded.columns for c in ROW_FEATURE_COLUMNS)


def _row_windows(encoded: pl.DataFrame, starts: np.ndarray, size: int, block: int = 1 << 12) -> np.ndarray:
    """The rows mode's features cut into windows, float32 ``(n_chunks, size, len(ROW_FEATURES))``,
    as encoded (no per-window normalisation: gaps are seconds, counts are counts).

    The columns are written into the one array a block of rows at a time (no row-major copy of
    the whole frame beside it); windows that tile the log are that array reshaped, overlapping
    ones gathered from it."""
    from licanom.data.encode import ROW_FEATURE_COLUMNS

    n_chunks, n_rows = len(starts), encoded.height
    columns = [encoded[name].to_numpy() for name in ROW_FEATURE_COLUMNS]
    tiled = n_chunks * size <= n_rows and np.array_equal(starts, np.arange(0, n_chunks * size, size))
    n = n_chunks * size if tiled else n_rows
    rows = np.empty((n, len(columns)), dtype=np.float32)
    for lo in range(0, n, block):
        for j, values in enumerate(columns):
            rows[lo : lo + block, j] = values[lo : min(lo + block, n)]
    if tiled:
        return rows.reshape(n_chunks, size, len(columns))
    return rows[starts[:, None] + np.arange(size)[None, :]]


def make_chunks(
    encoded: pl.DataFrame,
    size: int = 100,
    stride: int | None = None,
    partial: Literal["drop", "overlap"] = "drop",
    windows: bool = True,
    codes: TextCodes | None = None,
) -> Chunks:
    """Cut a time-ordered encoded log (see licanom.data.encode) into windows.

    ``windows`` False: no feature array (``X`` has no feature column, ``(n_chunks, size, 0)``),
    for a detector that reads only the windows' positions and summaries (a context model).
    ``codes``: the codes of the frame's entity texts where the caller has them
    (:func:`licanom.data.derive.derive_coded`); the others are computed here."""
    stride = size if stride is None else stride
    n_rows = encoded.height
    starts = window_starts(n_rows, size, stride, partial)
    if not windows:
        build = None
    elif is_rows_mode(encoded):
        build = lambda: _row_windows(encoded, starts, size)  # noqa: E731
    else:
        build = lambda: _feature_windows(encoded, starts, size)  # noqa: E731

    # the entity texts no feature column holds are coded once, here, for the summary and the
    # context vector of these rows
    texts = [c for c in _text_sources(encoded) if codes is None or codes.get(encoded, c) is None]
    if texts:
        computed = TextCodes.of(encoded, texts).codes
        held = {c: x for c in ENTITY_TEXTS if codes is not None and (x := codes.get(encoded, c)) is not None}
        codes = TextCodes.from_codes(encoded.height, {**held, **computed})
    ends = starts + size - 1
    ids, times = encoded["Id"], encoded["Time"]
    summary, X = _summary(encoded, starts, size, codes, build)  # the windows built beside the summary
    if X is None:
        X = np.empty((len(starts), size, 0), dtype=np.float32)
    meta = pl.DataFrame(
        {
            "chunk": np.arange(len(starts), dtype=np.int64),
            "first_id": ids.gather(starts),
            "last_id": ids.gather(ends),
            "start_time": times.gather(starts),
            "end_time": times.gather(ends),
            "start_row": starts,
        }
    ).hstack(summary)
    tail = n_rows - int(ends[-1]) - 1
    return Chunks(X=X, meta=meta, size=size, stride=stride, tail_rows=max(tail, 0), codes=codes)


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
