"""Naming the entity behind a flagged chunk (licanom.detectors.incidents.attribute)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from licanom.data.context_vector import CONTEXT_COLUMNS, PROFILE_SIGNAL, SCALE_SIGNAL
from licanom.detectors.incidents import _SIGNAL_ENTITY, attribute


def test_every_count_signal_names_an_entity():
    assert set(CONTEXT_COLUMNS) - {"rate", "top_machine_share"} <= set(_SIGNAL_ENTITY)


def test_failed_keys_name_the_address_that_guessed_not_the_busy_office():
    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    # the office: eight keys, all fine; the guesser: five keys, all failing; both in one chunk
    office = [("10.0.0.1", f"office-{i}", 1) for i in range(8)]
    guesser = [("203.0.113.9", f"guess-{i}", 0) for i in range(5)]
    rows = pl.DataFrame(
        [(i, t0 + timedelta(seconds=i), key, "m", ip, "NL", ok) for i, (ip, key, ok) in enumerate(office + guesser)],
        schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success"], orient="row",
    )
    flagged = pl.DataFrame({"chunk": [0, 1], "first_id": [0, 0], "last_id": [12, 12],
                            "start_time": [t0, t0], "end_time": [t0, t0], "severity": [80.0, 80.0],
                            "top_feature": ["ip_failed_keys_hour", "ip_keys_hour"]})
    named = attribute(flagged, rows).sort("chunk")
    assert named["entity_kind"].to_list() == ["address", "address"]
    assert named["entity"].to_list() == ["203.0.113.9", "10.0.0.1"]


def test_usage_names_the_key_that_used_most_not_the_busiest():
    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    # counters (the value after each increment): K-busy adds 1 twenty times, K-heavy 5,000 twice
    busy = [("K-busy", 1_000_000 + i) for i in range(20)]  # read as amounts, K-busy would lead
    heavy = [("K-heavy", 100), ("K-heavy", 5_100), ("K-heavy", 10_100)]
    rows = pl.DataFrame(
        [(i, t0 + timedelta(seconds=i), key, "m", "10.0.0.1", "NL", 1, 8010, 7, value)
         for i, (key, value) in enumerate(busy + heavy)],
        schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success", "State", "DOId", "DOIntValue"],
        orient="row",
    )
    flagged = pl.DataFrame({"chunk": [0, 1], "first_id": [0, 0], "last_id": [22, 22],
                            "start_time": [t0, t0], "end_time": [t0, t0], "severity": [80.0, 80.0],
                            "top_feature": ["key_usage_hour", "key_requests_hour"]})
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=3)  # rows in any order: usage is counted in time
    named = attribute(flagged, shuffled).sort("chunk")
    assert named["entity_kind"].to_list() == ["key", "key"]
    assert named["entity"].to_list() == ["K-heavy", "K-busy"]
    # a log without data-object values: the key with the most requests that hour
    plain = attribute(flagged.head(1), rows.drop("DOId", "DOIntValue"))
    assert plain["entity"].to_list() == ["K-busy"]


def test_a_machine_looping_as_usual_is_not_the_one_a_new_loop_is_named_by():
    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    # K1 / M1 fails 30 times an hour as it did on most training days (its level, 30); K9 / M9, new, 10
    usual = [("K1", "M1", "10.0.0.1") for _ in range(30)]
    new = [("K9", "M9", "10.0.0.9") for _ in range(10)]
    rows = pl.DataFrame(
        [(i, t0 + timedelta(seconds=i), key, mc, ip, "NL", 0) for i, (key, mc, ip) in enumerate(usual + new)],
        schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success"], orient="row",
    )
    flagged = pl.DataFrame({"chunk": [0, 1], "first_id": [0, 0], "last_id": [39, 39],
                            "start_time": [t0, t0], "end_time": [t0, t0], "severity": [80.0, 80.0],
                            "top_feature": ["machine_failures_hour", "ip_failures_hour"]})
    levels = pl.DataFrame({"signal": ["machine_failures_hour", "ip_failures_hour"], "Key": ["K1", ""],
                           "MachineCode": ["M1", ""], "IP": ["", "10.0.0.1"], "level": [30, 30]})
    assert attribute(flagged, rows)["entity"].to_list() == ["K1 / M1", "10.0.0.1"]  # plain counts: the looper
    named = attribute(flagged, rows, levels).sort("chunk")
    assert named["entity"].to_list() == ["K9 / M9", "10.0.0.9"]


def test_on_a_busy_day_the_machine_named_is_the_one_the_model_counted_above_its_day():
    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    # ten regular keys at three times their usual day (6): the day's scale is 3. At 10:00 KA / MA makes
    # 60 requests (its own level 20), KB / MB, with no level, 35: over the day's scale 20 - 20 = 0 and 12
    regular = [(f"R{k}", f"RM{k}", t0 + timedelta(seconds=k * 60 + i)) for k in range(10) for i in range(18)]
    later = t0 + timedelta(hours=1)
    a = [("KA", "MA", later + timedelta(seconds=i)) for i in range(60)]
    b = [("KB", "MB", later + timedelta(seconds=100 + i)) for i in range(35)]
    rows = pl.DataFrame(
        [(i, t, key, mc, "10.0.0.1", "NL", 1) for i, (key, mc, t) in enumerate(regular + a + b)],
        schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success"], orient="row",
    )
    first = len(regular)
    flagged = pl.DataFrame({"chunk": [0], "first_id": [first], "last_id": [rows.height - 1],
                            "start_time": [later], "end_time": [later], "severity": [80.0],
                            "top_feature": ["machine_requests_hour"]})
    levels = pl.DataFrame({"signal": ["machine_requests_hour"] + [SCALE_SIGNAL] * 10, "Key": ["KA"] + [f"R{k}" for k in range(10)],
                           "MachineCode": ["MA"] + [""] * 10, "IP": [""] * 11, "level": [20] + [6] * 10})
    assert attribute(flagged, rows, levels)["entity"].to_list() == ["KB / MB"]
    # a model without the keys' usual days (version 3) counts plainly: 60 - 20 = 40 against 35
    version_3 = levels.filter(pl.col("signal") != SCALE_SIGNAL)
    assert attribute(flagged, rows, version_3)["entity"].to_list() == ["KA / MA"]
    # with KA / MA's level at 5: over a whole usual day (version 4: scale 3) 20 - 5 = 15 against 12;
    # a model that kept the hours of the day (version 5) knows half a usual day falls at 09:00 and half at
    # 21:00, so the rows' hours hold half a day: scale 6, 10 - 5 = 5 against 6
    level_5 = levels.with_columns(pl.when(pl.col("Key") == "KA").then(5).otherwise(pl.col("level")).alias("level"))
    assert attribute(flagged, rows, level_5)["entity"].to_list() == ["KA / MA"]
    hours = pl.DataFrame({"signal": [f"{PROFILE_SIGNAL} {h:02d}" for h in range(24)], "Key": "", "MachineCode": "", "IP": "",
                          "level": [100 if h in (9, 21) else 0 for h in range(24)]}, schema=levels.schema)
    assert attribute(flagged, rows, pl.concat([level_5, hours]))["entity"].to_list() == ["KB / MB"]


def test_an_incident_over_midnight_names_the_day_it_ends():
    from licanom.detectors.incidents import group_incidents

    t0 = datetime(2025, 1, 1, 20, 13, tzinfo=timezone.utc)
    chunks = [(0, t0, t0 + timedelta(minutes=50)), (1, t0 + timedelta(hours=1), t0 + timedelta(hours=23))]
    attributed = pl.DataFrame(
        [(c, 10 * c, 10 * c + 9, start, end, 70.0, "key_requests_hour", "key", "K1") for c, start, end in chunks],
        schema=["chunk", "first_id", "last_id", "start_time", "end_time", "severity", "top_feature", "entity_kind",
                "entity"], orient="row")
    both, first = group_incidents(attributed), group_incidents(attributed.head(1))
    assert both["description"].to_list() == [
        "key K1: 2 flagged chunk(s) from 2025-01-01 20:13 to 2025-01-02 19:13, mostly requests of one key in an hour"]
    assert first["description"].to_list() == [
        "key K1: 1 flagged chunk(s) from 2025-01-01 20:13 to 21:03, mostly requests of one key in an hour"]


def test_rows_without_an_address_or_machine_code_name_none():
    from licanom.detectors.incidents import NO_ADDRESS, NO_MACHINE_CODE

    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    # twenty keys' requests without an address (a platform that does not log it), three from a real one
    blank = [("", f"K{i}", "") for i in range(20)]
    real = [("198.51.100.7", f"R{i}", "m1") for i in range(3)]
    rows = pl.DataFrame(
        [(i, t0 + timedelta(seconds=i), key, mc, ip, "NL", 1) for i, (ip, key, mc) in enumerate(blank + real)],
        schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success"], orient="row",
    )
    flagged = pl.DataFrame({"chunk": [0, 1, 2], "first_id": [0, 0, 0], "last_id": [22, 19, 19],
                            "start_time": [t0] * 3, "end_time": [t0] * 3, "severity": [80.0] * 3,
                            "top_feature": ["ip_keys_hour", "ip_keys_hour", "machine_requests_hour"]})
    named = attribute(flagged, rows).sort("chunk")
    assert named["entity"].to_list() == ["198.51.100.7", NO_ADDRESS, f"K0 / {NO_MACHINE_CODE}"]


def test_one_customers_flood_is_one_incident_named_by_its_key():
    from licanom.detectors.incidents import ENTITY_KEY, group_incidents

    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    # K1's flood: its chunks named by the machine, then by the key, then the machine again; K2's machine
    # in the same hours, and K1's machine again six hours later (a new incident)
    named = [("machine", "K1 / M1", "K1", 0), ("key", "K1", "K1", 1), ("machine", "K1 / M1", "K1", 2),
             ("machine", "K2 / M2", "K2", 1), ("machine", "K1 / M1", "K1", 8), ("address", "10.0.0.1", None, 1)]
    attributed = pl.DataFrame(
        [(c, 10 * c, 10 * c + 9, t0 + h * hour, t0 + h * hour + timedelta(minutes=50), 60.0 + c,
          "machine_requests_hour" if kind == "machine" else "key_requests_hour", kind, entity, key)
         for c, (kind, entity, key, h) in enumerate(named)],
        schema=["chunk", "first_id", "last_id", "start_time", "end_time", "severity", "top_feature", "entity_kind",
                "entity", ENTITY_KEY], orient="row")
    out = group_incidents(attributed).sort("start_time", "entity")
    assert out.select("entity_kind", "entity", "chunks").rows() == [
        ("key", "K1", 3), ("address", "10.0.0.1", 1), ("machine", "K2 / M2", 1), ("machine", "K1 / M1", 1)]
    assert out.filter(pl.col("entity") == "K1").row(0, named=True)["first_id"] == 0
    assert out.filter(pl.col("entity") == "K1").row(0, named=True)["last_id"] == 29
    assert out["chunks"].sum() == attributed.height  # every flagged chunk in one incident
    # without the keys behind the machines (a frame attributed elsewhere): by entity, as before
    assert group_incidents(attributed.drop(ENTITY_KEY)).height == 6
    # a machine's run between two runs of its key, each within the gap: all three one incident
    bridged = [("key", "K1", "K1", 0.0, 0.8), ("machine", "K1 / M1", "K1", 1.0, 2.3), ("key", "K1", "K1", 2.5, 3.3)]
    attributed = pl.DataFrame(
        [(c, 10 * c, 10 * c + 9, t0 + h0 * hour, t0 + h1 * hour, 60.0, "key_requests_hour", kind, entity, key)
         for c, (kind, entity, key, h0, h1) in enumerate(bridged)],
        schema=["chunk", "first_id", "last_id", "start_time", "end_time", "severity", "top_feature", "entity_kind",
                "entity", ENTITY_KEY], orient="row")
    assert group_incidents(attributed).select("entity", "chunks").rows() == [("K1", 3)]


def test_a_days_signal_names_the_key_with_the_most_that_day_not_the_first_in_the_chunk():
    """``key_new_countries_day`` counts a key's day: the key seen from eight countries over the
    day, one an hour, is the one named, not a key of one country whose row comes first."""
    t0 = datetime(2025, 1, 1, 0, tzinfo=timezone.utc)
    countries = ["US", "JP", "FR", "DE", "BR", "IN", "AU", "ZA"]
    spread = [(100 + h, t0 + timedelta(hours=h, minutes=30), "K-spread", f"m{h}", f"10.0.0.{h}", cc, 1)
              for h, cc in enumerate(countries)]
    homely = [(h, t0 + timedelta(hours=h, minutes=10), "K-home", "m", "10.1.1.1", "US", 1) for h in range(8)]
    rows = pl.DataFrame(homely + spread, schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success"],
                        orient="row").sort("Time")
    t = t0 + timedelta(hours=7)
    flagged = pl.DataFrame({"chunk": [0], "first_id": [0], "last_id": [200], "start_time": [t], "end_time": [t],
                            "severity": [80.0], "top_feature": ["key_new_countries_day"]})
    assert attribute(flagged, rows)["entity"].to_list() == ["K-spread"]


def test_a_chunk_names_its_own_rows_where_ids_do_not_follow_time():
    """Rows exported late under new Ids: a chunk's rows are its positions in (Time, Id) order, as it
    was cut. By the range of its Ids, chunk 1 (first Id 91, last 13) held no row, and the night
    failed ("cannot concat empty list"); chunk 0 (Ids 10..90) held chunk 1's rows and named K2."""
    from licanom.detectors.incidents import group_incidents

    t0 = datetime(2025, 1, 1, 9, tzinfo=timezone.utc)
    ids = [10, 11, 90, 91, 12, 13, 14, 15, 16, 17]
    keys = ["K1", "K1", "K1", "K2", "K2", "K2", "K2", "K2", "K2", "K2"]
    rows = pl.DataFrame(
        [(i, t0 + timedelta(seconds=n), key, "m", "10.0.0.1", "NL", 1) for n, (i, key) in enumerate(zip(ids, keys))],
        schema=["Id", "Time", "Key", "MachineCode", "IP", "country", "success"], orient="row",
    ).sample(fraction=1.0, shuffle=True, seed=3)  # in any order: the time tells
    flagged = pl.DataFrame({"chunk": [0, 1], "first_id": [10, 91], "last_id": [90, 13],
                            "start_time": [t0, t0 + timedelta(seconds=3)], "end_time": [t0 + timedelta(seconds=2), t0 + timedelta(seconds=5)],
                            "severity": [80.0, 70.0], "top_feature": ["key_requests_hour", "key_requests_hour"]})
    named = attribute(flagged, rows).sort("chunk")
    assert named["entity"].to_list() == ["K1", "K2"]
    assert sorted(group_incidents(named)["entity"].to_list()) == ["K1", "K2"]
    # a chunk none of whose rows are given names no one, and the night goes on
    alone = attribute(flagged.with_columns(pl.lit(999).alias("first_id"), pl.lit(1000).alias("last_id")), rows)
    assert alone["entity"].null_count() == 2 and group_incidents(alone).height == 1
