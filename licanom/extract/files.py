"""Read a vendor's raw Web API Log from CSV, Parquet or NDJSON: a file, a glob or a folder."""

from __future__ import annotations

import csv
import glob as globlib
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl

from licanom.schema import UNREADABLE

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
        try:
            if kind == "ndjson":
                return pl.read_ndjson(path, infer_schema_length=None)
            # Everything as text: validation coerces and quarantines, inference would guess.
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=False)
            if not frame.select(pl.all_horizontal(pl.all().is_null()).any()).item():
                return frame
            # polars reads a blank line as a row of nulls; the line reader skips it
        except pl.exceptions.PolarsError:
            pass  # some line is malformed: read line by line, so that only that line is lost
        return _read_csv_lines(path) if kind == "csv" else _read_ndjson_lines(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise ExtractFileError(f"cannot read {path} as {kind}: {err}") from err


def _lines(path: Path) -> list[str]:
    """The file's lines, undecodable bytes replaced (as the fast CSV reader does)."""
    text = path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _csv_records(lines: list[str]) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, fields, "") per record, or (line number, None, why) for a record that
    cannot be parsed: that costs its first line only, parsing starts again on the next."""
    start = 0
    while start < len(lines):
        reader = csv.reader(islice(lines, start, None), strict=True)
        done = 0
        try:
            for fields in reader:
                yield start + done + 1, fields, ""
                done = reader.line_num
            return
        except csv.Error as err:
            yield start + done + 1, None, str(err)
            start += done + 1


def _read_csv_lines(path: Path) -> pl.DataFrame:
    """A CSV file record by record; a record that cannot be parsed or has more fields than the
    header becomes a row with only an UNREADABLE text."""
    lines = _lines(path)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, sum(map(len, lines))))  # a field may be the whole file
    try:
        records = [r for r in _csv_records(lines) if r[1] != []]  # blank lines are no rows
    finally:
        csv.field_size_limit(limit)
    if not records:
        return pl.DataFrame()
    if records[0][1] is None:
        raise ExtractFileError(f"cannot read {path} as csv: the header line cannot be parsed")
    names: list[str] = []
    for name in records[0][1]:  # a repeated name as polars renames it
        repeats = sum(n == name or n.startswith(f"{name}_duplicated_") for n in names)
        names.append(f"{name}_duplicated_{repeats - 1}" if repeats else name)
    rows: list[list[str | None]] = []
    why: list[str | None] = []
    for line, fields, error in records[1:]:
        if fields is not None and len(fields) > len(names):
            fields, error = None, f"{len(fields)} fields, the header has {len(names)}"
        if fields is None:
            rows.append([None] * len(names))
            why.append(f"{path} line {line}: cannot be read as CSV ({error})")
        else:
            rows.append([v if v != "" else None for v in fields] + [None] * (len(names) - len(fields)))
            why.append(None)
    return _text_frame(names, rows, why)


def _read_ndjson_lines(path: Path) -> pl.DataFrame:
    """An NDJSON file line by line, every value as text; a line that is not a JSON object
    becomes a row with only an UNREADABLE text."""
    objects: list[dict[str, Any] | None] = []
    why: list[str | None] = []
    for n, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            error = "" if isinstance(obj, dict) else "not a JSON object"
        except (ValueError, RecursionError) as err:
            obj, error = None, f"not valid JSON ({getattr(err, 'msg', err)})"
        objects.append(obj if not error else None)
        why.append(f"{path} line {n}: {error}" if error else None)
    if why and all(why):
        raise ExtractFileError(f"cannot read {path} as ndjson: no line is a JSON object ({why[0]})")
    names = list(dict.fromkeys(k for obj in objects if obj for k in obj))
    rows = [[_json_text(obj.get(k)) if obj else None for k in names] for obj in objects]
    return _text_frame(names, rows, why)


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _text_frame(names: list[str], rows: list[list[str | None]], why: list[str | None]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row")
    if any(why):
        frame = frame.with_columns(pl.Series(UNREADABLE, why, dtype=pl.String))
    return frame


def read_log(path: str | Path, after_id: int | None = None) -> pl.DataFrame:
    """Read every log file at ``path`` into one frame (columns as in the files).

    A column whose type differs between files is read as text. With ``after_id`` only rows
    whose Id is greater are kept (the watermark of the last processed row); rows whose Id
    cannot be read are kept for validation to quarantine.
    """
    frames = [f for f in (_read_one(p) for p in log_files(path)) if f.width]
    if not frames:
        return pl.DataFrame()
    # Not polars' supertypes: they would turn times into their integers and booleans into 0/1.
    dtypes: dict[str, set[pl.DataType]] = {}
    for f in frames:
        for name, dtype in f.schema.items():
            dtypes.setdefault(name, set()).add(dtype)
    mixed = {name for name, kinds in dtypes.items() if len(kinds) > 1}
    frame = pl.concat([f.with_columns(_text_column(f[c]) for c in mixed if c in f.columns) for f in frames],
                      how="diagonal")
    if after_id is not None and "Id" in frame.columns:
        from licanom.validate import _as_int

        ids = frame.select(_as_int("Id", frame.schema["Id"])).to_series()
        frame = frame.filter(ids.is_null() | (ids > after_id))
    return frame


def _text_column(s: pl.Series) -> pl.Series:
    """A column as text validation reads as the original: times in ISO 8601; what polars cannot
    cast (nested values, bytes that are not UTF-8) as Python writes it."""
    if isinstance(s.dtype, (pl.Datetime, pl.Date)):
        zone = isinstance(s.dtype, pl.Datetime) and s.dtype.time_zone is not None
        return s.cast(pl.Datetime("us", s.dtype.time_zone if zone else None)).dt.to_string(
            "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if zone else "")
        )
    if not s.dtype.is_nested():
        try:
            return s.cast(pl.String, strict=False)
        except pl.exceptions.PolarsError:
            pass
    return pl.Series(s.name, [None if v is None else (
        v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
    ) for v in s.to_list()], dtype=pl.String)
