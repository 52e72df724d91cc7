"""pandera schemas of the Web API Log (raw, after coercion) and of the derived frame.

The contract is the one place where the checks on coerced values are defined; licanom.data.validate
runs it on the rows it keeps and quarantines whatever it rejects, naming the check by its
``error`` text ("State: unknown state code"). The checks are written to stay cheap on logs of
tens of millions of rows: a check that depends only on a value runs once per distinct value and
maps the few failing values back to rows, and a check that every row passes answers with a
single ``True`` instead of a column of booleans.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Optional

import pandera.polars as pa
import polars as pl

from licanom.data.states import is_valid_state

UTC_US = pl.Datetime("us", "UTC")

# The failure texts of the contract's own checks; a quarantined row's reason is
# "<column>: <text>".
DUPLICATE = "duplicate"
NEGATIVE = "negative"  # a platform hands out Ids from 1 up: a negative one is not a request's
BLANK = "missing or empty"
MALFORMED_IP = "malformed address"
UNKNOWN_STATE = "unknown state code"
# A raw column an extractor adds for the rows it could not read, saying where and why (the other
# columns of such a row are empty); validation quarantines the row with that text as its reason.
UNREADABLE = "_unreadable"
# A raw column the files extractor adds when a log is read from several files: the file each row
# came from, so that a quarantined row names it (its ``_row`` counts across the files joined).
SOURCE_FILE = "_file"
SOURCE_ROW = "_file_row"  # and the row's place in that file (from 0, as ``_row``)
# The UNREADABLE text of a CSV file's header line found again among its rows (exports joined with
# cat), after the file and its line: a row read and quarantined, but no bad row (it holds no request).
HEADER_AGAIN = "the header line again (exports joined?)"


def is_ip_address(text: str | None) -> bool:
    """Exact IPv4/IPv6 check (a ``%zone`` suffix allowed); empty means unknown and is allowed.

    The C parser (inet_pton) answers most addresses; what it refuses goes to ``ipaddress``.
    """
    if not text:
        return True
    address = text.split("%", 1)[0]
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        return True
    except (OSError, ValueError):
        pass
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def is_blank(values: pl.Expr) -> pl.Expr:
    """True where a text is empty or only whitespace."""
    return values.str.strip_chars() == ""


def strictly_increasing(values: pl.Series) -> bool:
    """True when a series has no nulls and each value is greater than the one before (O(n),
    chunk by chunk, without copies)."""
    if values.null_count():
        return False
    if values.len() < 2:
        return True
    if not values.dtype.is_numeric():
        return bool((values.slice(1) > values.slice(0, values.len() - 1)).all())
    last = None
    for chunk in values.get_chunks():
        a = chunk.to_numpy()
        if not len(a):
            continue
        if (last is not None and a[0] <= last) or not (a[1:] > a[:-1]).all():
            return False
        last = a[-1]
    return True


def _rows_or_true(data: pa.PolarsData, ok: pl.Series) -> bool | pl.LazyFrame:
    """A check's answer: ``True`` when no row fails, else the per-row booleans."""
    if not ok.not_().any():  # nulls are not failures: pandera's ignore_na
        return True
    return ok.alias(data.key).to_frame().lazy()


_DISTINCT: ContextVar[dict[str, pl.Series] | None] = ContextVar("licanom_distinct", default=None)


@contextmanager
def known_values(values: dict[str, pl.Series]) -> Iterator[None]:
    """Within the block, the checks that run per distinct value take a column's values from
    ``values`` instead of finding them (a pass over the column).

    The values must include every value of the column that is validated; more are harmless
    (a failing value that is not in the frame matches no row). licanom.data.validate finds them
    once for the whole log and validates subsets of its rows.
    """
    token = _DISTINCT.set(values)
    try:
        yield
    finally:
        _DISTINCT.reset(token)


def _per_distinct(data: pa.PolarsData, ok: Callable[[pl.Series], pl.Series]) -> bool | pl.LazyFrame:
    """Run ``ok`` on the column's distinct values; map the failing ones back to rows."""
    col = pl.col(data.key)
    values = (_DISTINCT.get() or {}).get(data.key)
    if values is None:
        values = data.lazyframe.select(col.unique()).collect().to_series()
    values = values.drop_nulls()
    bad = values.filter(~ok(values))
    if bad.is_empty():
        return True
    return data.lazyframe.select(~col.is_in(bad.implode()))


class WebApiLog(pa.DataFrameModel):
    """A validated Cryptolens Web API Log: one row per request about a licence.

    `IP` may be empty (unknown); `MachineCode` may be empty (the request had none).
    """

    Id: int = pa.Field(nullable=False)
    ProductId: int = pa.Field(nullable=False)
    Key: str = pa.Field(nullable=False)
    IP: str = pa.Field(nullable=False)
    Time: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=False)
    State: int = pa.Field(nullable=False)
    MachineCode: str = pa.Field(nullable=False)
    FriendlyName: Optional[str] = pa.Field(nullable=True)
    FloatingExpires: Optional[Annotated[pl.Datetime, "us", "UTC"]] = pa.Field(nullable=True)
    DOIntValue: Optional[int] = pa.Field(nullable=True)
    DOId: Optional[int] = pa.Field(nullable=True)

    @pa.check("Id", name="unique_id", error=DUPLICATE)
    def _unique_id(cls, data: pa.PolarsData) -> bool | pl.LazyFrame:
        ids = data.lazyframe.select(data.key).collect().to_series()
        if strictly_increasing(ids):  # the usual case: the API hands out increasing Ids
            return True
        return _rows_or_true(data, ~ids.is_duplicated())

    @pa.check("Id", name="non_negative", error=NEGATIVE)
    def _non_negative(cls, data: pa.PolarsData) -> bool | pl.LazyFrame:
        ids = data.lazyframe.select(data.key).collect().to_series()
        return _rows_or_true(data, ids >= 0)

    @pa.check("Key", name="not_blank", error=BLANK)
    def _not_blank(cls, data: pa.PolarsData) -> bool | pl.LazyFrame:
        return _per_distinct(data, lambda v: ~v.to_frame().select(is_blank(pl.first())).to_series())

    @pa.check("IP", name="ip_address", error=MALFORMED_IP)
    def _ip_address(cls, data: pa.PolarsData) -> bool | pl.LazyFrame:
        return _per_distinct(
            data, lambda v: pl.Series([is_ip_address(ip) for ip in v.to_list()], dtype=pl.Boolean)
        )

    @pa.check("State", name="known_state_code", error=UNKNOWN_STATE)
    def _known_state(cls, data: pa.PolarsData) -> bool | pl.LazyFrame:
        ok = data.lazyframe.select(is_valid_state(pl.col(data.key))).collect().to_series()
        return _rows_or_true(data, ok)

    class Config:
        strict = "filter"  # extra columns are dropped, not an error
        ordered = False


class DerivedLog(WebApiLog):
    """The log with the thesis's derived columns (3.1.2): success, action, country."""

    success: pl.Int8 = pa.Field(isin=[0, 1])
    action: pl.Int32 = pa.Field(nullable=False)
    country: str = pa.Field(nullable=False, str_length={"min_value": 2, "max_value": 2})
