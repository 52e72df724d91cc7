"""The per-chunk context vector on hand-made logs, and the context models beyond the protocol's contract."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from licanom.data.context_vector import (
    CONTEXT_COLUMNS,
    CONTEXT_VERSION,
    LEVEL_COLUMNS,
    ROW_COLUMNS,
    SCALE_MIN_KEYS,
    SCALE_MIN_KEYS_BEFORE_6,
    PROFILE_SIGNAL,
    SCALE_KEYS_SIGNAL,
    SCALE_SIGNAL,
    KeyHistory,
    chunk_context,
    row_context,
    row_day_scales,
)

T0 = datetime(2025, 1, 6, 10, 0, tzinfo=timezone.utc)


def _log(rows: list[tuple[float, str, str, str, str, int]]) -> pl.DataFrame:
    """(seconds after T0, key, machine, ip, country, success) per row, in time order."""
    secs, key, mc, ip, cc, ok = zip(*rows, strict=True)
    return pl.DataFrame({
        "Time": [T0 + timedelta(seconds=s) for s in secs],
        "Key": list(key), "MachineCode": list(mc), "IP": list(ip), "country": list(cc),
        "success": pl.Series(list(ok), dtype=pl.Int8),
    })


def col(frame: np.ndarray, name: str) -> np.ndarray:
    return frame[:, CONTEXT_COLUMNS.index(name)]


def test_row_counts_per_entity_and_bucket():
    log = _log([
        (0, "K1", "M1", "1.1.1.1", "SE", 1),
        (60, "K1", "M2", "2.2.2.2", "DE", 1),
        (120, "K1", "M2", "2.2.2.2", "DE", 0),
        (3700, "K1", "M1", "1.1.1.1", "SE", 1),   # the next hour
        (200, "K2", "M9", "2.2.2.2", "DE", 0),    # out of time order on purpose: counts ignore order
    ])
    rows = row_context(log)
    assert rows.columns == list(ROW_COLUMNS)
    got = np.expm1(rows.to_numpy()).round().astype(int)
    c = {name: got[:, i] for i, name in enumerate(ROW_COLUMNS)}
    assert c["key_requests_hour"].tolist() == [3, 3, 3, 1, 1]
    assert c["machine_requests_hour"].tolist() == [1, 2, 2, 1, 1]
    assert c["key_machines_hour"].tolist() == [2, 2, 2, 1, 1]  # the fourth row is the next hour's
    assert c["key_countries_hour"].tolist() == [2, 2, 2, 1, 1]
    assert c["key_ips_hour"].tolist() == [2, 2, 2, 1, 1]
    assert c["ip_keys_hour"].tolist() == [1, 2, 2, 1, 2]
    assert c["ip_failures_hour"].tolist() == [0, 2, 2, 0, 2]
    assert c["machine_failures_hour"].tolist() == [0, 1, 1, 0, 1]
    assert c["ip_failed_keys_hour"].tolist() == [0, 2, 2, 0, 2]  # K1 and K2 failed from 2.2.2.2
    assert c["key_new_machines_hour"].tolist() == [0, 0, 0, 0, 0]  # every key is in its first hour
    assert c["key_new_countries_hour"].tolist() == [0, 0, 0, 0, 0]
    assert c["key_new_machines_day"].tolist() == [0, 0, 0, 0, 0]
    assert c["key_new_countries_day"].tolist() == [0, 0, 0, 0, 0]


def _new(rows: pl.DataFrame) -> dict[str, list[int]]:
    got = np.expm1(rows.to_numpy()).round().astype(int)
    return {name: got[:, ROW_COLUMNS.index(name)].tolist() for name in ("key_new_machines_hour", "key_new_countries_hour")}


def test_new_to_the_key_counts_first_pairs_after_the_keys_first_hour_or_against_a_history(tmp_path):
    log = _log([
        (0, "K1", "M1", "1.1.1.1", "SE", 1),
        (60, "K1", "M2", "2.2.2.2", "DE", 1),     # K1's first hour: set-up, not news
        (3700, "K1", "M1", "1.1.1.1", "SE", 1),   # known pair
        (3800, "K1", "M3", "3.3.3.3", "FR", 1),   # new machine and new country for K1
        (3900, "K1", "M4", "4.4.4.4", "FR", 0),   # another new machine, FR no longer new
        (3950, "K1", "", "4.4.4.5", "ZZ", 1),     # no machine code, unknown country: never new
        (4000, "K2", "M9", "9.9.9.9", "US", 1),   # K2's first hour
        (7300, "K1", "M3", "3.3.3.3", "FR", 1),   # the hour after: M3 and FR are K1's now
    ])
    whole = _new(row_context(log))
    assert whole["key_new_machines_hour"] == [0, 0, 2, 2, 2, 2, 0, 0]
    assert whole["key_new_countries_hour"] == [0, 0, 1, 1, 1, 1, 0, 0]

    # Scoring the later rows against the history of the earlier ones gives the same counts ...
    history = KeyHistory.from_rows(log.head(2))
    assert history.machines.height == 2 and history.countries.height == 2
    assert _new(row_context(log.slice(2), history)) == {k: v[2:] for k, v in whole.items()}
    # ... where without it K1's first hour in the later rows would be set-up, not news
    assert _new(row_context(log.slice(2)))["key_new_machines_hour"] == [0, 0, 0, 0, 0, 0]
    # a known key has no set-up hour: its new pairs count from its first row
    assert _new(row_context(log.slice(3, 2), history))["key_new_machines_hour"] == [2, 2]

    history.save(tmp_path)
    again = KeyHistory.load(tmp_path)
    assert again is not None and again.machines.equals(history.machines) and again.countries.equals(history.countries)
    assert KeyHistory.load(tmp_path / "elsewhere") is None


def test_a_nights_pairs_keep_the_id_where_they_were_first_seen(tmp_path):
    """:meth:`KeyHistory.of_night`: each pair's lowest Id, or the first Id after the night's start for
    a pair of a row carried into it; a union keeps the lowest; :meth:`KeyHistory.through` gives the
    pairs seen at or below an Id, without the marks; saved and loaded with them; a model's pairs (no
    marks) drop them in a union, and an unmarked history cannot tell."""
    log = _log([
        (0, "K1", "M1", "1.1.1.1", "SE", 1),      # carried into the night (Id 98, at or below its start 99)
        (60, "K1", "M2", "2.2.2.2", "SE", 1),
        (120, "K1", "M2", "2.2.2.2", "DE", 1),
        (180, "K2", "", "3.3.3.3", "ZZ", 1),      # no machine code, unknown country: no pair
    ]).with_columns(pl.Series("Id", [98, 104, 101, 102]))  # Ids out of time order: the lowest counts
    night = KeyHistory.of_night(log, after=99)
    assert night.marked
    assert night.machines.rows() == [("K1", "M1", 100), ("K1", "M2", 101)]
    assert night.countries.rows() == [("K1", "DE", 101), ("K1", "SE", 100)]
    later = KeyHistory.of_night(log.with_columns(pl.col("Id") + 100), after=199)
    both = night.union(later)
    assert both.machines.rows() == night.machines.rows()  # the lowest: where the first night saw them
    assert both.through(100).machines.rows() == [("K1", "M1")] and both.through(99).machines.height == 0
    assert both.through(101).countries.rows() == [("K1", "DE"), ("K1", "SE")]
    both.save(tmp_path)
    loaded = KeyHistory.load(tmp_path)
    assert loaded is not None and loaded.marked and loaded.machines.equals(both.machines)
    model = KeyHistory.from_rows(log)
    assert not model.marked and not model.union(night).marked and not night.union(model).marked
    with pytest.raises(ValueError, match="keep no first Ids"):
        model.through(100)


def test_failed_keys_count_only_the_keys_the_history_does_not_know():
    log = _log([
        (0, "K1", "M1", "1.1.1.1", "SE", 1),         # a customer's key, in the training rows
        (3700, "K1", "M1", "5.5.5.5", "SE", 0),      # it expires: fails from an office address
        (3710, "K2", "M2", "5.5.5.5", "SE", 0),      # two keys nobody has used, from the same address
        (3720, "X9", "", "5.5.5.5", "SE", 0),
        (3730, "X9", "", "5.5.5.5", "SE", 0),        # the same key again: one distinct key
        (3740, "K3", "M3", "5.5.5.5", "SE", 1),      # a key that works adds nothing
    ])
    def failed_keys(rows: pl.DataFrame) -> list[int]:
        return np.expm1(rows["ip_failed_keys_hour"].to_numpy()).round().astype(int).tolist()

    # without a history (training) every key that failed counts
    assert failed_keys(row_context(log.slice(1))) == [3, 3, 3, 3, 3]
    # at night, against the history of the training rows, K1 is known
    assert failed_keys(row_context(log.slice(1), KeyHistory.from_rows(log.head(1)))) == [2, 2, 2, 2, 2]
    # the chunks read the same counts
    chunks = chunk_context(log.slice(1), np.array([0]), 5, KeyHistory.from_rows(log.head(1)))
    assert np.expm1(col(chunks, "ip_failed_keys_hour")).round().tolist() == [2]


def test_newcomers_of_a_day_carry_the_days_count_on_their_own_rows():
    day = 86_400
    log = _log([
        (0, "K1", "M1", "1.1.1.1", "SE", 1),          # K1's set-up hour
        (3700, "K1", "M1", "1.1.1.1", "SE", 1),       # the owner's machine: never a newcomer
        (3800, "K1", "M3", "3.3.3.3", "FR", 1),       # new machine, new country
        (7300, "K1", "M4", "4.4.4.4", "FR", 1),       # another new machine an hour later; FR joined today
        (7400, "K1", "M1", "1.1.1.1", "SE", 1),       # the owner again
        (day + 100, "K1", "M3", "3.3.3.3", "FR", 1),  # the next day: M3 and FR are K1's now
        (day + 200, "K1", "M5", "5.5.5.5", "US", 1),  # the next day's newcomer
    ])
    rows = row_context(log)
    got = {name: np.expm1(rows[name].to_numpy()).round().astype(int).tolist()
           for name in ("key_new_machines_day", "key_new_countries_day", "key_new_machines_hour")}
    assert got["key_new_machines_day"] == [0, 0, 2, 2, 0, 0, 1]
    assert got["key_new_countries_day"] == [0, 0, 1, 1, 0, 0, 1]
    # the hour signal marks every row of the key in the hour, the owner's too
    assert got["key_new_machines_hour"] == [0, 1, 1, 1, 1, 1, 1]
    # the next day scored against the first day's pairs: the same counts
    later = row_context(log.slice(5), KeyHistory.from_rows(log.head(5)))
    assert np.expm1(later["key_new_machines_day"].to_numpy()).round().tolist() == [0, 1]
    assert np.expm1(later["key_new_countries_day"].to_numpy()).round().tolist() == [0, 1]


def test_a_keys_hourly_spread_sits_on_its_new_machines_rows_not_on_the_owners():
    """Version 2: a shared key's machines, countries and addresses of an hour are carried by the
    rows of machines new to it that day (and rows without a machine code), not by the owner's
    established seat; version 1 (models saved before) puts them on every row of the key."""
    day = 86_400
    training = _log([(0, "K1", "M1", "1.1.1.1", "SE", 1), (600, "K1", "M1", "1.1.1.1", "SE", 1)])
    history = KeyHistory.from_rows(training)
    night = _log([
        (day + 0, "K1", "M1", "1.1.1.1", "SE", 1),      # the owner's heartbeats
        (day + 30, "K1", "M1", "1.1.1.1", "SE", 1),
        (day + 60, "K1", "S1", "2.2.2.2", "DE", 0),     # strangers on the key, the same hour
        (day + 120, "K1", "S2", "3.3.3.3", "FR", 0),
        (day + 180, "K1", "M1", "1.1.1.1", "SE", 1),    # the owner again
        (day + 240, "K1", "", "4.4.4.4", "US", 1),      # no machine code: cannot tell whose
        (day + 4000, "K1", "M1", "1.1.1.1", "SE", 1),   # the next hour: the owner alone
    ])
    spread = ("key_machines_hour", "key_countries_hour", "key_ips_hour")

    def counts(version: int, history: KeyHistory | None) -> dict[str, list[int]]:
        rows = row_context(night, history, version=version)
        return {c: np.expm1(rows[c].to_numpy()).round().astype(int).tolist() for c in spread}

    now = counts(2, history)
    assert now["key_machines_hour"] == [0, 0, 4, 4, 0, 4, 0]  # M1, S1, S2 and the empty code
    assert now["key_countries_hour"] == [0, 0, 4, 4, 0, 4, 0]
    assert now["key_ips_hour"] == [0, 0, 4, 4, 0, 4, 0]
    before = counts(1, history)
    assert before["key_machines_hour"] == [4, 4, 4, 4, 4, 4, 1]
    # without a history (training days) the owner's seat is established from its first day on
    whole = pl.concat([training, night])
    rows = row_context(whole)
    assert np.expm1(rows["key_machines_hour"].to_numpy()).round().astype(int).tolist() == [1, 1, 0, 0, 4, 4, 0, 4, 0]
    # the chunks read the same: the owner's own chunk stays ordinary, the strangers' does not
    chunks = chunk_context(night, np.array([0, 2]), 2, history)
    assert np.expm1(col(chunks, "key_machines_hour")).round().tolist() == [0, 4]
    old = chunk_context(night, np.array([0, 2]), 2, history, version=1)
    assert np.expm1(col(old, "key_machines_hour")).round().tolist() == [4, 4]
    with pytest.raises(ValueError, match="unknown context version 8"):
        chunk_context(night, np.array([0]), 2, history, version=8)


def test_a_machine_failing_day_after_day_is_counted_above_its_own_level(tmp_path):
    # fourteen days: machine M1 fails 30 times at 10:00 on ten of them (a client stuck in a loop),
    # machine M2 fails twice at 11:00 on every one (the level needs 4 days: a quarter of 14, at least 3)
    rows = []
    for day in range(14):
        base = day * 86_400.0
        rows += [(base + 36_000 + i, "K1", "M1", "1.1.1.1", "SE", 0) for i in range(30 if day < 10 else 0)]
        rows += [(base + 39_600 + i, "K2", "M2", "2.2.2.2", "SE", 0) for i in range(2)]
        rows += [(base + 43_200, "K3", "M3", "3.3.3.3", "SE", 1)]
    training = _log(rows)
    history = KeyHistory.from_rows(training, levels=True)
    levels = history.levels.filter(pl.col("signal") == "machine_failures_hour")
    assert sorted(zip(levels["MachineCode"], levels["level"])) == [("M1", 30), ("M2", 2)]
    assert set(history.levels["signal"]) <= {*LEVEL_COLUMNS, SCALE_SIGNAL, SCALE_KEYS_SIGNAL,
                                             *(f"{PROFILE_SIGNAL} {h:02d}" for h in range(24))}

    def failures(log: pl.DataFrame, hist: KeyHistory | None, version: int = CONTEXT_VERSION) -> list[int]:
        got = row_context(log, hist, version=version)["machine_failures_hour"].to_numpy()
        return np.expm1(got).round().astype(int).tolist()

    # in training the loop's own hours count 0: it does not widen the column for other machines
    assert set(failures(training, None)) == {0}
    assert max(failures(training, None, version=2)) == 30
    # a night: the loop as usual (0), the same machine three times busier (60 above), a new machine's
    # loop in full (30), and M2's usual two failures (0)
    night = _log([(14 * 86_400.0 + 36_000 + i, "K1", "M1", "1.1.1.1", "SE", 0) for i in range(30)]
                 + [(14 * 86_400.0 + 39_600 + i, "K9", "M9", "9.9.9.9", "SE", 0) for i in range(30)]
                 + [(14 * 86_400.0 + 43_200 + i, "K2", "M2", "2.2.2.2", "SE", 0) for i in range(2)])
    assert failures(night, history) == [0] * 30 + [30] * 30 + [0, 0]
    busier = _log([(15 * 86_400.0 + 36_000 + i, "K1", "M1", "1.1.1.1", "SE", 0) for i in range(90)])
    assert set(failures(busier, history)) == {60}
    # without the levels (a history saved before them) the night learns its own: one day has none
    plain = KeyHistory(machines=history.machines, countries=history.countries)
    assert failures(night, plain) == [30] * 60 + [2, 2]
    # the address counts likewise, and the levels survive a save and a load
    addr = np.expm1(row_context(night, history)["ip_failures_hour"].to_numpy()).round().astype(int).tolist()
    assert addr == [0] * 30 + [30] * 30 + [0, 0]
    history.save(tmp_path)
    loaded = KeyHistory.load(tmp_path)
    assert loaded is not None and loaded.levels is not None and loaded.levels.equals(history.levels)
    assert failures(night, loaded) == failures(night, history)
    plain.save(tmp_path)  # saved without levels: an earlier save's levels do not linger
    assert KeyHistory.load(tmp_path).levels is None
    assert loaded.union(plain).levels is loaded.levels and plain.union(loaded).levels is loaded.levels


def test_a_day_when_every_regular_key_is_busier_divides_the_request_counts_and_one_keys_flood_does_not():
    # twelve keys, one machine each, six requests at 11:00 every training day (their usual day: 6)
    def day(d: int, per_key: dict[int, int]) -> list[tuple[float, str, str, str, str, int]]:
        return [(d * 86_400.0 + 3_600 + k * 120 + i, f"K{k}", f"M{k}", f"10.0.0.{k}", "SE", 1)
                for k, n in per_key.items() for i in range(n)]

    keys = range(SCALE_MIN_KEYS + 2)
    training = _log([row for d in range(14) for row in day(d, dict.fromkeys(keys, 6))])
    history = KeyHistory.from_rows(training, levels=True)
    usual = history.levels.filter(pl.col("signal") == SCALE_SIGNAL)
    assert usual["level"].to_list() == [6] * len(keys)

    def requests(log: pl.DataFrame, version: int = CONTEXT_VERSION) -> dict[str, int]:
        got = row_context(log, history, version=version, columns=("key_requests_hour", "machine_requests_hour"))
        return {c: int(np.expm1(got[c].max()).round()) for c in got.columns}

    # a release day: every key three times its usual; each key's hour counts as a usual one, and each
    # machine's as its usual level (0 above it); the version before counted 18 and 12
    release = _log(day(14, dict.fromkeys(keys, 18)))
    assert requests(release) == {"key_requests_hour": 6, "machine_requests_hour": 0}
    assert requests(release, version=3) == {"key_requests_hour": 18, "machine_requests_hour": 12}
    # one key's flood on a usual day moves no day's scale: counted in full
    flood = _log(day(15, {**dict.fromkeys(keys, 6), 0: 600}))
    assert requests(flood) == {"key_requests_hour": 600, "machine_requests_hour": 594}
    # too few regular keys that day to tell a busy day: counted in full
    few = _log(day(16, dict.fromkeys(range(SCALE_MIN_KEYS - 1), 18)))
    assert requests(few) == {"key_requests_hour": 18, "machine_requests_hour": 12}
    # a history without the keys' usual days (kept by its levels only) scales nothing
    no_usual = replace(history, levels=history.levels.filter(pl.col("signal") != SCALE_SIGNAL))
    got = row_context(release, no_usual, columns=("key_requests_hour",))["key_requests_hour"]
    assert int(np.expm1(got.max()).round()) == 18


def test_a_vendor_of_few_keys_has_its_busy_day_scaled_from_five_regular_keys():
    # seven site licences, each key used by forty machines, 4 requests per machine in the hour of 11:00 every
    # training day (each key's usual day: 160); version 5 needed ten regular keys to scale a day
    def day(d: int, per_machine: dict[int, int]) -> list[tuple[float, str, str, str, str, int]]:
        return [(d * 86_400.0 + 3_600 + k * 400 + m * 10 + i, f"K{k}", f"M{k}-{m}", f"10.0.0.{k}", "SE", 1)
                for k, n in per_machine.items() for m in range(40) for i in range(n)]

    keys = range(7)
    training = _log([row for d in range(14) for row in day(d, dict.fromkeys(keys, 4))])
    history = KeyHistory.from_rows(training, levels=True)
    assert history.levels.filter(pl.col("signal") == SCALE_KEYS_SIGNAL)["level"].to_list() == [SCALE_MIN_KEYS] == [5]

    # a model of version 5 kept its levels without the number: it needed ten
    version_5 = replace(history, levels=history.levels.filter(pl.col("signal") != SCALE_KEYS_SIGNAL))

    def requests(log: pl.DataFrame, version: int = CONTEXT_VERSION, hist: KeyHistory = history) -> dict[str, int]:
        got = row_context(log, hist, version=version, columns=("key_requests_hour", "machine_requests_hour"))
        return {c: int(np.expm1(got[c].max()).round()) for c in got.columns}

    # a release day, every machine three times its usual: a usual hour for each key and machine;
    # version 5 counted each key's 480 requests in the hour in full
    release = _log(day(14, dict.fromkeys(keys, 12)))
    assert requests(release) == {"key_requests_hour": 160, "machine_requests_hour": 0}
    assert requests(release, 5, version_5) == {"key_requests_hour": 480, "machine_requests_hour": 8}
    # the levels decide, whatever version is asked for: they say how their model counted
    assert requests(release, 5) == requests(release) and requests(release, 6, version_5) == requests(release, 5, version_5)
    # a log scored whole (no levels) learns its own usual days at the version asked for
    whole = _log([row for d in range(14) for row in day(d, dict.fromkeys(keys, 4))] + day(14, dict.fromkeys(keys, 12)))
    no_levels = replace(history, levels=None)
    assert requests(whole, 6, no_levels)["key_requests_hour"] == 160
    assert requests(whole, 5, no_levels)["key_requests_hour"] == 480
    # two keys' floods of five active keys move no day's scale
    flood = _log(day(15, {0: 40, 1: 40, 2: 4, 3: 4, 4: 4}))
    assert requests(flood) == requests(flood, 5, version_5) == {"key_requests_hour": 1600, "machine_requests_hour": 36}
    # incidents count as the model did
    assert row_day_scales(release["Time"], release["Key"], history.levels).tolist() == [3.0] * release.height
    assert row_day_scales(release["Time"], release["Key"], version_5.levels).tolist() == [1.0] * release.height


def test_a_night_that_holds_part_of_two_days_compares_each_part_with_that_part_of_a_usual_day():
    # twelve keys, six requests at 11:00 and six at 20:00 every training day (usual day 12, half of
    # the requests in each hour); a night cut at noon holds a release day's evening and the next morning
    def hour(d: int, at: int, n: int) -> list[tuple[float, str, str, str, str, int]]:
        return [(d * 86_400.0 + (at - 10) * 3_600 + k * 120 + i, f"K{k}", f"M{k}", f"10.0.0.{k}", "SE", 1)
                for k in keys for i in range(n)]

    keys = range(SCALE_MIN_KEYS_BEFORE_6 + 2)  # enough for version 4 to scale a day
    training = _log([row for d in range(14) for at in (11, 20) for row in hour(d, at, 6)])
    history = KeyHistory.from_rows(training, levels=True)
    profile = history.levels.filter(pl.col("signal").str.starts_with(PROFILE_SIGNAL)).sort("signal")
    assert dict(zip(profile["signal"].str.slice(-2).cast(int), profile["level"])) == {
        h: 14 * 6 * len(keys) if h in (11, 20) else 0 for h in range(24)}

    def requests(log: pl.DataFrame, version: int = CONTEXT_VERSION) -> dict[str, int]:
        got = row_context(log, history, version=version, columns=("key_requests_hour", "machine_requests_hour"))
        return {c: int(np.expm1(got[c].max()).round()) for c in got.columns}

    # every key three times its usual in each hour: each part is half a usual day, so scale 3 (a
    # usual hour, 0 above the machine's level); version 4 read 18 against a whole day of 12 (scale 1.5)
    night = _log(hour(14, 20, 18) + hour(15, 11, 18))
    assert requests(night) == {"key_requests_hour": 6, "machine_requests_hour": 0}
    assert requests(night, version=4) == {"key_requests_hour": 12, "machine_requests_hour": 6}
    # a usual evening and morning: nothing to divide, as in version 4
    usual = _log(hour(14, 20, 6) + hour(15, 11, 6))
    assert requests(usual) == requests(usual, version=4) == {"key_requests_hour": 6, "machine_requests_hour": 0}
    # the hours after midnight, where training had no request: no usual to compare with, counted in full
    small_hours = _log([(row[0] - 10.5 * 3_600, *row[1:]) for row in hour(15, 11, 18)])
    assert requests(small_hours) == {"key_requests_hour": 18, "machine_requests_hour": 12}


def test_chunk_context_takes_the_largest_row_value_and_window_statistics():
    # 8 rows in windows of 4 starting every 2 rows; the second half is one machine hammering.
    rows = [(i * 600.0, f"K{i}", f"M{i}", f"10.0.0.{i}", "SE", 1) for i in range(4)]
    rows += [(2400 + i, "KX", "MX", "9.9.9.9", "SE", int(i % 2 == 0)) for i in range(4)]
    log = _log(rows)
    ctx = chunk_context(log, np.array([0, 2, 4]), size=4)
    assert ctx.shape == (3, len(CONTEXT_COLUMNS))
    # log requests per second, less the median of the chunks of the same day (one day here)
    rates = np.log([3 / 1800, 3 / 1201, 3 / 3])
    np.testing.assert_allclose(col(ctx, "rate"), rates - np.median(rates))
    np.testing.assert_allclose(col(ctx, "failure_share"), [0, 0.25, 0.5])
    np.testing.assert_allclose(col(ctx, "top_machine_share"), [0.25, 0.5, 1.0])
    # KX made 4 requests in the hour 10:00-11:00 (rows at 2400-2403 s)
    np.testing.assert_allclose(np.expm1(col(ctx, "key_requests_hour")), [1, 4, 4])
    np.testing.assert_allclose(np.expm1(col(ctx, "machine_failures_hour")), [0, 2, 2])


def test_chunk_context_refuses_windows_beyond_the_log():
    log = _log([(i, "K", "M", "1.1.1.1", "SE", 1) for i in range(5)])
    with pytest.raises(ValueError, match="do not fit"):
        chunk_context(log, np.array([0, 3]), size=4)
    with pytest.raises(ValueError, match="needs the derived columns"):
        chunk_context(log.drop("country"), np.array([0]), size=4)


# --- the detector ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_context():
    """The context vectors of a small simulated vendor (the protocol test's), split in time."""
    from licanom.config import ChunkConfig, Config, SplitConfig
    from licanom.data.pipeline import prepare
    from licanom.ops.detect import model_inputs
    from licanom.sim import simulate

    sim = simulate("floating", seed=3, days=3, customers=10)
    prepared = prepare(sim.log, Config(vendor="context", chunk=ChunkConfig(size=20, stride=20),
                                       split=SplitConfig(method="time")))
    return model_inputs("Tail_context", prepared), prepared.test_mask


# The protocol's contract over every detector is tests/test_protocol.py; here what the context
# models add to it. Their AUROC on planted anomalies is a benchmark (make bench-quality).
@pytest.mark.parametrize("model", ["Tail_context", "IForest_context", "LOF_context"])
def test_context_detector_explains_in_its_columns_and_refits_the_same(model, small_context, tmp_path):
    from licanom.detectors.context import CONTEXT_MODELS, ContextDetector

    assert model in CONTEXT_MODELS
    X, test = small_context
    kw = {"n_estimators": 5} if model == "IForest_context" else {}  # its 20 forests of 5 trees: seconds less
    det = ContextDetector(model, threshold="quantile", seed=0, **kw).fit(X[~test])
    assert det.threshold_method_ == "quantile" and np.isfinite(det.threshold_)
    scores = det.decision_function(X)
    z = det.explain(X)
    assert z.shape == X.shape and det.encode(X[:3]).shape == (3, len(CONTEXT_COLUMNS))
    if model == "Tail_context":  # surprisal in nats: 0 for the most ordinary, log 2 about the reference's median
        reference = X[~test][det.reference_]
        assert (z >= 0).all() and (np.median(det.explain(reference), axis=0) <= np.log(2) + 0.05).all()
        np.testing.assert_allclose(scores, z.sum(axis=1))
    else:  # robust z-scores
        np.testing.assert_allclose(np.median(det.explain(X[~test]), axis=0), 0.0, atol=1e-9)

    again = ContextDetector.load(det.save(tmp_path / "context.pkl"))
    assert (again.threshold_, again.threshold_method_) == (det.threshold_, det.threshold_method_)
    # repeatable
    np.testing.assert_array_equal(ContextDetector(model, threshold="quantile", seed=0, **kw).fit(X[~test]).decision_function(X),
                                  scores)


def test_tail_model_surprisal_on_known_columns():
    from licanom.detectors.context import TailModel

    train = np.c_[np.arange(1.0, 101.0), np.full(100, 3.0)]  # 1..100, and a constant column
    m = TailModel(tail_quantile=0.9).fit(train)
    s = m.surprisal(np.array([[0.5, 3.0], [100.0, 3.0], [50.0, 2.0]]))
    # empirical right tail: P(X >= x) = (#train >= x + 1) / (n + 1)
    np.testing.assert_allclose(s[:, 0], -np.log(np.array([101, 2, 52]) / 101))
    np.testing.assert_allclose(s[:, 1], 0.0)  # at or below a constant column: nothing unusual
    # past the 90% quantile the tail is exponential, with the median excess / log 2 as its scale
    u = np.quantile(train[:, 0], 0.9)
    excess = train[:, 0][train[:, 0] > u] - u
    beta = np.median(excess) / np.log(2)
    far = m.surprisal(np.array([[200.0, 3.0], [300.0, 3.0]]))[:, 0]
    np.testing.assert_allclose(np.diff(far), 100 / beta)
    # above a constant column: beyond every training value, scale 1
    np.testing.assert_allclose(m.surprisal(np.array([[1.0, 4.0]]))[0, 1], np.log(101) + 1.0)
    # a few extreme training rows (anomalies in the training days) hardly widen the tail
    dirty = TailModel().fit(np.r_[train, [[1e4, 3.0]] * 3])
    assert dirty.beta_[0] < 1.5 * m.beta_[0]
    # one column far out is enough to outrank rows that are a little high everywhere
    assert m.score_samples(np.array([[400.0, 3.0]]))[0] < m.score_samples(np.array([[95.0, 3.0]]))[0]
    with pytest.raises(RuntimeError, match="not fitted"):
        TailModel().surprisal(train)
    with pytest.raises(ValueError, match="tail_quantile"):
        TailModel(tail_quantile=1.0).fit(train)


def test_a_count_far_beyond_its_training_counts_carries_the_far_rules_surprisal():
    from licanom.detectors.context import FAR_SIGNAL_FACTOR, FAR_SIGNAL_MIN_COUNT, FAR_SIGNAL_NATS, TailModel

    counts = np.arange(0.0, 201.0)  # a count column, training values 0..200, and a share column
    train = np.c_[np.log1p(counts), np.linspace(0, 0.5, counts.size)]
    m = TailModel(far_columns=np.array([True, False])).fit(train)
    line = FAR_SIGNAL_FACTOR * 200
    s = m.surprisal(np.array([[np.log1p(line), 0.5], [np.log1p(line - 1), 0.5], [np.log1p(1e9), 0.99]]))
    assert s[0, 0] >= FAR_SIGNAL_NATS and s[2, 0] >= FAR_SIGNAL_NATS
    assert s[1, 0] < FAR_SIGNAL_NATS  # just below the line: the fitted tail alone
    assert s[2, 1] < FAR_SIGNAL_NATS  # a share is no count: never the rule's
    plain = TailModel().fit(train)  # without the rule (a model saved before it): the fitted tail alone
    assert plain.far_lines() is None and plain.surprisal(np.array([[np.log1p(line), 0.5]]))[0, 0] < FAR_SIGNAL_NATS
    # a column of small counts: the line is FAR_SIGNAL_FACTOR times FAR_SIGNAL_MIN_COUNT at least
    small = TailModel(far_columns=np.array([True])).fit(np.log1p(np.r_[np.zeros(90), np.ones(10)])[:, None])
    np.testing.assert_allclose(small.far_lines(), np.log1p(FAR_SIGNAL_FACTOR * FAR_SIGNAL_MIN_COUNT))


def test_a_chunk_with_one_count_far_beyond_training_is_flagged_at_the_top_severity():
    from licanom.detectors.context import FAR_SIGNAL_FACTOR, ContextDetector

    rng = np.random.default_rng(4)
    X = np.zeros((400, len(CONTEXT_COLUMNS)))
    X[:, :3] = rng.uniform(0.0, 0.3, (400, 3))
    X[:, 3:] = np.log1p(rng.poisson(4.0, (400, len(CONTEXT_COLUMNS) - 3)))
    j = CONTEXT_COLUMNS.index("key_usage_hour")
    X[:, j] = np.log1p(rng.integers(0, 500, 400))
    X[:5, j] = np.log1p(2000)  # a few training hours of heavy use: the line is drawn from them too
    det = ContextDetector().fit(X)
    assert det.estimator_.far_lines()[j] == pytest.approx(np.log1p(FAR_SIGNAL_FACTOR * 2000))
    night = np.repeat(np.median(X, axis=0, keepdims=True), 3, axis=0)
    night[1, j] = np.log1p(FAR_SIGNAL_FACTOR * 2000)       # ten times the largest hour of training
    night[2, j] = np.log1p(0.5 * FAR_SIGNAL_FACTOR * 2000)  # five times: its fitted tail decides
    sev = det.severity(night)
    assert sev[1] == 100.0 and det.predict(night)[1] == 1
    assert sev[0] < sev[2] < 100.0
    # the out-of-fold references that calibrate severity draw their lines from every chunk they saw too
    seen: list[int] = []
    original = ContextDetector._seen

    def spy(estimator, X, days=None):  # type: ignore[no-untyped-def]
        seen.append(len(X))
        original(estimator, X, days)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ContextDetector, "_seen", staticmethod(spy))
        again = ContextDetector().fit(X)
    assert seen == [400] + [300] * again.calibration_folds


@pytest.mark.parametrize("share", [0.6, 0.85])
def test_a_machine_in_a_failure_loop_reaches_the_top_severity_after_training_days_full_of_loops(share):
    """Loops that fill most of the training chunks (machines failing 200-700 times an hour) draw the far
    rule's line beyond any loop; a new machine failing 300 times an hour at night still reaches the top
    severity (the loop line), one failing 60 times is judged by its tail as before. The calibration
    takes no loop line: with 85% of the training chunks past it, its +60 nats would make them the bulk
    and every night's chunk, the loop too, lay below it. A model pickled before the line keeps the far
    rule alone."""
    from licanom.detectors.context import FAR_SIGNAL_NATS, LOOP_FAILURES_PER_HOUR, ContextDetector

    rng = np.random.default_rng(9)
    j = CONTEXT_COLUMNS.index("machine_failures_hour")
    X = np.zeros((400, len(CONTEXT_COLUMNS)))
    X[:, :3] = rng.uniform(0.0, 0.3, (400, 3))
    X[:, 3:] = np.log1p(rng.poisson(3.0, (400, len(CONTEXT_COLUMNS) - 3)))
    looping = int(400 * share)
    X[:looping, j] = np.log1p(rng.integers(200, 700, looping))
    X = X[rng.permutation(400)]  # the loops on every training day
    det = ContextDetector().fit(X)
    assert det.estimator_.far_lines()[j] == pytest.approx(np.log1p(LOOP_FAILURES_PER_HOUR))
    ordinary = X[X[:, j] == 0]
    assert det.calibration_.median < FAR_SIGNAL_NATS / 2  # the bulk is the ordinary chunks' (about 15), not the loops'
    night = np.repeat(np.median(ordinary, axis=0, keepdims=True), 3, axis=0)
    night[1, j] = np.log1p(300.0)
    night[2, j] = np.log1p(60.0)
    sev = det.severity(night)
    assert sev[1] > 90.0 and det.predict(night)[1] == 1
    assert det.explain(night)[1, j] >= FAR_SIGNAL_NATS
    assert det.explain(night)[2, j] < FAR_SIGNAL_NATS and det.predict(night)[2] == 0
    # a TailModel pickled before the line has no loop_columns: the far rule's line from training alone
    old = det.estimator_
    del old.__dict__["loop_columns"]
    assert old.far_lines()[j] > np.log1p(700.0)


def test_a_night_where_every_request_fails_reaches_the_top_severity():
    """A platform outage: every request of a night fails, where no normal training chunk failed more
    than a third of its requests. Each chunk is alike (the night rule has nothing to stand out from)
    and a share's fitted tail carries a few nats at most; half a chunk beyond the largest failure share
    of the chunks the reference kept is far beyond training, and always the top severity, also where
    a failure loop of the training days (set aside by the trimming) failed nearly every request."""
    from licanom.detectors.context import FAR_SHARE_GAP, FAR_SIGNAL_NATS, ContextDetector, TailModel

    rng = np.random.default_rng(5)
    X = np.zeros((400, len(CONTEXT_COLUMNS)))
    X[:, :3] = rng.uniform(0.0, 0.3, (400, 3))
    X[:, 3:] = np.log1p(rng.poisson(4.0, (400, len(CONTEXT_COLUMNS) - 3)))
    j = CONTEXT_COLUMNS.index("failure_share")
    det = ContextDetector().fit(X)
    line = X[:, j].max() + FAR_SHARE_GAP
    assert det.estimator_.far_lines()[j] == pytest.approx(line)
    night = np.repeat(np.median(X, axis=0, keepdims=True), 40, axis=0)
    night[:, j] = 1.0
    scores = det.decision_function(night)
    assert (det.severity_of(scores) == 100.0).all()
    assert det.flags(scores, nights=np.zeros(40)).all()
    below = night[:1].copy()
    below[0, j] = line - 0.01  # just short of the line: the share's fitted tail alone
    assert det.severity(below)[0] < 100.0
    # a share column whose training reached half: nothing lies half a chunk beyond it
    high = TailModel(far_columns=np.array([False]), far_share_columns=np.array([True])).fit(np.linspace(0, 0.6, 50)[:, None])
    assert np.isinf(high.far_lines()[0]) and high.surprisal(np.array([[1.0]]))[0, 0] < FAR_SIGNAL_NATS
    # a failure loop in the training days (8 chunks failing 95% of their requests): set aside by the
    # trimming, it leaves the line where the normal chunks put it
    looping = X.copy()
    looping[100:108, j] = 0.95
    with_loop = ContextDetector().fit(looping)
    assert not with_loop.reference_[100:108].any()
    assert with_loop.estimator_.far_lines()[j] == pytest.approx(looping[with_loop.reference_, j].max() + FAR_SHARE_GAP)
    assert (with_loop.severity(night) == 100.0).all()
    # the training chunks' own scores take no share rule: the loop's 60 nats reach neither the named
    # thresholds (M3 on the training scores) nor a small vendor's calibration (too few chunks for
    # out-of-fold blocks: its training scores)
    assert ContextDetector(threshold="M3").fit(looping).threshold_ < ContextDetector(threshold="M3").fit(X).threshold_ + 10
    small = looping[92:107]  # 15 chunks, the loop's first 7 among them
    assert ContextDetector().fit(small).calibration_.max_score < FAR_SIGNAL_NATS
    # a block of failing days in training (its last 60 chunks fail 60% of their requests): no share rule
    # in the out-of-fold scores that calibrate severity, so no outage against the other blocks there
    failing = X.copy()
    failing[:, j] = rng.uniform(0.0, 0.05, len(X))  # the other blocks' line: about 0.55
    failing[-60:, j] = 0.6
    before = ContextDetector().fit(X)
    after = ContextDetector().fit(failing)
    assert after.calibration_.max_score < 1.5 * before.calibration_.max_score
    assert np.median(after.calibration_.recent_severity()) < 50.0
    assert det.estimator_.far_lines()[j] == pytest.approx(X[:, j].max() + FAR_SHARE_GAP)  # a share 0.07 + 0.5 reaches 0.57
    edge = TailModel(far_columns=np.array([False]), far_share_columns=np.array([True])).fit(np.r_[np.zeros(49), 0.07][:, None])
    assert edge.surprisal(np.array([[0.57]]))[0, 0] >= FAR_SIGNAL_NATS
    # a model saved before the rule (its TailModel pickled without far_share_columns) keeps the counts' rule only
    old = TailModel(far_columns=np.array([False, True])).fit(np.c_[np.linspace(0, 0.2, 50), np.log1p(np.arange(50.0))])
    del old.__dict__["far_share_columns"]
    assert np.isinf(old.far_lines()[0])


def _days_of_vectors(rng: np.random.Generator, per_day: int, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary context vectors of ``n_days`` days of ``per_day`` chunks each (small shares, counts of
    about 4), and each chunk's start in days since 1970, spread evenly over its day."""
    n = per_day * n_days
    X = np.zeros((n, len(CONTEXT_COLUMNS)))
    X[:, :3] = rng.uniform(0.0, 0.1, (n, 3))
    X[:, 3:] = np.log1p(rng.poisson(4.0, (n, len(CONTEXT_COLUMNS) - 3)))
    days = np.repeat(np.arange(20_000, 20_000 + n_days), per_day) + np.tile(np.arange(per_day) / per_day, n_days)
    return X, days


def test_a_failing_job_that_recurs_through_the_training_days_keeps_no_share_line():
    """A job of the vendor's that fails most of its requests every day, at another time each day, fills a
    chunk a day, which the trimming sets aside: its share is no far beyond training, and a night's chunk
    of it is judged by the share's fitted tail, not at the top severity. What counts is the last two weeks
    of the training days (a job begun a month into a long log counts); a loop of a few days, also set
    aside, keeps the line, and so does every fit that is not given the chunks' days."""
    from licanom.config import DetectConfig
    from licanom.detectors.context import FAR_SHARE_GAP, RECUR_DAYS, RECUR_MIN_DAYS, ContextDetector, _recurs
    from licanom.ops.detect import evaluate_model

    rng = np.random.default_rng(11)
    per_day, n_days = 10, 70
    n = per_day * n_days
    X, days = _days_of_vectors(rng, per_day, n_days)
    j = CONTEXT_COLUMNS.index("failure_share")
    night = np.median(X, axis=0, keepdims=True)
    night[0, j] = 0.7

    def fitted(job_days: range, with_days: bool = True) -> ContextDetector:
        Y = X.copy()
        job = [d * per_day + d % per_day for d in job_days]  # one chunk on each of those days, at another hour
        Y[job, j] = 0.7
        det = ContextDetector().fit(Y, days=days if with_days else None)
        assert not det.reference_[job].any()  # set aside, as a loop's chunks are
        return det

    daily = fitted(range(n_days))
    assert np.isinf(daily.estimator_.far_lines()[j]) and daily.severity(night)[0] < 100.0
    recent = fitted(range(n_days - 28, n_days))  # a job begun 42 days into the training days
    assert np.isinf(recent.estimator_.far_lines()[j]) and recent.severity(night)[0] < 100.0
    for kept in (fitted(range(0, 28)), fitted(range(40, 44)), fitted(range(n_days), with_days=False)):
        # a job that stopped before the last two weeks, a loop of four days, a fit without the days
        assert kept.estimator_.far_lines()[j] == pytest.approx(X[kept.reference_, j].max() + FAR_SHARE_GAP, abs=0.01)
        assert kept.severity(night)[0] == 100.0
    # the training flows' fit passes the chunks' days (licanom.ops.detect.evaluate_model)
    Y = X.copy()
    Y[5::per_day, j] = 0.7
    det = ContextDetector()
    evaluate_model(det, Y, np.zeros(n, dtype=bool), DetectConfig(), days=days)
    assert np.isinf(det.estimator_.far_lines()[j])
    with pytest.raises(ValueError, match="one day per training chunk"):
        ContextDetector().fit(Y, days=days[:-1])
    # the rule itself: half of the last RECUR_DAYS days, and at least RECUR_MIN_DAYS
    line = np.array([0.5])
    values = np.zeros((n, 1))
    last = np.unique(np.floor(days))[-RECUR_DAYS:]
    values[np.isin(np.floor(days), last[: RECUR_DAYS // 2]) & (np.arange(n) % per_day == 0), 0] = 0.6
    assert _recurs(values, line, days)[0]
    values[np.flatnonzero(values[:, 0])[0], 0] = 0.0
    assert not _recurs(values, line, days)[0]
    few = np.array([20_000, 20_001])
    assert not _recurs(np.array([[0.6], [0.6]]), line, few)[0]  # two days: fewer than RECUR_MIN_DAYS
    assert RECUR_MIN_DAYS > 2


def test_a_job_at_one_time_of_every_day_rejoins_the_reference():
    """A job of the vendor's at one time of every day (many requests of one key, most failing) fills a
    chunk a day that the trimming sets aside as a flood's; where the chunks' times are given, the chunks
    set aside in one two-hour window of the clock on half or more of the last two weeks' days, and on
    several times as many days as the rest of the clock's, rejoin the reference, so that a night's run of
    the job is ordinary. A loop of a few days at that hour, floods at random hours every day, and a fit
    without the times keep them aside; the night's job is then flagged."""
    from licanom.detectors.context import JOB_HOURS, JOB_MIN_DAYS, RECUR_DAYS, ContextDetector, _daily_job

    rng = np.random.default_rng(5)
    per_day, n_days = 24, 21
    n = per_day * n_days
    X, days = _days_of_vectors(rng, per_day, n_days)
    job = {"failure_share": 0.8, "key_requests_hour": np.log1p(200.0), "machine_requests_hour": np.log1p(150.0)}
    night = np.median(X, axis=0, keepdims=True)
    for c, v in job.items():
        night[0, CONTEXT_COLUMNS.index(c)] = v

    def fitted(rows: list[int], with_days: bool = True) -> ContextDetector:
        Y = X.copy()
        for c, v in job.items():
            Y[rows, CONTEXT_COLUMNS.index(c)] = v
        return ContextDetector().fit(Y, days=days if with_days else None)

    at_three = [d * per_day + 3 for d in range(n_days)]
    daily = fitted(at_three)
    assert daily.reference_[at_three].all() and daily.severity(night)[0] < 40.0
    anywhen = [d * per_day + int(h) for d, h in enumerate(rng.integers(0, per_day, n_days))]
    for rows, with_days in ((at_three, False), (at_three[-4:], True), (anywhen, True)):  # no times given; a
        kept = fitted(rows, with_days)  # loop of four days at that hour; a chunk a day at random hours
        assert (kept.reference_ == fitted(rows, with_days=False).reference_).all()  # nothing rejoined
        assert kept.reference_[rows].sum() <= len(rows) // 4
        # flagged, but for the chunk a day at random hours, which the share's recurrence (the test above)
        # takes off the top severity: still well above the daily job's
        assert kept.severity(night)[0] >= (55.0 if rows is not anywhen else daily.severity(night)[0] + 20.0)
    # the rule itself, on the chunks set aside
    keep = np.ones(n, dtype=bool)
    keep[at_three[-RECUR_DAYS // 2 - 1:]] = False  # 8 of the last 14 days: half of them, and more than
    assert _daily_job(keep, days)[at_three[-RECUR_DAYS // 2 - 1:]].all()  # chance would cover (under one)
    keep[at_three[-RECUR_DAYS // 2 - 1]] = True  # one day fewer: not yet
    assert not _daily_job(keep, days).any()
    keep[:] = True
    keep[at_three] = False
    keep[rng.choice(n, n // 2, replace=False)] = False  # and half of every hour set aside: no window stands out
    assert not _daily_job(keep, days).any()
    keep[:] = True
    keep[at_three] = False
    assert not _daily_job(keep, np.floor(days)).any()  # no time of day (dates, whole days): nothing judged
    assert not _daily_job(keep[-JOB_MIN_DAYS * per_day + per_day:], days[-JOB_MIN_DAYS * per_day + per_day:]).any()
    # a vendor whose traffic all lies in two hours: chunks set aside at random cover that window on most
    # days by chance, floods among them, and none rejoins
    two_hours = np.repeat(np.arange(20_000, 20_014), 12) + np.tile((9.0 + np.arange(12) / 6.0) / 24.0, 14)
    aside = np.ones(two_hours.size, dtype=bool)
    aside[rng.choice(two_hours.size, 28, replace=False)] = False
    assert not _daily_job(aside, two_hours).any()
    # the out-of-fold fits that calibrate severity take the times as well: the job's chunks meet the
    # calibration as the nights meet the model, well below where they score without the times
    untimed = fitted(at_three, with_days=False)
    assert np.median(daily.calibration_scores_[at_three]) < 0.75 * np.median(untimed.calibration_scores_[at_three])
    assert JOB_HOURS == 2


def test_a_keys_usage_from_counters_and_from_amounts():
    from licanom.data.context_vector import usage_amounts

    def log(values, states=None, keys=None, objects=None):
        n = len(values)
        return pl.DataFrame({
            "Time": [T0 + timedelta(minutes=i) for i in range(n)], "Key": keys or ["K1"] * n,
            "State": states or [8010] * n, "DOId": objects or [7] * n,
            "DOIntValue": pl.Series(values, dtype=pl.Int64)})

    # counters (the value after each request): the change since the object's previous request;
    # a read repeats the value (0), a failed request and a row without a value count nothing
    counters = log([100, 105, 105, 300, 310, None, 312], states=[8010, 8010, 8011, 8010, 8020, 8010, 8010])
    assert usage_amounts(counters).tolist() == [0, 5, 0, 195, 0, 0, 12]
    # each key's object apart; a counter set back (a new month: 1 change in 10 the other way) counts 0
    two = log([10, 50, 12, 60, 20, 75, 25, 30, 31, 33, 0, 7],
              keys=["K1", "K2", "K1", "K2", "K1", "K2", "K1", "K1", "K1", "K1", "K1", "K1"])
    assert usage_amounts(two).tolist() == [0, 0, 2, 10, 8, 15, 5, 5, 1, 2, 0, 7]
    # enough changes to tell, one in five the other way: not a counter, the values are the amounts
    mixed = [v for i in range(6) for v in (10 + i, 20 + i, 30 + i, 40 + i, 50 + i)]  # 24 up, 5 down
    assert usage_amounts(log(mixed)).tolist() == mixed
    assert usage_amounts(log(mixed[:10])).tolist()[5] == 0  # fewer than 20 changes: counters
    # an allowance counted off: the changes go down
    assert usage_amounts(log([1000, 990, 985, 900])).tolist() == [0, 10, 5, 85]
    # amounts (each request's own): they go up as often as down
    amounts = [5, 1, 3, 2, 40, 1] * 4
    assert usage_amounts(log(amounts)).tolist() == amounts
    # too few changes to tell (a quiet night): read as counters; so are amounts that never change
    assert usage_amounts(log([5, 1, 3, 2, 40, 1])).tolist() == [0, 4, 0, 1, 0, 39]  # mostly down: counted off
    assert usage_amounts(log([1, 1, 1])).tolist() == [0, 0, 0]
    # values near int64's range neither wrap around nor overflow a sum (capped at 2**52 a row)
    huge = usage_amounts(log([2**62, 1] * 12))
    assert huge.min() >= 0 and huge.max() == 2**52
    # a log without data objects: no usage
    assert usage_amounts(log([5, 1]).drop("DOIntValue")).tolist() == [0, 0]
    # the per-hour sum of the key's usage on each of its rows (key_usage_hour, before log1p)
    frame = counters.with_columns(MachineCode=pl.lit("M1"), IP=pl.lit("1.1.1.1"), country=pl.lit("SE"),
                                  success=((pl.col("State") // 10) % 10 == 1).cast(pl.Int8))
    got = np.expm1(row_context(frame, columns=("key_usage_hour",))["key_usage_hour"].to_numpy()).round()
    assert got.tolist() == [212.0] * 7


def test_context_detector_decides_by_severity_by_default(tmp_path):
    from licanom.detectors import thresholds as th
    from licanom.detectors.context import TAIL_SCALE_NATS, ContextDetector
    from licanom.detectors.decision import DEFAULT_MIN_SEVERITY, Calibration

    X = np.random.default_rng(3).gamma(2.0, 1.0, size=(400, len(CONTEXT_COLUMNS)))
    det = ContextDetector().fit(X)
    assert det.model == "Tail_context" and det.threshold_method_.startswith(f"severity >= {DEFAULT_MIN_SEVERITY:g}, or")
    # severity is calibrated on out-of-fold scores, and the threshold is where it reaches the default
    # (Tail_context's tail scale is its own, in nats; the other context models fit theirs)
    assert det.calibration_ == Calibration.fit(det.calibration_scores_, scale=TAIL_SCALE_NATS)
    assert det.calibration_.beta == TAIL_SCALE_NATS
    forest = ContextDetector(model="IForest_context", n_estimators=5).fit(X)  # 5 trees a forest: seconds less
    assert forest.calibration_ == Calibration.fit(forest.calibration_scores_)
    fitted = ContextDetector(tail_scale=None).fit(X)
    assert fitted.calibration_ == Calibration.fit(fitted.calibration_scores_)
    assert ContextDetector.load(fitted.save(tmp_path / "fitted.pkl")).tail_scale is None
    assert det.threshold_ == det.calibration_.score_at(DEFAULT_MIN_SEVERITY)
    sev = det.severity(X)
    assert ((sev >= 0) & (sev <= 100)).all()
    assert ((sev >= DEFAULT_MIN_SEVERITY) == (det.decision_function(X) > det.threshold_)).mean() > 0.99
    named = ContextDetector(threshold="budget", threshold_params=(("alarm_rate", 0.01),)).fit(X)
    assert named.threshold_ == th.budget(named.decision_scores_, 0.01)
    again = ContextDetector.load(named.save(tmp_path / "named.pkl"))
    assert (again.threshold_, again.threshold_params) == (named.threshold_, (("alarm_rate", 0.01),))


def test_context_detector_refuses_bad_input_clearly():
    from licanom.detectors.context import ContextDetector

    with pytest.raises(ValueError, match=rf"shape \(n_chunks, {len(CONTEXT_COLUMNS)}\)"):
        ContextDetector().fit(np.zeros((10, 8)))
    bad = np.zeros((10, len(CONTEXT_COLUMNS)))
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="chunk 7 is not finite"):
        ContextDetector().fit(bad)
    with pytest.raises(ValueError, match="unknown decision"):
        ContextDetector(threshold="M9").fit(np.random.default_rng(0).normal(size=(20, len(CONTEXT_COLUMNS))))
    with pytest.raises(RuntimeError, match="not fitted"):
        ContextDetector().decision_function(np.zeros((1, len(CONTEXT_COLUMNS))))


# --- the size rule of train.models: auto -------------------------------------------------------


def test_auto_models_follow_the_vendor_size():
    from licanom.config import load_config

    cfg = load_config(overrides={"train": {"models": "auto", "auto": {
        "small_max_train_chunks": 100, "small": ["LOF_context"], "large": ["GRU_OCSVM", "TCN_AE"]}},
        "context": {"auto": {"small": "quantile"}}})
    assert cfg.train.models == ("auto",)
    assert cfg.for_size(100).train.models == cfg.train.auto.small
    assert cfg.for_size(101).train.models == cfg.train.auto.large
    # the context models' threshold follows the same size rule
    assert cfg.context.threshold == "auto"
    assert cfg.for_size(100).context.threshold == cfg.context.auto.small == "quantile"
    assert cfg.for_size(101).context.threshold == cfg.context.auto.large == "severity"
    fixed = load_config(overrides={"train": {"models": ["TCN_AE"]}, "context": {"threshold": "pot"}})
    assert fixed.for_size(10) is fixed  # nothing to resolve
    with pytest.raises(ValueError, match=r"need a named context\.threshold \(not auto\)"):
        load_config(overrides={"context": {"threshold_params": {"alarm_rate": 0.01}}})
    # the night rule off is the one null a decision's params may hold; YAML's true is no number
    off = load_config(overrides={"detect": {"threshold_params": {"stand_out_gap": None}}})
    assert off.detect.threshold_params == {"stand_out_gap": None}
    with pytest.raises(ValueError, match=r"threshold_params\.stand_out_gap\s+Value error, must be a number"):
        load_config(overrides={"detect": {"threshold_params": {"stand_out_gap": True}}})
    with pytest.raises(ValueError, match=r"threshold_params\.bins\s+Value error, must not be null"):
        load_config(overrides={"detect": {"threshold": "M3", "threshold_params": {"bins": None}}})
    from licanom.ops.detect import make_detector

    with pytest.raises(ValueError, match="depends on the vendor's size"):
        make_detector("Tail_context", cfg.train, cfg.detect, context=cfg.context)
    assert make_detector("Tail_context", cfg.train, cfg.detect, context=cfg.for_size(5).context).threshold == "quantile"
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['LOF'\]"):
        load_config(overrides={"train": {"auto": {"small": ["LOF"]}}})
    with pytest.raises(ValueError, match="at least one model"):
        load_config(overrides={"train": {"auto": {"large": []}}})


def test_detect_without_a_model_trains_the_size_rule(tmp_path):
    """`licanom detect` with the defaults (models: auto) on a small log trains auto.small."""
    from licanom.cli import EXIT_OK, main
    from licanom.config import load_config
    from tests.conftest import make_raw_log

    path = tmp_path / "small.csv"
    make_raw_log(1200).with_columns(pl.col("Time").dt.epoch("s")).write_csv(path)
    out = tmp_path / "det"
    assert main(["detect", "--logs", str(path), "--epochs", "1", "--no-m1", "--out", str(out)]) == EXIT_OK
    results = pl.read_csv(out / "results.csv")
    assert tuple(results["model"]) == load_config().train.auto.small
    assert pl.read_parquet(out / "chunks.parquet")["model"][0] == load_config().train.auto.small[0]
    from licanom.detectors.context import ContextDetector

    first = ContextDetector.load(out / "models" / f"{results['model'][0]}.pt")
    assert first.threshold_method_.split(" ")[0] == load_config().context.auto.small  # the small vendor's decision


def test_a_context_bundle_keeps_its_key_history_and_scores_against_it(tmp_path):
    from licanom.ops.bundle import ModelBundle, make_windows, pairs_seen, score_windows, validate_rows, with_seen
    from licanom.config import ChunkConfig, EncodeConfig
    from licanom.detectors.context import ContextDetector
    from licanom.data.derive import derive
    from licanom.data.encode import Vocabulary
    from licanom.data.validate import validate_log
    from tests.conftest import make_raw_log

    train = validate_log(make_raw_log(800)).valid
    derived = derive(train)
    starts = np.arange(0, derived.height - 20 + 1, 20)
    det = ContextDetector().fit(chunk_context(derived, starts, 20))
    history = KeyHistory.from_rows(derived, levels=True)
    assert history.levels is not None  # seven hours: no level (3 days needed), the keys' usual day and the hours
    assert set(history.levels["signal"]) == {SCALE_SIGNAL, SCALE_KEYS_SIGNAL, *(f"{PROFILE_SIGNAL} {h:02d}" for h in range(24))}
    machine = derived.row(0, named=True)  # a level that no night row reaches, so the scores below stay the same
    history = replace(history, levels=pl.DataFrame({
        "signal": ["machine_failures_hour"], "Key": [str(machine["Key"])], "MachineCode": [str(machine["MachineCode"])],
        "IP": [""], "level": [0]}).cast({"level": pl.Int64}))
    bundle = ModelBundle(vendor="acme", detector=det, vocabulary=Vocabulary.fit(derived),
                         chunk=ChunkConfig(size=20, stride=20), encode=EncodeConfig(), product_ids=(3, 7),
                         key_history=history)
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    assert loaded.key_history is not None and loaded.key_history.machines.equals(history.machines)
    assert loaded.key_history.levels is not None and loaded.key_history.levels.equals(history.levels)
    # a version-3 model without its entities' levels would count plainly at night: refused by name
    import shutil
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "b", damaged)
    (damaged / KeyHistory.LEVELS_FILE).unlink()
    with pytest.raises(ValueError, match=f"{KeyHistory.LEVELS_FILE}.*missing"):
        ModelBundle.load(damaged)

    # the next days: the same keys, machines and addresses, nothing new to any key
    night = train.with_columns(pl.col("Time") + timedelta(days=2), pl.col("Id") + 10_000)
    windows = make_windows(loaded, validate_rows(loaded, night).valid)
    scored = score_windows(loaded, windows)
    night_starts = windows.chunks.meta["start_row"].to_numpy()
    against_history = chunk_context(windows.encoded, night_starts, 20, history)
    alone = chunk_context(windows.encoded, night_starts, 20)
    assert not col(against_history, "key_new_machines_hour").any()
    assert col(alone, "key_new_machines_hour").any()  # without the history, later hours look new
    np.testing.assert_allclose(scored["score"].to_numpy(), det.decision_function(against_history))
    # the decision is the detector's, night rule included (each chunk's UTC day)
    days = windows.chunks.meta["start_time"].dt.epoch("d").to_numpy()
    assert scored["is_anomaly"].to_list() == det.flags(scored["score"].to_numpy(), days).tolist()
    # ... which flags what the night rule alone flags: with the threshold out of reach and a low rule
    strict = replace(loaded, detector=ContextDetector.load(det.save(tmp_path / "strict.pkl")))
    strict.detector.threshold_ = 1e9
    strict.detector.threshold_params = (("stand_out_floor", 1.0), ("stand_out_gap", 1.0))
    by_rule = score_windows(strict, windows)
    assert by_rule["is_anomaly"].any() and not (by_rule["score"] > by_rule["threshold"]).any()
    assert by_rule["is_anomaly"].to_list() == strict.detector.flags(by_rule["score"].to_numpy(), days).tolist()
    assert set(by_rule.filter("is_anomaly")["flagged_by"]) == {"night"}  # below the threshold: the rule's
    assert by_rule.filter(~pl.col("is_anomaly"))["flagged_by"].null_count() == by_rule.height - by_rule["is_anomaly"].sum()
    assert (scored["flagged_by"] == "threshold").fill_null(False).to_list() == (scored["score"] > scored["threshold"]).to_list()
    assert not np.allclose(det.decision_function(alone), det.decision_function(against_history))

    # the nights' pairs join the history (the nightly state); a model without one stays as it is
    night_pairs = pairs_seen(loaded, windows)
    assert night_pairs is not None and night_pairs.machines.height == history.machines.height
    grown = with_seen(loaded, KeyHistory(machines=pl.DataFrame({"Key": ["KNEW"], "MachineCode": ["mNEW"]}),
                                         countries=pl.DataFrame({"Key": ["KNEW"], "country": ["SE"]})))
    assert grown.key_history.machines.height == history.machines.height + 1
    plain = ModelBundle(vendor="acme", detector=det, vocabulary=loaded.vocabulary, chunk=loaded.chunk,
                        encode=loaded.encode, product_ids=(3, 7))
    assert with_seen(plain, night_pairs) is plain and pairs_seen(plain, windows) is None


def test_rate_is_judged_against_its_day_so_growth_does_not_raise_it():
    # day 1: a request every 60 s; day 2: twice as many (traffic grew), with one burst of 4 in 4 s
    day = 86_400
    rows = [(i * 60.0, "K", "M", "1.1.1.1", "SE", 1) for i in range(40)]
    rows += [(day + i * 30.0, "K", "M", "1.1.1.1", "SE", 1) for i in range(40)]
    rows += [(day + 2000 + i, "K", "M", "1.1.1.1", "SE", 1) for i in range(4)]
    log = _log(sorted(rows))
    ctx = chunk_context(log, np.arange(0, log.height - 3, 4), size=4)
    rate = col(ctx, "rate")
    ordinary = np.abs(rate) < 1e-9
    assert ordinary.sum() >= 15  # the typical chunk of each day sits at 0, whatever the day's level
    assert rate.max() > 2.5  # the burst stands out against its own day


def test_a_context_model_saved_before_a_column_was_added_reads_its_own_columns(tmp_path, monkeypatch):
    import licanom.detectors.context as ctx
    from licanom.detectors.context import ContextDetector

    X = np.random.default_rng(4).gamma(2.0, 1.0, size=(300, len(CONTEXT_COLUMNS)))
    older = CONTEXT_COLUMNS[:-1]
    with monkeypatch.context() as m:  # a version whose vector lacked the last column
        m.setattr(ctx, "CONTEXT_COLUMNS", older)
        det = ContextDetector().fit(X[:, :-1])
        want = det.decision_function(X[:, :-1])
        path = det.save(tmp_path / "older.pkl")
    again = ContextDetector.load(path)
    assert again.explain_columns() == older
    np.testing.assert_allclose(again.decision_function(X), want, rtol=1e-12)  # today's vectors, its columns
    assert again.explain(X).shape == (len(X), len(older))
    assert (again.top_columns(X) != CONTEXT_COLUMNS[-1]).all()
    with monkeypatch.context() as m:  # a file naming a column this version does not compute
        m.setattr(ctx, "CONTEXT_COLUMNS", (*CONTEXT_COLUMNS, "from_a_later_version"))
        later = ContextDetector().fit(np.column_stack([X, X[:, 0]])).save(tmp_path / "later.pkl")
    with pytest.raises(ValueError, match="from_a_later_version"):
        ContextDetector.load(later)


def test_the_autoencoders_row_features_keep_the_twelve_counts_they_were_built_with():
    # saved autoencoders read these inputs: a context column added later must not change them
    from licanom.data.context_vector import ENCODER_ROW_COLUMNS
    from licanom.data.encode import ROW_FEATURES, ROW_REQUEST_FEATURES

    assert ROW_FEATURES == (*ROW_REQUEST_FEATURES, *ENCODER_ROW_COLUMNS) and len(ENCODER_ROW_COLUMNS) == 12
    assert "ip_failed_keys_hour" in ROW_COLUMNS and "ip_failed_keys_hour" not in ROW_FEATURES


def test_row_context_counts_only_the_columns_asked_for():
    from licanom.data.context_vector import ENCODER_ROW_COLUMNS
    from licanom.data.derive import derive
    from licanom.data.validate import validate_log
    from licanom.sim import simulate

    derived = derive(validate_log(simulate("mixed", seed=2, days=2).log).valid)
    some = row_context(derived, columns=ENCODER_ROW_COLUMNS)
    assert some.columns == list(ENCODER_ROW_COLUMNS)
    assert some.equals(row_context(derived).select(ENCODER_ROW_COLUMNS))
    with pytest.raises(ValueError, match="unknown row columns"):
        row_context(derived, columns=("no_such_count",))


def _vectors_with_failures(rng: np.random.Generator, n: int, flood: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context vectors where a fifth of the chunks hold one failure of one machine that hour, and
    (``flood``) a runaway machine fills the last third of them."""
    X = np.zeros((n, len(CONTEXT_COLUMNS)))
    col = {c: i for i, c in enumerate(CONTEXT_COLUMNS)}
    X[:, col["rate"]] = rng.gamma(4.0, 0.25, n)
    X[:, col["top_machine_share"]] = rng.uniform(0.02, 0.2, n)
    for c in ("key_requests_hour", "machine_requests_hour", "key_ips_hour", "ip_keys_hour"):
        X[:, col[c]] = np.log1p(rng.poisson(3.0, n))
    failing = rng.random(n) < 0.2
    for c in ("machine_failures_hour", "ip_failures_hour"):
        X[failing, col[c]] = np.log1p(1.0)
    X[failing, col["failure_share"]] = 0.01
    flooded = (np.arange(n) >= n - n // 3) if flood else np.zeros(n, dtype=bool)
    for c in ("key_requests_hour", "machine_requests_hour"):
        X[flooded, col[c]] = np.log1p(rng.integers(300, 600, flooded.sum()))
    X[flooded, col["top_machine_share"]] = rng.uniform(0.8, 1.0, flooded.sum())
    X[flooded, col["rate"]] *= 5.0
    return X, failing & ~flooded, flooded


def test_a_small_count_that_a_fifth_of_the_chunks_hold_stays_normal_and_a_flood_still_does_not(tmp_path):
    """The trimming starts from the lower half of the chunks, which holds no failure where a fifth
    of the chunks hold one: without a tolerance those chunks left the reference and one failure
    looked like a flood at night; with it they stay, and a flood of a third of the chunks does not."""
    from licanom.detectors.context import ContextDetector

    col = {c: i for i, c in enumerate(CONTEXT_COLUMNS)}
    X, failing, _ = _vectors_with_failures(np.random.default_rng(7), 1200, flood=False)
    one_failure = X[failing][:1]
    det = ContextDetector().fit(X)
    assert det.reference_[failing].mean() > 0.75  # trimmed as the others are, for their other columns
    z = det.explain(one_failure)[0]
    assert z[col["machine_failures_hour"]] < 3.0 and z[col["failure_share"]] < 3.0  # about log(5): a fifth
    assert det.severity(one_failure)[0] < 30
    strict = ContextDetector(trim_tolerance=0.0, trim_share_tolerance=0.0).fit(X)  # as before the tolerance
    assert not strict.reference_[failing].any()
    assert strict.explain(one_failure)[0][col["machine_failures_hour"]] > 6.0

    X, failing, flooded = _vectors_with_failures(np.random.default_rng(8), 1200, flood=True)
    det = ContextDetector().fit(X)
    assert det.reference_[failing].mean() > 0.75 and not det.reference_[flooded].any()
    assert det.severity(X[flooded][:1])[0] == 100.0 and det.severity(X[failing][:1])[0] < 30

    again = ContextDetector.load(det.save(tmp_path / "tolerant.pkl"))
    assert (again.trim_tolerance, again.trim_share_tolerance) == (det.trim_tolerance, det.trim_share_tolerance)
    with pytest.raises(ValueError, match="trim_tolerance"):
        ContextDetector(trim_tolerance=float("nan")).fit(X)


def test_a_context_model_saved_before_the_trimmings_tolerance_loads_as_fitted_without_it(tmp_path):
    import pickle

    from licanom.detectors.context import SAVE_FORMAT, ContextDetector

    X, _, _ = _vectors_with_failures(np.random.default_rng(9), 200, flood=False)
    det = ContextDetector(trim_tolerance=0.0, trim_share_tolerance=0.0).fit(X)
    path = det.save(tmp_path / "old.pkl")
    with path.open("rb") as f:
        payload = pickle.load(f)
    assert payload["format"] == SAVE_FORMAT
    payload["format"] = 6
    del payload["settings"]["trim_tolerance"], payload["settings"]["trim_share_tolerance"]
    with path.open("wb") as f:
        pickle.dump(payload, f)
    again = ContextDetector.load(path)
    assert (again.trim_tolerance, again.trim_share_tolerance) == (0.0, 0.0)
    np.testing.assert_array_equal(again.decision_function(X), det.decision_function(X))
    assert ContextDetector.load(ContextDetector().fit(X).save(tmp_path / "new.pkl")).trim_tolerance == 1.0


def test_a_context_model_saved_before_its_calibration_kept_its_latest_chunks_takes_them_from_its_scores(tmp_path):
    import pickle

    from licanom.detectors.context import ContextDetector
    from licanom.detectors.decision import RECENT_KEPT

    X, _, _ = _vectors_with_failures(np.random.default_rng(9), 200, flood=False)
    det = ContextDetector().fit(X)
    assert det.calibration_.recent == tuple(det.calibration_scores_[-RECENT_KEPT:])
    path = det.save(tmp_path / "old.pkl")
    assert ContextDetector.load(path).calibration_ == det.calibration_
    with path.open("rb") as f:
        payload = pickle.load(f)
    del payload["calibration"]["recent"]
    with path.open("wb") as f:
        pickle.dump(payload, f)
    assert ContextDetector.load(path).calibration_ == det.calibration_  # the same night rule as a new file's


def test_a_context_model_saved_before_version_2_scores_the_vectors_it_was_fitted_on(tmp_path):
    """A model file of format 7 or before was fitted on version 1's vectors (a key's spread on all
    its rows): loaded, it reads those at night, while a model fitted now reads version 2."""
    import pickle

    from licanom.config import ChunkConfig, EncodeConfig
    from licanom.data.context_vector import CONTEXT_VERSION
    from licanom.data.derive import derive
    from licanom.data.encode import Vocabulary
    from licanom.data.validate import validate_log
    from licanom.detectors.context import SAVE_FORMAT, ContextDetector
    from licanom.ops.bundle import ModelBundle, make_windows, score_windows, validate_rows
    from tests.conftest import make_raw_log

    train = validate_log(make_raw_log(800)).valid
    derived = derive(train)
    history = KeyHistory.from_rows(derived)
    starts = np.arange(0, derived.height - 20 + 1, 20)
    det = ContextDetector().fit(chunk_context(derived, starts, 20, version=1))
    path = det.save(tmp_path / "old.pkl")
    with path.open("rb") as f:
        payload = pickle.load(f)
    assert (payload["format"], payload["context_version"]) == (SAVE_FORMAT, CONTEXT_VERSION) == (8, 7)
    payload["format"] = 7
    del payload["context_version"]
    with path.open("wb") as f:
        pickle.dump(payload, f)
    old = ContextDetector.load(path)
    assert old.context_version_ == 1 and ContextDetector.load(det.save(tmp_path / "new.pkl")).context_version_ == 7

    bundle = ModelBundle(vendor="acme", detector=old, vocabulary=Vocabulary.fit(derived),
                         chunk=ChunkConfig(size=20, stride=20), encode=EncodeConfig(), product_ids=(3, 7),
                         key_history=history)
    night = train.with_columns(pl.col("Time") + timedelta(days=2), pl.col("Id") + 10_000)
    windows = make_windows(bundle, validate_rows(bundle, night).valid)
    night_starts = windows.chunks.meta["start_row"].to_numpy()
    version_1 = chunk_context(windows.encoded, night_starts, 20, history, version=1)
    version_2 = chunk_context(windows.encoded, night_starts, 20, history)
    assert not np.allclose(version_1, version_2)  # the owners' own machines: counted in 1, not in 2
    np.testing.assert_allclose(score_windows(bundle, windows)["score"].to_numpy(), old.decision_function(version_1))

    payload["format"], payload["context_version"] = 8, 8
    with path.open("wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(ValueError, match="context version 8"):
        ContextDetector.load(path)


def test_the_spread_columns_labels_say_whose_requests_carry_them() -> None:
    """A key's hourly spreads sit on its new machines' requests only (0 on the others'): a label of
    "machines using one key in an hour" alone read as 0 machines for a key of one."""
    from licanom.data.context_vector import _SPREAD_COLUMNS, CONTEXT_LABELS

    assert all("machines new that day" in CONTEXT_LABELS[c] for c in _SPREAD_COLUMNS)
    assert not any("new that day" in CONTEXT_LABELS[c] for c in CONTEXT_LABELS if c not in _SPREAD_COLUMNS)


def test_lof_context_says_why_it_cannot_fit_one_chunk():
    from licanom.detectors.context import ContextDetector

    X = np.log1p(np.random.default_rng(0).poisson(3.0, (3, len(CONTEXT_COLUMNS))).astype(float))
    det = ContextDetector("LOF_context").fit(X)
    with pytest.raises(ValueError, match="LOF_context needs at least 2 chunks"):
        det.m1_threshold(X)
