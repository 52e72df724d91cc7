"""The vendor report: one self-contained HTML page (and a CSV) of a run's anomalous time frames.

For each anomalous time frame the page says when it happened, how many requests it holds, how
far its score is above the threshold (a severity) and *why* it was flagged:

* the columns with the largest reconstruction error (``feature_errors``, FEATURES order), each
  next to the error a normal chunk typically has;
* its summary vector (distinct values per column, thesis 3.4) next to a typical normal chunk's
  (the median over the chunks not flagged, with their 5-95 % range);
* its context (licanom.context, computed from the report's rows for any model): requests per
  second, failure share, and what its keys, machines and addresses did in the same clock hour,
  next to the normal chunks' median and 95th percentile (for a context model, in place of the
  column errors);
* the keys, machine codes, IPs and countries that are *new* (not in the normal rows) or
  *over-represented* (share of the frame's requests against share of normal traffic);
* its requests (the raw rows), capped per frame.

Definitions used throughout:

* **Time frame.** Flagged chunks that follow one another (consecutive chunk numbers) or share
  requests or time (overlapping windows, ``stride < size``) merge into one frame; its score is
  the highest of its chunks, and that chunk (the *peak chunk*) gives the frame's column errors
  and summary vector.
* **Normal traffic.** Every row of ``ReportInput.rows`` outside the anomalous frames; a
  *typical normal chunk* is the median over the chunks not flagged.
* **Severity** from the chunks' calibrated severity (0-100, licanom.detectors.decision: high at
  80 and above, medium at 60) or, for chunks scored without one, from ratio = score / threshold
  (see :data:`SEVERITY_BANDS`). M2 and M3 sit at
  about the largest training error, so a score half as high again lies far beyond anything
  seen in training: ``high`` from 1.5, ``medium`` from 1.2, ``low`` below.

Every value from the log is escaped (log fields are untrusted); the page has no scripts and
no external references (CSS inline, figures as base64 PNG data URIs). Text cells of the CSV
that a spreadsheet would read as a formula get a leading apostrophe.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from licanom.context import CONTEXT_COLUMNS, CONTEXT_LABELS, KeyHistory, chunk_context
from licanom.columns import FEATURES, RAW, SUMMARY_COLUMNS
from licanom.states import MethodGroup

# (name, lowest score/threshold ratio), most severe first.
SEVERITY_BANDS: tuple[tuple[str, float], ...] = (("high", 1.5), ("medium", 1.2), ("low", 0.0))
# The same bands on the calibrated severity (0-100).
CALIBRATED_BANDS: tuple[tuple[str, float], ...] = (("high", 80.0), ("medium", 60.0), ("low", 0.0))
SEVERITY_RANK: dict[str, int] = {name: len(SEVERITY_BANDS) - i for i, (name, _) in enumerate(SEVERITY_BANDS)}

# Columns whose values are checked for new and over-represented values: (column, label).
ENTITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Key", "key"), ("MachineCode", "machine code"), ("IP", "IP"), ("country", "country"),
)
# A value is over-represented in a frame when it takes at least this share of the frame's
# requests, at least OVER_LIFT times its share of normal traffic, in at least OVER_MIN_COUNT
# requests. (A share test alone would flag every value: any key is rare in the whole log.)
OVER_MIN_SHARE = 0.10
OVER_LIFT = 5.0
OVER_MIN_COUNT = 3
# Beyond the largest, a column is named in the short explanation when its error is at least
# this many times a normal chunk's.
NOTABLE_RATIO = 1.5

REQUIRED_ROW_COLUMNS: tuple[str, ...] = ("Id", "Time", "Key", "MachineCode", "IP", "State")
REQUIRED_CHUNK_COLUMNS: tuple[str, ...] = (
    "chunk", "first_id", "last_id", "start_time", "end_time", "split", "score", "threshold",
    "is_anomaly", "top_feature", *SUMMARY_COLUMNS,
)

# One row per anomalous time frame (anomaly_frames), in this order.
FRAME_COLUMNS: tuple[str, ...] = (
    "frame", "start_time", "end_time", "first_id", "last_id", "first_chunk", "last_chunk",
    "chunks", "peak_chunk", "requests", "score", "threshold", "ratio", "severity",
)
# The spreadsheet version (anomalies_csv), in this order.
CSV_COLUMNS: tuple[str, ...] = (
    "vendor", "run_id", "model", "frame", "severity", "start_time", "end_time", "requests",
    "chunks", "first_id", "last_id", "score", "threshold", "ratio", "top_columns", "why",
    "new_keys", "new_machine_codes", "new_ips", "new_countries",
    "top_keys", "top_machine_codes", "top_ips", "top_countries",
)

_LABELS = {
    "time": "time", "success": "success", "ip": "IP", "key": "key", "product": "product",
    "action": "action", "machine_code": "machine code", "country": "country",
}


@dataclass(frozen=True, eq=False)
class ReportInput:
    """What one report is made of.

    ``chunks``: the per-chunk results (licanom.detect.CHUNK_COLUMNS), any order.
    ``rows``: the valid log rows the chunks were cut from (RAW columns, ``Id`` unique; the
    derived ``success``/``action``/``country`` are added when missing); a chunk's requests are
    the rows from its ``first_id`` to its ``last_id`` in (Time, Id) order.
    ``feature_errors``: ``(n_chunks, 8)`` per-column errors in FEATURES order, aligned with the
    rows of ``chunks``; None where not kept (the report then names ``top_feature`` only).
    ``train_errors``: ``(n_train,)`` training-chunk errors for the histogram; None uses the
    scores of the chunks whose ``split`` is "train".
    ``train_loss``/``val_loss``: per epoch (empty for a model that was loaded, not trained).
    ``max_frames``/``max_requests``: how many frames the page details (most severe first; the
    CSV lists all) and how many requests each frame's table shows.
    ``key_history``: the scoring model's :class:`licanom.context.KeyHistory`, in the same values
    as ``rows`` (not pseudonymised ones for real rows); None: what is "new to a key" in the
    context table is judged from the earlier rows of ``rows`` alone.
    ``context``: ``(n_chunks, len(CONTEXT_COLUMNS))`` context vectors aligned with ``chunks``,
    when the caller computed them already (a night: once for its copies of the report); None:
    computed here from ``rows``.
    """

    vendor: str
    run_id: str
    model: str
    threshold_name: str
    threshold: float
    chunks: pl.DataFrame
    rows: pl.DataFrame
    feature_errors: np.ndarray | None = None
    train_errors: np.ndarray | None = None
    train_loss: tuple[float, ...] = ()
    val_loss: tuple[float, ...] = ()
    max_frames: int = 50
    max_requests: int = 200
    key_history: KeyHistory | None = None
    context: np.ndarray | None = None

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_CHUNK_COLUMNS if c not in self.chunks.columns]
        if missing:
            raise ValueError(f"chunks lack column(s) {missing}; expected licanom.detect.CHUNK_COLUMNS")
        missing = [c for c in REQUIRED_ROW_COLUMNS if c not in self.rows.columns]
        if missing:
            raise ValueError(f"rows lack column(s) {missing}; expected the valid Web API Log rows")
        if self.feature_errors is not None and np.shape(self.feature_errors) != (self.chunks.height, len(FEATURES)):
            raise ValueError(
                f"feature_errors has shape {np.shape(self.feature_errors)}, expected "
                f"({self.chunks.height}, {len(FEATURES)}): one row per chunk, FEATURES order"
            )
        if self.max_frames < 0 or self.max_requests < 0:
            raise ValueError("max_frames and max_requests must be >= 0")


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put the page and the CSV."""

    html: Path
    csv: Path


def severity(ratio: float, calibrated: float | None = None) -> str:
    """``high``, ``medium`` or ``low`` for a calibrated severity (:data:`CALIBRATED_BANDS`) when
    given, else for a score/threshold ratio (:data:`SEVERITY_BANDS`)."""
    if calibrated is not None and calibrated == calibrated:
        return next(name for name, lowest in CALIBRATED_BANDS if calibrated >= lowest)
    for name, lowest in SEVERITY_BANDS:
        if ratio >= lowest:
            return name
    return SEVERITY_BANDS[-1][0]


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Analysis:
    inp: ReportInput
    rows: pl.DataFrame           # sorted by (Time, Id), with success/action/country
    chunks: pl.DataFrame         # sorted by (start_time, chunk), with _i (row in inp.chunks), _p0, _p1
    frames: pl.DataFrame         # FRAME_COLUMNS, in time order
    row_frame: np.ndarray        # (n_rows,) frame index (0-based, time order) or -1 for normal rows
    covered: np.ndarray          # (n_rows,) bool: the row is in some chunk
    frame_chunks: tuple[np.ndarray, ...]  # per frame: indices into inp.chunks
    entities: pl.DataFrame       # frame, column, value, n, share, n_normal, share_normal, lift, new, over
    entity_parts: dict[tuple[int, str], pl.DataFrame]  # entities by (frame, column)
    peaks: np.ndarray            # (n_frames,) row in inp.chunks of each frame's peak chunk
    typical_summary: dict[str, tuple[float, float, float]]  # column -> (median, p05, p95)
    typical_errors: np.ndarray | None  # (8,) median feature error of normal chunks
    context: np.ndarray          # (n_chunks, len(CONTEXT_COLUMNS)) aligned with inp.chunks; NaN where not computed
    typical_context: np.ndarray  # (len(CONTEXT_COLUMNS), 2): median and 95th percentile over the normal chunks
    normal_failed_share: float
    frame_failed_share: np.ndarray  # (n_frames,)
    reasons: tuple[tuple[str, ...], ...]

    def listing(self) -> pl.DataFrame:
        """All frames, most severe first (then by ratio, then time)."""
        return self.frames.with_columns(
            pl.col("severity").replace_strict(SEVERITY_RANK, return_dtype=pl.Int8).alias("_rank")
        ).sort(["_rank", "ratio", "start_time"], descending=[True, True, False]).drop("_rank")


def _prepare_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows in (Time, Id) order, text columns as strings, with success/action/country."""
    from licanom.states import action_expr, success_expr

    out = rows.sort(["Time", "Id"], maintain_order=True).with_columns(
        pl.col(c).cast(pl.String) for c in ("Key", "MachineCode", "IP")
    )
    derived = []
    if "success" not in out.columns:
        derived.append(success_expr(pl.col("State")).alias("success"))
    if "action" not in out.columns:
        derived.append(action_expr(pl.col("State")).alias("action"))
    if derived:
        out = out.with_columns(derived)
    if "country" not in out.columns:
        from licanom.derive import countries

        out = out.with_columns(countries(out["IP"]).alias("country"))
    return out.with_columns(pl.col("country").cast(pl.String))


def _chunk_positions(chunks: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Chunks sorted by time with _i (their row in the input) and _p0/_p1 (row positions)."""
    pos = rows.select(pl.col("Id").cast(pl.Int64), pl.int_range(pl.len(), dtype=pl.Int64).alias("_p")).unique(
        "Id", keep="first", maintain_order=True)
    out = chunks.with_row_index("_i").with_columns(
        pl.col("first_id").cast(pl.Int64), pl.col("last_id").cast(pl.Int64)
    )
    out = out.join(pos.rename({"Id": "first_id", "_p": "_p0"}), on="first_id", how="left")
    out = out.join(pos.rename({"Id": "last_id", "_p": "_p1"}), on="last_id", how="left")
    return out.sort(["start_time", "chunk"])


def _merge(flagged: pl.DataFrame) -> list[list[dict[str, object]]]:
    """Flagged chunks (time order) grouped into frames: consecutive numbers or shared rows/time."""
    groups: list[list[dict[str, object]]] = []
    end_time = end_pos = last_chunk = None
    for r in flagged.iter_rows(named=True):
        joins = bool(groups) and (
            r["chunk"] == last_chunk + 1  # type: ignore[operator]
            or r["start_time"] <= end_time  # type: ignore[operator]
            or (r["_p0"] is not None and end_pos is not None and r["_p0"] <= end_pos + 1)
        )
        if joins:
            groups[-1].append(r)
            end_time = max(end_time, r["end_time"])  # type: ignore[type-var]
            if r["_p1"] is not None:
                end_pos = r["_p1"] if end_pos is None else max(end_pos, r["_p1"])
        else:
            groups.append([r])
            end_time, end_pos = r["end_time"], r["_p1"]
        last_chunk = r["chunk"]
    return groups


def _covered(chunks: pl.DataFrame, n_rows: int) -> np.ndarray:
    """Whether each row lies in at least one chunk (overlapping chunks counted once)."""
    spans = chunks.select("_p0", "_p1").drop_nulls().filter(pl.col("_p0") <= pl.col("_p1"))
    diff = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(diff, spans["_p0"].to_numpy(), 1)
    np.add.at(diff, spans["_p1"].to_numpy() + 1, -1)
    return np.cumsum(diff[:n_rows]) > 0


def _chunks_context(chunks: pl.DataFrame, rows: pl.DataFrame, n_chunks: int,
                    history: KeyHistory | None = None) -> np.ndarray:
    """The context vector (licanom.context) of every chunk of the run's usual length, from the
    report's rows, aligned with the input chunks; NaN for chunks of another length or whose rows
    are missing. The hour counts see only these rows, as the context models do."""
    out = np.full((n_chunks, len(CONTEXT_COLUMNS)), np.nan)
    spans = chunks.select("_i", "_p0", "_p1").drop_nulls().filter(pl.col("_p1") >= pl.col("_p0"))
    if spans.height == 0:
        return out
    lengths = (spans["_p1"] - spans["_p0"] + 1).to_numpy()
    size = int(np.bincount(lengths).argmax())
    keep = lengths == size
    starts = spans["_p0"].to_numpy()[keep]
    out[spans["_i"].to_numpy()[keep]] = chunk_context(rows, starts, size, history)
    return out


def _context_value(column: str, value: float) -> str:
    """A context column in the units a vendor reads: requests per second, a percentage, a count."""
    if math.isnan(value):
        return ""
    if column == "rate":
        return f"{math.exp(value):.3g}/s"
    if column.endswith("_share"):
        return f"{100 * value:.0f}%"
    return f"{math.expm1(value):.0f}"


def _analyse(inp: ReportInput) -> _Analysis:
    rows = _prepare_rows(inp.rows)
    chunks = _chunk_positions(inp.chunks, rows)
    groups = _merge(chunks.filter(pl.col("is_anomaly")))

    n_rows = rows.height
    row_frame = np.full(n_rows, -1, dtype=np.int32)
    frame_rows = []
    frame_chunks = []
    for k, group in enumerate(groups):
        for r in group:
            if r["_p0"] is not None and r["_p1"] is not None and r["_p0"] <= r["_p1"]:
                row_frame[r["_p0"] : r["_p1"] + 1] = k
        frame_chunks.append(np.array([r["_i"] for r in group], dtype=np.int64))
        peak = max(group, key=lambda r: r["score"])
        threshold = float(peak["threshold"])
        score = float(peak["score"])
        ratio = score / threshold if threshold > 0 else math.inf
        frame_rows.append({
            "frame": k + 1,
            "start_time": min(r["start_time"] for r in group),
            "end_time": max(r["end_time"] for r in group),
            "first_id": group[0]["first_id"],
            "last_id": max(group, key=lambda r: (r["end_time"], r["chunk"]))["last_id"],
            "first_chunk": group[0]["chunk"],
            "last_chunk": group[-1]["chunk"],
            "chunks": len(group),
            "peak_chunk": peak["chunk"],
            "score": score,
            "threshold": threshold,
            "ratio": ratio,
            "severity": severity(ratio, peak.get("severity")),
        })
    requests = np.bincount(row_frame[row_frame >= 0], minlength=len(groups))
    covered = _covered(chunks, n_rows)
    time_dtype = inp.chunks.schema["start_time"]
    frames = pl.DataFrame(
        frame_rows,
        schema={
            "frame": pl.Int64, "start_time": time_dtype, "end_time": time_dtype,
            "first_id": pl.Int64, "last_id": pl.Int64, "first_chunk": pl.Int64, "last_chunk": pl.Int64,
            "chunks": pl.Int64, "peak_chunk": pl.Int64, "score": pl.Float64, "threshold": pl.Float64,
            "ratio": pl.Float64, "severity": pl.String,
        },
    ).with_columns(pl.Series("requests", requests[: len(groups)], dtype=pl.Int64)).select(FRAME_COLUMNS)

    flagged_mask = inp.chunks["is_anomaly"].to_numpy().astype(bool)
    chunk_scores = inp.chunks["score"].to_numpy().astype(np.float64)
    normal_idx = np.flatnonzero(~flagged_mask)
    ref_idx = normal_idx if normal_idx.size else np.arange(inp.chunks.height)
    typical_summary = {}
    for col in SUMMARY_COLUMNS:
        values = inp.chunks[col].to_numpy()[ref_idx].astype(np.float64)
        typical_summary[col] = (
            (float(np.median(values)), float(np.percentile(values, 5)), float(np.percentile(values, 95)))
            if values.size else (math.nan, math.nan, math.nan)
        )
    typical_errors = None
    if inp.feature_errors is not None and ref_idx.size:
        typical_errors = np.median(np.asarray(inp.feature_errors, dtype=np.float64)[ref_idx], axis=0)

    context = (np.asarray(inp.context, dtype=np.float64) if inp.context is not None
               else _chunks_context(chunks, rows, inp.chunks.height, inp.key_history))
    ref = context[ref_idx]
    ref = ref[np.isfinite(ref).all(axis=1)]
    typical_context = (np.percentile(ref, [50, 95], axis=0).T if len(ref)
                       else np.full((len(CONTEXT_COLUMNS), 2), math.nan))

    in_frame = pl.Series("_frame", row_frame)
    tagged = rows.with_columns(in_frame)
    normal = tagged.filter(pl.col("_frame") < 0)
    anomalous = tagged.filter(pl.col("_frame") >= 0)
    entities = _entities(normal, anomalous)

    success = rows["success"].to_numpy().astype(np.float64) if n_rows else np.empty(0)
    normal_failed = float(1.0 - success[row_frame < 0].mean()) if (row_frame < 0).any() else math.nan
    sums = np.bincount(row_frame[row_frame >= 0], weights=1.0 - success[row_frame >= 0], minlength=len(groups))
    frame_failed = np.divide(sums[: len(groups)], requests[: len(groups)],
                             out=np.full(len(groups), math.nan), where=requests[: len(groups)] > 0)

    analysis = _Analysis(
        inp=inp, rows=rows, chunks=chunks, frames=frames, row_frame=row_frame, covered=covered,
        frame_chunks=tuple(frame_chunks), entities=entities,
        entity_parts=entities.partition_by(["frame", "column"], as_dict=True),  # type: ignore[arg-type]
        peaks=np.array([int(idx[np.argmax(chunk_scores[idx])]) for idx in frame_chunks], dtype=np.int64),
        typical_summary=typical_summary, typical_errors=typical_errors,
        context=context, typical_context=typical_context,
        normal_failed_share=normal_failed, frame_failed_share=frame_failed, reasons=(),
    )
    return replace(analysis, reasons=tuple(_reasons(analysis, k) for k in range(frames.height)))


def _entities(normal: pl.DataFrame, anomalous: pl.DataFrame) -> pl.DataFrame:
    """Per frame and entity column, each value's count and share in the frame and in normal rows."""
    schema = {
        "frame": pl.Int32, "column": pl.String, "value": pl.String, "n": pl.Int64, "share": pl.Float64,
        "n_normal": pl.Int64, "share_normal": pl.Float64, "lift": pl.Float64, "new": pl.Boolean,
        "over": pl.Boolean,
    }
    if anomalous.height == 0:
        return pl.DataFrame(schema=schema)
    n_normal_total = max(normal.height, 1)
    totals = anomalous.group_by("_frame").len("_total")
    parts = []
    for col, _ in ENTITY_COLUMNS:
        base = normal.group_by(col).len("n_normal").rename({col: "value"})
        counts = (
            anomalous.group_by("_frame", col).len("n").rename({col: "value"})
            .join(totals, on="_frame")
            .join(base, on="value", how="left", nulls_equal=True)
            .with_columns(pl.col("n_normal").fill_null(0))
        )
        parts.append(counts.select(
            pl.col("_frame").cast(pl.Int32).alias("frame"),
            pl.lit(col).alias("column"),
            pl.col("value").cast(pl.String),
            pl.col("n").cast(pl.Int64),
            (pl.col("n") / pl.col("_total")).alias("share"),
            pl.col("n_normal").cast(pl.Int64),
            (pl.col("n_normal") / n_normal_total).alias("share_normal"),
        ))
    out = pl.concat(parts).with_columns(
        pl.when(pl.col("share_normal") > 0).then(pl.col("share") / pl.col("share_normal"))
        .otherwise(float("inf")).alias("lift"),
        (pl.col("n_normal") == 0).alias("new"),
    ).with_columns(
        (~pl.col("new") & (pl.col("n") >= OVER_MIN_COUNT) & (pl.col("share") >= OVER_MIN_SHARE)
         & (pl.col("lift") >= OVER_LIFT)).alias("over")
    )
    return out.sort(["frame", "column", "n", "value"], descending=[False, False, True, False],
                    nulls_last=True).select(list(schema))


def _frame_entities(a: _Analysis, k: int, column: str) -> pl.DataFrame:
    part = a.entity_parts.get((k, column))
    return a.entities.clear() if part is None else part


def _peak_index(a: _Analysis, k: int) -> int:
    """Row in inp.chunks of frame k's peak chunk."""
    return int(a.peaks[k])


def _top_columns(a: _Analysis, k: int, n: int = 3) -> list[tuple[str, float | None, float | None]]:
    """(feature, error, typical error) of frame k's peak chunk, largest error first."""
    peak = _peak_index(a, k)
    if a.inp.feature_errors is None:
        top = a.inp.chunks["top_feature"][peak]
        return [] if top is None else [(str(top), None, None)]  # none: a model without column errors
    errors = np.asarray(a.inp.feature_errors, dtype=np.float64)[peak]
    order = np.argsort(-errors, kind="stable")[:n]
    typical = a.typical_errors
    return [(FEATURES[j], float(errors[j]), None if typical is None else float(typical[j])) for j in order]


def _notable_columns(a: _Analysis, k: int, n: int = 3) -> list[tuple[str, float | None, float | None]]:
    """The largest-error column, and the next ones whose error is at least NOTABLE_RATIO times typical."""
    cols = _top_columns(a, k, n)
    return cols[:1] + [(f, e, t) for f, e, t in cols[1:] if e is not None and (not t or e >= NOTABLE_RATIO * t)]


def _short_why(reasons: tuple[str, ...]) -> str:
    """Two reasons beyond the column errors (shown in their own column), else whatever there is."""
    rest = [r for r in reasons if not r.startswith("largest error:")]
    return "; ".join(rest[:2]) or (reasons[0] if reasons else "score above the threshold")


def _reasons(a: _Analysis, k: int) -> tuple[str, ...]:
    """A few short sentences: why frame k stands out (plain text, not escaped)."""
    out = []
    cols = _notable_columns(a, k, 2)
    parts = []
    for feature, err, typ in cols:
        if err is None:
            parts.append(f"{_LABELS.get(feature, feature)} column")
        elif typ and typ > 0:
            parts.append(f"{_LABELS.get(feature, feature)} ({err / typ:.1f}x typical)")
        else:
            parts.append(f"{_LABELS.get(feature, feature)} ({err:.3f})")
    if parts and a.inp.feature_errors is None and cols[0][0] in CONTEXT_LABELS:
        column = cols[0][0]  # the context model's most unusual signal, with its value where known
        j = CONTEXT_COLUMNS.index(column)
        value, typical = float(a.context[a.peaks[k], j]), float(a.typical_context[j, 0])
        amount = "" if math.isnan(value) else (
            f": {_context_value(column, value)}" + ("" if math.isnan(typical) else f" (typical {_context_value(column, typical)})"))
        out.append(f"most unusual: {CONTEXT_LABELS[column]}{amount}")
    elif parts:
        out.append("largest error: " + ", ".join(parts))

    failed, normal_failed = a.frame_failed_share[k], a.normal_failed_share
    if not math.isnan(failed) and failed >= 0.1 and (math.isnan(normal_failed) or failed >= 2 * normal_failed):
        normally = "" if math.isnan(normal_failed) else f" (normally {normal_failed:.0%})"
        out.append(f"{failed:.0%} of requests failed{normally}")

    for col, label in ENTITY_COLUMNS:
        ent = _frame_entities(a, k, col)
        n_new = int(ent["new"].sum())
        if n_new:
            what = f"new {label}" if n_new == 1 else f"{n_new} new {_plural(label)}"
            first = ent.filter("new").row(0, named=True)
            out.append(f"{what} ({_display(first['value'])}{', ...' if n_new > 1 else ''})")
    over = pl.concat([_frame_entities(a, k, col) for col, _ in ENTITY_COLUMNS]).filter("over").sort(
        "share", descending=True)
    for r in over.head(2).iter_rows(named=True):
        label = dict(ENTITY_COLUMNS)[r["column"]]
        out.append(f"{label} {_display(r['value'])}: {r['share']:.0%} of requests "
                   f"(normally {_pct(r['share_normal'])})")

    peak = _peak_index(a, k)
    deviations = []
    for col in SUMMARY_COLUMNS:
        value = float(a.inp.chunks[col][peak])
        med, lo, hi = a.typical_summary[col]
        if not math.isnan(med) and (value > hi or value < lo) and value != med:
            deviations.append((abs(value - med) / max(med, 1.0), col, value, med))
    for _, col, value, med in sorted(deviations, reverse=True)[:2]:
        out.append(f"{value:g} distinct {_LABELS[col.removeprefix('distinct_')]} values (typical {med:g})")
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Public frames
# --------------------------------------------------------------------------------------------


def anomaly_frames(inp: ReportInput) -> pl.DataFrame:
    """One row per anomalous time frame (FRAME_COLUMNS), in time order; merged chunks counted."""
    return _analyse(inp).frames


def anomalies_csv(inp: ReportInput) -> pl.DataFrame:
    """One row per anomalous frame (CSV_COLUMNS), most severe first, for spreadsheets.

    ``top_columns``: the peak chunk's columns by error; ``new_*``: how many values the normal
    rows never had; ``top_*``: the frame's most frequent values with their counts ("new" or
    "over" marked). Text cells that start like a formula get a leading apostrophe.
    """
    return _csv_frame(_analyse(inp))


def _csv_frame(a: _Analysis) -> pl.DataFrame:
    inp = a.inp
    records = []
    for r in a.listing().iter_rows(named=True):
        k = r["frame"] - 1
        top_cols = "; ".join(
            f if err is None else f"{f} {err:.4f}" for f, err, _ in _top_columns(a, k)
        )
        record: dict[str, object] = {
            "vendor": inp.vendor, "run_id": inp.run_id, "model": inp.model, "frame": r["frame"],
            "severity": r["severity"], "start_time": r["start_time"], "end_time": r["end_time"],
            "requests": r["requests"], "chunks": r["chunks"], "first_id": r["first_id"],
            "last_id": r["last_id"], "score": r["score"], "threshold": r["threshold"],
            "ratio": r["ratio"], "top_columns": top_cols, "why": "; ".join(a.reasons[k]),
        }
        for col, name in zip((c for c, _ in ENTITY_COLUMNS),
                             ("keys", "machine_codes", "ips", "countries"), strict=True):
            ent = _frame_entities(a, k, col)
            record[f"new_{name}"] = int(ent["new"].sum())
            record[f"top_{name}"] = "; ".join(
                f"{_display(e['value'])} ({e['n']}{', new' if e['new'] else ', over' if e['over'] else ''})"
                for e in ent.head(3).iter_rows(named=True)
            )
        records.append(record)
    time_dtype = a.frames.schema["start_time"]
    schema = {
        "vendor": pl.String, "run_id": pl.String, "model": pl.String, "frame": pl.Int64,
        "severity": pl.String, "start_time": time_dtype, "end_time": time_dtype, "requests": pl.Int64,
        "chunks": pl.Int64, "first_id": pl.Int64, "last_id": pl.Int64, "score": pl.Float64,
        "threshold": pl.Float64, "ratio": pl.Float64, "top_columns": pl.String, "why": pl.String,
        **{f"new_{n}": pl.Int64 for n in ("keys", "machine_codes", "ips", "countries")},
        **{f"top_{n}": pl.String for n in ("keys", "machine_codes", "ips", "countries")},
    }
    frame = pl.DataFrame(records, schema=schema).select(CSV_COLUMNS)
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(r"^[=+\-@\t\r]")).then(pl.concat_str(pl.lit("'"), pl.col(c)))
        .otherwise(pl.col(c)).alias(c)
        for c, dtype in frame.schema.items() if dtype == pl.String
    )


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _histogram_png(a: _Analysis) -> bytes:
    """Training errors (left) and this report's chunks (right, flagged in red), threshold dashed."""
    from licanom.plots import figure_png

    inp = a.inp
    split = inp.chunks["split"].to_numpy()
    scores = inp.chunks["score"].to_numpy().astype(np.float64)
    flagged = inp.chunks["is_anomaly"].to_numpy().astype(bool)
    train = (np.asarray(inp.train_errors, dtype=np.float64) if inp.train_errors is not None
             else scores[split == "train"])
    finite = np.isfinite(scores)
    train, scored, scored_flagged = train[np.isfinite(train)], scores[finite], scores[finite & flagged]
    def draw() -> Any:  # a matplotlib Figure
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
        every = np.concatenate([train, scored, [inp.threshold]])
        bins = np.histogram_bin_edges(every[np.isfinite(every)], bins=50)
        for ax, errors, title in ((axes[0], train, "training chunks"), (axes[1], scored, "all chunks of this report")):
            if errors.size:
                ax.hist(errors, bins=bins, color="tab:blue", alpha=0.8, label="chunks")
            else:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.axvline(inp.threshold, color="tab:red", linestyle="--", linewidth=1.2,
                       label=f"{inp.threshold_name} {inp.threshold:.4f}")
            ax.set_yscale("log")
            ax.set_title(f"{title} ({errors.size})")
            ax.set_xlabel("reconstruction error (MAE)")
        if scored_flagged.size:
            axes[1].hist(scored_flagged, bins=bins, color="tab:red", alpha=0.9, label="flagged")
        for ax in axes:
            ax.set_ylim(bottom=0.7)
        axes[0].set_ylabel("chunks")
        axes[1].legend(fontsize=8)
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.15, top=0.9, wspace=0.15)  # tight_layout is slow
        return fig

    return figure_png(draw)


def _loss_png(inp: ReportInput) -> bytes | None:
    if not inp.train_loss and not inp.val_loss:
        return None
    from licanom.plots import loss_curves

    return loss_curves({inp.model: (tuple(inp.train_loss), tuple(inp.val_loss))})


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#f6f8fa; --accent:#0969da;
        --high:#cf222e; --medium:#bc4c00; --low:#9a6700; --new:#fff1c2; --over:#ddf4ff; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 18px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 17px; font-weight: 600; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg); font-weight: 600; white-space: nowrap; }
td { overflow-wrap: anywhere; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.requests td { white-space: nowrap; overflow-wrap: normal; font-family: ui-monospace, SFMono-Regular, Menlo,
               Consolas, monospace; font-size: 12px; }
.requests td, .requests th { padding: 3px 6px; }
.requests td:first-child { text-align: right; }
.scroll { overflow-x: auto; }
.requests tr.failed { background: #fff8f8; }
.requests tr.failed td:last-child { color: var(--high); font-weight: 600; }
td.nw { white-space: nowrap; overflow-wrap: normal; }
.sev { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12px; font-weight: 600;
       color: #fff; }
.sev.high { background: var(--high); } .sev.medium { background: var(--medium); } .sev.low { background: var(--low); }
.tag { display: inline-block; border-radius: 4px; padding: 0 5px; font-size: 11px; font-weight: 600;
       margin-left: 4px; }
.tag.new { background: var(--new); color: #7d4e00; } .tag.over { background: var(--over); color: #0550ae; }
td.new { background: var(--new); }
.out { color: var(--high); font-weight: 600; }
.frame { border: 1px solid var(--line); border-radius: 10px; padding: 4px 18px 12px; margin: 18px 0; }
.frame > h3 { font-size: 17px; }
.why { margin: 6px 0 10px 0; padding-left: 20px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.grid4 { display: grid; grid-template-columns: repeat(2, 1fr); gap: 6px 18px; }
.bar { background: #eaeef2; border-radius: 3px; height: 10px; min-width: 60px; position: relative; }
.bar > span { position: absolute; left: 0; top: 0; bottom: 0; background: var(--accent); border-radius: 3px; }
.bar > i { position: absolute; top: -2px; bottom: -2px; width: 2px; background: var(--fg); }
.note { color: var(--muted); font-size: 12.5px; }
figure { margin: 8px 0; } figure img { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
figure.narrow { max-width: 640px; }
figcaption { color: var(--muted); font-size: 12.5px; }
details > summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
@media (max-width: 900px) { .grid2, .grid4 { grid-template-columns: 1fr; } }
"""


def _e(value: object) -> str:
    """Escaped text of a value (None as empty)."""
    return html.escape(_text(value), quote=True)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else ("" if math.isnan(value) else f"{value:.4g}")
    return str(value)


# No value from the log is shown longer than this (a 1 MB key would otherwise be repeated in
# full in every tooltip and reason): a longer one is cut and its length named.
VALUE_LIMIT = 256


def _display(value: object) -> str:
    """A log value as shown (empty and missing values named, long ones cut)."""
    if value is None:
        return "(missing)"
    text = "(empty)" if value == "" else str(value)
    return text if len(text) <= VALUE_LIMIT else f"{text[:VALUE_LIMIT]}... ({len(text):,} characters)"


def _short(value: object, limit: int = 26) -> str:
    """Escaped display text of a log value, cut to ``limit`` characters (the whole value as a tooltip)."""
    text = _display(value)
    if len(text) <= limit:
        return _e(text)
    return f'<span title="{_e(text)}">{_e(text[: limit - 1])}&hellip;</span>'


def _plural(label: str) -> str:
    return label[:-1] + "ies" if label.endswith("y") and label[-2:-1] not in "aeiou" else label + "s"


def _pct(share: float) -> str:
    if share == 0:
        return "0%"
    return f"{share:.0%}" if share >= 0.1 else f"{share:.2%}" if share >= 0.0001 else "<0.01%"


def _duration(start: datetime, end: datetime) -> str:
    seconds = int((end - start).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _table(head: Sequence[str], rows: Iterable[str], num: Sequence[int] = (), cls: str = "") -> str:
    cells = "".join(f'<th class="num">{_e(h)}</th>' if i in num else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _sev(name: str) -> str:
    return f'<span class="sev {_e(name)}">{_e(name)}</span>'


def render_html(inp: ReportInput) -> str:
    """The report as one self-contained HTML page (no scripts, no external references)."""
    return _render(_analyse(inp))


def _render(a: _Analysis) -> str:
    inp = a.inp
    listing = a.listing()
    shown = listing.head(inp.max_frames)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>licanom report: {_e(inp.vendor)} ({_e(inp.run_id)})</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Anomaly report: {_e(inp.vendor)}</h1>",
        f'<p class="sub">run <span class="mono">{_e(inp.run_id)}</span> &middot; model {_e(inp.model)} '
        f"&middot; threshold {_e(inp.threshold_name)} = {_e(f'{inp.threshold:.5f}')}</p>",
        _summary(a),
        _overview(a, listing, shown),
        _figures(a),
    ]
    if shown.height:
        parts.append("<h2>Why each frame was flagged</h2>")
        for i, r in enumerate(shown.iter_rows(named=True)):
            parts.append(_frame_section(a, r, open_requests=i == 0))
    parts.append(_method_note(a))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _summary(a: _Analysis) -> str:
    inp, frames, chunks = a.inp, a.frames, a.inp.chunks
    n_flagged = int(chunks["is_anomaly"].sum())
    splits = chunks.group_by("split").len().sort("split")
    split_text = ", ".join(f"{s} {n:,}" for s, n in splits.iter_rows()) or "none"
    in_chunks = int(a.covered.sum())
    period = (f"{_text(chunks['start_time'].min())} to {_text(chunks['end_time'].max())}"
              if chunks.height else "no chunks")
    by_sev = {name: int((frames["severity"] == name).sum()) for name, _ in SEVERITY_BANDS}
    cards = [
        ("vendor", inp.vendor), ("run", inp.run_id), ("model", inp.model),
        ("threshold", f"{inp.threshold_name} = {inp.threshold:.5f}"),
        ("chunks scored", f"{chunks.height:,}"), ("anomalous chunks", f"{n_flagged:,}"),
        ("anomalous frames", f"{frames.height:,}"),
        ("severity", ", ".join(f"{n} {name}" for name, n in by_sev.items() if n) or "none"),
        ("requests in frames", f"{int(frames['requests'].sum()) if frames.height else 0:,}"),
        ("requests in chunks", f"{in_chunks:,}"),
    ]
    html_cards = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
                         for k, v in cards)
    return (f'<div class="cards">{html_cards}</div>'
            f'<p class="note">Period {_e(period)} (UTC); chunks by split: {_e(split_text)}.</p>')


def _overview(a: _Analysis, listing: pl.DataFrame, shown: pl.DataFrame) -> str:
    out = ["<h2>Anomalous time frames</h2>"]
    if listing.height == 0:
        out.append("<p>No chunk scored above the threshold: nothing anomalous in this run.</p>")
        return "\n".join(out)
    omitted = listing.height - shown.height
    out.append(f'<p class="note">{listing.height} frame(s), most severe first'
               + (f"; the {shown.height} most severe are listed, {omitted} omitted (all are in the CSV)."
                  if omitted else ".") + "</p>")
    rows = []
    for r in shown.iter_rows(named=True):
        k = r["frame"] - 1
        top = ", ".join(_LABELS.get(f, f) for f, _, _ in _notable_columns(a, k))
        score, ratio = f"{r['score']:.4f}", f"{r['ratio']:.2f}"
        rows.append(
            f'<tr class="anomaly-row" id="row-{r["frame"]}"><td><a href="#frame-{r["frame"]}">#{r["frame"]}</a></td>'
            f"<td>{_sev(r['severity'])}</td>"
            f"<td class=\"mono\">{_e(r['start_time'])}</td><td class=\"mono\">{_e(r['end_time'])}</td>"
            f"<td class=\"num\">{_e(_duration(r['start_time'], r['end_time']))}</td>"
            f"<td class=\"num\">{r['requests']:,}</td><td class=\"num\">{r['chunks']}</td>"
            f"<td class=\"num\">{score}</td><td class=\"num\">{ratio}&times;</td>"
            f"<td>{_e(top)}</td><td>{_e(_short_why(a.reasons[k]))}</td></tr>"
        )
    out.append(_table(("frame", "severity", "start (UTC)", "end (UTC)", "duration", "requests", "chunks",
                       "score", "vs threshold", "top columns", "why (short)"), rows, num=(4, 5, 6, 7, 8)))
    return "\n".join(out)


def _figures(a: _Analysis) -> str:
    inp = a.inp
    out = ["<h2>Errors and training</h2>"]
    out.append("<figure>" + _img(_histogram_png(a), "reconstruction error histogram") +
               f"<figcaption>Reconstruction error per chunk (log scale), the {_e(inp.threshold_name)} threshold "
               "dashed; flagged chunks in red. Thesis 4.1: look at the histogram, not only the line.</figcaption></figure>")
    loss = _loss_png(inp)
    if loss is None:
        out.append('<p class="note">No loss curves: the model was not trained in this run.</p>')
    else:
        last = ", ".join(f"{name} {vals[-1]:.4f}" for name, vals in (("train/loss", inp.train_loss),
                                                                    ("val/loss", inp.val_loss)) if vals)
        out.append('<figure class="narrow">' + _img(loss, "loss curves") +
                   f"<figcaption>train/loss (solid) and val/loss (dashed) per epoch; last: {_e(last)}.</figcaption></figure>")
    return "\n".join(out)


def _frame_section(a: _Analysis, r: dict[str, object], open_requests: bool) -> str:
    k = int(r["frame"]) - 1  # type: ignore[call-overload]
    start, end = r["start_time"], r["end_time"]
    score, threshold, ratio = f"{r['score']:.4f}", f"{r['threshold']:.4f}", f"{r['ratio']:.2f}"
    head = (f'<section class="frame" id="frame-{r["frame"]}"><h3>#{r["frame"]} {_sev(str(r["severity"]))} '
            f'<span class="mono">{_e(start)}</span> &ndash; <span class="mono">{_e(end)}</span> UTC</h3>')
    chunks = (f'1 chunk (#{r["first_chunk"]}' if r["chunks"] == 1
              else f'{r["chunks"]} chunks (#{r["first_chunk"]}&ndash;#{r["last_chunk"]}')
    facts = (f'<p class="note">{int(r["requests"]):,} requests in {chunks}, '  # type: ignore[call-overload]
             f'Ids {_e(r["first_id"])}&ndash;{_e(r["last_id"])}); '
             f'score {score} vs threshold {threshold} ({ratio}&times;)'
             + ("" if r["chunks"] == 1 else f', at its peak chunk #{_e(r["peak_chunk"])}') + ".</p>")
    why = "<ul class=\"why\">" + "".join(f"<li>{_e(s)}</li>" for s in a.reasons[k]) + "</ul>"
    context = _context_table(a, k)
    by_context = a.inp.feature_errors is None and a.inp.chunks["top_feature"][_peak_index(a, k)] in CONTEXT_LABELS
    left = context if by_context and context else _errors_table(a, k)  # a context model: its own inputs
    grid = f'<div class="grid2"><div>{left}</div><div>{_summary_table(a, k)}</div></div>'
    if context and left is not context:
        grid += f'<div class="grid2"><div>{context}</div><div></div></div>'
    ents = '<h3>Keys, machines, addresses, countries</h3><div class="grid4">' + "".join(
        _entity_table(a, k, col, label) for col, label in ENTITY_COLUMNS) + "</div>"
    return "\n".join([head, facts, why, grid, ents, _requests_table(a, k, open_requests), "</section>"])


def _errors_table(a: _Analysis, k: int) -> str:
    inp = a.inp
    peak = _peak_index(a, k)
    if inp.feature_errors is None:
        top = inp.chunks["top_feature"][peak]
        if top is None:
            return ("<h3>Column errors</h3><p>This model scores a chunk as a whole (no error per "
                    "column): see the summary vector and the values below.</p>")
        if top in CONTEXT_LABELS:
            return ("<h3>Context</h3><p>This model reads what the chunk's keys, machines and addresses "
                    f"did in the same clock hour; the most unusual signal: <b>{_e(CONTEXT_LABELS[top])}</b> "
                    f"(<code>{_e(top)}</code>).</p>")
        return (f"<h3>Column errors</h3><p>Largest error in the <b>{_e(top)}</b> "
                "column (per-column errors were not kept).</p>")
    errors = np.asarray(inp.feature_errors, dtype=np.float64)[peak]
    typical = a.typical_errors
    top = float(errors.max()) if errors.size and errors.max() > 0 else 1.0
    rows = []
    for j in np.argsort(-errors, kind="stable"):
        typ = None if typical is None else float(typical[j])
        bar = (f'<div class="bar"><span style="width:{100 * errors[j] / top:.1f}%"></span>'
               + (f'<i style="left:{min(100.0, 100 * typ / top):.1f}%"></i>' if typ is not None else "") + "</div>")
        ratio = f"{errors[j] / typ:.1f}&times;" if typ else "&ndash;"
        rows.append(f"<tr><td>{_e(_LABELS[FEATURES[j]])}</td><td class=\"num\">{errors[j]:.4f}</td>"
                    f"<td class=\"num\">{'' if typ is None else f'{typ:.4f}'}</td><td class=\"num\">{ratio}</td>"
                    f"<td style=\"width:30%\">{bar}</td></tr>")
    return ("<h3>Column errors (peak chunk)</h3>"
            + _table(("column", "error", "typical", "ratio", ""), rows, num=(1, 2, 3))
            + '<p class="note">Typical: median over the chunks not flagged (black tick on the bar).</p>')


def _context_table(a: _Analysis, k: int) -> str:
    """The peak chunk's context vector next to the normal chunks' median and 95th percentile."""
    peak = _peak_index(a, k)
    values = a.context[peak]
    if not np.isfinite(values).all():
        return ""
    rows = []
    for j, col in enumerate(CONTEXT_COLUMNS):
        med, hi = a.typical_context[j]
        out = not math.isnan(hi) and values[j] > hi
        rows.append(f"<tr><td>{_e(CONTEXT_LABELS[col])}</td>"
                    f"<td class=\"num{' out' if out else ''}\">{_e(_context_value(col, float(values[j])))}</td>"
                    f"<td class=\"num\">{_e(_context_value(col, float(med)))}</td>"
                    f"<td class=\"num\">{_e(_context_value(col, float(hi)))}</td></tr>")
    return ("<h3>Context (the chunk's keys, machines and addresses in the same clock hour)</h3>"
            + _table(("signal", "this frame", "typical", "normal 95%"), rows, num=(1, 2, 3))
            + '<p class="note">The largest value over the peak chunk&rsquo;s requests; typical: median over '
              'the chunks not flagged. Red: above their 95th percentile.</p>')


def _summary_table(a: _Analysis, k: int) -> str:
    peak = _peak_index(a, k)
    rows = []
    for col in SUMMARY_COLUMNS:
        value = float(a.inp.chunks[col][peak])
        med, lo, hi = a.typical_summary[col]
        out = not math.isnan(med) and (value > hi or value < lo)
        rows.append(f"<tr><td>{_e(_LABELS[col.removeprefix('distinct_')])}</td>"
                    f"<td class=\"num{' out' if out else ''}\">{value:g}</td><td class=\"num\">{_e(f'{med:g}')}</td>"
                    f"<td class=\"num\">{_e(f'{lo:g}')}&ndash;{_e(f'{hi:g}')}</td></tr>")
    return ("<h3>Summary vector (distinct values, thesis 3.4)</h3>"
            + _table(("column", "this frame", "typical", "normal 5-95%"), rows, num=(1, 2, 3))
            + '<p class="note">Red: outside the normal chunks&rsquo; 5-95% range.</p>')


def _entity_table(a: _Analysis, k: int, column: str, label: str, limit: int = 6) -> str:
    ent = _frame_entities(a, k, column)
    n_new = int(ent["new"].sum())
    n_over = int(ent["over"].sum())
    # notable values first (new, over-represented), then the most frequent
    shown = ent.sort(["new", "over", "n"], descending=True).head(limit)
    rows = []
    for e in shown.iter_rows(named=True):
        tags = ('<span class="tag new">new</span>' if e["new"] else "") + (
            '<span class="tag over">over</span>' if e["over"] else "")
        rows.append(f"<tr><td class=\"mono nw\">{_short(e['value'])}{tags}</td><td class=\"num\">{e['n']}</td>"
                    f"<td class=\"num\">{_pct(e['share'])}</td><td class=\"num\">{_pct(e['share_normal'])}</td></tr>")
    more = ent.height - shown.height
    title = _plural(label)
    note = f"{ent.height} distinct, {n_new} new, {n_over} over-represented" + (f"; {more} more not shown" if more else "")
    return (f"<div><h3>{_e(title)}</h3>"
            + _table((label, "requests", "share here", "share normally"), rows, num=(1, 2, 3))
            + f'<p class="note">{_e(note)}</p></div>')


def _method(state: object) -> tuple[str, bool | None]:
    try:
        code = int(state)  # type: ignore[call-overload]
        group = MethodGroup(code // 100).name.lower().replace("_", " ")
        return group, (code // 10) % 10 == 1
    except (TypeError, ValueError):
        return "?", None


def _requests_table(a: _Analysis, k: int, open_: bool) -> str:
    inp = a.inp
    idx = np.flatnonzero(a.row_frame == k)
    total = idx.size
    if total == 0:
        return '<p class="note">The requests of this frame are not among the given rows.</p>'
    shown = a.rows[idx[: inp.max_requests].tolist()]
    new_values = {
        col: set(_frame_entities(a, k, col).filter("new")["value"].to_list()) for col, _ in ENTITY_COLUMNS
    }
    extra = [c for c in ("ProductId", "FriendlyName") if c in shown.columns and shown[c].null_count() < shown.height]
    head = ["Id", "time (UTC)", "key", "machine code", "IP", "country", *extra, "state", "action", "result"]
    rows = []
    for r in shown.iter_rows(named=True):
        method, ok = _method(r["State"])
        cells = [f"<td>{_e(r['Id'])}</td><td>{_e(r['Time'])}</td>"]
        for col, limit in (("Key", 30), ("MachineCode", 16), ("IP", 26), ("country", 4)):
            cells.append(f'<td class="new">{_short(r[col], limit)}</td>' if r[col] in new_values[col]
                         else f"<td>{_short(r[col], limit)}</td>")
        cells += [f"<td>{_short(r[c])}</td>" for c in extra]
        cells += [f'<td class="num">{_e(r["State"])}</td><td>{_e(method)}</td>'
                  f"<td>{'ok' if ok else 'failed' if ok is False else ''}</td>"]
        rows.append(f'<tr class="failed">{"".join(cells)}</tr>' if ok is False else f'<tr>{"".join(cells)}</tr>')
    more = total - shown.height
    note = (f'<p class="note">{more:,} more request(s) not shown (Ids up to {_e(a.rows["Id"][int(idx[-1])])}); '
            "new values are highlighted.</p>" if more else '<p class="note">New values are highlighted.</p>')
    return (f"<details{' open' if open_ else ''}><summary>Requests ({total:,}"
            f"{f', first {shown.height} shown' if more else ''})</summary>"
            + '<div class="scroll">' + _table(head, rows, num=(0, 6 + len(extra)), cls="requests") + "</div>"
            + note + "</details>")


def _method_note(a: _Analysis) -> str:
    bands = ", ".join(f"{name} from {lo:g}&times;" if lo > 0 else f"{name} below" for name, lo in SEVERITY_BANDS)
    return (
        "<h2>How to read this report</h2><ul class=\"note\">"
        "<li>A chunk is a window of consecutive requests; its score is the autoencoder&rsquo;s mean absolute "
        "reconstruction error, and it is anomalous above the threshold.</li>"
        "<li>Flagged chunks that follow one another or overlap are merged into one time frame; the frame&rsquo;s "
        "score, column errors and summary vector are those of its highest-scoring (peak) chunk.</li>"
        f"<li>Severity from score / threshold: {bands}.</li>"
        "<li><b>Normal traffic</b> is every request outside the anomalous frames; a value is <b>new</b> when normal "
        f"traffic never had it, <b>over</b>-represented when it takes at least {OVER_MIN_SHARE:.0%} of the frame "
        f"and at least {OVER_LIFT:g}&times; its normal share (and {OVER_MIN_COUNT}+ requests).</li>"
        "<li>Typical values are medians over the chunks not flagged (thesis 3.4 compares summary vectors of "
        "anomalous and normal samples).</li></ul>"
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_report(inp: ReportInput, out_dir: Path, name: str = "report") -> ReportPaths:
    """Write ``<name>.html`` and ``anomalies.csv`` into ``out_dir`` (analysing the input once)."""
    a = _analyse(inp)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(html=out_dir / f"{name}.html", csv=out_dir / "anomalies.csv")
    paths.html.write_text(_render(a), encoding="utf-8")
    _csv_frame(a).write_csv(paths.csv)
    return paths


# --------------------------------------------------------------------------------------------
# A scored run's folder: what a report is rebuilt from
# --------------------------------------------------------------------------------------------

RUN_FILE = "run.json"
ROWS_FILE = "rows.parquet"
ROW_COLUMNS: tuple[str, ...] = (*RAW, "success", "action", "country")


def save_run(inp: ReportInput, run_dir: Path) -> None:
    """Keep what a report needs beside the run's ``chunks.parquet``: ``run.json`` (vendor, run,
    model, threshold, losses, training errors), ``rows.parquet`` (the rows the chunks cover) and
    the key history of those rows' keys, if any, so that ``licanom report --run`` can write the
    same page again later."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    inp.rows.select([c for c in ROW_COLUMNS if c in inp.rows.columns]).write_parquet(run_dir / ROWS_FILE)
    KeyHistory.keep(run_dir, inp.key_history.for_keys(inp.rows["Key"]) if inp.key_history is not None else None)
    meta = {
        "vendor": inp.vendor, "run_id": inp.run_id, "model": inp.model,
        "threshold_name": inp.threshold_name, "threshold": inp.threshold,
        "train_loss": list(inp.train_loss), "val_loss": list(inp.val_loss),
        "train_errors": None if inp.train_errors is None else [float(x) for x in inp.train_errors],
    }
    tmp = run_dir / f"{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(run_dir / RUN_FILE)


def decision_name(detector: Any) -> str:
    """How a fitted detector decides: its threshold method (the autoencoders), or for the
    sequence models the share of training scores flagged, or their own learned boundary."""
    method = getattr(detector, "threshold_method_", None)
    if method:
        return str(method)
    share = getattr(detector, "contamination", None)
    return f"top {share:.0%} of training" if share else "own boundary"


def chunk_feature_errors(chunks: pl.DataFrame) -> np.ndarray | None:
    """The per-column errors of scored chunks (``error_*``), or None where the model keeps none
    (the sequence models score a chunk as a whole; their ``error_*`` columns are null)."""
    errors = [f"error_{f}" for f in FEATURES]
    if not chunks.height or any(c not in chunks.columns for c in errors) or chunks[errors[0]].null_count():
        return None
    return chunks.select(errors).to_numpy()


def detector_report_input(detector: Any, *, vendor: str, run_id: str, model: str, chunks: pl.DataFrame,
                          rows: pl.DataFrame, key_history: KeyHistory | None = None,
                          context: np.ndarray | None = None) -> ReportInput:
    """The report input of chunks scored by a fitted detector (either family)."""
    report = getattr(detector, "report_", None)    # the autoencoders' training report
    history = getattr(detector, "history_", None)  # the sequence models' objective per epoch
    return ReportInput(
        vendor=vendor, run_id=run_id, model=model,
        threshold_name=decision_name(detector), threshold=float(detector.threshold_),
        chunks=chunks, rows=rows, feature_errors=chunk_feature_errors(chunks),
        train_errors=detector.decision_scores_,
        train_loss=report.train_loss if report else (tuple(history.objective) if history else ()),
        val_loss=report.val_loss if report else (), key_history=key_history, context=context,
    )


def load_run(run_dir: Path, chunks_file: str = "chunks.parquet") -> ReportInput:
    """The report input of a run folder written by ``licanom detect`` or a nightly scoring."""
    run_dir = Path(run_dir)
    missing = [f for f in (RUN_FILE, ROWS_FILE, chunks_file) if not (run_dir / f).exists()]
    if missing:
        raise ValueError(
            f"{run_dir} is not a scored run folder (missing {', '.join(missing)}); "
            "give the --out folder of `licanom detect` or a night folder under out/<vendor>/nights/"
        )
    meta = json.loads((run_dir / RUN_FILE).read_text())
    chunks = pl.read_parquet(run_dir / chunks_file)
    train_errors = meta.get("train_errors")
    return ReportInput(
        vendor=meta["vendor"], run_id=meta["run_id"], model=meta["model"],
        threshold_name=meta["threshold_name"], threshold=float(meta["threshold"]),
        chunks=chunks, rows=pl.read_parquet(run_dir / ROWS_FILE), feature_errors=chunk_feature_errors(chunks),
        train_errors=None if train_errors is None else np.asarray(train_errors, dtype=np.float64),
        train_loss=tuple(meta.get("train_loss") or ()), val_loss=tuple(meta.get("val_loss") or ()),
        key_history=KeyHistory.load(run_dir),
    )
