"""The context vector of a chunk: what its requests' keys, machines and addresses did around it.

The thesis's inputs cannot show some of the anomalies a licensing vendor cares about. Each
window's time column is normalised to [0, 1], so 100 requests in two minutes look like 100
requests in a day (a runaway client), and a chunk sees each key only through the requests
that fall inside it, so a key used from thirty machines in ten countries over a day looks
like thirty ordinary activations (licence sharing). The context vector adds, per chunk, the
signals that name those patterns in licensing terms, each one computed over the whole log:

===================== ===============================================================
column                 per chunk (the largest over its requests where it says "row's")
===================== ===============================================================
rate                   log requests per second over the chunk's time span
failure_share          share of failed requests
top_machine_share      share of the chunk's most frequent (key, machine code)
key_requests_hour      the row's key: requests in the row's clock hour
machine_requests_hour  the row's (key, machine code): requests in its clock hour
key_machines_day       the row's key: distinct machine codes that day (UTC)
key_countries_day      the row's key: distinct countries that day
key_ips_day            the row's key: distinct IP addresses that day
ip_keys_hour           the row's IP address: distinct keys in its clock hour
ip_failures_hour       the row's IP address: failed requests in its clock hour
machine_failures_hour  the row's (key, machine code): failed requests in its clock hour
===================== ===============================================================

Counts enter as ``log1p``. The buckets are calendar hours and days, so a row's context
includes the requests after it in the same hour or day: right for a nightly run, which scores
complete days, and the same at training and scoring time. Nothing here is learned: a
detector (e.g. IsolationForest) learns what is normal for a vendor from the training chunks'
vectors.
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["CONTEXT_COLUMNS", "chunk_context", "row_context"]

# (column, entity columns, bucket, aggregate) of the per-row counts.
_ROW_COUNTS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("key_requests_hour", ("Key",), "1h", "requests"),
    ("machine_requests_hour", ("Key", "MachineCode"), "1h", "requests"),
    ("key_machines_day", ("Key",), "1d", "MachineCode"),
    ("key_countries_day", ("Key",), "1d", "country"),
    ("key_ips_day", ("Key",), "1d", "IP"),
    ("ip_keys_hour", ("IP",), "1h", "Key"),
    ("ip_failures_hour", ("IP",), "1h", "failures"),
    ("machine_failures_hour", ("Key", "MachineCode"), "1h", "failures"),
)
ROW_COLUMNS: tuple[str, ...] = tuple(c for c, *_ in _ROW_COUNTS)
CONTEXT_COLUMNS: tuple[str, ...] = ("rate", "failure_share", "top_machine_share", *ROW_COLUMNS)

_NEEDED = ("Time", "Key", "MachineCode", "IP", "country", "success")


def row_context(derived: pl.DataFrame) -> pl.DataFrame:
    """ROW_COLUMNS (Float64, ``log1p`` of the count) for each row of a derived log, in its order.

    ``derived`` needs Time, Key, MachineCode, IP, country and success (licanom.derive).
    """
    missing = [c for c in _NEEDED if c not in derived.columns]
    if missing:
        raise ValueError(f"the context needs the derived columns {missing}")
    frame = derived.select(
        pl.col("Time").dt.truncate("1h").alias("_hour"),
        pl.col("Time").dt.truncate("1d").alias("_day"),
        pl.col("Key").cast(pl.String).fill_null(""),
        pl.col("MachineCode").cast(pl.String).fill_null(""),
        pl.col("IP").cast(pl.String).fill_null(""),
        pl.col("country").cast(pl.String).fill_null(""),
        (pl.col("success") == 0).cast(pl.Int64).alias("_failed"),
    )
    exprs = []
    for name, entity, bucket, what in _ROW_COUNTS:
        over = [*entity, "_hour" if bucket == "1h" else "_day"]
        if what == "requests":
            count = pl.len().over(over)
        elif what == "failures":
            count = pl.col("_failed").sum().over(over)
        else:
            count = pl.col(what).n_unique().over(over)
        exprs.append(count.cast(pl.Float64).log1p().alias(name))
    return frame.select(exprs)


def chunk_context(derived: pl.DataFrame, starts: np.ndarray, size: int) -> np.ndarray:
    """CONTEXT_COLUMNS of each window ``starts[i] .. starts[i] + size - 1`` of ``derived``.

    Returns float64 ``(len(starts), len(CONTEXT_COLUMNS))``; ``derived`` is the time-ordered
    log the windows were cut from (licanom.chunk), one row per request.
    """
    starts = np.asarray(starts, dtype=np.int64)
    if derived.height == 0 or len(starts) == 0:
        return np.zeros((len(starts), len(CONTEXT_COLUMNS)))
    if starts.min() < 0 or starts.max() + size > derived.height:
        raise ValueError(f"windows of {size} rows from {starts.min()} to {starts.max()} do not fit {derived.height} rows")
    ends = starts + size - 1
    rows = row_context(derived)
    out = np.empty((len(starts), len(CONTEXT_COLUMNS)))
    # Largest value over each window: a rolling maximum read at the window's last row.
    for j, name in enumerate(ROW_COLUMNS, start=3):
        out[:, j] = rows[name].rolling_max(window_size=size).to_numpy()[ends]
    seconds = derived["Time"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
    span = seconds[ends] - seconds[starts]
    out[:, 0] = np.log((size - 1) / np.maximum(span, 1.0))
    failed = (derived["success"].to_numpy() == 0).astype(np.float64)
    csum = np.concatenate([[0.0], np.cumsum(failed)])
    out[:, 1] = (csum[ends + 1] - csum[starts]) / size
    out[:, 2] = _top_share(derived, starts, size)
    return out


def _top_share(derived: pl.DataFrame, starts: np.ndarray, size: int) -> np.ndarray:
    """Share of each window's requests made by its most frequent (key, machine code)."""
    codes = (
        derived.select(pl.struct(pl.col("Key").cast(pl.String), pl.col("MachineCode").cast(pl.String)).rank("dense"))
        .to_series().to_numpy().astype(np.int64)
    )
    out = np.empty(len(starts))
    block = max(1, 2_000_000 // size)
    for lo in range(0, len(starts), block):
        s = starts[lo : lo + block]
        win = np.sort(codes[s[:, None] + np.arange(size)[None, :]], axis=1)
        # longest run of equal codes in each sorted window
        change = np.ones(win.shape, dtype=bool)
        change[:, 1:] = win[:, 1:] != win[:, :-1]
        idx = np.where(change, np.arange(size)[None, :], 0)
        run_start = np.maximum.accumulate(idx, axis=1)
        out[lo : lo + block] = (np.arange(size)[None, :] - run_start + 1).max(axis=1) / size
    return out
