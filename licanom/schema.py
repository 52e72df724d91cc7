"""pandera schemas of the Web API Log (raw, after coercion) and of the derived frame."""

from __future__ import annotations

from typing import Annotated, Optional

import pandera.polars as pa
import polars as pl

from licanom.states import is_valid_state

# IPv4 dotted quad, or an IPv6 shape (hex groups and colons, optional embedded IPv4 and zone).
# The exact check (ipaddress) runs in licanom.validate; this is the contract's shape check.
_IPV4 = r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IP_SHAPE = rf"^(?:{_IPV4}|[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:{_IPV4})?(?:%\w+)?)?$"
UTC_US = pl.Datetime("us", "UTC")


class WebApiLog(pa.DataFrameModel):
    """A validated Cryptolens Web API Log: one row per request about a licence.

    `IP` may be empty (unknown); `MachineCode` may be empty (the request had none).
    """

    Id: int = pa.Field(unique=True, nullable=False)
    ProductId: int = pa.Field(nullable=False)
    Key: str = pa.Field(nullable=False, str_length={"min_value": 1})
    IP: str = pa.Field(nullable=False, str_matches=IP_SHAPE)
    Time: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=False)
    State: int = pa.Field(nullable=False)
    MachineCode: str = pa.Field(nullable=False)
    FriendlyName: Optional[str] = pa.Field(nullable=True)
    FloatingExpires: Optional[Annotated[pl.Datetime, "us", "UTC"]] = pa.Field(nullable=True)
    DOIntValue: Optional[int] = pa.Field(nullable=True)
    DOId: Optional[int] = pa.Field(nullable=True)

    @pa.check("State", name="known_state_code")
    def _known_state(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(is_valid_state(pl.col(data.key)))

    class Config:
        strict = "filter"  # extra columns are dropped, not an error
        ordered = False


class DerivedLog(WebApiLog):
    """The log with the thesis's derived columns (3.1.2): success, action, country."""

    success: pl.Int8 = pa.Field(isin=[0, 1])
    action: pl.Int32 = pa.Field(nullable=False)
    country: str = pa.Field(nullable=False, str_length={"min_value": 2, "max_value": 2})
