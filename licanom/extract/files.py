"""Read a vendor's raw Web API Log from CSV, Parquet or NDJSON: a file, a glob or a folder."""

from __future__ import annotations

import glob as globlib
from pathlib import Path

import polars as pl

SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}


class ExtractFileError(RuntimeError):
    """A log file is missing, of an unknown kind, or unreadable (named in the message)."""


def log_files(path: str | Path) -> list[Path]:
    """The log files a path names: itself, the files a glob matches, or a folder's log files."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in sorted(globlib.glob(text, recursive=True))]
    else:
        p = Path(text)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        elif p.exists():
            files = [p]
        else:
            raise ExtractFileError(f"no such log file or folder: {p}")
    files = [f for f in files if f.is_file()]
    if not files:
        raise ExtractFileError(f"no log files (.csv, .parquet, .ndjson) found at {text}")
    unknown = [f for f in files if f.suffix.lower() not in SUFFIXES]
    if unknown:
        raise ExtractFileError(
            f"cannot tell the format of {unknown[0]}: use one of {sorted(SUFFIXES)}"
        )
    return files


def _read_one(path: Path) -> pl.DataFrame:
    kind = SUFFIXES[path.suffix.lower()]
    try:
        if path.stat().st_size == 0:
            return pl.DataFrame()
        if kind == "parquet":
            return pl.read_parquet(path)
        if kind == "csv":
            # Everything as text: validation coerces and quarantines, inference would guess.
            return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=False)
        return pl.read_ndjson(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise ExtractFileError(f"cannot read {path} as {kind}: {err}") from err


def read_log(path: str | Path, after_id: int | None = None) -> pl.DataFrame:
    """Read every log file at ``path`` into one frame (columns as in the files).

    Files whose column types disagree are concatenated as text. With ``after_id`` only rows
    whose Id is greater are kept (the watermark of the last processed row); rows whose Id
    cannot be read are kept for validation to quarantine.
    """
    frames = [f for f in (_read_one(p) for p in log_files(path)) if f.width]
    if not frames:
        return pl.DataFrame()
    try:
        frame = pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        frame = pl.concat(
            [f.select(pl.all().cast(pl.String, strict=False)) for f in frames], how="diagonal"
        )
    if after_id is not None and "Id" in frame.columns:
        ids = frame["Id"].cast(pl.Int64, strict=False) if frame["Id"].dtype != pl.String else (
            frame["Id"].str.strip_chars().cast(pl.Int64, strict=False)
        )
        frame = frame.filter(ids.is_null() | (ids > after_id))
    return frame
