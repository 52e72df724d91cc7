"""Validate a raw Web API Log, losing nothing: bad rows go to a quarantine frame with a reason.

Every input row ends in exactly one of the two outputs (``n_in == n_valid + n_quarantined``).
Rows are coerced column by column (CSV text, Unix seconds, ISO strings, other integer widths),
and each row collects the reasons it fails; the valid rows are then checked against the
pandera contract :class:`licanom.schema.WebApiLog` (``lazy=True``), so anything the contract
rejects is quarantined too, with the failing check as its reason.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

import pandera.polars as pa
import polars as pl

from licanom.columns import OPTIONAL_RAW, RAW, REQUIRED_RAW
from licanom.schema import UTC_US, WebApiLog
from licanom.states import is_valid_state

ROW = "_row"  # position of the row in the input, kept in the quarantine
REASON = "reason"
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
)


class ValidationError(ValueError):
    """The log as a whole cannot be used: a missing column, or too many bad rows."""


@dataclass(frozen=True)
class ValidationResult:
    """Valid rows (schema :class:`WebApiLog`, sorted by Time then Id) and quarantined rows.

    ``quarantine`` keeps every input column as text, the input position ``_row`` and ``reason``.
    """

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    n_in: int

    @property
    def bad_fraction(self) -> float:
        return self.quarantine.height / self.n_in if self.n_in else 0.0

    def reason_counts(self) -> pl.DataFrame:
        """How many quarantined rows fail each column/check (a row may count under several)."""
        return (
            self.quarantine.select(pl.col(REASON).str.split("; ").alias(REASON))
            .explode(REASON)
            .group_by(REASON)
            .len()
            .sort("len", descending=True)
        )


def _as_int(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.String:
        col = col.str.strip_chars()
        # "12.0" from spreadsheets is still the integer 12; "12.5" is not an integer
        as_float = col.cast(pl.Float64, strict=False)
        return (
            pl.when(as_float == as_float.floor())
            .then(as_float.cast(pl.Int64, strict=False))
            .otherwise(None)
        )
    if dtype.is_float():
        return pl.when(col == col.floor()).then(col.cast(pl.Int64, strict=False)).otherwise(None)
    return col.cast(pl.Int64, strict=False)


def _as_time(name: str, dtype: pl.DataType) -> pl.Expr:
    """Datetime (naive means UTC), Unix seconds (number or digits), or an ISO 8601 string."""
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            col = col.dt.replace_time_zone("UTC")
        return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype.is_numeric():
        seconds = col.cast(pl.Float64, strict=False)
        return (seconds * 1_000_000).round().cast(pl.Int64, strict=False).cast(UTC_US)
    if dtype == pl.String:
        text = col.str.strip_chars().str.replace(r"Z$", "+00:00")
        parsed = [
            text.str.strptime(pl.Datetime("us"), fmt, strict=False)
            for fmt in _TIME_FORMATS
        ]
        parsed = [
            p.dt.convert_time_zone("UTC") if "%z" in fmt else p.dt.replace_time_zone("UTC")
            for p, fmt in zip(parsed, _TIME_FORMATS, strict=True)
        ]
        unix_seconds = (
            text.cast(pl.Float64, strict=False).mul(1_000_000).round()
            .cast(pl.Int64, strict=False).cast(UTC_US)
        )
        return (
            pl.when(text.str.contains(r"^-?\d+(\.\d+)?$"))
            .then(unix_seconds)
            .otherwise(pl.coalesce(parsed))
        )
    return pl.lit(None, dtype=UTC_US)


def _as_str(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.String:
        return col
    if dtype == pl.Binary:
        return col.cast(pl.String, strict=False)
    if dtype == pl.Null:
        return col.cast(pl.String)
    return col.cast(pl.String, strict=False)


def _valid_ips(ips: pl.Series) -> pl.Series:
    """Exact IPv4/IPv6 check, once per distinct address; empty means unknown and is allowed."""
    uniq = ips.unique()
    ok = []
    for ip in uniq.to_list():
        if ip is None or ip == "":
            ok.append(True)
            continue
        try:
            ipaddress.ip_address(ip.split("%", 1)[0])
            ok.append(True)
        except ValueError:
            ok.append(False)
    mapping = pl.DataFrame({"ip": uniq, "ok": ok}, schema={"ip": pl.String, "ok": pl.Boolean})
    return ips.to_frame("ip").join(mapping, on="ip", how="left", nulls_equal=True)["ok"]


def coerce(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast every raw column to the schema's dtype without failing.

    Returns the coerced frame (with ``_row``) and a frame of per-row reason strings.
    """
    missing = [c for c in REQUIRED_RAW if c not in raw.columns]
    if missing:
        raise ValidationError(
            f"the log lacks required column(s) {missing}; it has {raw.columns}. "
            f"Expected the Web API Log columns {list(REQUIRED_RAW)} (optional: {list(OPTIONAL_RAW)})"
        )
    frame = raw.select([c for c in RAW if c in raw.columns]).with_row_index(ROW)
    for c in OPTIONAL_RAW:
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    schema = frame.schema

    ints = ("Id", "ProductId", "State", "DOIntValue", "DOId")
    texts = ("Key", "IP", "MachineCode", "FriendlyName")
    exprs = [_as_int(c, schema[c]).alias(c) for c in ints]
    exprs += [_as_str(c, schema[c]).alias(c) for c in texts]
    exprs += [_as_time(c, schema[c]).alias(c) for c in ("Time", "FloatingExpires")]
    cast = frame.select(pl.col(ROW), *exprs)
    coerced = cast.with_columns(
        pl.col("MachineCode").fill_null(""),
        pl.col("IP").fill_null("").str.strip_chars(),
        # Cryptolens writes 0 where a request has no floating expiry
        pl.when(pl.col("FloatingExpires") == datetime(1970, 1, 1, tzinfo=UTC))
        .then(None)
        .otherwise(pl.col("FloatingExpires"))
        .alias("FloatingExpires"),
    )

    # A value that was present but did not survive the cast is unparsable.
    def lost(c: str) -> pl.Expr:
        return frame[c].is_not_null() & cast[c].is_null()

    checks: list[tuple[str, pl.Series]] = []
    for c in ("Id", "ProductId", "State"):
        checks.append((f"{c}: missing", frame[c].is_null()))
        checks.append((f"{c}: not an integer", lost(c)))
    for c in ("DOIntValue", "DOId"):
        checks.append((f"{c}: not an integer", lost(c)))
    checks.append(("Key: missing or empty", coerced["Key"].is_null() | (coerced["Key"].str.strip_chars() == "")))
    checks.append(("Time: missing", frame["Time"].is_null()))
    checks.append(("Time: unparsable", lost("Time")))
    t = coerced["Time"]
    checks.append(("Time: outside 1990-2100 (Unix seconds expected)", t.is_not_null() & ((t < EARLIEST) | (t >= LATEST))))
    checks.append(("FloatingExpires: unparsable", lost("FloatingExpires")))
    for c in ("Key", "IP", "MachineCode", "FriendlyName"):
        checks.append((f"{c}: not valid text", lost(c)))
    checks.append(("IP: malformed address", ~_valid_ips(coerced["IP"]).fill_null(False)))
    state = coerced["State"]
    checks.append(("State: unknown state code", state.is_not_null() & ~coerced.select(is_valid_state(pl.col("State")))["State"]))

    reasons = pl.DataFrame({name: mask.fill_null(False) for name, mask in checks})
    reason = reasons.select(
        pl.concat_str(
            [pl.when(pl.col(name)).then(pl.lit(name)) for name, _ in checks],
            separator="; ",
            ignore_nulls=True,
        ).alias(REASON)
    )[REASON]
    return coerced, reason.replace("", None).to_frame()


def validate_log(raw: pl.DataFrame) -> ValidationResult:
    """Split a raw log into valid rows and quarantined rows with a reason each.

    Later duplicates of an ``Id`` are quarantined ("Id: duplicate"); the first one stays.
    """
    n_in = raw.height
    coerced, reasons = coerce(raw)
    reason = reasons.to_series()
    bad = reason.is_not_null() & (reason != "")
    # duplicates are judged among rows that are otherwise valid
    dup = (~bad) & coerced.with_columns(bad.alias("_bad")).select(
        (~pl.col("Id").is_first_distinct()).over("_bad")
    ).to_series()
    reason = pl.select(
        pl.when(dup).then(pl.lit("Id: duplicate")).otherwise(reason).alias(REASON)
    ).to_series() if dup.any() else reason
    bad = bad | dup

    valid = coerced.filter(~bad)
    valid, contract_failures = _check_contract(valid)
    if contract_failures.height:
        bad = bad | coerced[ROW].is_in(contract_failures[ROW].implode())
        reason = (
            coerced.select(ROW).with_columns(reason.alias(REASON))
            .join(contract_failures, on=ROW, how="left", suffix="_c")
            .select(pl.coalesce(REASON, f"{REASON}_c"))
            .to_series()
        )
    quarantine = (
        raw.with_row_index(ROW)
        .select(ROW, *[pl.col(c).cast(pl.String, strict=False) for c in raw.columns if c != ROW])
        .with_columns(reason.alias(REASON))
        .filter(bad)
    )
    valid = valid.sort(["Time", "Id"]).select(RAW)
    return ValidationResult(valid=valid, quarantine=quarantine, n_in=n_in)


def _check_contract(valid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Run the pandera contract lazily; rows it rejects come back as (``_row``, reason)."""
    try:
        checked = WebApiLog.validate(valid.drop(ROW), lazy=True)
        return valid.select(ROW, *checked.columns), pl.DataFrame(
            schema={ROW: pl.UInt32, REASON: pl.String}
        )
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        row_cases = cases.filter(pl.col("index").is_not_null())
        if row_cases.height < cases.height:
            # a failure of the whole frame (a dtype, a missing column) is a bug, not bad data
            raise ValidationError(f"validated frame breaks its schema: {cases}") from err
        rows = valid[ROW].gather(row_cases["index"].cast(pl.Int64))
        failures = (
            pl.DataFrame({
                ROW: rows,
                REASON: row_cases.select(
                    pl.format("{}: failed {}", pl.col("column"), pl.col("check"))
                ).to_series(),
            })
            .group_by(ROW, maintain_order=True)
            .agg(pl.col(REASON).str.join("; "))
        )
        kept = valid.filter(~pl.col(ROW).is_in(failures[ROW].implode()))
        return kept, failures


def check_bad_fraction(result: ValidationResult, max_bad_fraction: float, examples: int = 5) -> None:
    """Fail when too large a share of the rows is quarantined, naming columns and examples."""
    if result.n_in == 0:
        raise ValidationError("the log is empty: no rows to validate")
    if result.bad_fraction > max_bad_fraction:
        counts = result.reason_counts()
        summary = ", ".join(f"{r} ({n} rows)" for r, n in counts.iter_rows())
        sample = result.quarantine.head(examples)
        raise ValidationError(
            f"{result.quarantine.height} of {result.n_in} rows ({result.bad_fraction:.1%}) failed "
            f"validation, more than the allowed {max_bad_fraction:.1%}. Failures: {summary}.\n"
            f"Examples:\n{sample}"
        )
