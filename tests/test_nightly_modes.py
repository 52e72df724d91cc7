"""The nightly evaluation with an autoencoder named in each input mode (licanom.evaluation.nightly)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from licanom.config import Config, TrainConfig
from licanom.evaluation.nightly import NightlySettings, Variant, World, run_vendor, summarise


def test_variant_names_parse_and_bad_ones_are_named():
    assert Variant.parse("TCN_AE:rows") == Variant("TCN_AE", "rows")
    assert Variant.parse("LSTM_AE:thesis").label == "LSTM_AE:thesis"
    assert Variant.parse("Tail_context") == Variant("Tail_context", None)
    assert Variant("TCN_AE").encoder("thesis") == "thesis" and Variant("TCN_AE", "rows").encoder("thesis") == "rows"
    with pytest.raises(ValueError, match="NOPE"):
        Variant.parse("NOPE:rows")
    with pytest.raises(ValueError, match="input mode 'pixels'"):
        Variant.parse("TCN_AE:pixels")
    with pytest.raises(ValueError, match="only an autoencoder"):
        Variant.parse("Tail_context:rows")
    with pytest.raises(ValueError, match="named twice"):
        NightlySettings(detectors=("TCN_AE:rows", "TCN_AE:rows")).check()


def test_nights_cut_at_an_hour_other_than_midnight_hold_that_hour_to_the_next():
    from datetime import datetime, timedelta

    from licanom.evaluation.nightly import split_days

    log = pl.DataFrame({"Time": [datetime(2026, 1, 1, 0, 30) + timedelta(hours=h) for h in range(21 * 24)]})
    train, nights = split_days(log, NightlySettings(night_cut_hour=2))
    assert train["Time"].max() == datetime(2026, 1, 15, 1, 30)
    assert [n["Time"].min() for n in nights] == [datetime(2026, 1, 15 + d, 2, 30) for d in range(7)]
    assert [n.height for n in nights] == [24] * 6 + [22]  # the log ends at midnight: the last night is short
    assert train.height + sum(n.height for n in nights) == log.height
    midnight, nights_0 = split_days(log, NightlySettings())
    assert midnight["Time"].max() == datetime(2026, 1, 14, 23, 30) and [n.height for n in nights_0] == [24] * 7
    with pytest.raises(ValueError, match="night_cut_hour"):
        NightlySettings(night_cut_hour=24).check()


def test_both_modes_scored_on_the_same_nights_with_clustering():
    cfg = Config(vendor="eval", train=TrainConfig(epochs=1, batch_size=32, threads=1))
    settings = NightlySettings(days=5, detectors=("Tail_context", "TCN_AE_Small:thesis", "TCN_AE_Small:rows"),
                               config=cfg)
    rows = run_vendor(World("tiny", None), "floating", 5, settings)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    assert frame["detector"].to_list() == ["Tail_context", "TCN_AE_Small:thesis", "TCN_AE_Small:rows"]
    # the same night chunks and events judged for each
    assert frame["chunks"].n_unique() == 1 and frame["chunks"][0] > 0
    assert frame["events"].n_unique() == 1
    assert frame["epochs"].to_list() == [None, 1, 1]
    ae = frame.filter(pl.col("family") == "autoencoder")
    assert ae["auroc"][0] != ae["auroc"][1]  # two different inputs, two different rankings
    for method in ("gmm", "kmeans"):
        assert frame[f"{method}_flagged"][0] is None  # the context model has no latent code
        assert (ae[f"{method}_false_alarms"] <= ae[f"{method}_flagged"]).all()
        assert (ae[f"{method}_found"] <= ae["events"]).all()
    summary = summarise(frame, by=("world", "profile", "detector"))
    assert summary["detector"].to_list() == frame["detector"].to_list()
    assert summary.filter(pl.col("detector") == "Tail_context")["gmm_normal_flagged"][0] is None
    shares = summary[1:]
    assert ((shares["gmm_normal_flagged"] >= 0) & (shares["gmm_normal_flagged"] <= 1)).all()


def test_a_world_the_simulator_cannot_build_is_reported_not_fatal(monkeypatch):
    from licanom.sim import ShareNotReached

    def cannot(self, profile, seed, days):
        raise ShareNotReached(f"{profile} seed {seed} over {days} days: reached an anomalous share of 0.358")

    monkeypatch.setattr(World, "simulate", cannot)
    settings = NightlySettings(days=3, detectors=("Tail_context", "IForest_context"), clustering=False)
    rows = run_vendor(World("share 40%", 0.4), "node-locked", 6, settings)
    assert [r["detector"] for r in rows] == ["Tail_context", "IForest_context"]
    assert all(r["chunks"] == 0 and "0.358" in r["unbuilt"] for r in rows)
    built = {"world": "share 40%", "profile": "floating", "seed": 1, "detector": "Tail_context", "family": "context",
             "chunks": 10, "anomalous_chunks": 2, "events": 1, "found": 1, "found_labelled": 1, "false_alarms": 0,
             "false_alarms_elsewhere": 0, "flagged": 2, "auroc": 0.9, "auprc": 0.8, "train_seconds": 1.0}
    summary = summarise(pl.DataFrame([built, *rows[:1]], infer_schema_length=None))
    assert summary.select("vendors", "unbuilt").row(0) == (1, 1)


def test_the_labelled_ceiling_outside_incidents_does_not_count_an_events_own_hours():
    """A chunk of an event's key and hours without a labelled row takes no false-alarm budget in
    the ``found_labelled_elsewhere`` ceiling, and still does in ``found_labelled``'s."""
    from licanom.evaluation.metrics import flag_at_budget

    scores = np.array([10.0, 9.0, 1.0, 0.5, 0.2])
    truth = np.array([False, True, False, False, False])
    neutral = np.array([True, False, False, False, False])  # the event key's own request that hour
    assert not flag_at_budget(truth, scores, 20.0)[1]  # the neutral chunk sits above the anomaly
    flagged = flag_at_budget(truth, scores, 20.0, neutral=neutral)
    assert flagged[1] and not flagged[2:].any()


def test_chunks_out_keeps_the_judged_chunks_the_labelled_rows_and_the_entities(tmp_path):
    settings = NightlySettings(days=5, detectors=("Tail_context",), clustering=False, chunks_out=tmp_path)
    [row] = run_vendor(World("tiny", None), "floating", 3, settings)  # two events at night
    name = "tiny-floating-3-Tail_context"
    chunks = pl.read_parquet(tmp_path / f"{name}.parquet")
    rows = pl.read_parquet(tmp_path / f"{name}.rows.parquet")
    entities = pl.read_parquet(tmp_path / f"{name}.entities.parquet")
    assert chunks.height == row["chunks"] and int(chunks["truth"].sum()) == row["anomalous_chunks"]
    # the night's rows, each once, from the first chunk's first request to the last chunk's last
    assert rows["Id"].is_unique().all()
    assert (rows["Id"].min(), rows["Id"].max()) == (chunks["first_id"].min(), chunks["last_id"].max())
    # a chunk holds an anomaly exactly when one of its rows is labelled
    labelled = rows.filter(pl.col("event").is_not_null())["Id"].to_numpy()
    holds = [bool(((labelled >= a) & (labelled <= b)).any()) for a, b in chunks.select("first_id", "last_id").iter_rows()]
    assert holds == chunks["truth"].to_list() and any(holds)
    assert entities.height > 0 and set(entities["entity_kind"]) <= {"key-day", "key-machine", "address-hour"}
    # the scores the severity was calibrated on: the calibration they give is the one the chunks were judged by
    from licanom.detectors.context import TAIL_SCALE_NATS
    from licanom.detectors.decision import Calibration

    calibration = Calibration.fit(np.load(tmp_path / f"{name}.calibration.npy"), scale=TAIL_SCALE_NATS)
    assert np.allclose(calibration.severity(chunks["score"].to_numpy()), chunks["severity"].to_numpy())


def test_the_second_generators_worlds_run_through_the_same_nights_and_keep_their_own_kinds():
    from licanom.evaluation import secondsim
    from licanom.evaluation.nightly import ALL_KINDS, SECOND, WORLDS, SecondWorld, run_sweep

    assert [w.name for w in SECOND] == [f"second: {level}" for level in secondsim.LEVELS]
    assert all(WORLDS[w.name] is w for w in SECOND)
    settings = NightlySettings(days=6, detectors=("Tail_context",), clustering=False)
    world = SecondWorld("second: high", "high")
    frame = run_sweep([world], profiles=["usage"], seeds=[1], settings=settings)
    assert frame.select("world", "profile", "seed").row(0) == ("second: high", "usage", 1)
    assert frame["chunks"][0] > 0
    # a kind this simulator does not have is judged like the others
    assert "usage_fraud" not in ALL_KINDS and frame["events_usage_fraud"][0] > 0
    kinds = set(world.simulate("usage", 1, 6).events["kind"])
    assert sum(frame[f"events_{k}"][0] for k in kinds) == frame["events"][0]
    # pooled with a world of this simulator, whose rows lack that kind's columns
    ours = {"world": "share 10%", "profile": "floating", "seed": 1, "detector": "Tail_context", "family": "context",
            "chunks": 10, "anomalous_chunks": 2, "events": 2, "found": 1, "found_labelled": 1, "false_alarms": 0,
            "false_alarms_elsewhere": 0, "flagged": 1, "auroc": 0.9, "auprc": 0.8, "train_seconds": 1.0,
            "events_brute_force": 2, "found_brute_force": 1}
    both = pl.concat([frame, pl.DataFrame([ours])], how="diagonal_relaxed")
    pooled = summarise(both, by=("detector",))
    assert pooled["vendors"][0] == 2 and pooled["events"][0] == frame["events"][0] + 2
    assert pooled["usage_fraud"][0] == frame["found_usage_fraud"][0] / frame["events_usage_fraud"][0]
    with pytest.raises(ValueError, match="node-locked"):
        run_sweep([world], profiles=["node-locked"], settings=settings)
    # the caller's profiles in the caller's order
    order = run_sweep([SecondWorld("second: low", "low")], profiles=["indie", "desktop"], seeds=[1], settings=settings)
    assert order["profile"].to_list() == ["indie", "desktop"]


def test_detect_mode_judges_the_test_chunks_that_licanom_detect_flags():
    """``mode="detect"``: the whole log prepared at once and split at random, as ``licanom detect``
    does; the row judges exactly its test chunks and their default decision."""
    from licanom.data.pipeline import prepare
    from licanom.ops.detect import detect

    settings = NightlySettings(days=5, detectors=("Tail_context",), clustering=False, mode="detect")
    world = World("tiny", None)
    [row] = run_vendor(world, "floating", 3, settings)
    cfg = settings.config
    sim = world.simulate("floating", 3, settings.days)
    prepared = prepare(sim.log, cfg)
    test = detect(prepared, cfg.train, cfg.detect, models=("Tail_context",), context=cfg.context, encode=cfg.encode,
                  split=cfg.split).chunks.filter(pl.col("split") == "test")
    assert 0 < row["chunks"] == test.height == int(prepared.test_mask.sum()) < prepared.chunks.n_chunks
    assert row["flagged"] == int(test["is_anomaly"].sum())
    assert row["found"] <= row["events"] and "entities" not in row
    # every chunk of the log, the training chunks as licanom detect flags them
    [whole] = run_vendor(world, "floating", 3, replace(settings, detect_chunks="all"))
    every = detect(prepared, cfg.train, cfg.detect, models=("Tail_context",), context=cfg.context, encode=cfg.encode,
                   split=cfg.split).chunks
    assert whole["chunks"] == every.height == prepared.chunks.n_chunks
    assert whole["flagged"] == int(every["is_anomaly"].sum()) >= row["flagged"]
    assert whole["events"] >= row["events"] and whole["anomalous_chunks"] >= row["anomalous_chunks"]
    with pytest.raises(ValueError, match="mode must be nightly or detect"):
        NightlySettings(mode="weekly").check()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="detect_chunks must be test or all"):
        NightlySettings(mode="detect", detect_chunks="train").check()  # type: ignore[arg-type]


def test_an_entity_flagged_on_each_day_of_an_event_is_no_false_alarm_on_either():
    from datetime import datetime

    from licanom.evaluation.nightly import _judge_entities
    from licanom.sim.world import SimulatedLog

    day1, day2 = datetime(2026, 1, 5, 10), datetime(2026, 1, 6, 10)
    log = pl.DataFrame({"Id": [1, 2, 3, 4], "Key": ["K", "K", "K", "Q"], "MachineCode": ["M", "M", "M", "N"],
                        "IP": ["10.0.0.1"] * 4, "Time": [day1, day2, datetime(2026, 1, 7, 10), day2]})
    sim = SimulatedLog(log=log, labels=pl.DataFrame({"Id": [1, 2], "event": [0, 0], "kind": ["key_sharing"] * 2}),
                       events=pl.DataFrame({"event": [0], "kind": ["key_sharing"], "start_time": [day1], "end_time": [day2],
                                            "key": ["K"], "ip": [""], "n_rows": [2], "description": [""]}))
    # the key flagged on both days of its event and on the day after it; another key once
    entities = pl.DataFrame({"entity_kind": ["key-day"] * 4, "entity": ["K", "K", "K", "Q"], "key": ["K", "K", "K", "Q"],
                             "machine_code": [""] * 4, "address": [""] * 4,
                             "start_time": [day1, day2, datetime(2026, 1, 7, 10), day2], "is_anomaly": [True] * 4})
    chunks = pl.DataFrame({"first_id": [1, 3], "last_id": [2, 4], "is_anomaly": [False, False]})
    row = _judge_entities({"chunks": 2}, entities, chunks, log, sim)
    assert (row["entities_flagged"], row["entities_false"], row["found_entities"]) == (4, 2, 1)


def test_incidents_count_false_ones_and_the_nights_that_hold_them():
    """One flood of many chunks is one incident; an incident is false when none of its chunks
    holds a labelled row, and false outside incidents when none is an event's key and hours
    either."""
    from licanom.evaluation.nightly import incident_counts

    truth = np.array([False, True, False, False, False, False, False])
    neighbour = np.array([False, False, True, False, False, False, False])
    incidents = pl.DataFrame({"night": [0, 0, 1, 1, 2],
                              "positions": [[0, 1], [2], [3, 4, 5], [6], []]},
                             schema={"night": pl.Int64, "positions": pl.List(pl.Int64)})
    assert incident_counts(incidents, truth, neighbour) == {
        "incidents": 5, "incidents_false": 4, "incidents_false_elsewhere": 3, "nights_false": 3}
    assert incident_counts(incidents.head(0), truth, neighbour)["incidents"] == 0


def test_each_flagged_night_chunk_lies_in_one_incident_of_its_own_night():
    from licanom.evaluation.nightly import scored_variants

    settings = NightlySettings(days=5, detectors=("Tail_context",), clustering=False)
    [scored] = scored_variants(World("tiny", None).simulate("floating", 3, settings.days), settings)
    flagged = np.flatnonzero(scored.chunks["is_anomaly"].to_numpy())
    assert flagged.size and scored.nights == 2
    positions = np.concatenate([np.asarray(p, dtype=np.int64) for p in scored.incidents["positions"].to_list()])
    assert np.array_equal(np.sort(positions), flagged)  # each flagged chunk once, no other chunk
    passes = np.cumsum(scored.chunks["chunk"].to_numpy() == 0) - 1  # a night's chunks are numbered from 0
    for night, p in scored.incidents.select("night", "positions").iter_rows():
        assert set(passes[p]) == {night}
    [row] = run_vendor(World("tiny", None), "floating", 3, settings)
    assert row["nights"] == 2 and row["incidents"] == scored.incidents.height
    assert row["nights_false"] <= row["incidents_false"] <= row["incidents"] <= row["flagged"]
    summary = summarise(pl.DataFrame([row]))
    assert summary["incidents_per_night"][0] == row["incidents"] / 2


def _vendor(world: str, seed: int, chunks: int, fa: int, events: int, found: int, flagged: int = 1) -> dict[str, object]:
    return {"world": world, "profile": "floating", "seed": seed, "detector": "Tail_context", "chunks": chunks,
            "anomalous_chunks": events, "events": events, "found": found, "found_labelled": found, "false_alarms": fa,
            "false_alarms_elsewhere": fa, "flagged": flagged, "auroc": 0.9, "auprc": 0.8, "train_seconds": 1.0,
            "events_brute_force": events, "found_brute_force": found, "events_key_sharing": 0, "found_key_sharing": 0}


def test_headline_intervals_resample_vendors_and_widen_when_one_vendor_holds_the_false_alarms():
    from scipy.stats import binomtest

    from licanom.evaluation.nightly import headline

    def exact(k: int, n: int) -> tuple[float, float]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        return ci.low, ci.high

    # the same 24 false alarms in 12,000 chunks: from one vendor's night, or two from each vendor
    lumped = [_vendor("lumped", s, 1000, 24 if s == 0 else 0, 4, 3) for s in range(12)]
    spread = [_vendor("spread", s, 1000, 2, 4, 3) for s in range(12)]
    silent = [_vendor("one", 0, 500, 0, 3, 0, flagged=0)]
    frame = pl.DataFrame([*lumped, *spread, *silent])
    h = headline(frame)
    assert h["world"].to_list() == ["lumped", "spread", "one"]
    lump, even, one = h.rows(named=True)
    assert lump["fa_per_10k"] == even["fa_per_10k"] == 20.0
    for r in (lump, even):
        assert r["fa_lo"] <= r["fa_per_10k"] <= r["fa_hi"] and r["found_lo"] <= r["found"] <= r["found_hi"]
    assert lump["fa_hi"] - lump["fa_lo"] > 20.0  # one vendor in twelve: anywhere from none to twice the figure
    # every vendor alike: no resample moves it, and the exact binomial interval of the pooled counts is left
    assert (even["fa_lo"], even["fa_hi"]) == pytest.approx(tuple(1e4 * v for v in exact(24, 12_000)))
    assert (even["found_lo"], even["found_hi"]) == pytest.approx(exact(36, 48)) and even["found"] == 0.75
    # one vendor: the binomial interval; it flagged nothing while events were present
    assert one["found"] == 0.0 and (one["found_lo"], one["found_hi"]) == pytest.approx(exact(0, 3))
    assert one["silent_vendors"] == 1
    # the kind found least, among the kinds that had events (key sharing had none)
    assert lump["weakest_kind"] == "brute_force" and lump["weakest_found"] == 0.75


def test_headline_is_a_ratio_of_sums_over_vendors_and_by_hand_on_two():
    from licanom.evaluation.nightly import headline

    # two vendors of 1,000 chunks, 0 and 10 false alarms: the resamples are AA, AB, BA, BB (0, 50, 50, 100
    # per 10,000 chunks, a quarter, half and a quarter of them): the 5th and 95th percentiles are 0 and 100
    two = headline(pl.DataFrame([_vendor("two", 1, 1000, 0, 2, 2), _vendor("two", 2, 1000, 10, 2, 1)]))
    assert two["fa_per_10k"][0] == 50.0 and (two["fa_lo"][0], two["fa_hi"][0]) == (0.0, 100.0)
    # pooled counts, not the mean of each vendor's rate: 10 false alarms in one small vendor's 10 chunks
    # beside 11 vendors of 10,000 clean chunks are 0.9 per 10,000 chunks, not 833
    small = [_vendor("small", s, 10_000, 0, 2, 2) for s in range(11)] + [_vendor("small", 11, 10, 10, 2, 2)]
    r = headline(pl.DataFrame(small)).row(0, named=True)
    assert r["fa_per_10k"] == pytest.approx(10 * 1e4 / 110_010) and r["fa_hi"] < 5.0
    # a vendor without events flags nothing without being silent, and adds nothing to the share found
    quiet = [_vendor("quiet", 1, 1000, 0, 0, 0, flagged=0), _vendor("quiet", 2, 1000, 0, 4, 2),
             _vendor("quiet", 3, 1000, 0, 4, 4)]
    q = headline(pl.DataFrame(quiet)).row(0, named=True)
    assert q["silent_vendors"] == 0 and q["found"] == 0.75 and q["events"] == 8
    alone = headline(pl.DataFrame(quiet[1:])).row(0, named=True)
    assert (q["found_lo"], q["found_hi"]) == (alone["found_lo"], alone["found_hi"])
    # seeded: the same rows give the same intervals, another seed others
    varied = pl.DataFrame([_vendor("varied", s, 500 + 37 * s, (s * 7) % 11, 5, 2 + s % 4) for s in range(12)])
    assert headline(varied).equals(headline(varied))
    assert not headline(varied, seed=1).equals(headline(varied))


def test_summarise_pools_runs_of_other_seeds_and_refuses_a_vendor_twice(tmp_path, capsys):
    from benchmarks.eval_nightly import main

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    pl.DataFrame([_vendor("share 10%", s, 1000, s, 4, 3) for s in (1, 2)]).write_csv(first)
    pl.DataFrame([_vendor("share 10%", s, 1000, 0, 4, 4) for s in (3, 4)]).write_csv(second)
    assert main(["--summarise", str(first), str(second), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "summary.md").read_text()
    # four vendors pooled: 14 of 16 events, 3 false alarms in 4,000 chunks, each with its interval
    assert "| share 10% | 4 | 16 | 0.88 (" in text and "| 7.5 (" in text
    with pytest.raises(SystemExit, match="seed 1.*a.csv and .*a.csv"):
        main(["--summarise", str(first), str(first)])
    # a run of another version of the evaluation (a column the other lacks) is refused, not read as nulls
    pl.read_csv(second).drop("found_labelled").write_csv(tmp_path / "older.csv")
    with pytest.raises(SystemExit, match="older.csv and .*a.csv have other columns \\(found_labelled\\)"):
        main(["--summarise", str(first), str(tmp_path / "older.csv")])
    # vendors without chunks only: an empty summary, as before the headline
    pl.read_csv(first).with_columns(pl.lit(0).alias("chunks")).write_csv(tmp_path / "none.csv")
    assert main(["--summarise", str(tmp_path / "none.csv")]) == 0
