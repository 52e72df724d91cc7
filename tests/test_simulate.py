"""The vendor-log simulator: schema, determinism, realism checks and planted anomalies."""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import polars as pl
import pytest
from iptocc import country_code
from polars.testing import assert_frame_equal

from licanom.data.columns import RAW
from licanom.sim import (
    ANOMALY_KINDS,
    LATE_KINDS,
    PROFILES,
    SimulatedLog,
    anomalous_share,
    simulate,
    simulate_share,
)
from licanom.data.states import MethodGroup, decode

LOG_DTYPES = {
    "Id": pl.Int64,
    "ProductId": pl.Int64,
    "Key": pl.Utf8,
    "IP": pl.Utf8,
    "Time": pl.Datetime("us", "UTC"),
    "State": pl.Int64,
    "MachineCode": pl.Utf8,
    "FriendlyName": pl.Utf8,
    "FloatingExpires": pl.Datetime("us", "UTC"),
    "DOIntValue": pl.Int64,
    "DOId": pl.Int64,
}
# Rows the vendor's own backend writes (key creation, renewals, blocks, counter resets): they
# carry a customer's key but the vendor's address.
BACKEND_STATES = (3010, 7010, 7011, 8012)


@functools.cache
def small(profile: str, seed: int = 3, days: int = 14, customers: int = 5) -> SimulatedLog:
    return simulate(profile, seed, days=days, customers=customers)


def normal_rows(sim: SimulatedLog) -> pl.DataFrame:
    return sim.log.join(sim.labels.select("Id"), on="Id", how="anti")


@pytest.mark.parametrize(
    "bad",
    [
        {"profile": "nope"},
        {"days": 0},
        {"customers": 0},
        {"anomaly_rate": -1.0},
        {"event_scale": 0.0},
        {"growth_per_month": -0.1},
        {"storms": -1},
    ],
)
def test_bad_arguments_rejected(bad):
    args = {"profile": "floating", "seed": 0, "days": 3, "customers": 2} | bad
    with pytest.raises(ValueError):
        simulate(args.pop("profile"), args.pop("seed"), **args)


def test_same_seed_same_frames():
    a = simulate("mixed", 11, days=10, customers=4)
    b = simulate("mixed", 11, days=10, customers=4)
    assert_frame_equal(a.log, b.log)
    assert_frame_equal(a.labels, b.labels)
    assert_frame_equal(a.events, b.events)


def test_different_seeds_differ():
    a = simulate("mixed", 11, days=10, customers=4)
    b = simulate("mixed", 12, days=10, customers=4)
    assert not a.log.equals(b.log)
    assert set(a.log["Key"]).isdisjoint(set(b.log["Key"]))


@pytest.mark.parametrize("profile", PROFILES)
def test_log_schema_exact(profile):
    sim = small(profile)
    assert tuple(sim.log.columns) == RAW
    assert dict(sim.log.schema) == LOG_DTYPES
    assert dict(sim.labels.schema) == {"Id": pl.Int64, "event": pl.Int64, "kind": pl.Utf8}
    assert dict(sim.events.schema) == {
        "event": pl.Int64,
        "kind": pl.Utf8,
        "start_time": pl.Datetime("us", "UTC"),
        "end_time": pl.Datetime("us", "UTC"),
        "key": pl.Utf8,
        "ip": pl.Utf8,
        "n_rows": pl.Int64,
        "description": pl.Utf8,
    }
    for column in ("Id", "ProductId", "Key", "IP", "Time", "State", "MachineCode"):
        assert sim.log[column].null_count() == 0, column


@pytest.mark.parametrize("profile", PROFILES)
def test_ids_unique_and_increasing_with_time(profile):
    log = small(profile).log
    assert log.height > 100
    assert log["Id"].min() >= 1
    assert (log["Id"].diff().drop_nulls() > 0).all()
    assert log["Time"].is_sorted()
    start, end = log["Time"].min(), log["Time"].max()
    assert start.year == 2025 and (end - start).days < 14
    assert (log["Time"].dt.microsecond() == 0).all()  # the Web API Log keeps whole seconds


@pytest.mark.parametrize("profile", PROFILES)
def test_every_state_decodes(profile):
    for state in small(profile).log["State"].unique().to_list():
        decode(state)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_anomaly_kind_is_planted(profile):
    sim = small(profile)
    assert set(sim.labels["kind"]) == set(ANOMALY_KINDS)
    assert set(sim.events["kind"]) == set(ANOMALY_KINDS)
    assert sim.events["n_rows"].min() >= 10
    assert (sim.events["end_time"] >= sim.events["start_time"]).all()


@pytest.mark.parametrize("profile", PROFILES)
def test_labels_point_at_log_rows(profile):
    sim = small(profile)
    labels = sim.labels
    assert labels["Id"].is_unique().all()
    assert labels["Id"].is_in(sim.log["Id"].implode()).all()
    per_event = labels.group_by("event").agg(pl.len().alias("rows"), pl.col("kind").first())
    joined = sim.events.join(per_event, on="event")
    assert joined.height == sim.events.height
    assert (joined["rows"] == joined["n_rows"]).all()
    assert (joined["kind"] == joined["kind_right"]).all()
    assert labels.height < sim.log.height


def test_anomalies_only_add_rows():
    """Anomalies are injected on top: without them the normal rows are the same."""
    with_anomalies = simulate("usage-based", 4, days=10, customers=4)
    without = simulate("usage-based", 4, days=10, customers=4, anomaly_rate=0.0)
    assert without.labels.height == 0 and without.events.height == 0
    assert_frame_equal(normal_rows(with_anomalies).drop("Id"), without.log.drop("Id"))


def test_anomaly_rate_scales_events():
    few = simulate("floating", 2, days=60, customers=4, anomaly_rate=0.5)
    many = simulate("floating", 2, days=60, customers=4, anomaly_rate=3.0)
    assert many.events.height > few.events.height


@pytest.mark.parametrize("profile", PROFILES)
def test_normal_traffic_stays_in_one_country_per_key(profile):
    normal = normal_rows(small(profile)).filter(~pl.col("State").is_in(BACKEND_STATES))
    ips = normal["IP"].unique().to_list()
    countries = dict(zip(ips, country_code(ips), strict=True))
    with_cc = normal.with_columns(cc=pl.col("IP").replace_strict(countries, default=None))
    assert with_cc["cc"].null_count() / with_cc.height < 0.01
    share = (
        with_cc.group_by("Key", "cc")
        .len()
        .group_by("Key")
        .agg(
            (pl.col("len").max() / pl.col("len").sum()).alias("share"),
            pl.col("len").sum().alias("rows"),
        )
        .filter(pl.col("rows") >= 10)
    )
    assert share.height > 0
    assert share["share"].median() > 0.95
    assert (share["share"] > 0.8).mean() > 0.9


@pytest.mark.parametrize("profile", PROFILES)
def test_key_and_machine_code_formats(profile):
    log = small(profile).log
    assert log["Key"].str.contains(r"^[A-Z]{5}-[A-Z]{5}-[A-Z]{5}-[A-Z]{5}$").all()
    assert log["MachineCode"].str.contains(r"^[0-9a-fA-F-]*$").all()
    assert log["ProductId"].n_unique() <= 5


def test_floating_profile_sets_floating_expires():
    normal = normal_rows(small("floating"))
    heartbeats = normal.filter(pl.col("State") == 1011)
    assert heartbeats.height > 0.5 * normal.height
    assert heartbeats["FloatingExpires"].null_count() == 0
    window = (heartbeats["FloatingExpires"] - heartbeats["Time"]).dt.total_seconds()
    assert window.min() >= 60 and window.max() <= 3600
    assert normal.filter(pl.col("State") // 100 == MethodGroup.DATA_OBJECT).height == 0


def test_usage_based_profile_counts_usage():
    normal = normal_rows(small("usage-based"))
    usage = normal.filter(pl.col("State") // 100 == MethodGroup.DATA_OBJECT)
    assert usage.height > 0.3 * normal.height
    assert usage["DOIntValue"].null_count() == 0
    assert usage["DOId"].null_count() == 0
    assert normal["FloatingExpires"].null_count() == normal.height


def test_node_locked_profile_has_little_data_and_no_heartbeats():
    node = normal_rows(small("node-locked"))
    floating = normal_rows(small("floating"))
    assert node.height < floating.height
    assert node["FloatingExpires"].null_count() == node.height
    assert node.filter(pl.col("State") // 100 == MethodGroup.ACTIVATION).height > 0


def test_mixed_profile_has_all_three_models():
    normal = normal_rows(small("mixed", customers=8))
    assert normal["FloatingExpires"].null_count() < normal.height
    assert normal["DOIntValue"].null_count() < normal.height
    assert normal.filter(pl.col("State").is_in([2010, 2011, 1010])).height > 0


def test_base_failure_rate_is_realistic():
    normal = normal_rows(simulate("floating", 8, days=21, customers=8))
    failed = (normal["State"] // 10 % 10 == 2).mean()
    assert 0.003 < failed < 0.06


def test_weekends_are_quieter_for_business_software():
    normal = normal_rows(simulate("floating", 1, days=28, customers=12))
    per_day = (
        normal.group_by(pl.col("Time").dt.date().alias("day"))
        .len()
        .with_columns(weekend=pl.col("day").dt.weekday() >= 6)
    )
    weekday_mean = per_day.filter(~pl.col("weekend"))["len"].mean()
    weekend_mean = per_day.filter(pl.col("weekend"))["len"].mean()
    assert weekend_mean < weekday_mean


def test_customers_scale_the_vendor():
    assert (
        simulate("node-locked", 5, days=20, customers=40).log.height
        > simulate("node-locked", 5, days=20, customers=4).log.height
    )


def test_write_round_trips(tmp_path):
    sim = small("mixed")
    out = tmp_path / "nested" / "sim"
    sim.write(out)
    assert_frame_equal(pl.read_parquet(out / "log.parquet"), sim.log)
    assert_frame_equal(pl.read_parquet(out / "labels.parquet"), sim.labels)
    events = pl.read_csv(out / "events.csv", try_parse_dates=True)
    assert events["event"].to_list() == sim.events["event"].to_list()
    assert events["n_rows"].to_list() == sim.events["n_rows"].to_list()


@pytest.mark.slow
def test_floating_year_at_default_size_is_millions_of_rows():
    sim = simulate("floating", 0, days=365)
    assert 1_500_000 < sim.log.height < 6_000_000
    assert 0.001 < sim.labels.height / sim.log.height < 0.05


# ---------------------------------------------------------------------------------------------
# Knobs that vary the world (the robustness sweep) and the late anomaly kinds


def frames_digest(sim: SimulatedLog) -> str:
    digest = hashlib.sha256()
    for frame in (sim.log, sim.labels, sim.events):
        digest.update(frame.write_csv().encode())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(
    ("profile", "seed", "days", "customers", "expected"),
    [
        # Digests of the frames written by the simulator before its knobs existed.
        ("floating", 2, 7, None, "1ab94a6e538c39fb"),
        ("node-locked", 3, 9, 6, "4b99ec50d8993fb4"),
        ("mixed", 3, 9, 6, "2805854e50c0721d"),
    ],
)
def test_default_arguments_give_the_frames_of_before(profile, seed, days, customers, expected):
    assert frames_digest(simulate(profile, seed, days=days, customers=customers)) == expected


def test_event_scale_grows_events_not_normal_traffic():
    rows = {}
    for scale in (1 / 3, 1.0, 3.0):
        sims = [simulate("mixed", seed, days=10, customers=4, event_scale=scale) for seed in (1, 2)]
        rows[scale] = sum(sim.labels.height for sim in sims)
        for sim, seed in zip(sims, (1, 2), strict=True):
            plain = simulate("mixed", seed, days=10, customers=4, anomaly_rate=0.0)
            assert_frame_equal(normal_rows(sim).drop("Id"), plain.log.drop("Id"))
    assert rows[1 / 3] < rows[1.0] < rows[3.0]
    assert rows[3.0] > 2 * rows[1.0]


def test_growth_adds_traffic_later_and_keeps_the_rest():
    flat = simulate("node-locked", 4, days=30, customers=30)
    grown = simulate("node-locked", 4, days=30, customers=30, growth_per_month=0.5)
    # Anomalies do not change; every row of the ungrown vendor is still there.
    assert_frame_equal(grown.events, flat.events)
    columns = ["Key", "IP", "Time", "State", "MachineCode"]
    lost = flat.log.select(columns).join(grown.log.select(columns), on=columns, how="anti")
    assert lost.is_empty()

    def normal_per_third(sim: SimulatedLog) -> list[int]:
        day = normal_rows(sim)["Time"].dt.ordinal_day()
        return [int(((day > 10 * i) & (day <= 10 * (i + 1))).sum()) for i in range(3)]

    before, after = normal_per_third(flat), normal_per_third(grown)
    assert after[2] / before[2] > 1.15  # about 1.5 ** (25 / 30) - 1 more at the end
    assert after[2] / before[2] > after[0] / before[0]
    # New customers: keys created by the vendor's backend (state 3010) during the log.
    created = [sim.log.filter(pl.col("State") == 3010)["Key"].n_unique() for sim in (flat, grown)]
    assert created[1] > created[0]


def test_lookalikes_are_unlabelled_normal_traffic():
    plain = simulate("floating", 6, days=14, customers=12)
    alike = simulate("floating", 6, days=14, customers=12, lookalikes=True)
    assert_frame_equal(alike.events, plain.events)
    assert alike.labels.height == plain.labels.height
    assert alike.log.height > plain.log.height
    columns = ["Key", "IP", "Time", "State", "MachineCode"]
    added = normal_rows(alike).select(columns).join(
        plain.log.select(columns), on=columns, how="anti"
    )
    assert added.height > 0.005 * plain.log.height
    # A build farm: one key activated from many fresh machine codes on one day.
    farm = added.filter(pl.col("State").is_in([2010, 2012]))
    per_day = farm.group_by("Key", pl.col("Time").dt.date()).agg(pl.col("MachineCode").n_unique())
    assert per_day["MachineCode"].max() >= 3
    # Trial expiries: failed requests of an expired key (detail 2).
    assert added.filter(pl.col("State") % 100 == 22).height > 0


@functools.cache
def late(kinds: tuple[str, ...]) -> SimulatedLog:
    return simulate("node-locked", 5, days=8, kinds=kinds)


def test_late_kinds_only_when_asked():
    assert not set(small("mixed").labels["kind"]) & set(LATE_KINDS)
    assert set(LATE_KINDS).isdisjoint(ANOMALY_KINDS)
    only_late = late(LATE_KINDS)
    assert set(only_late.labels["kind"]) == set(LATE_KINDS)
    assert set(only_late.events["kind"]) == set(LATE_KINDS)
    both = late(ANOMALY_KINDS + LATE_KINDS)
    assert set(both.labels["kind"]) == set(ANOMALY_KINDS + LATE_KINDS)
    # The original kinds are the same events whether or not the late ones are added.
    original = both.events.filter(pl.col("kind").is_in(ANOMALY_KINDS)).drop("event")
    assert_frame_equal(original, late(ANOMALY_KINDS).events.drop("event"))


def test_late_kinds_look_as_described():
    sim = late(LATE_KINDS)
    rows = sim.log.join(sim.labels, on="Id")
    for event in sim.events.iter_rows(named=True):
        mine = rows.filter(pl.col("event") == event["event"])
        if event["kind"] == "country_jump":
            assert 3 <= mine.height <= 10
            assert mine["Key"].n_unique() == 1
            ips = mine["IP"].unique().to_list()
            abroad = set(country_code(ips))
            key = mine["Key"][0]
            usual = normal_rows(sim).filter(pl.col("Key") == key)["IP"].unique().to_list()
            assert abroad.isdisjoint(set(country_code(usual)))
        elif event["kind"] == "machine_cloning":
            assert mine["MachineCode"].n_unique() == 1
            assert 5 <= mine["Key"].n_unique() <= 40
        else:  # credential_stuffing: many addresses, each only a few failed attempts
            assert mine["IP"].n_unique() >= 50
            assert mine.group_by("IP").len()["len"].max() <= 6
            assert (mine["State"] // 10 % 10 == 2).all()


def test_unknown_kind_refused_by_name():
    with pytest.raises(ValueError, match="teleport"):
        simulate("floating", 0, days=3, customers=2, kinds=("brute_force", "teleport"))


def test_anomalous_share_counts_full_windows_holding_a_label():
    log = small("usage-based").log.head(10)
    labels = pl.DataFrame(
        {"Id": log["Id"].gather([3, 9]), "event": [0, 0], "kind": ["brute_force"] * 2}
    )
    sim = SimulatedLog(log=log, labels=labels, events=small("usage-based").events.head(1))
    assert anomalous_share(sim, size=5) == 1.0
    assert anomalous_share(sim, size=4) == 0.5  # rows 8 and 9 form no full window
    assert anomalous_share(sim, size=20) == 0.0


def test_simulate_share_lands_near_the_target():
    sim = simulate_share("usage-based", 7, 14, 0.25, tolerance=0.02)
    assert abs(anomalous_share(sim) - 0.25) <= 0.02
    assert sim.labels["Id"].is_in(sim.log["Id"].implode()).all()
    per_event = sim.labels.group_by("event").len()
    assert per_event.height == sim.events.height
    assert sim.events["event"].to_list() == list(range(sim.events.height))
    # The normal traffic is the vendor's own, whatever share is asked for.
    plain = simulate("usage-based", 7, days=14, anomaly_rate=0.0)
    assert_frame_equal(normal_rows(sim).drop("Id"), plain.log.drop("Id"))
    assert np.all(np.diff(sim.log["Id"].to_numpy()) > 0)


def test_simulate_share_keeps_its_own_levers():
    with pytest.raises(ValueError, match="anomaly_rate"):
        simulate_share("usage-based", 7, 14, 0.25, anomaly_rate=2.0)
    with pytest.raises(ValueError, match="share"):
        simulate_share("usage-based", 7, 14, 1.5)
