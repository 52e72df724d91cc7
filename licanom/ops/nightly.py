"""A night's scoring: which rows it takes, where its results go, what MLflow records, and how a
night killed at any point is finished or undone by the next run.

A night, step by step: one :class:`Night` goes through six steps, each adding what it prepared
(the ``score-vendor`` flow runs each step as one task; :func:`score_night` runs the same steps
in one call, for the fault-injection tests and ``make bench-faults``). Each prepared value (the
rows derived, countries looked up, pseudonymised, the context vectors) is computed once:

1. :func:`open_night` under the vendor's lock: :func:`recover` (finish a night that was
   committed but not yet published, delete the staged outputs of a night that was not
   committed, mark the MLflow run of a killed night FAILED), the champion, :func:`night_state`
   (the committed state; a missing one is an error, not a full re-score);
2. :func:`read_night`: the rows after the watermark;
3. :func:`score_rows`: the rows :func:`screen`-ed (validated, rows of unknown products and Ids
   far beyond the recent range quarantined with a reason, the night refused when more rows are
   bad than ``validate.max_bad_fraction`` allows), windows, scores, entity results;
4. :func:`stage_night`: :func:`write_night` into ``nights/.staging/``;
5. :func:`log`: :func:`log_night` (its MLflow run stays RUNNING);
6. :func:`publish`: :func:`publish_night`: the state (watermark, tail, key pairs, rows state,
   the night's name and run) is committed by one rename; then the staged folder is renamed to
   ``nights/after-A-to-B`` and the MLflow run set FINISHED. A kill between the commit and those
   two is finished by the next run's :func:`recover`; a kill before the commit leaves the old
   state, and the next night reads the same rows again.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from licanom.ops import scoring_state as state_lib
from licanom.data.context_vector import KeyHistory
from licanom.data.encode import RowsState
from licanom.report.analysis import entities_csv, shown_severity
from licanom.report.render import anomaly_report  # the night's report.md (a template)
from licanom.ops.scoring_state import NightRecord, StateMissingError, VendorState, crash_point
from licanom.ops.tracking import Tracker, TrackingUnavailableError, _reaching
from licanom.data.validate import (
    REASON,
    UNKNOWN_PRODUCT,
    ValidationError,
    ValidationResult,
    _as_int,
    apart_from_unknown_products,
    check_bad_fraction,
    ids_out_of_order,
    move_to_quarantine,
    refusal_kept,
    without_folders,
)

if TYPE_CHECKING:
    from licanom.data.extract.files import IdsBelow

logger = logging.getLogger(__name__)

TRACKING_COPY = "for-tracking"  # the pseudonymised report of a private vendor, sent to MLflow
STAGING = ".staging"
LEDGER = "ledger.parquet"  # Id, fate (scored | quarantined | carried) of every row the night read
ENTITIES_CSV = "flagged_entities.csv"  # the flagged entities for spreadsheets, beside anomalies.csv
# An Id more than this beyond the watermark (and 1000 times the night's own Id span) is not a
# real next request: a corrupt or hostile row, quarantined instead of moving the watermark.
MAX_ID_JUMP = 2**31
FAR_BEYOND = "Id: far beyond the vendor's recent Ids (not trusted; the watermark does not move to it)"
NIGHT_KIND = "nightly"


class ModelLoadError(RuntimeError):
    """The champion model's files cannot be loaded (the message names them). Never retried."""


@dataclass(frozen=True)
class NightResult:
    vendor: str
    model_version: str | None
    watermark_before: int | None
    watermark_after: int | None
    rows_read: int
    rows_quarantined: int
    chunks: pl.DataFrame
    out_dir: Path | None  # the published folder (None when the night read no row)
    rows_unknown_product: int = 0
    messages: tuple[str, ...] = ()  # what the operator should know (e.g. "retrain")
    staging: Path | None = None  # where the outputs wait until they are published
    ledger: pl.DataFrame | None = None  # Id, fate
    # a file source's count (:func:`late_rows`): Ids that arrived late under the watermark, and Ids
    # fewer than the last night counted; 0 where counted and none, None where not counted
    late_rows: int | None = None
    ids_gone: int | None = None
    # rows delivered again under Ids at or below the watermark that the source held already (copies,
    # not read: :func:`late_rows`); 0 where counted and none, None where not counted
    delivered_again: int | None = None
    # scored again (``--since`` below the watermark): it read only rows that earlier nights read
    scored_again: bool = False
    # the ``--since`` given (then ``watermark_before``), and the vendor's watermark when the night began
    since: int | None = None
    vendor_watermark: int | None = None
    # what the night's report.md counts beside the chunks: its flagged entities (None: none scored)
    # and the incidents its flagged chunks make
    entities_flagged: int | None = None
    incidents: int = 0
    # the quarantine's reasons in a few words for the console line (ValidationResult.commonest_reason)
    quarantine_reason: str | None = None
    # seconds the run waited for another run of the vendor to free its lock (None: it was free)
    waited: float | None = None

    @property
    def n_anomalies(self) -> int:
        return int(self.chunks["is_anomaly"].sum()) if self.chunks.height else 0

    def summary(self) -> list[str]:
        """The night in a few lines for the console: what was read, scored and flagged, where it
        went (or where the watermark stands when nothing was new), then the night's messages."""
        at = "" if self.watermark_before is None else f", Id {self.watermark_before}"
        nothing = f"no night written (nothing new after the watermark{at}; --since ID scores the rows after an earlier Id again)"
        if self.since is not None:  # the night read after --since, not after the watermark
            mark = "none yet" if self.vendor_watermark is None else f"Id {self.vendor_watermark}"
            nothing = (f"no night written (nothing new after --since {self.since}; the vendor's watermark, {mark}, "
                       "stays, and the next night reads after it)")
        carried = f", {self.rows_carried:,} carried to the next night" if self.rows_carried else ""
        if self.rows_carried and not self.rows_read and not self.chunks.height:  # no row read: the earlier nights' tail
            n = self.rows_carried
            carried = (f"; the {n:,} row{'s' if n != 1 else ''} read by earlier nights after their last full chunk "
                       f"{'are' if n != 1 else 'is'} fewer than a chunk and wait{'' if n != 1 else 's'} for the next "
                       "night")
        why = f" ({self.quarantine_reason})" if self.rows_quarantined and self.quarantine_reason else ""
        return [f"{self.vendor}: {self.rows_read:,} rows read, {self.rows_quarantined:,} quarantined{why}, "
                f"{self.chunks.height:,} chunks scored, {self.found()} by champion version "
                f"{self.model_version}{carried} -> {self.out_dir or nothing}",
                *(f"  {message}" for message in (*self.waited_note(), *self.messages))]

    def waited_note(self) -> tuple[str, ...]:
        """That the run waited for another run of the vendor (its lock) and read after the watermark
        that run left (a ``--since`` run: after its ``--since``): a second run started beside the first
        finds nothing new, and says why."""
        if self.waited is None:
            return ()
        read = "the watermark that run left" if self.since is None else f"--since {self.since}"
        return (f"waited {self.waited:.1f} s for another run of vendor {self.vendor} to end (the vendor's lock), "
                f"then read after {read}",)

    def found(self) -> str:
        """What the night flagged, as its report.md counts it: ``5 flagged (2 by the night rule) in 3
        incidents, 59 entities flagged`` (the chunks, then the entities, where they were scored)."""
        from licanom.ops.detect import night_rule_flags

        by_night = night_rule_flags(self.chunks)
        night = f" ({by_night} by the night rule)" if by_night else ""
        incidents = f" in {self.incidents:,} incident{'' if self.incidents == 1 else 's'}" if self.incidents else ""
        entities = ("" if self.entities_flagged is None else
                    f", {self.entities_flagged:,} entit{'y' if self.entities_flagged == 1 else 'ies'} flagged")
        return f"{self.n_anomalies} flagged{night}{incidents}{entities}"

    @property
    def rows_carried(self) -> int:
        """Valid rows after the night's last full chunk, carried to the next night (its ledger's
        "carried"; 0 without a ledger)."""
        return 0 if self.ledger is None else int((self.ledger["fate"] == "carried").sum())


@dataclass(frozen=True)
class Screened:
    """The night's rows after validation, and what they do to the watermark."""

    validation: ValidationResult
    watermark: int | None        # the highest trusted Id accounted for (valid or quarantined)
    ahead: tuple[int, ...]       # far-beyond Ids quarantined, now and in earlier nights
    rows_unknown_product: int
    messages: tuple[str, ...]
    # distinct readable Ids of the source at or below ``watermark``, as the next night should find
    # them, and the most it held (a file source's night; None: not counted, see :func:`late_rows`)
    source_rows: int | None = None
    source_most: int | None = None
    late: int | None = None  # Ids that arrived late, and Ids gone since the last night (SourceCount)
    gone: int | None = None
    again: int | None = None  # rows delivered again under Ids the source held (SourceCount)
    source_copies: int | None = None  # the most rows beyond one per Id it held, as the next night should find it
    source_files: dict[str, int] | None = None  # ``source_rows`` per file, by its name in the source (SourceCount)
    source_settled: tuple[int, int] | None = None  # the older files' counts, together (SourceCount)
    # what the night says of the source's count (late rows, shrank, grew back): a run that publishes
    # no night keeps them in the state for the next night's report (VendorState.notes)
    source_notes: tuple[str, ...] = ()
    # the kept notes a night scored again made untrue (late rows it read and scored): cleared at its commit
    notes_cleared: tuple[str, ...] = ()


# --- which rows -----------------------------------------------------------------------------

def night_state(output_dir: Path, vendor: str, model_version: str | None, since: int | None = None) -> VendorState:
    """The vendor's committed state. Without one (and without ``since``) a vendor that has a
    trained model would re-score its whole history, training rows included: an error instead,
    saying how to go on."""
    st = state_lib.load_state(output_dir, vendor)
    if not st.exists and since is None:
        path = state_lib.state_dir(output_dir, vendor) / state_lib.STATE_FILE
        raise StateMissingError(
            f"{path} is missing, but vendor {vendor!r} has a trained model (version {model_version}): scoring "
            "now would re-score its whole history. " + state_lib._fresh_hint(output_dir, vendor).capitalize())
    return st


def id_limit(ids: pl.Series, before: int | None) -> int | None:
    """Ids above this are far beyond the vendor's recent range: more than MAX_ID_JUMP past the
    watermark (the night's lowest Id without one) and 1000 times the span of the night's Ids
    that are not."""
    ids = ids.drop_nulls()
    if ids.is_empty():
        return None
    ref = before if before is not None else int(ids.min())  # type: ignore[arg-type]
    body = ids.filter(ids <= ref + MAX_ID_JUMP)
    span = int(body.max()) - ref if body.len() else 0  # type: ignore[arg-type]
    return ref + max(MAX_ID_JUMP, 1000 * max(span, 0))


def screen(validation: ValidationResult, raw: pl.DataFrame, before: int | None, vendor: str,
           max_bad_fraction: float, ahead: tuple[int, ...] = (), private: bool = False,
           file_names: Mapping[str, str] | None = None) -> Screened:
    """Quarantine valid rows whose Id is far beyond the recent range; refuse the night when more
    rows are bad than ``max_bad_fraction`` (rows of unknown products aside: those say "retrain";
    ``private``: a pseudonymised vendor's refusal shows none of its keys, addresses and machine
    codes, and names the export's files by ``file_names``, their names in the source, not by their
    folders: :func:`licanom.data.validate.check_bad_fraction`); the new watermark: the highest
    trusted Id of the rows accounted for."""
    ids = raw.select(_as_int("Id", raw.schema["Id"])).to_series() if "Id" in raw.columns and raw.height \
        else pl.Series("Id", [], pl.Int64)
    limit = id_limit(ids, before)
    if limit is not None and validation.valid.height:
        validation = move_to_quarantine(validation, raw, validation.valid["Id"] > limit, FAR_BEYOND)
    q_ids = validation.quarantine.select(_as_int("Id", validation.quarantine.schema["Id"])).to_series() \
        if "Id" in validation.quarantine.columns else pl.Series("Id", [], pl.Int64)
    bad, unknown = apart_from_unknown_products(validation)
    messages: list[str] = []
    if validation.n_in:
        try:
            if bad.n_in:
                check_bad_fraction(bad, max_bad_fraction, private=private, file_names=file_names)
        except ValidationError as err:
            raise ValidationError(
                f"night of vendor {vendor!r} refused, nothing scored, the watermark stays at {before}; "
                f"fix the export (or raise validate.max_bad_fraction, as in training) and run again: {err}",
                validation) from None
        if unknown and unknown / validation.n_in > max_bad_fraction:
            products = sorted(set(validation.quarantine.filter(
                pl.col(REASON).str.contains(UNKNOWN_PRODUCT, literal=True))["ProductId"].to_list()), key=str)
            messages.append(
                f"retrain: {unknown} of {validation.n_in} rows ({unknown / validation.n_in:.1%}) are of product(s) "
                f"{products[:5]} the model was not trained on (quarantined, not scored); "
                f"retrain the vendor: licanom run train --vendor {vendor}")
    trusted = pl.concat([validation.valid["Id"], q_ids.filter(q_ids <= limit) if limit is not None else q_ids])
    top = trusted.max() if trusted.len() else None
    watermark = before if top is None else max(int(top), before if before is not None else int(top))  # type: ignore[arg-type]
    far = q_ids.filter(q_ids > limit).to_list() if limit is not None else []
    kept = tuple(sorted(i for i in {*ahead, *far} if watermark is None or i > watermark))
    return Screened(validation, watermark, kept, unknown, tuple(messages))


def without_ahead(raw: pl.DataFrame, ahead: tuple[int, ...]) -> pl.DataFrame:
    """The rows read, less those far-beyond Ids an earlier night already quarantined."""
    if not ahead or "Id" not in raw.columns or raw.height == 0:
        return raw
    return raw.filter(~_as_int("Id", raw.schema["Id"]).is_in(list(ahead)).fill_null(False))


def new_watermark(raw: pl.DataFrame, before: int | None) -> int | None:
    """The highest trusted Id of ``raw`` (validity aside), or ``before``: see :func:`screen` for a night's."""
    if raw.height == 0 or "Id" not in raw.columns:
        return before
    ids = raw.select(_as_int("Id", raw.schema["Id"])).to_series()
    limit = id_limit(ids, before)
    top = ids.filter(ids <= limit).max() if limit is not None else None
    return before if top is None else max(int(top), before or 0)  # type: ignore[arg-type]


# --- outputs ----------------------------------------------------------------------------

def nights_dir(output_dir: Path, vendor: str) -> Path:
    return output_dir / vendor / "nights"


def refused_quarantine(output_dir: Path, vendor: str, watermark_before: int | None) -> Path:
    """Where a night refused for too many bad rows keeps its quarantine (outside ``nights/``: nothing
    was scored or published; the next try reads the same rows and writes it again)."""
    return output_dir / vendor / "refused" / f"after-{watermark_before or 0}-quarantine.parquet"


def night_dir(output_dir: Path, vendor: str, watermark_before: int | None, watermark_after: int | None) -> Path:
    """One folder per range of Ids read, so that re-running the same night overwrites it."""
    return nights_dir(output_dir, vendor) / f"after-{watermark_before or 0}-to-{watermark_after or 0}"


def night_incidents(chunks: pl.DataFrame, rows: pl.DataFrame | None, levels: pl.DataFrame | None = None) -> pl.DataFrame:
    """The night's flagged chunks grouped by who caused them (licanom.detectors.incidents; ``levels``:
    the model's entities' own levels, in the values of ``rows``)."""
    from licanom.detectors.incidents import attribute, group_incidents

    flagged = chunks.filter("is_anomaly") if chunks.height else chunks
    if rows is None or flagged.height == 0:
        return group_incidents(flagged.head(0).with_columns(pl.lit(None, pl.String).alias("entity_kind"),
                                                            pl.lit(None, pl.String).alias("entity")))
    if "country" not in rows.columns:
        from licanom.data.derive import derive

        rows = derive(rows)
    return group_incidents(attribute(flagged, rows, levels))


def night_ledger(validation: ValidationResult, rows: pl.DataFrame | None, tail: pl.DataFrame | None) -> pl.DataFrame:
    """Every Id the night accounted for: scored (in its windows), carried (valid, after the last
    window: scored by a later night) or quarantined (with a readable Id)."""
    tail_ids = tail["Id"] if tail is not None else pl.Series("Id", [], pl.Int64)
    row_ids = rows["Id"] if rows is not None else validation.valid["Id"]
    q = validation.quarantine
    q_ids = q.select(_as_int("Id", q.schema["Id"])).to_series().drop_nulls() if "Id" in q.columns \
        else pl.Series("Id", [], pl.Int64)
    return pl.concat([
        pl.DataFrame({"Id": row_ids.filter(~row_ids.is_in(tail_ids.implode())), "fate": "scored"}),
        pl.DataFrame({"Id": tail_ids, "fate": "carried"}),
        pl.DataFrame({"Id": q_ids, "fate": "quarantined"}),
    ], how="vertical_relaxed").with_columns(pl.col("Id").cast(pl.Int64), pl.col("fate").cast(pl.String))


def rows_accounted(output_dir: Path | str, vendor: str) -> pl.DataFrame:
    """Every source row the vendor's published nights read, each once: per ``Id``, its ``rows``
    (copies) and how many of them were ``scored``, ``quarantined`` or are ``carried`` (in a night's
    tail and scored by no night since: the next night scores them, unless a ``--since`` past the
    watermark skipped them, which that night's note counts).

    An Id counts as many times as the most rows one night's ledger lists under it, and as scored
    (quarantined) as many times as the most one ledger lists it so. A row carried by one night and
    scored by the next, or scored again by a night that overlaps earlier ones (from any ``--since``,
    an Id within a night's range included), is listed by two ledgers and counted once; a repeated
    Id keeps one row per copy, each with its fate. Summing ``rows`` gives the rows with a readable Id
    that the nights read (a row without one is in its night's quarantine only). Leaving out
    ``carried`` and counting over folders of ranges that do not overlap does not, where a night
    scored again from within a night sits beside the earlier ones."""
    folders = [p for p in nights_dir(Path(output_dir), vendor).glob("after-*") if p.is_dir() and (p / LEDGER).exists()]
    counts = {"rows": pl.UInt32, "scored": pl.UInt32, "quarantined": pl.UInt32, "carried": pl.UInt32}
    if not folders:
        return pl.DataFrame(schema={"Id": pl.Int64, **counts})
    ledgers = pl.concat([pl.read_parquet(p / LEDGER).with_columns(night=pl.lit(p.name)) for p in folders],
                        how="vertical_relaxed")
    per_night = ledgers.group_by("Id", "night").agg(
        pl.len().alias("rows"), *((pl.col("fate") == fate).sum().alias(fate) for fate in ("scored", "quarantined")))
    return (per_night.group_by("Id").agg(pl.col("rows", "scored", "quarantined").max())
            .with_columns((pl.col("rows") - pl.col("scored") - pl.col("quarantined")).clip(0).alias("carried"))
            .select("Id", *(pl.col(c).cast(t) for c, t in counts.items())).sort("Id"))


ARTIFACT_FRAME_COLUMNS = ("severity", "start_time", "end_time", "requests", "first_id", "last_id", "score",
                          "threshold", "why", "flagged_by", "top_keys", "top_machine_codes", "top_ips", "top_countries")


def artifact_table(night: NightResult, limit: int = 200) -> list[dict[str, object]]:
    """The night's incidents (``incidents.parquet``: who) and anomalous time frames (its
    ``anomalies.csv``, most severe first): rows for a table in the orchestrator's UI, each with
    what it is, severities as the report shows them (whole numbers). A pseudonymised
    vendor's come from the night's pseudonymised copy (``for-tracking/``): real keys, addresses and
    machine codes stay in the vendor's own folder."""
    base = night.staging if night.staging is not None and night.staging.exists() else night.out_dir
    if base is None:
        return []
    private = (base / TRACKING_COPY).is_dir()
    folder = base / TRACKING_COPY if private else base
    rows: list[dict[str, object]] = []
    incidents = folder / "incidents.parquet"
    if incidents.exists():  # who: one row per incident, most severe first
        for r in pl.read_parquet(incidents).head(limit).iter_rows(named=True):
            rows.append({"what": f"incident ({r['entity_kind']})", "entity": _cell(r["entity"]),
                         "severity": shown_severity(r["max_severity"]), "start_time": _cell(r["start_time"]),
                         "end_time": _cell(r["end_time"]), "chunks": r["chunks"], "why": r["signal"]})
    frames = folder / "anomalies.csv"
    if frames.exists():
        table = pl.read_csv(frames, infer_schema_length=None, try_parse_dates=True)
        for r in table.head(limit).iter_rows(named=True):
            row = {"what": "time frame", **{c: _cell(r.get(c)) for c in ARTIFACT_FRAME_COLUMNS if c in r}}
            if r.get("peak_severity") is not None:  # 0-100 as the incidents' (else the band: high, medium, low)
                row["severity"] = shown_severity(r["peak_severity"])
            rows.append(row)
    return rows


def _cell(value: object) -> object:
    from datetime import datetime

    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}" + (" UTC" if value.tzinfo is not None else "")
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return value if value is None or isinstance(value, (int, str, bool)) else str(value)


def write_night(output_dir: Path, vendor: str, chunks: pl.DataFrame, validation: ValidationResult,
                model_version: str | None, watermark_before: int | None, watermark_after: int | None,
                rows: pl.DataFrame | None = None, detector: Any = None,
                secret: bytes | None = None, key_history: KeyHistory | None = None, *,
                tail: pl.DataFrame | None = None, rows_unknown_product: int = 0,
                messages: tuple[str, ...] = (), entities: pl.DataFrame | None = None,
                private_rows: pl.DataFrame | None = None, context: np.ndarray | None = None,
                file_names: Mapping[str, str] | None = None) -> NightResult:
    """The night's folder, staged in ``nights/.staging/`` (:func:`publish_night` makes it
    ``nights/after-A-to-B``): chunk results, quarantine, the ledger of Ids, the markdown summary,
    the entity results (and the flagged ones for spreadsheets, :data:`ENTITIES_CSV`) and, with the
    rows and the detector, the vendor's HTML report (report.html, anomalies.csv)
    and what rebuilds it. A night that read no row writes nothing.

    With a pseudonym ``secret`` the vendor's report keeps the real values and a copy drawn
    from pseudonymised rows is written to ``for-tracking/``: the one that goes to MLflow.
    ``key_history``: the bundle's (licanom.data.context_vector.KeyHistory), for the report's "new to a key"
    counts; it holds pseudonyms where the model was trained on them, so it is used only without
    a ``secret`` (with one, the report judges what is new from the night's rows).

    Computed once, for both copies: the rows' derived columns (given in ``rows`` already by a
    :class:`Night`; derived here otherwise), their pseudonymised copy (``private_rows``: the
    model's rows of a :class:`Night`) and the report's context vectors (``context``, aligned
    with ``chunks``; None: the report computes them).

    With a ``secret`` the quarantine's reasons in the reports and on the console line
    (:attr:`NightResult.quarantine_reason`) name each export file by its name in the source
    (``file_names``: a file as read -> that name, :attr:`licanom.data.extract.files.IdsBelow.names`) or
    its base name, not its folders (:func:`licanom.data.validate.without_folders`): the console line
    reaches Prefect's database and the tracking copy MLflow; quarantine.parquet keeps the files as read."""
    ledger = night_ledger(validation, rows, tail)
    shown = validation  # what the reasons are said from
    if secret is not None and validation.quarantine.height:
        from dataclasses import replace

        shown = replace(validation, quarantine=without_folders(validation.quarantine, file_names))
    if validation.n_in == 0:
        return NightResult(vendor, model_version, watermark_before, watermark_after, 0, 0, chunks, None,
                           rows_unknown_product, messages, None, ledger)
    final = _free_name(night_dir(output_dir, vendor, watermark_before, watermark_after), watermark_before,
                       watermark_after)
    out = nights_dir(output_dir, vendor) / STAGING / f"{final.name}.{uuid.uuid4().hex[:12]}"
    out.mkdir(parents=True, exist_ok=True)
    chunks.write_parquet(out / "chunks.parquet")
    crash_point("stage:chunks")
    validation.quarantine.write_parquet(out / "quarantine.parquet")
    crash_point("stage:quarantine")
    ledger.write_parquet(out / LEDGER)
    crash_point("stage:ledger")
    if rows is not None and "country" not in rows.columns:
        from licanom.data.derive import derive

        rows = derive(rows)
    if secret is not None and rows is not None and private_rows is None:
        from licanom.data.privacy import pseudonymise

        private_rows = pseudonymise(rows, secret)
    levels = key_history.levels if key_history is not None else None  # in the model's values: pseudonyms where secret
    real_levels = levels
    if secret is not None:  # the same levels, named by the real values of the night's entities
        from licanom.data.privacy import reveal

        counted = (levels is not None and private_rows is not None and rows is not None
                   and chunks.height > 0 and bool(chunks["is_anomaly"].any()))
        real_levels = reveal(levels, private_rows, rows) if counted else None  # no flagged chunk: none to name
    incidents = night_incidents(chunks, rows, real_levels)
    incidents.write_parquet(out / "incidents.parquet")
    private_entities = entities  # a pseudonymised vendor's model names pseudonyms; its own files name real values
    if entities is not None and private_rows is not None and rows is not None:
        from licanom.data.privacy import reveal

        entities = reveal(entities, private_rows, rows)
    if entities is not None:
        entities.write_parquet(out / "entities.parquet")
        entities_csv(entities, vendor, final.name).write_csv(out / ENTITIES_CSV)  # beside anomalies.csv
    notes = tuple(n for n in (shown.quarantine_note(),) if n)  # the vendor learns what was refused
    (out / "report.md").write_text(anomaly_report(vendor, chunks, model_version, messages, rows_unknown_product,
                                                  incidents, entities, notes))
    private_incidents = None
    if secret is not None and private_rows is not None:  # what goes to MLflow names no real key, machine or address
        # countries stay those of the real addresses (none where the model was trained without addresses:
        # the private rows are the rows as it read them)
        private_incidents = night_incidents(chunks, private_rows, levels)
        (out / TRACKING_COPY).mkdir(exist_ok=True)
        (out / TRACKING_COPY / "report.md").write_text(anomaly_report(
            vendor, chunks, model_version, messages, rows_unknown_product, private_incidents, private_entities, notes))
        if private_entities is not None:
            entities_csv(private_entities, vendor, final.name).write_csv(out / TRACKING_COPY / ENTITIES_CSV)
    if rows is not None and detector is not None and chunks.height:
        from licanom.report import Computed, detector_report_input, save_run, write_report

        inp = detector_report_input(detector, vendor=vendor, run_id=final.name,
                                    model=f"{detector.model} (version {model_version})", chunks=chunks, rows=rows,
                                    key_history=key_history if secret is None else None, trained_in_run=False,
                                    computed=Computed(entities=entities, incidents=incidents, context=context),
                                    notes=(*notes, *messages))  # report.md's messages too (late rows, retrain)
        save_run(inp, out)
        write_report(inp, out)
        if private_rows is not None:
            from dataclasses import replace

            write_report(replace(inp, rows=private_rows,
                                 computed=Computed(entities=private_entities, incidents=private_incidents,
                                                   context=inp.computed.context)),
                         out / TRACKING_COPY)
    crash_point("stage:report")
    return NightResult(vendor, model_version, watermark_before, watermark_after, validation.n_in,
                       validation.quarantine.height, chunks, final, rows_unknown_product, messages, out, ledger,
                       entities_flagged=None if entities is None else int(entities["is_anomaly"].sum()),
                       incidents=incidents.height, quarantine_reason=shown.commonest_reason())


def _free_name(path: Path, before: int | None, after: int | None) -> Path:
    """``path``, or, for a night that did not move the watermark (only rows it could not trust),
    the first ``path-<n>`` not taken: such a night never replaces an earlier one."""
    if before != after and before is not None:
        return path
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


OUTCOME_TAG = "licanom.outcome"  # what became of a nightly run that published no night
NOTHING_NEW = "nothing new"
WAITED_TAG = "licanom.waited_for_lock"  # seconds the run waited for another run of the vendor


def night_run_name(night: NightResult) -> str:
    """The night's MLflow run name, which tells the runs apart: the times of its chunks and its
    folder (``nightly score 2025-01-22 00:01 to 2025-01-22 23:58 UTC (after-A-to-B)``; the folder
    alone for a night of no chunk), or, for a run that read no row, ``nightly score (nothing new
    after Id A)``."""
    if night.out_dir is None:
        at = "" if night.watermark_before is None else f" after Id {night.watermark_before}"
        return f"nightly score ({NOTHING_NEW}{at})"
    if not night.chunks.height:
        return f"nightly score {night.out_dir.name}"
    start, end = night.chunks["start_time"].min(), night.chunks["end_time"].max()
    return f"nightly score {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({night.out_dir.name})"


def log_night(tracker: Tracker, night: NightResult) -> str:
    """A run in the vendor's experiment (named by its night: :func:`night_run_name`): rows read,
    quarantined, chunks, anomalies, incidents, flagged entities, watermark. A run that read no row
    is kept (the vendor was scored, and found nothing new), tagged ``licanom.outcome: nothing new``;
    one that waited for another run of the vendor is tagged ``licanom.waited_for_lock`` (seconds).

    The run stays RUNNING: :func:`publish_night` sets it FINISHED once the night is published,
    and the next run's :func:`recover` marks it FAILED if the night never was."""
    tags = {"licanom.night": night.out_dir.name if night.out_dir else ""}
    if night.scored_again:  # its rows were counted by the runs of the nights that read them first
        tags[SCORED_AGAIN_TAG] = "true"
    if night.out_dir is None:  # a run of no night: kept (the vendor was scored), and told apart
        tags[OUTCOME_TAG] = NOTHING_NEW
    if night.waited is not None:
        tags[WAITED_TAG] = f"{night.waited:.1f}"
    run_id = tracker.start_run(night.vendor, night_run_name(night), NIGHT_KIND, tags=tags)
    crash_point("log:run-started")
    try:
        tracker.log_params(run_id, {"model_version": night.model_version,
                                    "watermark_before": night.watermark_before,
                                    "out_dir": None if night.out_dir is None else str(night.out_dir.resolve()),
                                    "retrain": any(m.startswith("retrain") for m in night.messages)})
        tracker.log_metrics(run_id, {
            "rows_read": night.rows_read, "rows_quarantined": night.rows_quarantined,
            "rows_unknown_product": night.rows_unknown_product,
            "chunks_scored": night.chunks.height, "anomalies": night.n_anomalies,
            # what report.md counts beside the chunks, by the report's names (none where no entity was scored)
            "incidents": night.incidents, "flagged_entities": night.entities_flagged,
            "watermark": night.watermark_after, "rows_carried": night.rows_carried,
            "late_rows": night.late_rows, "source_ids_gone": night.ids_gone,
            "rows_delivered_again": night.delivered_again,
        })
        crash_point("log:metrics")
        folder = night.staging
        if folder is not None:
            private = (folder / TRACKING_COPY).is_dir()  # pseudonymised copy: only that one
            source = folder / TRACKING_COPY if private else folder
            for name in ("report.md", "report.html", "anomalies.csv", ENTITIES_CSV):
                if (source / name).exists():
                    tracker.log_artifact_file(run_id, source / name)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    return run_id


# --- publishing and recovery ---------------------------------------------------------------

def publish_night(output_dir: Path, vendor: str, tracker: Tracker, night: NightResult, run_id: str,
                  screened: Screened, tail: pl.DataFrame, model_version: str | None,
                  seen: KeyHistory | None = None, rows: RowsState | None = None) -> NightResult:
    """Commit the night with the state in one rename (with it the key pairs ``seen`` and the
    rows state ``rows`` of the rows it scored), then publish its folder and finish its run."""
    if night.staging is None:  # nothing read: nothing to publish, the state stays but for the source's count
        state_lib.count_source(output_dir, vendor, screened.source_rows, screened.source_most, screened.source_files,
                               screened.source_notes, screened.source_copies, screened.source_settled)
        tracker.end_run(run_id)
        crash_point("after:publish")
        return night
    assert night.out_dir is not None
    record = NightRecord(name=night.out_dir.name, staging=night.staging.name, run_id=run_id)
    replaces = (nights_dir(output_dir, vendor) / record.name).exists()  # a night scored again (--since)
    state_lib.advance(output_dir, vendor, night.watermark_after, tail, model_version, seen,
                      ahead=screened.ahead, night=record, rows=rows, source_rows=screened.source_rows,
                      source_most=screened.source_most, source_files=screened.source_files,
                      source_copies=screened.source_copies, source_settled=screened.source_settled,
                      notes_said=not night.scored_again,  # a forward night's report said the kept notes
                      notes_cleared=screened.notes_cleared)
    crash_point("after:commit")
    refused_quarantine(output_dir, vendor, night.watermark_before).unlink(missing_ok=True)  # refused no longer
    _finish(output_dir, vendor, tracker, record)
    crash_point("after:publish")
    from dataclasses import replace

    said = (f"replaced the earlier night {record.name}: the same rows scored again",) if replaces else ()
    if night.scored_again:  # the nights it scored again: their runs name it as the one whose results stand
        said += tuple(supersede_runs(tracker, vendor, record))
    return replace(night, staging=None, messages=(*night.messages, *said))


SUPERSEDED_TAG = "licanom.superseded_by"
# a night scored again: every row it read, an earlier night read (a sum over the runs leaves it out)
SCORED_AGAIN_TAG = "licanom.scored_again"


def _first_line(err: BaseException) -> str:
    """An error in a note: its first line, or its type where it has no text."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def supersede_runs(tracker: Tracker, vendor: str, record: NightRecord) -> list[str]:
    """Tag the vendor's earlier nightly runs whose Ids the night ``record`` scored again, every one
    of them (``licanom.superseded_by``: its run): their nights' folders are replaced or covered, and
    the night's results stand for their rows (its own run, tagged ``licanom.scored_again``, is the
    one a sum of rows over the runs leaves out). A note naming them; one sentence, not an error,
    where MLflow cannot be reached (the night is published already)."""
    from mlflow.exceptions import MlflowException

    mine = state_lib.night_range(record.name)
    if mine is None:
        return []
    tagged = []
    try:
        with _reaching(tracker.config.tracking_uri):
            exp = tracker.client.get_experiment_by_name(tracker.nightly_experiment_name(vendor))
            if exp is None:
                return []
            token = None
            while True:
                page = tracker.client.search_runs([exp.experiment_id], f"tags.`licanom.kind` = '{NIGHT_KIND}'",
                                                  max_results=1000, page_token=token)
                for run in page:
                    theirs = state_lib.night_range(run.data.tags.get("licanom.night", ""))
                    # only a night whose every Id this one scored again (a night it overlaps in part
                    # holds rows no later night scored: its run still counts them); an empty range
                    # (far-beyond rows only) is never read again
                    if (run.info.run_id == record.run_id or theirs is None or SUPERSEDED_TAG in run.data.tags
                            or not (mine[0] <= theirs[0] < theirs[1] <= mine[1])):
                        continue
                    tracker.client.set_tag(run.info.run_id, SUPERSEDED_TAG, record.run_id)
                    tagged.append(run.info.run_id)
                token = page.token
                if not token:
                    break
    except (MlflowException, TrackingUnavailableError, OSError) as err:  # the night is published: a note
        return [f"the MLflow runs of the nights scored again are not tagged {SUPERSEDED_TAG} ({_first_line(err)}); "
                "their results and this night's both stand for their rows"]
    if not tagged:
        return []
    return [f"{len(tagged)} earlier nightly run{'s' if len(tagged) != 1 else ''} tagged {SUPERSEDED_TAG}: this "
            f"night scored all their rows again, and its results stand for them (its own run is tagged "
            f"{SCORED_AGAIN_TAG}: a sum of rows over the runs leaves it out)"]


def _finish(output_dir: Path, vendor: str, tracker: Tracker | None, record: NightRecord) -> list[str]:
    """Publish a committed night: its staged folder renamed into place (an earlier folder of the
    same name, a re-scored night, is replaced), its MLflow run FINISHED. Safe to repeat."""
    notes = []
    nights = nights_dir(output_dir, vendor)
    staged = nights / STAGING / record.staging
    final = nights / record.name
    if staged.exists():
        old = nights / STAGING / f"replaced.{record.staging}"
        if final.exists():
            final.rename(old)
        staged.rename(final)
        crash_point("publish:renamed")
        if old.exists():
            shutil.rmtree(old)
        notes.append(f"published night {record.name} (committed before the last run stopped)")
    if tracker is not None and record.run_id:
        from mlflow.exceptions import MlflowException

        try:
            with _reaching(tracker.config.tracking_uri):
                status = tracker.client.get_run(record.run_id).info.status
        except MlflowException:  # the run is gone (deleted, another store): nothing to finish
            status = None
        if status == "RUNNING":
            tracker.end_run(record.run_id)
            if notes:
                notes.append(f"MLflow run {record.run_id} of night {record.name} finished")
    return notes


def recover(output_dir: Path, vendor: str, tracker: Tracker | None) -> list[str]:
    """Before a night, under the vendor's lock: finish the night the state committed (folder
    and MLflow run), delete what an uncommitted night staged, and mark every other RUNNING
    nightly MLflow run of the vendor FAILED (under the lock no other night can own one), and its
    training runs that a killed training left RUNNING KILLED
    (:func:`licanom.ops.training.end_killed_trainings`). What it did, as short notes (empty after
    a clean night)."""
    notes = state_lib.tidy(output_dir, vendor)
    st = state_lib.load_state(output_dir, vendor)
    if st.night is not None:
        notes += _finish(output_dir, vendor, tracker, st.night)
    staging = nights_dir(output_dir, vendor) / STAGING
    if staging.exists():
        for p in staging.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            notes.append(f"deleted {p.name} (staged by a night killed before it was committed)")
    if tracker is not None:
        from licanom.ops.training import end_killed_trainings

        notes += fail_orphan_runs(tracker, vendor, keep=st.night.run_id if st.night else None)
        notes += end_killed_trainings(tracker, vendor)
    return notes


def fail_orphan_runs(tracker: Tracker, vendor: str, keep: str | None = None) -> list[str]:
    """Mark the vendor's RUNNING nightly runs FAILED (but ``keep``): their nights were killed."""
    with _reaching(tracker.config.tracking_uri):
        exp = tracker.client.get_experiment_by_name(tracker.nightly_experiment_name(vendor))
        if exp is None:
            return []
        runs = tracker.client.search_runs(
            [exp.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`licanom.kind` = '{NIGHT_KIND}'")
    notes = []
    for run in runs:
        if run.info.run_id == keep:
            continue
        tracker.client.set_tag(run.info.run_id, OUTCOME_TAG, "killed before its night was published")
        tracker.end_run(run.info.run_id, "FAILED")
        notes.append(f"MLflow run {run.info.run_id} marked FAILED (its night was killed before it was published)")
    return notes


def load_champion(tracker: Tracker, vendor: str, cache: Path | None = None) -> tuple[Any, str]:
    """The champion, or :class:`ModelLoadError` naming the model's files when they are damaged
    (no champion: LookupError; an unreachable server: TrackingUnavailableError). ``cache``: where
    its files are kept between nights (:func:`champion_cache`)."""
    from licanom.ops.tracking import TrackingUnavailableError

    try:
        return tracker.load_champion(vendor, cache)
    except (LookupError, TrackingUnavailableError):
        raise
    except Exception as err:
        where = _failing_file(err)
        try:
            mv = tracker.client.get_model_version_by_alias(tracker.model_name(vendor), "champion")
            model = f"{mv.name} version {mv.version} ({mv.source})"
        except Exception:  # noqa: BLE001 - the name is a courtesy
            model = tracker.model_name(vendor)
        raise ModelLoadError(
            f"the champion model of vendor {vendor!r}, {model}, cannot be loaded"
            + (f": {where} is damaged" if where else "")
            + f" ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). Retrying will not help: "
            f"retrain the vendor (licanom run train --vendor {vendor}) or point the alias 'champion' at a sound version"
        ) from err


def champion_cache(output_dir: Path, vendor: str) -> Path:
    """Where a vendor's champion files are kept between nights: ``out/<vendor>/models/`` (the
    versions downloaded last; removing the folder only costs the next night a download)."""
    return output_dir / vendor / "models"


def _failing_file(err: BaseException) -> str | None:
    """The model file being read when ``err`` was raised (a ``path`` argument in the traceback)."""
    tb = err.__traceback__
    found = None
    while tb is not None:
        for name in ("path", "directory"):
            value = tb.tb_frame.f_locals.get(name)
            if isinstance(value, (str, Path)) and Path(value).name:
                found = str(value)
        tb = tb.tb_next
    return found


# --- a night, step by step ----------------------------------------------------------------

@dataclass(frozen=True)
class Night:
    """One night of one vendor as it goes through its steps (the ``score-vendor`` flow's tasks,
    or :func:`score_night`): each step adds what it prepared, and every later step reads it
    from here instead of computing it again.

    ``model`` is the champion with the key pairs of the nights it already scored and, for a
    model that reads the rows mode, its rows encoder's state advanced by those nights' rows
    (so a key first seen on an earlier night is not new again, and its gap counts from its last
    scored request); ``windows``
    holds the night's rows derived once (countries looked up once), pseudonymised once where
    the model's are, encoded and cut; ``inputs`` the detector's inputs (for a context model the
    context vectors, which the report shows too); ``chunks`` the per-chunk results;
    ``entities`` the entity results; ``result`` the staged, then published night."""

    output_dir: Path
    vendor: str
    model: Any  # licanom.ops.bundle.ModelBundle
    version: str
    state: VendorState
    since: int | None = None
    notes: tuple[str, ...] = ()  # what recovery did before this night
    apart: tuple[str, ...] = ()  # what the configuration says that the champion does not do (settings_apart)
    cautions: tuple[str, ...] = ()  # what the vendor should know of the champion (champion_cautions)
    raw: pl.DataFrame | None = None
    # with ``since``: the rows the night ending at ``since`` carried (read again from the source,
    # unvalidated), which that night's successor scored first; None: the state's tail
    carried: pl.DataFrame | None = None
    carried_missing: int = 0  # of those, how many the source no longer holds
    # a file source's rows with a readable Id at or below the watermark when the night read it
    # (None: not counted), and the Ids of far-beyond rows it left out as quarantined before
    at_or_below: int | None = None
    left_ahead: tuple[int, ...] = ()
    # that count per file, and each file's name in the source (None: not counted; counts, not the Ids)
    ids_below: IdsBelow | None = None
    # a night scored again: the rows after the watermark it left for the next night; with ``since``
    # past the watermark, the rows it skips: Ids between the two, and those the last night carried
    left_after: int = 0
    skipped: int = 0
    skipped_carried: int = 0
    screened: Screened | None = None
    windows: Any = None  # licanom.ops.bundle.Windows
    inputs: Any = None
    chunks: pl.DataFrame | None = None
    entities: pl.DataFrame | None = None
    result: NightResult | None = None
    run_id: str | None = None
    waited: float | None = None  # seconds waited for another run of the vendor to free its lock (LockHeld)

    @property
    def after(self) -> int | None:
        """The Id after which the night reads."""
        return self.since if self.since is not None else self.state.watermark

    @property
    def scored_again(self) -> bool:
        """A night scored again (``since`` below the watermark): it reads only rows earlier nights
        read, and leaves the watermark, the source's count and the kept notes as they were."""
        return self.since is not None and self.state.watermark is not None and self.since < self.state.watermark

    def _need(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"night of vendor {self.vendor!r}: step out of order, {', '.join(missing)} not prepared yet")


def settings_apart(cfg: Any, model: Any, version: str) -> tuple[str, ...]:
    """What the vendor's configuration says now that its champion (``version``), trained before the
    edit, does not do: its decision and its chunks are the model's own until the vendor is trained
    again. One sentence each, for the night's messages; none when they agree."""
    det = model.detector
    out = []
    if getattr(det, "family", "") in ("context", "autoencoder", "classical") and hasattr(det, "threshold_params"):
        section = "context" if det.family == "context" else "detect"
        conf = cfg.context if section == "context" else cfg.detect
        names = ({conf.auto.small, conf.auto.large} if section == "context" and conf.threshold == "auto"
                 else {conf.threshold})
        params = dict(conf.threshold_params)
        if det.threshold not in names or params != dict(det.threshold_params):  # 70 == 70.0
            said = f"{section}.threshold {conf.threshold}" + (f" with {params}" if params else "")
            # the severity decision in the words of the rule it decides with now: a model saved before a
            # change of the night rule keeps the text it was trained with (threshold_method_)
            rule = det.night_rule() if callable(getattr(det, "night_rule", None)) else None
            trained = rule.describe() if rule is not None else getattr(det, "threshold_method_", None) or det.threshold
            out.append(f"the configuration's decision ({said}) is not the one the champion, version {version}, was "
                       f"trained with ({trained}): it decides as trained until the vendor is trained again (licanom run train)")
    chunk = getattr(model, "chunk", None)
    if chunk is not None and (chunk.size, chunk.stride, chunk.partial) != (cfg.chunk.size, cfg.chunk.stride, cfg.chunk.partial):
        out.append(f"the configuration's chunks (size {cfg.chunk.size}, stride {cfg.chunk.stride}) are not the ones the "
                   f"champion, version {version}, was trained on (size {chunk.size}, stride {chunk.stride}): the night is "
                   "cut as trained until the vendor is trained again (licanom run train)")
    return tuple(out)


def champion_cautions(model: Any, version: str) -> tuple[str, ...]:
    """What the vendor should know of its champion (``version``) each night: its severity calibrated
    on too few training chunks (BaseDetector.calibration_caution). One sentence each."""
    caution = model.detector.calibration_caution()
    return (f"the champion, version {version}: {caution} (licanom run train)",) if caution else ()


def open_night(output_dir: Path, vendor: str, tracker: Tracker, since: int | None = None,
               champion: tuple[Any, str] | None = None, cfg: Any | None = None,
               waited: float | None = None) -> Night:
    """Under the vendor's lock: recover a killed night, load the champion (or take ``champion``:
    model, version; with the vendor's ``cfg``, refused where it asks for pseudonyms that the
    champion was trained without: :func:`licanom.data.privacy.check_champion_privacy`), read the
    committed state and give the model the pairs it already saw and
    (rows mode) the rows state of the nights it scored (for ``since`` at or before the last
    night's start, both of the nights before it: the last night scored again is judged as it was). A
    champion of another version than the state's starts from its own training rows. ``waited``: the
    seconds the run waited for the lock (:class:`licanom.ops.scoring_state.LockHeld`), for its summary
    and MLflow run to say so."""
    from licanom.ops.bundle import with_rows_state, with_seen

    crash_point("after:lock")
    notes = recover(output_dir, vendor, tracker)
    crash_point("after:recover")
    model, version = (champion if champion is not None
                      else load_champion(tracker, vendor, champion_cache(output_dir, vendor)))
    apart: tuple[str, ...] = ()
    if cfg is not None:
        from licanom.data.privacy import check_champion_privacy

        check_champion_privacy(cfg, model.pseudonym_env, version)
        apart = settings_apart(cfg, model, version)
    crash_point("after:load_champion")
    st = night_state(output_dir, vendor, version, since)
    crash_point("after:load_state")
    model = with_rows_state(with_seen(model, st.seen_judging(version, since)), st.rows_judging(version, since))
    return Night(output_dir=output_dir, vendor=vendor, model=model, version=version, state=st, since=since,
                 notes=tuple(notes), apart=apart, cautions=champion_cautions(model, version), waited=waited)


def read_night(night: Night, source: Any, tracker: Tracker | None = None) -> Night:
    """The rows after the watermark (or ``since``) from the vendor's source, less the far-beyond
    Ids an earlier night quarantined. An export refused as it is read (a file that lacks a
    required column) has, with ``tracker``, a FAILED MLflow run (:func:`log_refusal`), as a night
    refused for its rows has. A pseudonymised vendor's refusal names the export's files by their names in
    the source (:func:`_named_in_source`), in MLflow and in the error raised (the console, Prefect's database)."""
    try:
        return _read_night(night, source)
    except ValidationError as err:
        private = night.model.pseudonym_env is not None
        message = _named_in_source(str(err), source) if private else str(err)
        if tracker is not None:
            log_refusal(tracker, night, None, message, None)
        if private:
            raise ValidationError(message, err.result) from err
        raise


def _read_night(night: Night, source: Any) -> Night:
    from dataclasses import replace

    from licanom.data import pipeline

    left_after = skipped = skipped_carried = 0
    watermark = night.state.watermark
    ids_below = None
    if night.since is None:
        read, ids_below = pipeline.extract_new(source, after_id=night.after)  # counts, not the source's Ids
        at_or_below = ids_below.total if ids_below is not None else None
    elif watermark is not None and night.since > watermark:
        # past the watermark: one read from the watermark; the rows up to ``since``, which no night
        # scored, are skipped and counted, as are the rows the last night carried to the next
        read, at_or_below = pipeline.extract(source, after_id=watermark), None
        if "Id" in read.columns:
            up_to_since = _until(read, _ids(read), night.since)
            read, skipped = read.filter(~up_to_since), int(up_to_since.sum())
        skipped_carried = int(night.state.tail.height)
    else:  # a night scored again: what lies below its start is the earlier nights'
        read, at_or_below = pipeline.extract(source, after_id=night.after), None
        if night.state.watermark is not None and night.since < night.state.watermark and "Id" in read.columns:
            # it scores again what the nights read, up to the watermark, which it does not move: the
            # rows after it are the next night's (read here, they would lie in two folders)
            ids = _ids(read)
            beyond = ~_until(read, ids, night.state.watermark)
            ahead = ids.is_in(list(night.state.ahead)).fill_null(False)  # quarantined before: no one's
            read, left_after = read.filter(~beyond), int((beyond & ~ahead).sum())
    raw = without_ahead(read, night.state.ahead)
    left_ahead: tuple[int, ...] = ()
    if raw.height < read.height:  # far-beyond rows quarantined before: in the source, not read again
        ids = _ids(read)
        left_ahead = tuple(int(i) for i in ids.filter(ids.is_in(list(night.state.ahead))).to_list())
    crash_point("after:extract")
    carried, missing = None, 0
    if night.since is not None:
        ids = carried_ids(night.output_dir, night.vendor, night.since)
        if ids:
            earlier = pipeline.extract(source, after_id=min(ids) - 1)
            carried = earlier.filter(_as_int("Id", earlier.schema["Id"]).is_in(ids).fill_null(False)) \
                if "Id" in earlier.columns else earlier.head(0)
            missing = len(ids) - carried.height
    return replace(night, raw=raw, carried=carried, carried_missing=missing, at_or_below=at_or_below,
                   ids_below=ids_below, left_ahead=left_ahead, left_after=left_after, skipped=skipped,
                   skipped_carried=skipped_carried)


def _until(raw: pl.DataFrame, ids: pl.Series, watermark: int) -> pl.Series:
    """Which rows of ``raw`` (``ids``: their readable Ids) lie at or below ``watermark``, a row
    without a readable Id placed as the reads after a watermark place it
    (:func:`licanom.data.extract.files.placing_ids`; none at all: kept), so that a night scored
    again and the next one never both read it."""
    from licanom.data.extract.files import placing_ids
    from licanom.data.schema import SOURCE_FILE

    near = placing_ids(ids, raw[SOURCE_FILE] if SOURCE_FILE in raw.columns else None)
    return ((ids <= watermark) | (ids.is_null() & (near.is_null() | (near <= watermark)))).fill_null(False)


def _ids(frame: pl.DataFrame) -> pl.Series:
    """The readable Ids of raw rows (null where unreadable)."""
    if "Id" not in frame.columns or frame.height == 0:
        return pl.Series("Id", [], pl.Int64)
    return frame.select(_as_int("Id", frame.schema["Id"])).to_series()


@dataclass(frozen=True)
class SourceCount:
    """What a file source's count of distinct Ids at or below the watermark says about a night
    (:func:`late_rows`): 0 where counted and none, None where not counted (a night scored again, a
    source that hands out only new rows, the first night)."""

    late: int | None = None   # Ids beyond the most the source ever held: rows that arrived late
    back: int | None = None   # Ids back after the source shrank, up to the most it held (a file moved back)
    gone: int | None = None   # Ids fewer than the last night counted (a file moved away or removed)
    source_rows: int | None = None  # the count the next night should find at or below the new watermark
    source_most: int | None = None  # the most the source held, that count included
    source_files: dict[str, int] | None = None  # that count per file, by its name in the source
    # where the late rows are: the files whose count grew (None: not known, a state counted before
    # files were), unless a file also left the count or fell (renamed, moved away or back): ``moved``
    late_files: tuple[str, ...] | None = None
    moved: bool = False
    # rows delivered again: rows at or below the night's start beyond one per distinct Id, more than the
    # most the source held (copies under Ids it held already), and that most as the next night should find it
    again: int | None = None
    source_copies: int | None = None
    # the files counted together, not one by one (``source_files`` leaves them out): those whose lowest Id
    # at or below the watermark is at or below the Id, and the sum of their counts (None: none)
    source_settled: tuple[int, int] | None = None
    older: int | None = None  # that Id, where those files' count grew (late rows or copies in one of them)


# Files a file source's count keeps one by one (the newest, by their lowest Id): the older ones are
# counted together (VendorState.source_settled), so that an export of a file an hour does not grow the
# state with every file it ever wrote.
SOURCE_FILES_KEPT = 1000


def late_rows(night: Night, watermark: int | None) -> SourceCount:
    """Rows that arrived late: Ids at or below the night's start that the source holds beyond the
    most it ever held when a night counted them (distinct readable Ids: a row delivered again under
    a counted Id is not late; Ids back after the source shrank, a file moved away and back, are
    ``back``, not late); how many fewer it holds than the last night counted (``gone``: a night on
    which late rows cannot be told from the rows gone); and the counts the next night should find at
    or below ``watermark``, in all and per file. A log export's late file, or rows appended under Ids
    the watermark has passed, would otherwise go unread without a word. Rows delivered again under Ids
    the source held (``again``: its rows at or below the night's start beyond one per distinct Id, more
    than the most such copies it held when a night counted them) are not read either, and counted
    apart: a night scored again with ``--since`` reads them and quarantines them as duplicates.

    Per file (names relative to the source: a folder moved keeps them), the late rows are placed in
    the files whose count grew, only where no file's count fell (a file renamed or moved away leaves
    its name's count) and no Ids came back (a file moved back is a name new to the count): then a
    count that grew cannot be told from a file that moved. The older files, counted together
    (:func:`_settle`), are compared as one: a count of theirs that grew is said (``older``), not
    named, and one that fell is a move."""
    if night.at_or_below is None:
        return SourceCount()
    at, before = night.at_or_below, night.state.source_rows
    most = max(v for v in (night.state.source_most, before, 0) if v is not None)
    counted = before is not None  # a night that counted gives 0 for none, which a dashboard can tell from not counted
    late = max(0, at - most) if counted else None
    back = max(0, min(at, most) - before) if counted else None
    gone = max(0, before - at) if counted else None
    from licanom.data.schema import SOURCE_FILE

    below = night.ids_below
    files = dict(below.per_file) if below is not None else None
    firsts = dict(below.first) if below is not None else {}
    new_ids = new_copies = 0
    if watermark is not None and night.raw is not None:
        ids = _ids(night.raw)
        first_new = ((ids > (night.after if night.after is not None else -1)) & (ids <= watermark)).fill_null(False)
        new = pl.concat([ids.filter(first_new).cast(pl.Int64),
                         pl.Series("Id", [i for i in night.left_ahead if i <= watermark], pl.Int64)])
        new_ids = new.n_unique()
        new_copies = new.len() - new_ids
        if files is not None and below is not None and SOURCE_FILE in night.raw.columns:
            # the night's own rows now at or below the watermark, per file, as the next night counts them (a
            # far-beyond Id left out, which a watermark almost never passes, is counted in all only)
            per_file = (pl.DataFrame({"Id": ids, "file": night.raw[SOURCE_FILE].cast(pl.String)}).filter(first_new)
                        .group_by("file").agg(pl.col("Id").n_unique().alias("n"), pl.col("Id").min().alias("first")))
            for file, n, low in per_file.iter_rows():
                name = below.names.get(file, file)
                files[name] = files.get(name, 0) + n
                firsts[name] = min(firsts.get(name, low), low)
    late_files, moved, older = None, False, None
    kept = night.state.source_files
    settled = night.state.source_settled
    copies_most = night.state.source_copies
    again = max(0, below.copies - copies_most) if below is not None and copies_most is not None else None
    if (late or again) and below is not None and kept is not None:
        # the files counted together last night, and those whose lowest Id has come down to them since: their
        # count, together, against the last one (a file of them that grew is not named; one that fell is a move)
        to = settled[0] if settled is not None else None
        old = {f for f in below.per_file if to is not None and below.first.get(f, to + 1) <= to}
        was = (settled[1] if settled is not None else 0) + sum(n for f, n in kept.items() if f in old)
        now = sum(below.per_file[f] for f in old)
        moved = bool(back) or now < was or any(below.per_file.get(f, 0) < n for f, n in kept.items() if f not in old)
        late_files = () if moved else tuple(sorted(f for f, n in below.per_file.items()
                                                   if f not in old and n > kept.get(f, 0)))
        older = to if now > was and not moved else None
    # the night's own copies (quarantined by it as duplicates) are held from now on: not delivered again
    copies = None if below is None else max(copies_most or 0, below.copies) + new_copies
    files, settled = _settle(files, firsts, settled)
    return SourceCount(late=late, back=back, gone=gone, source_rows=at + new_ids, source_most=max(most, at) + new_ids,
                       source_files=files, late_files=late_files, moved=moved, again=again, source_copies=copies,
                       source_settled=settled, older=older)


LATE_NOTE = re.compile(r"^late rows: ([\d,]+) rows? ")


def late_notes_read(night: Night, watermark: int | None) -> tuple[str, ...]:
    """The kept late-rows notes (:attr:`VendorState.notes`, said by a run that wrote no night) that a
    night scored again made untrue: it read, after its ``--since`` and the champion's training rows, at
    least as many rows that no published night's ledger lists as the note counted (the late rows, now
    scored: the next night would otherwise tell the user to score them again). Counts, as the note's
    are: a late row it did not reach keeps the note."""
    kept = [note for note, _, _ in night.state.notes if LATE_NOTE.match(note)]
    if not kept or night.raw is None or "Id" not in night.raw.columns or watermark is None:
        return ()
    ids = _ids(night.raw).cast(pl.Int64)
    low = max(v for v in (night.after, getattr(night.model, "train_last_id", None), -1) if v is not None)
    read = ids.filter((ids > low) & (ids <= watermark)).unique()
    unlisted = read.filter(~read.is_in(rows_accounted(night.output_dir, night.vendor)["Id"].implode())).len()
    return tuple(note for note in kept
                 if int(LATE_NOTE.match(note).group(1).replace(",", "")) <= unlisted)  # type: ignore[union-attr]


def _settle(files: dict[str, int] | None, firsts: dict[str, int],
            settled: tuple[int, int] | None) -> tuple[dict[str, int] | None, tuple[int, int] | None]:
    """A file source's count per file (``files``, each file's lowest Id in ``firsts``) as the state keeps it:
    the :data:`SOURCE_FILES_KEPT` newest files one by one, the older ones counted together as
    ``settled`` (Id, count): the files whose lowest Id is at or below that Id. The Id only moves forward,
    so a file counted together stays so (its lowest Id can only come down): the next night finds each
    file where this one left it."""
    if files is None:
        return None, None
    to = settled[0] if settled is not None else None
    apart = sorted((firsts[f] for f in files if f in firsts and (to is None or firsts[f] > to)), reverse=True)
    if len(apart) > SOURCE_FILES_KEPT:
        to = apart[SOURCE_FILES_KEPT] if to is None else max(to, apart[SOURCE_FILES_KEPT])
    if to is None:
        return files, None
    old = {f for f in files if f in firsts and firsts[f] <= to}
    return {f: n for f, n in files.items() if f not in old}, (to, sum(files[f] for f in old))


def _late_where(count: SourceCount) -> str:
    """Where a night's late rows are, for its note: ``, in <files>`` ("" where not known)."""
    if count.moved:
        return ", in files of the export (a file was also renamed or moved: not named)"
    older = ("" if count.older is None else
             f"files whose first Id is at or below Id {count.older} (counted together, not one by one: not named)")
    if not count.late_files:
        return f", in {older}" if older else ""
    from licanom.data.extract.files import listed

    return f", in {listed(list(count.late_files), 3)}" + (f" and {older}" if older else "")


def _late_to_score(night: Night, count: SourceCount) -> str:
    """How to score a night's late rows, for its note: the ``--since`` from the start of the night that
    holds the first Id of the files they came in (:func:`since_before`), where those are named and new to
    the count (the late rows lie in them); for a file that only grew, where in it they lie the counts
    cannot tell: how to choose that ``--since``. Never one before the first night's start: the rows up to
    it were the champion's training rows."""
    below = night.ids_below
    kept = night.state.source_files or {}
    firsts = [below.first[f] for f in count.late_files or () if below is not None and f in below.first]
    grown = [f for f in count.late_files or () if f in kept]  # counted before: its late rows lie anywhere in it
    how = ("which scores the nights from there to the watermark again as one night, whose folder and MLflow run "
           "supersede theirs")
    first = first_night_start(night.output_dir, night.vendor, getattr(night.model, "train_last_id", None))
    not_before = "" if first is None else f", not before Id {first}, the first night's start"
    command = f"run `licanom run score --vendor {night.vendor} --since N`"
    if count.moved or count.older is not None or not firsts:
        return (f"look for a late file of the export; to score them, {command}, N the first Id of the night folder "
                f"(after-N-to-...) that holds the lowest of their Ids{not_before}, " + how)
    if grown:
        files = "that file" if len(count.late_files or ()) == 1 else "those files"
        return (f"to score them, {command}, N the first Id of the night folder (after-N-to-...) that holds the "
                f"lowest of their Ids{not_before} (where in {files} they lie the counts cannot tell: the lowest is "
                f"the lowest Id of {files} at or below the watermark that no night folder's {LEDGER} lists"
                + ("" if first is None else f" and that lies after Id {first}") + "), " + how)
    low = min(firsts)
    since = since_before(night.output_dir, night.vendor, low, first)
    files = "that file" if len(firsts) == 1 else "those files"
    if since is None:  # no night, and no training rows known, to start from
        return (f"to score them, {command}, N the first Id of the night folder (after-N-to-...) that holds Id "
                f"{low}, the first of {files}, " + how)
    where = (f"Id {low}, the first of {files}, lies after it" if low > since else
             f"the first night's start: Id {low}, the first of {files}, lies before it, in the champion's training "
             "rows, which no night scores")
    return f"to score them, run `licanom run score --vendor {night.vendor} --since {since}` ({where}), " + how


def first_night_start(output_dir: Path, vendor: str, trained_to: int | None = None) -> int | None:
    """Where the vendor's nights start: the first Id of its earliest published night folder, else
    ``trained_to`` (the champion's last training Id, after which its first night starts), else None."""
    starts = [a for a, _ in state_lib.night_ranges(output_dir, vendor)]
    return min(starts) if starts else trained_to


def since_before(output_dir: Path, vendor: str, low: int, first: int | None = None) -> int | None:
    """The ``--since`` from which a night scored again reads Id ``low`` from the start of a night: the
    last Id of the latest published night folder that ends below it (the night after it starts there,
    and the rows it carried are read again), else the first Id of the latest that starts below it, else
    the first night's start ``first`` (:func:`first_night_start`; ``low`` then lies in the training rows,
    which no night scores again: never a ``--since`` before it), else None."""
    ranges = state_lib.night_ranges(output_dir, vendor)
    ends = [b for _, b in ranges if b < low]
    if ends:
        return max(ends)
    starts = [a for a, _ in ranges if a < low]
    return max(starts) if starts else first


def _again_where(count: SourceCount) -> str:
    """Where a night's rows delivered again are, for its note: the files whose count of Ids grew, on a
    night without late rows (a copy in a file that held its Id already leaves that count: "" then)."""
    return "" if count.late or count.moved else _late_where(count)


def kept_note(note: str, given: str, dropped: int = 0) -> str:
    """A note a run that wrote no night kept (:attr:`VendorState.notes`), as a night's report says it:
    with the time of that run, and how many earlier notes of its kind such runs gave that it replaced."""
    earlier = (f"; {dropped} earlier note{'s' if dropped != 1 else ''} of the kind from such runs dropped, this "
               "the latest" if dropped else "")
    return f"{note} (said by the run of {given}, which wrote no night{earlier})"


def carried_ids(output_dir: Path, vendor: str, since: int) -> list[int]:
    """The Ids that the published night ending at ``since`` carried (valid rows after its last
    window, which the night after it scored first): what a night scored again from ``since``
    scores first, as it did. Empty where no published night ends at ``since`` (of several, the
    one that started last)."""
    ends = [(int(m.group(1)), p) for p in nights_dir(output_dir, vendor).glob(f"after-*-to-{since}")
            if (m := re.fullmatch(rf"after-(\d+)-to-{since}", p.name)) and (p / LEDGER).exists()]
    if not ends:
        return []
    ledger = pl.read_parquet(max(ends)[1] / LEDGER)
    return sorted(ledger.filter(pl.col("fate") == "carried")["Id"].to_list())


def carried_rows(model: Any, night: Night) -> pl.DataFrame | None:
    """A night scored again: the rows its first time carried in, validated again (they were
    valid then; the source is read as it is now)."""
    from licanom.ops import bundle as bundle_lib

    if night.carried is None or night.carried.height == 0:
        return None
    return bundle_lib.validate_rows(model, night.carried, night.vendor).valid


def log_refusal(tracker: Tracker, night: Night, result: ValidationResult | None, message: str,
                kept: Path | None) -> None:
    """A refused night's MLflow run (``nightly score (refused after Id A)``), FAILED at once, so that
    a dashboard of vendors sees the night that was not scored: the refusal in the tag
    ``licanom.refusal`` (its first line: the counts and reasons, or the file and the column it
    lacks) and, for a night of too many bad rows (``result``), rows read and quarantined (as
    ``refused_rows_read`` and ``refused_rows_quarantined``) and where its rows are kept
    (``kept``, the tag ``licanom.refused``). A store that cannot be reached is a warning, never in
    the way of the refusal itself."""
    from mlflow.exceptions import MlflowException

    at = "" if night.after is None else f" after Id {night.after}"
    tags = {"licanom.night": "", OUTCOME_TAG: "refused"}
    if kept is not None:
        tags["licanom.refused"] = str(kept)
    if night.waited is not None:
        tags[WAITED_TAG] = f"{night.waited:.1f}"
    try:
        with _reaching(tracker.config.tracking_uri):
            run_id = tracker.start_run(night.vendor, f"nightly score (refused{at})", NIGHT_KIND, tags=tags)
            tracker.log_params(run_id, {"model_version": night.version, "watermark_before": night.after})
            if result is not None:
                # names of their own: the next try reads these rows again, and a sum of rows_read over
                # the runs would count them twice
                tracker.log_metrics(run_id, {"refused_rows_read": result.n_in,
                                             "refused_rows_quarantined": result.quarantine.height})
            # the counts and reasons, not the examples: they quote the rows' values (an address, a
            # key), which a pseudonymised vendor's MLflow store must not hold
            tracker.set_tags(run_id, {"licanom.refusal": message.splitlines()[0].split(" Examples (")[0]})
            tracker.end_run(run_id, "FAILED")
    except (MlflowException, TrackingUnavailableError, OSError) as failed:  # never in the refusal's way
        logger.warning("the refused night of vendor %s has no MLflow run: %s", night.vendor, _first_line(failed))


def _named_in_source(message: str, source: Any) -> str:
    """A refusal of a file source's export with each of its files named by its name in the source
    (:func:`licanom.data.extract.files.source_names`), not by its folders: a pseudonymised vendor's
    MLflow store, console and Prefect database hold no path of the vendor's ("/srv/exports/<customer>/...")."""
    from licanom.data.extract.files import log_files, source_names

    if getattr(source, "kind", None) != "files" or not getattr(source, "path", None):
        return message
    try:
        names = source_names(source.path, log_files(source.path, warn=False))
    except (OSError, RuntimeError):  # the source cannot be listed again: its folder left out below
        names = {}
    for full, name in sorted(names.items(), key=lambda item: -len(item[0])):  # a longer path first
        message = message.replace(full, name)
    return message.replace(str(Path(source.path)), Path(source.path).name)


def score_rows(night: Night, max_bad_fraction: float, tracker: Tracker | None = None) -> Night:
    """Validate and screen the rows, cut the windows (carrying the last night's tail), score
    them and the night's entities. A refused night (too many bad rows, a column missing) has, with
    ``tracker``, a FAILED MLflow run (:func:`log_refusal`); one of too many bad rows keeps its quarantine."""
    from dataclasses import replace

    from licanom.ops import bundle as bundle_lib

    night._need("raw")
    assert night.raw is not None
    model = night.model
    try:
        screened = screen(bundle_lib.validate_rows(model, night.raw, night.vendor), night.raw, night.after,
                          night.vendor, max_bad_fraction, night.state.ahead, private=model.pseudonym_env is not None,
                          file_names=night.ids_below.names if night.ids_below is not None else None)
    except ValidationError as err:  # refused: its quarantine is kept where the vendor can read it
        if err.result is None:  # the rows as a whole (a column missing): nothing to keep
            if tracker is not None:
                log_refusal(tracker, night, None, str(err), None)
            raise
        kept = refused_quarantine(night.output_dir, night.vendor, night.after)
        refusal = refusal_kept(err, kept, "the refused rows")
        if tracker is not None:
            log_refusal(tracker, night, err.result, str(refusal), kept)
        raise refusal from None
    crash_point("after:validate")
    if night.apart or night.cautions:
        screened = replace(screened, messages=(*screened.messages, *night.apart, *night.cautions))
    count = late_rows(night, screened.watermark)
    late, gone, again = count.late, count.gone, count.again
    said: list[str] = []
    if count.back:
        said.append(
            f"source grew back: {count.back} Id{'s' if count.back != 1 else ''} at or below the watermark {night.after} "
            "are in the source again after it shrank (a file moved back?); not late rows, as the source held them "
            "before")
    if gone:
        said.append(
            f"source shrank: it holds {gone} Id{'s' if gone != 1 else ''} at or below the watermark {night.after} "
            "fewer than the last night counted (a file of the export moved away or removed?); rows that arrived "
            "late this night, if any, cannot be told from those gone: look for a late file of the export")
    if late:
        said.append(
            f"late rows: {late:,} row{'s' if late != 1 else ''} with Ids at or below the watermark {night.after} "
            f"appeared in the source since the last night{_late_where(count)}; they are not read (the watermark has "
            f"passed them): {_late_to_score(night, count)}")
    if again:
        said.append(
            f"delivered again: {again:,} row{'s' if again != 1 else ''} under Ids at or below the watermark "
            f"{night.after} that the source held already appeared in it since the last night{_again_where(count)} "
            "(an export that overlaps an earlier one?); they are not read, as copies of rows in the source before "
            "(a night scored again with --since reads them and quarantines them as duplicates)")
    cleared: tuple[str, ...] = ()
    if screened.validation.n_in and not night.scored_again:  # a forward night's report: it says what runs
        # without a night kept too, and its commit clears them (a night scored again leaves them for the next)
        shown = (*(kept_note(note, given, dropped) for note, given, dropped in night.state.notes), *said)
    elif screened.validation.n_in:
        cleared = late_notes_read(night, screened.watermark)
        shown = (*said, *(f"{note}; read and scored by this night (the note, kept for the next night's report, is "
                          "cleared)" for note in cleared))
    else:  # no night to report it: kept in the state for the next night's report
        shown = tuple(f"{note}; kept for the report of the next night that reads new rows" for note in said)
    screened = replace(screened, notes_cleared=cleared,
                       source_rows=count.source_rows, source_most=count.source_most, late=late, gone=gone,
                       again=again, source_copies=count.source_copies, source_settled=count.source_settled,
                       source_files=count.source_files, source_notes=tuple(said),
                       messages=(*screened.messages, *shown))
    held = bundle_lib.present_fields(getattr(model, "absent_fields", ()), screened.validation.valid)
    if held:  # a platform that began to log a field: the model judges the night as it was trained
        words = " and ".join(bundle_lib.FIELD_WORDS.get(f, f) for f in held)
        screened = replace(screened, messages=(*screened.messages, (
            f"the night's rows hold {words}, which the champion (version {night.version}) was trained without: it "
            "judges the night without them until the vendor is trained again (licanom run train)")))
    carry = night.state.tail if night.since is None else carried_rows(model, night)
    watermark = night.state.watermark
    if night.since is not None and watermark is not None and night.since > watermark and night.raw.height:
        carried_too = (f", and the {night.skipped_carried} row{'s' if night.skipped_carried != 1 else ''} the last "
                       "night carried to this one," if night.skipped_carried else "")
        screened = replace(screened, messages=(*screened.messages, (
            f"--since {night.since} lies past the watermark {watermark}: {night.skipped} row"
            f"{'s' if night.skipped != 1 else ''} with Ids between them{carried_too} are skipped, scored by no "
            "night (score from the watermark, or below it, to read them)")))
    elif night.since is not None and watermark is not None and night.since > watermark:
        # no row after --since: no night is written and the state stays, so nothing is skipped
        waiting = [f"{verb} the {n} row{'s' if n != 1 else ''} {what}" for n, verb, what in (
            (night.skipped, "reads", "with Ids between them"), (night.skipped_carried, "carries in", "the last night carried"))
            if n]
        screened = replace(screened, messages=(*screened.messages, (
            f"--since {night.since} lies past the watermark {watermark} and no row lies after it: no night is written "
            "and nothing is skipped (the watermark stays)" + (f"; the next night {' and '.join(waiting)}" if waiting else ""))))
    trained_to = getattr(model, "train_last_id", None)
    if night.since is not None and trained_to is not None and night.since < trained_to:
        # the rows up to it were the champion's training rows: they look normal to it, and say nothing new
        screened = replace(screened, messages=(*screened.messages, (
            f"--since {night.since} lies before Id {trained_to}, the last the champion (version {night.version}) was "
            f"trained on: the rows after Id {night.since} up to Id {trained_to} were part of its training, and scored "
            "as a night they look normal to it")))
    if night.left_after:
        screened = replace(screened, messages=(*screened.messages, (
            f"{night.left_after} row{'s' if night.left_after != 1 else ''} after the watermark {night.state.watermark} "
            "left for the next night: a night scored again covers the Ids the nights before it read")))
    if night.carried_missing:
        screened = replace(screened, messages=(*screened.messages, (
            f"{night.carried_missing} of the rows carried into this night (Ids up to {night.since}) are no longer in "
            "the source: not scored again")))
    st = night.state
    if st.seen_unsure(night.version, night.since):
        start = f" (Id {st.seen_from})" if st.seen_from is not None else ""
        screened = replace(screened, messages=(*screened.messages, (
            f"scored again from Id {night.since}, not from the last night's start{start}: the (key, machine code) and "
            "(key, country) pairs that the nights after the training saw keep no times, so the pairs the nights it "
            "covers saw first count as seen, and it may flag fewer new machines and countries than they did")))
    windows = bundle_lib.make_windows(model, screened.validation.valid, carry)
    back = ids_out_of_order(windows.rows) if windows.rows is not None else 0  # the rows carried in too
    if back:
        screened = replace(screened, messages=(*screened.messages, (
            f"Ids out of time order: taken in time order, this night's Ids (the rows carried in from the last "
            f"night with them) fall back {back} time{'s' if back != 1 else ''} (rows exported late under new Ids, or "
            "Ids that do not follow time), so a chunk's first_id..last_id (chunks.parquet, anomalies.csv, the "
            "incidents) is not the range of its rows")))
    crash_point("after:windows")
    inputs = bundle_lib.window_inputs(model, windows)
    chunks = bundle_lib.score_windows(model, windows, inputs)
    crash_point("after:score")
    entities = bundle_lib.score_entities(model, screened.validation.valid, windows)
    return replace(night, screened=screened, windows=windows, inputs=inputs, chunks=chunks, entities=entities)


def report_context(night: Night) -> np.ndarray | None:
    """The context vectors the night's report shows, aligned with its chunks: the model's own
    inputs for a context model (same rows, same key history and levels; counts, so the same for a
    pseudonymised vendor's rows), else computed once from the derived rows for both copies of the
    report. A pseudonymised vendor's report reads real rows without the model's (pseudonymised) key
    history, so a model of other inputs gets vectors of its own."""
    from licanom.data.context_vector import chunk_context

    windows = night.windows
    if windows is None or windows.chunks is None or night.chunks is None or night.chunks.height == 0:
        return None
    private = night.model.pseudonym_env is not None
    if night.model.detector.reads == "context":
        return np.asarray(night.inputs)
    return chunk_context(windows.derived, windows.chunks.meta["start_row"].to_numpy(), windows.chunks.size,
                         None if private else night.model.key_history)


def stage_night(night: Night) -> Night:
    """Write the night's outputs into ``nights/.staging/`` (:func:`write_night`)."""
    from dataclasses import replace

    night._need("screened", "windows", "chunks")
    assert night.screened is not None and night.chunks is not None
    model, windows, screened = night.model, night.windows, night.screened
    secret = model.pseudonym_secret()
    result = write_night(night.output_dir, night.vendor, night.chunks, screened.validation, night.version, night.after,
                         screened.watermark, rows=windows.derived, detector=model.detector, secret=secret,
                         key_history=model.key_history, tail=windows.tail,
                         rows_unknown_product=screened.rows_unknown_product, messages=screened.messages,
                         entities=night.entities, private_rows=windows.model_rows if secret is not None else None,
                         context=report_context(night),
                         file_names=night.ids_below.names if night.ids_below is not None else None)
    return replace(night, result=replace(result, late_rows=screened.late, ids_gone=screened.gone,
                                         delivered_again=screened.again,
                                         scored_again=night.scored_again,
                                         since=night.since, vendor_watermark=night.state.watermark,
                                         waited=night.waited))


def log(tracker: Tracker, night: Night) -> Night:
    """The night's MLflow run (:func:`log_night`), left RUNNING until it is published."""
    from dataclasses import replace

    night._need("result")
    assert night.result is not None
    run_id = log_night(tracker, night.result)
    crash_point("after:log")
    return replace(night, run_id=run_id)


def publish(tracker: Tracker, night: Night) -> Night:
    """Commit the state with the night, the key pairs and the rows state of the rows it scored,
    publish its folder, finish its MLflow run (:func:`publish_night`)."""
    from dataclasses import replace

    from licanom.ops.bundle import pairs_seen, rows_seen

    night._need("result", "run_id", "screened", "windows")
    assert night.result is not None and night.run_id is not None and night.screened is not None
    result = publish_night(night.output_dir, night.vendor, tracker, night.result, night.run_id, night.screened,
                           night.windows.tail, night.version, pairs_seen(night.model, night.windows, night.after),
                           rows_seen(night.model, night.windows))
    return replace(night, result=result)


# --- the whole night in one call --------------------------------------------------------------

def score_night(output_dir: Path, vendor: str, cfg: Any, tracker: Tracker, model: Any, version: str,
                since: int | None = None) -> NightResult:
    """One night, the same steps as the ``score-vendor`` flow's tasks, with the same crash
    points, given the champion (``model``, ``version``)."""
    with state_lib.vendor_lock(output_dir, vendor) as held:
        night = open_night(output_dir, vendor, tracker, since, champion=(model, version), cfg=cfg, waited=held.waited)
        night = score_rows(read_night(night, cfg.source, tracker), cfg.validate_.max_bad_fraction, tracker)
        night = stage_night(night)
        crash_point("after:stage")
        night = publish(tracker, log(tracker, night))
        assert night.result is not None
        return night.result
