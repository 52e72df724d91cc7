"""The report as text: the HTML page and the night's markdown summary, through Jinja2 templates.

:func:`write_report` is the one entry point of the HTML report: it analyses a
:class:`~licanom.report.analysis.ReportInput` once and writes ``report.html`` (a self-contained
page: no scripts, no external references, CSS inline, the score histogram as inline SVG
(:mod:`licanom.report.histogram`), loss curves as a base64 PNG data URI) and ``anomalies.csv``. :func:`anomaly_report` renders the night's ``report.md``.

The templates live in ``licanom/report/templates/`` (shipped as package data). The environment
escapes every value by default (``autoescape``; log fields are untrusted, so a key, machine code
or address is text, never markup); only the markdown templates (``*.md.j2``) are not HTML, and
their cells go through :func:`md_cell`. The views handed to the templates are small frozen
dataclasses of plain values; wording that depends on the data is computed here, numbers are
formatted here, markup stays in the templates.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import jinja2
import numpy as np
import polars as pl

from licanom.data.columns import FEATURES, SUMMARY_COLUMNS
from licanom.data.context_vector import CONTEXT_COLUMNS, CONTEXT_LABELS
from licanom.detectors.decision import FLAGGED_BY
from licanom.report.analysis import (
    CALIBRATED_BANDS,
    LABELS,
    OVER_LIFT,
    OVER_MIN_COUNT,
    OVER_MIN_SHARE,
    REASON_LIMIT,
    SEVERITY_BANDS,
    VALUE_COLUMNS,
    Analysis,
    ReportInput,
    ScoreWording,
    analyse,
    context_value,
    csv_frame,
    cut_words,
    display,
    duration,
    notable_columns,
    pct,
    plural,
    score_distributions,
    short_why,
    shown_severity,
    signal_label,
    text,
)
from licanom.report.histogram import score_histogram

__all__ = ["ReportPaths", "anomaly_report", "environment", "md_cell", "render_html", "write_report"]


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put the page and the CSV."""

    html: Path
    csv: Path


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescape on (off only for ``*.md.j2``), undefined names
    are errors, whitespace of block tags trimmed."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("licanom.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), disabled_extensions=("md.j2",),
                                            default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(text=text, display=display, md_cell=md_cell, n=_count, sev=_sev_text, signal=signal_label)
    env.globals.update(REASON_LIMIT=REASON_LIMIT, INCIDENT_SEVERITY=INCIDENT_SEVERITY)
    return env


def _count(value: int | None) -> str:
    """A count with thousands separators."""
    return "" if value is None else f"{int(value):,}"


def md_cell(value: object, limit: int = 80) -> str:
    """A value for a markdown cell: no pipes or line breaks, at most ``limit`` characters (cut at a
    word where it has words, :func:`cut_words`)."""
    return cut_words(str(value).replace("|", "/").replace("\n", " "), limit)


def _band(severity: float | None) -> str:
    """The band (high, medium, low) of a calibrated severity; "" for none."""
    if severity is None or severity != severity:
        return ""
    return next(name for name, lowest in CALIBRATED_BANDS if severity >= lowest)


def _sev_text(severity: float | None) -> str:
    """A severity as the report shows it (:func:`shown_severity`: 54.6 reads 54); "" for none."""
    shown = shown_severity(severity)
    return "" if shown is None else str(shown)


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityRow:
    severity: str
    band: str
    kind: str
    who: str
    start: datetime
    end: datetime
    duration: str
    requests: int
    reasons: str               # whole up to REASON_LIMIT characters, else cut at a word
    reasons_whole: str         # the whole reason where ``reasons`` is cut (its tooltip), else ""


@dataclass(frozen=True)
class IncidentRow:
    incident: int
    kind: str
    who: str
    chunks: int
    start: datetime
    end: datetime
    severity: str
    band: str
    signal: str


@dataclass(frozen=True)
class FrameRow:
    """One line of the frame table."""

    frame: int
    severity: str
    peak_severity: str         # the peak chunk's calibrated 0-100, "" when scored without one
    by_night: bool             # flagged by the night rule alone (below the threshold)
    night_chunks: int          # its chunks the night rule flagged (below the threshold)
    start: datetime
    end: datetime
    duration: str
    requests: int
    chunks: int
    score: str
    ratio: str
    top: str
    why: str


@dataclass(frozen=True)
class ErrorRow:
    label: str
    error: str
    typical: str
    ratio: str
    width: str
    tick: str | None


@dataclass(frozen=True)
class Errors:
    """A frame's column errors: ``kind`` is ``table`` (``rows``), ``whole`` (a model without
    column errors), ``context`` (a context model's signal ``top``) or ``top`` (only the largest
    column, ``top``, was kept)."""

    kind: str
    rows: tuple[ErrorRow, ...] = ()
    top: str = ""
    top_label: str = ""


@dataclass(frozen=True)
class SignalRow:
    label: str
    value: str
    typical: str
    high: str
    out: bool


@dataclass(frozen=True)
class ValueRow:
    value: object
    new: bool
    over: bool
    n: int
    share: str
    share_normal: str


@dataclass(frozen=True)
class ValueTable:
    title: str
    label: str
    rows: tuple[ValueRow, ...]
    note: str


@dataclass(frozen=True)
class Cell:
    """A log value in the request table, cut to ``limit`` characters; ``new``: normal traffic never had it."""

    value: object
    limit: int = 26
    new: bool = False


@dataclass(frozen=True)
class RequestRow:
    id: str
    time: str
    values: tuple[Cell, ...]  # key, machine code, IP, country, then ProductId/FriendlyName where present
    state: str
    method: str
    result: str

    @property
    def failed(self) -> bool:
        return self.result == "failed"


@dataclass(frozen=True)
class Requests:
    total: int
    head: tuple[str, ...]
    rows: tuple[RequestRow, ...]
    more: int
    last_id: object
    num: tuple[int, ...]


@dataclass(frozen=True)
class FrameDetail:
    frame: int
    severity: str
    start: datetime
    end: datetime
    requests: int
    chunks: int
    first_chunk: int
    last_chunk: int
    peak_chunk: int
    first_id: object
    last_id: object
    score: str
    threshold: str
    ratio: str
    flagged_by: str | None     # "threshold", "night" (licanom.detectors.decision.FLAGGED_BY), None if not stored
    night_chunks: int          # its chunks the night rule flagged (below the threshold)
    why: tuple[str, ...]
    errors: Errors | None      # the left table when not the context one
    context: tuple[SignalRow, ...] | None
    context_left: bool         # a context model: its signals in place of the column errors
    summary: tuple[SignalRow, ...]
    values: tuple[ValueTable, ...]
    request_table: Requests | None
    open: bool


def _period(chunks: pl.DataFrame, entities: pl.DataFrame | None) -> str:
    """From the first to the last request the run's chunks and flagged entities hold (a night's
    entities also read the rows after its last chunk, which the next night's chunks score)."""
    starts = [f["start_time"].min() for f in (chunks, entities) if f is not None and f.height]
    ends = [f["end_time"].max() for f in (chunks, entities) if f is not None and f.height]
    if not starts:
        return "no chunks"
    return f"{text(min(starts))} to {text(max(ends))}"


def _entity_rows(a: Analysis) -> tuple[EntityRow, ...]:
    if a.entities is None:
        return ()
    out = []
    for r in a.entities.head(a.inp.max_entities).iter_rows(named=True):
        reason = str(r["reasons"] or "")
        out.append(EntityRow(
            severity=_sev_text(r["severity"]), band=_band(r["severity"]), kind=str(r["entity_kind"]),
            who=display(r["entity"]), start=r["start_time"], end=r["end_time"],
            duration=duration(r["start_time"], r["end_time"]), requests=int(r["requests"] or 0),
            reasons=cut_words(reason, REASON_LIMIT), reasons_whole=reason if len(reason) > REASON_LIMIT else "",
        ))
    return tuple(out)


def _incident_rows(a: Analysis) -> tuple[IncidentRow, ...]:
    return tuple(
        IncidentRow(incident=int(r["incident"]), kind=str(r["entity_kind"] or ""), who=display(r["entity"]),
                    chunks=int(r["chunks"]), start=r["start_time"], end=r["end_time"],
                    severity=_sev_text(r["max_severity"]), band=_band(r["max_severity"]),
                    signal=signal_label(r["signal"]))
        for r in a.incidents.iter_rows(named=True)
    )


def _night_chunks(a: Analysis, k: int) -> int:
    """How many of frame k's chunks the night rule flagged, below the threshold (a frame that holds
    one chunk above it is the threshold's: its others are said apart)."""
    chunks = a.inp.chunks
    if "flagged_by" not in chunks.columns:
        return 0
    return int((chunks["flagged_by"].gather(a.frame_chunks[k]) == FLAGGED_BY[1]).sum())


def _frame_rows(a: Analysis, shown: pl.DataFrame) -> tuple[FrameRow, ...]:
    out = []
    for r in shown.iter_rows(named=True):
        k = r["frame"] - 1
        out.append(FrameRow(
            frame=r["frame"], severity=r["severity"],
            peak_severity=_sev_text(r["peak_severity"]), by_night=r["flagged_by"] == "night",
            night_chunks=_night_chunks(a, k),
            start=r["start_time"], end=r["end_time"], duration=duration(r["start_time"], r["end_time"]),
            requests=r["requests"], chunks=r["chunks"],
            score=f"{r['score']:.4f}", ratio=f"{r['ratio']:.2f}",
            top=", ".join(CONTEXT_LABELS.get(f) or LABELS.get(f, f) for f, _, _ in notable_columns(a, k)),
            why=short_why(a.reasons[k]),
        ))
    return tuple(out)


def _errors(a: Analysis, k: int) -> Errors:
    inp = a.inp
    peak = a.peak(k)
    if inp.feature_errors is None:
        top = inp.chunks["top_feature"][peak]
        if top is None:
            return Errors("whole")
        if top in CONTEXT_LABELS:
            return Errors("context", top=str(top), top_label=CONTEXT_LABELS[top])
        return Errors("top", top=str(top))
    errors = np.asarray(inp.feature_errors, dtype=np.float64)[peak]
    typical = a.typical_errors
    largest = float(errors.max()) if errors.size and errors.max() > 0 else 1.0
    rows = []
    for j in np.argsort(-errors, kind="stable"):
        typ = None if typical is None else float(typical[j])
        rows.append(ErrorRow(
            label=LABELS[FEATURES[j]], error=f"{errors[j]:.4f}", typical="" if typ is None else f"{typ:.4f}",
            ratio=f"{errors[j] / typ:.1f}" if typ else "", width=f"{100 * errors[j] / largest:.1f}",
            tick=None if typ is None else f"{min(100.0, 100 * typ / largest):.1f}",
        ))
    return Errors("table", rows=tuple(rows))


def _context_rows(a: Analysis, k: int) -> tuple[SignalRow, ...] | None:
    """The peak chunk's context vector next to the normal chunks' median and 95th percentile; a
    column a stored run lacks (computed by a later version) is left out."""
    values = a.context[a.peak(k)]
    if not np.isfinite(values).any():
        return None
    rows = []
    for j, col in enumerate(CONTEXT_COLUMNS):
        if not np.isfinite(values[j]):
            continue
        med, hi = a.typical_context[j]
        rows.append(SignalRow(label=CONTEXT_LABELS[col], value=context_value(col, float(values[j])),
                              typical=context_value(col, float(med)), high=context_value(col, float(hi)),
                              out=not math.isnan(hi) and values[j] > hi))
    return tuple(rows)


def _summary_rows(a: Analysis, k: int) -> tuple[SignalRow, ...]:
    peak = a.peak(k)
    rows = []
    for col in SUMMARY_COLUMNS:
        value = float(a.inp.chunks[col][peak])
        med, lo, hi = a.typical_summary[col]
        rows.append(SignalRow(label=LABELS[col.removeprefix("distinct_")], value=f"{value:g}", typical=f"{med:g}",
                              high=f"{lo:g}–{hi:g}", out=not math.isnan(med) and (value > hi or value < lo)))
    return tuple(rows)


def _value_table(a: Analysis, k: int, column: str, label: str, limit: int = 6) -> ValueTable:
    ent = a.frame_values(k, column)
    n_new = int(ent["new"].sum())
    n_over = int(ent["over"].sum())
    # notable values first (new, over-represented), then the most frequent
    shown = ent.sort(["new", "over", "n"], descending=True).head(limit)
    rows = tuple(ValueRow(value=e["value"], new=e["new"], over=e["over"], n=e["n"], share=pct(e["share"]),
                          share_normal=pct(e["share_normal"])) for e in shown.iter_rows(named=True))
    more = ent.height - shown.height
    note = f"{ent.height} distinct, {n_new} new, {n_over} over-represented" + (f"; {more} more not shown" if more else "")
    return ValueTable(title=plural(label), label=label, rows=rows, note=note)


def _method(state: object) -> tuple[str, bool | None]:
    from licanom.data.states import MethodGroup

    try:
        code = int(state)  # type: ignore[call-overload]
        group = MethodGroup(code // 100).name.lower().replace("_", " ")
        return group, (code // 10) % 10 == 1
    except (TypeError, ValueError):
        return "?", None


def _requests(a: Analysis, k: int) -> Requests | None:
    idx = np.flatnonzero(a.row_frame == k)
    total = idx.size
    if total == 0:
        return None
    shown = a.rows[idx[: a.inp.max_requests].tolist()]
    new_values = {col: set(a.frame_values(k, col).filter("new")["value"].to_list()) for col, _ in VALUE_COLUMNS}
    extra = [c for c in ("ProductId", "FriendlyName") if c in shown.columns and shown[c].null_count() < shown.height]
    head = ("Id", "time (UTC)", "key", "machine code", "IP", "country", *extra, "state", "action", "result")
    rows = []
    for r in shown.iter_rows(named=True):
        method, ok = _method(r["State"])
        values = [Cell(r[col], limit, r[col] in new_values[col])
                  for col, limit in (("Key", 30), ("MachineCode", 16), ("IP", 26), ("country", 4))]
        values += [Cell(r[c]) for c in extra]
        rows.append(RequestRow(id=text(r["Id"]), time=text(r["Time"]), values=tuple(values), state=text(r["State"]),
                               method=method, result="ok" if ok else "failed" if ok is False else ""))
    return Requests(total=total, head=head, rows=tuple(rows), more=total - shown.height,
                    last_id=a.rows["Id"][int(idx[-1])], num=(0, 6 + len(extra)))


def _frame_detail(a: Analysis, r: dict[str, object], open_requests: bool) -> FrameDetail:
    k = int(r["frame"]) - 1  # type: ignore[call-overload]
    context = _context_rows(a, k)
    context_left = a.by_context(k) and context is not None
    return FrameDetail(
        frame=k + 1, severity=str(r["severity"]), start=r["start_time"], end=r["end_time"],  # type: ignore[arg-type]
        requests=int(r["requests"]), chunks=int(r["chunks"]),  # type: ignore[call-overload]
        first_chunk=r["first_chunk"], last_chunk=r["last_chunk"], peak_chunk=r["peak_chunk"],  # type: ignore[arg-type]
        first_id=r["first_id"], last_id=r["last_id"],
        score=f"{r['score']:.4f}", threshold=f"{r['threshold']:.4f}", ratio=f"{r['ratio']:.2f}",
        flagged_by=r["flagged_by"], night_chunks=_night_chunks(a, k),  # type: ignore[arg-type]
        why=a.reasons[k], errors=None if context_left else _errors(a, k), context=context,
        context_left=context_left, summary=_summary_rows(a, k),
        values=tuple(_value_table(a, k, col, label) for col, label in VALUE_COLUMNS),
        request_table=_requests(a, k), open=open_requests,
    )


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _loss_note(inp: ReportInput, wording: ScoreWording) -> str:
    """Why there are no loss curves, in the terms of this run."""
    if inp.trained_in_run is False:
        return "No loss curves: the model was not trained in this run."
    if inp.trained_in_run and not wording.has_epochs:
        return f"No loss curves: {wording.model} fits in one pass (no epochs)."
    return "No loss curves were recorded for this model."


# What an incident's severity is, beside a flagged entity's: the guide's words, in both reports
INCIDENT_SEVERITY = ("An incident’s top severity is the highest severity of its flagged chunks (how unusual those "
                     "stretches of the log are), not the severity of the key, machine or address it names as a "
                     "flagged entity (that entity’s day or hour judged against its own past and its peers): one key "
                     "can read one severity among the incidents and another among the entities.")


def bands_guide(chunks: pl.DataFrame, items: Literal["frames", "chunks"] = "frames") -> str:
    """The guide's sentence on the severity bands this report's ``items`` were given
    (licanom.report.analysis.severity): from the chunks' calibrated severity where they have one,
    else from score / threshold; entities and incidents always from their calibrated severity.
    report.html says it of its frames (each banded by its peak chunk), report.md of its chunks:
    one sentence from one definition of the bands, so that the two never disagree."""
    def said(bands: tuple[tuple[str, float], ...], unit: str = "") -> str:
        return ", ".join(f"{name} from {lo:g}{unit}" if lo > 0 else f"{name} below" for name, lo in bands)

    severity = (chunks["severity"].cast(pl.Float64).fill_nan(None) if "severity" in chunks.columns
                else pl.Series([None] * chunks.height, dtype=pl.Float64))
    calibrated = f"the calibrated severity (0-100): {said(CALIBRATED_BANDS)}"
    ratio = f"score / threshold: {said(SEVERITY_BANDS, '×')}"
    frames = items == "frames"
    if severity.null_count() == 0 and chunks.height:
        which = "the frames (their peak chunk’s)" if frames else "the chunks"
        beside = ("the “vs threshold” ratio beside a frame does not set its band" if frames
                  else "a chunk’s score over its threshold does not set its band")
        return f"Severity bands from {calibrated}, for {which} as for the entities and incidents; {beside}."
    if severity.null_count() == chunks.height:
        return (f"The {items}’ severity bands from {ratio} (this model gives no calibrated severity); "
                f"the entities’ and incidents’ from {calibrated}.")
    which = "a frame whose peak chunk has" if frames else "a chunk with"
    return f"Severity bands from {calibrated}; {which} no calibrated severity from {ratio}."


def _page(a: Analysis) -> dict[str, object]:
    """The HTML template's variables."""
    inp = a.inp
    chunks, frames = inp.chunks, a.frames
    listing = a.listing()
    shown = listing.head(inp.max_frames)
    n_flagged = int(chunks["is_anomaly"].sum())
    splits = chunks.group_by("split").len().sort("split")
    by_sev = {name: int((frames["severity"] == name).sum()) for name, _ in SEVERITY_BANDS}
    cards = [
        ("vendor", inp.vendor), ("run", inp.run_id), ("model", inp.model),
        ("threshold", f"{inp.threshold_name} (the score's threshold: {inp.threshold:.5g})"),
        ("flagged entities", "not computed" if a.entities is None else f"{a.entities.height:,}"),
        ("incidents", f"{a.incidents.height:,}"),
        ("chunks scored", f"{chunks.height:,}"), ("anomalous chunks", f"{n_flagged:,}"),
        ("anomalous frames", f"{frames.height:,}"),
        ("severity", ", ".join(f"{n} {name}" for name, n in by_sev.items() if n) or "none"),
        ("requests in frames", f"{int(frames['requests'].sum()) if frames.height else 0:,}"),
        ("requests in chunks", f"{int(a.covered.sum()):,}"),
    ]
    train, scored, flagged = score_distributions(a)
    wording = inp.score
    # the red bars below the threshold (the night rule's), which the histogram's legend counts
    by_night = (int((chunks["is_anomaly"] & (chunks["flagged_by"] == FLAGGED_BY[1])
                     & chunks["score"].is_finite()).sum()) if "flagged_by" in chunks.columns else 0)
    histogram = score_histogram(train, scored, flagged, inp.threshold, inp.threshold_name, wording.score, by_night)
    loss = None
    if inp.train_loss or inp.val_loss:
        from licanom.report import plots  # matplotlib, only for a model trained in epochs

        loss = plots.loss_curves({inp.model: (tuple(inp.train_loss), tuple(inp.val_loss))},
                                 ylabel=wording.loss or "loss")
    last = ", ".join(f"{name} {vals[-1]:.4f}" for name, vals in (("train/loss", inp.train_loss),
                                                                ("val/loss", inp.val_loss)) if vals)
    return {
        "inp": inp, "threshold": f"{inp.threshold:.5f}", "cards": cards,
        "period": _period(chunks, a.entities),
        "splits": ", ".join(f"{s} {n:,}" for s, n in splits.iter_rows()) or "none",
        "entities": None if a.entities is None else _entity_rows(a),
        "entities_total": 0 if a.entities is None else a.entities.height,
        "incidents": _incident_rows(a),
        "frames_total": listing.height, "frames": _frame_rows(a, shown),
        "wording": wording, "score_name": wording.score[:1].upper() + wording.score[1:],
        "histogram": histogram,
        "loss": None if loss is None else _data_uri(loss), "loss_last": last, "loss_note": _loss_note(inp, wording),
        "details": tuple(_frame_detail(a, r, i == 0) for i, r in enumerate(shown.iter_rows(named=True))),
        "bands": bands_guide(chunks),
        "over_min_share": f"{OVER_MIN_SHARE:.0%}", "over_lift": f"{OVER_LIFT:g}", "over_min_count": OVER_MIN_COUNT,
    }


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def render_html(inp: ReportInput) -> str:
    """The report as one self-contained HTML page (no scripts, no external references)."""
    return _render(analyse(inp))


def _render(a: Analysis) -> str:
    return environment().get_template("report.html.j2").render(_page(a))


def write_report(inp: ReportInput, out_dir: Path, name: str = "report") -> ReportPaths:
    """Write ``<name>.html`` and ``anomalies.csv`` into ``out_dir`` (analysing the input once)."""
    a = analyse(inp)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(html=out_dir / f"{name}.html", csv=out_dir / "anomalies.csv")
    paths.html.write_text(_render(a), encoding="utf-8")
    csv_frame(a).write_csv(paths.csv)
    return paths


def anomaly_report(vendor: str, chunks: pl.DataFrame, model_version: str | None,
                   messages: tuple[str, ...] = (), rows_unknown_product: int = 0,
                   incidents: pl.DataFrame | None = None, entities: pl.DataFrame | None = None,
                   notes: tuple[str, ...] = ()) -> str:
    """The night's short markdown report (``report.md``): the flagged entities and the
    incidents (who), then the anomalous chunks, most severe first; times in UTC, as the page's."""
    flagged = chunks.filter("is_anomaly").sort("score", descending=True)
    by_night = int((flagged["flagged_by"] == FLAGGED_BY[1]).sum()) if "flagged_by" in flagged.columns else 0
    flagged_entities = entities.filter("is_anomaly").sort("severity", descending=True) if entities is not None else None
    return environment().get_template("report.md.j2").render(
        vendor=vendor, model_version=model_version, n_chunks=chunks.height, flagged=flagged.to_dicts(), by_night=by_night,
        period=_period(chunks, flagged_entities),
        n_incidents=None if incidents is None else incidents.height,
        entities=[] if flagged_entities is None else flagged_entities.head(50).to_dicts(),
        n_entities=None if flagged_entities is None else flagged_entities.height,
        incidents=[] if incidents is None else incidents.to_dicts(),
        rows_unknown_product=rows_unknown_product, messages=messages, notes=notes,
        bands=bands_guide(chunks, "chunks"),
    )
