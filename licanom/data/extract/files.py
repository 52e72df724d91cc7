"""Read a vendor's raw Web API Log from CSV (also .tsv), Parquet or NDJSON, the text ones also
gzipped: a file, a glob or a folder."""

from __future__ import annotations

import codecs
import csv
import glob as globlib
import gzip
import io
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl

from licanom.data.columns import REQUIRED_RAW
from licanom.data.schema import HEADER_AGAIN, UNREADABLE

log = logging.getLogger(__name__)

SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",  # the separator is read from the header
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}
# A text log compressed with gzip (``export.csv.gz``) is read as its kind; other compressions of a
# log (``.zip``, ``.bz2``, ...) are refused by name rather than skipped in a folder.
GZIP = ".gz"
_OTHER_COMPRESSIONS = (".zip", ".bz2", ".xz", ".zst", ".7z", ".tgz", ".lz4", ".rar", ".lzma", ".z", ".tar", ".lz")
# Spreadsheets: a log saved as one is refused by name rather than skipped in a folder.
_SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".xlsb", ".ods", ".numbers")
# the kinds read, as messages name them
_KINDS_READ = f"{', '.join(sorted(SUFFIXES))}, text ones also .gz"


def file_kind(path: Path) -> str | None:
    """The log kind of a file name (``csv``, ``parquet``, ``ndjson``), gzipped text included, or
    None for a name that is not a log's."""
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes[-1:] == [GZIP] and len(suffixes) >= 2:
        kind = SUFFIXES.get(suffixes[-2])
        return kind if kind in ("csv", "ndjson") else None
    return SUFFIXES.get(path.suffix.lower())


def _unread_log(path: Path) -> str | None:
    """Why a folder's file that may hold log rows cannot be read (a log compressed another way,
    ``part3.csv.bz2`` or ``export.zip``, or a spreadsheet), or None: a log, or no log at all."""
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and (suffixes[-1] in _OTHER_COMPRESSIONS or (suffixes[-1] == GZIP and file_kind(path) is None)):
        how = ("decompress it (Parquet compresses itself)" if ".parquet" in suffixes
               else "decompress it, or gzip it (.csv.gz and .ndjson.gz are read)")
        return f"a compressed file this reader does not read; {how}"
    if path.suffix.lower() in _SPREADSHEETS and not path.name.startswith("~$"):  # not Excel's lock file
        return "a spreadsheet; save it as CSV (or move it out of the log folder)"
    return None


def listed(names: list[str], limit: int = 5) -> str:
    """File names for a message: the first ``limit``, then how many more."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class ExtractFileError(RuntimeError):
    """A log file is missing, of an unknown kind, or unreadable (named in the message)."""


def _looked_for(text: str) -> str:
    """Where a relative path was looked for, for a message that it is not there: a relative
    ``source.path`` (or ``--logs``) is read from the current folder, which a scheduled job or a
    worker started elsewhere does not share ("" for an absolute path)."""
    if Path(text).is_absolute():
        return ""
    return (f" (looked for {os.path.abspath(text)}: a relative path, source.path or --logs, is read from the "
            "current folder)")


def log_files(path: str | Path, warn: bool = True) -> list[Path]:
    """The log files a path names: itself, the files a glob matches, or a folder's log files
    (``warn``: name a folder's files of no log kind in a warning, as a read does)."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in sorted(globlib.glob(text, recursive=True))]
    else:
        p = Path(text)
        if p.is_dir():
            # the folder's files and its sub-folders', less hidden ones (a ".part1.csv" being copied, an
            # editor's checkpoint copy, macOS's "._part1.csv"): a copy would otherwise win over its original
            inside = sorted(f for f in p.rglob("*") if f.is_file()
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
            refused = [(f, why) for f in inside if (why := _unread_log(f))]
            if refused:  # its rows would be lost without a word
                raise ExtractFileError(f"cannot read {refused[0][0]}: {refused[0][1]}")
            files = [f for f in inside if file_kind(f)]
            read = set(files)
            others = [str(f.relative_to(p)) for f in inside if f not in read]
            if others and warn:  # a README beside the logs; or a log under a name of no log kind, said by name
                log.warning("%s: %d file(s) not read, of no log kind (%s): %s", p, len(others), _KINDS_READ,
                            listed(others))
        elif p.exists():
            files = [p]
        else:
            raise ExtractFileError(f"no such log file or folder: {p}{_looked_for(text)}")
    files = [f for f in files if f.is_file()]
    if not files:
        raise ExtractFileError(f"no log files ({_KINDS_READ}) found at {text}{_looked_for(text)}")
    unknown = [f for f in files if file_kind(f) is None]
    if unknown:
        raise ExtractFileError(
            f"cannot tell the format of {unknown[0]}: use one of {sorted(SUFFIXES)} (text ones also gzipped, "
            f"e.g. .csv.gz)"
        )
    return files


# A last line without a line end, in a file changed this recently, is still being written.
SETTLE_SECONDS = 600
SEPARATORS = (",", ";", "\t", "|")


def _decode(data: bytes, path: Path, encoding: str | None, lines_before: int = 0) -> str:
    """The file's text: strict UTF-8 (a BOM dropped), or the declared encoding; never a
    replaced byte. A byte that is not UTF-8 stops the read with a one-line hint, naming its line
    (``lines_before``: the file's lines before ``data``, Excel's "sep=" line)."""
    try:
        return data.decode(encoding or "utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1 + lines_before
        bad = data[err.start:err.start + 1].hex()
        if encoding:
            raise ExtractFileError(f"{path} line {line}: byte 0x{bad} is not {encoding} (source.encoding): "
                                   "check the export's encoding") from None
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16's byte-order mark (Windows PowerShell's export)
            raise ExtractFileError(
                f"{path}: the file is UTF-16 (it starts with its byte-order mark); declare it, `source.encoding: "
                "utf-16` in the vendor's configuration (or `--encoding utf-16` with --logs)") from None
        raise ExtractFileError(
            f"{path} line {line}: byte 0x{bad} is not UTF-8; declare the export's encoding in the vendor's "
            "configuration, e.g. `source.encoding: cp1252` for a Windows export (or `--encoding cp1252` with --logs)"
        ) from None


def _recent(path: Path) -> bool:
    """Whether the file changed within SETTLE_SECONDS (it may still be being written)."""
    import time

    return time.time() - path.stat().st_mtime < SETTLE_SECONDS


def _unfinished(data: bytes, path: Path, newline: bytes = b"\n") -> bool:
    """Whether the last line has no line end and the file changed within SETTLE_SECONDS."""
    ends = (newline, newline.replace(b"\n", b"\r"))
    return bool(data) and not data.endswith(ends) and _recent(path)


def _newline(data: bytes, encoding: str | None) -> bytes:
    """A line end as the file's encoding writes it: ``\\n`` in UTF-8 and the one-byte encodings,
    two bytes in UTF-16 (in the order its byte-order mark says), four in UTF-32."""
    if not encoding:
        return b"\n"
    name = codecs.lookup(encoding).name
    if name.startswith(("utf-16", "utf-32")):
        width = 2 if name.startswith("utf-16") else 4
        big = name.endswith("-be") or (not name.endswith("-le") and data[:width] in (codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE))
        return b"\n".rjust(width, b"\x00") if big else b"\n".ljust(width, b"\x00")
    return b"\n"


def _fields(line: str, separator: str) -> list[str] | None:
    """One CSV line's fields as written (spaces kept), or None where the csv module cannot split
    it (a field past its size limit, a stray quote)."""
    try:
        return next(csv.reader([line.rstrip("\r\n")], delimiter=separator), [])
    except csv.Error:
        return None


def detect_separator(header: str) -> str:
    """The CSV separator of a header line: the one of ``SEPARATORS`` that splits it into the most
    Web API Log column names (",", when none does better). Hand-written: csv.Sniffer guesses from
    character counts and is misled by the ':' and '.' of times and addresses; the column names
    the header must hold are the surer sign."""
    from licanom.data.columns import RAW

    wanted = {c.lower() for c in RAW}

    def hits(sep: str) -> int:
        return sum(f.strip().strip('"').lower() in wanted for f in _fields(header, sep) or [])

    best = max(SEPARATORS, key=lambda sep: (hits(sep), sep == ","))
    return best if hits(best) > hits(",") else ","


def _padded(header: str, first_row: str, separator: str) -> bool:
    """Whether a CSV file puts a space after each separator (``Id, Key, IP``, as a spreadsheet or a
    hand-written export may): its header pads a field, or its first row starts every field but the
    first with a space (a plain header over padded rows)."""
    names, row = _fields(header, separator) or [], _fields(first_row, separator) or []
    return any(f != f.strip(" ") for f in names) or (len(row) > 1 and all(f.startswith(" ") for f in row[1:]))


def _unpadded(frame: pl.DataFrame) -> pl.DataFrame:
    """A padded file's values (read with the spaces after each separator skipped) without the
    spaces before the next separator: ``1 , , 2`` as ``1,,2``, a field of spaces only empty (null).
    The unreadable lines' column is kept as read."""
    def unpad(column: str) -> pl.Expr:
        value = pl.col(column).str.strip_chars(" ")
        return pl.when(value != "").then(value).alias(column)

    return frame.with_columns(unpad(c) for c in frame.columns if frame[c].dtype == pl.String and c != UNREADABLE)


def _read_one(path: Path, encoding: str | None = None, separator: str | None = None,
              hold_unfinished: bool = False, columns: Mapping[str, str | None] | None = None) -> pl.DataFrame:
    """One log file as read (every value as text for CSV and NDJSON), a CSV's repeated header lines
    taken into account (:func:`_headers_again`, which :func:`_read_file` applies: it knows the
    file's lines); ``columns``: the export's names of the log's (:func:`canonical_names`), which
    tell the column of the Ids that a broken line keeps."""
    return _read_file(path, encoding, separator, hold_unfinished, mapped=_mapped(columns))


def _mapped(columns: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """``source.columns`` (the export's names of log columns) by their names as :func:`_header_name`
    compares them."""
    return {_header_name(written): column for written, column in (columns or {}).items()}


def _log_column(name: str, mapped: Mapping[str, str | None] | None = None) -> str | None:
    """The log column that a file's column ``name`` holds: the one ``mapped`` (:func:`_mapped`) maps
    its name to, else the log's column of that name in any case; None for another column."""
    from licanom.data.columns import RAW

    key = _header_name(name)
    if mapped and key in mapped:
        return mapped[key]
    return next((c for c in RAW if c.casefold() == key), None)


def id_names(mapped: Mapping[str, str | None] | None = None) -> frozenset[str]:
    """The header names (as :func:`_header_name` compares them) of the log's Id column: ``Id`` in
    any case, or the export's own name that ``mapped`` (:func:`_mapped`) maps to it (``LogId``), not
    a name it maps to another column."""
    mapped = mapped or {}
    return frozenset({n for n, column in mapped.items() if column == "Id"} | ({"id"} if "id" not in mapped else set()))


def _header_name(name: str) -> str:
    """A header's column name as two headers are compared: without polars' "_duplicated_<n>", spaces,
    quotes or a byte order mark around it, in lower case."""
    return re.sub(r"_duplicated_\d+$", "", name).strip().strip('"\ufeff').strip().lower()


# A value that reads as a column's name (quotes, spaces or a byte order mark around it aside): a
# letter or "_" first, then letters, digits, spaces and "_-.()#/%" (`Time (UTC)`, `IP#`); no number,
# address or time reads so (each starts with a digit).
_NAME_LIKE = '^[\\s"\ufeff]*[^\\W\\d][\\w .()#/%-]*[\\s"\ufeff]*$'


def _headers_again(frame: pl.DataFrame, path: Path, lines_of: Callable[[list[int]], list[int | None]],
                   ids: frozenset[str] = frozenset({"id"})) -> pl.DataFrame:
    """A CSV file that joins exports (``cat a.csv b.csv``) holds their header lines again among its
    rows. Such a line (half or more of its values name the file's columns, in any order and case, a
    byte order mark or quotes aside, and its first value does too or every value reads as a name:
    :func:`_header_like`) is quarantined with its reason and its line
    (``lines_of``: the file's line of each of some rows), not read as a row of values; it is a row
    read all the same, so that rows read = valid + quarantined, and the quarantine shows where the
    exports were joined, but no bad row (:attr:`licanom.data.validate.ValidationResult.n_bad`). The
    rows after it are read by its order of columns, which another export may have changed. A header
    line of other columns than the first line's is refused (:func:`_other_header`): which value
    belongs to which column is not for the reader to guess. A file without its header line (its
    first row where the names belong) has no header to find again: the refusal of its missing
    columns says so. ``ids``: the names of the Id column (:func:`id_names`)."""
    from licanom.data.validate import looks_like_values

    cols = [c for c in frame.columns if c != UNREADABLE]
    if frame.height == 0 or len(cols) < 2 or any(frame.schema[c] != pl.String for c in cols) or looks_like_values(cols):
        return frame

    norm = _header_name

    def normed(c: str) -> pl.Expr:
        return pl.col(c).str.strip_chars().str.strip_chars('"\ufeff').str.strip_chars().str.to_lowercase()

    names = [norm(c) for c in cols]
    if len(set(names)) != len(names):
        return frame
    # first the rows whose first value is a column's name in any case (``productId`` for ProductId),
    # spaces, quotes or a byte order mark around it or not, or whose Id reads as a name (a header
    # line of other columns, its first one none licanom knows): a match over one or two columns,
    # which a large file pays little for (an Id's first digit ends it); then those rows in full
    spelled = '(?i)^[\\s"\ufeff]*(?:' + "|".join(pl.escape_regex(n) for n in names) + ')[\\s"\ufeff]*$'
    first = pl.col(cols[0]).str.contains(spelled).fill_null(False)
    id_cols = [c for c, n in zip(cols, names, strict=True) if n in ids]
    maybe = frame.select(pl.arg_where(
        first | (pl.col(id_cols[0]).str.contains(_NAME_LIKE).fill_null(False) if len(id_cols) == 1 else False))).to_series()
    if not len(maybe):
        return frame
    named = [normed(c).is_in(names).fill_null(False).cast(pl.UInt32) for c in cols]
    every = pl.all_horizontal(pl.col(c).str.contains(_NAME_LIKE).fill_null(False) for c in cols)
    full = frame[maybe].select((pl.sum_horizontal(named) >= max(2, (len(cols) + 1) // 2)) & (first | every)).to_series()
    at = maybe.filter(full).to_list()
    if not at:
        return frame
    # where each is: its line, or (where the file's records, read again, do not reach it) its row
    where = {row: f"line {n}" if n else f"row {row} (from 0, after the header)"
             for row, n in zip(at, lines_of(at), strict=True)}
    parts, start, order = [], 0, cols
    why = frame[UNREADABLE] if UNREADABLE in frame.columns else pl.Series(UNREADABLE, [None] * frame.height, pl.String)
    for row in [*at, frame.height]:
        # each file column's values under the column its header line names
        part = frame.slice(start, row - start).select(pl.col(c).alias(t) for c, t in zip(cols, order, strict=True))
        parts.append(part.select(cols).with_columns(why.slice(start, row - start)))
        if row == frame.height:
            break
        values = [norm(frame[c][row] or "") for c in cols]
        if sorted(values) != sorted(names):
            raise _other_header(path, where[row], [frame[c][row] or "" for c in cols], cols)
        order = [cols[names.index(v)] for v in values]  # what each file column holds from here on
        moved = "" if order == cols else ", the rows after it read by its order of columns"
        parts.append(pl.DataFrame({**{c: [None] for c in cols},
                                   UNREADABLE: [f"{path} {where[row]}: {HEADER_AGAIN}{moved}"]},
                                  schema={**{c: pl.String for c in cols}, UNREADABLE: pl.String}))
        start = row + 1
    return pl.concat(parts, how="vertical")


def _header_like(fields: list[str], names: list[str]) -> bool:
    """Whether a CSV record reads as a header line of a file of columns ``names`` (as
    :func:`_headers_again` finds one): half or more of its values name them, and its first value
    does too or every value reads as a name (a header line of other columns, its first one none
    licanom knows: ``Vendor,Id,ProductId,...``; a row's Id, time or address reads as none)."""
    wanted = {_header_name(n) for n in names}
    named = [_header_name(f) in wanted for f in fields]
    return (bool(named) and (named[0] or all(re.match(_NAME_LIKE, f) for f in fields))
            and sum(named) >= max(2, (len(names) + 1) // 2))


def _other_header(path: Path, where: str, values: list[str], names: list[str]) -> ExtractFileError:
    """The refusal of a file one of whose lines (``where``: "line 52", holding ``values``) is a header line of
    other columns than its first line's (``names``): the names that differ, a few of each (the line's
    other values are the first line's names again), as written."""
    wanted = {_header_name(n) for n in names}
    have = {_header_name(v) for v in values}
    extra = [repr(_shown_name(v)) for v in values if _header_name(v) and _header_name(v) not in wanted]
    lacking = [repr(_shown_name(n)) for n in names if _header_name(n) not in have]
    differ = (f": it names {listed(extra, 3)}" if extra else "") + (
        f"{' and' if extra else ': it'} lacks {listed(lacking, 3)}" if lacking else "")
    return ExtractFileError(f"cannot read {path}: {where} looks like a header line of other columns than its first "
                            f"line's{differ}; the file joins exports of two layouts? Read them as separate files")


def _shown_name(name: str, width: int = 40) -> str:
    """A name as a message shows it: without polars' "_duplicated_<n>", the quotes and spaces around
    it, at most ``width`` characters."""
    name = re.sub(r"_duplicated_\d+$", "", name).strip().strip('"\ufeff').strip()
    return name if len(name) <= width else name[: width - 1] + "…"


def _read_file(path: Path, encoding: str | None = None, separator: str | None = None,
               hold_unfinished: bool = False, mapped: Mapping[str, str | None] | None = None) -> pl.DataFrame:
    ids = id_names(mapped)
    kind = file_kind(path)
    if kind is None:
        raise ExtractFileError(f"cannot tell the format of {path}: use one of {sorted(SUFFIXES)}")
    try:
        if path.stat().st_size == 0:
            return pl.DataFrame()
        if kind == "parquet":
            try:
                return pl.read_parquet(path)
            except (pl.exceptions.PolarsError, OSError):
                if hold_unfinished and _recent(path):  # still being written: the next read takes it whole
                    return pl.DataFrame()
                raise
        data = path.read_bytes()
        if path.suffix.lower() == GZIP:
            try:
                data = gzip.decompress(data)
            except EOFError as err:  # cut short: still being written, or broken
                if hold_unfinished and _recent(path):  # the next read takes it whole
                    return pl.DataFrame()
                raise ExtractFileError(f"cannot read {path} as gzip: the file is cut short ({err})") from err
            except (OSError, zlib.error) as err:  # not gzip, a damaged stream or checksum
                raise ExtractFileError(f"cannot read {path} as gzip: {err}") from err
        newline = _newline(data, encoding)
        if hold_unfinished and _unfinished(data, path, newline):
            # a line still being written is left for the next read, which finds it complete
            data = data[: data.rfind(newline) + len(newline)]
            if not data:
                return pl.DataFrame()
        if encoding and codecs.lookup(encoding).name != "utf-8":
            data = _decode(data, path, encoding).encode()  # polars reads UTF-8
        data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
        declared = re.match(rb"sep=(.)\r?\n", data) if kind == "csv" else None
        if declared:  # Excel's first line "sep=;": the separator, then the header
            data = data[declared.end():]
            separator = separator or declared.group(1).decode()
        skipped = 1 if declared else 0  # lines before ``data``, for the line numbers
        # the header and the first row, by index (a split would copy the whole file)
        end = data.find(b"\n")
        header = _decode(data[: end if end >= 0 else len(data)], path, None, skipped) if kind == "csv" else ""
        sep = separator or (detect_separator(header) if kind == "csv" else ",")
        row_end = data.find(b"\n", end + 1) if end >= 0 else -1
        # (only to tell the padding: a byte that is not UTF-8 is named below, on its own line)
        first_row = data[end + 1: row_end if row_end >= 0 else len(data)].decode("utf-8", "replace") if end >= 0 else ""
        padded = kind == "csv" and _padded(header, first_row, sep)

        def lines_of(rows: list[int]) -> list[int | None]:  # a CSV's lines of the few rows a message names
            return _row_lines(_decode(data, path, None, skipped), rows, sep, padded, skipped)

        if padded:
            # "Id, Key, IP": a file written with a space after each separator pads its values too;
            # Python's csv reader skips the space before a quote (`, "Smith, John"`), polars' does not
            return _headers_again(_unpadded(_read_csv_lines(path, _decode(data, path, None, skipped), sep,
                                                            skip_spaces=True, lines_before=skipped, mapped=mapped)),
                                  path, lines_of, ids)
        lead = _LEADING_SPACE.match(data).end() if kind == "ndjson" else 0  # by index: lstrip() copies the file
        if kind == "ndjson" and data[lead:lead + 1] in (b"[", b"{") and _one_json_document(data, lead):
            document = _read_json_document(path, _decode(data, path, None))
            if document is not None:  # else lines, each read on its own below
                return document
            if data[lead:lead + 1] == b"[":  # an array is no lines of objects: its lines would be no rows
                if hold_unfinished and _recent(path):  # still being written: the next read takes it whole
                    return pl.DataFrame()
                raise ExtractFileError(f"cannot read {path} as a JSON array: {_json_error(_decode(data, path, None))}")
        try:
            if kind == "ndjson":
                return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
            # Everything as text: validation coerces and quarantines, inference would guess.
            # Strict UTF-8: polars fails on a byte that is not, and _decode below names it.
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False, separator=sep, encoding="utf8",
                                truncate_ragged_lines=False)
            empty = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
            n_empty = int(empty.sum())
            # polars reads a blank line as a row of nulls (as it does a line of separators only, a
            # row the line reader keeps for validation), and a line of fewer fields than the
            # header as one padded with nulls; the line reader skips the first and refuses the last.
            # Rows of nulls exactly as many as the blank lines are those lines: dropped here, so
            # that a blank line (an export's last, often) does not send the file to the line reader
            if n_empty and n_empty == _blank_lines(data):
                frame = frame.filter(~empty)
                n_empty = 0
            if not n_empty and not _short_line(data, sep, frame):
                return _headers_again(frame, path, lines_of, ids)
        except pl.exceptions.PolarsError:
            pass  # some line is malformed: read line by line, so that only that line is lost
        text = _decode(data, path, None, skipped)
        return (_headers_again(_read_csv_lines(path, text, sep, lines_before=skipped, mapped=mapped), path, lines_of, ids)
                if kind == "csv" else _read_ndjson_lines(path, text, ids))
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        if isinstance(err, ExtractFileError):
            raise
        raise ExtractFileError(f"cannot read {path} as {kind}: {err}") from err


def _blank_lines(data: bytes) -> int:
    """How many lines of a text file's bytes are empty (after the first: a header is never blank),
    not counting the empty lines within a quoted value (which are no lines of the file's rows)."""
    if b'"' in data:
        data = re.sub(rb'"[^"]*"', b'""', data)
    return len(re.findall(rb"\n(?=\r?\n)", data))


def _short_line(data: bytes, separator: str, frame: pl.DataFrame) -> bool:
    """Whether some line of a CSV file that polars read as ``frame`` may hold fewer fields than
    its header (polars pads such a line with nulls, so a line cut short would pass as a row whose
    last values are cut). By counting separators: a file of well-formed lines holds (fields - 1)
    for each line and the header, and more only where quoted values hold separators (polars
    refuses a line of more fields, so no line can make up for a short one). Fewer: a line is short.
    More: the separators outside quoted values are counted again (a quoted value's own quotes
    doubled, or its line ends, change nothing). Exactly as many, with quoted separators that a
    short line's missing ones happen to balance, would pass: a file that both holds separators
    within values and is cut."""
    if frame.width < 2:
        return False
    found, expected = data.count(separator.encode()), (frame.width - 1) * (frame.height + 1)
    if found > expected and b'"' in data:
        found = re.sub(rb'"[^"]*"', b"", data).count(separator.encode())
    return found != expected


def _lines(text: str) -> list[str]:
    """The text's lines, each with its line end."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _csv_records(lines: list[str], separator: str = ",",
                 skip_spaces: bool = False) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, fields, "") per record, or (line number, None, why) for a record that
    cannot be parsed: that costs its first line only, parsing starts again on the next.
    ``skip_spaces``: the spaces after a separator are no part of the field."""
    start = 0
    while start < len(lines):
        reader = csv.reader(islice(lines, start, None), strict=True, delimiter=separator,
                            skipinitialspace=skip_spaces)
        done = 0
        try:
            for fields in reader:
                yield start + done + 1, fields, ""
                done = reader.line_num
            return
        except csv.Error as err:
            yield start + done + 1, None, str(err)
            start += done + 1


def _blank(fields: list[str] | None, skip_spaces: bool = False) -> bool:
    """Whether a CSV record is a blank line, no row; so is, padded (``skip_spaces``), a line of spaces."""
    return fields == [] or (skip_spaces and fields is not None and not "".join(fields).strip())


def _row_lines(text: str, rows: list[int], separator: str = ",", skip_spaces: bool = False,
               lines_before: int = 0) -> list[int | None]:
    """The line of a CSV file (from 1) on which each of ``rows`` (its rows as read, from 0 after the
    header) starts: blank lines and the line ends within a quoted value are no rows, a row joined
    with the next export's header (:func:`_joined_header`) shares its line with it, and
    ``lines_before`` lines (Excel's "sep=") come before ``text``. The file read again record by
    record, up to the last of ``rows``: for the few rows a message names (None for a row the records
    do not reach, where polars and Python's csv module would split the file apart)."""
    last, found, row = max(rows), {}, 0
    names: list[str] | None = None
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text)))  # a field may be the whole file
    try:
        for line, fields, _ in _csv_records(_lines(text), separator, skip_spaces):
            if _blank(fields, skip_spaces):
                continue
            if names is None:
                names = fields or []
                continue
            for _ in range(2 if _joined_header(fields, names) is not None else 1):
                found[row] = line + lines_before
                row += 1
            if row > last:
                break
    finally:
        csv.field_size_limit(limit)
    return [found.get(r) for r in rows]


def _read_csv_lines(path: Path, text: str, separator: str = ",", skip_spaces: bool = False,
                    lines_before: int = 0, mapped: Mapping[str, str | None] | None = None) -> pl.DataFrame:
    """A CSV file record by record; a record that cannot be parsed or has more or fewer fields
    than the header becomes a row with an UNREADABLE text, and of a line cut short only the fields
    before its last (each closed by a separator: whole), of a line too long its Id where sure; the
    text of a line of more or fewer fields says whether it kept an Id (:data:`ID_KEPT`) or none
    (:data:`NO_ID_READ`) (``skip_spaces``: see :func:`_csv_records`;
    ``lines_before``: lines of the file before ``text``, Excel's "sep=" line, for the line numbers;
    ``mapped``: the export's names of log columns, :func:`_mapped`)."""
    lines = _lines(text)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, sum(map(len, lines))))  # a field may be the whole file
    try:
        records = [r for r in _csv_records(lines, separator, skip_spaces) if not _blank(r[1], skip_spaces)]
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
    long: list[tuple[int, list[str]]] = []  # (row, fields) of the lines of more fields than the header
    uneven: list[int] = []  # the rows of the lines of more or fewer fields than the header
    trailing: list[int] = []  # of those, the rows of the lines of one more, an empty last (a separator at the end)
    last_filled = False  # a line of one field more whose last is not empty: a column the header does not name
    data_lines = 0
    for line, fields, error in records[1:]:
        joined = _joined_header(fields, names)
        if joined is not None:  # an export's last row without its line end, then the next export's header
            rows.extend([v if v != "" else None for v in part] for part in joined)
            why.extend([None, None])  # the header line is quarantined, with its reason, by _headers_again
            data_lines += 1
            continue
        data_lines += 1
        whole: list[str] = []  # of a line cut short, the fields a separator closed: read as written
        if fields is not None and len(fields) != len(names):  # a line cut short, or joined with another
            if _header_like(fields, names) and {_header_name(f) for f in fields if _header_name(f)} \
                    != {_header_name(n) for n in names}:  # a header line of more or fewer columns (exports joined)
                raise _other_header(path, f"line {line + lines_before}", fields, names)
            uneven.append(len(rows))
            if len(fields) > len(names):
                long.append((len(rows), fields))  # its Id, where sure, is found below
            if len(fields) == len(names) + 1:
                if fields[-1].strip():
                    last_filled = True
                else:
                    trailing.append(len(rows))
            whole = fields[: len(fields) - 1] if len(fields) < len(names) else []
            fields, error = None, f"{len(fields)} fields, the header has {len(names)}"
        if fields is None:  # quarantined by its reason; its Id, where whole, accounts for it
            rows.append([v if v != "" else None for v in whole] + [None] * (len(names) - len(whole)))
            why.append(f"{path} line {line + lines_before}: cannot be read as CSV ({error})")
        else:
            rows.append([v if v != "" else None for v in fields])
            why.append(None)
    at = [i for i, n in enumerate(names) if _log_column(n, mapped) == "Id"]
    if long and len(at) == 1:  # each such row keeps its Id where the line says it for sure
        longs = _ids_of_long_lines([f for _, f in long], names, separator, mapped)
        for (row, _), found in zip(long, longs, strict=True):
            rows[row][at[0]] = found if found is None or _between_neighbours(rows, row, at[0], int(found)) else None
    for row in uneven:  # whether the line kept an Id says its reason, not only its Id column
        kept = len(at) == 1 and rows[row][at[0]] is not None
        why[row] = f"{str(why[row]).removesuffix(')')}, {ID_KEPT if kept else NO_ID_READ})"
    # the export's way, not a line's mistake; not where a line of one field more fills its last field: a
    # header that lacks one column's name, the last column mostly empty, would otherwise be told to drop a separator
    if trailing and not last_filled and len(trailing) >= TRAILING_SHARE * data_lines:
        lines_said = ("every data line ends" if len(trailing) == data_lines
                      else f"{len(trailing):,} of {data_lines:,} data lines end")
        shown = "tab" if separator == "\t" else repr(separator)
        for row in trailing:
            why[row] = (f"{str(why[row]).removesuffix(')')}, {lines_said} with a separator the header line lacks: "
                        f"a trailing {shown}?)")
    return _text_frame(names, rows, why)


# A file whose data lines of one field more than the header, the last empty, are this share of its
# data lines or more, and none of whose lines of one field more has a last field that is not empty,
# is written with a separator at the end of each line (and none at the header's): the reason of such
# a line says so. The lines are quarantined all the same (a header that lacks a column's name, its
# last column empty on every line, would read the same way, each value after it under the name before it).
TRAILING_SHARE = 0.9


# the end of the reason of a line of more or fewer fields than the header that keeps no Id (none
# sure; of a line cut short, none whole), and of one that keeps it (not named: one reason for all)
NO_ID_READ = "no Id could be read from it"
ID_KEPT = "its Id kept"
# how many rows before and after a line of a field too many _between_neighbours looks at for an Id
NEIGHBOURS_LOOKED_AT = 1_000


def _between_neighbours(rows: list[list[str | None]], row: int, at: int, found: int) -> bool:
    """Whether an Id found for a line of a field too many lies between the Ids of the nearest rows
    before and after it that have one written plainly (digits): a last guard against a shifted
    reading (an export in Id order puts a line's own Id there; a wrong, higher one could move a
    night's watermark past rows). A file out of Id order there loses the Id, as before it was found."""
    def plain(r: int) -> int | None:
        text = rows[r][at]
        return int(text) if text is not None and text.isdigit() else None

    near = NEIGHBOURS_LOOKED_AT  # a file of Ids not written plainly is not read through for each line
    before = next((v for v in (plain(r) for r in range(row - 1, max(row - 1 - near, -1), -1)) if v is not None), None)
    after = next((v for v in (plain(r) for r in range(row + 1, min(row + 1 + near, len(rows)))) if v is not None), None)
    return (before is None or before < found) and (after is None or found < after)


# How many lines of a field too many a file's read recovers the Ids of: its first ones; the rest keep
# none, as each did before. Such a line is an export's exception (one value's unquoted separator); a
# file of many is one whose header lacks a column (a separator too many at each line's end), most of
# its rows quarantined and its night refused by the bad-row limit. Their Ids, three values read for
# each checked column of each line, cost the read of a file of 100,000 such lines about twice the
# time and a third more memory: bounded here to what a tenth of that file costs.
MAX_LONG_LINE_IDS = 10_000


def _ids_of_long_lines(lines: list[list[str]], names: list[str], separator: str,
                       mapped: Mapping[str, str | None] | None = None) -> list[str | None]:
    """The Id of each CSV line of more fields than its header ``names``, where it is sure. Only a
    line of one field more (a separator within a value that is not quoted, a separator too many at
    its end) may be sure: every way of putting the extra separator into one value whose integer
    columns (Id, ProductId, State, ...) then read as integers and whose IP reads as an address (or
    is empty) gives that line the same Id, an integer as the Id column reads it, and a way that
    leaves none of Id, ProductId and State empty gives it (a way that leaves one of them empty and
    reads an Id that is no integer is no way of the line's), or, for a row that lacks one of them (no
    way fills it), every way that fits gives it, none an Id that is no integer, and no way at all
    gives another integer; the integer's text is kept (``1600.0``:
    ``1600``). An Id of digits that holds the separator or a comma (``1,000``: the Id 1 or 1000?
    ``1600,0``: 1600 or 16000?) counts as one such way, and is no integer. None where no way fits, two give two Ids
    or the one is not an integer; None for a line of two fields too many or more: its true reading
    may put them into two values, none of these ways, and a shifted one can fit (an address or a
    State read as the Id, higher than the line's own: a watermark moved past rows); None past the
    first :data:`MAX_LONG_LINE_IDS` lines of one field too many. ``mapped``: the export's names of
    log columns (:func:`_mapped`)."""
    from licanom.data.columns import REQUIRED_RAW
    from licanom.data.schema import is_ip_address
    from licanom.data.validate import _INTS, _as_int

    column = [_log_column(n, mapped) for n in names]
    i = column.index("Id")
    ints = [j for j, c in enumerate(column) if c in _INTS and j != i]
    ip = [j for j, c in enumerate(column) if c == "IP"]
    k = len(names)
    one = [n for n, fields in enumerate(lines) if len(fields) == k + 1][:MAX_LONG_LINE_IDS]
    found: list[str | None] = [None] * len(lines)
    if not one:
        return found
    # a reading puts the extra separator into column p: a column j before p reads field j ("L"),
    # column p fields p and p + 1 joined ("J"), a column after p field j + 1 ("R"); each checked
    # column's three values are read once, line by line as columns, and a reading's fit is theirs
    fields = pl.DataFrame([lines[n] for n in one], schema={f"f{j}": pl.String for j in range(k + 1)}, orient="row")
    sides = {"L": lambda j: pl.col(f"f{j}"), "R": lambda j: pl.col(f"f{j + 1}"),
             "J": lambda j: pl.concat_str(pl.col(f"f{j}"), pl.lit(separator), pl.col(f"f{j + 1}"))}
    values = fields.select(pl.when(v.str.strip_chars() != "").then(v.str.strip_chars()).alias(f"{x}{j}")
                           for j in (i, *ints, *ip) for x, side in sides.items() for v in [side(j)])
    addresses = {a for a in pl.concat([values[f"{x}{j}"] for j in ip for x in sides]).drop_nulls().unique()
                 if is_ip_address(a)} if ip else set()
    # each checked value: does it fit its column (an integer, an address; empty where the column may
    # be), and, for a required column (Id, ProductId, State), does it fit not empty ("!": strictly)
    required = [j for j in ints if column[j] in REQUIRED_RAW]
    ok = {f"{x}{j}": pl.col(f"{x}{j}").is_null()
          | (_as_int(f"{x}{j}", pl.String).is_not_null() if j in ints else pl.col(f"{x}{j}").is_in(sorted(addresses)))
          for j in (*ints, *ip) for x in sides}
    ok |= {f"{x}{i}": pl.col(f"{x}{i}").str.contains(r"^[+-]?\d+(?:\D\d+)*$").fill_null(False) for x in sides}
    # each checked value read once; the Id's integer's text, or (no integer) its text marked so
    checks = values.select(*(e.alias(name) for name, e in ok.items()), *(
        pl.coalesce(_as_int(f"{x}{i}", pl.String, decimal_comma=False).cast(pl.String),
                    pl.lit("?") + pl.col(f"{x}{i}")).alias(f"id{x}")
        for x in sides))
    checks = checks.with_columns((pl.col(f"{x}{j}") & values[f"{x}{j}"].is_not_null()).alias(f"!{x}{j}")
                                 for j in required for x in sides)

    def fits(p: int, strict: bool = False) -> pl.Expr:
        def part(j: int) -> str:
            side = "L" if j < p else "J" if j == p else "R"
            return f"!{side}{j}" if strict and j in required else f"{side}{j}"
        return pl.all_horizontal(pl.col(part(j)) for j in (i, *ints, *ip))

    def ids(strict: bool) -> pl.Expr:
        """The Ids of the readings that put the extra separator after the Id, into it, before it."""
        side_fits = {"L": pl.any_horizontal(False, *(fits(p, strict) for p in range(i + 1, k))), "J": fits(i, strict),
                     "R": pl.any_horizontal(False, *(fits(p, strict) for p in range(i)))}
        return pl.concat_list(pl.when(fit).then(pl.col(f"id{x}")) for x, fit in side_fits.items()).list.drop_nulls()\
            .list.unique()

    # sure: the readings give one integer Id, a reading that leaves no required column empty gives it,
    # and none gives an Id that is no integer but for a reading that leaves a required column empty
    # (``25204045,4113`` as the Id, its ProductId empty: no reading of the line's). A reading that
    # leaves one empty still counts its integer Id against another's (a shifted one can fit alone).
    # A row that lacks a required value (its ProductId) has no reading that leaves none empty: its Id
    # is sure where the readings that fit give one integer Id and none an Id that is no integer, and
    # no reading there is, fitting or not, gives another integer, so that no shifted reading can be
    # the line's (the Id the first column: every reading gives its first field, or that field joined
    # with the next, no integer)
    def all_integers(ids: pl.Expr) -> pl.Expr:  # none of them an Id that is no integer
        return ids.list.eval(pl.element().filter(pl.element().str.starts_with("?"))).list.len() == 0

    loose = ids(False)
    integers = loose.list.eval(pl.element().filter(~pl.element().str.starts_with("?")))
    strict = ids(True)
    # the Id of each reading there is: after the Id (a column after it), into it, before it
    every = pl.concat_list(pl.col(f"id{x}") for x, there in (("L", i < k - 1), ("J", True), ("R", i > 0)) if there)
    any_integer = every.list.drop_nulls().list.eval(pl.element().filter(~pl.element().str.starts_with("?"))).list.unique()
    lacking = (strict.list.len() == 0) & all_integers(loose) & (any_integer.list.len() == 1)
    sure = checks.select(pl.when((integers.list.len() == 1) & ((all_integers(strict) & (strict.list.len() == 1)) | lacking))
                         .then(integers.list.first())).to_series()
    for n, value in zip(one, sure, strict=True):
        found[n] = value
    return found


def _whole_id(ids: frozenset[str]) -> re.Pattern[str]:
    """An NDJSON line's Id (its key: one of ``ids`` in any case, before any nested object, the key
    as written and the Id its groups), ended by its separator."""
    keys = "|".join(re.escape(n) for n in sorted(ids))
    return re.compile(r'^\s*\{[^{]*?"((?i:' + keys + r'))"\s*:\s*"?(\d+)"?\s*[,}]')


def _joined_header(fields: list[str] | None, names: list[str]) -> tuple[list[str], list[str]] | None:
    """A CSV record that is a row whose line end is missing, joined to the next export's header
    (``cat a.csv b.csv`` where a.csv ends without one): ``"...,mc03Id,ProductId,..."``. The row
    and the header line apart, or None for any other record. The row's last value and the header's
    first name share a field; the name, the one of the header's names the record's last fields
    lack, is its end."""
    k = len(names)
    if fields is None or k < 2 or len(fields) != 2 * k - 1:
        return None
    wanted = [_header_name(n) for n in names]
    tail = [_header_name(f) for f in fields[k:]]
    missing = [n for n in wanted if n not in tail]
    if len(missing) != 1 or sorted([*tail, missing[0]]) != sorted(wanted):
        return None
    shared = fields[k - 1]
    cut = len(shared) - len(missing[0])
    if cut < 0 or _header_name(shared[cut:]) != missing[0]:
        return None
    return [*fields[: k - 1], shared[:cut]], [shared[cut:], *fields[k:]]


def _read_ndjson_lines(path: Path, text: str, ids: frozenset[str] = frozenset({"id"})) -> pl.DataFrame:
    """An NDJSON file line by line, every value as text; a line that is not a JSON object
    becomes a row with only an UNREADABLE text (and its Id where whole: ``ids``, :func:`id_names`)."""
    whole_id = _whole_id(ids)
    objects: list[dict[str, Any] | None] = []
    why: list[str | None] = []
    for n, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            error = "" if isinstance(obj, dict) else "not a JSON object"
        except (ValueError, RecursionError) as err:
            what = err.msg.removesuffix(" at") + f" at column {err.colno}" if isinstance(err, json.JSONDecodeError) \
                else str(err)
            obj, error = None, f"not valid JSON ({what})"
            # a line cut short keeps its Id where the line holds it whole (as a CSV line's closed
            # fields): the quarantined row is then in the night's ledger and the source's count
            whole = whole_id.search(line)
            if whole:
                objects.append({whole.group(1): whole.group(2)})
                why.append(f"{path} line {n}: {error}")
                continue
        objects.append(obj if not error else None)
        why.append(f"{path} line {n}: {error}" if error else None)
    if why and all(why):
        raise ExtractFileError(f"cannot read {path} as ndjson: no line is a JSON object ({why[0]})")
    names = list(dict.fromkeys(k for obj in objects if obj for k in obj))
    rows = [[_json_text(obj.get(k)) if obj else None for k in names] for obj in objects]
    return _text_frame(names, rows, why)


_LEADING_SPACE = re.compile(rb"\s*")


def _one_json_document(data: bytes, start: int = 0) -> bool:
    """Whether a JSON file's bytes are one document (an array of rows, or GetWebAPILog's answer
    saved whole) rather than one object per line: the first line alone (from ``start``, past the
    leading spaces) is not a whole JSON value."""
    end = data.find(b"\n", start)
    first = data[start: end if end >= 0 else len(data)]
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        return True
    # on one line: "[{...}, {...}]", or the API's answer {"logs": [...], "result": 0}
    keys = {str(k).lower(): v for k, v in value.items()} if isinstance(value, dict) else {}
    return isinstance(value, list) or (isinstance(keys.get("logs"), list) and "id" not in keys)


def _json_error(text: str) -> str:
    """Where and why a JSON document does not parse, in words."""
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return f"line {err.lineno}, column {err.colno}: {err.msg}"
    except (ValueError, RecursionError) as err:
        return str(err) or type(err).__name__
    return "it parses"


def _read_json_document(path: Path, text: str) -> pl.DataFrame | None:
    """A JSON file holding the rows as one array, or GetWebAPILog's answer (an object whose
    ``logs``, in any case, is that array), every value as text; an item that is not an object is a
    row with only its UNREADABLE reason. None where the text is not one JSON document (lines of
    JSON, one of them broken: read line by line)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict):
        logs = {k.lower(): v for k, v in doc.items()}.get("logs")
        if not isinstance(logs, list):
            raise ExtractFileError(f"cannot read {path}: a JSON object without a 'logs' array (GetWebAPILog's "
                                   f"answer holds one); it has {list(doc)[:10]}")
        doc = logs
    if not isinstance(doc, list):
        raise ExtractFileError(f"cannot read {path}: its JSON is a {type(doc).__name__}, not rows")
    objects = [item if isinstance(item, dict) else None for item in doc]
    if doc and not any(objects):
        raise ExtractFileError(f"cannot read {path}: no item of its JSON array is an object of a row's values")
    why = [None if item is not None else f"{path} item {i}: not a JSON object" for i, item in enumerate(objects)]
    names = list(dict.fromkeys(k for obj in objects if obj for k in obj))
    return _text_frame(names, [[_json_text(obj.get(k)) if obj else None for k in names] for obj in objects], why)


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _text_frame(names: list[str], rows: list[list[str | None]], why: list[str | None]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row")
    if any(why):
        frame = frame.with_columns(pl.Series(UNREADABLE, why, dtype=pl.String))
    return frame


def read_log(path: str | Path, after_id: int | None = None, *, encoding: str | None = None,
             separator: str | None = None, hold_unfinished: bool | None = None,
             time_format: str | None = None, timezone: str | None = None,
             columns: Mapping[str, str | None] | None = None) -> pl.DataFrame:
    """Read every log file at ``path`` into one frame (columns as in the files).

    A column whose type differs between files is read as text. Text files are strict UTF-8 or
    ``encoding``; a CSV's ``separator`` is detected from its header unless given.

    With ``after_id`` only rows whose Id is greater are kept (the watermark of the last
    processed row). A row whose Id cannot be read is kept when the readable Id before it in its
    file (or, at the file's start, the one after it) is greater, or when its file has none: it
    is read once, with its neighbours, for validation to quarantine. An incremental read
    (``after_id`` given; ``hold_unfinished`` overrides) leaves out a last line that has no line
    end in a file changed within ``SETTLE_SECONDS``: the line is being written, and the next
    read takes it whole. ``time_format``: see :func:`with_time_format`; ``timezone``: see
    :func:`with_timezone`; ``columns``: the export's names of the log's columns, see
    :func:`canonical_names`.
    """
    return read_new_rows(path, after_id, encoding=encoding, separator=separator, hold_unfinished=hold_unfinished,
                         time_format=time_format, timezone=timezone, columns=columns)[0]


def read_new_rows(path: str | Path, after_id: int | None = None, *, encoding: str | None = None,
                  separator: str | None = None, hold_unfinished: bool | None = None,
                  time_format: str | None = None, timezone: str | None = None,
                  columns: Mapping[str, str | None] | None = None) -> tuple[pl.DataFrame, int]:
    """:func:`read_log`, and how many distinct readable Ids of the files lie at or below
    ``after_id`` (0 without one): a count that grows only by rows that arrived late, below a
    watermark that has already passed them (the nightly scoring compares it night by night); a
    row delivered again under an Id the files already hold does not add to it."""
    frame, below = read_new_rows_below(path, after_id, encoding=encoding, separator=separator,
                                       hold_unfinished=hold_unfinished, time_format=time_format, timezone=timezone,
                                       columns=columns)
    return frame, below.total


@dataclass(frozen=True)
class IdsBelow:
    """A file source's readable Ids at or below a watermark, counted (:func:`read_new_rows_below`):
    distinct in all (``total``) and in each file (``per_file``, by its name in the source:
    :func:`source_names`; a file without such an Id is not listed), the rows that hold them
    (``rows``: a row delivered again under an Id the source holds counts again), each file's lowest
    such Id (``first``, by the same names) and each file read by that name (``names``: the rows'
    ``_file`` -> the name), so that a night can count its own rows per file as the next night will
    find them."""

    total: int = 0
    per_file: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    first: dict[str, int] = field(default_factory=dict)

    @property
    def copies(self) -> int:
        """Rows beyond one per distinct Id: copies of rows under Ids the source holds already."""
        return self.rows - self.total


def source_names(path: str | Path, files: list[Path]) -> dict[str, str]:
    """Each log file's name in the source ``path`` names (:func:`log_files`), by ``str(file)``: its
    path relative to the folder (of a glob, to the folder before its first wildcard), as
    ``/``-separated text; of a source of one file, its name. The name stays when the folder moves
    (``source.path`` edited to its new place); a file renamed or moved within it is another name."""
    parts = Path(path).parts
    magic = [i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")]
    root = ((Path(*parts[: magic[0]]) if magic[0] else Path()) if magic
            else Path(path) if Path(path).is_dir() else None)  # the folder, looked up once per read

    def name(file: Path) -> str:
        if root is None:
            return file.name
        try:
            return file.relative_to(root).as_posix()
        except ValueError:  # not under it (a glob's symbolic link): the path as read
            return file.as_posix()

    return {str(f): name(Path(f)) for f in files}


def read_new_rows_below(path: str | Path, after_id: int | None = None, *, encoding: str | None = None,
                        separator: str | None = None, hold_unfinished: bool | None = None,
                        time_format: str | None = None, timezone: str | None = None,
                        columns: Mapping[str, str | None] | None = None) -> tuple[pl.DataFrame, IdsBelow]:
    """:func:`read_new_rows`, with the count of the readable Ids at or below ``after_id`` per file
    too (:class:`IdsBelow`; all 0 without ``after_id``): counts, not the Ids, so that a night does
    not hold every Id of its source while it scores."""
    hold = after_id is not None if hold_unfinished is None else hold_unfinished
    read = [(p, with_timezone(with_time_format(
                canonical_names(_read_one(p, encoding, separator, hold, columns), p, columns), time_format), timezone))
            for p in log_files(path)]
    if read and not any(f.height for _, f in read):  # no row: named, not a bare "empty"
        from licanom.data.validate import ValidationError, require_columns  # the input cannot be used (exit 3)

        # a header line first: one that lacks the log's columns (an error page of one line saved as the
        # export) is refused for them, naming the file, as it is with rows under it; not called empty, nor,
        # in a night's read after a watermark, "nothing new" night after night while the export is broken
        headed = [(p, f) for p, f in read if f.width]
        if len(headed) > 1:
            _check_columns_per_file(headed)
        elif headed:
            require_columns(headed[0][1].columns, f"{headed[0][0]}: the log")
        if after_id is None:  # after a watermark, a header of the log's columns and no row: nothing new
            what = "no header, no rows" if not any(f.width for _, f in read) else "a header, no rows"
            raise ValidationError(f"{path}: the log is empty ({what})"
                                  + ("" if len(read) == 1 else f" in each of its {len(read)} files"))
    frame, below = _read_after(read, after_id)
    names = source_names(path, [p for p, _ in read])
    return frame, IdsBelow(total=below.total, per_file={names[f]: n for f, n in below.per_file.items()}, names=names,
                           rows=below.rows, first={names[f]: i for f, i in below.first.items()})


def _read_after(read: list[tuple[Path, pl.DataFrame]], after_id: int | None) -> tuple[pl.DataFrame, IdsBelow]:
    """:func:`read_new_rows`'s frame of the files read (``(path, frame)``), with the rows after
    ``after_id`` only where it is given, and the count of the readable Ids at or below it
    (:class:`IdsBelow`, its files by ``str(path)``, as the rows' ``_file``; files with none left out)."""
    read = [(p, f) for p, f in read if f.width]
    if len(read) > 1:
        _check_columns_per_file(read)
    if len(read) > 1 or (after_id is not None and read):
        from licanom.data.schema import SOURCE_FILE, SOURCE_ROW

        # the row's place in its file, of the dtype of validation's ``_row`` (a position, as it is): in a
        # log of several files, and in a night's read of one (its ``_row`` counts from the watermark's
        # first new row, which the file does not show)
        read = [(p, f.with_columns(pl.lit(str(p)).alias(SOURCE_FILE),
                                   pl.int_range(pl.len(), dtype=pl.UInt32).alias(SOURCE_ROW)))
                for p, f in read]
    frames = [f for _, f in read]
    below = IdsBelow()
    if after_id is not None:
        kept = [_after(f, after_id) for f in frames]
        frames = [f for f, _ in kept]
        if kept:  # the Ids with their file's place in ``read``: counted in all and per file, then let go
            ids = pl.concat([s.to_frame("Id").with_columns(pl.lit(i, pl.UInt32).alias("file"))
                             for i, (_, s) in enumerate(kept)])
            del kept
            per_file = ids.group_by("file").agg(pl.col("Id").n_unique().alias("n"), pl.col("Id").min().alias("first"))
            below = IdsBelow(total=ids["Id"].n_unique(), rows=ids.height,
                             per_file={str(read[i][0]): n for i, n, _ in per_file.iter_rows()},
                             first={str(read[i][0]): int(first) for i, _, first in per_file.iter_rows()})
            del ids
    if not frames:  # every file without a header, at night (else refused as empty): no new row yet, a
        # frame of the log's columns and no row, as a header-only file gives, rather than a frame of no
        # column, which validation would refuse for the columns it lacks
        return pl.DataFrame(schema=dict.fromkeys(REQUIRED_RAW, pl.String)), below
    # Not polars' supertypes: they would turn times into their integers and booleans into 0/1.
    dtypes: dict[str, set[pl.DataType]] = {}
    for f in frames:
        for name, dtype in f.schema.items():
            dtypes.setdefault(name, set()).add(dtype)
    mixed = {name for name, kinds in dtypes.items() if len(kinds) > 1}
    frame = pl.concat([f.with_columns(_text_column(f[c]) for c in mixed if c in f.columns) for f in frames],
                      how="diagonal")
    return frame, below


def with_time_format(frame: pl.DataFrame, time_format: str | None) -> pl.DataFrame:
    """``Time`` and ``FloatingExpires`` text written in ``time_format`` (strftime codes; without
    ``%z`` the time is UTC) rewritten as ISO 8601, which validation reads; a value the format does
    not fit is left as it was, for validation to read in its own layouts or quarantine with it."""
    if time_format is None:
        return frame
    columns = [c for c in ("Time", "FloatingExpires") if c in frame.columns and frame.schema[c] == pl.String]
    if not columns:
        return frame

    def iso(column: str) -> pl.Expr:
        text = pl.col(column).str.strip_chars()
        if "%z" in time_format:
            text = text.str.replace(r"Z$", "+00:00")
        parsed = text.str.strptime(pl.Datetime("us"), time_format, strict=False)
        if "%z" in time_format:
            parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return pl.coalesce(parsed.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f"), pl.col(column)).alias(column)

    return frame.with_columns(iso(c) for c in columns)


def with_timezone(frame: pl.DataFrame, timezone: str | None) -> pl.DataFrame:
    """``Time`` and ``FloatingExpires`` written without an offset read as times in ``timezone`` (an
    IANA name; None: UTC, as validation reads them): rewritten as UTC ISO 8601 text. Times with an
    offset or Z and Unix seconds are left as written; so is a value no layout reads (validation
    quarantines it as written) and a local time that the zone skips (a clock moved forward). A
    local time the zone has twice (a clock moved back) is read as the earlier one."""
    if timezone is None:
        return frame
    from licanom.data.validate import _as_time

    def local(column: str) -> pl.Expr:
        dtype = frame.schema[column]
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None:
                return pl.col(column)
            zoned = pl.col(column).dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
            return pl.coalesce(zoned.dt.convert_time_zone("UTC"), pl.col(column).dt.replace_time_zone("UTC")).alias(column)
        text = pl.col(column).cast(pl.String).str.strip_chars()
        as_written = (text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$") | text.str.contains(r"^-?\d+(?:[.,]\d+)?$"))
        moved = (_as_time(column, dtype).dt.replace_time_zone(None)
                 .dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
                 .dt.convert_time_zone("UTC"))
        return (pl.when(~as_written & moved.is_not_null())
                .then(moved.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
                .otherwise(pl.col(column))).alias(column)

    columns = [c for c in ("Time", "FloatingExpires") if c in frame.columns
               and (frame.schema[c] == pl.String or isinstance(frame.schema[c], pl.Datetime))]
    return frame.with_columns(local(c) for c in columns) if columns else frame


def canonical_names(frame: pl.DataFrame, path: Path | str = "the log file",
                    columns: Mapping[str, str | None] | None = None) -> pl.DataFrame:
    """A file's columns renamed to the Web API Log's where they differ only in case or in spaces
    around them (``id, key, ip`` or ``Id, Key, IP`` written with a space after each comma), or where
    ``columns`` (``source.columns``: the export's name -> the log's, its names compared as the log's
    are) maps them; a column it maps to None is left out (``Time`` beside the ``TimeUTC`` mapped to
    the log's ``Time``). Two columns that name the same one (``Key`` and ``KEY``, ``Key`` twice, or
    ``Machine Code`` mapped to ``MachineCode`` beside a ``MachineCode``) are refused: which of them
    holds the values is not for the reader to guess."""
    from licanom.data.validate import ValidationError

    mapped = _mapped(columns)
    left_out = [name for name in frame.columns if _header_name(name) in mapped and mapped[_header_name(name)] is None]
    if left_out:
        frame = frame.drop(left_out)
    named: dict[str, list[str]] = {}
    for name in frame.columns:
        target = _log_column(name, mapped)
        if target:
            named.setdefault(target, []).append(name)
    twice = {target: names for target, names in named.items() if len(names) > 1}
    if twice:
        target, names = next(iter(twice.items()))
        header = "the header names" if file_kind(Path(path)) == "csv" else "the columns name"
        # a way out where the names differ but in case and spaces (a name mapped beside the log's own)
        out = (f", or leave one out in the vendor's configuration (`source.columns: {{{_shown_name(names[0])!r}: null}}`)"
               if len({_header_name(n) for n in names}) == len(names) else "")
        raise ValidationError(f"{path}: {header} {_named_again(target, names, frame.columns)}; keep one of them{out}")
    rename = {names[0]: target for target, names in named.items() if names[0] != target}
    return frame.rename(rename) if rename else frame


def _named_again(target: str, names: list[str], columns: list[str]) -> str:
    """``Key twice (columns 3 and 5)``: a log column that a file's header names more than once, as
    the file writes it: its places counted from 1, and its spellings where they differ (``as Key and
    KEY``); not polars' own name for the second (``Key_duplicated_0``), which the file has nowhere."""
    def joined(items: list[str]) -> str:
        return ", ".join(items[:-1]) + f" and {items[-1]}"

    written = [_shown_name(name) for name in names]
    times = "twice" if len(names) == 2 else f"{len(names)} times"
    spelt = f", as {joined(written)}" if len(set(written)) > 1 else ""
    return f"{target} {times}{spelt} (columns {joined([str(columns.index(name) + 1) for name in names])})"


def _check_columns_per_file(read: list[tuple[Path, pl.DataFrame]]) -> None:
    """Every file of a log has the required columns: joined with the others, a file without one
    would pass as rows whose column is empty (an export whose format changed part way)."""
    from licanom.data.columns import REQUIRED_RAW
    from licanom.data.validate import ValidationError, columns_shown, mapping_hint

    for path, frame in read:
        missing = [c for c in REQUIRED_RAW if c not in frame.columns]
        if missing:
            raise ValidationError(
                f"{path}: the log file lacks required column(s) {missing}; it has "
                f"{columns_shown(frame.columns)}. Every file of a log needs the Web API Log columns "
                f"{list(REQUIRED_RAW)}{mapping_hint(frame.columns, missing)}"
            )


def _after(frame: pl.DataFrame, after_id: int) -> tuple[pl.DataFrame, pl.Series]:
    """One file's rows after ``after_id`` (see :func:`read_log` for rows without a readable Id),
    and its readable Ids at or below it."""
    if "Id" not in frame.columns:
        return frame, pl.Series("Id", [], pl.Int64)
    from licanom.data.validate import _as_int

    ids = frame.select(_as_int("Id", frame.schema["Id"])).to_series()
    near = placing_ids(ids)
    return (frame.filter((ids > after_id) | (ids.is_null() & (near.is_null() | (near > after_id)))),
            ids.filter(ids <= after_id).cast(pl.Int64))


def placing_ids(ids: pl.Series, files: pl.Series | None = None) -> pl.Series:
    """The Id that places each row against a watermark: its own, or for a row without a readable
    one, the readable Id before it in its file (at the file's start, the one after it; null where
    the file has none). ``files``: each row's file, where ``ids`` span several."""
    frame = pl.DataFrame({"_id": ids, "_file": files if files is not None else pl.Series([""] * ids.len())})
    return frame.select(pl.col("_id").forward_fill().over("_file")
                        .fill_null(pl.col("_id").backward_fill().over("_file")))["_id"]


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
        v.decode("utf-8", errors="backslashreplace") if isinstance(v, bytes) else str(v)
    ) for v in s.to_list()], dtype=pl.String)
