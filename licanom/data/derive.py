"""The thesis's derived columns (3.1.2): success and action from State, country from IP."""

from __future__ import annotations

import iptocc
import numpy as np
import polars as pl

from licanom.data.codes import TextCodes, text_ids
from licanom.data.columns import UNKNOWN_COUNTRY
from licanom.data.states import action_expr, success_expr


def countries(ips: pl.Series) -> pl.Series:
    """ISO 3166-1 alpha-2 country of each address, offline (iptocc's registry data).

    Private, reserved, anonymised-beyond-recognition, empty or unknown addresses give
    ``UNKNOWN_COUNTRY`` ("ZZ"). Each distinct address is looked up once (one batch call), and
    the answers go back to the rows through the addresses' positions among the distinct ones.
    """
    uniq = ips.cast(pl.String).unique().drop_nulls()
    at = ips.cast(pl.String).cast(pl.Enum(uniq)).to_physical()
    return distinct_countries(uniq).gather(at).fill_null(UNKNOWN_COUNTRY).alias(ips.name)


def distinct_countries(ips: pl.Series) -> pl.Series:
    """The country of each of a few (distinct) addresses, in one batch look-up."""
    codes = iptocc.country_code([ip.split("%", 1)[0] for ip in ips.to_list()]) if len(ips) else []
    return pl.Series([c or UNKNOWN_COUNTRY for c in codes], dtype=pl.String)


def outcome(states: pl.Series) -> tuple[pl.Series, pl.Series]:
    """``success`` and ``action`` of each state code (licanom.data.states), worked out once per code
    in the codes' range and looked up by row."""

    def both(codes: pl.Series) -> pl.DataFrame:
        return codes.to_frame("State").select(
            success_expr(pl.col("State")).alias("success"), action_expr(pl.col("State")).alias("action")
        )

    lo, hi = states.min(), states.max()
    if states.null_count() or lo is None or hi - lo > 100_000:
        out = both(states)
        return out["success"], out["action"]
    table = both(pl.int_range(lo, hi + 1, eager=True).cast(states.dtype))
    at = offsets(states, lo)
    return (
        pl.Series("success", table["success"].to_numpy()[at]),
        pl.Series("action", table["action"].to_numpy()[at]),
    )


def offsets(values: pl.Series, lo: int) -> np.ndarray:
    """``values - lo`` as a numpy array, without a second copy of a column."""
    at = values.to_numpy()
    return np.subtract(at, lo, out=at) if at.flags.writeable else at - lo


def derive(log: pl.DataFrame) -> pl.DataFrame:
    """Add ``success`` (Int8), ``action`` (Int32) and ``country`` (two letters) to a valid log."""
    return log.with_columns(*outcome(log["State"]), countries(log["IP"]).alias("country"))


def derive_coded(log: pl.DataFrame, codes: TextCodes | None = None) -> tuple[pl.DataFrame, TextCodes]:
    """:func:`derive`, and the integer codes of the rows' key, machine code, address and country
    (:class:`licanom.data.codes.TextCodes`, for the windows' summary and the context vector),
    each address hashed once: its code finds its country (looked up once per distinct address,
    as :func:`countries` does) and the country's code.

    ``codes``: codes of ``log``'s texts found already (validation's of the keys and addresses,
    ``ValidationResult.codes``), taken instead of hashing those texts again; the codes returned
    are the same either way (numbered in order of first appearance)."""
    if log["IP"].dtype != pl.String or log["IP"].null_count():
        derived = derive(log)
        return derived, TextCodes.of(derived)
    texts = ("Key", "MachineCode", "IP")
    held = {c: x for c in texts if codes is not None and log[c].dtype == pl.String and not log[c].null_count()
            and (x := codes.get(log, c)) is not None}
    fresh = TextCodes.of(log, [c for c in texts if c not in held]).codes
    known = {**TextCodes.in_order(log.height, held, codes.first if codes is not None else None).codes, **fresh}
    codes = TextCodes.from_codes(log.height, {c: known[c] for c in texts})
    ip = codes.codes["IP"]
    distinct = codes.values(log, "IP")  # each distinct address and its code
    at = np.zeros(int(distinct["code"].max()) + 1 if distinct.height else 0, dtype=np.int64)
    at[distinct["code"].to_numpy()] = np.arange(distinct.height)  # a code's place among the distinct
    where = at[ip]
    found = distinct_countries(distinct["text"])
    country_code = text_ids(found).to_numpy()
    derived = log.with_columns(*outcome(log["State"]), found.gather(where).alias("country"))
    return derived, TextCodes.from_codes(log.height, {**codes.codes, "country": country_code[where]})
