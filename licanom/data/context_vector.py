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
key_requests_hour      the row's key: requests in the row's clock hour (over its day's scale:
                       see "A busy day")
machine_requests_hour  the row's (key, machine code): requests in its clock hour (over its day's
                       scale), above the machine's own level (see "An entity's own level")
key_machines_hour      the row's key: distinct machine codes in its clock hour, on the rows
                       of the key's machines new that day and of rows without a machine code
                       only (0 on its established machines' rows; see "Whose rows")
key_countries_hour     the row's key: distinct countries in its clock hour (rows as above)
key_ips_hour           the row's key: distinct IP addresses in its clock hour (rows as above)
ip_keys_hour           the row's IP address: distinct keys in its clock hour
ip_failures_hour       the row's IP address: failed requests in its clock hour, above the
                       address's own level
machine_failures_hour  the row's (key, machine code): failed requests in its clock hour, above
                       the machine's own level
key_new_machines_hour  the row's key: machine codes new to the key in its clock hour
key_new_countries_hour the row's key: countries new to the key in its clock hour
key_new_machines_day   the row's key: machine codes new to the key in its UTC day, on the
                       rows of those machines only (0 on the key's other rows)
key_new_countries_day  the row's key: countries new to the key in its UTC day, on the rows
                       from those countries only
ip_failed_keys_hour    the row's IP address: distinct keys that failed from it in its clock
                       hour, of the keys its history does not know (key guessing; an office's
                       many keys seldom fail, and its customers' expired keys are known)
key_usage_hour         the row's key: the usage its data objects recorded in its clock hour
                       (see "Usage"; 0 in a log without data-object values)
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
Nothing else in the vector is learned (besides each machine's and address's own level, below): the
context models (:mod:`licanom.detectors.context`) learn what is normal for a vendor from the training
chunks' vectors.

Whose rows carry a key's spread (context version 2, and 3, :data:`CONTEXT_VERSION`): a key used by twenty
machines in an hour is news about the machines that came that day, not about the owner's seat,
whose heartbeats run through the same hours. So the key's distinct machines, countries and
addresses of an hour sit on the rows of its (key, machine code) pairs first seen that UTC day and
not in the key's history, and on rows without a machine code (which cannot tell the owner from a
stranger); the key's established machines keep 0. A chunk of the owner's ordinary requests during
a shared key's hours then looks ordinary, and the strangers' chunks carry the count. On the
development seeds 1-6 of both generators this removed a third to two fifths of the false alarms
(most were such chunks of the owner's) and found as many events (docs/choosing-defaults.md). Version 1 (before)
counted them on every row of the key; :func:`chunk_context` computes either, for models saved
before (``version``), and :func:`row_context` serves the autoencoders' rows encoder version 1, the
counts it was built with.

"New to the key" is a key's own baseline: a machine code (country) is new at the first request
that pairs it with the key, unless the key's :class:`KeyHistory` (the pairs of the rows a model
was trained on, kept in its bundle) holds the pair, and never in the key's first hour when the
key itself is new (a customer setting up a licence is not news). Over a log given whole (training,
evaluation) "before" is the rows earlier in the log, so the signal looks only back. A licence
shared with strangers shows as machines and countries the key has never had, hour after hour,
even when each hour holds only one or two of them, where the plain counts stay ordinary.

Usage (``key_usage_hour``): a metered licence records its use through data-object requests
(``DOIntValue`` of a key's ``DOId``), and platforms write that value in one of two ways: the
amount of each request (an increment of 5 logs 5), or the object's value after it (a counter:
1,005 after 1,000). A log of counters is told by its values: of the changes of a key's data
object from one successful request to the next, nearly all go one way (:data:`COUNTER_SHARE`; up
for a counter of use, down for an allowance counted off), where amounts go up as often as down. A
row's usage is then the change since the key's object's previous request (0 on the first one a
pass sees, and on a change the other way: a reset or a new allowance), else the value itself. A
client that reports twenty to hundreds of times a normal job's use shows here whichever the
platform writes; every other signal sees an ordinary stream of data-object requests. Only
successful data-object requests count (group 80 of the state codes); which of them increments and
which reads differs between platforms, and a read repeats the value (no change for a counter).
The choice is made per pass over the rows given (a training log, a night), from all its keys'
objects together; a pass with fewer than :data:`COUNTER_EVIDENCE` changes is read as counters
(misread amounts then give changes between amounts, small; misread counters would give running
totals, far beyond any hour's use). Amounts that never change (every increment 1) read as
counters too, and show no usage: the key's request counts hold the same. A key's object's first
request in a pass counts 0 as a counter, so a key with one data-object request a night shows no
usage at night.

An entity's own level (context version 3): a client stuck in a failure loop, or a machine calling
every few seconds, can fill a week of the training days with one machine's requests; counted plainly,
that one machine widens its column's normal range for every other machine, and a new loop at night
looks ordinary. So the per-machine and per-address counts (:data:`LEVEL_COLUMNS`: a machine's
requests and failures, an address's failures) are taken above the level their own entity reached
on at least :data:`LEVEL_DAY_SHARE` of the training days and on at least :data:`LEVEL_MIN_DAYS` of
them (the ``LEVEL_MIN_DAYS``-th largest of its days' largest hours, where that is at least
:data:`LEVEL_MIN_COUNT`): the week-long loop's hours count 0, a new machine's loop in full, and the
old one's only beyond its usual. A machine or office that is busy day after day for good reasons
(a build server, a support desk's failed look-ups of lapsed keys) reads the same way: ordinary
up to its usual. The levels are learned from the rows a model is trained on (:func:`entity_levels`,
kept in the model's :class:`KeyHistory`) and taken off alike at training and at night; a pass
without them (a log scored whole, a training pass) learns its own. An entity new at night, or
never that busy on enough days, keeps its plain count. The key-wide counts keep theirs: a key's
requests spread over all its machines, and taken above the key's own level they flagged, night
after night, each busy key that passed its usual (docs/choosing-defaults.md). What this cannot
see: a machine that looped for days of the training log and loops the same way at night is
ordinary for itself (a new loop, or the same one grown, is not).

A busy day (context version 4): a release ("every client updates and validates again"), the end of
a month for metered customers, or a vendor's growth raise every regular key's requests at once, and
the request counts are absolute: each busy key's hour passes anything its training days held, and a
whole night floods. So the request counts (:data:`SCALED_COLUMNS`: a key's and a machine's requests
in an hour) are divided by their UTC day's scale (rounded up, before the machine's own level is taken
off): the median, over the day's regular keys, of each key's requests that day over its usual day
(the median of its training days' requests, kept beside the levels as :data:`SCALE_SIGNAL`; a key is
regular where that is at least :data:`SCALE_MIN_TYPICAL`), where at least ten such keys made
requests that day (five from version 6: "Few keys" below), and never below 1 (a quiet weekend is not
made louder). A median over keys: one key's flood, or a guesser's made-up keys, move no day's scale;
most of the vendor's customers must be busier. Taken alike at training (each training day against the keys' usual) and
at night; a pass without the usual days (a log scored whole, a training pass) learns its own. The
failure and spread counts keep their plain values (a release does not make a key's machines or
addresses more numerous, and a failing customer's loop is not a busy day).

Part of a day (version 5): a night cut at 02:00 UTC (the flows' default), or at a vendor's own
morning, holds only part of each of its two UTC days, and in version 4 those parts were compared with
whole usual days (a night cut at noon got about half of each day's scale). Each day's usual is now
what the keys make in the part of the day the pass holds (from its first row's clock hour to its
last's): the usual day times the share of a day's requests that those hours of the day held in
training (:data:`PROFILE_SIGNAL`, the regular keys' requests in each UTC hour of the day, kept beside
the levels). A key is regular on such a day where that share of its usual day is at least
:data:`SCALE_MIN_TYPICAL`: the two hours after midnight of a night cut at 02:00 are scaled only where
enough keys are busy enough to tell (a part with no usual traffic is never scaled). A whole day reads
as in version 4. A pass that learns its own usual days (a training log, a log scored whole) learns
them from the days it holds at least :data:`LEARN_MIN_COVERED` of, each day's count over its share
(the hours from the keys regular by their plain days): a log that starts or ends within a day is
not read as busy on its whole days. The pass's hours are its rows': a night that begins with the
rows carried from the one before begins at their hour, so its first part is compared with a little
more of a usual day than it holds (the scale a little smaller, never larger).

Few keys (version 6): versions 4 and 5 scaled a day only where at least ten regular keys made
requests that day (:data:`SCALE_MIN_KEYS_BEFORE_6`). A vendor of a few large organisations (a site
licence per department, each key used by hundreds of machines) has fewer: its release day went
unscaled and flooded its night, key by key (and a night cut at 02:00 holds parts of days, on which
fewer keys are regular: a vendor of ten or eleven keys went unscaled too). From version 6 a day is
scaled where at least :data:`SCALE_MIN_KEYS` (5) of its regular keys are active: the median of five
still stands against two keys' floods; three keys scaled as well on the development seeds, with a
little more lost on this simulator (docs/choosing-defaults.md, "Few keys"). A model keeps the number it
counted with beside its levels (:data:`SCALE_KEYS_SIGNAL`), so that its incidents count as it did.

An unknown address (version 7): a platform that does not log the client's address writes the
``IP`` field empty, on some rows or on all. Counted plainly, the empty value is one address that
every such row shares: all keys of an hour "from one address", all their failures, a chunk flagged
and an incident named for an address that is no address. From version 7 a row without an address
counts for no address: the address's counts (keys, failures, failed keys in an hour) are 0 on its
row, and a key's distinct addresses in an hour leave the empty value out. A log whose rows all have
an address reads as in version 6.

"Unknown" keys (``ip_failed_keys_hour``) are the keys that :class:`KeyHistory` lacks: at night, the
keys of the model's training rows and of the earlier nights are known, so their failures (a
customer's expired trial, a seat refused) do not count and a guesser's made-up keys do. Over a log
given without a history (training) every key is unknown: the training days' normal range then holds
every failed key of an address-hour, which a night's normal traffic does not exceed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl

from licanom.data.codes import TextCodes, first_rows, in_threads
from licanom.data.columns import UNKNOWN_COUNTRY

__all__ = ["CONTEXT_COLUMNS", "CONTEXT_LABELS", "CONTEXT_VERSION", "ENCODER_ROW_COLUMNS", "ROW_COLUMNS", "KeyHistory",
           "chunk_context", "row_context"]

# The context vector's version (see "Whose rows" and "An entity's own level" in the module text):
# 3 counts each entity's rows above the level it reached on many training days, 2 carries a key's
# hourly spread (machines, countries, addresses) on its new machines' rows only, 1 on every row of the key.
# 4 divides the request counts by their day's traffic against the keys' usual ("A busy day"), 5 against
# the part of their usual day that the pass holds of a day ("Part of a day"), 6 from five regular keys
# a day instead of ten ("Few keys"), 7 counts a row without an address for no address ("An unknown address").
CONTEXT_VERSION = 7
CONTEXT_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
# the key's hourly spreads that version 2 carries on the rows of its new machines only
_SPREAD_COLUMNS = ("key_machines_hour", "key_countries_hour", "key_ips_hour")


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
    ("ip_failed_keys_hour", ("IP",), "failed Key", "_hour"),
    ("key_usage_hour", ("Key",), "usage", "_hour"),
)
ROW_COLUMNS: tuple[str, ...] = tuple(c for c, *_ in _ROW_COUNTS)
# The counts the autoencoders' rows encoder reads (licanom.data.encode.ROW_FEATURES): the twelve it
# was built with, so that its saved models keep their inputs when the context vector grows.
ENCODER_ROW_COLUMNS: tuple[str, ...] = tuple(c for c in ROW_COLUMNS if c not in ("ip_failed_keys_hour", "key_usage_hour"))
CONTEXT_COLUMNS: tuple[str, ...] = ("rate", "failure_share", "top_machine_share", *ROW_COLUMNS)
# What each column means, in words for a vendor's report. A key's hourly spreads are counted on the
# requests of its machines new that day (and those without a machine code) only, 0 on the others: their
# labels say so, or a key of one machine read "machines using one key in an hour: 0".
CONTEXT_LABELS: dict[str, str] = {
    "rate": "request rate, as a multiple of its day's typical",
    "failure_share": "share of failed requests",
    "top_machine_share": "share of requests from one machine",
    "key_requests_hour": "requests of one key in an hour",
    "machine_requests_hour": "requests of one machine in an hour, above its own usual",
    "key_machines_hour": "machines using one key in an hour (on requests of machines new that day)",
    "key_countries_hour": "countries using one key in an hour (on requests of machines new that day)",
    "key_ips_hour": "IP addresses using one key in an hour (on requests of machines new that day)",
    "ip_keys_hour": "keys tried from one IP address in an hour",
    "ip_failures_hour": "failed requests from one IP address in an hour, above its own usual",
    "machine_failures_hour": "failed requests of one machine in an hour, above its own usual",
    "key_new_machines_hour": "machines new to their key in an hour",
    "key_new_countries_hour": "countries new to their key in an hour",
    "key_new_machines_day": "machines new to their key in a day",
    "key_new_countries_day": "countries new to their key in a day",
    "ip_failed_keys_hour": "unknown keys that failed from one IP address in an hour",
    "key_usage_hour": "data-object usage of one key in an hour",
}

_UNKNOWN = {"MachineCode": "", "country": UNKNOWN_COUNTRY}
_NEEDED = ("Time", "Key", "MachineCode", "IP", "country", "success")
# The data-object columns that the usage signal reads (optional: without them it is 0).
_USAGE_NEEDED = ("State", "DOId", "DOIntValue")
# A log's data objects are counters when at least this share of the changes of a key's object's
# value, from one successful request to the next, go one way (see "Usage" in the module text).
COUNTER_SHARE = 0.9
# A pass with fewer changes than this is read as counters (a night of a few data-object requests
# cannot tell; an amount misread as a counter's value would count a running total as one hour's use).
COUNTER_EVIDENCE = 20
# A row's usage is at most this (2**52: exact in a float, and a sum of many stays in int64's range).
USAGE_CAP = float(2**52)
# An entity's own level (version 3, see the module text): the columns counted above it, and the
# level: what the column's entity reached on at least LEVEL_DAY_SHARE of a training pass's days and
# on at least LEVEL_MIN_DAYS of them; a level below LEVEL_MIN_COUNT is not kept (most entities' hours).
LEVEL_COLUMNS: tuple[str, ...] = ("machine_requests_hour", "machine_failures_hour", "ip_failures_hour")
LEVEL_DAY_SHARE = 0.25
LEVEL_MIN_DAYS = 3
LEVEL_MIN_COUNT = 2
# A busy day (version 4, see the module text): the columns divided by their day's scale; the scale is
# the median, over the day's regular keys (a usual day of at least SCALE_MIN_TYPICAL requests), of
# each key's requests that day over its usual day, where at least SCALE_MIN_KEYS such keys are active
# (version 6; SCALE_MIN_KEYS_BEFORE_6 before),
# and at least 1. A key's usual day is kept beside the levels as the pseudo-signal SCALE_SIGNAL.
SCALED_COLUMNS: tuple[str, ...] = ("key_requests_hour", "machine_requests_hour")
SCALE_SIGNAL = "key_requests_day"
SCALE_MIN_TYPICAL = 3
SCALE_MIN_KEYS = 5
# Few keys (version 6, see the module text): versions 4 and 5 scaled a day only where at least this
# many regular keys made requests; a model's levels keep the number it counted with as one row,
# signal SCALE_KEYS_SIGNAL (entity columns ""); levels without it are a model's of version 4 or 5.
SCALE_MIN_KEYS_BEFORE_6 = 10
SCALE_KEYS_SIGNAL = "scale_min_keys"
# Part of a day (version 5): the regular keys' training requests in each UTC hour of the day, kept
# beside the levels as 24 rows, signal f"{PROFILE_SIGNAL} {hour:02d}" (entity columns "")
PROFILE_SIGNAL = "requests_at_utc_hour"
# a pass that learns its keys' usual days (training) learns them from the days it holds at least
# this share of, each count over its share (a training log's first and last days may be parts)
LEARN_MIN_COVERED = 0.5
_LEVEL_SCHEMA = {"signal": pl.String, "Key": pl.String, "MachineCode": pl.String, "IP": pl.String, "level": pl.Int64}


@dataclass(frozen=True)
class KeyHistory:
    """The (key, machine code) and (key, country) pairs seen in a model's training rows: what is
    not new to a key when later rows are scored; and, where built with ``levels``, each entity's own
    level of each signal in those rows (version 3: the module text's "An entity's own level").
    Build it with :meth:`from_rows`; the pairs of nights, which keep where each was first seen
    (:attr:`FIRST_ID`), with :meth:`of_night`."""

    machines: pl.DataFrame   # Key, MachineCode (String), one row per pair; first_id (Int64) where marked
    countries: pl.DataFrame  # Key, country (String), one row per pair; first_id (Int64) where marked
    # signal, Key, MachineCode, IP (String, "" where the signal's entity has no such part), level
    # (Int64): None where not built (a night's pairs, a history saved before the levels)
    levels: pl.DataFrame | None = None

    FILES: ClassVar[dict[str, str]] = {"MachineCode": "key_machines.parquet", "country": "key_countries.parquet"}
    LEVELS_FILE: ClassVar[str] = "entity_levels.parquet"
    # the nights' pairs (:meth:`of_night`): the Id from which a night scored again (``--since``) reads
    # the pair's first row again; a pair is seen before the rows after ``since`` where it is at or below
    # ``since`` (:meth:`through`). A model's pairs (its training rows') keep none: they are always seen
    FIRST_ID: ClassVar[str] = "first_id"

    @classmethod
    def from_rows(cls, derived: pl.DataFrame, levels: bool = False) -> KeyHistory:
        """The pairs of a derived log (the rows a model is trained on); with ``levels`` also its
        entities' own levels (:func:`entity_levels`)."""
        frame = _entity_frame(derived)
        return cls._of({value: frame.select("Key", value).filter(pl.col(value) != unknown)
                        for value, unknown in _UNKNOWN.items()}, entity_levels(derived) if levels else None)

    @classmethod
    def of_night(cls, derived: pl.DataFrame, after: int | None) -> KeyHistory:
        """The pairs of a night's derived rows (its windows' rows, those carried into it included),
        each with its :attr:`FIRST_ID`: the lowest Id of its rows, or ``after + 1`` where one of them
        was carried into the night (``after``: the Id the night read after, None for all; a carried
        row lies at or below it, and a night scored again from ``after`` reads it again)."""
        frame = _entity_frame(derived).with_columns(derived["Id"].cast(pl.Int64).alias(cls.FIRST_ID))
        first = pl.col(cls.FIRST_ID).min()
        if after is not None:
            first = pl.max_horizontal(first, pl.lit(after + 1, pl.Int64))
        return cls._of({value: frame.filter(pl.col(value) != unknown).group_by("Key", value)
                        .agg(first.alias(cls.FIRST_ID)) for value, unknown in _UNKNOWN.items()})

    @classmethod
    def _of(cls, pairs: dict[str, pl.DataFrame], levels: pl.DataFrame | None = None) -> KeyHistory:
        """From each value's (Key, value) frame: distinct pairs, sorted; where the frames hold
        :attr:`FIRST_ID`, each pair's lowest (where it was first seen)."""
        distinct = {value: (frame.group_by("Key", value).agg(pl.col(cls.FIRST_ID).min())
                            if cls.FIRST_ID in frame.columns else frame.unique()).sort("Key", value)
                    for value, frame in pairs.items()}
        return cls(machines=distinct["MachineCode"], countries=distinct["country"], levels=levels)

    def pairs(self, value: str) -> pl.DataFrame:
        return self.machines if value == "MachineCode" else self.countries

    @property
    def marked(self) -> bool:
        """Whether the pairs keep where each was first seen (:attr:`FIRST_ID`: a night's pairs)."""
        return all(self.FIRST_ID in self.pairs(value).columns for value in self.FILES)

    def through(self, since: int) -> KeyHistory:
        """The pairs first seen at or below Id ``since`` (:attr:`FIRST_ID`), without their marks: those
        the nights saw before the rows a night scored again from ``since`` reads (the nights after
        ``since`` saw the others first, as that night sees them again)."""
        if not self.marked:
            raise ValueError("these pairs keep no first Ids: which were seen before an Id cannot be told")
        return KeyHistory._of({value: self.pairs(value).filter(pl.col(self.FIRST_ID) <= since).drop(self.FIRST_ID)
                               for value in self.FILES}, self.levels)

    @property
    def keys(self) -> pl.Series:
        return pl.concat([self.machines["Key"], self.countries["Key"]]).unique()

    def for_keys(self, keys: pl.Series) -> KeyHistory:
        """The pairs of these keys only: all that decides what is new to them; and the levels of their
        machines, and of every address (the addresses' levels name no key)."""
        wanted = keys.cast(pl.String).unique().implode()
        levels = None if self.levels is None else self.levels.filter(pl.col("Key").is_in(wanted) | (pl.col("Key") == ""))
        return KeyHistory(machines=self.machines.filter(pl.col("Key").is_in(wanted)),
                          countries=self.countries.filter(pl.col("Key").is_in(wanted)), levels=levels)

    def union(self, other: KeyHistory) -> KeyHistory:
        """The pairs of both histories; the levels of this one (a model's), else the other's. Where
        both are marked (:attr:`FIRST_ID`), each pair keeps its lowest; else the marks are dropped (a
        pair of a history without them has no first Id: a model's is always seen)."""
        both = self.marked and other.marked

        def plain(frame: pl.DataFrame) -> pl.DataFrame:
            return frame if both else frame.drop(self.FIRST_ID, strict=False)

        return KeyHistory._of({value: pl.concat([plain(self.pairs(value)), plain(other.pairs(value))])
                               for value in self.FILES}, self.levels if self.levels is not None else other.levels)

    def save(self, directory: Path) -> None:
        """Parquet files in ``directory`` (two, three with levels), each written to a temporary
        name and renamed."""
        directory.mkdir(parents=True, exist_ok=True)
        frames = {name: self.pairs(value) for value, name in self.FILES.items()}
        if self.levels is not None:
            frames[self.LEVELS_FILE] = self.levels
        else:
            (directory / self.LEVELS_FILE).unlink(missing_ok=True)
        for name, frame in frames.items():
            tmp = directory / f"{name}.tmp"
            frame.write_parquet(tmp)
            os.replace(tmp, directory / name)

    @classmethod
    def file_names(cls) -> tuple[str, ...]:
        """Every file a saved history may have."""
        return (*cls.FILES.values(), cls.LEVELS_FILE)

    @classmethod
    def remove(cls, directory: Path) -> None:
        """Delete a history saved in ``directory`` (nothing where there is none)."""
        for name in cls.file_names():
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
        """The history saved in ``directory``, or None where none was saved (its levels None where
        it was saved without them; unmarked where its files keep no :attr:`FIRST_ID`, as a night's
        pairs saved before they kept it)."""
        paths = {value: directory / name for value, name in cls.FILES.items()}
        if not all(p.exists() for p in paths.values()):
            return None
        levels_path = directory / cls.LEVELS_FILE
        levels = pl.read_parquet(levels_path).cast(_LEVEL_SCHEMA) if levels_path.exists() else None  # type: ignore[arg-type]
        frames = {value: pl.read_parquet(p) for value, p in paths.items()}
        marked = all(cls.FIRST_ID in frame.columns for frame in frames.values())
        return cls._of({value: frame.select(pl.col("Key").cast(pl.String), pl.col(value).cast(pl.String),
                                            *([pl.col(cls.FIRST_ID).cast(pl.Int64)] if marked else []))
                        for value, frame in frames.items()}, levels)


def entity_levels(derived: pl.DataFrame) -> pl.DataFrame:
    """Each entity's own level of each of :data:`LEVEL_COLUMNS` in a derived log, where it reached at
    least :data:`LEVEL_MIN_COUNT` on enough of the log's days (the module text's "An entity's own
    level"): columns signal, Key, MachineCode, IP, level."""
    sink: list[pl.DataFrame] = []
    _row_counts(derived, None, counts=LEVEL_COLUMNS, version=CONTEXT_VERSION, levels_sink=sink)
    return sink[0] if sink else pl.DataFrame(schema=_LEVEL_SCHEMA)


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


_BLOCK = 1 << 15  # rows per block of the blocked steps (their temporaries stay in cache)


class _Groups:
    """Rows grouped by an integer value, or with ``bucket`` by (value, bucket) for a bucket that
    never decreases in row order (the rows' hour or day, rows in time order): dense ids in order
    of first appearance from a hash table (pandas' factorize: no sort, about twice as fast as a
    polars window over one integer column here), per-group counts by ``np.bincount``, and with
    ``first`` each group's first row.

    A (value, bucket) group never spans two buckets, so the rows are hashed a block of whole
    buckets at a time (a table that stays in cache: about twice as fast as one table for all
    rows), each block's ids following the last block's; the ids are the same as one table's."""

    def __init__(self, values: np.ndarray, bucket: np.ndarray | None = None, first: bool = False) -> None:
        import pandas as pd

        n_rows = len(values)
        self.distinct: np.ndarray | None = None
        if bucket is None:
            ids, self.distinct = pd.factorize(values, use_na_sentinel=False)
            self.ids = ids.astype(np.int64, copy=False)
            self.n = len(self.distinct)
        else:
            self.ids = np.empty(n_rows, dtype=np.int64)
            marks = bucket[np.arange(_BLOCK, n_rows, _BLOCK)]
            cuts = np.unique(np.concatenate([[0], np.searchsorted(bucket, marks, side="left"), [n_rows]]))
            n = 0
            for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
                b0 = int(bucket[lo])
                local = values[lo:hi].astype(np.int64)
                local *= int(bucket[hi - 1]) - b0 + 1
                local += bucket[lo:hi]
                local -= b0
                ids, distinct = pd.factorize(local, use_na_sentinel=False)
                np.add(ids, n, out=self.ids[lo:hi])
                n += len(distinct)
            self.n = n
        self.first = first_rows(self.ids, _BLOCK) if first else np.zeros(0, dtype=bool)

    def count(self) -> _PerGroup:
        """The size of each row's group."""
        return _PerGroup(np.bincount(self.ids, minlength=self.n), self.ids)

    def sum(self, x: np.ndarray) -> _PerGroup:
        """The number of rows of each row's group where ``x`` (bool) holds."""
        return _PerGroup(np.bincount(self.ids[x], minlength=self.n), self.ids)

    def total(self, w: np.ndarray) -> _PerGroup:
        """The sum of ``w`` (non-negative) over each row's group, as int64 (at most 2**62)."""
        sums = np.bincount(self.ids, weights=w.astype(np.float64), minlength=self.n)
        return _PerGroup(np.rint(np.minimum(sums, 2.0**62)).astype(np.int64), self.ids)

    def at_first(self, x: np.ndarray) -> np.ndarray:
        """``x`` at the first row of each row's group."""
        return x[self.first][self.ids]

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Bool per row: its group's value is one of ``values``."""
        import pandas as pd

        assert self.distinct is not None, "a group of (value, bucket) holds no values"
        hit = pd.Index(self.distinct).get_indexer(values)
        member = np.zeros(self.n + 1, dtype=bool)
        member[hit] = True  # -1 (a value no row has) marks the spare last slot
        return member[: self.n][self.ids]


@dataclass(frozen=True)
class _PerGroup:
    """A count per group and each row's group: the row's count is ``table[ids]``, or 0 where
    ``only`` is given and False. Kept per group until a caller asks for rows or windows."""

    table: np.ndarray
    ids: np.ndarray
    only: np.ndarray | None = None

    def rows(self) -> np.ndarray:
        """Each row's count (int64)."""
        out = self.table[self.ids]
        if self.only is not None:
            out[~self.only] = 0
        return out

    def largest(self, starts: np.ndarray, size: int) -> np.ndarray:
        """The largest count in each window ``starts[i] .. starts[i] + size - 1``; windows that
        tile the rows from their first are read a block of windows at a time (no column of all
        rows' counts in memory)."""
        from licanom.data.chunk import _windows

        n = len(starts)
        first = int(starts[0]) if n else 0
        if not n or first + n * size > len(self.ids) or not np.array_equal(starts, first + np.arange(0, n * size, size)):
            return _windows(self.rows(), starts, size).max(axis=1)
        out = np.empty(n, dtype=self.table.dtype)
        per = max(1, _BLOCK // size)
        for w0 in range(0, n, per):
            w1 = min(w0 + per, n)
            lo, hi = first + w0 * size, first + w1 * size
            block = self.table[self.ids[lo:hi]]
            if self.only is not None:
                block[~self.only[lo:hi]] = 0
            out[w0:w1] = block.reshape(w1 - w0, size).max(axis=1)
        return out


def _history_codes(history: KeyHistory, texts: TextCodes, frame: pl.DataFrame,
                   width: dict[str, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The history's keys as key codes of this log, and its (key, value) pairs as ``key code *
    width[value] + value code``; those of keys or values the log does not hold are left out (no
    row can match them)."""
    def code(column: str, values: pl.Series) -> np.ndarray:
        return texts.lookup(frame, column, values)

    keys = code("Key", history.keys)
    pairs = {}
    for value in _UNKNOWN:
        p = history.pairs(value)
        k, v = code("Key", p["Key"]), code(value, p[value])
        both = (k >= 0) & (v >= 0)
        pairs[value] = k[both] * width[value] + v[both]
    return keys[keys >= 0], pairs


def _row_counts(derived: pl.DataFrame, history: KeyHistory | None, keep_pairs: bool = False,
                codes: TextCodes | None = None,
                windows: tuple[np.ndarray, int] | None = None,
                counts: tuple[str, ...] = ROW_COLUMNS, version: int = CONTEXT_VERSION,
                levels_sink: list[pl.DataFrame] | None = None) -> dict[str, np.ndarray]:
    """ROW_COLUMNS as counts (int64, before ``log1p``) for each row, in the log's order (``version``
    of the context: see the module text; from version 3 each entity's count above its own level,
    ``history``'s levels where it has them, else those of this log, which ``levels_sink`` receives); with
    ``keep_pairs`` also ``_pair MachineCode``, a code of each row's (key, machine code). With
    ``windows`` (starts, size) the largest count of each window instead of each row's (a log in
    time order only); ``counts``: which of ROW_COLUMNS to count (the others are not computed).

    The entities are integer codes (one hash per text: ``codes`` where the caller has them),
    each (entities, bucket) one integer group, and every signal over a group shares it (see
    :class:`_Groups`); the groupings and the signals run two at a time."""
    missing = [c for c in _NEEDED if c not in derived.columns]
    if missing:
        raise ValueError(f"the context needs the derived columns {missing}")
    if version not in CONTEXT_VERSIONS:
        raise ValueError(f"unknown context version {version!r}; this version computes {CONTEXT_VERSIONS}")
    time_ = derived["Time"]
    rank = None
    if not time_.is_sorted():  # "the first row of a pair" is the first in time
        if windows is not None:
            raise ValueError("the windows' counts need the rows in time order")
        rank = (time_.rank("ordinal") - 1).to_numpy()  # each row's place in time order, ties in row order
        derived = derived.select(*_NEEDED, *(c for c in _USAGE_NEEDED if c in derived.columns)).gather(
            np.argsort(rank, kind="stable"))
        codes = None  # held in the log's order
    columns = ("Key", "MachineCode", "IP", "country")
    given = {c: codes.get(derived, c) for c in columns} if codes is not None else {}
    computed = TextCodes.of(derived, [c for c in columns if given.get(c) is None])
    texts = TextCodes.from_codes(derived.height, {c: computed.codes[c] if given.get(c) is None else given[c]
                                                  for c in columns})
    code = texts.codes  # uint32
    width = {c: int(x.max()) + 1 if len(x) else 1 for c, x in code.items()}
    key_code = code["Key"].astype(np.int64)
    us = derived["Time"].dt.epoch("us").to_numpy()
    bucket = {"_hour": us // 3_600_000_000, "_day": us // 86_400_000_000}
    for v in bucket.values():  # from the first (rows in time order)
        if len(v):
            v -= v[0]
    failed = (derived["success"] == 0).fill_null(False).to_numpy()

    def pair_values(value: str) -> np.ndarray:
        out = key_code * width[value]
        out += code[value]
        return out

    # the entities over the whole log: the key, and the key's (machine code, country, address) pairs
    values = ("MachineCode", "country", "IP")
    key, *pairs = in_threads([lambda: _Groups(code["Key"], first=True),
                              *(lambda v=v: _Groups(pair_values(v), first=True) for v in values)])
    pair = dict(zip(values, pairs, strict=True))
    # (entities, bucket): the hour's key, address, pairs (the distinct values: their first rows), the day's key
    at = [(("Key",), "_hour"), (("IP",), "_hour"), (("Key",), "_day"),
          *((("Key", v), "_hour") for v in values)]
    entity_ids = {("Key",): key_code, ("IP",): code["IP"], **{("Key", v): g.ids for v, g in pair.items()}}
    built = in_threads([lambda e=e, b=b: _Groups(entity_ids[e], bucket[b], first=len(e) == 2) for e, b in at])
    groups = dict(zip(at, built, strict=True))

    def group(entity: tuple[str, ...], b: str) -> _Groups:
        return groups[("Key", "IP") if entity == ("IP", "Key") else entity, b]  # the same groups

    # New to its key: the first row of a (key, value) pair the history lacks, not in the first
    # hour of a key the history lacks too
    n_rows = len(us)
    if history is not None:
        known_keys, known_pairs = _history_codes(history, texts, derived, width)
        known_key = key.contains(known_keys)
    else:
        known_key, known_pairs = np.zeros(n_rows, dtype=bool), {}
    after_first_hour = known_key | (bucket["_hour"] > key.at_first(bucket["_hour"]))
    new, seen, unknown_value = {}, {}, {}
    for value, unknown in _UNKNOWN.items():
        g = pair[value]
        seen[value] = g.contains(known_pairs[value]) if value in known_pairs else np.zeros(n_rows, dtype=bool)
        unknown_value[value] = code[value] == texts.lookup(derived, value, pl.Series([unknown]))[0]
        new[value] = g.first & ~unknown_value[value] & ~seen[value] & after_first_hour
    no_address = None  # version 7: the rows without an address count for none
    if version >= 7:
        no_address = code["IP"] == texts.lookup(derived, "IP", pl.Series([""]))[0]
        if not no_address.any():
            no_address = None
    spread_on = None  # version 2: the rows that carry a key's hourly spread
    if version >= 2 and any(c in counts for c in _SPREAD_COLUMNS):
        g = pair["MachineCode"]  # a pair new to the history, on its first day; or no machine code
        spread_on = ((~seen["MachineCode"] & (g.at_first(bucket["_day"]) == bucket["_day"]))
                     | unknown_value["MachineCode"])

    def signal(entity: tuple[str, ...], what: str, b: str) -> _PerGroup:
        per_group = signal_of(entity, what, b)
        if no_address is not None and entity == ("IP",):  # an address's counts: none on rows without one
            only = ~no_address if per_group.only is None else per_group.only & ~no_address
            per_group = replace(per_group, only=only)
        return per_group

    def signal_of(entity: tuple[str, ...], what: str, b: str) -> _PerGroup:
        over = group(entity, b)
        if what == "requests":
            return over.count()
        if what == "failures":
            return over.sum(failed)
        if what.startswith("failed "):
            # distinct values that failed, of keys the history does not know: the first rows of the
            # (entities, what, bucket) groups holding such a failure
            g = group((*entity, what.removeprefix("failed ")), b)
            with_failure = np.bincount(g.ids[failed & ~known_key], minlength=g.n) > 0
            return over.sum(g.first & with_failure[g.ids])
        if what == "usage":
            return over.total(usage_amounts(derived, key_code))
        if what.startswith("new ") and b == "_day":
            # the day's newcomers, on the rows of the pairs that were new that day
            value = what.removeprefix("new ")
            g = pair[value]
            newcomer = g.at_first(new[value]) & (g.at_first(bucket["_day"]) == bucket["_day"])
            return replace(over.sum(new[value]), only=newcomer)
        if what.startswith("new "):
            return over.sum(new[what.removeprefix("new ")])
        # distinct values of `what`: the first rows of the (entities, what, bucket) groups
        firsts = group((*entity, what), b).first
        if no_address is not None and what == "IP":  # the empty address is none
            firsts = firsts & ~no_address
        distinct = over.sum(firsts)
        if spread_on is not None and entity == ("Key",) and b == "_hour":  # a key's spread (version 2)
            return replace(distinct, only=spread_on)
        return distinct

    # An entity's own level (version 3): the signal's entity of each row, and the levels taken off
    entity_of = {("Key",): key_code, ("IP",): code["IP"].astype(np.int64), ("Key", "MachineCode"): pair["MachineCode"].ids}
    learn = version >= 3 and (history is None or history.levels is None)
    given: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if version >= 3 and history is not None and history.levels is not None:
        given = _levels_here(history.levels, texts, derived, width, pair["MachineCode"])
    need_days = max(LEVEL_MIN_DAYS, math.ceil(LEVEL_DAY_SHARE * (int(bucket["_day"][-1]) + 1))) if n_rows else 0
    learned: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # A busy day (version 4): each day's scale, from its regular keys' requests against their usual day
    scale_of_day = None
    if version >= 4 and n_rows and any(c in counts for c in SCALED_COLUMNS):
        key_day = groups[("Key",), "_day"]
        row_of = np.empty(key_day.n, dtype=np.int64)
        row_of[key_day.ids] = np.arange(n_rows)  # any row of each (key, day): one key, one day
        g_key, g_day, g_count = key_code[row_of], bucket["_day"][row_of], key_day.count().table
        covered = None
        if learn:
            learned[SCALE_SIGNAL] = _learn_usual_day(g_key, g_count)
            if version >= 5:  # the hours of the day from the keys regular by their plain days; then
                # the usual days again, each part of a day taken as the whole it is a part of
                learned[PROFILE_SIGNAL] = _learn_profile(us, key_code, learned[SCALE_SIGNAL])
                covered = _day_coverage(int(us[0]), int(us[-1]), learned[PROFILE_SIGNAL])
                if covered is not None:
                    learned[SCALE_SIGNAL] = _learn_usual_day(g_key, g_count, covered[g_day])
        elif version >= 5:  # part of a day: the share of a usual day that the pass holds of each day
            covered = _day_coverage(int(us[0]), int(us[-1]), _profile_of(history.levels if history is not None else None))
        usual = learned[SCALE_SIGNAL] if learn else given.get(SCALE_SIGNAL, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        if learn:
            min_keys = _learned_min_keys(version)
            if version >= 6:  # kept with the levels: what the model counted with
                learned[SCALE_KEYS_SIGNAL] = (np.zeros(1, np.int64), np.array([min_keys], np.int64))
        else:  # as the levels' model counted (as the incidents count: row_day_scales)
            min_keys = _scale_min_keys_of(history.levels if history is not None else None)
        scale_of_day = _day_scales(g_key, g_day, g_count, usual, int(bucket["_day"][-1]) + 1, covered, min_keys)
        if not (scale_of_day > 1).any():
            scale_of_day = None

    def scaled(per_group: _PerGroup) -> _PerGroup:
        assert scale_of_day is not None
        day_of_group = np.empty(len(per_group.table), dtype=np.int64)
        day_of_group[per_group.ids] = bucket["_day"]  # an hour's group lies in one day
        table = np.ceil(per_group.table / scale_of_day[day_of_group]).astype(np.int64)
        return replace(per_group, table=table)

    def leveled(name: str, entity: tuple[str, ...], per_group: _PerGroup) -> _PerGroup:
        ents = entity_of[entity]
        if learn:
            learned[name] = _learn_levels(per_group.rows(), ents, bucket["_day"], need_days)
        ids, level = learned[name] if learn else given.get(name, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        if not len(ids):
            return per_group
        of_entity = np.zeros(int(max(ents.max(), ids.max())) + 1, dtype=np.int64)
        of_entity[ids] = level
        row_of_group = np.empty(len(per_group.table), dtype=np.int64)
        row_of_group[per_group.ids] = np.arange(len(per_group.ids))  # any row of each group: one entity
        return replace(per_group, table=np.maximum(per_group.table - of_entity[ents[row_of_group]], 0))

    def counted(name: str, entity: tuple[str, ...], what: str, b: str) -> np.ndarray:
        per_group = signal(entity, what, b)
        if scale_of_day is not None and name in SCALED_COLUMNS:
            per_group = scaled(per_group)
        if version >= 3 and name in LEVEL_COLUMNS:
            per_group = leveled(name, entity, per_group)
        return per_group.rows() if windows is None else per_group.largest(*windows)

    wanted = [spec for spec in _ROW_COUNTS if spec[0] in counts]
    found = in_threads([lambda n=n, e=e, w=w, b=b: counted(n, e, w, b) for n, e, w, b in wanted])
    if levels_sink is not None and learn:
        levels_sink.append(_levels_frame(learned, {**{n: e for n, e, *_ in wanted}, SCALE_SIGNAL: ("Key",)},
                                         entity_of, derived))
    out = {name: x for (name, *_), x in zip(wanted, found, strict=True)}
    if keep_pairs:
        out["_pair MachineCode"] = pair["MachineCode"].ids
    if rank is not None:
        out = {name: x[rank] for name, x in out.items()}
    return out


def _learn_levels(values: np.ndarray, ents: np.ndarray, day: np.ndarray, need_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per entity (ids, levels): the ``need_days``-th largest of its days' largest ``values``, where
    that is at least :data:`LEVEL_MIN_COUNT` (ids and levels int64, none for other entities)."""
    at = np.flatnonzero(values >= LEVEL_MIN_COUNT)
    if not len(at) or need_days < 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    daily = (
        pl.DataFrame({"e": ents[at], "d": day[at], "v": values[at]})
        .group_by("e", "d").agg(pl.col("v").max())
        .group_by("e").agg(pl.len().alias("days"), pl.col("v").sort(descending=True).get(need_days - 1, null_on_oob=True).alias("level"))
        .filter(pl.col("days") >= need_days)
    )
    return daily["e"].to_numpy().astype(np.int64), daily["level"].to_numpy().astype(np.int64)


def _learn_usual_day(g_key: np.ndarray, g_count: np.ndarray, covered: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per key (ids, usual day): the median of its requests over the days it made any (rounded half
    up), where that is at least :data:`SCALE_MIN_TYPICAL` (int64; none for the other keys). With
    ``covered`` (version 5: the share of a usual day that the pass holds of each (key, day)'s day)
    the days the pass holds at least :data:`LEARN_MIN_COVERED` of, each count over its share."""
    frame = pl.DataFrame({"k": g_key, "n": g_count.astype(np.float64)})
    if covered is not None:
        frame = frame.with_columns(pl.Series("c", covered)).filter(pl.col("c") >= LEARN_MIN_COVERED).select(
            "k", (pl.col("n") / pl.col("c")).alias("n"))
    usual = (
        frame
        .group_by("k").agg(pl.col("n").median().alias("usual"))
        .with_columns((pl.col("usual") + 0.5).floor().cast(pl.Int64))
        .filter(pl.col("usual") >= SCALE_MIN_TYPICAL)
        .sort("k")
    )
    return usual["k"].to_numpy().astype(np.int64), usual["usual"].to_numpy().astype(np.int64)


def _learned_min_keys(version: int) -> int:
    """The regular keys a day needs to be scaled at, learning at ``version`` (the module text's "A
    busy day", "Few keys")."""
    return SCALE_MIN_KEYS if version >= 6 else SCALE_MIN_KEYS_BEFORE_6


def _scale_min_keys_of(levels: pl.DataFrame | None) -> int:
    """The regular keys a day needs to be scaled at by a model's levels: the number they keep
    (version 6), else :data:`SCALE_MIN_KEYS_BEFORE_6` (a model of version 4 or 5). The levels decide,
    as they decide whether the part of a day counts (version 5's hours), so that a model's nights, its
    report's vectors and its incidents count alike."""
    kept = None if levels is None else levels.filter(pl.col("signal") == SCALE_KEYS_SIGNAL)["level"]
    return int(kept[0]) if kept is not None and kept.len() else SCALE_MIN_KEYS_BEFORE_6


def _day_scales(g_key: np.ndarray, g_day: np.ndarray, g_count: np.ndarray, usual: tuple[np.ndarray, np.ndarray],
                n_days: int, covered: np.ndarray | None, min_keys: int) -> np.ndarray:
    """Each day's scale (float64, at least 1; the module text's "A busy day"): the median of the
    day's regular keys' requests over their usual day, where ``min_keys`` are active.
    ``covered`` (version 5, "Part of a day"): each day's share of a usual day that the pass holds;
    the usual days are taken at that share (None: whole days)."""
    if min_keys < 1:
        raise ValueError(f"a day's scale needs at least one regular key, got min_keys={min_keys!r}")
    scale = np.ones(n_days)
    ids, days = usual
    if len(ids) < min_keys:
        return scale
    of_key = np.zeros(int(max(g_key.max(), ids.max())) + 1, dtype=np.int64)
    of_key[ids] = days
    u = of_key[g_key].astype(np.float64)
    if covered is not None:
        u *= covered[g_day]
    regular = u >= SCALE_MIN_TYPICAL
    per_day = (
        pl.DataFrame({"d": g_day[regular], "r": g_count[regular] / u[regular]})
        .group_by("d").agg(pl.col("r").median().alias("scale"), pl.len().alias("keys"))
        .filter(pl.col("keys") >= min_keys)
    )
    scale[per_day["d"].to_numpy()] = np.maximum(per_day["scale"].to_numpy(), 1.0)
    return scale


def _learn_profile(us: np.ndarray, key_code: np.ndarray, usual: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(hours 0-23, requests): the regular keys' requests in each UTC hour of the day (int64)."""
    ids, _ = usual
    regular = np.zeros(int(max(key_code.max(), ids.max() if len(ids) else 0)) + 1, dtype=bool)
    regular[ids] = True
    hour = (us // 3_600_000_000) % 24
    return np.arange(24, dtype=np.int64), np.bincount(hour[regular[key_code]], minlength=24).astype(np.int64)


def _profile_of(levels: pl.DataFrame | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The (hours, requests) that ``levels`` keeps as :data:`PROFILE_SIGNAL` rows; None where it keeps none."""
    if levels is None:
        return None
    rows = levels.filter(pl.col("signal").str.starts_with(f"{PROFILE_SIGNAL} "))
    if rows.height == 0:
        return None
    hours = rows["signal"].str.strip_prefix(f"{PROFILE_SIGNAL} ").cast(pl.Int64, strict=False)
    if hours.is_null().any() or not hours.is_between(0, 23).all():
        raise ValueError(f"the levels' {PROFILE_SIGNAL} rows name no hour 00-23: "
                         f"{rows['signal'].filter(hours.is_null() | ~hours.is_between(0, 23)).to_list()[:3]}")
    return hours.to_numpy().astype(np.int64), rows["level"].to_numpy().astype(np.int64)


def _day_coverage(first_us: int, last_us: int, profile: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """Each UTC day's share of a usual day's requests (``profile``) in the clock hours a pass holds
    of it, from ``first_us``'s hour to ``last_us``'s (float64, one per day from the first's; 1 for
    a whole day); None where the profile holds no request (whole days)."""
    if profile is None:
        return None
    share = np.zeros(24)
    np.add.at(share, profile[0], profile[1])
    if share.sum() <= 0:
        return None
    share /= share.sum()
    first_hour, last_hour = first_us // 3_600_000_000, last_us // 3_600_000_000
    first_day, last_day = first_hour // 24, last_hour // 24
    covered = np.ones(last_day - first_day + 1)
    cumulative = np.concatenate([[0.0], np.cumsum(share)])  # cumulative[h]: the share before hour h
    cumulative[np.flatnonzero(share)[-1] + 1:] = 1.0  # exactly: a day to its last busy hour is whole, as in version 4
    covered[0] -= cumulative[first_hour % 24]
    covered[-1] -= 1.0 - cumulative[last_hour % 24 + 1]
    return np.clip(covered, 0.0, 1.0)


def row_day_scales(time: pl.Series, key: pl.Series, levels: pl.DataFrame | None) -> np.ndarray | None:
    """Each row's day scale (float64; version 4, the module text's "A busy day") against the keys'
    usual days that ``levels`` holds (a model's :attr:`KeyHistory.levels`), at the share of each day
    that the rows hold where it keeps the hours of the day (version 5, "Part of a day"); None where
    it holds no usual days (a model of an earlier version, or none given): its request counts are
    not divided."""
    import pandas as pd

    usual = None if levels is None else levels.filter(pl.col("signal") == SCALE_SIGNAL)
    if usual is None or usual.height == 0 or time.len() == 0:
        return None
    min_keys = _scale_min_keys_of(levels)
    us = time.dt.epoch("us").to_numpy()
    day = us // 86_400_000_000
    day = day - day.min()
    codes, texts = pd.factorize(key.cast(pl.String).fill_null("").to_numpy(), use_na_sentinel=False)
    per = pl.DataFrame({"k": codes.astype(np.int64), "d": day}).group_by("k", "d").len()
    ids = pd.Index(texts).get_indexer(usual["Key"].to_numpy())
    known = ids >= 0
    scale = _day_scales(per["k"].to_numpy(), per["d"].to_numpy(), per["len"].to_numpy(),
                        (ids[known].astype(np.int64), usual["level"].to_numpy()[known].astype(np.int64)), int(day.max()) + 1,
                        _day_coverage(int(us.min()), int(us.max()), _profile_of(levels)), min_keys)
    return scale[day]


def _levels_frame(learned: dict[str, tuple[np.ndarray, np.ndarray]], entity: dict[str, tuple[str, ...]],
                  entity_of: dict[tuple[str, ...], np.ndarray], derived: pl.DataFrame) -> pl.DataFrame:
    """The learned levels with their entities' texts (read at one row of each entity)."""
    frames = []
    for name in (n for n in entity if n in learned):  # in the columns' order, whichever thread learned first
        ids, level = learned[name]
        if not len(ids):
            continue
        ents = entity_of[entity[name]]
        row = np.zeros(int(ents.max()) + 1, dtype=np.int64)
        row[ents] = np.arange(len(ents))
        at = row[ids]

        def text(column: str, at: np.ndarray = at, name: str = name) -> pl.Series:
            if column not in entity[name]:
                return pl.Series(column, [""] * len(at), dtype=pl.String)
            return derived[column].cast(pl.String).fill_null("").gather(at).rename(column)

        frames.append(pl.DataFrame([pl.Series("signal", [name] * len(ids), dtype=pl.String), text("Key"),
                                    text("MachineCode"), text("IP"), pl.Series("level", level, dtype=pl.Int64)]))
    if PROFILE_SIGNAL in learned and learned[PROFILE_SIGNAL][1].sum() > 0:  # the vendor's hours: no entity
        hours, requests = learned[PROFILE_SIGNAL]
        frames.append(pl.DataFrame({"signal": [f"{PROFILE_SIGNAL} {h:02d}" for h in hours], "Key": "", "MachineCode": "",
                                    "IP": "", "level": requests}, schema=_LEVEL_SCHEMA))
    if SCALE_KEYS_SIGNAL in learned:  # the regular keys a day needed to be scaled at (version 6): no entity
        frames.append(pl.DataFrame({"signal": [SCALE_KEYS_SIGNAL], "Key": "", "MachineCode": "", "IP": "",
                                    "level": learned[SCALE_KEYS_SIGNAL][1]}, schema=_LEVEL_SCHEMA))
    return pl.concat(frames) if frames else pl.DataFrame(schema=_LEVEL_SCHEMA)


def _levels_here(levels: pl.DataFrame, texts: TextCodes, frame: pl.DataFrame, width: dict[str, int],
                 pairs: _Groups) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal, the entities of this log that ``levels`` holds (the ids :func:`_row_counts` uses:
    key and address codes, (key, machine code) group ids) and their levels."""
    import pandas as pd

    entity = {**{n: e for n, e, *_ in _ROW_COUNTS}, SCALE_SIGNAL: ("Key",)}
    out = {}
    for (name,), part in levels.partition_by("signal", as_dict=True).items():
        if name not in entity:
            continue
        e = entity[str(name)]
        if e == ("Key", "MachineCode"):
            k, m = texts.lookup(frame, "Key", part["Key"]), texts.lookup(frame, "MachineCode", part["MachineCode"])
            ids = np.where((k >= 0) & (m >= 0), pd.Index(pairs.distinct).get_indexer(k * width["MachineCode"] + m), -1)
        else:
            ids = texts.lookup(frame, e[0], part[e[0]])
        here = ids >= 0
        out[str(name)] = (ids[here].astype(np.int64), part["level"].to_numpy()[here].astype(np.int64))
    return out


def usage_amounts(derived: pl.DataFrame, key_code: np.ndarray | None = None) -> np.ndarray:
    """Each row's data-object usage (int64, at least 0), in ``derived``'s order (see "Usage" in the
    module text): the change of its key's data object since that object's previous successful
    request in ``derived``'s order (a log of counters), or its value (a log of amounts). 0 on rows
    that are no successful data-object request with a value, and everywhere in a log without the
    columns ``State``, ``DOId`` and ``DOIntValue``. ``key_code``: the rows' key codes where the
    caller has them (else the keys' texts identify the objects)."""
    n = derived.height
    if any(c not in derived.columns for c in _USAGE_NEEDED) or n == 0:
        return np.zeros(n, dtype=np.int64)
    from licanom.data.states import MethodGroup

    key = pl.Series("k", key_code) if key_code is not None else derived["Key"].cast(pl.String).fill_null("")
    frame = pl.DataFrame({"k": key, "o": derived["DOId"].cast(pl.Int64).fill_null(-1),
                          "v": derived["DOIntValue"].cast(pl.Int64), "s": derived["State"].cast(pl.Int64)})
    used = ((pl.col("s") // 100 == int(MethodGroup.DATA_OBJECT)) & ((pl.col("s") // 10) % 10 == 1)
            & pl.col("v").is_not_null())
    rows = frame.with_row_index("_i").filter(used)
    if rows.height == 0:
        return np.zeros(n, dtype=np.int64)
    # in floats: values near the int64 range must not wrap around (a change or a sum of them)
    change = rows.select("_i", pl.col("v").cast(pl.Float64),
                         (pl.col("v").cast(pl.Float64) - pl.col("v").cast(pl.Float64).shift(1).over("k", "o")).alias("d"))
    moved = change["d"].drop_nulls().filter(change["d"].drop_nulls() != 0)
    up = float((moved > 0).mean()) if moved.len() else 0.5
    if moved.len() < COUNTER_EVIDENCE:  # too few changes to tell: counters (see "Usage")
        amount = change["d"].fill_null(0.0) * (1.0 if up >= 0.5 else -1.0)
    elif up >= COUNTER_SHARE:
        amount = change["d"].fill_null(0.0)
    elif up <= 1.0 - COUNTER_SHARE:
        amount = -change["d"].fill_null(0.0)
    else:
        amount = change["v"].abs()
    amount = amount.clip(lower_bound=0.0, upper_bound=USAGE_CAP)
    out = np.zeros(n, dtype=np.int64)
    out[change["_i"].to_numpy()] = amount.to_numpy().astype(np.int64)
    return out


def row_context(derived: pl.DataFrame, history: KeyHistory | None = None, codes: TextCodes | None = None,
                columns: tuple[str, ...] = ROW_COLUMNS, version: int = CONTEXT_VERSION) -> pl.DataFrame:
    """``columns`` of ROW_COLUMNS (Float64, ``log1p`` of the count) for each row of a derived log,
    in its order (only those are counted: the rows encoder asks for ENCODER_ROW_COLUMNS).

    ``derived`` needs Time, Key, MachineCode, IP, country and success (licanom.data.derive).
    ``history``: the pairs that are not new to their key (a model's training rows); None: only
    the rows earlier in ``derived`` count as the keys' past. ``codes``: the entities' codes where
    the caller computed them already (:class:`licanom.data.codes.TextCodes` of ``derived``).

    New to its key: the first row (in time) of a (key, machine code) or (key, country) pair that
    the history lacks, except in the first hour of a key the history lacks too (a key's set-up is
    not news). ``version``: of the context (the module text's "Whose rows"). The counts run on
    integer codes of the entities (one hash per text, not one per signal).
    """
    unknown = [c for c in columns if c not in ROW_COLUMNS]
    if unknown:
        raise ValueError(f"unknown row columns {unknown}; expected some of {list(ROW_COLUMNS)}")
    found = _row_counts(derived, history, codes=codes, counts=columns, version=version)
    return pl.DataFrame({c: found[c] for c in columns}).select(pl.all().cast(pl.Float64).log1p())


def chunk_context(derived: pl.DataFrame, starts: np.ndarray, size: int,
                  history: KeyHistory | None = None, codes: TextCodes | None = None,
                  version: int = CONTEXT_VERSION) -> np.ndarray:
    """CONTEXT_COLUMNS of each window ``starts[i] .. starts[i] + size - 1`` of ``derived``.

    Returns float64 ``(len(starts), len(CONTEXT_COLUMNS))``; ``derived`` is the time-ordered
    log the windows were cut from (licanom.data.chunk), one row per request; ``history``,
    ``codes`` and ``version`` as in :func:`row_context` (a context model reads the version it was
    fitted on).
    """
    starts = np.asarray(starts, dtype=np.int64)
    if derived.height == 0 or len(starts) == 0:
        return np.zeros((len(starts), len(CONTEXT_COLUMNS)))
    if starts.min() < 0 or starts.max() + size > derived.height:
        raise ValueError(f"windows of {size} rows from {starts.min()} to {starts.max()} do not fit {derived.height} rows")
    from licanom.data.chunk import _windows

    ends = starts + size - 1
    plain = derived["Key"].null_count() == 0 and derived["MachineCode"].null_count() == 0
    # Largest value over each window, of the counts (log1p keeps their order, so the log of the
    # largest count is the largest log)
    if derived["Time"].is_sorted():
        counts = _row_counts(derived, history, keep_pairs=plain, codes=codes, windows=(starts, size), version=version)
    else:
        counts = _row_counts(derived, history, keep_pairs=plain, codes=codes, version=version)
        counts = {c: _windows(x, starts, size).max(axis=1) if c in ROW_COLUMNS else x for c, x in counts.items()}
    out = np.empty((len(starts), len(CONTEXT_COLUMNS)))
    for j, column in enumerate(ROW_COLUMNS, start=3):
        out[:, j] = np.log1p(counts[column].astype(np.float64))
    us = derived["Time"].dt.epoch("us").to_numpy()
    start_s, end_s = us[starts].astype(np.float64) / 1e6, us[ends].astype(np.float64) / 1e6
    rate = np.log((size - 1) / np.maximum(end_s - start_s, 1.0))
    day = (start_s // 86_400).astype(np.int64)
    out[:, 0] = rate - _median_by(day, rate)
    failed = (derived["success"] == 0).fill_null(False).to_numpy()
    out[:, 1] = _windows(failed, starts, size).sum(axis=1) / size
    # a (key, machine code) pair's code stands for the pair (equal codes, equal pairs); a null
    # differs from an empty text there, which the codes do not tell apart
    pairs = counts["_pair MachineCode"] if plain else _pair_ranks(derived)
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
