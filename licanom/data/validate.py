"""Validate a raw Web API Log, losing nothing: bad rows go to a quarantine frame with a reason.

Every input row ends in exactly one of the two outputs (``n_in == n_valid + n_quarantined``).
Each check lives in one of two layers:

1. Parsing, here in polars: each column is coerced to the schema's dtype (CSV text, Unix
   seconds, ISO strings, other integer widths); a required value that is missing, a value that
   is present but cannot be read, or a time outside 1990-2100 is a reason ("Id: not an integer",
   "Time: unparsable"). A Unix time is read in seconds, milliseconds, microseconds or nanoseconds,
   whichever puts it in 1990-2100 (their ranges there do not overlap).
2. The pandera contract :class:`licanom.data.schema.WebApiLog` (``lazy=True``): every check on the
   coerced values (known state code, IP address, non-blank key, unique Id). It validates the
   rows that are to be valid, and whatever it rejects is quarantined with the check's text as
   the reason; it also runs on the (few) rows quarantined for other reasons, so that a reason
   names every failing column/check.

Later duplicates of an ``Id`` are quarantined ("Id: duplicate"); the first occurrence among the
otherwise valid rows stays.

Large logs are cheap when they are clean: a check that cannot fail for a column's dtype is not
run, reason strings are built for bad rows only, and a log whose Ids increase and whose times
are in order skips the duplicate search and the sort.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl

from licanom.data.codes import TextCodes, in_threads, text_ids
from licanom.data.columns import OPTIONAL_RAW, RAW, REQUIRED_RAW
from licanom.data.privacy import PRIVATE_COLUMNS
from licanom.data.schema import (
    BLANK,
    DUPLICATE,
    HEADER_AGAIN,
    SOURCE_FILE,
    SOURCE_ROW,
    UNREADABLE,
    UTC_US,
    WebApiLog,
    known_values,
    strictly_increasing,
)

ROW = "_row"  # position of the row in the input, kept in the quarantine
REASON = "reason"
# a night's quarantined rows, beside its report, as its report's note names them
QUARANTINE_FILE = "quarantine.parquet"
QUARANTINE_WHAT = ", each with its reason"
# A list of the quarantine's commonest reasons is cut only where it leaves out at least this many
# (reasons_shown): the others are listed instead of "and 2 more reasons"
REASONS_CUT_FROM = 4
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "Time: outside 1990-2100"
EXPIRES_OUT_OF_RANGE = "FloatingExpires: outside 1990-2100"
# A Unix time's unit, told by its size: from 1990 to 2100 seconds lie in [6.3e8, 4.2e9), milliseconds
# in [6.3e11, 4.2e12), microseconds in [6.3e14, 4.2e15), nanoseconds in [6.3e17, 4.2e18). A number
# below the first bound is seconds, below the second milliseconds, and so on (pandas' to_json and
# JavaScript write milliseconds); one in between lies outside 1990-2100 in any unit.
UNIX_UNIT_BOUNDS = (1e11, 1e14, 1e17)
_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M%z",  # ISO 8601 to the minute
    "%Y-%m-%d %H:%M%z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)
# The reason of a repeated Id whose row is the same in every column as the kept one: quarantined
# (nothing is dropped unseen) but not counted as bad (validate.max_bad_fraction).
EXACT_COPY = f"Id: {DUPLICATE} (an exact copy of an earlier row)"
_INTS = ("Id", "ProductId", "State", "DOIntValue", "DOId")
# Integer dtypes whose every value fits an Int64.
_SAFE_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
_TEXTS = ("Key", "IP", "MachineCode", "FriendlyName")
_TIMES = ("Time", "FloatingExpires")
# A required value that is null in the input.
_MISSING = {
    "Id": "Id: missing",
    "ProductId": "ProductId: missing",
    "State": "State: missing",
    "Key": f"Key: {BLANK}",
    "Time": "Time: missing",
}
# A value that is present in the input but does not survive the cast.
_LOST = {
    **{c: f"{c}: not an integer" for c in _INTS},
    **{c: f"{c}: not valid text" for c in _TEXTS},
    **{c: f"{c}: unparsable" for c in _TIMES},
}
# The order in which a row's parsing reasons are listed.
_PARSE_ORDER = (
    ("missing", "Id"), ("lost", "Id"), ("missing", "ProductId"), ("lost", "ProductId"),
    ("missing", "State"), ("lost", "State"), ("lost", "DOIntValue"), ("lost", "DOId"),
    ("missing", "Key"), ("missing", "Time"), ("lost", "Time"), ("range", "Time"),
    ("lost", "FloatingExpires"), ("range", "FloatingExpires"),
    ("lost", "Key"), ("lost", "IP"), ("lost", "MachineCode"), ("lost", "FriendlyName"),
)
# A contract check with an `error` text names itself by it ("IP: malformed address"); others,
# such as pandera's not_nullable, read "<column>: failed <check>".
_OWN_TEXTS = frozenset(
    check.error
    for column in WebApiLog.to_schema().columns.values()
    for check in column.checks
    if check.error
)
_REASONS_SCHEMA = {ROW: pl.UInt32, REASON: pl.String}
# Keys, addresses and machine codes longer than this are not real ones: quarantined.
MAX_VALUE_CHARS = 256
_BOUNDED = ("Key", "IP", "MachineCode")
TOO_LONG = f"longer than {MAX_VALUE_CHARS} characters"
# the reason of a row whose product the scoring model was not trained on (licanom.ops.bundle)
UNKNOWN_PRODUCT = "ProductId: a product the model was not trained on"


class ValidationError(ValueError):
    """The log as a whole cannot be used: a missing column, or too many bad rows (``result``: the
    validation that found them, its quarantine each row's reason; None for a missing column)."""

    def __init__(self, message: str, result: ValidationResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ValidationResult:
    """Valid rows (schema :class:`WebApiLog`, sorted by Time then Id) and quarantined rows.

    ``quarantine`` keeps every input column as text, the input position ``_row`` (and, for a log of
    several files or a night's read of one, the file ``_file`` and the place in it ``_file_row``:
    integers both) and ``reason``.
    ``codes``: integer codes of the valid rows' ``Key`` and ``IP`` (equal codes for equal
    texts, and only then), found while validating; the encoder reuses them instead of hashing
    the texts again (None where not computed, e.g. a result built by hand).
    """

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    n_in: int
    codes: TextCodes | None = field(default=None, compare=False, repr=False)

    @property
    def n_bad(self) -> int:
        """Quarantined rows, less the exact copies of valid rows (an export part sent twice: each
        of its rows is kept once, its copies are quarantined and do not count as bad) and a CSV
        file's header lines again (exports joined, each with its header: a file of many small ones
        would be refused for its headers alone)."""
        if not self.quarantine.height:
            return 0
        return self.quarantine.height - int(self.quarantine.select(_not_bad().sum()).item())

    @property
    def bad_fraction(self) -> float:
        return self.n_bad / self.n_in if self.n_in else 0.0

    def quarantine_note(self, top: int = 3) -> str | None:
        """One line for a report: how many rows were quarantined and their commonest reasons;
        None when none were."""
        n = self.quarantine.height
        if n == 0:
            return None
        return (f"{n:,} row{'s' if n != 1 else ''} quarantined, not scored ({QUARANTINE_FILE}{QUARANTINE_WHAT}): "
                f"{self.reasons(top)}")

    def reasons(self, top: int = 3) -> str:
        """The quarantined rows' commonest reasons with their counts, e.g. ``Time: unparsable (5), IP:
        malformed address (4), ... and 4 more reasons``: the ``top`` commonest, or all of them where
        they are at most a few more (:func:`reasons_shown`); empty when none was quarantined."""
        counts = self.reason_counts()
        shown = reasons_shown(counts.height, top)
        listed = ", ".join(f"{reason} ({count:,})" for reason, count in counts.head(shown).iter_rows())
        return listed + (f" and {counts.height - shown} more reasons" if counts.height > shown else "")

    def commonest_reason(self, private: bool = False) -> str | None:
        """The quarantine's reasons in a few words, for a line with no room for them all: the one
        reason (``Time: unparsable``), or the commonest with its count and how many others there are
        (``3,380 Id: duplicate (an exact copy of an earlier row), 2 other reasons``); None when none
        was quarantined. ``private`` (a pseudonymised vendor's): an unreadable line's file by its base
        name, not its folders (:func:`without_folders`; the line reaches Prefect's logs)."""
        counts = _reason_counts(without_folders(self.quarantine)) if private else self.reason_counts()
        if counts.height == 0:
            return None
        reason, n = counts.row(0)
        if counts.height == 1:  # every quarantined row has a reason: this one
            return str(reason)
        others = counts.height - 1
        return f"{n:,} {reason}, {others} other reason{'s' if others != 1 else ''}"

    def reason_counts(self) -> pl.DataFrame:
        """How many quarantined rows fail each column/check (a row may count under several). An
        unreadable line's reason names its file and line; counted here without the line (``a.csv:
        cannot be read as CSV (...)``), so that a file's broken lines make one group, not one
        each: the quarantine keeps every row's own reason."""
        return _reason_counts(self.quarantine)


def reasons_shown(n: int, top: int) -> int:
    """How many of ``n`` reasons a list of the ``top`` commonest shows: all of them where cutting the
    list would leave out fewer than :data:`REASONS_CUT_FROM` (a line saying "and 2 more reasons" takes
    the room of the two it hides, and hides them)."""
    return n if n - top < REASONS_CUT_FROM else top


def _not_bad() -> pl.Expr:
    """Whether a quarantined row is no bad row (:attr:`ValidationResult.n_bad`): an exact copy of a
    kept row, or a CSV file's header line again."""
    reason = pl.col(REASON)
    return (reason == EXACT_COPY) | reason.str.contains(f": {HEADER_AGAIN}", literal=True)


def _unlined(reason: pl.Expr) -> pl.Expr:
    """A reason without the line it names (``a.csv line 6: ...`` as ``a.csv: ...``)."""
    return reason.str.replace(r" line \d+: ", ": ")


def _reason_counts(quarantine: pl.DataFrame) -> pl.DataFrame:
    """:meth:`ValidationResult.reason_counts` of these quarantined rows."""
    return (
        quarantine.select(pl.col(REASON).str.split("; ").alias(REASON))
        .explode(REASON)
        .with_columns(_unlined(pl.col(REASON)))
        .group_by(REASON)
        .len()
        .sort(["len", REASON], descending=[True, False])
    )


def _nulls(dtype: pl.DataType) -> pl.Expr:
    """A column of nulls as long as the frame: a value of a dtype that cannot be read as this."""
    return pl.repeat(None, pl.len(), dtype=dtype)


def _utf8(values: pl.Series) -> pl.Series:
    """Bytes as text; a value that is not valid UTF-8 becomes null."""
    try:
        return values.cast(pl.String)
    except pl.exceptions.PolarsError:

        def decode(b: bytes) -> str | None:
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                return None

        return pl.Series(values.name, [None if b is None else decode(b) for b in values.to_list()], dtype=pl.String)


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr | None:
    """The column as text when its dtype holds text (categories, UTF-8 bytes), else None."""
    col = pl.col(name)
    if dtype == pl.String:
        return col
    if dtype == pl.Binary:
        return col.map_batches(_utf8, return_dtype=pl.String)
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return col.cast(pl.String)
    return None


def _as_int(name: str, dtype: pl.DataType, decimal_comma: bool | None = None) -> pl.Expr:
    """Integers of any width (null where out of Int64's range), whole floats and decimals, and
    text; booleans, times and nested values are not integers. ``decimal_comma``: whether text
    written with a decimal comma (``12,0``) is read; None: for every column but ``Id``."""
    col = pl.col(name)
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False)
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        # whole numbers only, and only below 2**53: beyond it a float is not the integer it was
        # written as (a JSON column that also holds 2.5 reads -9223372036854775809 as a float)
        col = col.cast(pl.Float64)
        return pl.when((col == col.floor()) & (col.abs() < 2**53)).then(col.cast(pl.Int64, strict=False)).otherwise(None)
    text = _as_text(name, dtype)
    if text is None:
        return _nulls(pl.Int64)
    # "12.0" from spreadsheets is still the integer 12; "12.5" is not an integer. Digits are
    # read exactly: as a float, an integer beyond 2**53 would change. A decimal comma followed by
    # one or two zeros ("12,0", "12,00": a European spreadsheet's whole number) is the integer too,
    # but for an Id; "1,000" is not read (a thousands separator or a decimal comma: not for the
    # reader to guess).
    text = text.str.strip_chars()
    # An Id is read without one: ``22080,0`` is 22080 with a decimal comma and 220800 with a
    # thousands separator, and an Id guessed wrong is another request's (or moves a watermark).
    if decimal_comma is False or (decimal_comma is None and name == "Id"):
        digits = text
    else:
        # one suffix off, no regex (every value of the column goes through here): digits before it or nothing
        digits = pl.when(text.str.ends_with(",00")).then(text.str.strip_suffix(",00")).otherwise(text.str.strip_suffix(",0"))
    as_float = text.cast(pl.Float64, strict=False)
    return (
        pl.when(digits.str.contains(r"^[+-]?\d+$"))
        .then(digits.cast(pl.Int64, strict=False))
        .when((as_float == as_float.floor()) & (as_float.abs() < 2**53))
        .then(as_float.cast(pl.Int64, strict=False))
    )


def _as_time(name: str, dtype: pl.DataType) -> pl.Expr:
    """Datetime (naive means UTC), a date, Unix seconds (number or digits), or an ISO 8601 string
    (a time to the minute or second, with a fraction after a dot or a comma, and an optional offset
    or Z; without one it is UTC)."""
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            col = col.dt.replace_time_zone("UTC")
        return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype.is_integer():
        return _unix_time(col.cast(pl.Int64, strict=False), integer=True)
    if dtype.is_numeric():
        return _unix_time(col.cast(pl.Float64, strict=False))
    text = _as_text(name, dtype)
    if text is not None:
        # ISO 8601 allows a decimal comma (a European spreadsheet writes one): "00:18:37,572", and
        # Unix seconds "1742343517,572"
        text = (text.str.strip_chars().str.replace(r"Z$", "+00:00")
                .str.replace(r"^(-?\d+),(\d+)$", "${1}.${2}")
                .str.replace(r"(\d{2}:\d{2}:\d{2}),(\d+)", "${1}.${2}"))
        parsed = [
            text.str.strptime(pl.Datetime("us"), fmt, strict=False)
            for fmt in _TIME_FORMATS
        ]
        parsed = [
            p.dt.convert_time_zone("UTC") if "%z" in fmt else p.dt.replace_time_zone("UTC")
            for p, fmt in zip(parsed, _TIME_FORMATS, strict=True)
        ]
        return (
            pl.when(text.str.contains(r"^-?\d+(\.\d+)?$"))
            # digits exactly (a float would round nanoseconds), a fraction as a float
            .then(pl.coalesce(_unix_time(text.cast(pl.Int64, strict=False), integer=True),
                              _unix_time(text.cast(pl.Float64, strict=False))))
            .otherwise(pl.coalesce(parsed))
        )
    return _nulls(UTC_US)


def _unix_time(number: pl.Expr, integer: bool = False) -> pl.Expr:
    """A Unix time in seconds, milliseconds, microseconds or nanoseconds (:data:`UNIX_UNIT_BOUNDS`)
    as a UTC datetime in microseconds; an Int64 ``number`` in integer arithmetic (nanoseconds
    rounded half up, exactly), a Float64 one rounded."""
    size = number.abs()
    s, ms, us = (int(b) for b in UNIX_UNIT_BOUNDS)
    if integer:
        # beyond these an Int64 product would overflow: such a number is no time in 1990-2100
        micros = (pl.when(size < s).then(number * 1_000_000).when(size < ms).then(number * 1_000)
                  .when(size < us).then(number).otherwise((number + 500) // 1_000))
        return micros.cast(UTC_US)
    micros = (pl.when(size < s).then(number * 1_000_000).when(size < ms).then(number * 1_000)
              .when(size < us).then(number).otherwise(number / 1_000))
    return micros.round().cast(pl.Int64, strict=False).cast(UTC_US)


def _as_str(name: str, dtype: pl.DataType) -> pl.Expr:
    """Text, UTF-8 bytes, and numbers, booleans, dates and times as text; nested values and
    durations are not text."""
    text = _as_text(name, dtype)
    if text is not None:
        return text
    if dtype == pl.Null or dtype.is_numeric() or dtype == pl.Boolean or (
        dtype.is_temporal() and dtype != pl.Duration
    ):
        return pl.col(name).cast(pl.String)
    return _nulls(pl.String)


def _coerce_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column cast to the schema's dtype (unreadable values become null)."""
    if name in _INTS:
        return pl.col(name) if dtype == pl.Int64 else _as_int(name, dtype)
    if name in _TEXTS:
        return pl.col(name) if dtype == pl.String else _as_str(name, dtype)
    return pl.col(name) if dtype == UTC_US else _as_time(name, dtype)


def _can_lose(name: str, dtype: pl.DataType) -> bool:
    """Whether a present value of this dtype can fail the cast (if not, no check is needed)."""
    if dtype == pl.Null:
        return False
    if name in _INTS:
        return dtype not in _SAFE_INTS
    if name in _TEXTS:
        return dtype not in (pl.String, pl.Categorical, pl.Enum)
    return not isinstance(dtype, (pl.Datetime, pl.Date))


def mapping_hint(columns: list[str], missing: list[str]) -> str:
    """For a header of the log's names that lacks a few (``missing``): how to map an export's own
    name of a column (``Machine Code``) to the log's (``source.columns``), its name guessed only
    where one column is missing and one is unknown; "" for a file whose first line names none of
    the log's columns (no header: its values are not shown as names) or that lacks most of them
    (another file than the log's, which no mapping makes one)."""
    known = {c.casefold() for c in RAW}
    other = [c for c in columns if c.strip().strip('"').strip().casefold() not in known]
    if not missing or len(missing) > len(REQUIRED_RAW) // 2 or not other or len(other) == len(columns):
        return ""
    written = repr(_shown(other[0])) if len(other) == len(missing) == 1 else "'<its name in the export>'"
    return (f"; where the export names a log column otherwise, map it in the vendor's configuration, "
            f"e.g. `source.columns: {{{written}: {missing[0]}}}`")


def require_columns(columns: list[str], where: str = "the log") -> None:
    """Refuse a log (``where``: what the message calls it, e.g. its file) whose columns lack a
    required one, naming the missing ones and those it has; where a name holds several columns
    joined by a separator, say which separator to set."""
    missing = [c for c in REQUIRED_RAW if c not in columns]
    if not missing:
        return
    from licanom.data.extract.files import SEPARATORS

    # a header read with another separator than its own: one long name holding the others
    merged = [c for c in columns if any(sep in c for sep in SEPARATORS)]
    sep = max(SEPARATORS, key=merged[0].count) if merged else ""
    shown = columns_shown(columns)
    what = (f"{_shown(merged[0])!r}" if merged and shown.startswith("[") else "its first line")
    hint = (f"; {what} looks like several columns split by {sep!r}: set the file's "
            f"separator (`source.separator: {sep!r}` or --separator)") if merged else ""
    if not merged:
        hint = mapping_hint(columns, missing)
    raise ValidationError(
        f"{where} lacks required column(s) {missing}; it has {shown}. "
        f"Expected the Web API Log columns {list(REQUIRED_RAW)} (optional: {list(OPTIONAL_RAW)}){hint}"
    )


def _parse(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, pl.Series],
                                         tuple[dict[str, pl.Series], dict[str, pl.Series]]]:
    """Cast every raw column to the schema's dtype without failing.

    Returns the coerced frame (RAW columns, input order), the rows that fail to parse as
    (``_row``, ``reason``) in input order, the distinct values of IP and Key, and the codes of
    the coerced frame's IP and Key (UInt32, equal codes for equal texts and only then; a
    null's code is null) with, where known, the rows where each code first appears.
    """
    require_columns(raw.columns)
    unreadable = UNREADABLE in raw.columns and raw[UNREADABLE].null_count() < raw.height
    frame = raw.select([c for c in RAW if c in raw.columns])
    absent = [c for c in OPTIONAL_RAW if c not in frame.columns]
    if absent:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent)
    # An empty number or time ("" in a file that quotes every value) is a missing one, as an
    # unquoted empty field reads: not "not an integer" (the texts keep their empty values)
    texts = [c for c in (*_INTS, *_TIMES) if frame.schema[c] == pl.String]
    found = frame.select((pl.col(c).str.len_bytes() == 0).any() for c in texts).row(0) if texts else ()
    empty = [c for c, has in zip(texts, found, strict=True) if has]
    if empty:
        frame = frame.with_columns(pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)).alias(c) for c in empty)
    schema = frame.schema

    # Only the checks that can fail for these dtypes and null counts are computed.
    checks: dict[tuple[str, str], str] = {}
    for kind, c in _PARSE_ORDER:
        if kind == "missing" and frame[c].null_count():
            checks[kind, c] = f"\x00missing {c}"
        elif kind == "lost" and _can_lose(c, schema[c]) and frame[c].null_count() < frame.height:
            checks[kind, c] = f"\x00present {c}"
    parsed = frame.lazy().select(
        *[_coerce_expr(c, schema[c]).alias(c) for c in RAW],
        *[
            (pl.col(c).is_null() if kind == "missing" else pl.col(c).is_not_null()).alias(tmp)
            for (kind, c), tmp in checks.items()
        ],
    ).collect()
    if unreadable:
        parsed = parsed.with_columns(raw[UNREADABLE].cast(pl.String))

    for c in ("Time", "FloatingExpires"):
        t = pl.col(c)
        if not parsed.select(((t.min() >= EARLIEST) & (t.max() < LATEST)).fill_null(True)).item():
            checks["range", c] = ""

    def in_range(c: str) -> pl.Expr:
        t = pl.col(c)
        if c == "FloatingExpires":  # Cryptolens writes 0 (1970) where a request has no floating expiry
            t = pl.when(t != datetime(1970, 1, 1, tzinfo=UTC)).then(t)
        return t.is_not_null() & ~t.is_between(EARLIEST, LATEST, closed="left")

    flags = [
        (_MISSING[c], pl.col(checks[kind, c])) if kind == "missing"
        else (_LOST[c], pl.col(checks[kind, c]) & pl.col(c).is_null()) if kind == "lost"
        else ({"Time": OUT_OF_RANGE, "FloatingExpires": EXPIRES_OUT_OF_RANGE}[c], in_range(c))
        for kind, c in _PARSE_ORDER
        if (kind, c) in checks
    ]
    # Each address's and key's id among the column's distinct texts (one hash per row, the two
    # columns on two threads): their distinct values (for the IP clean-up, the length check and
    # the contract) and the codes the encoder reuses.
    def coded(c: str) -> tuple[pl.Series, pl.Series]:
        ids = text_ids(parsed[c])
        return ids, ids.arg_unique()

    found = dict(zip(_CODED, in_threads([lambda c=c: coded(c) for c in _CODED]), strict=True))
    codes, first = {c: ids for c, (ids, _) in found.items()}, {c: f for c, (_, f) in found.items()}
    distinct = {c: parsed[c].gather(first[c]) for c in _CODED}
    # a value longer than any real key, address or machine code (bytes bound characters above)
    flags += [(f"{c}: {TOO_LONG}", pl.col(c).str.len_chars() > MAX_VALUE_CHARS) for c in _BOUNDED
              if ((distinct[c] if c in distinct else parsed[c]).str.len_bytes().max() or 0) > MAX_VALUE_CHARS]  # type: ignore[operator]
    if flags or unreadable:
        # one pass over the flags; reason strings only for the rows that fail. A row the
        # extractor could not read has its text as the reason, not the empty columns'.
        failed = [pl.col(reason) for reason, _ in flags]
        reason = pl.concat_str(
            [pl.when(pl.col(reason)).then(pl.lit(reason)) for reason, _ in flags] or [pl.lit(None, pl.String)],
            separator="; ",
            ignore_nulls=True,
        )
        if unreadable:
            failed.append(pl.col(UNREADABLE).is_not_null())
            reason = pl.coalesce(UNREADABLE, reason)
        bad = (
            parsed.lazy()
            .select(
                pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW),
                *[expr.alias(reason) for reason, expr in flags],
                *([UNREADABLE] if unreadable else []),
            )
            .filter(pl.any_horizontal(failed))
            .select(ROW, reason.alias(REASON))
            .collect()
        )
    else:
        bad = pl.DataFrame(schema=_REASONS_SCHEMA)

    fixes = []
    if parsed["MachineCode"].null_count():
        fixes.append(pl.col("MachineCode").fill_null(""))
    fill = parsed["IP"].null_count() > 0
    strip = bool((distinct["IP"].str.strip_chars() != distinct["IP"]).any())
    ip = pl.col("IP").fill_null("") if fill else pl.col("IP")
    if strip:
        ip = ip.str.strip_chars()
    fixes.append(ip)
    if fill or strip:
        # the cleaned addresses' codes, from the distinct ones' (no text hashed row by row)
        codes["IP"] = _recode(codes["IP"], first["IP"], distinct["IP"], ip)
        del first["IP"]  # two addresses may be one now
        distinct["IP"] = distinct["IP"].to_frame("IP").select(ip.unique())["IP"]
    if parsed["FloatingExpires"].null_count() < parsed.height:
        # Cryptolens writes 0 where a request has no floating expiry
        expires = pl.col("FloatingExpires")
        fixes.append(
            pl.when(expires != datetime(1970, 1, 1, tzinfo=UTC)).then(expires).alias("FloatingExpires")
        )
    return parsed.select(RAW).with_columns(fixes), bad, distinct, (codes, first)


_CODED = ("IP", "Key")  # the texts whose codes validation finds (and ValidationResult keeps)


def _recode(ids: pl.Series, first: pl.Series, distinct: pl.Series, clean: pl.Expr) -> pl.Series:
    """Codes of a text column after ``clean`` (an expression on it), from its codes ``ids``,
    the rows where each first appears and its distinct values ``distinct`` (the texts at those
    rows): the clean texts of the distinct values get codes of their own, and each row its
    value's."""
    old = ids.gather(first)
    new = text_ids(distinct.to_frame().select(clean).to_series()).to_numpy()
    table = np.zeros(int(old.max() or 0) + 2, dtype=np.uint32)
    table[old.fill_null(len(table) - 1).to_numpy()] = new
    return pl.Series(ids.name, table[ids.fill_null(len(table) - 1).to_numpy()])


def _contract_failures(frame: pl.DataFrame, at: np.ndarray | None) -> pl.DataFrame:
    """Run the pandera contract lazily; the rows it rejects as (``_row``, ``column``, ``check``).

    ``at`` maps the frame's rows to input positions (None: the frame is the whole input).
    """
    empty = pl.DataFrame(schema={ROW: pl.UInt32, "column": pl.String, "check": pl.String})
    if frame.height == 0:
        return empty
    try:
        WebApiLog.validate(frame, lazy=True)
        return empty
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        row_cases = cases.filter(pl.col("index").is_not_null())
        if row_cases.height < cases.height:
            # a failure of the whole frame (a dtype, a missing column) is a bug, not bad data
            raise ValidationError(f"validated frame breaks its schema: {cases}") from err
        index = row_cases["index"].cast(pl.Int64).to_numpy()
        rows = index if at is None else at[index]
        return pl.DataFrame(
            {ROW: rows.astype(np.uint32), "column": row_cases["column"], "check": row_cases["check"]},
            schema=empty.schema,
        )


def _reasons(failures: pl.DataFrame) -> pl.DataFrame:
    """(``_row``, ``reason``) for contract failures: "<column>: <error text>"."""
    return failures.select(
        ROW,
        pl.concat_str(
            pl.col("column"),
            pl.when(pl.col("check").is_in(list(_OWN_TEXTS)))
            .then(pl.lit(": "))
            .otherwise(pl.lit(": failed ")),
            pl.col("check"),
        ).alias(REASON),
    )


def _first_distinct(ids: pl.Series) -> np.ndarray | None:
    """Bool per row, False for a repeat of an earlier Id; None when there is no repeat."""
    if strictly_increasing(ids):
        return None
    if ids.is_sorted():  # repeats are neighbours
        first = ids.diff().fill_null(1) != 0
    else:
        first = ids.is_first_distinct()
    return None if first.all() else first.to_numpy()


def _in_time_order(frame: pl.DataFrame) -> bool:
    """Whether rows are sorted by (Time, Id): O(n) passes instead of a sort."""
    if frame.height < 2:
        return True
    if not frame["Time"].is_sorted():
        return False
    if strictly_increasing(frame["Id"]):
        return True
    dt = pl.col("Time").to_physical().diff().slice(1)
    di = pl.col("Id").diff().slice(1)
    return bool(frame.select(((dt > 0) | ((dt == 0) & (di > 0))).all()).item())


def validate_log(raw: pl.DataFrame) -> ValidationResult:
    """Split a raw log into valid rows and quarantined rows with a reason each.

    Later duplicates of an ``Id`` are quarantined ("Id: duplicate"); the first one stays.
    """
    n_in = raw.height
    coerced, unparsed, distinct, (codes, first) = _parse(raw)
    with known_values(distinct):  # the contract's per-value checks need not find them again
        keep, reasons = _split(coerced, unparsed)
    valid = coerced
    if not keep.all():
        mask = pl.Series(keep)
        valid = coerced.filter(mask)
        codes, first = {c: v.filter(mask) for c, v in codes.items()}, {}
    if not _in_time_order(valid):
        order = valid.select(pl.arg_sort_by("Time", "Id")).to_series()
        valid = valid[order]
        codes, first = {c: v.gather(order) for c, v in codes.items()}, {}
    codes = {c: v for c, v in codes.items() if not v.null_count()}
    return ValidationResult(
        valid=valid, quarantine=_quarantine(raw, reasons), n_in=n_in,
        codes=TextCodes.from_codes(valid.height, {c: v.to_numpy() for c, v in codes.items()}, first),
    )


def _split(coerced: pl.DataFrame, unparsed: pl.DataFrame) -> tuple[np.ndarray, list[pl.DataFrame]]:
    """Which rows are valid (bool per row), and the reasons of the others (``_row``, ``reason``)."""
    n_in = coerced.height

    keep = np.ones(n_in, dtype=bool)
    keep[unparsed[ROW].to_numpy()] = False
    # duplicates are judged among rows that are otherwise valid
    ids = coerced["Id"] if keep.all() else coerced["Id"].filter(pl.Series(keep))
    first = _first_distinct(ids)
    duplicates = np.flatnonzero(keep)[~first] if first is not None else np.zeros(0, np.int64)
    keep[duplicates] = False

    # The contract on the rows to keep ...
    rejected = _contract_failures(
        coerced if keep.all() else coerced.filter(pl.Series(keep)),
        None if keep.all() else np.flatnonzero(keep),
    )
    keep[rejected[ROW].to_numpy()] = False
    # ... and on the rows already out, so that their reasons are complete. Their nulls are
    # the parsing failures already named, and a duplicate among them does not matter.
    aside = np.union1d(unparsed[ROW].to_numpy(), duplicates).astype(np.int64)
    also = _contract_failures(coerced[aside], aside).filter(
        ~pl.col("check").is_in(["not_nullable", DUPLICATE])
    )
    reasons = [unparsed, _reasons(also), _reasons(rejected)]

    if duplicates.size:
        # A repeat whose contract checks fail is quarantined for those, not as a duplicate.
        clean = np.setdiff1d(duplicates, also[ROW].to_numpy())
        if rejected.height:
            # The first occurrence was rejected by the contract: the first clean repeat stays.
            lost_ids = coerced["Id"].gather(rejected[ROW]).implode()
            repeats = coerced.select(pl.col("Id").gather(clean)).to_series()
            promote = clean[(repeats.is_in(lost_ids) & repeats.is_first_distinct()).to_numpy()]
            if promote.size:
                keep[promote] = True
                clean = np.setdiff1d(clean, promote)
                # the valid frame has changed: validate it as a whole again
                at = np.flatnonzero(keep)
                again = _contract_failures(coerced[at], at)
                keep[again[ROW].to_numpy()] = False
                reasons.append(_reasons(again))
        exact = _exact_copies(coerced, clean, keep)
        why = np.full(clean.size, EXACT_COPY, dtype=object)
        why[~exact] = _differing(coerced, clean[~exact], keep)
        reasons.append(pl.DataFrame({ROW: clean.astype(np.uint32), REASON: why.astype(str)}, schema=_REASONS_SCHEMA))

    return keep, reasons


def _differing(coerced: pl.DataFrame, repeats: np.ndarray, keep: np.ndarray) -> list[str]:
    """Per repeated row (input positions ``repeats``): "Id: duplicate", naming the columns in which
    it differs from the kept row of its Id (where one is kept), so that two exports that disagree
    about a request say where."""
    columns = [c for c in coerced.columns if c != "Id"]
    kept = (coerced.filter(pl.Series(keep)).unique("Id", keep="first", maintain_order=True)
            .with_columns(pl.lit(True).alias("_kept")))
    repeated = coerced[repeats].with_row_index("_at").join(kept, on="Id", how="left", suffix="_kept")
    differs = repeated.sort("_at").select(
        pl.col("_kept").fill_null(False), *(pl.col(c).ne_missing(pl.col(f"{c}_kept")).alias(c) for c in columns))
    out = []
    for row in differs.iter_rows(named=True):
        names = [c for c in columns if row[c]]
        out.append(f"Id: {DUPLICATE} (another value than its earlier row's in {', '.join(names)})"
                   if row["_kept"] and names else f"Id: {DUPLICATE}")
    return out


def _exact_copies(coerced: pl.DataFrame, repeats: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per repeated row (input positions ``repeats``): whether a kept row has its Id and every
    value of it (as read into the schema's types; two empty values are equal)."""
    if not repeats.size:
        return np.zeros(0, dtype=bool)
    kept = coerced.filter(pl.Series(keep)).unique(maintain_order=True)
    candidates = coerced[repeats].with_row_index("_at")
    same = candidates.join(kept, on=list(coerced.columns), how="semi", nulls_equal=True)
    out = np.zeros(repeats.size, dtype=bool)
    out[same["_at"].to_numpy()] = True
    return out


def _quarantine(raw: pl.DataFrame, reasons: list[pl.DataFrame]) -> pl.DataFrame:
    """The quarantined rows as they came in (as text), with ``_row`` and every reason; a row's place
    in its file (``_file_row``, a log of several files or a night's read of one) stays the integer it
    is, as ``_row``."""
    why = (
        pl.concat(reasons)
        .group_by(ROW, maintain_order=True)
        .agg(pl.col(REASON).str.join("; "))
        .sort(ROW)
    )

    def as_text(c: str) -> pl.Series:
        values = raw[c].gather(why[ROW])
        if c == SOURCE_ROW and values.dtype.is_integer():
            return values.cast(pl.UInt32)
        if not values.dtype.is_nested():
            try:
                return values.cast(pl.String, strict=False)
            except pl.exceptions.PolarsError:  # bytes that are not UTF-8, durations
                pass
        # as Python writes them (lists, structs), bytes with their escapes
        return pl.Series(c, [None if v is None else (
            v.decode("utf-8", errors="backslashreplace") if isinstance(v, bytes) else str(v)
        ) for v in values.to_list()], dtype=pl.String)

    kept = [c for c in raw.columns if c not in (ROW, REASON, UNREADABLE)]
    return pl.DataFrame([why[ROW], *[as_text(c) for c in kept], why[REASON]])


def move_to_quarantine(result: ValidationResult, raw: pl.DataFrame, drop: pl.Series,
                       reason: str | pl.Series) -> ValidationResult:
    """``result`` with the valid rows where ``drop`` is true moved to the quarantine, each with
    ``reason`` (one text, or one per dropped row): for checks beyond the log's own, such as a
    product the model does not know. ``raw`` is the frame ``result`` was validated from."""
    if not drop.any():
        return result
    gone = result.valid.filter(drop).select(
        "Id", (pl.lit(reason) if isinstance(reason, str) else reason.filter(drop)).alias(REASON))
    taken = result.quarantine[ROW].implode()
    at = (
        raw.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW), _as_int("Id", raw.schema["Id"]).alias("Id"))
        .filter(~pl.col(ROW).is_in(taken))
        .join(gone, on="Id", how="inner")
        .select(ROW, REASON)
    )
    quarantine = pl.concat([result.quarantine, _quarantine(raw, [at])], how="vertical_relaxed").sort(ROW)
    return ValidationResult(valid=result.valid.filter(~drop), quarantine=quarantine, n_in=result.n_in)


# a value that no header names a column by: a number, an address, a date or a time
_DATA_LIKE = re.compile(r"^[\s\d.,:;+\-/TZ]*\d[\s\d.,:;+\-/TZ]*$")


# a date, or a time written with its date: a column's name in a table of days
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")


def _header_of_numbers(columns: list[str]) -> bool:
    """Whether a file's column names, an index column's empty first one aside, are two or more
    numbers counting up by one (pandas writes ``0,1,2`` for a frame without names, ``,0,1,2`` with
    its index) or dates (a table of days): a header, though each name reads as a value. No row of
    a log is either (its Id is no date; its key, address and time do not count up from its Id),
    so that showing them shows no customer's value."""
    names = [c.strip() for c in columns]
    names = names[1:] if names[:1] == [""] else names
    if len(names) < 2:
        return False
    if all(_DATE.match(n) for n in names):
        return True
    return all(n.isascii() and n.isdigit() for n in names) and [int(n) - int(names[0]) for n in names] == list(range(len(names)))


def looks_like_values(columns: list[str]) -> bool:
    """Whether a file's column names are a row of values (a file without its header line): none
    names a Web API Log column and one reads as a value (a number, an address, a time), and they
    are no header of numbers or dates (:func:`_header_of_numbers`)."""
    from licanom.data.extract.files import SEPARATORS

    split = "|".join(map(re.escape, SEPARATORS))  # a line read with another separator: one column
    values = [part for c in columns for part in re.split(split, c)]
    return (not any(v.strip() in RAW for v in values) and any(_DATA_LIKE.match(v) for v in values)
            and not _header_of_numbers(columns))


def columns_shown(columns: list[str], limit: int = 20) -> str:
    """A file's columns as a refusal for missing ones lists them: their names; but where none names a
    Web API Log column and one reads as a value (a number, an address, a time), only how many there
    are: a file exported without its header line has its first row there, a customer's key and
    address with it, and the message reaches the console and Prefect's database. A header of
    numbers counting up or of dates (``0,1,2``: pandas' export of a frame without names) is named:
    no log row reads so."""
    own = [c for c in columns if c not in (UNREADABLE, SOURCE_FILE, SOURCE_ROW)]
    if looks_like_values(own):
        return (f"{len(own)} columns, none of them a Web API Log column's name, and its first line reads as values: "
                "a file without its header line? (those values are not shown)")
    return str([_shown(c) for c in own][:limit])


def _shown(name: str, width: int = 80) -> str:
    """A column name as a message shows it: at most ``width`` characters, a cut one ending in "…"."""
    return name if len(name) <= width else name[: width - 1] + "…"


def ids_out_of_order(rows: pl.DataFrame) -> int:
    """How many times the Ids of ``rows`` (valid rows, in time order) fall: a row with a smaller Id
    than the row before it. Where they do, a chunk's first_id..last_id is not the range of its rows."""
    return int((rows["Id"].diff() < 0).sum()) if rows.height > 1 and "Id" in rows.columns else 0


def apart_from_unknown_products(validation: ValidationResult) -> tuple[ValidationResult, int]:
    """``validation`` with its rows of products the model was not trained on set aside (they ask
    for a retraining, not a refusal: a scoring pass counts them apart from the bad rows), and how
    many they are."""
    q = validation.quarantine
    if not q.height:
        return validation, 0
    foreign = q[REASON].str.contains(UNKNOWN_PRODUCT, literal=True)
    n = int(foreign.sum())
    return ValidationResult(valid=validation.valid, n_in=validation.n_in - n, quarantine=q.filter(~foreign)), n


# A reason's file before its line ("/srv/exports/<customer>/a.csv line 6: ..."): its folders,
# then its name and line (group 1), which a pseudonymised vendor's copies keep alone
FOLDERS_OF_A_LINE = r"^[^\n]*?[/\\]([^/\\\n]*? line \d+: )"


def without_folders(quarantine: pl.DataFrame, names: Mapping[str, str] | None = None) -> pl.DataFrame:
    """``quarantine`` with each export file named by its name in the source (``names``: a file as
    read, the rows' ``_file`` -> its name, :attr:`licanom.data.extract.files.IdsBelow.names`) or,
    where it has none, by its base name: in ``_file`` and in the reasons that name it (``a.csv line
    6: ...``). What a pseudonymised vendor's refusal shows: the folders of a local path
    ("/srv/exports/<customer>/...") are the vendor's, and the refusal reaches Prefect's database."""
    names = dict(names or {})
    if SOURCE_FILE in quarantine.columns:
        files = [f for f in quarantine[SOURCE_FILE].cast(pl.String).unique().to_list() if f is not None]
        shown = {f: names.get(f, re.sub(r"^.*[/\\]", "", f)) for f in files}
    else:
        shown = {}
    columns = []
    if REASON in quarantine.columns:
        named = pl.col(REASON)  # a row's reason names the row's own file
        for file, name in shown.items():
            named = named.str.replace_all(f"{file} line ", f"{name} line ", literal=True)
        stripped = pl.col(REASON).str.replace(FOLDERS_OF_A_LINE, "${1}")
        columns.append((pl.when(pl.col(SOURCE_FILE).is_null()).then(stripped).otherwise(named)
                        if SOURCE_FILE in quarantine.columns else stripped).alias(REASON))
    if shown:
        columns.append(pl.col(SOURCE_FILE).cast(pl.String).replace(shown).alias(SOURCE_FILE))
    return quarantine.with_columns(columns) if columns else quarantine


def check_bad_fraction(result: ValidationResult, max_bad_fraction: float, examples: int = 5,
                       private: bool = False, file_names: Mapping[str, str] | None = None) -> None:
    """Fail when too large a share of the rows is quarantined, naming columns and examples: the bad
    rows' reasons with their counts, and the first row of each (at most ``examples``; the rows that
    are no bad rows, exact copies and a CSV's header lines again, are neither counted nor shown).
    ``private``: the vendor's values are pseudonymised (``privacy.pseudonymise``): an example names
    its row and column but not its key, address, machine code or machine name, and the export's
    file by its name in the source (``file_names``, by the rows' ``_file``) or its base name, not
    its folders (:func:`without_folders`; the message reaches the console and Prefect's database).
    The others' refusals name the file as read, its full path."""
    if result.n_in == 0:
        raise ValidationError("the log is empty: no rows to validate")
    if result.bad_fraction > max_bad_fraction:
        bad = result.quarantine.filter(~_not_bad())
        if private:
            bad = without_folders(bad, file_names)
        counts = _reason_counts(bad)
        # the commonest reasons (an unreadable line's without its line number)
        summary = ", ".join(f"{r} ({n} rows)" for r, n in counts.head(10).iter_rows())
        if counts.height > 10:
            summary += f" and {counts.height - 10} more"
        # one line each (the command line prints the message on one line): input row (from 0),
        # Id, reason, and the value the first reason is about; of each reason (an unreadable
        # line's without its line number) its first row only, in the order read
        firsts = bad.filter(_unlined(pl.col(REASON)).is_first_distinct()).head(examples)
        from_file = SOURCE_FILE in firsts.columns and firsts[SOURCE_FILE].is_not_null().any()
        counted = ("rows of each file counted from 0, a CSV's first after its header" if from_file
                   else "rows counted from 0 in the order read")
        shown = firsts.to_dicts()
        # a file is named at its first example only: the rest of its examples follow it
        files = [r.get(SOURCE_FILE) for r in shown]
        sample = "; ".join(
            (f"row {r.get(SOURCE_ROW)}" if r.get(SOURCE_FILE) else f"row {r.get(ROW)}")
            + (f" (Id {str(r['Id'])[:40]})" if r.get("Id") is not None else "")
            + (f" of {r[SOURCE_FILE]}" if r.get(SOURCE_FILE) and (i == 0 or files[i - 1] != files[i]) else "")
            + f": {r.get(REASON)}" + _value_shown(r, private) for i, r in enumerate(shown))
        raise ValidationError(
            f"{result.n_bad} of {result.n_in} rows ({result.bad_fraction:.1%}) failed "
            f"validation, more than validate.max_bad_fraction allows ({max_bad_fraction:.1%}). Failures: {summary}. "
            f"Examples ({counted}): {sample}{_time_hint(counts)}", result)


def _time_hint(counts: pl.DataFrame) -> str:
    """A hint when unreadable times are the commonest reason: how to declare the export's layout."""
    if not counts.height or counts.row(0)[0] != _LOST["Time"]:
        return ""
    return (". Times are read as ISO 8601 or Unix seconds: declare another layout with source.time_format "
            '(or --time-format), e.g. "%d.%m.%Y %H:%M:%S", and the zone of times written without an offset with '
            "source.timezone (or --timezone; else they are read as UTC); where the export has a column of UTC times "
            "beside it, map that one instead (source.columns, e.g. {TimeUTC: Time, Time: null})")


def refusal_kept(err: ValidationError, path: Path, what: str = "the quarantined rows") -> ValidationError:
    """A log refused for too many bad rows (``err.result`` set): its quarantine written to ``path``
    (a temporary name, then a rename) and the refusal again, naming where ``what`` are, without the
    validation's frames (the rows are in ``path``; an error that carried them would be kept whole
    wherever the error is, e.g. a failed flow run's stored result, night after night)."""
    assert err.result is not None, "only a refusal with its validation keeps a quarantine"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    err.result.quarantine.write_parquet(tmp)
    tmp.replace(path)
    return ValidationError(f"{str(err).rstrip('.')}. {what[:1].upper()}{what[1:]}, each with its reason: {path}")


def _value_shown(row: dict[str, object], private: bool = False) -> str:
    """`` (Time '01/02/2025 10:01')``: the value of the column a quarantined row's first reason
    names, where the row has it; empty otherwise. ``private``: a key's, address's, machine code's
    or machine name's value is not shown, only that the row has one."""
    column = str(row.get(REASON) or "").split(":", 1)[0]
    if column == "Id" or column not in row:
        return ""
    value = row[column]
    if private and value is not None and column in dict(PRIVATE_COLUMNS):
        return f" ({column} not shown: privacy.pseudonymise)"
    return f" ({column} {str(value)[:40]!r})" if value is not None else f" ({column} empty)"
