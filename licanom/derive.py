"""The thesis's derived columns (3.1.2): success and action from State, country from IP."""

from __future__ import annotations

import iptocc
import polars as pl

from licanom.columns import UNKNOWN_COUNTRY
from licanom.states import action_expr, success_expr


def countries(ips: pl.Series) -> pl.Series:
    """ISO 3166-1 alpha-2 country of each address, offline (iptocc's registry data).

    Private, reserved, anonymised-beyond-recognition, empty or unknown addresses give
    ``UNKNOWN_COUNTRY`` ("ZZ"). Each distinct address is looked up once.
    """
    uniq = ips.unique().drop_nulls()
    codes = iptocc.country_code([ip.split("%", 1)[0] for ip in uniq.to_list()]) if len(uniq) else []
    mapping = pl.Series([c or UNKNOWN_COUNTRY for c in codes], dtype=pl.String)
    return ips.replace_strict(uniq, mapping, default=UNKNOWN_COUNTRY, return_dtype=pl.String)


def derive(log: pl.DataFrame) -> pl.DataFrame:
    """Add ``success`` (Int8), ``action`` (Int32) and ``country`` (two letters) to a valid log."""
    return log.with_columns(
        success_expr(pl.col("State")).alias("success"),
        action_expr(pl.col("State")).alias("action"),
        countries(log["IP"]).alias("country"),
    )
