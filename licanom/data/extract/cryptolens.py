"""Extraction of a vendor's Web API Log from the Cryptolens ``GetWebAPILog`` HTTP API.

``fetch_web_api_log(source, after_id=...)`` returns every log row of one product whose ``Id`` is
greater than ``after_id`` (the watermark: the last Id already processed), as a polars frame with
the raw columns of :data:`licanom.data.columns.RAW`, sorted by ``Id`` ascending, without duplicates.
``fetch_web_api_log_report`` does the same and also says how it went (:class:`FetchReport`).

HTTP
    ``requests`` over one session per fetch (its pages share a connection), with a timeout on
    every request. Requests are ``POST`` with a form-encoded body, as the official SDKs send
    them; the Web API accepts GET queries too, but a body keeps the access token out of URLs and
    proxy logs. The token is read from an environment variable (default ``CRYPTOLENS_TOKEN``) at
    call time; it is never logged and never put in an error message or a repr.

Retries
    One layer, the HTTP client's own: urllib3's ``Retry`` on the session's adapter retries
    time-outs, connection errors, HTTP 429 and HTTP 5xx of a page up to ``max_retries`` times,
    with urllib3's exponential back-off (none before the first retry, then ``backoff_s * 2**(n-1)``
    plus up to ``backoff_s`` of jitter, capped at ``max_backoff_s``) or the server's
    ``Retry-After`` (also capped). A retry repeats the one page, never the walk. The sleep function
    is injectable. Other HTTP 4xx (401/403: the token was rejected), an answer that is not JSON and
    an answer with ``result`` 1 raise :class:`ExtractError` at once, and the orchestrator does not
    retry the extraction either.

Paging
    The Web API's documented order is Id ascending when only ``StartingAfter`` is given and Id
    descending as soon as ``EndingBefore`` is given; some deployments answer newest first. The
    walk therefore does not rely on one order: it keeps a stack of open Id ranges still to fetch,
    starting with ``(after_id, +inf)``, and asks for each range with ``StartingAfter`` /
    ``EndingBefore``. A short page (fewer rows than ``Limit``) closes its range. A full page
    covers a contiguous run ``[min, max]`` of the range: if it came in ascending order it is the
    oldest run and the walk goes on above ``max``; if descending, the newest run and the walk goes
    on below ``min``; if its order is unclear (one row, unsorted), both sides are fetched. Rows
    outside the asked range (a server that repeats the cursor row, overlapping pages) are kept but
    deduplicated by Id; a full page with no row inside the asked range means the server ignores
    the cursors and raises :class:`ExtractError` instead of looping.

    With ``max_pages`` the walk may stop early. The result is then cut to the complete prefix:
    only rows up to the highest Id below which nothing is missing, so that ``max(Id)`` of the
    returned frame is always a safe watermark for the next run (``FetchReport.complete`` says
    whether the walk finished).

The frame is not validated here (a validation step comes after), but a missing optional field or
a null never crashes the conversion: numbers that cannot be read become null, a null
``MachineCode`` becomes ``""`` and ``FloatingExpires`` 0 or missing becomes null. Rows without a
readable ``Id`` cannot be paged over nor deduplicated and are dropped (counted in the report).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from licanom.data.columns import RAW

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINT_PATH",
    "MAX_LIMIT",
    "RAW_SCHEMA",
    "CryptolensSource",
    "ExtractError",
    "FetchReport",
    "empty_raw_frame",
    "fetch_web_api_log",
    "fetch_web_api_log_report",
    "logs_to_frame",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.cryptolens.io"
ENDPOINT_PATH = "/api/ai/GetWebAPILog"
MAX_LIMIT = 1000  # the Web API's own maximum for Limit

_UTC_US = pl.Datetime("us", "UTC")

#: The raw Web API Log columns, in :data:`licanom.data.columns.RAW` order, with their dtypes.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "Id": pl.Int64(),
    "ProductId": pl.Int64(),
    "Key": pl.Utf8(),
    "IP": pl.Utf8(),
    "Time": _UTC_US,
    "State": pl.Int64(),
    "MachineCode": pl.Utf8(),
    "FriendlyName": pl.Utf8(),
    "FloatingExpires": _UTC_US,
    "DOIntValue": pl.Int64(),
    "DOId": pl.Int64(),
}
if tuple(RAW_SCHEMA) != RAW:  # pragma: no cover - guards against columns.py drifting
    raise ImportError("RAW_SCHEMA must follow licanom.data.columns.RAW")

_INT_COLUMNS = ("Id", "ProductId", "State", "DOIntValue", "DOId")
_STR_COLUMNS = ("Key", "IP", "FriendlyName")
_INT64_MAX = 2**63 - 1
_MAX_EPOCH_S = 253_402_300_799  # 9999-12-31T23:59:59Z; anything beyond is not a real time


class ExtractError(RuntimeError):
    """Extraction failed: the log could not be fetched, or the API answered with an error.

    Messages never contain the access token.
    """


@dataclass(frozen=True)
class CryptolensSource:
    """Where and how to fetch one product's Web API Log.

    ``base_url`` is the scheme and host (``ENDPOINT_PATH`` is appended), so tests can point it at
    a local server. ``token_env`` names the environment variable that holds the access token (the
    token itself is never stored here). ``key``, ``machine_code`` and ``friendly_name`` are the
    Web API's optional filters. ``order_by`` is sent as ``OrderBy`` when set (deprecated by the
    Web API, which orders by itself; the walk does not need it). ``max_pages`` bounds the number of
    pages one fetch may request (``None``: no bound).
    """

    product_id: int
    token_env: str = "CRYPTOLENS_TOKEN"
    base_url: str = DEFAULT_BASE_URL
    limit: int = MAX_LIMIT
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_pages: int | None = None
    key: str | None = None
    machine_code: str | None = None
    friendly_name: str | None = None
    order_by: str | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.product_id):
            raise ValueError(f"product_id must be an int, got {self.product_id!r}")
        if not isinstance(self.token_env, str) or not self.token_env:
            raise ValueError("token_env must name an environment variable")
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not _is_int(self.limit) or not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(
                f"limit must be an int from 1 to {MAX_LIMIT} (the Web API's maximum), got {self.limit!r}"
            )
        if not _is_number(self.timeout_s) or not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        if not _is_int(self.max_retries) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if not _is_number(self.backoff_s) or self.backoff_s < 0:
            raise ValueError(f"backoff_s must be a number >= 0, got {self.backoff_s!r}")
        if not _is_number(self.max_backoff_s) or self.max_backoff_s < 0:
            raise ValueError(f"max_backoff_s must be a number >= 0, got {self.max_backoff_s!r}")
        if self.max_pages is not None and (not _is_int(self.max_pages) or self.max_pages < 1):
            raise ValueError(f"max_pages must be None or an int >= 1, got {self.max_pages!r}")

    @property
    def endpoint(self) -> str:
        """The full GetWebAPILog URL."""
        return self.base_url.rstrip("/") + ENDPOINT_PATH

    def filter_params(self) -> dict[str, str]:
        """The filter parameters sent with every page (no token, no cursors)."""
        params = {"ProductId": str(self.product_id), "Limit": str(self.limit)}
        for name, value in (
            ("Key", self.key),
            ("MachineCode", self.machine_code),
            ("FriendlyName", self.friendly_name),
            ("OrderBy", self.order_by),
        ):
            if value is not None:
                params[name] = str(value)
        return params


@dataclass(frozen=True)
class FetchReport:
    """What one fetch returned and how it went.

    ``frame``: the rows (Id > ``after_id``), sorted by Id, deduplicated. ``complete``: the walk
    fetched every range (False when ``max_pages`` stopped it; ``frame`` is then the complete
    prefix). ``watermark``: the Id to pass as ``after_id`` next time (``max(Id)`` of ``frame``, or
    ``after_id`` when it is empty). ``pages``: answered pages; ``requests``: HTTP attempts;
    ``retries``: attempts that were retried. ``discarded``: rows fetched beyond the complete prefix
    (fetched again next time). ``dropped_without_id``: rows without a readable Id.
    """

    frame: pl.DataFrame = field(repr=False)
    after_id: int | None
    watermark: int | None
    complete: bool
    pages: int
    requests: int
    retries: int
    discarded: int = 0
    dropped_without_id: int = 0

    @property
    def rows(self) -> int:
        return self.frame.height

    def summary(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE (max_pages reached)"
        return (
            f"{self.rows} rows after Id {self.after_id}, {state}; watermark {self.watermark}; "
            f"{self.pages} pages, {self.requests} requests, {self.retries} retries"
            + (f", {self.discarded} rows beyond the complete prefix discarded" if self.discarded else "")
            + (f", {self.dropped_without_id} rows without Id dropped" if self.dropped_without_id else "")
        )


def fetch_web_api_log(
    source: CryptolensSource,
    *,
    after_id: int | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> pl.DataFrame:
    """Fetch the rows of ``source`` with ``Id > after_id`` (all rows when ``None``).

    Returns a frame with :data:`RAW_SCHEMA`, sorted by ``Id`` ascending, without duplicates.
    Raises :class:`ExtractError` when the log cannot be fetched.
    """
    return fetch_web_api_log_report(source, after_id=after_id, sleep=sleep).frame


def fetch_web_api_log_report(
    source: CryptolensSource,
    *,
    after_id: int | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> FetchReport:
    """Like :func:`fetch_web_api_log`, returning a :class:`FetchReport` with the frame."""
    if after_id is not None and not _is_int(after_id):
        raise ValueError(f"after_id must be an int or None, got {after_id!r}")
    client = _Client(source, _read_token(source.token_env), sleep)
    try:
        return _walk(client, source, after_id)
    finally:
        client.close()


def _walk(client: _Client, source: CryptolensSource, after_id: int | None) -> FetchReport:
    """The page walk of :func:`fetch_web_api_log_report` (see Paging in the module docstring)."""
    filters = source.filter_params()
    limit = source.limit

    rows: dict[int, Mapping[str, Any]] = {}
    dropped = 0
    pages = 0
    # Open Id ranges (lo, hi) still to fetch; None is unbounded. Popped from the end: the lower
    # range of a split is pushed last, so the walk completes the low Ids first.
    todo: list[tuple[int | None, int | None]] = [(after_id, None)]
    while todo:
        if source.max_pages is not None and pages >= source.max_pages:
            break
        lo, hi = todo.pop()
        params = dict(filters)
        if lo is not None:
            params["StartingAfter"] = str(lo)
        if hi is not None:
            params["EndingBefore"] = str(hi)
        logs = client.get_logs(params)
        pages += 1

        inside: list[int] = []
        for entry in logs:
            row_id = _int_or_none(_get(entry, "Id")) if isinstance(entry, Mapping) else None
            if row_id is None:
                dropped += 1
                continue
            if after_id is not None and row_id <= after_id:
                continue
            rows.setdefault(row_id, entry)
            if (lo is None or row_id > lo) and (hi is None or row_id < hi):
                inside.append(row_id)
        log.debug("GetWebAPILog page %d (after %s, before %s): %d rows, %d in range",
                  pages, lo, hi, len(logs), len(inside))

        if len(logs) < limit:
            continue  # short page: nothing more in (lo, hi)
        if not inside:
            raise ExtractError(
                f"GetWebAPILog at {source.endpoint} returned a full page with no row inside the "
                f"requested Id range ({lo}, {hi}): the server does not seem to honour "
                "StartingAfter/EndingBefore; stopping instead of looping"
            )
        low, high = min(inside), max(inside)
        ascending = len(inside) > 1 and all(a < b for a, b in zip(inside, inside[1:]))
        descending = len(inside) > 1 and all(a > b for a, b in zip(inside, inside[1:]))
        if ascending:
            todo.append((high, hi))
        elif descending:
            todo.append((lo, low))
        else:
            todo.append((high, hi))
            todo.append((lo, low))

    complete = not todo
    discarded = 0
    if complete:
        kept = rows
    else:
        # Every Id not yet fetched lies inside an open range (lo, hi), so all rows up to the
        # smallest lo are in hand; beyond it there may be gaps.
        if any(lo is None for lo, _ in todo):
            safe = None
        else:
            safe = min(lo for lo, _ in todo if lo is not None)
        kept = {i: r for i, r in rows.items() if safe is not None and i <= safe}
        discarded = len(rows) - len(kept)
        log.warning(
            "GetWebAPILog: max_pages=%d reached with %d Id ranges left; returning the complete "
            "prefix (%d rows), %d rows beyond it discarded",
            source.max_pages, len(todo), len(kept), discarded,
        )
    if dropped:
        log.warning("GetWebAPILog: %d rows without a readable Id dropped", dropped)

    frame = logs_to_frame(kept[i] for i in sorted(kept))
    watermark = max(kept) if kept else after_id
    report = FetchReport(
        frame=frame,
        after_id=after_id,
        watermark=watermark,
        complete=complete,
        pages=pages,
        requests=client.requests,
        retries=client.retries,
        discarded=discarded,
        dropped_without_id=dropped,
    )
    log.info("GetWebAPILog product %d: %s", source.product_id, report.summary())
    return report


def empty_raw_frame() -> pl.DataFrame:
    """An empty frame with :data:`RAW_SCHEMA`."""
    return pl.DataFrame(schema=RAW_SCHEMA)


def logs_to_frame(logs: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Convert Web API Log entries (dicts as the API returns them) to a :data:`RAW_SCHEMA` frame.

    Keeps the given order and every entry; field names are matched case-insensitively. Numbers
    that cannot be read become null; ``Time`` and ``FloatingExpires`` are Unix seconds
    (``FloatingExpires`` 0 or missing is null); a null ``MachineCode`` becomes ``""``.
    """
    values: dict[str, list[Any]] = {name: [] for name in RAW}
    for entry in logs:
        lowered = _lower_keys(entry)
        for name in _INT_COLUMNS:
            values[name].append(_int_or_none(lowered.get(name.lower())))
        for name in _STR_COLUMNS:
            values[name].append(_str_or_none(lowered.get(name.lower())))
        machine = _str_or_none(lowered.get("machinecode"))
        values["MachineCode"].append("" if machine is None else machine)
        values["Time"].append(_epoch_us(lowered.get("time"), zero_is_null=False))
        values["FloatingExpires"].append(_epoch_us(lowered.get("floatingexpires"), zero_is_null=True))
    columns = []
    for name, dtype in RAW_SCHEMA.items():
        if dtype == _UTC_US:
            series = pl.Series(name, values[name], dtype=pl.Int64).cast(pl.Datetime("us"))
            series = series.dt.replace_time_zone("UTC")
        else:
            series = pl.Series(name, values[name], dtype=dtype)
        columns.append(series)
    return pl.DataFrame(columns)


# --- HTTP -------------------------------------------------------------------------------------


RETRY_STATUS = frozenset({429, *range(500, 600)})  # answers worth a retry; any other status is final


class _Retry(Retry):
    """urllib3's ``Retry`` that sleeps through the client (an injectable sleep, a count of the
    retries) instead of ``time.sleep``; the schedule and the Retry-After handling are urllib3's."""

    def __init__(self, *args: Any, on_sleep: Callable[[float], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_sleep = on_sleep

    def new(self, **kwargs: Any) -> _Retry:
        retry = super().new(**kwargs)
        retry.on_sleep = self.on_sleep
        return retry

    def sleep(self, response: Any = None) -> None:
        try:
            after = self.get_retry_after(response) if self.respect_retry_after_header and response is not None else None
        except InvalidHeader:  # a Retry-After that is neither seconds nor a date: the back-off applies
            after = None
        delay = min(after, self.retry_after_max) if after else self.get_backoff_time()
        if self.on_sleep is not None:
            self.on_sleep(delay)
        elif delay > 0:
            time.sleep(delay)


class _Client:
    """One GetWebAPILog endpoint with a token, over one ``requests`` session whose adapter
    retries (:class:`_Retry`); counts requests and retries."""

    def __init__(self, source: CryptolensSource, token: str, sleep: Callable[[float], Any]) -> None:
        self._source = source
        self._token = token
        self._sleep = sleep
        self.requests = 0
        self.retries = 0
        self._session = requests.Session()
        retry = _Retry(
            total=source.max_retries, allowed_methods=frozenset({"POST"}), status_forcelist=RETRY_STATUS,
            backoff_factor=source.backoff_s, backoff_jitter=source.backoff_s, backoff_max=source.max_backoff_s,
            retry_after_max=math.ceil(source.max_backoff_s), raise_on_status=False, on_sleep=self._on_retry,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:  # never show the token
        return f"_Client(endpoint={self._source.endpoint!r})"

    def close(self) -> None:
        self._session.close()

    def _on_retry(self, delay: float) -> None:
        self.retries += 1
        self.requests += 1
        log.warning("GetWebAPILog attempt failed; retrying in %.2f s", delay)
        self._sleep(delay)

    def get_logs(self, params: Mapping[str, str]) -> list[Any]:
        answer = self._post(params)
        if not isinstance(answer, Mapping):
            raise ExtractError(f"GetWebAPILog at {self._source.endpoint} answered with a JSON "
                               f"{type(answer).__name__}, not an object")
        top = _lower_keys(answer)
        result = top.get("result")
        message = top.get("message")
        if result is None or _int_or_none(result) not in (0, 1):
            raise ExtractError(f"GetWebAPILog at {self._source.endpoint} answered without a valid "
                               f"'result' field (got {self._scrub(repr(result))[:100]})")
        if _int_or_none(result) == 1:
            text = self._scrub(str(message)) if message else "no message"
            raise ExtractError(f"GetWebAPILog returned an error (result=1): {text}")
        logs = top.get("logs")
        if logs is None:
            return []
        if not isinstance(logs, list):
            raise ExtractError(f"GetWebAPILog 'logs' is a {type(logs).__name__}, not a list")
        return logs

    def _post(self, params: Mapping[str, str]) -> Any:
        source = self._source
        retries_before = self.retries
        self.requests += 1
        try:
            response = self._session.post(
                source.endpoint, data={"token": self._token, **params}, timeout=source.timeout_s,
                headers={"Accept": "application/json", "User-Agent": "licanom"},
            )
        except requests.RequestException as exc:
            attempts = self.retries - retries_before + 1
            raise ExtractError(f"GetWebAPILog at {source.endpoint} failed after {attempts} attempts; "
                               f"last problem: {self._problem(exc)}") from None
        status = response.status_code
        if status in (401, 403):
            raise ExtractError(
                f"access token rejected by {source.endpoint} (HTTP {status}); check the token "
                f"in ${source.token_env} and that it may call GetWebAPILog"
            )
        if status in RETRY_STATUS:  # still failing when the retries ran out
            attempts = self.retries - retries_before + 1
            raise ExtractError(f"GetWebAPILog at {source.endpoint} failed after {attempts} attempts; "
                               f"last problem: HTTP {status}")
        if status >= 400:
            raise ExtractError(
                f"GetWebAPILog at {source.endpoint} answered HTTP {status} "
                f"({self._scrub(str(response.reason))}); not retried"
            )
        raw = response.content
        try:
            return json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            snippet = self._scrub(raw[:80].decode("utf-8", "replace"))
            raise ExtractError(f"GetWebAPILog at {source.endpoint} answered with something "
                               f"that is not JSON: {snippet!r}") from None

    def _problem(self, exc: BaseException) -> str:
        """What went wrong with the last attempt, in one line, without the token."""
        reason: BaseException | None = exc
        while reason is not None:  # requests' error -> urllib3's MaxRetryError -> its reason
            if isinstance(reason, NewConnectionError):  # a subclass of ConnectTimeoutError in urllib3 2
                break
            if isinstance(reason, (ReadTimeoutError, ConnectTimeoutError, requests.Timeout, TimeoutError)):
                return f"timed out after {self._source.timeout_s} s"
            nested = getattr(reason, "reason", None)
            inner = reason.args[0] if reason.args and isinstance(reason.args[0], BaseException) else None
            reason = nested if isinstance(nested, BaseException) else inner
        return f"connection error: {type(exc).__name__}: {self._scrub(str(exc))[:300]}"

    def _scrub(self, text: str) -> str:
        """Remove the token from text that came from elsewhere (server messages)."""
        if self._token:
            text = text.replace(self._token, "***")
            quoted = urllib.parse.quote_plus(self._token)
            if quoted != self._token:
                text = text.replace(quoted, "***")
        return text


def _read_token(env_name: str) -> str:
    token = os.environ.get(env_name, "").strip()
    if not token:
        raise ExtractError(
            f"no Cryptolens access token: environment variable {env_name} is not set or empty "
            "(create a token with the GetWebAPILog permission and export it there)"
        )
    return token


# --- value conversion --------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _lower_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()}


def _get(entry: Mapping[str, Any], name: str) -> Any:
    if name in entry:
        return entry[name]
    lower = name.lower()
    for k, v in entry.items():
        if str(k).lower() == lower:
            return v
    return None


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        result = int(value)
    elif isinstance(value, str):
        try:
            result = int(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if -_INT64_MAX - 1 <= result <= _INT64_MAX else None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _epoch_us(value: Any, *, zero_is_null: bool) -> int | None:
    """Unix seconds (int, float or numeric string) to microseconds; None when unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip()) if "." in value else int(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if abs(value) > _MAX_EPOCH_S:
            return None
        us = round(value * 1_000_000)
    elif isinstance(value, int):
        if abs(value) > _MAX_EPOCH_S:
            return None
        us = value * 1_000_000
    else:
        return None
    if zero_is_null and us == 0:
        return None
    return us

