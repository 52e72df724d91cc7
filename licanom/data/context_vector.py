"""The context vector of a chunk: what its requests' keys, machines and addresses did around it.

The thesis's inputs cannot show some of the anomalies a licensing vendor cares about. Each
window's time column is normalised to [0, 1], so 100 requests in two minutes look like 100
requests in a day (a runaway client), and a chunk sees each key only through the requests
that fall inside it, so a key used from thirty machines in ten countries over a day looks
like thirty ordinary activations (licence sharing). The context vector adds, per chunk, the
signals that name those patterns in licensing terms, each one computed over the whole log:

===================== ===============================================================
column                 per chunk (the largest over its requests where it says "row's")
===================== ===============================================================
rate                   log requests per second over the chunk's time span, less the median of
                       the chunks of its UTC day (the vendor's own level that day: traffic that
                       grows week by week does not raise it; a burst does)
failure_share          share of failed requests
top_machine_share      share of the chunk's most frequent (key, machine code)
key_requests_hour      the row's key: requests in the row's clock hour
machine_requests_hour  the row's (key, machine code): requests in its clock hour
key_machines_hour      the row's key: distinct machine codes in its clock hour
key_countries_hour     the row's key: distinct countries in its clock hour
key_ips_hour           the row's key: distinct IP addresses in its clock hour
ip_keys_hour           the row's IP address: distinct keys in its clock hour
ip_failures_hour       the row's IP address: failed requests in its clock hour
machine_failures_hour  the row's (key, machine code): failed requests in its clock hour
key_new_machines_hour  the row's key: machine codes new to the key in its clock hour
key_new_countries_hour the row's key: countries new to the key in its clock hour
key_new_machines_day   the row's key: machine codes new to the key in its UTC day, on the
                       rows of those machines only (0 on the key's other rows)
key_new_countries_day  the row's key: countries new to the key in its UTC day, on the rows
                       from those countries only
===================== ===============================================================

Counts enter as ``log1p``. The buckets are clock hours and days (UTC), so a row's context
includes the requests after it in the same hour or day: right for a nightly run, which scores
complete days, and the same at training and scoring time (a scoring pass counts the rows it is
given, so give it whole days). Hours for the plain counts: a key shared for a few hours would
otherwise mark every chunk that holds one of its owner's ordinary requests that day, and a
flagged time frame should be where the unusual requests are. A licence shared slowly (a new
machine every hour or two, over a day or more) shows only at the day's scale, so the two day
signals count a day's newcomers to the key, and carry the count on the newcomers' own rows
only: the owner's machines that day keep 0, so the flagged chunks are the strangers' requests.
Nothing in the vector is learned: the context models (:mod:`licanom.detectors.context`) learn
what is normal for a vendor from the training chunks' vectors.

"New to the key" is a key's own baseline: a machine code (country) is new at the first request
that pairs it with the key, unless the key's :class:`KeyHistory` (the pairs of the rows a model
was trained on, kept in its bundle) holds the pair, and never in the key's first hour when the
key itself is new (a customer setting up a licence is not news). Over a log given whole (training,
evaluation) "before" is the rows earlier in the log, so the signal looks only back. A licence
shared with strangers shows as machines and countries the key has never had, hour after hour,
even when each hour holds only one or two of them, where the plain counts stay ordinary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl

from licanom.data.columns import UNKNOWN_COUNTRY

__all__ = ["CONTEXT_COLUMNS", "CONTEXT_LABELS", "ROW_COLUMNS", "KeyHistory", "chunk_context", "row_context"]


# (column, entity columns, aggregate, bucket) of the per-row counts: "_hour" is the row's clock
# hour, "_day" its UTC day (the day counts sit on the newcomers' rows only, see the module text).
_ROW_COUNTS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("key_requests_hour", ("Key",), "requests", "_hour"),
    ("machine_requests_hour", ("Key", "MachineCode"), "requests", "_hour"),
    ("key_machines_hour", ("Key",), "MachineCode", "_hour"),
    ("key_countries_hour", ("Key",), "country", "_hour"),
    ("key_ips_hour", ("Key",), "IP", "_hour"),
    ("ip_keys_hour", ("IP",), "Key", "_hour"),
    ("ip_failures_hour", ("IP",), "failures", "_hour"),
    ("machine_failures_hour", ("Key", "MachineCode"), "failures", "_hour"),
    ("key_new_machines_hour", ("Key",), "new MachineCode", "_hour"),
    ("key_new_countries_hour", ("Key",), "new country", "_hour"),
    ("key_new_machines_day", ("Key",), "new MachineCode", "_day"),
    ("key_new_countries_day", ("Key",), "new country", "_day"),
)
ROW_COLUMNS: tuple[str, ...] = tuple(c for c, *_ in _ROW_COUNTS)
CONTEXT_COLUMNS: tuple[str, ...] = ("rate", "failure_share", "top_machine_share", *ROW_COLUMNS)
# What each column means, in words for a vendor's report.
CONTEXT_LABELS: dict[str, str] = {
    "rate": "requests per second against the day's typical",
    "failure_share": "share of failed requests",
    "top_machine_share": "share of requests from one machine",
    "key_requests_hour": "requests of one key in an hour",
    "machine_requests_hour": "requests of one machine in an hour",
    "key_machines_hour": "machines using one key in an hour",
    "key_countries_hour": "countries using one key in an hour",
    "key_ips_hour": "IP addresses using one key in an hour",
    "ip_keys_hour": "keys tried from one IP address in an hour",
    "ip_failures_hour": "failed requests from one IP address in an hour",
    "machine_failures_hour": "failed requests of one machine in an hour",
    "key_new_machines_hour": "machines new to their key in an hour",
    "key_new_countries_hour": "countries new to their key in an hour",
    "key_new_machines_day": "machines new to their key in a day",
    "key_new_countries_day": "countries new to their key in a day",
}

_UNKNOWN = {"MachineCode": "", "country": UNKNOWN_COUNTRY}
_NEEDED = ("Time", "Key", "MachineCode", "IP", "country", "success")


@dataclass(frozen=True)
class KeyHistory:
    """The (key, machine code) and (key, country) pairs seen in a model's training rows: what is
    not new to a key when later rows are scored. Build it with :meth:`from_rows`."""

    machines: pl.DataFrame   # Key, MachineCode (String), one row per pair
    countries: pl.DataFrame  # Key, country (String), one row per pair

    FILES: ClassVar[dict[str, str]] = {"MachineCode": "key_machines.parquet", "country": "key_countries.parquet"}

    @classmethod
    def from_rows(cls, derived: pl.DataFrame) -> KeyHistory:
        """The pairs of a derived log (the rows a model is trained on)."""
        frame = _entity_frame(derived)
        return cls._of({value: frame.select("Key", value).filter(pl.col(value) != unknown)
                        for value, unknown in _UNKNOWN.items()})

    @classmethod
    def _of(cls, pairs: dict[str, pl.DataFrame]) -> KeyHistory:
        """From each value's (Key, value) frame: distinct pairs, sorted."""
        distinct = {value: frame.unique().sort("Key", value) for value, frame in pairs.items()}
        return cls(machines=distinct["MachineCode"], countries=distinct["country"])

    def pairs(self, value: str) -> pl.DataFrame:
        return self.machines if value == "MachineCode" else self.countries

    @property
    def keys(self) -> pl.Series:
        return pl.concat([self.machines["Key"], self.countries["Key"]]).unique()

    def for_keys(self, keys: pl.Series) -> KeyHistory:
        """The pairs of these keys only: all that decides what is new to them."""
        wanted = keys.cast(pl.String).unique().implode()
        return KeyHistory(machines=self.machines.filter(pl.col("Key").is_in(wanted)),
                          countries=self.countries.filter(pl.col("Key").is_in(wanted)))

    def union(self, other: KeyHistory) -> KeyHistory:
        """The pairs of both histories."""
        return KeyHistory._of({value: pl.concat([self.pairs(value), other.pairs(value)]) for value in self.FILES})

    def save(self, directory: Path) -> None:
        """Two Parquet files in ``directory``, each written to a temporary name and renamed."""
        directory.mkdir(parents=True, exist_ok=True)
        for value, name in self.FILES.items():
            tmp = directory / f"{name}.tmp"
            self.pairs(value).write_parquet(tmp)
            os.replace(tmp, directory / name)

    @classmethod
    def remove(cls, directory: Path) -> None:
        """Delete a history saved in ``directory`` (nothing where there is none)."""
        for name in cls.FILES.values():
            (directory / name).unlink(missing_ok=True)

    @classmethod
    def keep(cls, directory: Path, history: KeyHistory | None) -> None:
        """Save ``history`` in ``directory``, or, for None, remove the one an earlier save left."""
        if history is None:
            cls.remove(directory)
        else:
            history.save(directory)

    @classmethod
    def load(cls, directory: Path) -> KeyHistory | None:
        """The history saved in ``directory``, or None where none was saved."""
        paths = {value: directory / name for value, name in cls.FILES.items()}
        if not all(p.exists() for p in paths.values()):
            return None
        return cls._of({value: pl.read_parquet(p).select(pl.col("Key").cast(pl.String), pl.col(value).cast(pl.String))
                        for value, p in paths.items()})


def _entity_frame(derived: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in _NEEDED if c not in derived.columns]
    if missing:
        raise ValueError(f"the context needs the derived columns {missing}")
    return derived.select(
        pl.col("Time").rank("ordinal").alias("_row"),  # time order, ties in row order
        pl.col("Time").dt.truncate("1h").alias("_hour"),
        pl.col("Time").dt.truncate("1d").alias("_day"),
        pl.col("Key").cast(pl.String).fill_null(""),
        pl.col("MachineCode").cast(pl.String).fill_null(""),
        pl.col("IP").cast(pl.String).fill_null(""),
        pl.col("country").cast(pl.String).fill_null(""),
        (pl.col("success") == 0).cast(pl.Int64).alias("_failed"),
    )


def _codes(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Each value's position among the distinct values (UInt32), and those distinct values: equal
    codes for equal values and only then, so that counting and grouping run on integers."""
    distinct = values.unique()
    return values.cast(pl.Enum(distinct)).to_physical(), distinct


class _Groups:
    """Rows grouped by an integer value: dense ids in order of first appearance (a hash table,
    pandas' factorize: no sort, and about twice as fast as a polars window over one integer
    column here), each group's first row, and per-row counts and sums by ``np.bincount``."""

    def __init__(self, values: np.ndarray) -> None:
        import pandas as pd

        ids, self.distinct = pd.factorize(values, use_na_sentinel=False)
        self.ids = ids.astype(np.int64, copy=False)
        self.n = len(self.distinct)
        self.first = np.zeros(len(values), dtype=bool)  # ids count up in the order they appear
        if len(values):
            self.first[0] = True
            self.first[1:] = self.ids[1:] > np.maximum.accumulate(self.ids)[:-1]

    def count(self) -> np.ndarray:
        """The size of each row's group."""
        return np.bincount(self.ids, minlength=self.n)[self.ids]

    def sum(self, x: np.ndarray) -> np.ndarray:
        """The sum of ``x`` (small integers or bools) over each row's group."""
        return np.rint(np.bincount(self.ids, weights=x, minlength=self.n)).astype(np.int64)[self.ids]

    def at_first(self, x: np.ndarray) -> np.ndarray:
        """``x`` at the first row of each row's group."""
        return x[self.first][self.ids]

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Bool per row: its group's value is one of ``values``."""
        import pandas as pd

        hit = pd.Index(self.distinct).get_indexer(values)
        member = np.zeros(self.n + 1, dtype=bool)
        member[hit] = True  # -1 (a value no row has) marks the spare last slot
        return member[: self.n][self.ids]


def _history_codes(history: KeyHistory, distinct: dict[str, pl.Series]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The history's keys as key codes of this log (``_codes``'s distinct values), and its (key,
    value) pairs as ``key code * len(values) + value code``; those of keys or values the log does
    not hold are left out (no row can match them)."""
    def code(column: pl.Series, values: pl.Series) -> pl.Series:
        return column.cast(pl.Enum(values), strict=False).to_physical().cast(pl.Int64)

    keys = distinct["Key"]
    pairs = {}
    for value in _UNKNOWN:
        p = history.pairs(value)
        pairs[value] = (code(p["Key"], keys) * len(distinct[value]) + code(p[value], distinct[value])).drop_nulls().to_numpy()
    return code(history.keys, keys).drop_nulls().to_numpy(), pairs


def _row_counts(derived: pl.DataFrame, history: KeyHistory | None, keep_pairs: bool = False) -> pl.DataFrame:
    """ROW_COLUMNS as counts (Int64, before ``log1p``) for each row, in the log's order; with
    ``keep_pairs`` also ``_pair MachineCode``, a code of each row's (key, machine code).

    The entities become integer codes (one hash per text), each (entities, bucket) one integer
    group, and every signal over a group shares it (see :class:`_Groups`)."""
    missing = [c for c in _NEEDED if c not in derived.columns]
    if missing:
        raise ValueError(f"the context needs the derived columns {missing}")
    time_ = derived["Time"]
    rank = None
    if not time_.is_sorted():  # "the first row of a pair" is the first in time
        rank = time_.rank("ordinal") - 1  # each row's place in time order, ties in row order
        derived = derived.select(*_NEEDED).gather(rank.arg_sort())
    texts = {c: derived[c].cast(pl.String).fill_null("") for c in ("Key", "MachineCode", "IP", "country")}
    coded = {c: _codes(s) for c, s in texts.items()}
    distinct = {c: d for c, (_, d) in coded.items()}
    code = {c: codes.cast(pl.Int64).to_numpy() for c, (codes, _) in coded.items()}
    us = derived["Time"].dt.epoch("us").to_numpy()
    bucket = {"_hour": us // 3_600_000_000, "_day": us // 86_400_000_000}
    span = {b: int(v.max() - v.min()) + 1 if len(v) else 1 for b, v in bucket.items()}
    bucket = {b: v - v.min() if len(v) else v for b, v in bucket.items()}
    failed = (derived["success"] == 0).fill_null(False).to_numpy()
    key = _Groups(code["Key"])
    pair = {v: _Groups(code["Key"] * len(distinct[v]) + code[v]) for v in ("MachineCode", "country", "IP")}
    entity_ids = {("Key",): code["Key"], ("IP",): code["IP"], **{("Key", v): g.ids for v, g in pair.items()},
                  ("IP", "Key"): pair["IP"].ids}
    groups: dict[tuple[tuple[str, ...], str], _Groups] = {}

    def group(entity: tuple[str, ...], b: str) -> _Groups:
        at = (("Key", "IP") if entity == ("IP", "Key") else entity, b)  # the same groups
        if at not in groups:
            groups[at] = _Groups(entity_ids[entity] * span[b] + bucket[b])
        return groups[at]

    # New to its key: the first row of a (key, value) pair the history lacks, not in the first
    # hour of a key the history lacks too
    if history is not None:
        known_keys, known_pairs = _history_codes(history, distinct)
        known_key = key.contains(known_keys)
    else:
        known_key, known_pairs = np.zeros(len(us), dtype=bool), {}
    after_first_hour = known_key | (bucket["_hour"] > key.at_first(bucket["_hour"]))
    new = {}
    for value, unknown in _UNKNOWN.items():
        g = pair[value]
        seen = g.contains(known_pairs[value]) if value in known_pairs else np.zeros(len(us), dtype=bool)
        new[value] = (g.first & (texts[value] != unknown).to_numpy() & ~seen & after_first_hour).astype(np.int64)
    out = {}
    for name, entity, what, b in _ROW_COUNTS:
        over = group(entity, b)
        if what == "requests":
            count = over.count()
        elif what == "failures":
            count = over.sum(failed)
        elif what.startswith("new ") and b == "_day":
            # the day's newcomers, on the rows of the pairs that were new that day
            value = what.removeprefix("new ")
            g = pair[value]
            newcomer = (g.at_first(new[value]) == 1) & (g.at_first(bucket["_day"]) == bucket["_day"])
            count = np.where(newcomer, over.sum(new[value]), 0)
        elif what.startswith("new "):
            count = over.sum(new[what.removeprefix("new ")])
        else:  # distinct values of `what`: the first rows of the (entities, what, bucket) groups
            count = over.sum(group((*entity, what), b).first)
        out[name] = count
    if keep_pairs:
        out["_pair MachineCode"] = pair["MachineCode"].ids
    counts = pl.DataFrame(out)
    if rank is not None:
        counts = counts.gather(rank)
    return counts


def row_context(derived: pl.DataFrame, history: KeyHistory | None = None) -> pl.DataFrame:
    """ROW_COLUMNS (Float64, ``log1p`` of the count) for each row of a derived log, in its order.

    ``derived`` needs Time, Key, MachineCode, IP, country and success (licanom.data.derive).
    ``history``: the pairs that are not new to their key (a model's training rows); None: only
    the rows earlier in ``derived`` count as the keys' past.

    New to its key: the first row (in time) of a (key, machine code) or (key, country) pair that
    the history lacks, except in the first hour of a key the history lacks too (a key's set-up is
    not news). The counts run on integer codes of the entities (one hash per text, not one per
    signal).
    """
    return _row_counts(derived, history).select(pl.all().cast(pl.Float64).log1p())


def chunk_context(derived: pl.DataFrame, starts: np.ndarray, size: int,
                  history: KeyHistory | None = None) -> np.ndarray:
    """CONTEXT_COLUMNS of each window ``starts[i] .. starts[i] + size - 1`` of ``derived``.

    Returns float64 ``(len(starts), len(CONTEXT_COLUMNS))``; ``derived`` is the time-ordered
    log the windows were cut from (licanom.data.chunk), one row per request; ``history`` as in
    :func:`row_context`.
    """
    starts = np.asarray(starts, dtype=np.int64)
    if derived.height == 0 or len(starts) == 0:
        return np.zeros((len(starts), len(CONTEXT_COLUMNS)))
    if starts.min() < 0 or starts.max() + size > derived.height:
        raise ValueError(f"windows of {size} rows from {starts.min()} to {starts.max()} do not fit {derived.height} rows")
    from licanom.data.chunk import _windows

    ends = starts + size - 1
    plain = derived["Key"].null_count() == 0 and derived["MachineCode"].null_count() == 0
    counts = _row_counts(derived, history, keep_pairs=plain)
    out = np.empty((len(starts), len(CONTEXT_COLUMNS)))
    # Largest value over each window, of the counts (log1p keeps their order, so the log of the
    # largest count is the largest log)
    largest = _windows(counts.select(ROW_COLUMNS).to_numpy(), starts, size).max(axis=1)
    out[:, 3:] = np.log1p(largest.astype(np.float64))
    seconds = derived["Time"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
    span = seconds[ends] - seconds[starts]
    rate = np.log((size - 1) / np.maximum(span, 1.0))
    day = (seconds[starts] // 86_400).astype(np.int64)
    out[:, 0] = rate - _median_by(day, rate)
    failed = (derived["success"].to_numpy() == 0).astype(np.float64)
    csum = np.concatenate([[0.0], np.cumsum(failed)])
    out[:, 1] = (csum[ends + 1] - csum[starts]) / size
    # a (key, machine code) pair's code stands for the pair (equal codes, equal pairs); a null
    # differs from an empty text there, which the codes do not tell apart
    pairs = counts["_pair MachineCode"].to_numpy() if plain else _pair_ranks(derived)
    out[:, 2] = _top_share(pairs, starts, size)
    return out


def _median_by(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's group median (for the chunks of one day)."""
    frame = pl.DataFrame({"g": groups, "v": values})
    return frame.select(pl.col("v").median().over("g")).to_series().to_numpy()


def _pair_ranks(derived: pl.DataFrame) -> np.ndarray:
    """Codes of each row's (key, machine code), nulls apart from empty texts."""
    return (
        derived.select(pl.struct(pl.col("Key").cast(pl.String), pl.col("MachineCode").cast(pl.String)).rank("dense"))
        .to_series().to_numpy().astype(np.int64)
    )


def _top_share(codes: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Share of each window's requests made by its most frequent (key, machine code), from the
    pairs' codes."""
    out = np.empty(len(starts))
    block = max(1, 2_000_000 // size)
    for lo in range(0, len(starts), block):
        s = starts[lo : lo + block]
        win = np.sort(codes[s[:, None] + np.arange(size)[None, :]], axis=1)
        # longest run of equal codes in each sorted window
        change = np.ones(win.shape, dtype=bool)
        change[:, 1:] = win[:, 1:] != win[:, :-1]
        idx = np.where(change, np.arange(size)[None, :], 0)
        run_start = np.maximum.accumulate(idx, axis=1)
        out[lo : lo + block] = (np.arange(size)[None, :] - run_start + 1).max(axis=1) / size
    return out
