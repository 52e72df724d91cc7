"""What the vendor report computes: pure functions over polars frames and typed dataclasses.

The report says who did what first, then when:

* the **flagged entities** (licanom.detectors.entities: a key's day, a machine code under a key,
  an address's hour), most severe first, each with its reasons ("key X: 55 machine codes new to
  it (its peers' median key-day: 0), 3 countries (usually 1); ...");
* the **incidents** (licanom.detectors.incidents): flagged chunks grouped by who caused them;
* the **anomalous time frames** (flagged chunks merged), and for each one *why* it was flagged:

  - the columns with the largest per-column error (``feature_errors``, FEATURES order, the
    autoencoders'), each next to the error a normal chunk typically has;
  - its summary vector (distinct values per column, thesis 3.4) next to a typical normal
    chunk's (the median over the chunks not flagged, with their 5-95 % range);
  - its context (licanom.detectors.context: given by the caller, else computed from the report's rows,
    for any model): requests per second, failure share, and what its keys, machines and
    addresses did in the same clock hour, next to the normal chunks' median and 95th percentile
    (for a context model, in place of the column errors);
  - the keys, machine codes, IPs and countries that are *new* (not in the normal rows, nor, for
    keys, machine codes and countries, in the model's history of them where the report has it) or
    *over-represented* (share of the frame's requests against share of normal traffic);
  - its requests (the raw rows), capped per frame.

Definitions used throughout:

* **Time frame.** Flagged chunks that follow one another (consecutive chunk numbers) or share
  requests or time (overlapping windows, ``stride < size``) merge into one frame; its score is
  the highest of its chunks, and that chunk (the *peak chunk*) gives the frame's column errors
  and summary vector.
* **Normal traffic.** Every row of ``ReportInput.rows`` outside the anomalous frames; a
  *typical normal chunk* is the median over the chunks not flagged.
* **Severity** from the chunks' calibrated severity (0-100, licanom.detectors.decision: high at
  80 and above, medium at 60) or, for chunks scored without one, from ratio = score / threshold
  (see :data:`SEVERITY_BANDS`). M2 and M3 sit at about the largest training error, so a score
  half as high again lies far beyond anything seen in training: ``high`` from 1.5, ``medium``
  from 1.2, ``low`` below.
* **Score.** What a chunk's score *is* depends on the detector (:func:`score_wording`, from the
  registry): an autoencoder's is its reconstruction error (MAE), a context model's the
  surprisal or outlier score of the chunk's context vector, a sequence model's its distance
  beyond its learned boundary.

Nothing here writes HTML (licanom.report.render) or draws (licanom.report.plots); this module
may import the data and detector layers, never Prefect or MLflow. Text cells of the CSV that a
spreadsheet would read as a formula get a leading apostrophe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from licanom.data.columns import FEATURES, SUMMARY_COLUMNS
from licanom.data.context_vector import CONTEXT_COLUMNS, CONTEXT_LABELS, KeyHistory, chunk_context
from licanom.detectors.decision import FLAGGED_BY

__all__ = [
    "CALIBRATED_BANDS", "CSV_COLUMNS", "FRAME_COLUMNS", "SEVERITY_BANDS", "Analysis", "Computed", "ReportInput",
    "ENTITY_CSV_COLUMNS", "ScoreWording", "analyse", "anomalies_csv", "anomaly_frames", "chunk_feature_errors",
    "decision_name", "decision_note", "detector_report_input", "entities_csv", "severity", "score_wording",
    "shown_severity",
]

# (name, lowest score/threshold ratio), most severe first.
SEVERITY_BANDS: tuple[tuple[str, float], ...] = (("high", 1.5), ("medium", 1.2), ("low", 0.0))
# The same bands on the calibrated severity (0-100).
CALIBRATED_BANDS: tuple[tuple[str, float], ...] = (("high", 80.0), ("medium", 60.0), ("low", 0.0))
SEVERITY_RANK: dict[str, int] = {name: len(SEVERITY_BANDS) - i for i, (name, _) in enumerate(SEVERITY_BANDS)}

# Columns whose values are checked for new and over-represented values in a frame: (column, label).
VALUE_COLUMNS: tuple[tuple[str, str], ...] = (
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
# No value from the log is shown longer than this (a 1 MB key would otherwise be repeated in
# full in every tooltip and reason): a longer one is cut and its length named.
VALUE_LIMIT = 256
# An entity's reason (licanom.detectors.entities) is shown whole up to this many characters, in the
# page and in report.md alike; a longer one (long log values in it) is cut at a word (cut_words),
# the page keeping the whole in its tooltip
REASON_LIMIT = 500

REQUIRED_ROW_COLUMNS: tuple[str, ...] = ("Id", "Time", "Key", "MachineCode", "IP", "State")
REQUIRED_CHUNK_COLUMNS: tuple[str, ...] = (
    "chunk", "first_id", "last_id", "start_time", "end_time", "split", "score", "threshold",
    "is_anomaly", "top_feature", *SUMMARY_COLUMNS,
)
# The entity results the report reads (licanom.detectors.entities.ENTITY_COLUMNS, a subset).
REQUIRED_ENTITY_COLUMNS: tuple[str, ...] = (
    "entity_kind", "entity", "start_time", "end_time", "requests", "severity", "is_anomaly", "reasons",
)

# One row per anomalous time frame (anomaly_frames), in this order.
FRAME_COLUMNS: tuple[str, ...] = (
    "frame", "start_time", "end_time", "first_id", "last_id", "first_chunk", "last_chunk",
    "chunks", "peak_chunk", "requests", "score", "threshold", "ratio", "severity", "flagged_by",
    "peak_severity",
)
# The spreadsheet version (anomalies_csv), in this order.
CSV_COLUMNS: tuple[str, ...] = (
    "vendor", "run_id", "model", "frame", "severity", "start_time", "end_time", "requests",
    "chunks", "first_id", "last_id", "score", "threshold", "ratio", "top_columns", "why",
    "new_keys", "new_machine_codes", "new_ips", "new_countries",
    "top_keys", "top_machine_codes", "top_ips", "top_countries", "flagged_by", "peak_severity",
)
# The flagged entities for spreadsheets (entities_csv, a night's flagged_entities.csv), in this order.
ENTITY_CSV_COLUMNS: tuple[str, ...] = (
    "vendor", "run_id", "severity", "entity_kind", "entity", "start_time", "end_time", "requests",
    "first_id", "last_id", "why",
)

LABELS: dict[str, str] = {
    "time": "time", "success": "success", "ip": "IP", "key": "key", "product": "product",
    "action": "action", "machine_code": "machine code", "country": "country",
}


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreWording:
    """What a detector's score and loss are, in words (from the registry, never from its class).

    ``family``: autoencoder, sequence, context or classical ("" when the model is not
    registered); ``score``: the score's name ("reconstruction error (MAE)"); ``loss``: its
    per-epoch loss ("MAE", "objective"), "" for a family that fits in one pass.
    """

    model: str
    family: str = ""
    score: str = "anomaly score"
    loss: str = ""

    @property
    def has_epochs(self) -> bool:
        return bool(self.loss)


def score_wording(model: str) -> ScoreWording:
    """The wording of the registered detector ``model`` (a generic one for a name the registry
    does not know, e.g. a renamed model in an old run folder)."""
    from licanom.detectors import registry

    try:
        spec = registry.spec(model)
    except ValueError:
        return ScoreWording(model=model)
    return ScoreWording(model=model, family=spec.family, score=spec.score, loss=spec.loss)


@dataclass(frozen=True, eq=False)
class Computed:
    """What the caller already computed, so the report reads it instead of computing it again.

    ``entities``: the run's entity results (licanom.detectors.entities.ENTITY_COLUMNS); None:
    none were computed (the report says so). ``incidents``: the flagged chunks grouped by who
    (licanom.detectors.incidents.INCIDENT_COLUMNS); None: grouped here from ``rows``.
    ``context``: ``(n_chunks, len(CONTEXT_COLUMNS))`` context vectors aligned with the rows of
    ``ReportInput.chunks`` (a context model's inputs, as the night scored them); None: computed
    here from ``rows``. Countries travel as the rows' own ``country`` column (derive's).
    """

    entities: pl.DataFrame | None = None
    incidents: pl.DataFrame | None = None
    context: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class ReportInput:
    """What one report is made of.

    ``chunks``: the per-chunk results (licanom.ops.detect.CHUNK_COLUMNS), any order.
    ``rows``: the valid log rows the chunks were cut from (RAW columns, ``Id`` unique; the
    derived ``success``/``action``/``country`` are read when present, derived only when missing);
    a chunk's requests are the rows from its ``first_id`` to its ``last_id`` in (Time, Id) order.
    ``feature_errors``: ``(n_chunks, 8)`` per-column errors in FEATURES order, aligned with the
    rows of ``chunks``; None where not kept (the report then names ``top_feature`` only).
    ``train_errors``: ``(n_train,)`` training-chunk scores for the histogram; None uses the
    scores of the chunks whose ``split`` is "train".
    ``train_loss``/``val_loss``: per epoch (empty where none were recorded).
    ``trained_in_run``: the model was trained in this run (``licanom detect``), or loaded
    (a night's champion: False); None where unknown (a run folder from before it was kept).
    ``wording``: what the score is; None: :func:`score_wording` of the chunks' ``model``.
    ``max_frames``/``max_requests``/``max_entities``: how many frames the page details (most
    severe first; the CSV lists all), how many requests each frame's table shows, how many
    flagged entities the page lists.
    ``key_history``: the scoring model's :class:`licanom.data.context_vector.KeyHistory`, in the same values
    as ``rows`` (not pseudonymised ones for real rows); None: what is "new to a key" in the
    context table is judged from the earlier rows of ``rows`` alone.
    ``computed``: what the caller already computed (:class:`Computed`).
    ``notes``: lines the page shows under its header (a night's quarantined rows, say).
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
    trained_in_run: bool | None = None
    wording: ScoreWording | None = None
    computed: Computed = field(default_factory=Computed)
    notes: tuple[str, ...] = ()  # lines for the page's header (a night's quarantined rows)
    max_entities: int = 50
    decision_note: str = ""  # what the decision flags besides the threshold (decision_note)

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_CHUNK_COLUMNS if c not in self.chunks.columns]
        if missing:
            raise ValueError(f"chunks lack column(s) {missing}; expected licanom.ops.detect.CHUNK_COLUMNS")
        missing = [c for c in REQUIRED_ROW_COLUMNS if c not in self.rows.columns]
        if missing:
            raise ValueError(f"rows lack column(s) {missing}; expected the valid Web API Log rows")
        if self.feature_errors is not None and np.shape(self.feature_errors) != (self.chunks.height, len(FEATURES)):
            raise ValueError(
                f"feature_errors has shape {np.shape(self.feature_errors)}, expected "
                f"({self.chunks.height}, {len(FEATURES)}): one row per chunk, FEATURES order"
            )
        if self.max_frames < 0 or self.max_requests < 0 or self.max_entities < 0:
            raise ValueError("max_frames, max_requests and max_entities must be >= 0")
        c = self.computed
        if c.context is not None and np.shape(c.context) != (self.chunks.height, len(CONTEXT_COLUMNS)):
            raise ValueError(
                f"computed.context has shape {np.shape(c.context)}, expected ({self.chunks.height}, "
                f"{len(CONTEXT_COLUMNS)}): one context vector per chunk, CONTEXT_COLUMNS order")
        if c.entities is not None:
            missing = [col for col in REQUIRED_ENTITY_COLUMNS if col not in c.entities.columns]
            if missing:
                raise ValueError(f"computed.entities lack column(s) {missing}; expected "
                                 "licanom.detectors.entities.ENTITY_COLUMNS")
        if c.incidents is not None:
            from licanom.detectors.incidents import INCIDENT_COLUMNS

            missing = [col for col in INCIDENT_COLUMNS if col not in c.incidents.columns]
            if missing:
                raise ValueError(f"computed.incidents lack column(s) {missing}; expected "
                                 "licanom.detectors.incidents.INCIDENT_COLUMNS")

    @property
    def score(self) -> ScoreWording:
        """What this report's score is: ``wording``, else the chunks' model's (the registry's
        entry; reading the registry imports every family, torch included)."""
        if self.wording is not None:
            return self.wording
        models = self.chunks["model"].drop_nulls() if "model" in self.chunks.columns else pl.Series([], dtype=pl.String)
        return score_wording(str(models[0]) if models.len() else self.model)


def severity(ratio: float, calibrated: float | None = None) -> str:
    """``high``, ``medium`` or ``low`` for a calibrated severity (:data:`CALIBRATED_BANDS`) when
    given, else for a score/threshold ratio (:data:`SEVERITY_BANDS`)."""
    if calibrated is not None and calibrated == calibrated:
        return next(name for name, lowest in CALIBRATED_BANDS if calibrated >= lowest)
    for name, lowest in SEVERITY_BANDS:
        if ratio >= lowest:
            return name
    return SEVERITY_BANDS[-1][0]


def _night_rule(detector: Any) -> Any:
    """The detector's severity decision settings (BaseDetector.night_rule), None for a detector that
    decides otherwise or has no such method (a sequence model)."""
    return detector.night_rule() if callable(getattr(detector, "night_rule", None)) else None


def decision_name(detector: Any) -> str:
    """How a fitted detector decides: its threshold method (the autoencoders), or for the
    sequence models the share of training scores flagged, or their own learned boundary. The
    severity decision is named by its level, from its settings (a model saved before the night
    rule decides with it now: :func:`decision_note`)."""
    rule = _night_rule(detector)
    if rule is not None:
        return f"severity >= {rule.min_severity:g}"
    method = getattr(detector, "threshold_method_", None)
    if method:
        return str(method)
    share = getattr(detector, "contamination", None)
    return f"top {share:.0%} of training" if share else "own boundary"


def decision_note(detector: Any) -> str:
    """What a detector's decision flags besides its threshold, in words ("" when nothing): the
    severity decision's night rule (licanom.detectors.decision.stands_out)."""
    rule = _night_rule(detector)
    if rule is None or rule.stand_out_gap is None:
        return ""
    text = (f"also flagged: a chunk of severity {rule.stand_out_floor:g} or more that lies {rule.stand_out_gap:g} "
            "or more above the 90th percentile of its night's severities")
    if rule.small_night_chunks:
        text += (f" (in a night of fewer than {rule.small_night_chunks} chunks: {rule.small_night_floor:g} or more, "
                 f"{rule.small_night_gap:g} or more above the median of its other chunks, alone and completed with "
                 f"the latest training chunks to {rule.small_night_chunks - 1})")
    return text


def chunk_feature_errors(chunks: pl.DataFrame) -> np.ndarray | None:
    """The per-column errors of scored chunks (``error_*``), or None where the model keeps none
    (the sequence models score a chunk as a whole; their ``error_*`` columns are null)."""
    errors = [f"error_{f}" for f in FEATURES]
    if not chunks.height or any(c not in chunks.columns for c in errors) or chunks[errors[0]].null_count():
        return None
    return chunks.select(errors).to_numpy()


def detector_report_input(detector: Any, *, vendor: str, run_id: str, model: str, chunks: pl.DataFrame,
                          rows: pl.DataFrame, key_history: KeyHistory | None = None,
                          trained_in_run: bool | None = None, computed: Computed | None = None,
                          notes: tuple[str, ...] = ()) -> ReportInput:
    """The report input of chunks scored by a fitted detector (any family): its decision, its
    training scores and losses (the protocol's ``decision_scores_``; an autoencoder's training
    report, a sequence model's objective per epoch) and its score's wording (the registry's)."""
    report = getattr(detector, "report_", None)    # the autoencoders' training report
    history = getattr(detector, "history_", None)  # the sequence models' objective per epoch
    return ReportInput(
        vendor=vendor, run_id=run_id, model=model,
        threshold_name=decision_name(detector), threshold=float(detector.threshold_),
        decision_note=decision_note(detector),
        chunks=chunks, rows=rows, feature_errors=chunk_feature_errors(chunks),
        train_errors=detector.decision_scores_,
        train_loss=report.train_loss if report else (tuple(history.objective) if history else ()),
        val_loss=report.val_loss if report else (), key_history=key_history,
        trained_in_run=trained_in_run, wording=score_wording(detector.model),
        computed=computed or Computed(), notes=notes,
    )


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything the page, the CSV and the frame table are made of, computed once per report."""

    inp: ReportInput
    rows: pl.DataFrame           # sorted by (Time, Id), with success/action/country
    chunks: pl.DataFrame         # sorted by (start_time, chunk), with _i (row in inp.chunks), _p0, _p1
    frames: pl.DataFrame         # FRAME_COLUMNS, in time order
    row_frame: np.ndarray        # (n_rows,) frame index (0-based, time order) or -1 for normal rows
    covered: np.ndarray          # (n_rows,) bool: the row is in some chunk
    frame_chunks: tuple[np.ndarray, ...]  # per frame: indices into inp.chunks
    values: pl.DataFrame         # frame, column, value, n, share, n_normal, share_normal, lift, new, over
    value_parts: dict[tuple[int, str], pl.DataFrame]  # values by (frame, column)
    peaks: np.ndarray            # (n_frames,) row in inp.chunks of each frame's peak chunk
    typical_summary: dict[str, tuple[float, float, float]]  # column -> (median, p05, p95)
    typical_errors: np.ndarray | None  # (8,) median feature error of normal chunks
    context: np.ndarray          # (n_chunks, len(CONTEXT_COLUMNS)) aligned with inp.chunks; NaN where not computed
    typical_context: np.ndarray  # (len(CONTEXT_COLUMNS), 2): median and 95th percentile over the normal chunks
    normal_failed_share: float
    frame_failed_share: np.ndarray  # (n_frames,)
    incidents: pl.DataFrame      # INCIDENT_COLUMNS, most severe first
    entities: pl.DataFrame | None  # the flagged entities, most severe first; None: not computed
    reasons: tuple[tuple[str, ...], ...]

    def listing(self) -> pl.DataFrame:
        """All frames, most severe first (then by ratio, then time)."""
        return self.frames.with_columns(
            pl.col("severity").replace_strict(SEVERITY_RANK, return_dtype=pl.Int8).alias("_rank")
        ).sort(["_rank", "ratio", "start_time"], descending=[True, True, False]).drop("_rank")

    def frame_values(self, k: int, column: str) -> pl.DataFrame:
        """Frame k's values of ``column`` (one of VALUE_COLUMNS), most frequent first."""
        part = self.value_parts.get((k, column))
        return self.values.clear() if part is None else part

    def peak(self, k: int) -> int:
        """Row in inp.chunks of frame k's peak chunk."""
        return int(self.peaks[k])

    def by_context(self, k: int) -> bool:
        """Frame k was flagged by a context model (its own inputs explain it, not column errors)."""
        return self.inp.feature_errors is None and self.inp.chunks["top_feature"][self.peak(k)] in CONTEXT_LABELS


def _prepare_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows in (Time, Id) order, text columns as strings, with success/action/country (the
    given ones where present: derived only when missing)."""
    from licanom.data.states import action_expr, success_expr

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
        from licanom.data.derive import countries

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


def _flagged_by(group: list[dict[str, object]]) -> str | None:
    """Why a frame was flagged (:data:`FLAGGED_BY`): by the threshold when any of its chunks was,
    else by the night rule; None for chunks stored without the column."""
    why = {r.get("flagged_by") for r in group}
    return next((w for w in FLAGGED_BY if w in why), None)


def _calibrated(value: object) -> float | None:
    """A chunk's calibrated severity (0-100), None where it was scored without one (or NaN)."""
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def shown_severity(value: float | None) -> int | None:
    """A calibrated severity (0-100) as the report shows every one, a whole number rounded down
    (54.6 reads 54, never the level of 55 it lies below); None for none (or NaN)."""
    return None if value is None or value != value else math.floor(value)


def _covered(chunks: pl.DataFrame, n_rows: int) -> np.ndarray:
    """Whether each row lies in at least one chunk (overlapping chunks counted once)."""
    spans = chunks.select("_p0", "_p1").drop_nulls().filter(pl.col("_p0") <= pl.col("_p1"))
    diff = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(diff, spans["_p0"].to_numpy(), 1)
    np.add.at(diff, spans["_p1"].to_numpy() + 1, -1)
    return np.cumsum(diff[:n_rows]) > 0


def _chunks_context(chunks: pl.DataFrame, rows: pl.DataFrame, n_chunks: int,
                    history: KeyHistory | None = None) -> np.ndarray:
    """The context vector (licanom.detectors.context) of every chunk of the run's usual length, from the
    report's rows, aligned with the input chunks; NaN for chunks of another length or whose rows
    are missing. The hour counts see only these rows, as the context models do. (The fallback
    where the caller did not give :attr:`Computed.context`.)"""
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


def _incidents(inp: ReportInput, rows: pl.DataFrame) -> pl.DataFrame:
    """The given incidents, else the flagged chunks grouped by who caused them (from ``rows``)."""
    if inp.computed.incidents is not None:
        return inp.computed.incidents
    from licanom.detectors.incidents import attribute, group_incidents

    flagged = inp.chunks.filter(pl.col("is_anomaly"))
    if "severity" not in flagged.columns:
        flagged = flagged.with_columns(pl.lit(None, pl.Float64).alias("severity"))
    return group_incidents(attribute(flagged, rows, inp.key_history.levels if inp.key_history is not None else None))


def _flagged_entities(inp: ReportInput) -> pl.DataFrame | None:
    """The flagged entities, most severe first (then earliest); None where none were computed."""
    entities = inp.computed.entities
    if entities is None:
        return None
    return entities.filter(pl.col("is_anomaly")).sort(
        ["severity", "start_time", "entity_kind", "entity"], descending=[True, False, False, False], nulls_last=True)


def analyse(inp: ReportInput) -> Analysis:
    """The report's analysis of ``inp`` (computed once; the page, the CSV and the frames read it)."""
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
            "flagged_by": _flagged_by(group),
            "peak_severity": _calibrated(peak.get("severity")),
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
            "ratio": pl.Float64, "severity": pl.String, "flagged_by": pl.String, "peak_severity": pl.Float64,
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

    context = (np.asarray(inp.computed.context, dtype=np.float64) if inp.computed.context is not None
               else _chunks_context(chunks, rows, inp.chunks.height, inp.key_history))
    ref = context[ref_idx]
    ref = ref[np.isfinite(ref).all(axis=1)]
    typical_context = (np.percentile(ref, [50, 95], axis=0).T if len(ref)
                       else np.full((len(CONTEXT_COLUMNS), 2), math.nan))

    in_frame = pl.Series("_frame", row_frame)
    tagged = rows.with_columns(in_frame)
    normal = tagged.filter(pl.col("_frame") < 0)
    anomalous = tagged.filter(pl.col("_frame") >= 0)
    # the history of the report's keys only: what a saved run keeps of it (licanom.report.store), so a
    # report built again from it calls the same values new
    history = None if inp.key_history is None else inp.key_history.for_keys(rows["Key"])
    known = {} if history is None else {"Key": history.keys, "MachineCode": history.machines["MachineCode"],
                                        "country": history.countries["country"]}
    values = _values(normal, anomalous, known)

    success = rows["success"].to_numpy().astype(np.float64) if n_rows else np.empty(0)
    normal_failed = float(1.0 - success[row_frame < 0].mean()) if (row_frame < 0).any() else math.nan
    sums = np.bincount(row_frame[row_frame >= 0], weights=1.0 - success[row_frame >= 0], minlength=len(groups))
    frame_failed = np.divide(sums[: len(groups)], requests[: len(groups)],
                             out=np.full(len(groups), math.nan), where=requests[: len(groups)] > 0)

    analysis = Analysis(
        inp=inp, rows=rows, chunks=chunks, frames=frames, row_frame=row_frame, covered=covered,
        frame_chunks=tuple(frame_chunks), values=values,
        value_parts=values.partition_by(["frame", "column"], as_dict=True),  # type: ignore[arg-type]
        peaks=np.array([int(idx[np.argmax(chunk_scores[idx])]) for idx in frame_chunks], dtype=np.int64),
        typical_summary=typical_summary, typical_errors=typical_errors,
        context=context, typical_context=typical_context,
        normal_failed_share=normal_failed, frame_failed_share=frame_failed,
        incidents=_incidents(inp, rows), entities=_flagged_entities(inp), reasons=(),
    )
    return replace(analysis, reasons=tuple(_reasons(analysis, k) for k in range(frames.height)))


def _values(normal: pl.DataFrame, anomalous: pl.DataFrame, known: dict[str, pl.Series] | None = None) -> pl.DataFrame:
    """Per frame and value column, each value's count and share in the frame and in normal rows;
    ``new``: in none of the normal rows, nor among ``known`` (per column: the values the model's
    history holds, the training rows' and the nights' since, where it keeps that column)."""
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
    for col, _ in VALUE_COLUMNS:
        base = normal.group_by(col).len("n_normal").rename({col: "value"})
        counts = (
            anomalous.group_by("_frame", col).len("n").rename({col: "value"})
            .join(totals, on="_frame")
            .join(base, on="value", how="left", nulls_equal=True)
            .with_columns(pl.col("n_normal").fill_null(0))
        )
        seen = known.get(col) if known else None
        unknown = (~pl.col("value").cast(pl.String).is_in(seen.cast(pl.String).implode()) if seen is not None
                   else pl.lit(True))
        counts = counts.with_columns(((pl.col("n_normal") == 0) & unknown).alias("new"))
        parts.append(counts.select(
            pl.col("_frame").cast(pl.Int32).alias("frame"),
            pl.lit(col).alias("column"),
            pl.col("value").cast(pl.String),
            pl.col("n").cast(pl.Int64),
            (pl.col("n") / pl.col("_total")).alias("share"),
            pl.col("n_normal").cast(pl.Int64),
            (pl.col("n_normal") / n_normal_total).alias("share_normal"),
            pl.col("new").fill_null(True),
        ))
    out = pl.concat(parts).with_columns(
        pl.when(pl.col("share_normal") > 0).then(pl.col("share") / pl.col("share_normal"))
        .otherwise(float("inf")).alias("lift"),
    ).with_columns(
        (~pl.col("new") & (pl.col("n") >= OVER_MIN_COUNT) & (pl.col("share") >= OVER_MIN_SHARE)
         & (pl.col("lift") >= OVER_LIFT)).alias("over")
    )
    return out.sort(["frame", "column", "n", "value"], descending=[False, False, True, False],
                    nulls_last=True).select(list(schema))


def top_columns(a: Analysis, k: int, n: int = 3) -> list[tuple[str, float | None, float | None]]:
    """(feature, error, typical error) of frame k's peak chunk, largest error first."""
    peak = a.peak(k)
    if a.inp.feature_errors is None:
        top = a.inp.chunks["top_feature"][peak]
        return [] if top is None else [(str(top), None, None)]  # none: a model without column errors
    errors = np.asarray(a.inp.feature_errors, dtype=np.float64)[peak]
    order = np.argsort(-errors, kind="stable")[:n]
    typical = a.typical_errors
    return [(FEATURES[j], float(errors[j]), None if typical is None else float(typical[j])) for j in order]


def notable_columns(a: Analysis, k: int, n: int = 3) -> list[tuple[str, float | None, float | None]]:
    """The largest-error column, and the next ones whose error is at least NOTABLE_RATIO times typical."""
    cols = top_columns(a, k, n)
    return cols[:1] + [(f, e, t) for f, e, t in cols[1:] if e is not None and (not t or e >= NOTABLE_RATIO * t)]


# how many of a frame's new keys, machines, addresses or countries its reasons name (the rest: "...")
NEW_NAMED = 3


def short_why(reasons: tuple[str, ...]) -> str:
    """Two reasons beyond the column errors (shown in their own column), else whatever there is."""
    rest = [r for r in reasons if not r.startswith("largest error:")]
    return "; ".join(rest[:2]) or (reasons[0] if reasons else "flagged by the decision")


def _whose(a: Analysis, k: int) -> str:
    """``, by key X``: the entity that the incident holding frame k's peak chunk names (the one its
    most unusual signal's value belongs to, licanom.detectors.incidents.attribute), matched by the
    chunk's number; empty where no incident lists it (incidents written before they listed their
    chunks, or a chunk no incident holds)."""
    from licanom.detectors.incidents import INCIDENT_CHUNKS

    incidents = a.incidents
    if incidents is None or INCIDENT_CHUNKS not in incidents.columns or "chunk" not in a.inp.chunks.columns:
        return ""
    number = a.inp.chunks["chunk"][a.peak(k)]
    if number is None:
        return ""
    holding = incidents.filter(pl.col(INCIDENT_CHUNKS).list.contains(int(number)) & pl.col("entity").is_not_null())
    if not holding.height:
        return ""
    r = holding.row(0, named=True)
    return f", by {r['entity_kind']} {display(r['entity'])}"


# context columns that are shares of one chunk's requests: a frame's reason names the chunk, as
# the frame's own failed share (over all its requests) can differ
_CHUNK_SHARES = frozenset({"failure_share", "top_machine_share"})


def _reasons(a: Analysis, k: int) -> tuple[str, ...]:
    """A few short sentences: why frame k stands out (plain text, not escaped)."""
    out = []
    cols = notable_columns(a, k, 2)
    parts = []
    for feature, err, typ in cols:
        if err is None:
            parts.append(f"{LABELS.get(feature, feature)} column")
        elif typ and typ > 0:
            parts.append(f"{LABELS.get(feature, feature)} ({err / typ:.1f}x typical)")
        else:
            parts.append(f"{LABELS.get(feature, feature)} ({err:.3f})")
    if parts and a.inp.feature_errors is None and cols[0][0] in CONTEXT_LABELS:
        column = cols[0][0]  # the context model's most unusual signal, with its value where known
        j = CONTEXT_COLUMNS.index(column)
        value, typical = float(a.context[a.peaks[k], j]), float(a.typical_context[j, 0])
        amount = "" if math.isnan(value) else (
            f": {context_value(column, value)}" + ("" if math.isnan(typical) else f" (typical {context_value(column, typical)})"))
        where = " in its peak chunk" if column in _CHUNK_SHARES else ""  # not the frame's share, said below
        out.append(f"most unusual: {CONTEXT_LABELS[column]}{where}{amount}{_whose(a, k)}")
    elif parts:
        out.append("largest error: " + ", ".join(parts))

    failed, normal_failed = a.frame_failed_share[k], a.normal_failed_share
    if not math.isnan(failed) and failed >= 0.1 and (math.isnan(normal_failed) or failed >= 2 * normal_failed):
        normally = "" if math.isnan(normal_failed) else f" (normally {normal_failed:.0%})"
        out.append(f"{failed:.0%} of the frame's requests failed{normally}")

    for col, label in VALUE_COLUMNS:
        ent = a.frame_values(k, col)
        n_new = int(ent["new"].sum())
        if n_new:
            what = f"new {label}" if n_new == 1 else f"{n_new} new {plural(label)}"
            named = ", ".join(display(v) for v in ent.filter("new")["value"].head(NEW_NAMED))
            out.append(f"{what} ({named}{', ...' if n_new > NEW_NAMED else ''})")
    over = pl.concat([a.frame_values(k, col) for col, _ in VALUE_COLUMNS]).filter("over").sort(
        "share", descending=True)
    for r in over.head(2).iter_rows(named=True):
        label = dict(VALUE_COLUMNS)[r["column"]]
        out.append(f"{label} {display(r['value'])}: {r['share']:.0%} of requests "
                   f"(normally {pct(r['share_normal'])})")

    peak = a.peak(k)
    deviations = []
    for col in SUMMARY_COLUMNS:
        value = float(a.inp.chunks[col][peak])
        med, lo, hi = a.typical_summary[col]
        if not math.isnan(med) and (value > hi or value < lo) and value != med:
            deviations.append((abs(value - med) / max(med, 1.0), col, value, med))
    for _, col, value, med in sorted(deviations, reverse=True)[:2]:
        out.append(f"{value:g} distinct {LABELS[col.removeprefix('distinct_')]} values in its peak chunk (typical {med:g})")
    return tuple(out)


def score_distributions(a: Analysis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram's data: training scores, this report's chunk scores, the flagged ones (finite)."""
    inp = a.inp
    split = inp.chunks["split"].to_numpy()
    scores = inp.chunks["score"].to_numpy().astype(np.float64)
    flagged = inp.chunks["is_anomaly"].to_numpy().astype(bool)
    train = (np.asarray(inp.train_errors, dtype=np.float64) if inp.train_errors is not None
             else scores[split == "train"])
    finite = np.isfinite(scores)
    return train[np.isfinite(train)], scores[finite], scores[finite & flagged]


# --------------------------------------------------------------------------------------------
# Public frames
# --------------------------------------------------------------------------------------------


def anomaly_frames(inp: ReportInput) -> pl.DataFrame:
    """One row per anomalous time frame (FRAME_COLUMNS), in time order; merged chunks counted."""
    return analyse(inp).frames


def anomalies_csv(inp: ReportInput) -> pl.DataFrame:
    """One row per anomalous frame (CSV_COLUMNS), most severe first, for spreadsheets.

    ``top_columns``: the peak chunk's columns by error; ``new_*``: how many values the normal
    rows never had; ``top_*``: the frame's most frequent values with their counts ("new" or
    "over" marked); ``peak_severity``: a whole number, as the page shows it (:func:`shown_severity`).
    Text cells that start like a formula get a leading apostrophe.
    """
    return csv_frame(analyse(inp))


def csv_frame(a: Analysis) -> pl.DataFrame:
    """:func:`anomalies_csv` of an analysis."""
    inp = a.inp
    records = []
    for r in a.listing().iter_rows(named=True):
        k = r["frame"] - 1
        top_cols = "; ".join(
            f if err is None else f"{f} {err:.4f}" for f, err, _ in top_columns(a, k)
        )
        record: dict[str, object] = {
            "vendor": inp.vendor, "run_id": inp.run_id, "model": inp.model, "frame": r["frame"],
            "severity": r["severity"], "start_time": r["start_time"], "end_time": r["end_time"],
            "requests": r["requests"], "chunks": r["chunks"], "first_id": r["first_id"],
            "last_id": r["last_id"], "score": r["score"], "threshold": r["threshold"],
            "ratio": r["ratio"], "top_columns": top_cols, "why": "; ".join(a.reasons[k]),
            "flagged_by": r["flagged_by"], "peak_severity": shown_severity(r["peak_severity"]),
        }
        for col, name in zip((c for c, _ in VALUE_COLUMNS),
                             ("keys", "machine_codes", "ips", "countries"), strict=True):
            ent = a.frame_values(k, col)
            record[f"new_{name}"] = int(ent["new"].sum())
            record[f"top_{name}"] = "; ".join(
                f"{display(e['value'])} ({e['n']}{', new' if e['new'] else ', over' if e['over'] else ''})"
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
        "flagged_by": pl.String, "peak_severity": pl.Int64,
    }
    return _no_formulas(pl.DataFrame(records, schema=schema).select(CSV_COLUMNS))


def entities_csv(entities: pl.DataFrame, vendor: str, run_id: str) -> pl.DataFrame:
    """The flagged entities (licanom.detectors.entities.ENTITY_COLUMNS, ``is_anomaly``) as the report
    lists them, for spreadsheets (ENTITY_CSV_COLUMNS), most severe first: ``severity`` a whole number
    as the report shows it (:func:`shown_severity`), ``why`` the entity's reasons. Text cells that
    start like a formula get a leading apostrophe."""
    flagged = entities.filter("is_anomaly").sort("severity", "first_id", descending=[True, False], nulls_last=True)
    return _no_formulas(flagged.select(
        pl.lit(vendor, pl.String).alias("vendor"), pl.lit(run_id, pl.String).alias("run_id"),
        pl.col("severity").fill_nan(None).floor().cast(pl.Int64), "entity_kind", "entity", "start_time", "end_time",
        "requests", "first_id", "last_id", pl.col("reasons").alias("why")))


def _no_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """A leading apostrophe for the text cells a spreadsheet would read as a formula."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(r"^[=+\-@\t\r]")).then(pl.concat_str(pl.lit("'"), pl.col(c)))
        .otherwise(pl.col(c)).alias(c)
        for c, dtype in frame.schema.items() if dtype == pl.String
    )


# --------------------------------------------------------------------------------------------
# Values in words (plain text; escaping is the templates')
# --------------------------------------------------------------------------------------------


def text(value: object) -> str:
    """A value as text (None and NaN as empty, times to the second)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else ("" if math.isnan(value) else f"{value:.4g}")
    return str(value)


def display(value: object) -> str:
    """A log value as shown (empty and missing values named, long ones cut)."""
    if value is None:
        return "(missing)"
    shown = "(empty)" if value == "" else str(value)
    return shown if len(shown) <= VALUE_LIMIT else f"{shown[:VALUE_LIMIT]}... ({len(shown):,} characters)"


def cut_words(shown: str, limit: int) -> str:
    """``shown``, or, longer than ``limit`` characters, its start cut at the last space (where one
    lies in the second half of what fits) and "…": never a word cut short ("UTC" read "U...")."""
    if len(shown) <= limit:
        return shown
    kept = shown[: limit - 1]
    space = kept.rfind(" ")
    if space >= limit // 2:
        kept = kept[:space].rstrip(",;:")
    return kept + "\u2026"


def plural(label: str) -> str:
    return label[:-1] + "ies" if label.endswith("y") and label[-2:-1] not in "aeiou" else label + "s"


def pct(share: float) -> str:
    if share == 0:
        return "0%"
    return f"{share:.0%}" if share >= 0.1 else f"{share:.2%}" if share >= 0.0001 else "<0.01%"


def duration(start: datetime, end: datetime) -> str:
    seconds = int((end - start).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def context_value(column: str, value: float) -> str:
    """A context column in the units a vendor reads: a multiple of the day's typical rate, a
    percentage, a count. ``rate`` is the log of the chunk's requests per second less its day's
    typical log rate (:mod:`licanom.data.context_vector`): a ratio, not requests per second."""
    if math.isnan(value):
        return ""
    if column == "rate":
        return f"{math.exp(value):.3g}\u00d7"
    if column.endswith("_share"):
        return f"{100 * value:.0f}%"
    return f"{math.expm1(value):.0f}"


def signal_label(signal: str | None) -> str:
    """A chunk's top signal in words: a context column's label, a column's name, or "its score"."""
    if signal is None or signal == "":
        return "its score"
    return CONTEXT_LABELS.get(signal) or LABELS.get(signal, signal)
