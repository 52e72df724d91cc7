"""Extraction from the GetWebAPILog HTTP API, against a local fake Cryptolens server."""

from __future__ import annotations

import json
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

from licanom.data.columns import RAW
from licanom.data.extract.cryptolens import (
    ENDPOINT_PATH,
    RAW_SCHEMA,
    CryptolensSource,
    ExtractError,
    fetch_web_api_log,
    fetch_web_api_log_report,
    logs_to_frame,
)

TOKEN = "tok-SECRET-8f3a+b/c=="  # has characters that form encoding changes
TOKEN_ENV = "LICANOM_TEST_CRYPTOLENS_TOKEN"
PRODUCT = 3
OTHER_PRODUCT = 9
N_ROWS = 2_345
T0 = 1_700_000_000


def _make_rows() -> list[dict]:
    """N_ROWS rows of PRODUCT with gaps in Id, interleaved with rows of OTHER_PRODUCT."""
    rows = []
    next_id = 10_000
    for i in range(N_ROWS):
        next_id += 1 + (i % 3)  # Ids are not contiguous
        row = {
            "Id": next_id,
            "ProductId": PRODUCT,
            "Key": f"KEY-{i % 40:04d}",
            "IP": f"10.0.{i % 7}.0",
            "Time": T0 + 60 * i,
            "State": 2010 if i % 5 else 2021,
            "MachineCode": None if i % 11 == 0 else f"mc{i % 13}",
            "FriendlyName": None,
            "FloatingExpires": 0 if i % 2 else T0 + 60 * i + 300,
            "DOIntValue": 0,
            "DOId": 0,
        }
        if i % 17 == 0:  # optional fields missing altogether
            for name in ("FriendlyName", "FloatingExpires", "DOIntValue", "DOId"):
                del row[name]
        rows.append(row)
        if i % 10 == 0:
            next_id += 1
            rows.append({"Id": next_id, "ProductId": OTHER_PRODUCT, "Key": "OTHER", "IP": "1.1.1.0",
                         "Time": T0, "State": 1010, "MachineCode": "x"})
    return rows


ROWS = _make_rows()
PRODUCT_IDS = [r["Id"] for r in ROWS if r["ProductId"] == PRODUCT]


class FakeCryptolens:
    """State of the fake server: the rows, how it orders pages, scripted failures, the calls."""

    def __init__(self) -> None:
        self.rows = ROWS
        self.order = "docs"  # "docs": ascending unless EndingBefore; "desc": always newest first
        self.inclusive_cursor = False  # repeat the cursor row (overlapping pages)
        self.ignore_cursors = False
        self.script: list[tuple[str, object]] = []  # failures for the next calls, in order
        self.always: tuple[str, object] | None = None  # a failure for every call
        self.calls: list[dict[str, str]] = []
        self.retry_after = "2"  # the Retry-After of a 429 (and of every error status when changed)
        self.paths: list[str] = []
        self.url = ""

    def answer(self, params: dict[str, str]) -> dict:
        if params.get("token") != TOKEN:
            return {"result": 1, "message": "Access denied."}
        limit = int(params.get("Limit", 10))
        if limit > 1000:
            return {"result": 1, "message": "Limit must be at most 1000."}
        product = params.get("ProductId")
        rows = [r for r in self.rows if product is None or r["ProductId"] == int(product)]
        after = params.get("StartingAfter")
        before = params.get("EndingBefore")
        if not self.ignore_cursors:
            if after is not None:
                a = int(after)
                rows = [r for r in rows if r["Id"] > a or (self.inclusive_cursor and r["Id"] == a)]
            if before is not None:
                b = int(before)
                rows = [r for r in rows if r["Id"] < b or (self.inclusive_cursor and r["Id"] == b)]
        descending = self.order == "desc" or before is not None
        rows = sorted(rows, key=lambda r: r["Id"], reverse=descending)[:limit]
        return {"logs": rows, "result": 0, "message": ""}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        query = urllib.parse.urlsplit(self.path).query
        self._serve(dict(urllib.parse.parse_qsl(query)))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self._serve(dict(urllib.parse.parse_qsl(body)))

    def _serve(self, params: dict[str, str]) -> None:
        fake = self.server.fake
        fake.calls.append(params)
        fake.paths.append(self.path)
        if urllib.parse.urlsplit(self.path).path != ENDPOINT_PATH:
            return self._send(404, b"not found")
        action = fake.script.pop(0) if fake.script else fake.always
        if action is not None:
            kind, arg = action
            if kind == "status":
                headers = {"Retry-After": fake.retry_after} if arg == 429 or fake.retry_after != "2" else {}
                return self._send(int(arg), b"<html>error</html>", headers)
            if kind == "sleep":
                time.sleep(float(arg))
            if kind == "raw":
                return self._send(200, arg)
        self._send(200, json.dumps(fake.answer(params)).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (time-out test)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeCryptolens

    def handle_error(self, request, client_address) -> None:
        pass


@contextmanager
def fake_cryptolens() -> Iterator[FakeCryptolens]:
    """The fake GetWebAPILog server on a free loopback port (its address in ``.url``)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeCryptolens()
    server.fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with fake_cryptolens() as server:
        yield server


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _source(fake: FakeCryptolens, **kw) -> CryptolensSource:
    kw.setdefault("max_retries", 3)
    kw.setdefault("timeout_s", 5.0)
    product = kw.pop("product_id", PRODUCT)
    return CryptolensSource(product_id=product, token_env=TOKEN_ENV, base_url=fake.url, **kw)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected back-off sleep of {seconds} s")


# --- paging ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["docs", "desc"])
@pytest.mark.parametrize("limit", [1000, 100])
def test_full_paging(fake, limit, order):
    fake.order = order
    report = fetch_web_api_log_report(_source(fake, limit=limit), sleep=_no_sleep)
    assert report.frame["Id"].to_list() == PRODUCT_IDS
    assert report.complete and report.retries == 0 and report.discarded == 0
    assert report.watermark == PRODUCT_IDS[-1]
    full_pages = N_ROWS // limit
    assert report.pages == full_pages + 1  # the last, short page ends the walk
    assert all(c["ProductId"] == str(PRODUCT) and c["Limit"] == str(limit) for c in fake.calls)
    if order == "docs":  # ascending: walks up with StartingAfter only
        assert "StartingAfter" not in fake.calls[0]
        assert all("EndingBefore" not in c for c in fake.calls)
        cursors = [int(c["StartingAfter"]) for c in fake.calls[1:]]
        assert cursors == [PRODUCT_IDS[limit * k - 1] for k in range(1, full_pages + 1)]


def test_overlapping_pages_are_deduplicated(fake):
    fake.inclusive_cursor = True  # every page repeats the cursor row
    frame = fetch_web_api_log(_source(fake, limit=100), sleep=_no_sleep)
    assert frame["Id"].to_list() == PRODUCT_IDS
    assert frame["Id"].is_unique().all()


def test_watermark(fake):
    w = PRODUCT_IDS[1_500] + 1  # also a watermark that is not itself an Id
    for order in ("docs", "desc"):
        fake.order, fake.calls = order, []
        report = fetch_web_api_log_report(_source(fake, limit=250), after_id=w, sleep=_no_sleep)
        expected = [i for i in PRODUCT_IDS if i > w]
        assert report.frame["Id"].to_list() == expected
        assert fake.calls[0]["StartingAfter"] == str(w)
        assert report.watermark == expected[-1]
    # nothing new after the last Id
    report = fetch_web_api_log_report(_source(fake), after_id=PRODUCT_IDS[-1], sleep=_no_sleep)
    assert report.frame.height == 0 and report.watermark == PRODUCT_IDS[-1] and report.complete


def test_max_pages_returns_a_safe_prefix(fake):
    src = _source(fake, limit=100, max_pages=3)
    report = fetch_web_api_log_report(src, sleep=_no_sleep)
    assert not report.complete and report.pages == 3
    assert report.frame["Id"].to_list() == PRODUCT_IDS[:300]
    rest = fetch_web_api_log(_source(fake, limit=1000), after_id=report.watermark, sleep=_no_sleep)
    assert rest["Id"].to_list() == PRODUCT_IDS[300:]
    # newest-first server: the three pages are the newest rows, with a gap below them; nothing
    # is returned rather than rows whose max(Id) would skip the gap
    fake.order = "desc"
    report = fetch_web_api_log_report(src, sleep=_no_sleep)
    assert not report.complete and report.frame.height == 0 and report.discarded == 300
    assert report.watermark is None


def test_server_ignoring_cursors_does_not_loop(fake):
    fake.ignore_cursors = True
    with pytest.raises(ExtractError, match="honour"):
        fetch_web_api_log(_source(fake, limit=100), sleep=_no_sleep)
    assert len(fake.calls) == 2


# --- configuration -----------------------------------------------------------------------------


def test_limit_over_1000_rejected(fake):
    with pytest.raises(ValueError, match="1000"):
        _source(fake, limit=1001)
    with pytest.raises(ValueError):
        _source(fake, limit=0)
    assert CryptolensSource(product_id=1).limit == 1000
    assert fake.calls == []


def test_missing_token_env_var(fake, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ExtractError, match=TOKEN_ENV):
        fetch_web_api_log(_source(fake), sleep=_no_sleep)
    monkeypatch.setenv(TOKEN_ENV, "  ")
    with pytest.raises(ExtractError, match="not set or empty"):
        fetch_web_api_log(_source(fake), sleep=_no_sleep)
    assert fake.calls == []


def test_token_stays_out_of_urls_and_reprs(fake):
    src = _source(fake, limit=1000)
    report = fetch_web_api_log_report(src, sleep=_no_sleep)
    assert all(p == ENDPOINT_PATH for p in fake.paths)  # sent in the POST body, not the query
    assert all(c["token"] == TOKEN for c in fake.calls)
    assert TOKEN not in repr(src) and TOKEN not in repr(report) and TOKEN not in report.summary()


# --- errors and retries ------------------------------------------------------------------------


def test_5xx_twice_then_success(fake):
    fake.script = [("status", 503), ("status", 500)]
    sleeps = Sleeps()
    report = fetch_web_api_log_report(_source(fake, backoff_s=1.0), sleep=sleeps)
    assert report.frame["Id"].to_list() == PRODUCT_IDS
    assert report.retries == 2 and len(sleeps.calls) == 2
    assert report.requests == report.pages + 2
    # urllib3's schedule: no wait before the first retry, then backoff_s * 2**(n-1) plus jitter
    assert sleeps.calls[0] == 0 and 2.0 <= sleeps.calls[1] <= 3.0


def test_a_retry_repeats_the_page_not_the_walk(fake):
    fake.script = [("ok", None), ("status", 503)]  # the second page fails once
    sleeps = Sleeps()
    report = fetch_web_api_log_report(_source(fake, limit=1000, backoff_s=0.0), sleep=sleeps)
    assert report.frame["Id"].to_list() == PRODUCT_IDS and report.retries == 1
    assert len(fake.calls) == report.pages + 1
    assert fake.calls[1] == fake.calls[2] and fake.calls[0] not in fake.calls[1:]


def test_429_honours_retry_after(fake):
    fake.script = [("status", 429)]
    sleeps = Sleeps()
    frame = fetch_web_api_log(_source(fake, backoff_s=0.01), sleep=sleeps)
    assert frame.height == N_ROWS
    assert sleeps.calls == [2.0]


def test_an_unreadable_retry_after_falls_back_to_the_back_off(fake):
    fake.script = [("status", 503)]
    fake.retry_after = "soon"
    sleeps = Sleeps()
    assert fetch_web_api_log(_source(fake, backoff_s=0.01), sleep=sleeps).height == N_ROWS
    assert sleeps.calls == [0]


def test_timeout_then_success(fake):
    fake.script = [("sleep", 0.6)]
    sleeps = Sleeps()
    report = fetch_web_api_log_report(_source(fake, timeout_s=0.15, backoff_s=0.0), sleep=sleeps)
    # the slow answer timed out (one retry) instead of being waited for; no clock is read here
    assert report.frame.height == N_ROWS
    assert report.retries == 1 and len(sleeps.calls) == 1


def test_persistent_5xx_raises_after_max_retries(fake):
    fake.always = ("status", 502)
    sleeps = Sleeps()
    with pytest.raises(ExtractError, match=r"after 4 attempts.*HTTP 502"):
        fetch_web_api_log(_source(fake, max_retries=3, backoff_s=0.5, max_backoff_s=1.0), sleep=sleeps)
    assert len(fake.calls) == 4 and len(sleeps.calls) == 3
    assert max(sleeps.calls) <= 1.0  # capped


def test_connection_refused_is_retried_then_fails(fake):
    src = CryptolensSource(product_id=PRODUCT, token_env=TOKEN_ENV, base_url="http://127.0.0.1:9",
                           max_retries=2, timeout_s=1.0)
    sleeps = Sleeps()
    with pytest.raises(ExtractError, match="after 3 attempts.*connection error") as info:
        fetch_web_api_log(src, sleep=sleeps)
    assert len(sleeps.calls) == 2 and TOKEN not in str(info.value)


def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_401_is_not_retried_and_hides_the_token(fake):
    fake.script = [("status", 401)]
    with pytest.raises(ExtractError, match="access token rejected") as info:
        fetch_web_api_log(_source(fake), sleep=_no_sleep)
    assert len(fake.calls) == 1
    text = _full_text(info.value)
    assert TOKEN not in text and urllib.parse.quote_plus(TOKEN) not in text
    assert TOKEN_ENV in str(info.value)


def test_other_4xx_is_not_retried(fake):
    fake.script = [("status", 404)]
    with pytest.raises(ExtractError, match="HTTP 404.*not retried"):
        fetch_web_api_log(_source(fake), sleep=_no_sleep)
    assert len(fake.calls) == 1


def test_result_1_raises_with_the_message(fake, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "wrong-token")
    with pytest.raises(ExtractError, match="Access denied") as info:
        fetch_web_api_log(_source(fake), sleep=_no_sleep)
    assert len(fake.calls) == 1 and "wrong-token" not in _full_text(info.value)


def test_answer_that_is_not_json(fake):
    fake.script = [("raw", b"<html>maintenance</html>")]
    with pytest.raises(ExtractError, match="not JSON"):
        fetch_web_api_log(_source(fake), sleep=_no_sleep)


# --- the frame ---------------------------------------------------------------------------------


def test_dtypes_and_values(fake):
    frame = fetch_web_api_log(_source(fake), sleep=_no_sleep)
    assert tuple(frame.columns) == RAW
    assert dict(frame.schema) == RAW_SCHEMA
    assert frame.schema["Time"] == pl.Datetime("us", "UTC")
    first = frame.row(0, named=True)
    src = next(r for r in ROWS if r["Id"] == first["Id"])
    assert first["Time"].timestamp() == src["Time"]
    assert first["MachineCode"] == ""  # null machine code
    assert frame["MachineCode"].null_count() == 0
    assert frame["FriendlyName"].null_count() == N_ROWS
    # FloatingExpires: 0 or missing is null, otherwise the Unix time
    by_id = {r["Id"]: r for r in ROWS}
    for row in frame.head(40).iter_rows(named=True):
        fe = by_id[row["Id"]].get("FloatingExpires", 0)
        assert (row["FloatingExpires"] is None) if not fe else row["FloatingExpires"].timestamp() == fe
    assert frame["Id"].is_sorted()


def test_empty_answer(fake):
    report = fetch_web_api_log_report(_source(fake, product_id=12345), sleep=_no_sleep)
    assert report.frame.height == 0 and dict(report.frame.schema) == RAW_SCHEMA
    assert tuple(report.frame.columns) == RAW
    assert report.complete and report.pages == 1 and report.watermark is None
    fake.script = [("raw", b'{"result": 0, "message": null}')]  # no logs field at all
    assert fetch_web_api_log(_source(fake), after_id=10**12, sleep=_no_sleep).height == 0


def test_logs_to_frame_tolerates_odd_entries():
    frame = logs_to_frame([
        {"Id": 1},  # only the Id
        {"id": "2", "time": 1.5, "machinecode": None, "state": "2010", "floatingexpires": None},
        {"Id": 3, "Time": "bad", "State": 20.5, "DOId": True, "Key": 123, "FloatingExpires": 10**15},
    ])
    assert dict(frame.schema) == RAW_SCHEMA
    assert frame["Id"].to_list() == [1, 2, 3]
    assert frame["State"].to_list() == [None, 2010, None]
    assert frame["MachineCode"].to_list() == ["", "", ""]
    assert frame["Key"].to_list() == [None, None, "123"]
    assert frame["Time"].dt.epoch("us").to_list() == [None, 1_500_000, None]
    assert frame["FloatingExpires"].null_count() == 3


@pytest.mark.parametrize("order", ["docs", "desc"])
def test_pages_of_one_row(fake, order):
    """With one row a page, its order says nothing: both sides of it are walked."""
    fake.order = order
    fake.rows = [r for r in ROWS if r["ProductId"] == PRODUCT][:7]
    frame = fetch_web_api_log(_source(fake, limit=1), after_id=fake.rows[1]["Id"], sleep=_no_sleep)
    assert frame["Id"].to_list() == [r["Id"] for r in fake.rows[2:]]
