"""Variable-length sequences per licence key (or key and machine) within a period.

The thesis cuts the whole log into windows of consecutive requests; the sequence models of
Ergen, Mirza and Kozat (and DeepLog's next-event model) take sequences of any length, and
licensing logs give them a natural unit: each licence key's requests over one period (default
a day), or each key and machine code pair's. A flagged sequence then names the key that
misbehaves.

Each step is one request, described by what it *was* and how it relates to the key's own past
(STEP_FEATURES), never by who made it: no vocabulary index of a key, address, machine code,
product or country enters a step (those numbers order entities by first appearance, so a model
reading them learns arrival order, not behaviour). A step carries

* the request as categories: its State's method group (one-hot over the eight groups),
  success (1) or failure (0), and its action, the group with its detail digit (one-hot over
  the 80 pairs ``action_<group><detail>``, so that an action never seen in training lights an
  input never seen either, instead of recombining a seen group and a seen digit); together
  these are the State code, the event a next-event model predicts (EVENT_FEATURES);
* ``log_gap``: ``log1p(seconds since the key's previous request) / log1p(86400)`` (a day is
  1.0; 0 for the key's first request in the log) and ``first_request`` (1 there);
* ``new_machine_code``, ``new_ip``, ``new_country``: 1 when the request's machine code,
  address or country is the first of its kind for this key in the log (a missing machine code
  is never new);
* ``log_length``: ``log1p(requests in this sequence) / log1p(max_length)``, the same on every
  step, so that length is an input rather than something pooling has to guess;
* ``day_sin``, ``day_cos``: the time of day (UTC) on the unit circle.

A sequence longer than ``max_length`` requests is cut into consecutive parts of at most
``max_length`` (each its own row, ``part`` counting from 0), so that one runaway key cannot
make a batch arbitrarily long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl

from licanom.data.columns import SUMMARY_COLUMNS, SUMMARY_SOURCES
from licanom.data.states import METHOD_GROUPS

SequenceMode = Literal["chunks", "key", "key-machine"]
SEQUENCE_MODES: tuple[str, ...] = ("chunks", "key", "key-machine")

# What each step of a per-entity sequence holds, in order (see the module docstring).
EVENT_FEATURES: tuple[str, ...] = (
    *(f"group_{g}" for g in METHOD_GROUPS), "success", *(f"action_{g}{d}" for g in METHOD_GROUPS for d in range(10)),
)
STEP_FEATURES: tuple[str, ...] = (
    *EVENT_FEATURES, "log_gap", "first_request", "new_machine_code", "new_ip", "new_country",
    "log_length", "day_sin", "day_cos",
)
EVENT_COLUMNS: tuple[int, ...] = tuple(range(len(EVENT_FEATURES)))  # positions of EVENT_FEATURES in a step
LOG_GAP_SCALE = float(np.log1p(86_400.0))

# Columns of sequences.parquet (per-sequence results), in order. Extend, never rename.
SEQUENCE_COLUMNS: tuple[str, ...] = (
    "sequence", "key", "machine_codes", "period_start", "part", "first_id", "last_id",
    "start_time", "end_time", "requests", "ips", "split", "model", "score", "threshold", "is_anomaly",
    *SUMMARY_COLUMNS,
)


@dataclass(frozen=True)
class Sequences:
    """Per-entity sequences of encoded requests.

    ``X``: one float32 ``(n_i, len(STEP_FEATURES))`` array per sequence (n_i >= 1, in time order).
    ``meta``: one row per sequence: ``sequence``, ``key``, ``machine_codes`` (the distinct
    machine codes, comma-separated), ``period_start``, ``part``, ``first_id``, ``last_id``,
    ``start_time``, ``end_time``, ``requests``, ``ips`` and the summary vector ``distinct_*``.
    ``row_ids``: the log ``Id`` of every request of each sequence, in order.
    """

    X: tuple[np.ndarray, ...]
    meta: pl.DataFrame
    row_ids: tuple[np.ndarray, ...]
    by: str
    period: timedelta

    @property
    def n_sequences(self) -> int:
        return len(self.X)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.X), dtype=np.int64, count=len(self.X))


def make_sequences(
    encoded: pl.DataFrame,
    by: Literal["key", "key-machine"] = "key",
    period: timedelta = timedelta(days=1),
    max_length: int = 1000,
) -> Sequences:
    """Group an encoded log (licanom.data.encode) into per-entity sequences within each period."""
    if by not in ("key", "key-machine"):
        raise ValueError(f"sequences are grouped by 'key' or 'key-machine', not {by!r}")
    if period <= timedelta(0):
        raise ValueError(f"the sequence period must be positive, got {period}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if encoded.height == 0:
        from licanom.data.chunk import NotEnoughDataError

        raise NotEnoughDataError("the log has no valid rows: no sequences to build")
    every = f"{int(period.total_seconds() * 1_000_000)}us"
    group = ["Key", "MachineCode"] if by == "key-machine" else ["Key"]
    frame = (
        step_frame(encoded)
        .with_columns(pl.col("Time").dt.truncate(every).alias("period_start"))
        .sort([*group, "period_start", "Time", "Id"])
    )
    X_all = frame.select(STEP_FEATURES[:-3]).to_numpy().astype(np.float32)  # all but length and time of day
    day = (frame["Time"] - frame["Time"].dt.truncate("1d")).dt.total_microseconds().to_numpy() / 86_400e6
    X_all = np.concatenate([X_all, np.zeros((frame.height, 1), np.float32),
                            np.stack([np.sin(2 * np.pi * day), np.cos(2 * np.pi * day)], axis=1).astype(np.float32)],
                           axis=1)

    # sequence boundaries: a new entity or period, or every max_length requests inside one
    keys = frame.select([*group, "period_start"])
    new_group = np.ones(frame.height, dtype=bool)
    if frame.height > 1:
        same = np.ones(frame.height - 1, dtype=bool)
        for name in keys.columns:
            col = keys[name]
            same &= (col[1:] == col[:-1]).fill_null(False).to_numpy() | (
                col[1:].is_null() & col[:-1].is_null()
            ).to_numpy()
        new_group[1:] = ~same
    group_id = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    pos = np.arange(frame.height) - group_start[group_id]
    part = pos // max_length
    starts = np.flatnonzero(new_group | ((pos % max_length) == 0))
    ends = np.append(starts[1:], frame.height)

    ids = frame["Id"].to_numpy()
    length_col = STEP_FEATURES.index("log_length")
    X_all[:, length_col] = np.repeat(np.log1p(ends - starts) / np.log1p(max(max_length, 1)), ends - starts)
    X = tuple(X_all[a:b] for a, b in zip(starts, ends, strict=True))
    row_ids = tuple(ids[a:b] for a, b in zip(starts, ends, strict=True))
    seq = np.repeat(np.arange(len(starts)), ends - starts)
    summary_sources = [src for _, src in SUMMARY_SOURCES]
    meta = (
        frame.with_columns(pl.Series("_seq", seq), pl.Series("_part", part))
        .group_by("_seq", maintain_order=True)
        .agg(
            pl.col("Key").first().alias("key"),
            pl.col("MachineCode").drop_nulls().unique(maintain_order=True).sort().str.join(",")
            .alias("machine_codes"),
            pl.col("period_start").first(),
            pl.col("_part").first().alias("part"),
            pl.col("Id").first().alias("first_id"),
            pl.col("Id").last().alias("last_id"),
            pl.col("Time").first().alias("start_time"),
            pl.col("Time").last().alias("end_time"),
            pl.len().alias("requests"),
            pl.col("IP").n_unique().alias("ips"),
            *(pl.col(src).n_unique().alias(name) for src, name in
              zip(summary_sources, SUMMARY_COLUMNS, strict=True)),
        )
        .rename({"_seq": "sequence"})
        .with_columns(pl.col("sequence").cast(pl.Int64), pl.col("part").cast(pl.Int64),
                      pl.col("requests").cast(pl.Int64), pl.col("ips").cast(pl.Int64),
                      *(pl.col(c).cast(pl.Int64) for c in SUMMARY_COLUMNS))
    )
    # time order of sequences: by their first request (stable for equal times)
    order = meta.select(pl.arg_sort_by(["start_time", "first_id"])).to_series().to_numpy()
    meta = meta[order].with_columns(pl.Series("sequence", np.arange(len(order), dtype=np.int64)))
    return Sequences(
        X=tuple(X[i] for i in order),
        meta=meta,
        row_ids=tuple(row_ids[i] for i in order),
        by=by,
        period=period,
    )


def step_frame(encoded: pl.DataFrame) -> pl.DataFrame:
    """The log with the per-step columns of STEP_FEATURES that depend on rows alone (all but
    ``log_length`` and the time of day), in ``Key``, ``Time``, ``Id`` order.

    Reads ``Id``, ``Key``, ``Time``, ``State``, ``MachineCode``, ``IP`` and ``country`` (the
    derived log); "new to the key" and the gap are judged over the rows given, in time order.
    """
    missing = [c for c in ("Id", "Key", "Time", "State", "MachineCode", "IP", "country") if c not in encoded.columns]
    if missing:
        raise ValueError(f"per-key sequences need the column(s) {', '.join(missing)} of the derived log")
    state = pl.col("State").cast(pl.Int64)
    group, outcome, detail = state // 100, (state // 10) % 10, state % 10
    first = pl.col("Time").shift(1).over("Key").is_null()
    gap = (pl.col("Time") - pl.col("Time").shift(1).over("Key")).dt.total_microseconds().fill_null(0) / 1e6

    def new(column: str) -> pl.Expr:
        seen_before = pl.int_range(pl.len()).over(["Key", column]) > 0
        return (pl.col(column).is_not_null() & ~seen_before).cast(pl.Float32)

    return encoded.sort(["Key", "Time", "Id"]).with_columns(
        *((group == g).cast(pl.Float32).alias(f"group_{g}") for g in METHOD_GROUPS),
        (outcome == 1).cast(pl.Float32).alias("success"),
        *(((group == g) & (detail == d)).cast(pl.Float32).alias(f"action_{g}{d}")
          for g in METHOD_GROUPS for d in range(10)),
        (gap.clip(lower_bound=0.0).log1p() / LOG_GAP_SCALE).cast(pl.Float32).alias("log_gap"),
        first.cast(pl.Float32).alias("first_request"),
        new("MachineCode").alias("new_machine_code"),
        new("IP").alias("new_ip"),
        new("country").alias("new_country"),
    )


def sequence_labels(sequences: Sequences, labels: pl.DataFrame) -> np.ndarray:
    """Labels per sequence from a labels frame keyed by ``Id`` or ``Key`` (+1, -1 or 0).

    A sequence is -1 when any of its labelled requests (or its key) is -1, +1 when all its
    labelled requests are +1, and 0 (unknown) when none is labelled.
    """
    if "Key" in labels.columns and "Id" not in labels.columns:
        by_key = dict(zip(labels["Key"].to_list(), labels["label"].to_list(), strict=True))
        return np.array([by_key.get(k, 0) for k in sequences.meta["key"].to_list()], dtype=np.int8)
    return aggregate_row_labels(sequences.row_ids, labels)


def aggregate_row_labels(groups: tuple[np.ndarray, ...] | list[np.ndarray], labels: pl.DataFrame) -> np.ndarray:
    """Per group of row Ids: -1 if any is -1, else +1 if any is +1, else 0 (none labelled)."""
    if "Id" not in labels.columns or "label" not in labels.columns:
        raise ValueError("labels keyed by rows need the columns 'Id' and 'label'")
    if not groups:
        return np.zeros(0, dtype=np.int8)
    members = pl.DataFrame({
        "group": np.repeat(np.arange(len(groups)), [len(g) for g in groups]),
        "Id": np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]),
    })
    lab = labels.select(pl.col("Id").cast(pl.Int64), pl.col("label").cast(pl.Int8)).unique("Id", keep="last")
    per_group = (
        members.join(lab, on="Id", how="inner")
        .group_by("group")
        .agg((pl.col("label") == -1).any().alias("bad"), (pl.col("label") == 1).any().alias("good"))
    )
    out = np.zeros(len(groups), dtype=np.int8)
    g = per_group["group"].to_numpy()
    out[g] = np.where(per_group["bad"].to_numpy(), -1, np.where(per_group["good"].to_numpy(), 1, 0))
    return out
