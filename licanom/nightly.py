"""A night's scoring results: where they are written, the short report, what MLflow records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from licanom.context import KeyHistory
from licanom.tracking import Tracker
from licanom.validate import ValidationResult


TRACKING_COPY = "for-tracking"  # the pseudonymised report of a private vendor, sent to MLflow


@dataclass(frozen=True)
class NightResult:
    vendor: str
    model_version: str | None
    watermark_before: int | None
    watermark_after: int | None
    rows_read: int
    rows_quarantined: int
    chunks: pl.DataFrame
    out_dir: Path | None

    @property
    def n_anomalies(self) -> int:
        return int(self.chunks["is_anomaly"].sum()) if self.chunks.height else 0


def new_watermark(raw: pl.DataFrame, before: int | None) -> int | None:
    """The highest Id read this night (valid or not), or the old watermark if none was read."""
    if raw.height == 0 or "Id" not in raw.columns:
        return before
    from licanom.validate import _as_int

    top = raw.select(_as_int("Id", raw.schema["Id"]).max()).item()  # any column type, unreadable Ids ignored
    return before if top is None else max(int(top), before or 0)  # type: ignore[arg-type]


def night_dir(output_dir: Path, vendor: str, watermark_before: int | None, watermark_after: int | None) -> Path:
    """One folder per range of Ids read, so that re-running the same night overwrites it."""
    return output_dir / vendor / "nights" / f"after-{watermark_before or 0}-to-{watermark_after or 0}"


def anomaly_report(vendor: str, chunks: pl.DataFrame, model_version: str | None) -> str:
    """A short markdown report of the anomalous time frames."""
    flagged = chunks.filter("is_anomaly").sort("score", descending=True)
    lines = [
        f"# licanom: {vendor}",
        "",
        f"Model version {model_version or '?'}; {chunks.height} chunks scored, {flagged.height} anomalous.",
        "",
    ]
    if flagged.height:
        lines += ["| start | end | first Id | last Id | score | threshold | top column |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in flagged.iter_rows(named=True):
            lines.append(
                f"| {r['start_time']:%Y-%m-%d %H:%M:%S} | {r['end_time']:%Y-%m-%d %H:%M:%S} | {r['first_id']} | "
                f"{r['last_id']} | {r['score']:.4f} | {r['threshold']:.4f} | {r['top_feature']} |"
            )
    return "\n".join(lines) + "\n"


ARTIFACT_FRAME_COLUMNS = ("severity", "start_time", "end_time", "requests", "first_id", "last_id", "score",
                          "threshold", "why", "top_keys", "top_machine_codes", "top_ips", "top_countries")
ARTIFACT_ENTITY_COLUMNS = ("severity", "kind", "entity", "start_time", "end_time", "requests", "score", "reasons")


def artifact_table(night: NightResult, limit: int = 200) -> list[dict[str, object]]:
    """The night's anomalous time frames (from its ``anomalies.csv``, most severe first) and, where
    the night has them, its flagged entities (``entities.parquet``): rows for a table in the
    orchestrator's UI, each with what it is (``frame`` or the entity's kind). A pseudonymised
    vendor's come from the night's pseudonymised copy (``for-tracking/``): real keys, addresses and
    machine codes stay in the vendor's own folder."""
    if night.out_dir is None:
        return []
    private = (night.out_dir / TRACKING_COPY).is_dir()
    folder = night.out_dir / TRACKING_COPY if private else night.out_dir
    rows: list[dict[str, object]] = []
    entities = folder / "entities.parquet"
    if entities.exists():
        flagged = pl.read_parquet(entities)
        if "is_anomaly" in flagged.columns:
            flagged = flagged.filter("is_anomaly")
        if "score" in flagged.columns:
            flagged = flagged.sort("score", descending=True)
        for r in flagged.head(limit).iter_rows(named=True):
            entity = next((str(r[c]) for c in ("entity", "key", "machine_code", "ip", "address") if r.get(c)), "")
            rows.append({"what": str(r.get("kind") or r.get("entity_kind") or "entity"), "entity": entity,
                         **{c: _cell(r.get(c)) for c in ARTIFACT_ENTITY_COLUMNS if c not in ("kind", "entity")}})
    frames = folder / "anomalies.csv"
    if frames.exists():
        table = pl.read_csv(frames, infer_schema_length=None, try_parse_dates=True)
        for r in table.head(limit).iter_rows(named=True):
            rows.append({"what": "time frame", **{c: _cell(r.get(c)) for c in ARTIFACT_FRAME_COLUMNS if c in r}})
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
                secret: bytes | None = None, key_history: KeyHistory | None = None) -> NightResult:
    """The night's folder: chunk results, quarantine, the markdown summary and, with the rows
    and the detector, the vendor's HTML report (report.html, anomalies.csv) and what rebuilds it.

    With a pseudonym ``secret`` the vendor's report keeps the real values and a copy drawn
    from pseudonymised rows is written to ``for-tracking/``: the one that goes to MLflow.
    ``key_history``: the bundle's (licanom.context.KeyHistory), for the report's "new to a key"
    counts; it holds pseudonyms where the model was trained on them, so it is used only without
    a ``secret`` (with one, the report judges what is new from the night's rows)."""
    out = night_dir(output_dir, vendor, watermark_before, watermark_after)
    out.mkdir(parents=True, exist_ok=True)
    chunks.write_parquet(out / "chunks.parquet")
    validation.quarantine.write_parquet(out / "quarantine.parquet")
    (out / "report.md").write_text(anomaly_report(vendor, chunks, model_version))
    if rows is not None and detector is not None and chunks.height:
        from licanom.report import detector_report_input, save_run, write_report

        inp = detector_report_input(detector, vendor=vendor, run_id=out.name,
                                    model=f"{detector.model} (version {model_version})", chunks=chunks, rows=rows,
                                    key_history=key_history if secret is None else None)
        save_run(inp, out)
        write_report(inp, out)
        if secret is not None:
            from dataclasses import replace

            from licanom.privacy import pseudonymise

            write_report(replace(inp, rows=pseudonymise(rows, secret)), out / TRACKING_COPY)
    return NightResult(vendor, model_version, watermark_before, watermark_after, validation.n_in,
                       validation.quarantine.height, chunks, out)


def log_night(tracker: Tracker, night: NightResult) -> str:
    """A run in the vendor's experiment: rows read, quarantined, chunks, anomalies, watermark."""
    with tracker.run(night.vendor, "nightly score", "nightly") as run_id:
        tracker.log_params(run_id, {"model_version": night.model_version,
                                    "watermark_before": night.watermark_before,
                                    "out_dir": None if night.out_dir is None else str(night.out_dir.resolve())})
        tracker.log_metrics(run_id, {
            "rows_read": night.rows_read, "rows_quarantined": night.rows_quarantined,
            "chunks_scored": night.chunks.height, "anomalies": night.n_anomalies,
            "watermark": night.watermark_after,
        })
        if night.out_dir is not None:
            tracker.log_artifact_file(run_id, night.out_dir / "report.md")
            private = (night.out_dir / TRACKING_COPY).is_dir()  # pseudonymised copy: only that one
            folder = night.out_dir / TRACKING_COPY if private else night.out_dir
            for name in ("report.html", "anomalies.csv"):
                if (folder / name).exists():
                    tracker.log_artifact_file(run_id, folder / name)
    return run_id
