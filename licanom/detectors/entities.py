"""Entity results: who did it. Each key-day, (key, machine code)-day and address-hour of a night,
judged against its peers (and a key-day against its key's own usual day too), with a calibrated
severity and a reason.

Chunks of consecutive requests dilute small events (three requests from another continent, one
machine code under several keys) among a hundred ordinary rows, and a vendor acts on a key, a
machine or an address anyway. :class:`EntityModel` groups a night's derived rows into entities
(:data:`ENTITY_KINDS`) with polars group-bys (no per-row Python) and describes what each did
(:data:`FEATURES`; counts enter as ``log1p``):

* ``key-day`` (a key within a UTC day). Its requests, failures, machine codes, addresses and
  countries *above what is expected of the key* (``more_*``): its own usual day (the median over
  its active training days, :func:`key_baseline`) when it has at least :data:`MIN_USUAL_DAYS`,
  else the median training key-day, so a big customer is not an outlier every day; machine codes
  and countries *new to the key* (pairs its :class:`KeyHistory` lacks, counted on the day they
  first appear, never in the first hour of a key the history lacks: setting up a licence is not
  news); countries far (``far_km``, great-circle, :func:`country_distances`) from all of the key's
  home countries (those it used on two training days or more; else the day's main country); new
  machine codes used from such a far country; changes within an hour of the key's previous request
  to a far country that is not one of its home countries; the most countries within one clock hour.
* ``key-machine`` (a key and a machine code within a UTC day): requests, failures, whether the
  pair is new, the keys the machine code appears under that day and those new to it (cloning),
  the machine code's addresses that day (under any key), the pair's addresses and countries.
* ``address-hour`` (an address within a clock hour): requests, keys, failures, the failed share,
  keys new to the vendor (in their first hour), and, on the addresses that failed with a key new
  to the vendor, how many addresses did so in that hour (credential stuffing spreads a few
  guesses over many addresses). Rows without an address (the ``IP`` field empty) make no
  address-hour and count for no address in a key's or a machine code's addresses: the empty
  value is no one's address.

Peers: each kind has its own reference, a :class:`licanom.detectors.context.TailModel` (per-feature
empirical and exponential right tails) fitted on the same kind's training entities, robustly
(refitted without the entities far out against the previous fit, :func:`_robust_tail`), so a
storm in the training days does not widen the normal range. An entity's score is its summed
surprisal in nats (``top_features`` keeps only the largest). Severity comes from a
:class:`licanom.detectors.decision.Calibration` fitted to the upper tail of out-of-fold training
scores (:func:`tail_calibration`: entity scores are mostly ties near zero, where
``Calibration.fit``'s bulk estimate collapses), with the anomalous entities of the training days
set aside; an entity is anomalous at ``severity >= min_severity`` (:data:`DEFAULT_MIN_SEVERITY`).
Key-days and key-machines are judged against the keys of the same product and licence model
(:func:`peer_groups`: the licence model read from what each key does) where that group has at
least :data:`MIN_PEER_KEYS` keys and :data:`MIN_PEER_ENTITIES` training entities of the kind (its
own reference and calibration, fitted as the vendor's), else against the whole vendor;
address-hours serve any key and are always judged vendor-wide (``peers="vendor"``: all vendor-wide).
``reasons`` names the most surprising features of a flagged entity with their typical values and
whose they are: "usually" for a key-day's own usual day, else the median entity of the kind it was
judged against ("key X: 55 machine codes new to it (its peers' median key-day: 0), 3 countries
(usually 1); ...", "address A: 9 keys (the vendor's median address-hour: 1); ...").

The entities of the first ``warmup_days`` training days stay out of the reference: at the start of
the training rows every machine code is new to its key.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from licanom.data.columns import UNKNOWN_COUNTRY
from licanom.data.context_vector import KeyHistory
from licanom.detectors.context import TailModel
from licanom.detectors.decision import DEFAULT_MIN_SEVERITY, Calibration
from licanom.detectors.saved import load_pickle, save_pickle

__all__ = [
    "ENTITY_COLUMNS", "ENTITY_KINDS", "ENTITY_SCHEMA", "FEATURES", "LICENCE_MODELS", "MIN_PEER_ENTITIES", "MIN_PEER_KEYS",
    "MIN_USUAL_DAYS", "PEER_KINDS", "EntityKind", "EntityModel", "KindReference",
    "country_distances", "entity_features", "key_baseline", "peer_groups", "population_medians", "tail_calibration",
]

EntityKind = Literal["key-day", "key-machine", "address-hour"]
ENTITY_KINDS: tuple[str, ...] = ("key-day", "key-machine", "address-hour")

# Columns of the entity results (entities.parquet), in order. Extend, never rename.
ENTITY_COLUMNS: tuple[str, ...] = (
    "entity_kind", "entity", "key", "machine_code", "address", "first_id", "last_id", "start_time",
    "end_time", "requests", "score", "severity", "is_anomaly", "reasons",
)
ENTITY_SCHEMA: dict[str, pl.DataType] = {
    "entity_kind": pl.String(), "entity": pl.String(), "key": pl.String(), "machine_code": pl.String(),
    "address": pl.String(), "first_id": pl.Int64(), "last_id": pl.Int64(),
    "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC"), "requests": pl.Int64(),
    "score": pl.Float64(), "severity": pl.Float64(), "is_anomaly": pl.Boolean(), "reasons": pl.String(),
}
assert tuple(ENTITY_SCHEMA) == ENTITY_COLUMNS

# The features of each kind: (name, words for a reason). Every one is a count entering as log1p,
# except failed_share (a share in [0, 1]).
FEATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "key-day": (
        ("more_requests", "requests"),
        ("more_failures", "failed requests"),
        ("more_machines", "machine codes"),
        ("more_addresses", "addresses"),
        ("more_countries", "countries"),
        ("new_machines", "machine codes new to it"),
        ("new_countries", "countries new to it"),
        ("far_countries", "countries far from its usual ones"),
        ("far_new_machines", "machine codes new to it in a far country"),
        ("far_changes_hour", "jumps to a far country within an hour"),
        ("max_countries_hour", "countries within one hour"),
    ),
    "key-machine": (
        ("requests", "requests"),
        ("failures", "failed requests"),
        ("new_pair", "new to the key"),
        ("machine_keys", "keys using this machine code"),
        ("machine_new_keys", "keys new to this machine code"),
        ("machine_addresses", "addresses of this machine code"),
        ("addresses", "addresses"),
        ("countries", "countries"),
    ),
    "address-hour": (
        ("requests", "requests"),
        ("keys", "keys"),
        ("failures", "failed requests"),
        ("failed_share", "failed share"),
        ("new_keys", "keys new to the vendor"),
        ("hour_new_key_addresses", "addresses failing with new keys in that hour"),
    ),
}
_SHARES = frozenset({"failed_share"})
# key-day: the counts measured against what is expected of the key (``more_<count>``)
_SIZES: tuple[str, ...] = ("requests", "failures", "machines", "addresses", "countries")
# The distinct addresses of a group of rows: a row without one (the IP field empty) counts for none,
# as in the context vector (version 7) and the address-hours.
_ADDRESSES = pl.col("IP").filter(pl.col("IP") != "").n_unique()
# a key with at least this many active training days is judged against its own usual day
MIN_USUAL_DAYS = 3
_NEEDED = ("Id", "Time", "Key", "MachineCode", "IP", "country", "success")
_NO_COUNTRY = ("", UNKNOWN_COUNTRY)
_EARTH_KM = 6371.0
SAVE_FORMAT = 2
_READABLE_FORMATS = (1, 2)  # format 1: written before peer groups (every entity judged vendor-wide)

# Peer groups (population analysis): the kinds that belong to a key are judged against the
# entities of keys of the same product and licence model; address-hours serve any key and stay
# vendor-wide. The licence model is not a column of the Web API Log: it is read from what a key
# does (peer_groups). A group gets its own reference only with at least MIN_PEER_KEYS keys and
# MIN_PEER_ENTITIES training entities of the kind (see EntityModel), else the vendor's is used.
PEER_KINDS: tuple[str, ...] = ("key-day", "key-machine")
LICENCE_MODELS: tuple[str, ...] = ("floating", "usage-based", "node-locked")
MIN_PEER_KEYS = 10
MIN_PEER_ENTITIES = 200
VENDOR = ""  # the peer group of the vendor-wide references


# ---------------------------------------------------------------------------------------------
# Far countries


@functools.lru_cache(maxsize=1)
def _zone_coordinates() -> dict[str, np.ndarray]:
    """Per ISO country code, the (latitude, longitude) in degrees of its time zones' principal
    cities, from the IANA time zone database's ``zone.tab`` (the ``tzdata`` package, else the
    system's copy). A well-kept table of where each country lies, without a new dependency."""
    text = None
    try:
        text = (resources.files("tzdata") / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        system = Path("/usr/share/zoneinfo/zone.tab")
        if system.exists():
            text = system.read_text(encoding="utf-8")
    if text is None:
        raise RuntimeError("entity scoring needs the IANA zone.tab (pip install tzdata) to tell far countries apart")
    out: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        out.setdefault(parts[0], []).append(_iso6709(parts[1]))
    return {code: np.radians(np.asarray(points)) for code, points in out.items()}


def _iso6709(text: str) -> tuple[float, float]:
    """``+DDMM+DDDMM`` or ``+DDMMSS+DDDMMSS`` as decimal degrees."""
    split = max(text.rfind("+"), text.rfind("-"))
    lat, lon = text[:split], text[split:]

    def degrees(part: str, width: int) -> float:
        sign = -1.0 if part[0] == "-" else 1.0
        digits = part[1:]
        d, m, s = digits[:width], digits[width:width + 2], digits[width + 2:width + 4] or "0"
        return sign * (int(d) + int(m) / 60 + int(s) / 3600)

    return degrees(lat, 2), degrees(lon, 3)


def country_distances(a: pl.Series, b: pl.Series) -> np.ndarray:
    """Great-circle distance in km between the countries ``a[i]`` and ``b[i]`` (ISO codes): the
    least over the two countries' time-zone cities, so a large country is near its neighbours.
    NaN where either country is not in the zone table (unknown, anonymised)."""
    coords = _zone_coordinates()
    pairs = pl.DataFrame({"a": a.cast(pl.String), "b": b.cast(pl.String)})
    distinct = pairs.unique()
    values = np.array([_distance(coords.get(x), coords.get(y)) for x, y in distinct.iter_rows()])
    table = distinct.with_columns(pl.Series("_km", values, dtype=pl.Float64))
    return pairs.join(table, on=["a", "b"], how="left", maintain_order="left")["_km"].to_numpy()


def _distance(p: np.ndarray | None, q: np.ndarray | None) -> float:
    if p is None or q is None:
        return math.nan
    dlat = p[:, None, 0] - q[None, :, 0]
    dlon = p[:, None, 1] - q[None, :, 1]
    h = np.sin(dlat / 2) ** 2 + np.cos(p[:, None, 0]) * np.cos(q[None, :, 0]) * np.sin(dlon / 2) ** 2
    return float((2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))).min())


# ---------------------------------------------------------------------------------------------
# Features


def _base(rows: pl.DataFrame) -> pl.DataFrame:
    """The columns entity scoring reads, typed."""
    missing = [c for c in _NEEDED if c not in rows.columns]
    if missing:
        raise ValueError(f"entity scoring needs the derived columns {missing} (licanom.data.derive)")
    if not isinstance(rows.schema["Time"], pl.Datetime):
        raise ValueError(f"entity scoring needs Time as a datetime column, got {rows.schema['Time']}")
    utc = (pl.col("Time").dt.convert_time_zone("UTC") if rows.schema["Time"].time_zone  # type: ignore[union-attr]
           else pl.col("Time").dt.replace_time_zone("UTC"))
    return rows.select(
        pl.col("Id").cast(pl.Int64),
        utc.dt.cast_time_unit("us").alias("Time"),
        *(pl.col(c).cast(pl.String).fill_null("") for c in _IDENTITIES),
        (pl.col("success") == 0).fill_null(False).cast(pl.Int64).alias("_failed"),
    ).with_columns(pl.col("Time").dt.truncate("1h").alias("_hour"))


_IDENTITIES = ("Key", "MachineCode", "IP", "country")


def _cells(base: pl.DataFrame) -> pl.DataFrame:
    """The rows reduced to one per (key, machine code, address, country, clock hour), with the
    span and counts every entity is built from: every entity kind is a union of cells, so the
    group-bys below touch tens of thousands of cells instead of a million rows. The four strings
    are grouped by a 64-bit hash of them (seeded per column; a collision among a night's cells is
    about as likely as one in 10**10), which is twice as fast as grouping the strings."""
    combined = pl.col(_IDENTITIES[0]).hash(11)
    for i, c in enumerate(_IDENTITIES[1:], start=12):
        combined = combined ^ pl.col(c).hash(i)
    return base.with_columns(combined.alias("_cell")).group_by("_cell", "_hour").agg(
        *(pl.col(c).first() for c in _IDENTITIES),
        pl.col("Id").min().alias("first_id"), pl.col("Id").max().alias("last_id"),
        pl.col("Time").min().alias("start_time"), pl.col("Time").max().alias("end_time"),
        pl.len().cast(pl.Int64).alias("requests"), pl.col("_failed").sum().alias("failures"),
    ).drop("_cell").with_columns(pl.col("_hour").dt.truncate("1d").alias("_day"))


def _history_pairs(history: KeyHistory | None, value: str) -> pl.DataFrame:
    if history is None:
        return pl.DataFrame(schema={"Key": pl.String, value: pl.String})
    return history.pairs(value).select(pl.col("Key").cast(pl.String), pl.col(value).cast(pl.String))


def _newcomers(cells: pl.DataFrame, value: str, history: KeyHistory | None, key_first: pl.DataFrame) -> pl.DataFrame:
    """The (Key, value) pairs new to their key: absent from the history, with the day, hour and
    time they first appear; a pair first seen in the first hour of a key the history lacks is the
    key's set-up, not news."""
    unknown = [""] if value == "MachineCode" else list(_NO_COUNTRY)
    pairs = (
        cells.filter(~pl.col(value).is_in(unknown))
        .group_by("Key", value)
        .agg(pl.col("start_time").min().alias("_first"), pl.col("_hour").min().alias("_first_hour"))
        .join(_history_pairs(history, value), on=["Key", value], how="anti")
        .join(key_first, on="Key", how="left")
        .filter(pl.col("_known_key") | (pl.col("_first_hour") > pl.col("_key_first_hour")))
    )
    return pairs.with_columns(pl.col("_first").dt.truncate("1d").alias("_day"))


def entity_features(
    rows: pl.DataFrame,
    history: KeyHistory | None = None,
    baseline: pl.DataFrame | None = None,
    far_km: float = 3000.0,
    known_keys: pl.Series | None = None,
    population: dict[str, float] | None = None,
) -> dict[str, pl.DataFrame]:
    """The entities of derived ``rows`` per kind, each frame with the identity columns of
    :data:`ENTITY_COLUMNS` (entity_kind .. requests), the raw feature counts (:data:`FEATURES`)
    and, for key-days, ``usual_<count>`` (the key's own usual day, null without one) and
    ``expected_<count>`` (that, else the population's median) behind the ``more_<count>`` features.

    ``history``: the pairs that are not new to their key, and its keys are not new to the vendor
    (training plus nights since; None: only the rows earlier in ``rows`` count as the past);
    ``baseline``: the keys' training baseline (:func:`key_baseline`; None: no key has one);
    ``known_keys``: keys not new to the vendor besides the history's (the training keys);
    ``population``: the training key-days' median counts (:func:`population_medians`; None: these
    rows' own).
    """
    base = _base(rows)
    cells = _cells(base)
    known = history.keys.cast(pl.String) if history is not None else pl.Series("Key", [], dtype=pl.String)
    if known_keys is not None:
        known = pl.concat([known, known_keys.cast(pl.String)]).unique()
    key_first = cells.group_by("Key").agg(pl.col("_hour").min().alias("_key_first_hour")).with_columns(
        pl.col("Key").is_in(known.implode()).alias("_known_key"))
    new_mc = _newcomers(cells, "MachineCode", history, key_first)
    key_days = _key_day(base, cells, history, baseline, key_first, new_mc, far_km)
    return {
        "key-day": _expected(key_days, population or population_medians(key_days)),
        "key-machine": _key_machine(cells, new_mc),
        "address-hour": _address_hour(cells, key_first),
    }


def _identity(kind: str, entity: pl.Expr, key: pl.Expr, machine: pl.Expr, address: pl.Expr) -> list[pl.Expr]:
    return [pl.lit(kind).alias("entity_kind"), entity.alias("entity"), key.alias("key"),
            machine.alias("machine_code"), address.alias("address"), "first_id", "last_id", "start_time",
            "end_time", "requests"]


_SPAN = [pl.col("first_id").min(), pl.col("last_id").max(), pl.col("start_time").min(), pl.col("end_time").max(),
         pl.col("requests").sum(), pl.col("failures").sum()]  # over cells
_NONE = pl.lit(None, pl.String)


def _counts_by(frame: pl.DataFrame, by: list[str], name: str) -> pl.DataFrame:
    return frame.group_by(by).agg(pl.len().cast(pl.Int64).alias(name))


def _key_day(base: pl.DataFrame, cells: pl.DataFrame, history: KeyHistory | None, baseline: pl.DataFrame | None,
             key_first: pl.DataFrame, new_mc: pl.DataFrame, far_km: float) -> pl.DataFrame:
    known_country = ~pl.col("country").is_in(list(_NO_COUNTRY))
    days = cells.group_by("Key", "_day").agg(
        *_SPAN,
        pl.col("MachineCode").filter(pl.col("MachineCode") != "").n_unique().alias("machines"),
        pl.col("country").filter(known_country).n_unique().alias("countries"),
        _ADDRESSES.alias("addresses"),
    )
    new_cc = _newcomers(cells, "country", history, key_first)
    # the key's usual countries (its baseline's), else the day's most frequent country: a country
    # of the day far from all of them, and a change within an hour to a far country that is not usual
    located = cells.filter(known_country)
    usual = (baseline.select(pl.col("Key").cast(pl.String), pl.col("home_countries")).explode("home_countries")
             .drop_nulls().rename({"home_countries": "_usual"})
             if baseline is not None else pl.DataFrame(schema={"Key": pl.String, "_usual": pl.String}))
    day_countries = located.group_by("Key", "_day", "country").agg(pl.col("requests").sum().alias("_n"))
    main = (day_countries.join(usual.select("Key").unique(), on="Key", how="anti")
            .sort("_n", "country", descending=[True, False]).group_by("Key", "_day").agg(pl.col("country").first().alias("_usual")))
    reference = pl.concat([
        day_countries.select("Key", "_day").unique().join(usual, on="Key"),
        main.select("Key", "_day", "_usual"),
    ])
    far_new = day_countries.select("Key", "_day", "country").join(reference, on=["Key", "_day"])
    far_new = far_new.with_columns(pl.Series("_km", country_distances(far_new["country"], far_new["_usual"])))
    far_new = (far_new.group_by("Key", "_day", "country").agg(pl.col("_km").min())
               .filter(pl.col("_km") >= far_km))
    # machine codes new to the key that day, used from one of its far countries
    far_new_mc = (
        located.join(far_new.select("Key", "_day", "country"), on=["Key", "_day", "country"])
        .join(new_mc.select("Key", "MachineCode", "_day"), on=["Key", "MachineCode", "_day"])
        .group_by("Key", "_day").agg(pl.col("MachineCode").n_unique().alias("far_new_machines"))
    )
    # only keys seen from two countries or more can change country or have two in an hour
    several = day_countries.group_by("Key").agg(pl.col("country").n_unique().alias("_k")).filter(pl.col("_k") > 1).select("Key")
    roaming = located.join(several, on="Key", how="semi")
    rows = (base.filter(pl.col("Key").is_in(several["Key"].implode()))
            .select("Key", "Time", "country")
            .filter(known_country).with_columns(pl.col("Time").dt.truncate("1d").alias("_day")))
    seq = (
        rows.sort("Key", "Time")
        .with_columns(pl.col("country").shift(1).over("Key").alias("_prev"),
                      pl.col("Time").shift(1).over("Key").alias("_prev_time"))
        .filter((pl.col("country") != pl.col("_prev")) & (pl.col("Time") - pl.col("_prev_time") <= timedelta(hours=1)))
        .join(usual.rename({"_usual": "country"}), on=["Key", "country"], how="anti")
    )
    seq = seq.with_columns(pl.Series("_km", country_distances(seq["_prev"], seq["country"]))).filter(pl.col("_km") >= far_km)
    per_hour = (roaming.group_by("Key", "_hour").agg(pl.col("country").n_unique().alias("_n"))
                .with_columns(pl.col("_hour").dt.truncate("1d").alias("_day"))
                .group_by("Key", "_day").agg(pl.col("_n").max().alias("max_countries_hour")))
    out = (
        days.join(_counts_by(new_mc, ["Key", "_day"], "new_machines"), on=["Key", "_day"], how="left")
        .join(_counts_by(new_cc, ["Key", "_day"], "new_countries"), on=["Key", "_day"], how="left")
        .join(_counts_by(far_new, ["Key", "_day"], "far_countries"), on=["Key", "_day"], how="left")
        .join(far_new_mc, on=["Key", "_day"], how="left")
        .join(_counts_by(seq, ["Key", "_day"], "far_changes_hour"), on=["Key", "_day"], how="left")
        .join(per_hour, on=["Key", "_day"], how="left")
        .with_columns(pl.col("max_countries_hour").fill_null(pl.col("countries").clip(upper_bound=1)))
    )
    usual_cols = [f"usual_{c}" for c in _SIZES]
    if baseline is not None:
        own = baseline.filter(pl.col("active_days") >= MIN_USUAL_DAYS).select(
            pl.col("Key").cast(pl.String), *(pl.col(c).cast(pl.Float64) for c in usual_cols))
        out = out.join(own, on="Key", how="left")
    else:
        out = out.with_columns(*(pl.lit(None, pl.Float64).alias(c) for c in usual_cols))
    names = [n for n, _ in FEATURES["key-day"] if not n.startswith("more_")]
    return out.select(
        *_identity("key-day", pl.col("Key"), pl.col("Key"), _NONE, _NONE),
        *(pl.col(n).fill_null(0).cast(pl.Float64) for n in (*_SIZES[1:], *names)), *usual_cols,
    )


def _expected(frame: pl.DataFrame, population: dict[str, float]) -> pl.DataFrame:
    """key-day: ``expected_<count>`` (the key's usual day where it has one, else the population's
    median) and ``more_<count>`` (how far the count exceeds it, as a count: ``log1p`` of it is the
    excess of ``log1p`` values)."""
    return frame.with_columns(
        pl.col(f"usual_{c}").fill_null(population[c]).alias(f"expected_{c}") for c in _SIZES
    ).with_columns(
        (pl.col(c).cast(pl.Float64).log1p() - pl.col(f"expected_{c}").log1p()).clip(lower_bound=0.0).exp().sub(1.0)
        .alias(f"more_{c}") for c in _SIZES
    )


def population_medians(key_days: pl.DataFrame) -> dict[str, float]:
    """The median of each key-day count over the training key-days (the expected day of a key
    without its own usual day)."""
    return {c: float(key_days[c].median() or 0.0) for c in _SIZES}


def _key_machine(cells: pl.DataFrame, new_mc: pl.DataFrame) -> pl.DataFrame:
    with_mc = cells.filter(pl.col("MachineCode") != "")
    known_country = ~pl.col("country").is_in(list(_NO_COUNTRY))
    pairs = with_mc.group_by("Key", "MachineCode", "_day").agg(
        *_SPAN, _ADDRESSES.alias("addresses"),
        pl.col("country").filter(known_country).n_unique().alias("countries"),
    )
    machine = with_mc.group_by("MachineCode", "_day").agg(
        pl.col("Key").n_unique().alias("machine_keys"), _ADDRESSES.alias("machine_addresses"))
    new = new_mc.select("Key", "MachineCode", "_day")
    out = (
        pairs.join(machine, on=["MachineCode", "_day"], how="left")
        .join(_counts_by(new, ["MachineCode", "_day"], "machine_new_keys"), on=["MachineCode", "_day"], how="left")
        .join(new.with_columns(pl.lit(1).alias("new_pair")), on=["Key", "MachineCode", "_day"], how="left")
    )
    names = [n for n, _ in FEATURES["key-machine"]]
    return out.select(
        *_identity("key-machine", pl.concat_str(pl.col("Key"), pl.lit(" / "), pl.col("MachineCode")), pl.col("Key"),
                   pl.col("MachineCode"), _NONE),
        *(pl.col(n).fill_null(0).cast(pl.Float64) for n in names if n != "requests"),
    )


def _address_hour(cells: pl.DataFrame, key_first: pl.DataFrame) -> pl.DataFrame:
    # rows without an address are no address's (a platform that does not log it writes it empty)
    cells = cells.filter(pl.col("IP") != "")
    # a key new to the vendor: one the history lacks, in its first hour here
    per_key = cells.group_by("IP", "_hour", "Key").agg(*_SPAN).join(key_first, on="Key", how="left").with_columns(
        (~pl.col("_known_key") & (pl.col("_hour") == pl.col("_key_first_hour")) & (pl.col("Key") != "")).alias("_new_key"))
    out = per_key.group_by("IP", "_hour").agg(
        pl.col("first_id").min(), pl.col("last_id").max(), pl.col("start_time").min(), pl.col("end_time").max(),
        pl.col("requests").sum(), pl.col("failures").sum(), pl.len().alias("keys"),
        pl.col("_new_key").sum().alias("new_keys"),
        (pl.col("_new_key") & (pl.col("failures") > 0)).any().alias("_tried_new"),
    ).with_columns((pl.col("failures") / pl.col("requests")).alias("failed_share"))
    campaign = out.filter(pl.col("_tried_new")).group_by("_hour").agg(pl.len().alias("_campaign"))
    out = out.join(campaign, on="_hour", how="left").with_columns(
        pl.when(pl.col("_tried_new")).then(pl.col("_campaign")).otherwise(0).alias("hour_new_key_addresses"))
    names = [n for n, _ in FEATURES["address-hour"]]
    return out.select(
        *_identity("address-hour", pl.col("IP"), _NONE, _NONE, pl.col("IP")),
        *(pl.col(n).fill_null(0).cast(pl.Float64) for n in names if n != "requests"),
    )


def _matrix(frame: pl.DataFrame, kind: str) -> np.ndarray:
    """The model inputs of one kind's entities: log1p of the counts, shares as they are."""
    return frame.select(
        pl.col(n) if n in _SHARES else pl.col(n).log1p() for n, _ in FEATURES[kind]
    ).to_numpy().astype(np.float64)


def key_baseline(rows: pl.DataFrame, usual_days: int = 2) -> pl.DataFrame:
    """Per key of derived ``rows`` (its training days): ``usual_<count>`` (the median of its daily
    requests, failures, machine codes, addresses and countries over the days it was active),
    ``active_days`` and ``home_countries`` (the countries it
    was used from on at least ``usual_days`` days; one stray request does not make a country usual)."""
    cells = _cells(_base(rows))
    known_country = ~pl.col("country").is_in(list(_NO_COUNTRY))
    days = cells.group_by("Key", "_day").agg(
        pl.col("requests").sum(), pl.col("failures").sum(),
        pl.col("MachineCode").filter(pl.col("MachineCode") != "").n_unique().alias("machines"),
        _ADDRESSES.alias("addresses"), pl.col("country").filter(known_country).n_unique().alias("countries"),
    ).group_by("Key").agg(*(pl.col(c).median().cast(pl.Float64).alias(f"usual_{c}") for c in _SIZES),
                          pl.len().cast(pl.Int64).alias("active_days"))
    countries = (cells.filter(known_country).group_by("Key", "country")
                 .agg(pl.col("_day").n_unique().alias("_days")).filter(pl.col("_days") >= usual_days)
                 .group_by("Key").agg(pl.col("country").sort().alias("home_countries")))
    return days.join(countries, on="Key", how="left").with_columns(
        pl.col("home_countries").fill_null(pl.lit([], dtype=pl.List(pl.String)))).sort("Key")


# ---------------------------------------------------------------------------------------------
# Peer groups


def peer_groups(rows: pl.DataFrame) -> pl.DataFrame:
    """Per key of derived ``rows``: ``product`` (its most frequent ProductId), ``licence`` (one
    of :data:`LICENCE_MODELS`, read from what the key did in these rows) and ``peer_group``
    ("product 7365, floating").

    The Web API Log names the product but not the licence model, so it is inferred per key (in
    Cryptolens the model is a setting of each key, and keys of one product may differ):
    ``floating`` when a request of the key carries a ``FloatingExpires`` (floating activations and
    their heartbeats), else ``usage-based`` when it called a data-object method (State group 80:
    usage counters), else ``node-locked``. A log without ProductId gives one product ("?")."""
    if "Key" not in rows.columns:
        raise ValueError("peer groups need the Key column")
    product = pl.col("ProductId").cast(pl.String) if "ProductId" in rows.columns else pl.lit("?")
    floating = (pl.col("FloatingExpires").is_not_null() if "FloatingExpires" in rows.columns else pl.lit(False))
    if "State" in rows.columns:
        usage = (pl.col("State") // 100) == 80
    elif "action" in rows.columns:
        usage = (pl.col("action") // 10) == 80
    else:
        usage = pl.lit(False)
    if rows.height == 0:
        return pl.DataFrame(schema={"Key": pl.String, "product": pl.String, "licence": pl.String, "peer_group": pl.String})
    per_key = rows.select(pl.col("Key").cast(pl.String).fill_null(""), product.fill_null("?").alias("product"),
                          floating.fill_null(False).alias("_f"), usage.fill_null(False).alias("_u"))
    products = (per_key.group_by("Key", "product").len().sort(["len", "product"], descending=[True, False])
                .group_by("Key", maintain_order=True).agg(pl.col("product").first()))
    licence = per_key.group_by("Key").agg(pl.col("_f").any(), pl.col("_u").any()).select(
        "Key", pl.when("_f").then(pl.lit("floating")).when("_u").then(pl.lit("usage-based"))
        .otherwise(pl.lit("node-locked")).alias("licence"))
    return products.join(licence, on="Key").with_columns(
        pl.format("product {}, {}", "product", "licence").alias("peer_group")).sort("Key")


def _with_group(frame: pl.DataFrame, groups: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` (entities with a ``key``) with the ``peer_group`` of its key (VENDOR when unknown)."""
    if groups is None or groups.height == 0:
        return frame.with_columns(pl.lit(VENDOR).alias("peer_group"))
    return frame.join(groups.select(pl.col("Key").alias("key"), "peer_group"), on="key", how="left",
                      maintain_order="left").with_columns(pl.col("peer_group").fill_null(VENDOR))


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class KindReference:
    """One entity kind's fitted reference: its tails, severity calibration and typical values."""

    kind: str
    columns: tuple[str, ...]
    tail: TailModel
    calibration: Calibration
    threshold: float            # the score at min_severity
    typical: tuple[float, ...]  # per feature: the reference's median, in the feature's raw units
    n_train: int                # training entities of this kind
    n_reference: int            # of them, those the reference kept
    group: str = VENDOR         # the peer group it judges (VENDOR: the whole vendor)
    n_keys: int = 0             # distinct keys among the training entities (0: not counted)


def tail_calibration(scores: np.ndarray, upper: float = 0.9, min_beta: float = 0.25) -> Calibration:
    """A :class:`Calibration` whose exponential tail is fitted to the upper tail of ``scores``.

    Entity scores are sums of surprisals of counts: most ordinary entities score 0 or close to it,
    so the lower quantiles that :meth:`Calibration.fit` reads to find the normal bulk are ties and
    its tail would be far too steep. Here the tail starts at the ``upper`` quantile ``q`` with its
    empirical probability ``p_u`` (the share of scores above it) and decays with the median excess
    over ``q`` divided by ``log 2`` (the exponential's scale, robust to the few anomalous entities
    of the training days), at least ``min_beta`` nats. Expressed as Calibration's parameters, so
    that severity, ``score_at`` and the far-beyond rule are the decision module's.
    """
    arr = np.asarray(scores, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("tail_calibration needs scores")
    q = float(np.quantile(arr, upper))
    excess = arr[arr > q] - q
    if excess.size:
        beta = max(float(np.median(excess)) / np.log(2.0), min_beta)
        p_u = excess.size / arr.size
    else:
        beta, p_u = max(float(arr.std()), 1.0), 1.0 / (arr.size + 1)
    # Calibration: P(S > s) = 0.5 * exp(-(s - median) / beta); through (q, p_u)
    median = q - beta * float(np.log(0.5 / p_u))
    return Calibration(median=median, q90=q, beta=beta, max_score=float(arr.max()), n=int(arr.size),
                       n_bulk=int(arr.size - excess.size))


def _summed(surprisal: np.ndarray, top: int = 0) -> np.ndarray:
    """An entity's score: the sum of its features' surprisals (of the ``top`` largest only, when
    positive)."""
    if top <= 0 or top >= surprisal.shape[1]:
        return surprisal.sum(axis=1)
    return -np.sort(-surprisal, axis=1)[:, :top].sum(axis=1)


def _scores(model: TailModel, X: np.ndarray, top: int) -> np.ndarray:
    return _summed(model.surprisal(X), top)


def entity_calibration(scores: np.ndarray) -> Calibration:
    """A kind's severity calibration from its out-of-fold training scores: :func:`tail_calibration`
    of all of them. Not refitted without the scores far out against a first fit, as the reference is
    (:func:`_robust_tail`): the tail's scale is the median excess over the 90th percentile, which the
    training days' few anomalous entities barely move, while setting aside the top of the decile and
    refitting shrank it round after round where ordinary entities tie just above the 90th percentile
    (an address-hour's one failed request): a simulated mixed vendor's address-hours (seed 5),
    trained on 25 days, got a scale of 0.58 nats where 14 days of the same traffic gave 1.70, and its
    five nights without an event flagged 222 entities, most of them address-hours; without the rounds
    the scales are 1.64 and 1.77 and the same nights flag 22."""
    return tail_calibration(scores)


def _robust_tail(X: np.ndarray, tail_quantile: float, trim_severity: float, rounds: int,
                 top: int) -> tuple[TailModel, np.ndarray]:
    """A TailModel fitted on the entities that are not far out: ``rounds`` times, the entities at
    or above ``trim_severity`` against the previous fit (calibrated on its own scores) are set
    aside and the tails refitted, so that a storm in the training days does not widen the normal
    range (the trimming idea of ContextDetector's reference, in the form that suits entities:
    a storm is a handful of entities, not a third of them)."""
    keep = np.ones(len(X), dtype=bool)
    model = TailModel(tail_quantile=tail_quantile).fit(X)
    for _ in range(rounds):
        scores = _scores(model, X, top)
        new = tail_calibration(scores[keep] if keep.any() else scores).severity(scores) < trim_severity
        if new.sum() < max(2, len(X) // 2) or (new == keep).all():
            break
        keep = new
        model = TailModel(tail_quantile=tail_quantile).fit(X[keep])
    return model, keep


@dataclass(frozen=True)
class EntityModel:
    """Entity scoring for one vendor (see the module text). Settings are frozen; :meth:`fit`
    returns a fitted copy::

        model = EntityModel().fit(training_rows)          # derived rows (licanom.data.derive)
        entities = model.score(night_rows, seen=pairs)    # ENTITY_COLUMNS, most severe first
        model.save(path); EntityModel.load(path)
    """

    kinds: tuple[str, ...] = ENTITY_KINDS
    min_severity: float = DEFAULT_MIN_SEVERITY
    far_km: float = 3000.0
    tail_quantile: float = 0.9
    trim_severity: float = 40.0
    trim_rounds: int = 2
    calibration_folds: int = 4
    warmup_days: int = 1
    top_features: int = 0
    reasons_top: int = 3
    # "product-licence": key-days and key-machines judged against the keys of the same product and
    # licence model (peer_groups) where the group is big enough; "vendor": against every key
    peers: str = "product-licence"
    min_peer_keys: int = MIN_PEER_KEYS
    min_peer_entities: int = MIN_PEER_ENTITIES

    references: tuple[KindReference, ...] = field(default=(), repr=False)  # vendor-wide, then groups'
    history: KeyHistory | None = field(default=None, repr=False)
    baseline: pl.DataFrame | None = field(default=None, repr=False)
    population: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    groups: pl.DataFrame | None = field(default=None, repr=False)  # the training keys' peer_groups

    # --- fitting -------------------------------------------------------------------------
    def _check(self) -> None:
        unknown = [k for k in self.kinds if k not in ENTITY_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown or no entity kind(s) {unknown}; valid: {', '.join(ENTITY_KINDS)}")
        if not 0.0 < self.min_severity <= 100.0:
            raise ValueError(f"min_severity must lie in (0, 100], got {self.min_severity!r}")
        if self.far_km <= 0 or not 0 < self.trim_severity <= 100 or self.trim_rounds < 0 or self.calibration_folds < 0 or self.warmup_days < 0:
            raise ValueError("far_km must be positive, trim_severity in (0, 100]; trim_rounds, calibration_folds and warmup_days non-negative")
        if self.peers not in ("product-licence", "vendor"):
            raise ValueError(f"peers must be 'product-licence' or 'vendor', got {self.peers!r}")
        if self.min_peer_keys < 2 or self.min_peer_entities < 8:
            raise ValueError("min_peer_keys must be at least 2 and min_peer_entities at least 8")

    @property
    def is_fitted(self) -> bool:
        return bool(self.references)

    def fit(self, rows: pl.DataFrame) -> EntityModel:
        """The model fitted on a vendor's derived training rows (Id, Time, Key, MachineCode, IP,
        country, success): each kind's robust reference, out-of-fold calibration, the keys'
        history and baseline."""
        self._check()
        if rows.height == 0:
            raise ValueError("entity scoring needs training rows, got none")
        baseline = key_baseline(rows)
        features = entity_features(rows, None, baseline, self.far_km)
        population = population_medians(features["key-day"])
        groups = peer_groups(rows) if self.peers == "product-licence" else None
        first_day = _base(rows.select(_NEEDED))["_hour"].min().replace(hour=0)
        refs, peer_refs, short = [], [], []
        for kind in self.kinds:
            frame = features[kind].sort("start_time", "entity")
            if self.warmup_days:
                later = frame.filter(pl.col("start_time") >= first_day + timedelta(days=self.warmup_days))  # type: ignore[operator]
                if later.height >= max(8, frame.height // 4):
                    frame = later
            if frame.height < 2:  # a kind the log cannot show (no addresses, no machine codes): not judged
                short.append(f"{frame.height} of kind {kind!r}")
                continue
            refs.append(self._reference(kind, frame))
            if groups is not None and kind in PEER_KINDS:
                peer_refs += self._group_references(kind, _with_group(frame, groups))
        if not refs:
            raise ValueError(f"entity scoring needs at least 2 training entities of a kind, got {', '.join(short)}")
        return replace(self, references=tuple(refs + peer_refs), history=KeyHistory.from_rows(rows), baseline=baseline,
                       population=tuple(population.items()), groups=groups)

    def _group_references(self, kind: str, frame: pl.DataFrame) -> list[KindReference]:
        """A reference per peer group with at least ``min_peer_keys`` keys and
        ``min_peer_entities`` training entities of ``kind``; a vendor with one group needs none
        (the vendor-wide reference is that group's)."""
        sizes = frame.group_by("peer_group").agg(pl.len().alias("n"), pl.col("key").n_unique().alias("keys"))
        if sizes.height < 2:
            return []
        big = sizes.filter((pl.col("n") >= self.min_peer_entities) & (pl.col("keys") >= self.min_peer_keys)
                           & (pl.col("peer_group") != VENDOR)).sort("peer_group")
        return [self._reference(kind, frame.filter(pl.col("peer_group") == g), group=g, n_keys=k)
                for g, k in big.select("peer_group", "keys").iter_rows()]

    def _reference(self, kind: str, frame: pl.DataFrame, group: str = VENDOR, n_keys: int | None = None) -> KindReference:
        X = _matrix(frame, kind)
        tail, keep = _robust_tail(X, self.tail_quantile, self.trim_severity, self.trim_rounds, self.top_features)
        calibration = entity_calibration(self._out_of_fold(X, tail))
        typical = np.median(X[keep], axis=0)
        raw = tuple(float(v) if n in _SHARES else float(np.expm1(v)) for (n, _), v in zip(FEATURES[kind], typical, strict=True))
        keys = n_keys if n_keys is not None else (frame["key"].n_unique() if kind in PEER_KINDS else 0)
        return KindReference(kind=kind, columns=tuple(n for n, _ in FEATURES[kind]), tail=tail,
                             calibration=calibration, threshold=calibration.score_at(self.min_severity),
                             typical=raw, n_train=len(X), n_reference=int(keep.sum()), group=group, n_keys=int(keys))

    def _out_of_fold(self, X: np.ndarray, tail: TailModel) -> np.ndarray:
        """Each block of ``calibration_folds`` (contiguous in time) scored by a robust reference
        fitted on the others; the training scores where there are too few entities."""
        k = self.calibration_folds
        if k < 2 or len(X) < 4 * k:
            return _scores(tail, X, self.top_features)
        out = np.empty(len(X))
        for block in np.array_split(np.arange(len(X)), k):
            rest = np.setdiff1d(np.arange(len(X)), block)
            model, _ = _robust_tail(X[rest], self.tail_quantile, self.trim_severity, self.trim_rounds, self.top_features)
            out[block] = _scores(model, X[block], self.top_features)
        return out

    # --- scoring -------------------------------------------------------------------------
    def _fitted(self) -> tuple[KindReference, ...]:
        """The vendor-wide reference of each kind."""
        if not self.references:
            raise RuntimeError("this EntityModel is not fitted yet: model = EntityModel().fit(rows), or load()")
        return tuple(r for r in self.references if r.group == VENDOR)

    def peer_references(self, kind: str) -> dict[str, KindReference]:
        """The peer groups of ``kind`` that have their own reference, by group."""
        return {r.group: r for r in self.references if r.kind == kind and r.group != VENDOR}

    def groups_of(self, rows: pl.DataFrame) -> pl.DataFrame | None:
        """The peer group of every key of derived ``rows``: the training keys' own, the others'
        read from ``rows`` (:func:`peer_groups`); None when entities are judged vendor-wide."""
        if self.peers != "product-licence" or self.groups is None:
            return None
        keys = rows.get_column("Key").unique().cast(pl.String).fill_null("").to_frame("Key")
        new = keys.join(self.groups.select("Key"), on="Key", how="anti")
        if new.height == 0:
            return self.groups
        fresh = rows.filter(pl.col("Key").cast(pl.String).fill_null("").is_in(new["Key"].implode()))
        return pl.concat([self.groups, peer_groups(fresh).select(self.groups.columns)])

    def _judge(self, ref: KindReference, frame: pl.DataFrame) -> tuple[np.ndarray, list[KindReference], np.ndarray]:
        """Each entity's surprisal per feature, against its peer group's reference where it has
        one, else the vendor's (``ref``): the surprisals, the references and, per entity, the
        position of its reference among them."""
        X = _matrix(frame, ref.kind)
        used = [ref, *self.peer_references(ref.kind).values()]
        which = np.zeros(len(X), dtype=np.int64)
        if len(used) > 1 and "peer_group" in frame.columns:
            group = frame["peer_group"].to_numpy()
            for i, peer in enumerate(used[1:], start=1):
                which[group == peer.group] = i
        surprisal = np.zeros((len(X), len(ref.columns)))
        for i, r in enumerate(used):
            at = which == i
            if at.any():
                surprisal[at] = r.tail.surprisal(X[at])
        return surprisal, used, which

    def features(self, rows: pl.DataFrame, seen: KeyHistory | None = None) -> dict[str, pl.DataFrame]:
        """The entities of derived ``rows`` per kind with their raw features (:func:`entity_features`),
        against the training history plus ``seen`` (the pairs of the nights scored since)."""
        self._fitted()
        history = self.history if seen is None or self.history is None else self.history.union(seen)
        known = self.baseline["Key"] if self.baseline is not None else None
        features = entity_features(rows, history if history is not None else seen, self.baseline, self.far_km, known,
                                   dict(self.population))
        groups = self.groups_of(rows)
        return {kind: _with_group(features[kind], groups) if kind in PEER_KINDS and groups is not None else features[kind]
                for kind in self.kinds}

    def score(self, rows: pl.DataFrame, seen: KeyHistory | None = None) -> pl.DataFrame:
        """The entity results of derived ``rows`` (a night; give whole days): :data:`ENTITY_COLUMNS`,
        most severe first. ``seen``: the key pairs of the nights scored since training (the
        vendor's state), which are not new to their keys."""
        refs = self._fitted()
        if rows.height == 0:
            return pl.DataFrame(schema=ENTITY_SCHEMA)
        features = self.features(rows, seen)
        out = []
        for ref in refs:
            frame = features[ref.kind]
            if frame.height == 0:
                continue
            surprisal, used, which = self._judge(ref, frame)
            score = _summed(surprisal, self.top_features)
            severity = np.empty(len(score))
            for i, r in enumerate(used):
                at = which == i
                if at.any():
                    severity[at] = r.calibration.severity(score[at])
            flagged = severity >= self.min_severity
            reasons = np.full(len(score), None, dtype=object)
            for i in np.flatnonzero(flagged):
                reasons[i] = _reason(used[which[i]], frame.row(i, named=True), surprisal[i], self.reasons_top)
            out.append(frame.select(ENTITY_COLUMNS[:10]).with_columns(
                pl.Series("score", score, dtype=pl.Float64), pl.Series("severity", severity, dtype=pl.Float64),
                pl.Series("is_anomaly", flagged, dtype=pl.Boolean), pl.Series("reasons", reasons.tolist(), dtype=pl.String)))
        if not out:
            return pl.DataFrame(schema=ENTITY_SCHEMA)
        return (pl.concat(out).cast(ENTITY_SCHEMA)  # type: ignore[arg-type]
                .sort(["severity", "score", "start_time", "entity_kind", "entity"],
                      descending=[True, True, False, False, False]))

    def explain(self, rows: pl.DataFrame, seen: KeyHistory | None = None) -> dict[str, pl.DataFrame]:
        """Per kind: the entities' identity columns and each feature's surprisal in nats."""
        out = {}
        features = self.features(rows, seen)
        for ref in self._fitted():
            frame = features[ref.kind]
            surprisal, used, which = self._judge(ref, frame)
            names = np.array([u.group or "vendor" for u in used], dtype=object)
            out[ref.kind] = frame.select(ENTITY_COLUMNS[:10]).with_columns(
                pl.Series("peers", names[which].tolist(), dtype=pl.String)).hstack(
                pl.DataFrame(surprisal, schema=[f"surprisal_{c}" for c in ref.columns], orient="row"))
        return out

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to one file, atomically (a temporary name, then a rename).
        Pickled (numpy arrays and Parquet bytes): load only files this project wrote."""
        self._fitted()
        refs = self.references
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: getattr(self, k) for k in ("kinds", "min_severity", "far_km", "tail_quantile", "trim_severity",
                                                   "trim_rounds", "calibration_folds", "warmup_days", "top_features", "reasons_top",
                                                   "peers", "min_peer_keys", "min_peer_entities")}
        payload = {
            "format": SAVE_FORMAT,
            "features": {k: [n for n, _ in v] for k, v in FEATURES.items()},
            "settings": settings,
            "references": [{
                "kind": r.kind, "columns": list(r.columns), "calibration": r.calibration.as_dict(),
                "threshold": r.threshold, "typical": list(r.typical), "n_train": r.n_train, "n_reference": r.n_reference,
                "group": r.group, "n_keys": r.n_keys,
                "tail": {"tail_quantile": r.tail.tail_quantile, "min_scale": r.tail.min_scale, "sorted": r.tail.sorted_,
                         "u": r.tail.u_, "beta": r.tail.beta_, "log_p_u": r.tail.log_p_u_},
            } for r in refs],
            "machines": _parquet(self.history.machines) if self.history is not None else None,
            "countries": _parquet(self.history.countries) if self.history is not None else None,
            "baseline": _parquet(self.baseline) if self.baseline is not None else None,
            "population": [list(p) for p in self.population],
            "groups": _parquet(self.groups) if self.groups is not None else None,
        }
        return save_pickle(path, payload)

    @classmethod
    def load(cls, path: str | Path) -> EntityModel:
        """Read a model :meth:`save` wrote."""
        payload = load_pickle(path, "entity model", _READABLE_FORMATS)
        if payload["features"] != {k: [n for n, _ in v] for k, v in FEATURES.items()}:
            raise ValueError(f"{path}: written for other entity features; retrain the vendor's models")
        refs = []
        for r in payload["references"]:
            t = r["tail"]
            tail = TailModel(tail_quantile=t["tail_quantile"], min_scale=t["min_scale"])
            tail.sorted_, tail.u_, tail.beta_, tail.log_p_u_ = t["sorted"], t["u"], t["beta"], t["log_p_u"]
            refs.append(KindReference(kind=r["kind"], columns=tuple(r["columns"]), tail=tail,
                                      calibration=Calibration.from_dict(r["calibration"]), threshold=r["threshold"],
                                      typical=tuple(r["typical"]), n_train=r["n_train"], n_reference=r["n_reference"],
                                      group=r.get("group", VENDOR), n_keys=r.get("n_keys", 0)))
        settings = dict(payload["settings"], kinds=tuple(payload["settings"]["kinds"]))
        history = None
        if payload["machines"] is not None:
            history = KeyHistory._of({"MachineCode": _unparquet(payload["machines"]),
                                      "country": _unparquet(payload["countries"])})
        baseline = _unparquet(payload["baseline"]) if payload["baseline"] is not None else None
        groups = _unparquet(payload["groups"]) if payload.get("groups") is not None else None
        return cls(**settings, references=tuple(refs), history=history, baseline=baseline,
                   population=tuple((str(k), float(v)) for k, v in payload["population"]), groups=groups)

    def describe(self) -> dict[str, Any]:
        """Settings and, per kind, the training entities and typical values (for tracking)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)
                   if f.name not in ("references", "history", "baseline", "population", "groups")},
                "references": {r.kind: {"n_train": r.n_train, "n_reference": r.n_reference,
                                        "typical": dict(zip(r.columns, r.typical, strict=True))}
                               for r in self._fitted()},
                "peer_references": {f"{r.kind} / {r.group}": {"keys": r.n_keys, "n_train": r.n_train,
                                                              "n_reference": r.n_reference}
                                    for r in self.references if r.group != VENDOR},
                "peer_groups": (self.groups["peer_group"].value_counts(sort=True, name="keys")
                                .sort(["keys", "peer_group"], descending=[True, False]).rows()
                                if self.groups is not None else [])}


def _parquet(frame: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _unparquet(data: bytes) -> pl.DataFrame:
    import io

    return pl.read_parquet(io.BytesIO(data))


# ---------------------------------------------------------------------------------------------
# Reasons

_WHO = {"key-day": "key {key}", "key-machine": "machine code {machine_code} under key {key}",
        "address-hour": "address {address}"}


# the plural nouns the feature labels start with, and their singular (a count of one)
_SINGULAR: tuple[tuple[str, str], ...] = (
    ("failed requests", "failed request"), ("machine codes", "machine code"), ("requests", "request"),
    ("addresses", "address"), ("countries", "country"), ("jumps", "jump"), ("keys", "key"),
)


def _counted(value: float, label: str) -> str:
    """``3 countries``, ``1 country``: a count and its label, singular for one."""
    number = _number(value)
    if number == "1":
        for plural, singular in _SINGULAR:
            if label.startswith(plural):
                label = singular + label[len(plural):]
                break
    return f"{number} {label}"


def _number(value: float) -> str:
    if value != value:  # NaN
        return "?"
    if abs(value - round(value)) < 0.05:
        return f"{round(value):,}"
    return f"{value:.1f}"


def _span(start: datetime, end: datetime) -> str:
    """``2025-01-16 09:12-16:40 UTC``; one time said once where both fall in one minute
    (``2025-01-29 23:32 UTC``, not ``23:32-23:32``), the end's date too where it is another day."""
    first = f"{start:%Y-%m-%d %H:%M}"
    if f"{end:%Y-%m-%d %H:%M}" == first:
        return f"{first} UTC"
    return f"{first}-{end:%H:%M} UTC" if start.date() == end.date() else f"{first} to {end:%Y-%m-%d %H:%M} UTC"


def _reason(ref: KindReference, row: dict[str, Any], surprisal: np.ndarray, top: int) -> str:
    """``key X: 55 machine codes new to it (its peers' median key-day: 0), 3 countries (usually 1);
    120 requests, 2025-01-16 09:12-16:40 UTC (judged against ... keys)``: the most surprising
    features with their values and whose typical value each is compared with: "usually" for a
    key-day's own usual day, else the median entity of its kind of the reference (the vendor's, or
    its peer group's)."""
    labels = dict(FEATURES[ref.kind])
    order = [j for j in np.argsort(-surprisal, kind="stable")[:top] if surprisal[j] > 0.5] or [int(np.argmax(surprisal))]
    # the reference's typical values are its entities' medians, not the entity's own past: say whose
    theirs = f"the vendor's median {ref.kind}" if ref.group == VENDOR else f"its peers' median {ref.kind}"
    parts, own = [], True
    for j in order:
        name = ref.columns[j]
        value = float(row[name])
        if name == "failed_share":
            parts.append(f"{value:.0%} failed ({theirs}: {ref.typical[j]:.0%})")
        elif name.startswith("more_"):
            count = name.removeprefix("more_")
            expected = _number(float(row[f"expected_{count}"]))
            # a key with no usual day of its own (new, or too few training days) is held to the
            # median training key-day of the whole vendor: say so, not "usually", which reads as its own
            own = own and row.get(f"usual_{count}") is not None
            usual = f"(usually {expected})" if own else f"(the vendor's median key-day: {expected})"
            parts.append(f"{_counted(float(row[count]), labels[name])} {usual}")
        elif name == "new_pair":
            parts.append("new to the key")
        elif name == "hour_new_key_addresses" and _number(value) == "1":  # the address itself, no other
            parts.append(f"the only address failing with new keys in that hour ({theirs}: {_number(ref.typical[j])})")
        else:
            parts.append(f"{_counted(value, labels[name])} ({theirs}: {_number(ref.typical[j])})")
    span = _span(row["start_time"], row["end_time"])
    peers = f" (judged against {ref.group} keys)" if ref.group != VENDOR else ""
    who = _WHO[ref.kind].format(**row) + ("" if own else " (no usual day of its own)")
    return f"{who}: {', '.join(parts)}; {_counted(float(row['requests']), 'requests')}, {span}{peers}"
