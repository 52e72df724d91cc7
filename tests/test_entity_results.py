"""Entity results: the contract, small planted events found, save/load (licanom.detectors.entities)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from licanom.data.context_vector import KeyHistory
from licanom.data.derive import derive
from licanom.detectors.decision import DEFAULT_MIN_SEVERITY
from licanom.detectors.entities import (
    ENTITY_COLUMNS, ENTITY_KINDS, ENTITY_SCHEMA, MIN_PEER_KEYS, EntityModel, country_distances, peer_groups,
    tail_calibration,
)
from licanom.sim import simulate
from licanom.data.states import MethodGroup, make_state

TRAIN_DAYS = 14
CLONE_KEYS = 10  # the simulator's machine_cloning puts a machine code under 5 to 40 keys
ACTIVATE = make_state(MethodGroup.ACTIVATION, True, 0)
VERIFY = make_state(MethodGroup.VALIDATION, True, 0)


def _add(log: pl.DataFrame, rows: list[dict]) -> tuple[pl.DataFrame, list[int]]:
    """Append planted rows (new Ids after the log's largest) in the log's schema."""
    first = int(log["Id"].max()) + 1
    ids = list(range(first, first + len(rows)))
    extra = pl.DataFrame([{**r, "Id": i} for r, i in zip(rows, ids, strict=True)]).select(
        [pl.col(c).cast(log.schema[c]) if c in rows[0] or c == "Id" else pl.lit(None, log.schema[c]).alias(c)
         for c in log.columns])
    return pl.concat([log, extra]).sort("Time", "Id"), ids


@pytest.fixture(scope="module")
def planted() -> dict:
    """A small normal floating vendor (no injected anomalies), trained on its first days; in the
    later days one key is used for three requests from a far country ten minutes after its own
    request, by a machine code new to it, and one key's machine code appears under ten other keys
    within three hours, from two addresses."""
    log = derive(simulate("floating", seed=5, days=TRAIN_DAYS + 3, anomaly_rate=0.0).log)
    cut = log["Time"].min().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=TRAIN_DAYS)
    train = log.filter(pl.col("Time") < cut)
    later = log.filter(pl.col("Time") >= cut)
    # a typical key (median traffic among those with a training history) and its request in the
    # second later day, from its usual country
    usual = (train.group_by("Key").agg(pl.col("Time").dt.truncate("1d").n_unique().alias("days"),
                                         pl.len().alias("n"), pl.col("country").mode().first().alias("home"))
             .filter(pl.col("days") >= 5))
    usual = usual.with_columns((pl.col("n") - pl.col("n").median()).abs().alias("_d")).sort("_d", "Key")
    day2 = later.filter(pl.col("Time").dt.truncate("1d") == cut + timedelta(days=1))
    anchor = (day2.join(usual, on="Key").filter((pl.col("country") == pl.col("home"))
                                                & (pl.col("Time").dt.hour().is_between(9, 18)))
              .sort("_d", "Key", "Time").row(0, named=True))
    addresses = log.select("IP", "country").unique("IP").filter(pl.col("country") != "ZZ")
    km = country_distances(addresses["country"], pl.Series([anchor["home"]] * addresses.height))
    far_ip = addresses.filter(pl.Series(km >= 6000.0)).sort("IP").row(0, named=True)
    jump_rows = [{"ProductId": anchor["ProductId"], "Key": anchor["Key"], "IP": far_ip["IP"],
                  "Time": anchor["Time"] + timedelta(minutes=m), "State": state, "MachineCode": "planted-traveller"}
                 for m, state in ((10, ACTIVATE), (12, VERIFY), (15, VERIFY))]
    raw = simulate("floating", seed=5, days=TRAIN_DAYS + 3, anomaly_rate=0.0).log
    raw, jump_ids = _add(raw, jump_rows)
    # the cloned machine code: a machine of a key from the training days, under six other keys
    owner = train.filter(pl.col("MachineCode") != "").group_by("Key", "MachineCode").len().sort("len", "Key").row(-1, named=True)
    others = usual.filter(pl.col("Key") != owner["Key"]).sort("Key")["Key"].head(CLONE_KEYS).to_list()
    products = dict(train.select("Key", "ProductId").unique("Key").iter_rows())
    t0 = cut + timedelta(days=2, hours=3)
    clone_rows = [{"ProductId": products[k], "Key": k, "IP": ("81.2.69.160", "8.8.8.8")[i % 2], "Time": t0 + timedelta(minutes=20 * i),
                   "State": ACTIVATE, "MachineCode": owner["MachineCode"]} for i, k in enumerate(others)]
    raw, clone_ids = _add(raw, clone_rows)
    full = derive(raw)
    model = EntityModel().fit(full.filter(pl.col("Time") < cut))
    night = full.filter(pl.col("Time") >= cut)
    return {"model": model, "night": night, "train": full.filter(pl.col("Time") < cut), "jump_ids": jump_ids,
            "clone_ids": clone_ids, "jump_key": anchor["Key"], "clone_mc": owner["MachineCode"],
            "entities": model.score(night)}


def _holding(entities: pl.DataFrame, ids: list[int], night: pl.DataFrame) -> pl.DataFrame:
    """The entities whose rows include one of ``ids``."""
    rows = night.filter(pl.col("Id").is_in(ids))
    keys = set(rows["Key"].to_list())
    mcs = set(rows["MachineCode"].to_list())
    ips = set(rows["IP"].to_list())
    day = rows["Time"].dt.truncate("1d").min()
    return entities.filter(
        (pl.col("first_id") <= max(ids)) & (pl.col("last_id") >= min(ids))
        & (((pl.col("entity_kind") == "key-day") & pl.col("key").is_in(list(keys)) & (pl.col("start_time").dt.truncate("1d") == day))
           | ((pl.col("entity_kind") == "key-machine") & pl.col("machine_code").is_in(list(mcs)))
           | ((pl.col("entity_kind") == "address-hour") & pl.col("address").is_in(list(ips)))))


def test_contract(planted: dict) -> None:
    out, night = planted["entities"], planted["night"]
    assert out.columns == list(ENTITY_COLUMNS)
    assert dict(out.schema) == ENTITY_SCHEMA
    assert set(out["entity_kind"].unique()) == set(ENTITY_KINDS)
    sev = out["severity"].to_numpy()
    assert np.isfinite(sev).all() and sev.min() >= 0.0 and sev.max() <= 100.0
    assert (out["is_anomaly"] == (out["severity"] >= DEFAULT_MIN_SEVERITY)).all()
    assert (out["first_id"] <= out["last_id"]).all() and (out["start_time"] <= out["end_time"]).all()
    # reasons on every flagged entity and only there
    assert out.filter(pl.col("is_anomaly"))["reasons"].null_count() == 0
    assert out.filter(~pl.col("is_anomaly"))["reasons"].null_count() == out.filter(~pl.col("is_anomaly")).height
    # every row covered: its key-day and its address-hour span its Id, and they count every row
    for kind, col, bucket, by in (("key-day", "key", "1d", "Key"), ("address-hour", "address", "1h", "IP")):
        ents = out.filter(pl.col("entity_kind") == kind)
        assert ents["requests"].sum() == night.height
        joined = night.select("Id", pl.col(by).alias(col), pl.col("Time").dt.truncate(bucket).alias("_b")).join(
            ents.select(col, pl.col("start_time").dt.truncate(bucket).alias("_b"), "first_id", "last_id"),
            on=[col, "_b"], how="left")
        assert joined["first_id"].null_count() == 0
        assert ((joined["Id"] >= joined["first_id"]) & (joined["Id"] <= joined["last_id"])).all()
    # sorted most severe first
    assert (np.diff(sev) <= 1e-9).all()


def test_planted_country_jump_found(planted: dict) -> None:
    hits = _holding(planted["entities"], planted["jump_ids"], planted["night"])
    key_day = hits.filter(pl.col("entity_kind") == "key-day")
    assert key_day.height == 1 and key_day["key"][0] == planted["jump_key"]
    assert key_day["is_anomaly"][0], key_day.select("severity", "reasons")
    assert "far country" in key_day["reasons"][0]


def test_planted_cloned_machine_found(planted: dict) -> None:
    hits = _holding(planted["entities"], planted["clone_ids"], planted["night"])
    clones = hits.filter((pl.col("entity_kind") == "key-machine") & (pl.col("machine_code") == planted["clone_mc"]))
    assert clones.height >= CLONE_KEYS
    assert clones["is_anomaly"].any(), clones.select("entity", "severity", "reasons")
    assert "keys using this machine code" in " ".join(clones.filter(pl.col("is_anomaly"))["reasons"].to_list())


def test_few_normal_entities_flagged(planted: dict) -> None:
    out = planted["entities"]
    planted_ids = planted["jump_ids"] + planted["clone_ids"]
    normal = out.join(_holding(out, planted_ids, planted["night"]).select("entity_kind", "entity", "start_time"),
                      on=["entity_kind", "entity", "start_time"], how="anti")
    assert normal.height > 500
    assert normal["is_anomaly"].mean() < 0.01


def test_save_load_identical(planted: dict, tmp_path) -> None:
    model, night = planted["model"], planted["night"]
    path = model.save(tmp_path / "entities.pkl")
    assert not list(tmp_path.glob("*.tmp"))
    again = EntityModel.load(path)
    assert again.describe() == model.describe()
    assert again.score(night).equals(planted["entities"])


def test_seen_pairs_are_not_new(planted: dict) -> None:
    """The pairs of the nights scored since training (the vendor's state) are the key's past too."""
    model, night = planted["model"], planted["night"]
    seen = KeyHistory.from_rows(night)
    feats = model.features(night, seen)["key-day"]
    assert feats["new_machines"].sum() == 0 and feats["new_countries"].sum() == 0
    assert model.features(night)["key-day"]["new_machines"].sum() > 0


def test_bad_input_and_unfitted() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        EntityModel().score(pl.DataFrame({"Id": [1]}))
    with pytest.raises(ValueError, match="derived columns"):
        EntityModel().fit(pl.DataFrame({"Id": [1], "Time": [0]}))
    with pytest.raises(ValueError, match="entity kind"):
        EntityModel(kinds=("key-week",)).fit(pl.DataFrame({"Id": [1]}))


def test_load_refuses_other_files(tmp_path) -> None:
    bad = tmp_path / "x.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable entity model"):
        EntityModel.load(bad)


def test_far_countries_and_tail_calibration() -> None:
    km = country_distances(pl.Series(["DE", "DE", "US", "ZZ"]), pl.Series(["FR", "JP", "CA", "DE"]))
    assert km[0] < 1500 and km[1] > 6000 and km[2] < 1500 and np.isnan(km[3])
    rng = np.random.default_rng(0)
    scores = np.concatenate([np.zeros(500), rng.exponential(2.0, 500)])
    cal = tail_calibration(scores)
    sev = cal.severity(np.array([0.0, 5.0, 40.0, 1e6]))
    assert sev[0] < 10.0 and sev[0] < sev[1] < sev[2] <= 100.0 and sev[3] == 100.0


# --- peers per product and licence model ------------------------------------------------------


def _two_product_vendor(n_node: int, n_floating: int, days: int, seed: int = 0) -> pl.DataFrame:
    """Derived rows of a constructed vendor: product 101's node-locked keys (one machine code and
    address each, about 3 requests a day, no failures) and product 202's floating keys (one
    machine code, about 60 requests a day carrying FloatingExpires, from 3 addresses, 8% failed)."""
    rng = np.random.default_rng(seed)
    start = pl.datetime(2025, 3, 1, time_zone="UTC")
    parts = []
    for d in range(days):
        for i in range(n_node + n_floating):
            floating = i >= n_node
            n = int(60 + rng.poisson(12)) if floating else int(1 + rng.poisson(2))
            seconds = np.sort(rng.uniform(8 * 3600, 18 * 3600, n)).astype(np.int64)
            key = f"F{i:03d}" if floating else f"N{i:03d}"
            parts.append(pl.DataFrame({
                "Key": [key] * n, "ProductId": [202 if floating else 101] * n,
                "_s": d * 86_400 + seconds,
                "IP": [f"10.{int(floating)}.{i}.{a}" for a in (rng.integers(0, 3, n) if floating else np.zeros(n, int))],
                "success": np.where(floating & (rng.random(n) < 0.08), 0, 1).astype(np.int8),
                "_floating": [floating] * n,
            }))
    f = pl.concat(parts).sort("_s", "Key")
    time = pl.select(start).item() + pl.duration(seconds=pl.col("_s"))
    return f.with_columns(
        pl.int_range(1, f.height + 1).cast(pl.Int64).alias("Id"), time.alias("Time"),
        pl.format("mc-{}", "Key").alias("MachineCode"), pl.lit("DE").alias("country"),
        pl.when("_floating").then(time + timedelta(minutes=10)).alias("FloatingExpires"),
        pl.when("_floating").then(1011).otherwise(1010).alias("State"),
    ).drop("_s", "_floating")


def _night_with(log: pl.DataFrame, days: int, key: str | None = None, like: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The training days and the last day; with ``key``, that node-locked key's rows of the last
    day replaced by floating key ``like``'s (its count, addresses and failures; no FloatingExpires)."""
    cut = log["Time"].min().replace(hour=0) + timedelta(days=days - 1)
    train, night = log.filter(pl.col("Time") < cut), log.filter(pl.col("Time") >= cut)
    if key is not None:
        mimic = night.filter(pl.col("Key") == like).with_columns(
            pl.lit(key).alias("Key"), pl.lit(101, night.schema["ProductId"]).alias("ProductId"),
            pl.lit(f"mc-{key}").alias("MachineCode"), pl.col("IP").str.replace(r"^10\.1\.", "10.0."),
            pl.lit(None, night.schema["FloatingExpires"]).alias("FloatingExpires"),
            pl.lit(1010, night.schema["State"]).alias("State"), (pl.col("Id") + 10**7).alias("Id"))
        night = pl.concat([night.filter(pl.col("Key") != key), mimic]).sort("Time", "Id")
    return train, night


def _flagged(model: EntityModel, train: pl.DataFrame, night: pl.DataFrame, key: str) -> tuple[bool, str | None]:
    out = model.fit(train).score(night).filter(pl.col("key") == key)
    assert out.height == 1
    return bool(out["is_anomaly"][0]), out["reasons"][0]


def test_peer_groups_read_the_licence_model() -> None:
    log = _two_product_vendor(3, 2, days=1)
    usage = log.head(2).with_columns(pl.lit("U1").alias("Key"), pl.lit(303).cast(log.schema["ProductId"]).alias("ProductId"),
                                     pl.lit(None, log.schema["FloatingExpires"]).alias("FloatingExpires"),
                                     pl.Series("State", [1010, 8010]).cast(log.schema["State"]))
    groups = peer_groups(pl.concat([log, usage]))
    got = dict(groups.select("Key", "peer_group").iter_rows())
    assert got["N000"] == "product 101, node-locked" and got["F003"] == "product 202, floating"
    assert got["U1"] == "product 303, usage-based"
    assert peer_groups(log.drop("ProductId", "FloatingExpires"))["peer_group"].unique().to_list() == ["product ?, node-locked"]


def test_normal_for_the_vendor_but_not_for_its_product_is_flagged() -> None:
    """Half the keys are floating (60 requests a day from 3 addresses): a node-locked key that
    does that is ordinary against the whole vendor, not against the node-locked keys."""
    days = 17
    train, night = _night_with(_two_product_vendor(15, 15, days), days, key="N000", like="F015")
    model = EntityModel(kinds=("key-machine",))
    flagged, reason = _flagged(model, train, night, "N000")
    assert flagged and "product 101, node-locked" in reason
    assert model.fit(train).describe()["peer_references"]  # both groups have their own reference
    assert not _flagged(EntityModel(kinds=("key-machine",), peers="vendor"), train, night, "N000")[0]


def test_unusual_for_the_vendor_but_usual_for_its_product_is_not_flagged() -> None:
    """10 floating keys among 410: their ordinary day is far out against the whole vendor, not
    against the other floating keys."""
    days = 22
    train, night = _night_with(_two_product_vendor(400, 10, days), days)
    for key in ("F400", "F401"):
        assert not _flagged(EntityModel(kinds=("key-machine",)), train, night, key)[0]
        assert _flagged(EntityModel(kinds=("key-machine",), peers="vendor"), train, night, key)[0]


def test_small_groups_fall_back_to_the_vendor() -> None:
    days = 17
    train, _ = _night_with(_two_product_vendor(15, 15, days), days)
    few = train.filter(~pl.col("Key").is_in([f"F{i:03d}" for i in range(15 + MIN_PEER_KEYS - 1, 30)]))
    refs = EntityModel(kinds=("key-machine",)).fit(few).describe()["peer_references"]
    assert list(refs) == ["key-machine / product 101, node-locked"]  # 9 floating keys: judged vendor-wide


def test_detect_fits_entities_on_the_training_items_span() -> None:
    """licanom detect: a split in time fits the entity model on its first part; every row is scored."""
    from licanom.ops.detect import entity_results, entity_training_rows

    rows = _two_product_vendor(15, 15, days=17)
    t = rows["Time"]
    cut = t.min().replace(hour=0) + timedelta(days=14)
    items = pl.DataFrame({"split": ["train", "train", "test"], "start_time": [t.min(), cut - timedelta(days=7), cut],
                          "end_time": [cut - timedelta(days=7), cut - timedelta(seconds=1), t.max()]})
    fit_on = entity_training_rows(rows, items)
    assert fit_on["Time"].max() < cut and fit_on.height == rows.filter(pl.col("Time") < cut).height
    out = entity_results(rows, items)
    assert out.filter(pl.col("entity_kind") == "key-day")["requests"].sum() == rows.height
    with pytest.raises(ValueError, match="no training items"):
        entity_training_rows(rows, items.filter(pl.col("split") == "test"))


def test_a_reason_counts_one_in_the_singular() -> None:
    from licanom.detectors.entities import _counted

    assert _counted(1.0, "countries new to it") == "1 country new to it"
    assert _counted(1.0, "failed requests") == "1 failed request"
    assert _counted(1.0, "machine codes new to it in a far country") == "1 machine code new to it in a far country"
    assert _counted(3.0, "countries") == "3 countries" and _counted(1.4, "keys") == "1.4 keys"
    assert _counted(1.0, "failed share") == "1 failed share"  # no plural noun to change


def test_rows_without_an_address_make_no_address_hour(planted: dict) -> None:
    night = planted["night"]
    blank = night.with_columns(pl.when(pl.col("Id") % 3 == 0).then(pl.lit("")).otherwise(pl.col("IP")).alias("IP"))
    out = planted["model"].score(blank)
    hours = out.filter(pl.col("entity_kind") == "address-hour")
    assert "" not in hours["address"].to_list()  # no address-hour of the empty value
    assert hours["requests"].sum() == blank.filter(pl.col("IP") != "").height
    assert out.filter(pl.col("entity_kind") == "key-day")["requests"].sum() == blank.height  # every row still its key's


def test_rows_without_an_address_count_for_no_address_of_a_key_or_machine(planted: dict) -> None:
    model, night = planted["model"], planted["night"]
    key = night["Key"].mode()[0]
    one = night.filter(pl.col("Key") == key)
    # the key's rows: half without an address, the rest from the addresses they had
    blank = night.with_columns(pl.when((pl.col("Key") == key) & (pl.col("Id") % 2 == 0)).then(pl.lit(""))
                               .otherwise(pl.col("IP")).alias("IP"))
    kept = blank.filter((pl.col("Key") == key) & (pl.col("IP") != ""))["IP"].n_unique()
    assert 0 < kept and one.height > kept
    features = model.features(blank)
    days = features["key-day"].filter(pl.col("key") == key)
    assert days["addresses"].sum() == blank.filter((pl.col("Key") == key) & (pl.col("IP") != "")).group_by(
        pl.col("Time").dt.date()).agg(pl.col("IP").n_unique())["IP"].sum()
    machines = features["key-machine"].filter(pl.col("key") == key)
    with_ip = blank.filter((pl.col("Key") == key) & (pl.col("IP") != "") & (pl.col("MachineCode") != ""))
    assert machines["addresses"].sum() == with_ip.group_by(pl.col("Time").dt.date(), "MachineCode").agg(
        pl.col("IP").n_unique())["IP"].sum()


def test_a_log_without_addresses_is_judged_by_its_keys_and_machines(planted: dict) -> None:
    no_ip = pl.col("IP").str.replace(r"^.*$", "")
    model = EntityModel().fit(planted["train"].with_columns(no_ip))
    out = model.score(planted["night"].with_columns(no_ip))
    assert set(out["entity_kind"].unique()) == {"key-day", "key-machine"}  # address-hours: none to judge
    with pytest.raises(ValueError, match="at least 2 training entities of a kind"):
        EntityModel().fit(planted["train"].head(1))


def test_a_key_without_a_usual_day_of_its_own_is_not_said_to_be_usually_so() -> None:
    """A key new at night is held to the vendor's median key-day, not to a day of its own: its
    reason says so instead of "usually", and names its peer group as the one it was judged against."""
    days = 17
    train, night = _night_with(_two_product_vendor(15, 15, days), days)
    new = night.filter(pl.col("Key") == "F015").with_columns(pl.lit("NEW01").alias("Key"), (pl.col("Id") + 10**7).alias("Id"))
    twice = pl.concat([new, new.with_columns(pl.col("Id") + 10**6, pl.col("Time") + timedelta(seconds=1))] * 3)
    night = pl.concat([night, twice.with_columns(pl.int_range(pl.len()).cast(pl.Int64).add(2 * 10**7).alias("Id"))]).sort("Time", "Id")
    reasons = EntityModel(kinds=("key-day",)).fit(train).score(night).filter(pl.col("key") == "NEW01")["reasons"].to_list()
    assert reasons and reasons[0].startswith("key NEW01 (no usual day of its own): ") and "usual among" not in reasons[0]
    assert reasons[0].count("no usual day") == 1 and "(the vendor's median key-day: " in reasons[0]
    assert "(judged against product 202, floating keys)" in reasons[0]
    # a key with its own usual day, flagged for a day far beyond it, is held to that day
    busy = night.filter(pl.col("Key") == "F015")
    night = pl.concat([night] + [busy.with_columns((pl.col("Id") + (i + 3) * 10**7).alias("Id"),
                                                   pl.col("Time") + timedelta(seconds=i + 1)) for i in range(6)]).sort("Time", "Id")
    known = EntityModel(kinds=("key-day",)).fit(train).score(night).filter(pl.col("key") == "F015")
    assert known["is_anomaly"][0] and "(usually " in known["reasons"][0] and "no usual day" not in known["reasons"][0]


def test_a_reason_says_whose_usual_value_each_count_is_compared_with() -> None:
    """"usually" is a key's own usual day; the reference's medians (every address-hour's, a
    key-machine's, a key-day's counts without a day of their own) were read as the entity's own
    history: "address A: 4 keys (usually 1)" held the address to the vendor's median address-hour."""
    from datetime import UTC, datetime

    from licanom.detectors.entities import FEATURES, KindReference, _reason

    def ref(kind: str, typical: dict[str, float], group: str = "") -> KindReference:
        columns = tuple(name for name, _ in FEATURES[kind])
        return KindReference(kind=kind, columns=columns, tail=None, calibration=None, threshold=0.0,  # type: ignore[arg-type]
                             typical=tuple(typical.get(c, 0.0) for c in columns), n_train=1, n_reference=1, group=group)

    def surprising(r: KindReference, *names: str) -> np.ndarray:
        return np.array([10.0 - names.index(c) if c in names else 0.0 for c in r.columns])

    when = {"start_time": datetime(2025, 1, 15, 20, 35, tzinfo=UTC), "end_time": datetime(2025, 1, 15, 20, 57, tzinfo=UTC)}
    hour = ref("address-hour", {"keys": 1, "requests": 5, "failed_share": 0.01})
    said = _reason(hour, {**when, "address": "30.15.233.45", "keys": 4, "requests": 26, "failed_share": 0.04},
                   surprising(hour, "keys", "requests", "failed_share"), 3)
    assert said == ("address 30.15.233.45: 4 keys (the vendor's median address-hour: 1), 26 requests (the vendor's "
                    "median address-hour: 5), 4% failed (the vendor's median address-hour: 1%); 26 requests, "
                    "2025-01-15 20:35-20:57 UTC")
    machine = ref("key-machine", {"machine_keys": 1}, group="product 7, floating")
    said = _reason(machine, {**when, "key": "K", "machine_code": "M", "machine_keys": 9, "requests": 9},
                   surprising(machine, "machine_keys"), 3)
    assert said.startswith("machine code M under key K: 9 keys using this machine code (its peers' median key-machine: 1);")
    assert said.endswith("(judged against product 7, floating keys)")
    day = ref("key-day", {"new_machines": 0})
    row = {**when, "key": "K", "new_machines": 55, "more_countries": 1.1, "countries": 3, "usual_countries": 1.0,
           "expected_countries": 1.0, "requests": 120}
    said = _reason(day, row, surprising(day, "new_machines", "more_countries"), 3)
    assert said.startswith("key K: 55 machine codes new to it (the vendor's median key-day: 0), 3 countries (usually 1);")
    said = _reason(day, {**row, "usual_countries": None}, surprising(day, "new_machines", "more_countries"), 3)
    assert said.startswith("key K (no usual day of its own): 55 machine codes new to it (the vendor's median key-day: 0), "
                           "3 countries (the vendor's median key-day: 1);")


def test_the_planted_entities_reasons_say_usually_only_of_a_keys_own_day(planted: dict) -> None:
    flagged = planted["entities"].filter("is_anomaly")
    assert flagged.height
    for kind, reason in flagged.select("entity_kind", "reasons").iter_rows():
        assert kind == "key-day" or "usually" not in reason, reason
        assert "median" in reason or "usually" in reason or reason.split(": ", 1)[1].startswith("new to the key"), reason


def test_an_entity_kinds_calibration_does_not_shrink_where_ordinary_scores_tie(monkeypatch) -> None:
    """The out-of-fold scores of a simulated mixed vendor's address-hours (seed 5, 25 training days;
    rounded, as score and count): refitting the calibration without the scores far out against a
    first fit shrank its tail's scale round after round (1.64 -> 0.58 nats) where ordinary
    address-hours tie just above the 90th percentile, and its five ordinary nights flagged 222
    entities; 14 days of the same traffic kept 1.70. The kind's calibration keeps the scale of all
    its out-of-fold scores."""
    from pathlib import Path

    from licanom.detectors.entities import EntityModel

    table = pl.read_csv(Path(__file__).parent / "fixtures" / "address_hour_oof_scores.csv")
    scores = np.repeat(table["score"].to_numpy(), table["count"].to_numpy())
    monkeypatch.setattr(EntityModel, "_out_of_fold", lambda self, X, tail: scores)
    features = pl.DataFrame({"requests": [5, 6, 4, 5, 30], "keys": [1, 1, 1, 2, 4], "failures": [0, 0, 1, 0, 3],
                             "failed_share": [0.0, 0.0, 0.25, 0.0, 0.1], "new_keys": [0, 0, 0, 0, 1],
                             "hour_new_key_addresses": [0, 0, 0, 0, 1]})
    reference = EntityModel()._reference("address-hour", features)
    plain = tail_calibration(scores)
    assert reference.calibration.beta == pytest.approx(plain.beta) and plain.beta > 1.5
    assert reference.threshold == pytest.approx(plain.score_at(DEFAULT_MIN_SEVERITY))


def test_an_address_hours_reason_says_one_address_and_one_minute_once() -> None:
    """"address 95.62.21.0: 1 address failing with new keys in that hour" (the address itself) and
    "2025-01-29 23:32-23:32 UTC" (a span of no length): the only address, and the one time once."""
    from types import SimpleNamespace

    from licanom.detectors.entities import FEATURES, VENDOR, _reason, _span

    columns = tuple(name for name, _ in FEATURES["address-hour"])
    ref = SimpleNamespace(kind="address-hour", columns=columns, group=VENDOR, typical=(1.0,) * len(columns))
    at = datetime(2025, 1, 29, 23, 32, 10, tzinfo=UTC)
    row = {"address": "95.62.21.0", "requests": 1.0, "keys": 1.0, "failures": 1.0, "failed_share": 1.0,
           "new_keys": 1.0, "hour_new_key_addresses": 1.0, "start_time": at, "end_time": at + timedelta(seconds=20)}
    surprisal = np.array([1.0 if name == "hour_new_key_addresses" else 0.0 for name in columns])
    reason = _reason(ref, row, surprisal, top=3)  # type: ignore[arg-type]
    assert reason == ("address 95.62.21.0: the only address failing with new keys in that hour (the vendor's "
                      "median address-hour: 1); 1 request, 2025-01-29 23:32 UTC"), reason
    many = _reason(ref, row | {"hour_new_key_addresses": 12.0}, surprisal, top=3)  # type: ignore[arg-type]
    assert "12 addresses failing with new keys in that hour" in many
    assert _span(at - timedelta(hours=2), at) == "2025-01-29 21:32-23:32 UTC"
    assert _span(at, at + timedelta(hours=2)) == "2025-01-29 23:32 to 2025-01-30 01:32 UTC"
