"""Incidents: flagged chunks grouped by who caused them, so one flood is one line of the report.

A storm (a client retrying an expired key for hours, a runaway machine, a brute-force address)
fills many consecutive chunks. Each flagged chunk is attributed to the entity behind its most
unusual signal (``top_feature``): for a context column, the key, (key, machine code) or address
of the chunk whose count in that column is highest within the chunk's clock hours (its UTC days,
for the columns of a day: ``key_new_machines_day``, ``key_new_countries_day``) (as
:data:`licanom.data.context_vector._ROW_COUNTS` defines the column); otherwise the chunk's most frequent
(key, machine code). Flagged chunks of one entity form one incident, split where more than
``gap`` passes between them. One customer's flood is one incident: where a key's incident and
incidents of its own machines (the chunks some signals name by the key, others by one of its
machines) come within ``gap`` of each other, they are one incident, named by the key.

Columns of :func:`group_incidents` (:data:`INCIDENT_COLUMNS`): ``incident`` (1, 2, ... by
severity), ``entity_kind`` (key, machine, address), ``entity`` (its value; a machine is
``key / machine code``), ``first_id``, ``last_id``, ``start_time``, ``end_time``, ``chunks``,
``max_severity``, ``signal`` (the most frequent top signal), ``description``; and
:data:`INCIDENT_CHUNKS`, the numbers (``chunk``) of the flagged chunks it groups, so that a report
names the entity behind a given chunk exactly (incidents written before it lack the column).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from licanom.data.context_vector import CONTEXT_LABELS

INCIDENT_COLUMNS: tuple[str, ...] = (
    "incident", "entity_kind", "entity", "first_id", "last_id", "start_time", "end_time", "chunks",
    "max_severity", "signal", "description",
)

# group_incidents()'s column of the chunk numbers an incident groups (not in INCIDENT_COLUMNS: files
# written before it lack it)
INCIDENT_CHUNKS = "chunk_numbers"

# For each context column: the entity it counts over and what it counts (None: distinct rows).
_SIGNAL_ENTITY: dict[str, tuple[str, str | None]] = {
    "key_requests_hour": ("key", None),
    "machine_requests_hour": ("machine", None),
    "key_machines_hour": ("key", "MachineCode"),
    "key_countries_hour": ("key", "country"),
    "key_ips_hour": ("key", "IP"),
    "ip_keys_hour": ("address", "Key"),
    "ip_failures_hour": ("address", "_failed"),
    "ip_failed_keys_hour": ("address", "_failed Key"),
    "machine_failures_hour": ("machine", "_failed"),
    "key_new_machines_hour": ("key", "MachineCode"),
    "key_new_countries_hour": ("key", "country"),
    "key_new_machines_day": ("key", "MachineCode"),
    "key_new_countries_day": ("key", "country"),
    "failure_share": ("machine", "_failed"),
    "key_usage_hour": ("key", "_usage"),
}
_KIND_COLUMNS = {"key": ("Key",), "machine": ("Key", "MachineCode"), "address": ("IP",)}
# how an incident names a key's requests without a machine code (a machine entity of no machine)
NO_MACHINE_CODE = "(no machine code)"
# how it names the address of a chunk whose rows have none (a model that counted the empty one, before
# context version 7)
NO_ADDRESS = "(no address)"
# attribute()'s column of the key behind a key or machine entity (null for an address): a machine's
# incident joins its key's (group_incidents)
ENTITY_KEY = "entity_key"


def _entity_value(kind: str) -> pl.Expr:
    if kind == "machine":  # requests without a machine code are the key's machine-less requests
        return pl.concat_str(pl.col("Key"), pl.lit(" / "),
                             pl.when(pl.col("MachineCode") == "").then(pl.lit(NO_MACHINE_CODE)).otherwise(pl.col("MachineCode")))
    return pl.col(_KIND_COLUMNS[kind][0])


def attribute(flagged: pl.DataFrame, rows: pl.DataFrame, levels: pl.DataFrame | None = None) -> pl.DataFrame:
    """``flagged`` (chunk results: chunk, first_id, last_id, start_time, end_time, severity,
    top_feature) with ``entity_kind`` and ``entity`` added. ``rows``: the rows the chunks were cut
    from (Id, Time, Key, MachineCode, IP, success, and country where derived). ``levels``: the
    model's entities' own levels (:attr:`licanom.data.context_vector.KeyHistory.levels`, in the
    values of ``rows``), taken off the counts of the columns the model counts above them, as the
    model did: a machine looping as it always does is not the one a new loop's chunk names; and the
    request counts over their day's scale where the levels hold the keys' usual days (version 4)."""
    from licanom.data.context_vector import LEVEL_COLUMNS, SCALED_COLUMNS, row_day_scales

    if flagged.height == 0:
        return flagged.with_columns(pl.lit(None, pl.String).alias("entity_kind"), pl.lit(None, pl.String).alias("entity"))
    base = rows.select(
        "Id", "Time",
        pl.col("Key").cast(pl.String).fill_null(""), pl.col("MachineCode").cast(pl.String).fill_null(""),
        pl.col("IP").cast(pl.String).fill_null(""),
        (pl.col("country").cast(pl.String) if "country" in rows.columns else pl.lit("")).fill_null("").alias("country"),
        (pl.col("success") == 0).cast(pl.Int64).alias("_failed"),
        pl.col("Time").dt.truncate("1h").alias("_hour"),
        pl.col("Time").dt.truncate("1d").alias("_day"),
    )
    scales = row_day_scales(rows["Time"], rows["Key"], levels) if flagged["top_feature"].is_in(SCALED_COLUMNS).any() else None
    base = base.with_columns(pl.Series("_scale", scales if scales is not None else np.ones(rows.height)))
    if (flagged["top_feature"] == "key_usage_hour").any():
        base = base.with_columns(pl.Series("_usage", _usage(rows)))
        if not (base["_usage"] > 0).any():  # no data-object values: the key's requests name it
            base = base.with_columns(pl.lit(1, dtype=pl.Int64).alias("_usage"))
    # a chunk's rows by their positions in (Time, Id) order, as the chunks were cut: not by the range of
    # their Ids, which holds other rows (or none) where rows were exported late under new Ids. A chunk
    # whose first or last Id is not among ``rows`` (rows given in part): the rows of its Ids' range.
    base = base.sort(["Time", "Id"], maintain_order=True).with_row_index("_p")
    first = base.select(pl.col("Id").alias("first_id"), pl.col("_p").alias("_p0")).unique("first_id", keep="first")
    last = base.select(pl.col("Id").alias("last_id"), pl.col("_p").alias("_p1")).unique("last_id", keep="first")
    spans = (flagged.select("chunk", "first_id", "last_id", pl.col("top_feature").fill_null(""))
             .join(first, on="first_id", how="left").join(last, on="last_id", how="left"))
    placed = spans.filter(pl.col("_p0").is_not_null() & pl.col("_p1").is_not_null())
    unplaced = spans.filter(pl.col("_p0").is_null() | pl.col("_p1").is_null())
    in_chunk = pl.concat([
        placed.drop("first_id", "last_id")
        .join_where(base, pl.col("_p") >= pl.col("_p0"), pl.col("_p") <= pl.col("_p1")).drop("_p0", "_p1", "_p"),
        unplaced.drop("_p0", "_p1")
        .join_where(base, pl.col("Id") >= pl.col("first_id"), pl.col("Id") <= pl.col("last_id"))
        .drop("first_id", "last_id", "_p"),
    ])
    out = []
    for signal, group in in_chunk.partition_by("top_feature", as_dict=True).items():
        name = signal[0] if isinstance(signal, tuple) else signal
        kind, what = _SIGNAL_ENTITY.get(str(name), ("machine", None))
        cols = list(_KIND_COLUMNS[kind])
        # the entity's count within its clock hour (its UTC day, for a day's column) over all rows,
        # then the chunk's highest
        bucket = "_day" if str(name).endswith("_day") else "_hour"
        hours = group.select(bucket).unique()
        hourly = base.join(hours, on=bucket)
        if kind == "address":  # a row without an address names none (from context version 7 the model counts
            # it for none; a model before counted the empty value as one address, which names no one)
            unnamed = group.select("chunk").unique().join(group.filter(pl.col("IP") != "").select("chunk"),
                                                          on="chunk", how="anti")
            out.append(unnamed.select("chunk", pl.lit(kind).alias("entity_kind"), pl.lit(NO_ADDRESS).alias("entity"),
                                      pl.lit(None, pl.String).alias(ENTITY_KEY)))
            group, hourly = group.filter(pl.col("IP") != ""), hourly.filter(pl.col("IP") != "")
        if what is None:
            agg = pl.len()
        elif what == "_failed":
            agg = pl.col("_failed").sum()
        elif what == "_usage":
            agg = pl.col("_usage").sum()
        elif what == "_failed Key":  # distinct keys that failed
            agg = pl.col("Key").filter(pl.col("_failed") == 1).n_unique()
        elif what == "IP":  # distinct addresses, the empty one not among them
            agg = pl.col("IP").filter(pl.col("IP") != "").n_unique()
        else:
            agg = pl.col(what).n_unique()
        counts = hourly.group_by([*cols, bucket]).agg(agg.alias("_count"), pl.col("_scale").first())
        if name in SCALED_COLUMNS:  # over the day's scale, as the model counted (one day per hour)
            counts = counts.with_columns((pl.col("_count") / pl.col("_scale")).ceil().cast(pl.Int64).alias("_count"))
        counts = counts.drop("_scale")
        if levels is not None and name in LEVEL_COLUMNS:
            own = levels.filter(pl.col("signal") == name).select(*cols, "level")
            counts = (counts.join(own, on=cols, how="left")
                      .with_columns((pl.col("_count") - pl.col("level").fill_null(0)).clip(lower_bound=0))
                      .drop("level"))
        best = (
            group.join(counts, on=[*cols, bucket], how="left")
            .sort(["chunk", "_count", "Id"], descending=[False, True, False])
            .group_by("chunk", maintain_order=True).first()
            .select("chunk", pl.lit(kind).alias("entity_kind"), _entity_value(kind).alias("entity"),
                    (pl.col("Key") if kind in ("key", "machine") else pl.lit(None, pl.String)).alias(ENTITY_KEY))
        )
        out.append(best)
    if not out:  # no flagged chunk's rows among ``rows``: none is named
        return flagged.with_columns(pl.lit(None, pl.String).alias("entity_kind"), pl.lit(None, pl.String).alias("entity"),
                                    pl.lit(None, pl.String).alias(ENTITY_KEY))
    return flagged.join(pl.concat(out), on="chunk", how="left")


def _usage(rows: pl.DataFrame) -> np.ndarray:
    """Each row's data-object usage (:func:`licanom.data.context_vector.usage_amounts`), counted in
    time order."""
    from licanom.data.context_vector import usage_amounts

    order = np.argsort(rows["Time"].to_physical().to_numpy(), kind="stable")
    out = np.empty(rows.height, dtype=np.int64)
    out[order] = usage_amounts(rows[order])
    return out


def group_incidents(attributed: pl.DataFrame, gap: timedelta = timedelta(hours=1)) -> pl.DataFrame:
    """Incidents from attributed flagged chunks (:func:`attribute`), most severe first."""
    schema = {"incident": pl.Int64, "entity_kind": pl.String, "entity": pl.String, "first_id": pl.Int64,
              "last_id": pl.Int64, "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC"),
              "chunks": pl.Int64, "max_severity": pl.Float64, "signal": pl.String, "description": pl.String,
              INCIDENT_CHUNKS: pl.List(pl.Int64)}
    if attributed.height == 0:
        return pl.DataFrame(schema=schema)
    if "chunk" not in attributed.columns:
        attributed = attributed.with_columns(pl.lit(None, pl.Int64).alias("chunk"))
    ordered = _runs(_one_customer(_runs(attributed, gap), gap).drop("_run"), gap)
    grouped = (
        ordered.group_by("entity_kind", "entity", "_run")
        .agg(pl.col("first_id").min(), pl.col("last_id").max(), pl.col("start_time").min(),
             pl.col("end_time").max(), pl.len().alias("chunks"),
             pl.col("severity").max().alias("max_severity"),
             pl.col("top_feature").drop_nulls().mode().first().alias("signal"),
             pl.col("chunk").drop_nulls().sort().alias(INCIDENT_CHUNKS))
        .sort(["max_severity", "chunks", "start_time"], descending=[True, True, False], nulls_last=True)
        .with_row_index("incident", offset=1)
        .with_columns(pl.col("incident").cast(pl.Int64))
    )
    described = grouped.with_columns(
        pl.format("{} {}: {} flagged chunk(s) from {} to {}, mostly {}", pl.col("entity_kind"), pl.col("entity"),
                  pl.col("chunks"), pl.col("start_time").dt.strftime("%Y-%m-%d %H:%M"),
                  # the end's date where it lies on a later day than the start
                  pl.when(pl.col("end_time").dt.date() == pl.col("start_time").dt.date())
                  .then(pl.col("end_time").dt.strftime("%H:%M"))
                  .otherwise(pl.col("end_time").dt.strftime("%Y-%m-%d %H:%M")),
                  # the signal in words, as the report's tables say it
                  pl.col("signal").replace_strict(CONTEXT_LABELS, default=pl.col("signal"), return_dtype=pl.String)
                  .fill_null("its score"))
        .alias("description")
    )
    return described.select(list(schema)).cast(schema)  # type: ignore[arg-type]


def _runs(chunks: pl.DataFrame, gap: timedelta) -> pl.DataFrame:
    """Attributed chunks with ``_run``: each entity's chunks numbered by runs, a new run where more
    than ``gap`` passes after the chunk before."""
    return chunks.sort("entity_kind", "entity", "start_time").with_columns(
        ((pl.col("start_time") - pl.col("end_time").shift(1).over("entity_kind", "entity")) > gap)
        .fill_null(True).cum_sum().over("entity_kind", "entity").alias("_run"))


def _one_customer(runs: pl.DataFrame, gap: timedelta) -> pl.DataFrame:
    """Chunks in runs (:func:`_runs`) with each run of a machine that comes within ``gap`` of a run of
    its own key (:data:`ENTITY_KEY`) named by that key, so that one customer's flood is one incident
    once the runs are counted again. Without the column, as they are."""
    if ENTITY_KEY not in runs.columns:
        return runs
    spans = runs.group_by("entity_kind", "entity", "_run").agg(
        pl.col(ENTITY_KEY).first(), pl.col("start_time").min(), pl.col("end_time").max())
    keys = spans.filter(pl.col("entity_kind") == "key").select(
        pl.col(ENTITY_KEY), pl.col("start_time").alias("_key_start"), pl.col("end_time").alias("_key_end"))
    machines = spans.filter((pl.col("entity_kind") == "machine") & pl.col(ENTITY_KEY).is_not_null())
    moves = (
        machines.join(keys, on=ENTITY_KEY)
        .filter((pl.col("start_time") - pl.col("_key_end") <= gap) & (pl.col("_key_start") - pl.col("end_time") <= gap))
        .select("entity_kind", "entity", "_run", pl.col(ENTITY_KEY).alias("_key")).unique()
    )
    if moves.height == 0:
        return runs
    return (runs.join(moves, on=["entity_kind", "entity", "_run"], how="left")
            .with_columns(pl.when(pl.col("_key").is_not_null()).then(pl.lit("key")).otherwise(pl.col("entity_kind")).alias("entity_kind"),
                          pl.coalesce("_key", "entity").alias("entity"))
            .drop("_key"))
