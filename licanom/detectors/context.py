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
Nothing in the vector is learned: :class:`ContextDetector` learns what is normal for a vendor
from the training chunks' vectors.

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
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from licanom.detectors import thresholds as th
from licanom.data.columns import UNKNOWN_COUNTRY
from licanom.detectors.base import BaseDetector
from licanom.detectors.decision import DECISIONS, Calibration, decide

__all__ = [
    "CONTEXT_COLUMNS", "CONTEXT_LABELS", "CONTEXT_MODELS", "ContextDetector", "KeyHistory", "TailModel",
    "chunk_context", "row_context",
]


# The registered models that read the context vector instead of the chunks' rows.
CONTEXT_MODELS: tuple[str, ...] = ("Tail_context", "IForest_context", "LOF_context")
SAVE_FORMAT = 6

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


# ---------------------------------------------------------------------------------------------
# The detectors


@dataclass
class TailModel:
    """How surprising each column of a vector is against training vectors, one column at a time.

    The surprisal of a value ``x`` in column ``j`` is ``-log P(X_j >= x)`` in nats, with ``P``
    the training column's empirical right tail ``(#{train >= x} + 1) / (n + 1)``, extended past
    the column's ``tail_quantile`` quantile ``u`` by an exponential tail
    ``P(X_j > u) * exp(-(x - u) / beta)`` (the larger of the two surprisals is kept). ``beta`` is
    the median excess over ``u`` divided by ``log 2``, the exponential's maximum-likelihood scale
    made robust: a few anomalies in the training vectors do not widen the tail. When nothing lies
    above ``u``, the tail starts at the maximum with the column's standard deviation (1 if the
    column is constant). Only the right tail counts: every context column is a count or a share
    that is suspicious when high. A vector's score is the sum of its columns' surprisals, the
    log of the product of tail probabilities as in ECOD (Li et al., 2022), so a chunk that is
    extreme in one signal, or unusual in several at once, stands out.
    """

    tail_quantile: float = 0.9
    # the smallest tail scale, in the columns' units (log1p of a count): a column that is all
    # zeros in the training chunks must not make a single request look infinitely surprising
    min_scale: float = 0.1

    sorted_: np.ndarray | None = field(default=None, init=False, repr=False)
    u_: np.ndarray | None = field(default=None, init=False, repr=False)
    beta_: np.ndarray | None = field(default=None, init=False, repr=False)
    log_p_u_: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, X: np.ndarray) -> TailModel:
        if not 0.0 < self.tail_quantile < 1.0:
            raise ValueError(f"tail_quantile must lie in (0, 1), got {self.tail_quantile!r}")
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        self.sorted_ = np.sort(X, axis=0)
        u = np.quantile(X, self.tail_quantile, axis=0)
        beta, log_p_u = np.empty(d), np.empty(d)
        for j in range(d):
            excess = X[:, j][X[:, j] > u[j]] - u[j]
            if excess.size:
                beta[j] = max(float(np.median(excess)) / np.log(2.0), self.min_scale)
                log_p_u[j] = np.log((excess.size + 1) / (n + 1))
            else:
                u[j] = X[:, j].max()
                sd = float(X[:, j].std())
                beta[j] = max(sd, self.min_scale) if sd > 0 else 1.0
                log_p_u[j] = np.log(1.0 / (n + 1))
        self.u_, self.beta_, self.log_p_u_ = u, beta, log_p_u
        return self

    def surprisal(self, X: np.ndarray) -> np.ndarray:
        """``-log P(X_j >= x)`` per value, ``(n, d)``, in nats (0 for the most ordinary)."""
        if self.sorted_ is None or self.u_ is None or self.beta_ is None or self.log_p_u_ is None:
            raise RuntimeError("this TailModel is not fitted yet: call fit()")
        X = np.asarray(X, dtype=np.float64)
        n = len(self.sorted_)
        out = np.empty_like(X)
        for j in range(X.shape[1]):
            at_least = n - np.searchsorted(self.sorted_[:, j], X[:, j], side="left")
            empirical = -np.log((at_least + 1) / (n + 1))
            tail = -self.log_p_u_[j] + (X[:, j] - self.u_[j]) / self.beta_[j]
            out[:, j] = np.where(X[:, j] > self.u_[j], np.maximum(tail, empirical), empirical)
        return out

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's convention: higher = more normal (minus the summed surprisal)."""
        return -self.surprisal(X).sum(axis=1)


@dataclass
class ContextDetector(BaseDetector):
    """A detector on the chunks' context vectors, in the PyOD style: ``Tail_context`` (the
    summed surprisal of each signal against its training tail, :class:`TailModel`),
    ``IForest_context`` (IsolationForest) or ``LOF_context`` (LocalOutlierFactor).

    ``X`` is ``(n_chunks, len(CONTEXT_COLUMNS))`` (:func:`chunk_context`). The score is
    ``-score_samples`` (higher = more anomalous); LOF reads the vectors scaled by the training
    chunks' median and interquartile range (its distances need one scale).

    Robust to contaminated training days: training days are never clean, and a flood from one
    client can fill a third of them. The reference is first fitted on the lower half of the
    chunks by score, then ``trim_rounds`` times on the chunks whose score against the previous fit
    lies at or below ``median + trim * (median - q10)`` of all training scores, so that a flood does
    not widen what counts as normal and the next flood still stands out (chosen against plain fits
    and per-entity weighting on the development seeds: docs/choosing-defaults.md). Severity (:mod:`licanom.detectors.decision`) is calibrated on
    out-of-fold scores: the training chunks cut into ``calibration_folds`` blocks in time, each
    scored by a reference fitted (robustly) on the others, which is how a night's chunks meet the
    model. The decision (``threshold``) is ``severity`` by default, or any named threshold of
    :mod:`licanom.detectors.thresholds` on the training scores (M1 refits the model on random halves).
    ``explain(X)`` says how far each column is from the training chunks: its surprisal in nats for
    ``Tail_context``, its robust z-score (median, interquartile range) for the others; ``encode``
    is that matrix (for GMM/KMeans on a "latent code").
    """

    family: ClassVar[str] = "context"
    reads: ClassVar[str] = "context"

    model: str = "Tail_context"
    threshold: str = "severity"
    threshold_params: tuple[tuple[str, Any], ...] = ()
    n_estimators: int = 200
    max_samples: int | str = "auto"
    n_neighbors: int = 20
    tail_quantile: float = 0.9
    seed: int = 0
    m1_max_rounds: int = 5
    trim: float = 2.0
    trim_rounds: int = 2
    calibration_folds: int = 4

    estimator_: Any = field(default=None, init=False, repr=False)
    center_: np.ndarray | None = field(default=None, init=False, repr=False)
    scale_: np.ndarray | None = field(default=None, init=False, repr=False)
    decision_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    calibration_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    reference_: np.ndarray | None = field(default=None, init=False, repr=False)  # chunks the reference kept
    threshold_: float | None = field(default=None, init=False)
    threshold_method_: str | None = field(default=None, init=False)
    labels_: np.ndarray | None = field(default=None, init=False, repr=False)
    seconds_: float = field(default=0.0, init=False)

    def fit(self, X: np.ndarray, y: None = None) -> ContextDetector:
        """Fit the reference on training vectors (robustly), calibrate severity, set the threshold."""
        X = _check_context(X)
        if self.model not in CONTEXT_MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid: {', '.join(CONTEXT_MODELS)}")
        if self.threshold not in DECISIONS:
            raise ValueError(f"unknown decision {self.threshold!r}; valid: {', '.join(DECISIONS)}")
        if len(X) < 2:
            raise ValueError(f"{self.model} needs at least 2 training chunks")
        if self.trim <= 0 or self.trim_rounds < 0 or self.calibration_folds < 0:
            raise ValueError("trim must be positive, trim_rounds and calibration_folds non-negative")
        t0 = time.perf_counter()
        self.center_, self.scale_ = _robust_scale(X)
        self.estimator_, self.reference_ = self._robust_estimator(X)
        self.decision_scores_ = self.decision_function(X)
        self.calibration_scores_ = self._out_of_fold(X)
        self._set_calibration(Calibration.fit(self.calibration_scores_))
        self.threshold_, self.threshold_method_ = decide(
            self.threshold, X, self.calibration_scores_ if self.threshold == "severity" else self.decision_scores_,
            self._m1_fit_score, dict(self.threshold_params), calibration=self.calibration_,
            max_rounds=self.m1_max_rounds, seed=self.seed)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int8)
        self.seconds_ = time.perf_counter() - t0
        return self

    def _robust_estimator(self, X: np.ndarray) -> tuple[Any, np.ndarray]:
        """The estimator fitted on the chunks that are not far above the bulk, and their mask."""
        keep = np.ones(len(X), dtype=bool)
        estimator = self._estimator(X)
        if self.trim_rounds and len(X) >= 8:  # start from the lower half: a storm of a third of the
            scores = self._score(estimator, X)  # chunks then stands out against it
            keep = scores <= np.median(scores)
            estimator = self._estimator(X[keep])
        for _ in range(self.trim_rounds):  # the estimator is always the one fitted on X[keep]
            scores = self._score(estimator, X)
            q10, q50 = np.quantile(scores, [0.1, 0.5])
            new = scores <= q50 + self.trim * max(q50 - q10, 1e-12)
            if new.sum() < max(2, len(X) // 4) or (new == keep).all():
                break
            keep = new
            estimator = self._estimator(X[keep])
        return estimator, keep

    def _out_of_fold(self, X: np.ndarray) -> np.ndarray:
        """Each block of ``calibration_folds`` (contiguous, in time) scored by a robust reference
        fitted on the others; the training scores themselves when there are too few chunks."""
        k = self.calibration_folds
        if k < 2 or len(X) < 4 * k:
            return np.asarray(self.decision_scores_, dtype=np.float64)
        out = np.empty(len(X))
        for block in np.array_split(np.arange(len(X)), k):
            rest = np.setdiff1d(np.arange(len(X)), block)
            estimator, _ = self._robust_estimator(X[rest])
            out[block] = self._score(estimator, X[block])
        return out

    def _estimator(self, X: np.ndarray) -> Any:
        """The fitted estimator on raw (tail, forest) or scaled (LOF) vectors."""
        if self.model == "Tail_context":
            return TailModel(tail_quantile=self.tail_quantile).fit(X)
        if self.model == "LOF_context":
            from sklearn.neighbors import LocalOutlierFactor

            k = min(self.n_neighbors, len(X) - 1)
            return LocalOutlierFactor(n_neighbors=k, novelty=True).fit(self._scaled(X))
        from sklearn.ensemble import IsolationForest

        return IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                               random_state=self.seed).fit(X)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        assert self.center_ is not None and self.scale_ is not None
        return (X - self.center_) / self.scale_

    def _score(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        inputs = self._scaled(X) if self.model == "LOF_context" else X
        return -np.asarray(estimator.score_samples(inputs), dtype=np.float64)

    def _m1_fit_score(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return self._score(self._estimator(train), test)  # the training chunks' scaling kept

    def m1_threshold(self, X: np.ndarray) -> float | None:
        """M1 (thesis A.1) on ``X``; None for the thesis's "na"."""
        return th.m1(_check_context(X), self._m1_fit_score, max_rounds=self.m1_max_rounds, seed=self.seed)

    def _fitted(self) -> Any:
        if self.estimator_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return self.estimator_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per chunk ``(n,)``, higher = more anomalous."""
        estimator = self._fitted()
        X = _check_context(X)
        return self._score(estimator, X) if len(X) else np.empty(0)

    def explain(self, X: np.ndarray) -> np.ndarray:
        """How unusual each column is against the training chunks, ``(n, len(CONTEXT_COLUMNS))``:
        the surprisal in nats (``Tail_context``) or the robust z-score (the others)."""
        estimator = self._fitted()
        X = _check_context(X)
        if isinstance(estimator, TailModel):
            return estimator.surprisal(X)
        return self._scaled(X)

    def explain_columns(self) -> tuple[str, ...]:
        return CONTEXT_COLUMNS

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The per-column matrix of :meth:`explain`: the code clustering reads."""
        return self.explain(X)

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to one file, atomically.

        The estimator is a scikit-learn object and is pickled (as MLflow's scikit-learn flavour
        does): load only files this project wrote, e.g. from the vendor's model registry.
        """
        self._fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": SAVE_FORMAT,
            "settings": {k: getattr(self, k) for k in ("model", "threshold", "n_estimators", "max_samples",
                                                      "n_neighbors", "tail_quantile", "seed", "m1_max_rounds",
                                                      "trim", "trim_rounds", "calibration_folds")},
            "threshold_params": [list(p) for p in self.threshold_params],
            "estimator": self.estimator_, "center": self.center_, "scale": self.scale_,
            "decision_scores": self.decision_scores_, "calibration_scores": self.calibration_scores_,
            "reference": self.reference_, "calibration": self.calibration_.as_dict(),
            "threshold": self.threshold_, "threshold_method": self.threshold_method_, "seconds": self.seconds_,
            "columns": list(CONTEXT_COLUMNS),
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ContextDetector:
        try:
            with Path(path).open("rb") as f:
                payload = pickle.load(f)  # noqa: S301 - a file this project wrote (see save)
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
            raise ValueError(f"{path}: not a readable context detector file ({type(e).__name__}); "
                             "retrain the vendor's models") from None
        if not isinstance(payload, dict) or payload.get("format") != SAVE_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else None
            raise ValueError(f"{path}: unsupported context detector file (format {found!r}, this version reads "
                             f"{SAVE_FORMAT}); retrain the vendor's models")
        if payload["columns"] != list(CONTEXT_COLUMNS):
            raise ValueError(f"{path}: written for context columns {payload['columns']}, this version has {list(CONTEXT_COLUMNS)}")
        det = cls(**payload["settings"], threshold_params=tuple(tuple(p) for p in payload["threshold_params"]))
        det.estimator_ = payload["estimator"]
        det.center_, det.scale_ = payload["center"], payload["scale"]
        det.decision_scores_ = np.asarray(payload["decision_scores"], dtype=np.float64)
        det.calibration_scores_ = np.asarray(payload["calibration_scores"], dtype=np.float64)
        det.reference_ = payload["reference"]
        det._set_calibration(Calibration.from_dict(payload["calibration"]))
        det.threshold_, det.threshold_method_ = payload["threshold"], payload["threshold_method"]
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int8)
        det.seconds_ = payload["seconds"]
        return det


def _robust_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median and the interquartile range (the standard deviation, or 1, where it is 0)."""
    q25, q50, q75 = np.percentile(X, [25, 50, 75], axis=0)
    spread = q75 - q25
    std = X.std(axis=0)
    return q50, np.where(spread > 0, spread, np.where(std > 0, std, 1.0))


def _check_context(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(CONTEXT_COLUMNS):
        raise ValueError(f"X must have shape (n_chunks, {len(CONTEXT_COLUMNS)}) (the context vector), got {X.shape}")
    if not np.isfinite(X).all():
        bad = int(np.argwhere(~np.isfinite(X))[0][0])
        raise ValueError(f"the context vector of chunk {bad} is not finite")
    return X
