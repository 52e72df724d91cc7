"""Bad input at scale: generated malformed logs (about 300 a run under the suite's Hypothesis
profile, over 10,000 under ``deep``: docs/testing.md), each written as a file and read the real
way (extract -> validate), then a few through the command line.

Every row read ends valid or quarantined (in = valid + quarantined); a quarantined row's reason
names the failing column, or the file and line that could not be read; a file that cannot be
used at all raises a typed error that names it (or the missing column). The command line answers
each class of bad input with its documented exit code and never with a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from licanom.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SOURCE, main
from licanom.data.columns import RAW, REQUIRED_RAW
from licanom.config import SourceConfig, load_config
from licanom.data.extract.files import ExtractFileError, read_log
from licanom.data.pipeline import extract
from licanom.data.states import is_valid_state
from licanom.data.validate import EXACT_COPY, ValidationError, ValidationResult, validate_log
from tests.conftest import examples

# How many logs each property test generates under a profile of 100 examples (tests/conftest.py).
EXAMPLES = {k: examples(n) for k, n in
            {"csv": 260, "ndjson": 230, "parquet": 200, "files": 250, "mixed": 90, "cli": 30}.items()}

SETTINGS = dict(
    deadline=None,
    database=None,
    # A failing log is reported as generated: shrinking logs like these takes minutes.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


class _Huge(str):
    def __repr__(self) -> str:  # a failing example prints the log
        return "HUGE"


HUGE = _Huge("K" * 1_000_000)  # a 1 MB field
BAD_UTF8 = (b"K\xff\xfeY", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"ok\xf8\x88")
GOOD_IPS = ("8.8.8.8", "81.2.69.160", "2001:4860::1", "fe80::1%eth0", "::ffff:8.8.4.4", " 1.1.1.1 ", "::1", "")
BAD_IPS = ("999.1.1.1", "1.2.3", "not-an-ip", "2001:::1", "1.2.3.4/24", "::g", "1.1.1.1.1", "1.2.3.4:80", "12345")
GOOD_STATES = (1010, 1011, 1021, 2010, 2023, 6010, 8010)
BAD_STATES = (0, 5555, 9999, 1030, 10100, -1010)
T0 = 1_740_787_200  # 2025-03-01 00:00:00 UTC
ID0 = 10_000

OK, BAD, MAYBE = "ok", "bad", "maybe"  # what a changed value does to its row


def _iso(t: int, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.fromtimestamp(t, UTC).strftime(fmt)


# Per column: functions of the row's clean value -> (new value, effect). JSON-only types
# (floats, booleans, lists) are written as their text in CSV and Parquet text columns.
MUTATIONS: dict[str, list] = {
    "Id": [
        lambda i: ("x", BAD), lambda i: (f"{i}.5", BAD), lambda i: (f"{i}.0", OK), lambda i: (f" {i} ", OK),
        lambda i: (None, BAD), lambda i: ("", BAD), lambda i: (2**70, BAD), lambda i: (1.5, BAD),
        lambda i: (True, BAD), lambda i: ([i], BAD), lambda i: (float("nan"), BAD), lambda i: ("1e400", BAD),
    ],
    "ProductId": [
        lambda p: ("x", BAD), lambda p: (None, BAD), lambda p: (f"{p}.0", OK), lambda p: (f" {p} ", OK),
        lambda p: (2.5, BAD), lambda p: (False, BAD), lambda p: (-(2**63) - 1, BAD),
    ],
    "Key": [
        lambda k: (None, BAD), lambda k: ("", BAD), lambda k: ("   ", BAD), lambda k: (HUGE, BAD),
        lambda k: (BAD_UTF8[len(k) % len(BAD_UTF8)], MAYBE), lambda k: ("ключ-€-🔑", OK), lambda k: (12345, OK),
        lambda k: ("a,b\n\"c\"", OK),
    ],
    "IP": [*[lambda ip, v=v: (v, OK) for v in GOOD_IPS], *[lambda ip, v=v: (v, BAD) for v in BAD_IPS],
           lambda ip: (None, OK), lambda ip: (b"1.1.\xff.1", BAD)],
    "Time": [
        lambda t: (str(t), OK), lambda t: (f"{t}.25", OK), lambda t: (_iso(t), OK), lambda t: (t + 0.5, OK),
        lambda t: (_iso(t, "%Y-%m-%d %H:%M:%S"), OK), lambda t: (_iso(t, "%Y-%m-%dT%H:%M:%S+02:00"), OK),
        lambda t: ("garbage", BAD), lambda t: ("2025-13-45T00:00:00Z", BAD), lambda t: (None, BAD),
        lambda t: ("", BAD), lambda t: ("99999999999", BAD), lambda t: (0, BAD), lambda t: (True, BAD),
        lambda t: ([t], BAD), lambda t: ("1e9", BAD),
    ],
    "State": [
        *[lambda s, v=v: (v, BAD) for v in BAD_STATES], lambda s: ("x", BAD), lambda s: (None, BAD),
        lambda s: (f"{s}.5", BAD), lambda s: (f"{s}.0", OK), lambda s: (f" {s} ", OK), lambda s: (True, BAD),
        lambda s: ([s], BAD), lambda s: (GOOD_STATES[s % len(GOOD_STATES)], OK),
    ],
    "MachineCode": [
        lambda m: ("", OK), lambda m: (None, OK), lambda m: (HUGE, BAD), lambda m: (42, OK),
        lambda m: (b"mc\xff", MAYBE), lambda m: ("two\nlines", OK), lambda m: ("  ", OK),
    ],
    "FriendlyName": [lambda f: (None, OK), lambda f: ("pc, \"quoted\"", OK), lambda f: (b"\x80pc", MAYBE)],
    "DOIntValue": [lambda d: ("x", BAD), lambda d: (None, OK), lambda d: (str(d), OK), lambda d: (1.5, BAD)],
}
NESTED, BOOLEAN, DURATION = "nested", "boolean", "duration"  # a Parquet column of a wrong dtype
REQUIRED = frozenset({"Id", "ProductId", "Key", "Time", "State"})  # null is a failure
TEXTS = frozenset({"Key", "IP", "MachineCode", "FriendlyName"})

# A reason names a column ("State: unknown state code") or the line an extractor could not read.
_PART = re.compile(rf"^({'|'.join(RAW)}): \S")
_LINE = re.compile(r" line \d+: \S")


@dataclass
class Log:
    """A generated log: its columns, its rows as Python values, and what each row should give."""

    columns: list[str]
    rows: list[dict[str, Any]]
    bad: list[set[str]]  # columns that must be named in the row's reason
    maybe: list[bool]  # a value whose outcome depends on the format (bytes that are not UTF-8)
    lost: list[bool] = field(default_factory=list)  # a line that cannot be read at all
    ids: list[int | None] = field(default_factory=list)  # the Id a row has when its Id is fine
    missing: str | None = None  # a required column the file lacks
    mixed: bool = False  # one of several files: a column of another dtype elsewhere is read as text


def _clean_row(i: int) -> dict[str, Any]:
    return {
        "Id": ID0 + i,
        "ProductId": (3, 7)[i % 2],
        "Key": f"KEY{i % 7:03d}-ABCDE",
        "IP": GOOD_IPS[i % 4],
        "Time": T0 + 30 * i,
        "State": GOOD_STATES[i % len(GOOD_STATES)],
        "MachineCode": f"mc{i % 5}",
        "FriendlyName": f"pc {i}",
        "DOIntValue": i,
    }


@st.composite
def logs(draw: st.DrawFn, max_rows: int = 40, min_rows: int = 0, max_faults: int = 12) -> Log:
    """A log with some changed values, repeated Ids, any row order and a column fault."""
    n = draw(st.integers(min_rows, max_rows))
    optional = draw(st.sets(st.sampled_from(["FriendlyName", "DOIntValue"])))
    columns = [c for c in RAW if c in REQUIRED_RAW or c in optional]
    rows = [_clean_row(i) for i in range(n)]
    bad: list[set[str]] = [set() for _ in range(n)]
    maybe = [False] * n
    id_ok = [True] * n
    if n:
        for _ in range(draw(st.integers(0, max_faults))):
            i = draw(st.integers(0, n - 1))
            column = draw(st.sampled_from([c for c in columns if c in MUTATIONS]))
            value, effect = draw(st.sampled_from(MUTATIONS[column]))(_clean_row(i)[column])
            rows[i][column] = value
            bad[i].discard(column)
            if effect == BAD:
                bad[i].add(column)
            maybe[i] |= effect == MAYBE
            if column == "Id":
                id_ok[i] = effect == OK
        for _ in range(draw(st.integers(0, 3))):  # a later row repeats an earlier Id
            j = draw(st.integers(0, n - 1))
            i = draw(st.integers(0, j))
            if id_ok[i] and id_ok[j]:
                rows[j]["Id"] = rows[i]["Id"]
    ids = [_int(r["Id"]) if ok else None for r, ok in zip(rows, id_ok, strict=True)]
    order = list(range(n))
    how = draw(st.sampled_from(["ascending", "shuffled", "reversed"]))
    if how == "shuffled":
        random.Random(draw(st.integers(0, 2**16))).shuffle(order)
    elif how == "reversed":
        order.reverse()
    log = Log(columns, [rows[k] for k in order], [bad[k] for k in order], [maybe[k] for k in order],
              [False] * n, [ids[k] for k in order])
    fault = draw(st.sampled_from(["none", "none", "extra", "reorder", "lower", "drop", "rename"]))
    if fault == "extra":
        log.columns.append("Unexpected")
        for r in log.rows:
            r["Unexpected"] = "?"
    elif fault == "reorder":
        random.Random(n).shuffle(log.columns)
    elif fault == "lower":  # "id" for "Id", " key" for "Key": read as the log's columns
        for at, name in enumerate(list(log.columns)):
            new = name.lower() if at % 2 else f" {name.lower()}"
            log.columns[at] = new
            for r in log.rows:
                r[new] = r[name]
    elif fault in ("drop", "rename"):
        log.missing = draw(st.sampled_from(REQUIRED_RAW))
        at = log.columns.index(log.missing)
        if fault == "drop":
            del log.columns[at]
        else:  # "Id old" for "Id": another name, not the column (a case or spaces apart would be)
            log.columns[at] = f"{log.missing} old"
            for r in log.rows:
                r[f"{log.missing} old"] = r[log.missing]
    return log


def _int(value: Any) -> int:
    return int(float(value)) if not isinstance(value, int) else value


# --- writing a log in each format ----------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def _csv_cell(value: Any, quote_all: bool) -> bytes:
    if value is None:
        return b""
    raw = value if isinstance(value, bytes) else _text(value).encode()
    if quote_all or any(ch in raw for ch in b',"\n\r') or raw != raw.strip():
        return b'"' + raw.replace(b'"', b'""') + b'"'
    return raw


def write_csv(path: Path, log: Log, rng: random.Random) -> None:
    """The log as CSV bytes, with some lines of too many fields and a last line cut inside a
    quoted field; those lines are rows that cannot be read."""
    quote_all, crlf, bom = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
    newline = b"\r\n" if crlf else b"\n"
    lines = [b",".join(_csv_cell(c, quote_all) for c in log.columns)]
    for k, row in enumerate(log.rows):
        line = b",".join(_csv_cell(row.get(c), quote_all) for c in log.columns)
        if rng.randrange(31) == 0:
            line += b",surplus,fields"
            log.lost[k] = True
        lines.append(line)
    if log.rows and rng.randrange(9) == 0:  # an export cut inside a quoted field
        lines.append(b'99,3,"KEY-cut')
        _add_lost_row(log)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join(lines) + newline * rng.randrange(3))


def write_ndjson(path: Path, log: Log, rng: random.Random) -> None:
    """The log as NDJSON (bytes that are not UTF-8 inside strings, NaN, blank lines), with some
    lines that are not a JSON object."""
    newline = b"\r\n" if rng.random() < 0.5 else b"\n"
    lines = []
    for k, row in enumerate(log.rows):
        obj, blobs = {}, {}
        for c in log.columns:
            value = row.get(c)
            if isinstance(value, bytes):  # written raw inside the JSON string
                token = f"@bytes{len(blobs)}@"
                blobs[json.dumps(token).encode()] = b'"' + value + b'"'
                value = token
            obj[c] = value
        line = json.dumps(obj).encode()
        for token, blob in blobs.items():
            line = line.replace(token, blob)
        broken = rng.randrange(100)
        if broken < 4:
            line = (b"{broken", b"[1, 2]", b"null", line[: len(line) // 2])[broken]
            log.lost[k] = True
        lines.append(line)
        if rng.randrange(21) == 0:
            lines.append(b"  ")
    path.write_bytes(newline.join(lines) + (newline if rng.random() < 0.5 else b""))


def _add_lost_row(log: Log) -> None:
    log.rows.append({})
    log.bad.append(set())
    log.maybe.append(False)
    log.lost.append(True)
    log.ids.append(None)


def _parquet_column(name: str, values: list[Any], rng: random.Random) -> pl.Series:
    """A column of the dtype its values allow, sometimes another one that holds them too."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds <= {int} and all(-(2**63) <= v < 2**63 for v in present):
        if name == "Time":
            unit, zone = rng.choice([("us", "UTC"), ("ns", "Europe/Paris"), ("ms", None), ("s", None)])
            if unit == "s":
                return pl.Series(name, values, dtype=rng.choice([pl.Int64, pl.Float64]))
            times = pl.from_epoch(pl.Series(name, values, dtype=pl.Int64), "s").dt.cast_time_unit(unit)
            return times.dt.convert_time_zone(zone) if zone else times
        dtype = rng.choice([pl.Int64, pl.Int32, pl.UInt64, pl.Float64, pl.Decimal(20, 0), pl.String])
        if dtype in (pl.Int32, pl.UInt64) and not all(
            (0 if dtype == pl.UInt64 else -(2**31)) <= v < 2**31 for v in present
        ):
            dtype = pl.Int64
        return pl.Series(name, [v if dtype != pl.String or v is None else str(v) for v in values], dtype=dtype)
    if bytes in kinds:
        return pl.Series(name, [v if v is None or isinstance(v, bytes) else _text(v).encode() for v in values],
                         dtype=pl.Binary)
    texts = [None if v is None else _text(v) for v in values]
    dtype = rng.choice([pl.String, pl.String, pl.Categorical, pl.Binary])
    if dtype == pl.Binary:
        return pl.Series(name, [None if v is None else v.encode() for v in texts], dtype=pl.Binary)
    return pl.Series(name, texts, dtype=dtype)


def write_parquet(path: Path, log: Log, rng: random.Random) -> None:
    """The log as Parquet, a column now and then of a dtype that cannot hold its values."""
    columns = []
    for c in log.columns:
        values = [r.get(c) for r in log.rows]
        wrong = rng.choice([None] * 27 + [NESTED, BOOLEAN, DURATION]) if c in MUTATIONS else None
        if wrong == BOOLEAN and c in TEXTS:
            wrong = NESTED  # a boolean reads as the text "true": not a wrong type for text
        if wrong is None:
            columns.append(_parquet_column(c, values, rng))
            continue
        filler = {NESTED: [1, 2], BOOLEAN: True, DURATION: timedelta(seconds=5)}[wrong]
        columns.append(pl.Series(c, [None if v is None else filler for v in values]))
        for k, v in enumerate(values):
            log.bad[k].discard(c)  # the value is gone, whatever it was
            if v is None and c not in REQUIRED:
                continue
            if v is not None and log.mixed and c in TEXTS:
                log.maybe[k] = True  # text as Python writes the value, when the files are joined
            else:
                log.bad[k].add(c)
            if c == "Id":
                log.ids[k] = None
    pl.DataFrame(columns, height=len(log.rows)).write_parquet(path)


WRITERS = {"csv": write_csv, "ndjson": write_ndjson, "parquet": write_parquet}
SEEDS = st.integers(0, 2**32 - 1)  # for the writers' choices per row and column


# --- the checks -----------------------------------------------------------------------------
def assert_accounted(result: ValidationResult, n_read: int) -> dict[int, str]:
    """in = valid + quarantined; every quarantined row once, with a reason naming a column or a
    line. Returns the reasons by input row."""
    q = result.quarantine
    assert result.n_in == n_read == result.valid.height + q.height
    assert result.valid.columns == list(RAW)
    assert q["_row"].is_unique().all() and q["reason"].null_count() == 0
    reasons = dict(zip(q["_row"].to_list(), q["reason"].to_list(), strict=True))
    for row, reason in reasons.items():
        assert _LINE.search(reason) or all(_PART.match(p) for p in reason.split("; ")), (row, reason)
    assert result.valid["Id"].is_unique().all()
    return reasons


def assert_as_generated(result: ValidationResult, log: Log) -> None:
    """Each changed row is quarantined for its columns, each clean row is valid or a repeat of a
    valid Id, each unreadable line is quarantined naming its line."""
    reasons = assert_accounted(result, len(log.rows))
    valid_ids = set(result.valid["Id"].to_list())
    for k in range(len(log.rows)):
        why = reasons.get(k)
        if log.lost[k]:
            assert why is not None and _LINE.search(why), (k, why)
        elif log.bad[k]:
            assert why is not None, (k, log.rows[k], log.bad[k])
            for column in log.bad[k]:
                assert re.search(rf"(^|; ){column}: ", why), (k, column, why)
        elif not log.maybe[k]:
            assert why is None or ((why == EXACT_COPY or why.startswith("Id: duplicate")) and log.ids[k] in valid_ids), \
                (k, log.rows[k], why)
            assert log.ids[k] in valid_ids


def _file_not_utf8(path: Path) -> bool:
    """Whether the CSV or NDJSON file ``path`` (or one in the folder ``path``) holds bytes that are
    not UTF-8 (a BOM aside). The file, not the log: a writer may have replaced or cut the line that
    held them."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        if f.suffix in (".csv", ".ndjson"):
            try:
                f.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                return True
    return False


def read_and_validate(path: Path, log: Log, unreadable_ok: bool = False) -> ValidationResult | None:
    """The real path on a generated log; a typed error only where the log calls for one. A CSV
    or NDJSON file with bytes that are not UTF-8 is refused whole, naming the file, its line and
    the setting that reads it (never read with replaced bytes)."""
    not_utf8 = _file_not_utf8(path)
    try:
        raw = read_log(path)
    except ExtractFileError as err:
        if not_utf8 and "is not UTF-8" in str(err):
            assert str(path) in str(err) and " line " in str(err) and "source.encoding" in str(err), err
            return None
        # a file none of whose lines can be read cannot be used at all
        assert unreadable_ok or (log.rows and all(log.lost)), err
        assert str(path) in str(err)
        return None
    except ValidationError as err:  # a file with no row: refused for a missing column, or as empty, named
        assert not log.rows and str(path) in str(err), err
        if log.missing:
            assert "lacks required column" in str(err) and log.missing in str(err), err
        else:
            assert "the log is empty" in str(err), err
        return None
    try:
        result = validate_log(raw)
    except ValidationError as err:
        if log.missing:
            assert log.missing in str(err)
        else:  # a file with no row has no columns either
            assert raw.width == 0 and "lacks required column" in str(err), err
        return None
    assert log.missing is None, f"{log.missing} is missing, yet the log validated"
    assert not not_utf8, "bytes that are not UTF-8 were read"
    return result


def _property(fmt: str, log: Log, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weblog.{fmt}"
        WRITERS[fmt](path, log, rng)
        if fmt == "parquet" and rng.randrange(11) == 0:  # a truncated file
            data = path.read_bytes()
            path.write_bytes(data[: rng.randrange(1, len(data))])
            with pytest.raises(ExtractFileError, match=re.escape(str(path))):
                read_log(path)
            return
        result = read_and_validate(path, log)
        if result is not None:
            assert_as_generated(result, log)


@settings(max_examples=EXAMPLES["csv"], **SETTINGS)
@given(logs(), SEEDS)
def test_csv_logs_lose_no_row(log, seed):
    _property("csv", log, seed)


@settings(max_examples=EXAMPLES["ndjson"], **SETTINGS)
@given(logs(), SEEDS)
def test_ndjson_logs_lose_no_row(log, seed):
    _property("ndjson", log, seed)


@settings(max_examples=EXAMPLES["parquet"], **SETTINGS)
@given(logs(), SEEDS)
def test_parquet_logs_lose_no_row(log, seed):
    _property("parquet", log, seed)


# --- whole files that are empty, cut, mislabelled or garbage --------------------------------
def _sample_bytes(fmt: str, n: int) -> bytes:
    rows = [[_clean_row(i)[c] for c in REQUIRED_RAW] for i in range(n)]
    frame = pl.DataFrame(rows, schema=list(REQUIRED_RAW), orient="row")
    buf = io.BytesIO()
    {"csv": frame.write_csv, "ndjson": frame.write_ndjson, "parquet": frame.write_parquet}[fmt](buf)
    return buf.getvalue()


@st.composite
def odd_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(file name, content): empty, header only, cut anywhere, another format's bytes, garbage."""
    fmt = draw(st.sampled_from(["csv", "ndjson", "parquet"]))
    suffix = draw(st.sampled_from([fmt] * 3 + ["csv", "ndjson", "parquet", "jsonl", "pq", "txt"]))
    kind = draw(st.sampled_from(["empty", "header", "cut", "garbage", "blank", "nul"]))
    if kind == "empty":
        content = b""
    elif kind == "header":
        content = _sample_bytes(fmt, 0) if fmt != "ndjson" else b""
    elif kind == "cut":
        whole = _sample_bytes(fmt, draw(st.integers(1, 30)))
        content = whole[: draw(st.integers(0, len(whole)))]
    elif kind == "blank":
        content = draw(st.sampled_from([b"\n", b"\n\n\r\n", b"   \n", b"\xef\xbb\xbf"]))
    elif kind == "nul":
        content = _sample_bytes(fmt, 5).replace(b"KEY", b"K\x00Y", 2)
    else:
        content = draw(st.binary(max_size=200))
    return f"log.{suffix}", content


@settings(max_examples=EXAMPLES["files"], **SETTINGS)
@given(odd_files(), st.sampled_from(["file", "folder", "glob", "missing"]))
def test_odd_files_give_rows_or_a_clear_error(named, how):
    name, content = named
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in" / name
        path.parent.mkdir()
        path.write_bytes(content)
        target = {"file": path, "folder": path.parent, "glob": path.parent / "*", "missing": path.with_name("nope.csv")}[how]
        try:
            raw = read_log(target)
        except ExtractFileError as err:
            assert str(path) in str(err) or str(target) in str(err), err
            return
        except ValidationError as err:  # no row under its first line: refused as empty, or for the columns
            # that line lacks (a one-line file of no log), named
            if "lacks required column" in str(err):
                assert str(path) in str(err) and any(c in str(err) for c in REQUIRED_RAW), err
            else:
                assert "the log is empty (" in str(err) and str(target) in str(err), err
            return
        try:
            result = validate_log(raw)
        except ValidationError as err:
            assert "lacks required column" in str(err) and any(c in str(err) for c in REQUIRED_RAW), err
            return
        assert_accounted(result, raw.height)


# --- mixed formats in one folder -------------------------------------------------------------
@settings(max_examples=EXAMPLES["mixed"], **SETTINGS)
@given(logs(max_rows=45), st.data())
def test_mixed_formats_in_a_folder(log, data):
    """A log split over CSV, NDJSON and Parquet files (read in name order), read whole or after
    a watermark Id and before a time."""
    draw = data.draw
    formats = draw(st.lists(st.sampled_from(["csv", "ndjson", "parquet"]), min_size=2, max_size=3))
    cuts = sorted(draw(st.lists(st.integers(0, len(log.rows)), min_size=len(formats) - 1, max_size=len(formats) - 1)))
    bounds = list(zip([0, *cuts], [*cuts, len(log.rows)], strict=True))
    after_id = draw(st.none() | st.integers(ID0 - 1, ID0 + 45))
    until = datetime.fromtimestamp(T0 + 30 * draw(st.integers(0, 45)), UTC)
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for k, (fmt, (lo, hi)) in enumerate(zip(formats, bounds, strict=True)):
            part = Log(list(log.columns), log.rows[lo:hi], log.bad[lo:hi], log.maybe[lo:hi], log.lost[lo:hi],
                       log.ids[lo:hi], log.missing, mixed=True)
            if fmt == "ndjson" and not part.rows:
                continue  # an empty NDJSON file has no columns: nothing to mix
            WRITERS[fmt](Path(tmp) / f"part{k}.{fmt}", part, random.Random(draw(SEEDS)))
            parts.append(part)
        whole = Log(list(log.columns), *[[x for p in parts for x in getattr(p, a)] for a in ("rows", "bad", "maybe", "lost", "ids")],
                    missing=log.missing)
        if after_id is None:
            result = read_and_validate(Path(tmp), whole, unreadable_ok=True)
            if result is not None:
                assert_as_generated(result, whole)
            return
        try:
            raw = extract(SourceConfig(kind="files", path=tmp), after_id=after_id, until=until)
            result = validate_log(raw)
        except ExtractFileError as err:
            assert tmp in str(err) and ("is not UTF-8" not in str(err) or _file_not_utf8(Path(tmp))), err
            return
        except ValidationError as err:
            assert whole.missing and whole.missing in str(err) or raw.width == 0
            return
        assert_accounted(result, raw.height)
        assert (result.valid["Id"] > after_id).all() and (result.valid["Time"] < until).all()


# --- the command line ------------------------------------------------------------------------
@settings(max_examples=EXAMPLES["cli"], **SETTINGS)
@given(logs(max_rows=99) | logs(min_rows=110, max_rows=150, max_faults=3), st.sampled_from(["csv", "ndjson", "parquet"]),
       SEEDS)
def test_cli_exit_codes_and_no_traceback(log, fmt, seed):
    """`licanom prepare` in-process: 4 when the file cannot be read, 3 when the log cannot be
    used (a missing column, too many bad rows, fewer rows than one chunk), else 0."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weblog.{fmt}"
        rng = random.Random(seed)
        WRITERS[fmt](path, log, rng)
        if rng.randrange(7) == 0:
            path.write_bytes(path.read_bytes()[:-9] if fmt == "parquet" else b"")
        try:
            result, expected = validate_log(read_log(path)), None
        except ExtractFileError:
            expected = EXIT_SOURCE
        except ValidationError:
            expected = EXIT_BAD_INPUT
        if expected is None:
            cfg = load_config()
            bad = result.bad_fraction > cfg.validate_.max_bad_fraction or result.n_in == 0
            expected = EXIT_BAD_INPUT if bad or result.valid.height < cfg.chunk.size else None
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["prepare", "--logs", str(path), "--out", str(Path(tmp) / "prep")])
        said = out.getvalue() + err.getvalue()
        assert "Traceback" not in said
        if expected is None:  # usable: 0, or 3 when its chunks leave none to train on
            assert code in (EXIT_OK, EXIT_BAD_INPUT), said
        else:
            assert code == expected, said
        if code == EXIT_OK:
            assert re.search(rf"rows read +{result.n_in:,}\n", said), said
        else:
            assert err.getvalue().startswith("licanom: "), said
            if code == EXIT_SOURCE:
                assert str(path) in err.getvalue()


def test_the_generated_states_are_what_they_claim():
    states = pl.Series(GOOD_STATES + BAD_STATES)
    ok = pl.select(is_valid_state(pl.lit(states))).to_series().to_list()
    assert ok == [True] * len(GOOD_STATES) + [False] * len(BAD_STATES)


def test_a_file_of_a_folder_without_a_required_column_is_refused_by_name(tmp_path):
    """Joined with files that have it, a file without MachineCode would pass as rows whose
    machine code is empty: the log is refused, naming the file and the columns."""
    good = "Id,ProductId,Key,IP,Time,State,MachineCode\n1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:00:00Z,1010,mc1\n"
    (tmp_path / "a.csv").write_text(good)
    (tmp_path / "b.csv").write_text("Id,ProductId,Key,Time,State\n2,3,AAAA-BBBB,2025-03-01T00:01:00Z,1010\n")
    with pytest.raises(ValidationError, match=r"b\.csv: the log file lacks required column\(s\) \['IP', 'MachineCode'\]"):
        read_log(tmp_path)
    (tmp_path / "b.csv").write_text(good.replace("1,3,", "2,3,"))
    assert read_log(tmp_path).height == 2


def test_a_folders_files_of_no_log_kind_are_named_and_an_empty_log_is_refused_as_empty(tmp_path, caplog):
    """A README, a ``.txt`` export or a ``.log`` beside the parts is not read, and the warning names
    them (a log saved under such a name would otherwise be lost without a word); a log file or
    folder with nothing in it, not even a header, is refused as empty rather than as a log without
    columns. A night's read of an empty file is no new rows."""
    import logging

    from licanom.data.extract.files import ExtractFileError
    from licanom.data.validate import ValidationError

    header = "Id,ProductId,Key,IP,Time,State,MachineCode\n"
    (tmp_path / "part1.csv").write_text(header + "1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:00:00Z,1010,mc1\n")
    (tmp_path / "README.md").write_text("exports of the licensing server\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "march.txt").write_text(header)
    with caplog.at_level(logging.WARNING, logger="licanom.data.extract.files"):
        assert read_log(tmp_path)["Id"].to_list() == ["1"]
    [record] = [r for r in caplog.records if "not read" in r.getMessage()]
    assert "2 file(s) not read" in record.getMessage() and "README.md, sub/march.txt" in record.getMessage()
    caplog.clear()
    (tmp_path / "README.md").unlink()
    (tmp_path / "sub" / "march.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="licanom.data.extract.files"):
        read_log(tmp_path)
    assert not caplog.records  # a folder of logs only: nothing to say

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError, match=r"empty\.csv: the log is empty \(no header, no rows\)$"):
        read_log(empty)
    assert read_log(empty, after_id=5).height == 0  # a night: nothing new yet
    header_only = tmp_path / "header.csv"
    header_only.write_text(header)
    with pytest.raises(ValidationError, match=r"header\.csv: the log is empty \(a header, no rows\)$"):
        read_log(header_only)
    with pytest.raises(ExtractFileError, match=r"no log files \(\.csv, \.json, .*\.tsv, text ones also \.gz\) found"):
        read_log(tmp_path / "nothing-here-*.csv")
    folder = tmp_path / "empties"
    folder.mkdir()
    (folder / "a.csv").write_bytes(b"")
    (folder / "b.csv").write_bytes(b"")
    with pytest.raises(ValidationError, match=r"empty \(no header, no rows\) in each of its 2 files"):
        read_log(folder)
    (folder / "b.csv").write_text(header + "1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:00:00Z,1010,mc1\n")
    assert read_log(folder)["Id"].to_list() == ["1"]  # an empty part beside a full one holds no rows


def test_a_gzipped_or_tab_separated_export_is_read_and_another_compression_or_a_spreadsheet_refused(tmp_path):
    """``part2.csv.gz`` in a folder is read with the other parts (before, a folder skipped it
    without a word), and so is a ``.tsv``; a ``.bz2``, ``.zip`` or spreadsheet there is refused,
    naming it; a README is skipped."""
    import gzip
    import os
    import time

    from licanom.data.extract.files import SETTLE_SECONDS, ExtractFileError

    header = "Id,ProductId,Key,IP,Time,State,MachineCode\n"
    (tmp_path / "part1.csv").write_text(header + "1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:00:00Z,1010,mc1\n")
    part2 = header + "2,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:01:00Z,1010,mc1\n"
    (tmp_path / "part2.csv.gz").write_bytes(gzip.compress(part2.encode()))
    (tmp_path / "README.md").write_text("exports of the licensing server\n")
    assert read_log(tmp_path)["Id"].to_list() == ["1", "2"]
    assert read_log(tmp_path / "part2.csv.gz")["Id"].to_list() == ["2"]
    (tmp_path / "part3.csv.bz2").write_bytes(b"BZh9")
    with pytest.raises(ExtractFileError, match=r"part3\.csv\.bz2: a compressed file this reader does not read"):
        read_log(tmp_path)
    (tmp_path / "part3.csv.bz2").unlink()
    (tmp_path / "part3.csv.rar").write_bytes(b"Rar!")
    with pytest.raises(ExtractFileError, match=r"part3\.csv\.rar: a compressed file"):
        read_log(tmp_path)
    (tmp_path / "part3.csv.rar").unlink()
    # hidden files and folders are no parts: a copy being written, an editor's checkpoint, macOS's "._"
    (tmp_path / ".part1.csv").write_text((tmp_path / "part1.csv").read_text())
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "part1-checkpoint.csv").write_text((tmp_path / "part1.csv").read_text())
    (tmp_path / "._part1.csv").write_bytes(b"\x00\x05\x16\x07\xff")
    assert read_log(tmp_path)["Id"].to_list() == ["1", "2"]
    damaged = tmp_path / "damaged" / "part9.csv.gz"
    damaged.parent.mkdir()
    body = bytearray(gzip.compress((header + "9,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:09:00Z,1010,mc1\n" * 50).encode()))
    body[20:28] = b"\xff" * 8
    damaged.write_bytes(bytes(body))
    with pytest.raises(ExtractFileError, match=r"part9\.csv\.gz as gzip"):
        read_log(damaged.parent)
    damaged.unlink()
    damaged.parent.rmdir()
    (tmp_path / "part3.xlsx").write_bytes(b"PK")
    with pytest.raises(ExtractFileError, match=r"part3\.xlsx: a spreadsheet; save it as CSV"):
        read_log(tmp_path)
    (tmp_path / "part3.xlsx").unlink()
    (tmp_path / "part3.tsv").write_text(header.replace(",", "\t") + "3\t3\tAAAA-BBBB\t8.8.8.8\t2025-03-01T00:02:00Z\t1010\tmc1\n")
    assert read_log(tmp_path)["Id"].to_list() == ["1", "2", "3"]  # a tab-separated export read too
    (tmp_path / "part3.tsv").unlink()
    # a gzip cut short: refused by name, or, still being written during a night's read, left for the next
    cut = tmp_path / "part4.csv.gz"
    cut.write_bytes(gzip.compress((header + "4,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:03:00Z,1010,mc1\n").encode())[:-8])
    assert read_log(tmp_path, after_id=0)["Id"].to_list() == ["1", "2"]
    old = time.time() - 2 * SETTLE_SECONDS
    os.utime(cut, (old, old))
    with pytest.raises(ExtractFileError, match=r"part4\.csv\.gz as gzip: the file is cut short"):
        read_log(tmp_path, after_id=0)


def test_a_missing_column_error_names_the_files_columns_only(tmp_path):
    """The columns the reader adds (a cut line's reason, the file and row of each row) are not the
    user's: the error lists the file's own header."""
    from licanom.data.validate import validate_log

    (tmp_path / "log.csv").write_text("Id,ProductId,Key,IP,Time,State,Machine_Code\n"
                                      "1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:00:00Z,1010,mc1\n"
                                      "2,3,AAAA-BBBB\n")
    raw = read_log(tmp_path / "log.csv")
    with pytest.raises(ValidationError, match=r"lacks required column\(s\) \['MachineCode'\]") as err:
        validate_log(raw)
    assert "_unreadable" not in str(err.value) and "Machine_Code" in str(err.value)


def test_an_exports_own_column_names_are_read_through_the_vendors_mapping(tmp_path):
    """An export that names log columns otherwise (``Machine Code``, ``LogId``) is refused with the
    mapping to set; with ``source.columns`` it reads as the log, a night's read after a watermark
    too (the Ids read through the mapped name), and a mapped name beside the log's own is refused
    naming both."""
    from licanom.data.pipeline import extract_new
    from licanom.data.validate import validate_log

    header = "LogId,ProductId,Key,IP,Time,State,Machine Code\n"
    rows = "".join(f"{i},3,AAAA-BBBB,8.8.8.8,2025-03-01T00:0{i}:00Z,1010,mc{i}\n" for i in range(1, 5))
    (tmp_path / "a.csv").write_text(header + rows)
    (tmp_path / "b.csv").write_text(header.replace("Machine Code", " machine code ") + "5,3,CCCC-DDDD,8.8.4.4,"
                                    "2025-03-01T00:05:00Z,1010,mc5\n")
    with pytest.raises(ValidationError, match=r"lacks required column\(s\) \['Id', 'MachineCode'\]") as err:
        validate_log(extract(SourceConfig(path=str(tmp_path))))
    assert "map it in the vendor's configuration, e.g. `source.columns: {'<its name in the export>': Id}`" in str(err.value)
    with pytest.raises(ValidationError, match=r"e\.g\. `source\.columns: \{'Machine Code': MachineCode\}`"):
        validate_log(extract(SourceConfig(path=str(tmp_path / "a.csv"), columns={"LogId": "Id"})))
    source = SourceConfig(path=str(tmp_path), columns={"LogId": "Id", "Machine Code": "MachineCode"})
    events = tmp_path / "events.csv"  # another file beside the log, of two of its names: no mapping is suggested
    events.write_text("event,kind,Key,IP\n1,brute_force,AAAA-BBBB,8.8.8.8\n")
    with pytest.raises(ValidationError, match=r"events\.csv: the log file lacks required column") as err:
        extract(source)
    assert "source.columns" not in str(err.value)
    events.unlink()
    raw = extract(source)
    assert raw["Id"].to_list() == ["1", "2", "3", "4", "5"] and raw["MachineCode"].to_list() == [f"mc{i}" for i in range(1, 6)]
    assert validate_log(raw).quarantine.height == 0
    night, below = extract_new(source, after_id=3)
    assert night["Id"].to_list() == ["4", "5"] and below is not None and below.total == 3
    (tmp_path / "b.csv").write_text("Id,ProductId,Key,IP,Time,State,Machine Code,MachineCode\n"
                                    "5,3,CCCC-DDDD,8.8.4.4,2025-03-01T00:05:00Z,1010,mc5,mc5\n")
    with pytest.raises(ValidationError, match=r"b\.csv: the header names MachineCode twice, as Machine Code and "
                                              r"MachineCode \(columns 7 and 8\); keep one of them, or leave one out in "
                                              r"the vendor's configuration \(`source\.columns: \{'Machine Code': null\}`\)"):
        extract(source)
    # two columns of one log column's values: the export's "Time" of local times left out for its "TimeUTC"
    (tmp_path / "b.csv").write_text("LogId,ProductId,Key,IP,Time,State,Machine Code,TimeUTC\n"
                                    "5,3,CCCC-DDDD,8.8.4.4,05.00 local,1010,mc5,2025-03-01T00:05:00Z\n")
    (tmp_path / "a.csv").unlink()
    with pytest.raises(ValidationError, match=r"the header names Time twice, as Time and TimeUTC"):
        extract(SourceConfig(path=str(tmp_path), columns={**source.columns, "TimeUTC": "Time"}))
    both = extract(SourceConfig(path=str(tmp_path), columns={**source.columns, "TimeUTC": "Time", "Time": None}))
    assert both["Time"].to_list() == ["2025-03-01T00:05:00Z"] and "TimeUTC" not in both.columns


def test_a_broken_line_keeps_its_id_through_the_mapped_name_of_the_id_column(tmp_path):
    """A line of a field too many (CSV) or cut short (NDJSON) keeps its Id where the line says it
    for sure, so that it is in the night's ledger and the source's count: through the export's own
    name of the Id column too (``LogId``), as through ``Id``."""
    from licanom.data.extract.files import ID_KEPT
    from licanom.data.schema import UNREADABLE

    def kept(path: Path, columns: dict[str, str] | None) -> list[str | None]:
        raw = read_log(path, columns=columns)
        return raw.filter(pl.col(UNREADABLE).is_not_null())["Id"].to_list()

    rows = ["1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:01:00Z,1010,mc1", "2,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:02:00Z,1010,mc2,x",
            "3,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:03:00Z,1010,mc3"]
    for header, columns in (("Id", None), ("LogId", {"LogId": "Id"})):
        csv = tmp_path / f"{header}.csv"
        csv.write_text(f"{header},ProductId,Key,IP,Time,State,MachineCode\n" + "\n".join(rows) + "\n")
        assert kept(csv, columns) == ["2"], header
        assert ID_KEPT in read_log(csv, columns=columns)[UNREADABLE].drop_nulls()[0]
        ndjson = tmp_path / f"{header}.ndjson"
        lines = [json.dumps({header: i, "ProductId": 3, "Key": "AAAA-BBBB", "IP": "8.8.8.8",
                             "Time": f"2025-03-01T00:0{i}:00Z", "State": 1010, "MachineCode": f"mc{i}"}) for i in (1, 2, 3)]
        lines[1] = lines[1][:60]  # cut short after its Id
        ndjson.write_text("\n".join(lines) + "\n")
        assert kept(ndjson, columns) == ["2"], header
        assert read_log(ndjson, columns=columns).columns[:1] == ["Id"]


def test_a_vendors_column_mapping_names_only_log_columns_once_each():
    with pytest.raises(ValueError, match=r"'Machine' is mapped to 'Machine_Code', which is no Web API Log column"):
        SourceConfig(columns={"Machine": "Machine_Code"})
    with pytest.raises(ValueError, match=r"'a' and 'b' are both mapped to 'Key': map one of them"):
        SourceConfig(columns={"a": "Key", "b": "Key"})
    assert SourceConfig(columns={"Lizenz": "Key"}).columns == {"Lizenz": "Key"}
    assert SourceConfig(columns={"TimeUTC": "Time", "Time": None, "Zeit": None}).columns["Zeit"] is None


def test_a_file_without_its_header_line_is_refused_without_quoting_its_first_row(tmp_path):
    """A file exported without its header line has its first row where the column names belong;
    the refusal listed them, a customer's key and address with them, to the console and Prefect's
    database. It counts them and says what the file looks like instead; a header of other names is
    still listed (they are names)."""
    from licanom.data.validate import validate_log

    row = "1,3,SECRETKEY-AAAA,10.1.2.3,2025-03-01T00:00:00Z,1010,mc1\n"
    (tmp_path / "a.csv").write_text(row + row.replace("1,3,", "2,3,", 1))
    with pytest.raises(ValidationError, match=r"it has 7 columns, none of them a Web API Log column's name") as err:
        validate_log(read_log(tmp_path / "a.csv"))
    assert "SECRETKEY" not in str(err.value) and "10.1.2.3" not in str(err.value)
    good = "Id,ProductId,Key,IP,Time,State,MachineCode\n" + row
    (tmp_path / "b.csv").write_text(good)
    with pytest.raises(ValidationError, match=r"a\.csv: the log file lacks .* it has 7 columns, none of them") as err:
        read_log(tmp_path)  # a folder of a file with its header and one without
    assert "SECRETKEY" not in str(err.value)
    # a file split by another separator than the reader's, without its header: no value quoted either
    (tmp_path / "c.csv").write_text((row + row).replace(",", ";"))
    with pytest.raises(ValidationError, match=r"split by ';'") as err:
        validate_log(read_log(tmp_path / "c.csv", separator=","))
    assert "SECRETKEY" not in str(err.value)
    # a header of other names (another product's export) is still named
    (tmp_path / "d.csv").write_text("when,who,where\n2025-03-01,x,y\n")
    with pytest.raises(ValidationError, match=r"it has \['when', 'who', 'where'\]"):
        validate_log(read_log(tmp_path / "d.csv"))


def test_a_file_without_its_header_line_is_not_read_as_joined_exports(tmp_path):
    """Without its header line, a file's first row stands for the names; a later row of the same
    customer (its key, address and machine, an Id equal to the first row's State) read as "a header
    of other columns" and was refused quoting both rows. It is refused for its missing columns,
    quoting neither."""
    from licanom.data.validate import validate_log

    lines = [f"{i},25841,ABCD-EFGH,10.1.2.3,2025-03-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z,1010,mc1" for i in range(1000, 1200)]
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError, match=r"it has 7 columns, none of them a Web API Log column's name") as err:
        validate_log(read_log(tmp_path / "a.csv"))
    assert "ABCD-EFGH" not in str(err.value) and "10.1.2.3" not in str(err.value)


def test_a_header_of_numbers_or_dates_is_shown_as_the_header_it_is(tmp_path):
    """A first line of names that are numbers counting up (pandas writes ``0,1,2`` for a frame
    without column names, ``,0,1,2`` with its index) or dates (a table of days) is a header, not
    a row of values: the refusal for missing columns names it as it names any other header. A
    file's first row of log values is still not shown."""
    from licanom.data.validate import columns_shown, validate_log

    for header in ("0,1,2,3,4,5,6", ",0,1,2,3,4,5", "2025-03-01,2025-03-02,2025-03-03"):
        (tmp_path / "a.csv").write_text(header + "\n" + ",".join(["7"] * len(header.split(","))) + "\n")
        names = str(header.split(","))
        with pytest.raises(ValidationError, match=re.escape(f"it has {names}")) as err:
            validate_log(read_log(tmp_path / "a.csv"))
        assert "file without its header line" not in str(err.value)
    assert columns_shown(["0", "1", "2"]) == "['0', '1', '2']"
    # no log row counts up or is only dates: a first row of values is still counted, not shown
    for values in (["1000", "3", "KEY-1", "10.1.2.3", "2025-03-01T00:00:00Z", "1010", "mc1"], ["1000", "1002"],
                   ["7"], ["2025-03-01", "10.1.2.3"]):
        assert columns_shown(values).startswith(f"{len(values)} columns, none of them"), values
