"""licanom.detectors.context's counts on integer codes give what the plain expressions on the texts give.

The reference below is the straightforward form of :func:`licanom.data.context_vector.row_context` and
``_top_share`` (one window expression per signal over the texts); the library computes the same
on integer codes of the entities. Compared on a simulated log, with and without a key history,
shuffled, and with null machine codes beside empty ones.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from licanom.data.context_vector import (
    _ROW_COUNTS,
    LEVEL_COLUMNS,
    LEVEL_DAY_SHARE,
    LEVEL_MIN_COUNT,
    LEARN_MIN_COVERED,
    LEVEL_MIN_DAYS,
    SCALE_MIN_KEYS,
    SCALE_MIN_KEYS_BEFORE_6,
    SCALE_KEYS_SIGNAL,
    SCALE_MIN_TYPICAL,
    PROFILE_SIGNAL,
    SCALE_SIGNAL,
    SCALED_COLUMNS,
    _UNKNOWN,
    KeyHistory,
    _entity_frame,
    chunk_context,
    row_context,
)
from licanom.data.derive import derive
from licanom.sim import simulate
from licanom.data.validate import validate_log


def reference_usage(derived: pl.DataFrame) -> pl.Series:
    """Each row's data-object usage: the change of its key's object's value since that object's
    previous successful data-object request (a log of counters: the changes go one way), else the
    value."""
    frame = derived.select(
        pl.col("Time").rank("ordinal").alias("_row"), pl.col("Key").cast(pl.String).fill_null(""),
        pl.col("DOId").fill_null(-1), "DOIntValue",
        ((pl.col("State") // 100 == 80) & ((pl.col("State") // 10) % 10 == 1) & pl.col("DOIntValue").is_not_null()).alias("_used"),
    ).with_row_index("_i")
    used = frame.filter("_used").sort("_row").with_columns(
        (pl.col("DOIntValue") - pl.col("DOIntValue").shift(1).over("Key", "DOId")).alias("_d"))
    moved = used.filter(pl.col("_d") != 0)["_d"]
    up = (moved > 0).mean() if moved.len() else 0.5
    if moved.len() < 20:  # too few changes to tell: counters, the way most changes go
        amount = (pl.col("_d") if up >= 0.5 else -pl.col("_d")).fill_null(0).clip(lower_bound=0)
    else:
        amount = (pl.col("_d").fill_null(0).clip(lower_bound=0) if up >= 0.9
                  else (-pl.col("_d")).fill_null(0).clip(lower_bound=0) if up <= 0.1 else pl.col("DOIntValue").abs())
    out = frame.join(used.select("_i", amount.alias("_usage")), on="_i", how="left", maintain_order="left")
    return out["_usage"].fill_null(0)


def reference_row_context(derived: pl.DataFrame, history: KeyHistory | None = None, version: int = 5) -> pl.DataFrame:
    frame = _entity_frame(derived).with_columns(reference_usage(derived).alias("_usage"))
    known_key = pl.col("Key").is_in(history.keys.implode()) if history is not None else pl.lit(False)
    after_first_hour = known_key | (pl.col("_hour") > pl.col("_hour").min().over("Key"))
    for value, unknown in _UNKNOWN.items():
        seen = pl.lit(False)
        if history is not None:
            frame = frame.join(history.pairs(value).with_columns(pl.lit(True).alias("_seen")),
                               on=["Key", value], how="left", maintain_order="left")
            seen = pl.col("_seen").fill_null(False)
        first = (pl.col("_row") == pl.col("_row").min().over(["Key", value])) & (pl.col(value) != unknown)
        frame = frame.with_columns((first & ~seen & after_first_hour).cast(pl.Int64).alias(f"_new {value}"))
        if history is not None:
            frame = frame.drop("_seen")
    # version 2: a key's hourly spread on the rows of (key, machine) pairs first seen that day and
    # not in the history, and on rows without a machine code
    seen_mc = pl.lit(False)
    if history is not None:
        frame = frame.join(history.pairs("MachineCode").with_columns(pl.lit(True).alias("_seen_mc")),
                           on=["Key", "MachineCode"], how="left", maintain_order="left")
        seen_mc = pl.col("_seen_mc").fill_null(False)
    spread_on = ((~seen_mc & (pl.col("_day").min().over(["Key", "MachineCode"]) == pl.col("_day")))
                 | (pl.col("MachineCode") == ""))
    exprs = []
    for name, entity, what, bucket in _ROW_COUNTS:
        over = [*entity, bucket]
        if what == "requests":
            count = pl.len().over(over)
        elif what == "usage":
            count = pl.col("_usage").sum().over(over)
        elif what == "failures":
            count = pl.col("_failed").sum().over(over)
        elif what.startswith("failed "):
            # of the keys the history does not know
            count = pl.col(what.removeprefix("failed ")).filter((pl.col("_failed") == 1) & ~known_key).n_unique().over(over)
        elif what.startswith("new ") and bucket == "_day":
            pair = ["Key", what.removeprefix("new ")]
            newcomer = (pl.col(f"_{what}").max().over(pair) == 1) & (pl.col("_day").min().over(pair) == pl.col("_day"))
            count = pl.when(newcomer).then(pl.col(f"_{what}").sum().over(over)).otherwise(0)
        elif what.startswith("new "):
            count = pl.col(f"_{what}").sum().over(over)
        elif what == "IP" and version >= 7:  # the empty address is none
            count = pl.col(what).filter(pl.col(what) != "").n_unique().over(over)
            if entity == ("Key",) and bucket == "_hour":
                count = pl.when(spread_on).then(count).otherwise(0)
        else:
            count = pl.col(what).n_unique().over(over)
            if version >= 2 and entity == ("Key",) and bucket == "_hour":
                count = pl.when(spread_on).then(count).otherwise(0)
        if version >= 7 and entity == ("IP",):  # a row without an address counts for none
            count = pl.when(pl.col("IP") != "").then(count).otherwise(0)
        exprs.append(count.cast(pl.Int64).alias(name))
    counts = frame.select("Key", "MachineCode", "IP", "_day", *exprs)
    if version >= 4:  # request counts over their day's scale: the regular keys' median day against their usual
        key_days = counts.group_by("Key", "_day").agg(pl.len().alias("n"))

        def median_days(days: pl.DataFrame) -> pl.DataFrame:  # each key's median day, rounded half up, if regular
            return (days.group_by("Key").agg(pl.col("n").median().alias("usual"))
                    .with_columns((pl.col("usual") + 0.5).floor().cast(pl.Int64))
                    .filter(pl.col("usual") >= SCALE_MIN_TYPICAL))

        given = history is not None and history.levels is not None
        if given:
            usual = (history.levels.filter(pl.col("signal") == SCALE_SIGNAL).select("Key", pl.col("level").alias("usual"))
                     .filter(pl.col("usual") >= SCALE_MIN_TYPICAL))
        else:
            usual = median_days(key_days)
        covered = None
        if version >= 5:  # part of a day: the usual day at the share of a day's requests the log's hours hold
            if given:
                profile = (history.levels.filter(pl.col("signal").str.starts_with(PROFILE_SIGNAL))
                           .select(pl.col("signal").str.slice(-2).cast(pl.Int8).alias("h"), pl.col("level").alias("r")))
            else:  # the hours of the keys regular by their plain days
                profile = (frame.join(usual, on="Key").group_by(pl.col("_hour").dt.hour().alias("h"))
                           .agg(pl.len().alias("r")))
            if profile.height and profile["r"].sum() > 0:
                hours = pl.DataFrame({"_hour": pl.datetime_range(frame["_hour"].min(), frame["_hour"].max(), "1h",
                                                                 time_unit=frame.schema["_hour"].time_unit, eager=True)})
                covered = (hours.with_columns(pl.col("_hour").dt.hour().cast(pl.Int8).alias("h"),
                                              pl.col("_hour").dt.truncate("1d").alias("_day"))
                           .join(profile.with_columns(pl.col("h").cast(pl.Int8), pl.col("r") / profile["r"].sum()),
                                 on="h", how="left")
                           .group_by("_day").agg(pl.col("r").fill_null(0.0).sum().round(12).alias("_covered")))  # a whole day: 1
                if not given:  # learned again: the days held at least half, each as the whole it is a part of
                    usual = median_days(key_days.join(covered, on="_day").filter(pl.col("_covered") >= LEARN_MIN_COVERED)
                                        .with_columns(pl.col("n") / pl.col("_covered")))
        key_days = key_days.join(usual, on="Key").with_columns(pl.col("usual").cast(pl.Float64))
        if covered is not None:
            key_days = (key_days.join(covered, on="_day", how="left")
                        .with_columns(pl.col("usual") * pl.col("_covered").clip(upper_bound=1.0))
                        .filter(pl.col("usual") >= SCALE_MIN_TYPICAL))
        if given:  # few keys (version 6): the number the levels keep, ten where they keep none
            kept = history.levels.filter(pl.col("signal") == SCALE_KEYS_SIGNAL)["level"].to_list()
            min_keys = kept[0] if kept else SCALE_MIN_KEYS_BEFORE_6
        else:
            min_keys = SCALE_MIN_KEYS if version >= 6 else SCALE_MIN_KEYS_BEFORE_6
        scale = (key_days.group_by("_day")
                 .agg((pl.col("n") / pl.col("usual")).median().alias("_scale"), pl.len().alias("_keys"))
                 .filter((pl.col("_keys") >= min_keys) & (pl.lit(usual.height) >= min_keys))
                 .select("_day", pl.max_horizontal("_scale", pl.lit(1.0)).alias("_scale")))
        counts = (counts.join(scale, on="_day", how="left", maintain_order="left")
                  .with_columns((pl.col(name) / pl.col("_scale").fill_null(1.0)).ceil().cast(pl.Int64)
                                for name in SCALED_COLUMNS)
                  .drop("_scale"))
    if version >= 3:  # each entity's count above its own level: the history's, else this log's
        days = (counts["_day"].max() - counts["_day"].min()).days + 1 if counts.height else 0
        need = max(LEVEL_MIN_DAYS, math.ceil(LEVEL_DAY_SHARE * days))
        for name, entity, *_ in (spec for spec in _ROW_COUNTS if spec[0] in LEVEL_COLUMNS):
            if history is not None and history.levels is not None:
                levels = history.levels.filter(pl.col("signal") == name).select(*entity, "level")
            else:
                levels = (counts.filter(pl.col(name) >= LEVEL_MIN_COUNT).group_by(*entity, "_day").agg(pl.col(name).max())
                          .group_by(*entity).agg(pl.col(name).sort(descending=True).get(need - 1, null_on_oob=True)
                                                 .alias("level")).drop_nulls("level"))
            counts = (counts.join(levels, on=list(entity), how="left", maintain_order="left")
                      .with_columns((pl.col(name) - pl.col("level").fill_null(0)).clip(lower_bound=0).alias(name))
                      .drop("level"))
    return counts.select(pl.col(name).cast(pl.Float64).log1p() for name, *_ in _ROW_COUNTS)


def reference_top_share(derived: pl.DataFrame, starts: np.ndarray, size: int) -> np.ndarray:
    pairs = derived.select(pl.struct(pl.col("Key").cast(pl.String), pl.col("MachineCode").cast(pl.String)))
    out = np.empty(len(starts))
    for i, s in enumerate(starts):
        out[i] = pairs.slice(int(s), size).to_series().value_counts()["count"].max() / size
    return out


@pytest.fixture(scope="module")
def derived() -> pl.DataFrame:
    return derive(validate_log(simulate("mixed", seed=5, days=6).log).valid)


def test_row_context_equals_the_text_expressions(derived):
    assert derived.height > 2000
    assert_frame_equal(row_context(derived), reference_row_context(derived))
    half = derived.height // 2
    history = KeyHistory.from_rows(derived.head(half))
    later = derived.slice(half)
    assert_frame_equal(row_context(later, history), reference_row_context(later, history))
    # version 1 (the rows encoder's, and models saved before version 2) on every row of the key
    assert_frame_equal(row_context(later, history, version=1), reference_row_context(later, history, version=1))
    assert not row_context(later, history, version=1).equals(row_context(later, history))
    # version 2 (models saved before the entities' own levels), and a history that holds levels
    assert_frame_equal(row_context(later, history, version=2), reference_row_context(later, history, version=2))
    assert not row_context(derived, version=2).equals(row_context(derived))
    leveled = KeyHistory.from_rows(derived.head(half), levels=True)
    assert leveled.levels is not None and leveled.levels.height > 0
    assert_frame_equal(row_context(later, leveled), reference_row_context(later, leveled))
    # version 4 (models saved before the part of a day): ``later`` starts within a day, which
    # version 5 compares with the part of a usual day that its hours hold
    assert_frame_equal(row_context(later, leveled, version=4), reference_row_context(later, leveled, version=4))
    assert not row_context(later, leveled, version=4).equals(row_context(later, leveled))
    # a log that learns its own usual days from a part of a day (its first), and from whole days only
    assert_frame_equal(row_context(later), reference_row_context(later))
    assert_frame_equal(row_context(derived, version=4), row_context(derived))  # six days (from 01:31): as version 4
    # a vendor of few keys (the five busiest): version 5 needed ten active regular keys to scale a day
    few = derived.filter(pl.col("Key").is_in(derived["Key"].value_counts(sort=True)["Key"].head(5).implode()))
    early = KeyHistory.from_rows(few.head(few.height // 2), levels=True)
    early_5 = KeyHistory(early.machines, early.countries, early.levels.filter(pl.col("signal") != SCALE_KEYS_SIGNAL))
    rest = few.slice(few.height // 2)
    for version, hist in ((5, early_5), (6, early)):
        assert_frame_equal(row_context(rest, hist, version=version), reference_row_context(rest, hist, version=version))
        assert_frame_equal(row_context(few, version=version), reference_row_context(few, version=version))
    assert not row_context(few, version=5).equals(row_context(few))
    assert not row_context(rest, early_5, version=5).equals(row_context(rest, early))


def test_rows_without_an_address_count_for_no_address(derived):
    rng = np.random.default_rng(5)
    some = derived.with_columns(pl.when(pl.Series(rng.random(derived.height) < 0.3)).then(pl.lit(""))
                                .otherwise(pl.col("IP")).alias("IP"))
    history = KeyHistory.from_rows(some.head(some.height // 2), levels=True)
    later = some.slice(some.height // 2)
    for version in (6, 7):
        assert_frame_equal(row_context(some, version=version), reference_row_context(some, version=version))
        assert_frame_equal(row_context(later, history, version=version),
                           reference_row_context(later, history, version=version))
    now, before = row_context(some), row_context(some, version=6)
    empty = (some["IP"] == "").to_numpy()
    for column in ("ip_keys_hour", "ip_failures_hour", "ip_failed_keys_hour"):
        assert (now[column].to_numpy()[empty] == 0).all()
        assert (before[column].to_numpy()[empty] > 0).any()  # before: one address of them all
    # a log whose rows all have an address reads as before
    assert_frame_equal(row_context(derived), row_context(derived, version=6))


def test_row_context_out_of_time_order_and_with_nulls(derived):
    shuffled = derived.sample(fraction=1.0, shuffle=True, seed=1)
    assert not shuffled["Time"].is_sorted()
    assert_frame_equal(row_context(shuffled), reference_row_context(shuffled))
    rng = np.random.default_rng(2)
    holes = pl.Series(rng.random(derived.height) < 0.2)
    with_nulls = derived.with_columns(pl.when(holes).then(None).otherwise(pl.col("MachineCode")).alias("MachineCode"))
    history = KeyHistory.from_rows(with_nulls.head(1000))
    assert_frame_equal(row_context(with_nulls, history), reference_row_context(with_nulls, history))


@pytest.mark.parametrize("stride", [20, 7])
def test_chunk_context_equals_the_reference(derived, stride):
    size = 20
    starts = np.arange(0, derived.height - size + 1, stride)
    history = KeyHistory.from_rows(derived.head(500))
    got = chunk_context(derived, starts, size, history)
    rows = reference_row_context(derived, history).to_numpy()
    want = np.stack([rows[s : s + size].max(axis=0) for s in starts])
    # log1p of the same counts: numpy and polars may round the last bit differently on some CPUs
    np.testing.assert_allclose(got[:, 3:], want, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got[:, 2], reference_top_share(derived, starts, size))
    nulls = derived.with_columns(pl.when(pl.int_range(pl.len()) % 5 == 0).then(None)
                                 .otherwise(pl.col("MachineCode")).alias("MachineCode"))
    np.testing.assert_array_equal(chunk_context(nulls, starts, size)[:, 2], reference_top_share(nulls, starts, size))


def test_the_entities_own_levels_equal_the_text_expressions(derived):
    # a client looping on a failing request at 10:00 on five of the six days (a machine's and an
    # address's failures above their own level), added to the simulated log
    base = derived.head(1).with_columns(pl.lit(None).cast(derived[c].dtype).alias(c) for c in ("DOId", "DOIntValue"))
    days = derived["Time"].dt.truncate("1d").unique().sort()
    loops = [
        pl.concat([base] * 30).with_columns(
            pl.Series("Time", [day + timedelta(hours=10, seconds=i) for i in range(30)]).cast(derived["Time"].dtype),
            pl.lit("LOOP-KEY").cast(derived["Key"].dtype).alias("Key"),
            pl.lit("LOOP-MC").cast(derived["MachineCode"].dtype).alias("MachineCode"),
            pl.lit("203.0.113.7").cast(derived["IP"].dtype).alias("IP"),
            pl.lit(0).cast(derived["success"].dtype).alias("success"))
        for day in days[:5]
    ]
    looped = pl.concat([derived, *loops]).sort("Time", maintain_order=True)
    history = KeyHistory.from_rows(looped, levels=True)
    assert history.levels is not None
    own = history.levels.filter(pl.col("MachineCode") == "LOOP-MC")
    assert set(own["signal"]) == {"machine_failures_hour", "machine_requests_hour"} and set(own["level"]) == {30}
    assert history.levels.filter(pl.col("IP") == "203.0.113.7")["signal"].to_list() == ["ip_failures_hour"]
    assert_frame_equal(row_context(looped), reference_row_context(looped))
    half = looped.height // 2
    leveled = KeyHistory.from_rows(looped.head(half), levels=True)
    assert_frame_equal(row_context(looped.slice(half), leveled), reference_row_context(looped.slice(half), leveled))
    # a history's slice for some keys keeps those keys' machines' levels and every address's
    part = history.for_keys(pl.Series(["LOOP-KEY"]))
    assert part.levels is not None and set(part.levels["Key"]) == {"LOOP-KEY", ""}
    usual = part.levels.filter(pl.col("signal") == SCALE_SIGNAL)  # the key's usual day: its 30 requests
    assert usual.select("Key", "level").rows() == [("LOOP-KEY", 30)]
    assert part.levels.height == own.height + usual.height + history.levels.filter(pl.col("Key") == "").height
