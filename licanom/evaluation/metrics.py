"""Metrics of chunk decisions against the simulator's labels (AUPRC, precision/recall, false alarms per
10,000 chunks, events found per kind, the chunks of an incident) and the columns of the tables that hold them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from licanom.evaluation.labels import windows_holding
from licanom.sim import ANOMALY_KINDS


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


def flag_at_budget(y_true: np.ndarray, scores: np.ndarray, per_10k: float,
                   neutral: np.ndarray | None = None) -> np.ndarray:
    """Flag the highest scores, down to the threshold that lets at most ``per_10k`` false alarms
    per 10,000 chunks through (chosen with the labels ``y_true``: an upper bound, not a rule).
    Scores tied with the first normal chunk left out are left out too; NaN scores never flag.
    ``neutral`` chunks (no labelled row, yet inside an event's incident) count neither way."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    counted = np.ones(len(s), dtype=bool) if neutral is None else ~np.asarray(neutral, dtype=bool)
    allowed = int(np.floor(per_10k * int(counted.sum()) / 1e4 + 1e-9))
    normal = np.sort(s[~y & counted & ~np.isnan(s)])[::-1]
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
