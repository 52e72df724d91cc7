"""licanom.evaluation.blocked: metrics on hand-made arrays, the recommendation rule, one tiny evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pytest

from licanom.evaluation import blocked as ev
from licanom.evaluation import metrics, output
from licanom.config import TrainConfig
from licanom.sim import ANOMALY_KINDS, simulate

TINY = dict(profiles=("node-locked",), seeds=(1,), days=7)


# --- metrics on hand-made arrays ---------------------------------------------------------------


def _overlap_case() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ten rows (Ids 10..19) in windows of 4 every 2 rows: chunk c holds rows 2c..2c+3.

    Event 0 (brute_force): row 1 -> chunk 0. Event 1 (brute_force): rows 5 and 9 ->
    chunks 1, 2 and 3. Event 2 (key_sharing): Id 99, a row in no chunk.
    """
    labels = pl.DataFrame({"Id": [11, 15, 19, 99], "event": [0, 1, 1, 2]})
    events = pl.DataFrame({"event": [0, 1, 2], "kind": ["brute_force", "brute_force", "key_sharing"]})
    overlaps = metrics.event_overlaps(np.arange(10, 20), labels, np.array([0, 2, 4, 6]), size=4)
    return overlaps, events


def test_event_overlaps_follow_rows_into_overlapping_windows():
    overlaps, _ = _overlap_case()
    assert overlaps.rows() == [(0, 0), (1, 1), (1, 2), (1, 3)]


def test_an_event_is_found_when_any_overlapping_chunk_is_flagged():
    overlaps, events = _overlap_case()
    only_last = metrics.events_found(overlaps, np.array([False, False, False, True]))
    assert only_last.rows() == [(0, False), (1, True)]  # event 1 through its row 9 alone
    rec = metrics.kind_recall(only_last, events)
    assert rec["recall_brute_force"] == 0.5
    assert math.isnan(rec["recall_key_sharing"])  # its only event is in no chunk
    assert rec["event_recall"] == 0.5 and rec["mean_kind_recall"] == 0.5

    first = metrics.kind_recall(metrics.events_found(overlaps, np.array([True, False, False, False])), events)
    assert first["recall_brute_force"] == 0.5
    nothing = metrics.kind_recall(metrics.events_found(overlaps, np.zeros(4, bool)), events)
    assert nothing["mean_kind_recall"] == 0.0


def test_decision_metrics_and_false_alarms_per_10k():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    flagged = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    m = metrics.decision_metrics(y, flagged)
    assert m["flagged"] == 2 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(0.5)
    assert m["false_alarms_per_10k"] == 1250.0  # one normal chunk flagged out of 8
    none = metrics.decision_metrics(y, np.zeros(8, bool))
    assert math.isnan(none["precision"]) and none["recall"] == 0.0 and none["f1"] == 0.0
    assert none["false_alarms_per_10k"] == 0.0
    assert metrics.false_alarms_per_10k(np.zeros(20_000, bool), np.r_[np.ones(3, bool), np.zeros(19_997, bool)]) == 1.5


def test_incident_chunks_hold_an_events_key_or_address_in_its_clock_hours():
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2025, 1, 6, 10, 0, tzinfo=timezone.utc)
    minutes = [0, 20, 50, 65, 130, 190, 200, 260]  # eight rows, chunks of 2: rows 2c, 2c + 1
    rows = pl.DataFrame({
        "Time": [t0 + timedelta(minutes=m) for m in minutes],
        "Key": ["A", "B", "A", "A", "B", "C", "B", "A"],
        "IP": ["1", "2", "1", "1", "9", "9", "2", "1"],
    })
    events = pl.DataFrame({
        "key": ["A", ""], "ip": ["1", "9"],
        "start_time": [t0 + timedelta(minutes=30), t0 + timedelta(minutes=185)],  # 10:30, 13:05
        "end_time": [t0 + timedelta(minutes=40), t0 + timedelta(minutes=186)],
    })
    got = metrics.incident_chunks(rows, events, np.array([0, 2, 4, 6]), size=2)
    # key A in the 10:00 hour (rows 0 and 2; not row 3 at 11:05, nor row 7 at 14:20); address 9
    # in the 13:00 hour (row 5; row 4 at 12:10 is before it)
    assert got.tolist() == [True, True, True, False]
    assert not metrics.incident_chunks(rows, events.head(0), np.array([0, 2, 4, 6]), size=2).any()
    nameless = events.with_columns(pl.lit(None, pl.String).alias("key"), pl.lit(None, pl.String).alias("ip"))
    assert not metrics.incident_chunks(rows, nameless, np.array([0, 2, 4, 6]), size=2).any()
    y = np.array([0, 0, 0, 0], bool)
    flagged = np.array([1, 0, 0, 1], bool)
    assert metrics.false_alarms_per_10k(y | got, flagged) == 2500.0  # only the last chunk is elsewhere


def test_flag_at_budget_lets_at_most_the_budget_of_false_alarms_through():
    y = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0] * 100, dtype=bool)  # 1,000 chunks, 800 normal
    scores = np.where(y, 5.0, 0.0) + np.linspace(0, 1, len(y))
    flagged = metrics.flag_at_budget(y, scores, per_10k=50.0)  # 5 false alarms allowed
    assert (flagged & ~y).sum() == 5
    top_normal = np.sort(scores[~y])[-5:]
    assert set(scores[flagged & ~y]) == set(top_normal) and flagged[y].all()
    assert not metrics.flag_at_budget(y, scores, per_10k=0.0)[~y].any()
    assert metrics.flag_at_budget(y, scores, per_10k=10_000.0).all()
    ties = metrics.flag_at_budget(np.array([0, 0, 0, 1], bool), np.array([1.0, 1.0, 1.0, 2.0]), per_10k=5_000.0)
    assert ties.tolist() == [False, False, False, True]  # a tie at the cut is left out


def test_auprc_is_average_precision():
    # ranked: 0.9 anomaly (P=1, R=1/2), 0.8 normal, 0.3 anomaly (P=2/3, R=1)
    y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])
    assert metrics.auprc(y, s) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert math.isnan(metrics.auprc(np.zeros(4), s))


def test_to_markdown():
    frame = pl.DataFrame({"name": ["a|b", "c"], "x": [0.12345, None], "n": [3, 4]})
    assert output.to_markdown(frame, digits=2) == (
        "| name | x | n |\n| --- | ---: | ---: |\n| a\\|b | 0.12 | 3 |\n| c |  | 4 |"
    )


# --- the recommendation rule on a hand-made table ---------------------------------------------


def _row(profile: str, detector: str, decision: str, recall: float, fa: float, cost: float,
         n_train: float, kinds: dict[str, float] | None = None) -> dict[str, object]:
    row: dict[str, object] = {c: 0.0 for c in metrics.TABLE_COLUMNS}
    per_kind = {k: recall for k in ANOMALY_KINDS} | (kinds or {})
    row.update(
        profile=profile, detector=detector, family="x", inputs="chunks", decision=decision, n_seeds=1,
        n_train_chunks=n_train, mean_kind_recall=recall, false_alarms_per_10k=fa,
        train_seconds=cost, score_seconds=0.0, decision_seconds=0.0,
        **{f"recall_{k}": v for k, v in per_kind.items()},
    )
    return row


def test_recommend_maximises_recall_under_the_false_alarm_limit_and_breaks_ties_by_cost():
    table = pl.DataFrame([
        # small vendor (trains on 100 chunks)
        _row("node-locked", "Loud", "M3", 0.9, 60.0, 1.0, 100),       # over the limit
        _row("node-locked", "Slow", "M3", 0.6, 10.0, 5.0, 100),
        _row("node-locked", "Cheap", "pot", 0.6, 20.0, 1.0, 100,       # ties Slow, cheaper
             {"key_sharing": 0.0, "failure_loop": 0.2}),
        _row("node-locked", "Weak", "M2", 0.4, 0.0, 0.1, 100),
        # large vendors: nothing under the limit
        _row("floating", "A", "M3", 0.8, 80.0, 1.0, 2000),
        _row("floating", "B", "M3", 0.9, 70.0, 9.0, 2000),
        _row("mixed", "A", "M3", 0.8, 90.0, 1.0, 3000),
        _row("mixed", "B", "M3", 0.9, 70.0, 9.0, 3000),
    ]).select(metrics.TABLE_COLUMNS)
    table = table.with_columns(
        pl.when(pl.col("profile") == "node-locked").then(0.0).otherwise(pl.col("recall_key_sharing"))
        .alias("recall_key_sharing")
    )
    rec = output.recommend(table, small_max_train_chunks=500, max_false_alarms=50)
    assert rec.columns == list(output.RECOMMENDATION_COLUMNS)
    small, large = rec.row(0, named=True), rec.row(1, named=True)
    assert (small["size"], small["detector"], small["decision"], small["meets_limit"]) == ("small", "Cheap", "pot", True)
    assert "no detector found any event of: key_sharing" in small["note"]
    assert "under 50% of: failure_loop" in small["note"]
    assert (large["size"], large["profiles"], large["detector"], large["meets_limit"]) == ("large", "floating,mixed", "B", False)
    assert large["false_alarms_per_10k"] == 70.0 and "no detector stays under 50" in large["note"]


# --- a tiny evaluation end to end --------------------------------------------------------------


@dataclass
class _MeanDistance:
    """A toy detector for the registry: distance of the summary vector from the training mean."""

    mean_: np.ndarray | None = field(default=None, init=False)
    decision_scores_: np.ndarray | None = field(default=None, init=False)

    def fit(self, X: np.ndarray) -> _MeanDistance:
        self.mean_ = X.mean(axis=0)
        self.decision_scores_ = self.decision_function(X)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.abs(X - self.mean_).sum(axis=1)


def test_the_models_help_says_what_all_and_sequence_evaluate():
    """The help said "the four sequence models" and "the eight autoencoders" as written words:
    they are now the evaluation's own groups (its 'sequence' holds no DeepLog)."""
    import argparse

    from licanom.evaluation.cli import add_arguments, settings_from

    parser = add_arguments(argparse.ArgumentParser())
    text = next(a.help for a in parser._actions if a.dest == "models")
    assert f"'all' = the {len(ev.AUTOENCODERS)} autoencoders" in text, text
    assert f"'sequence' = the {len(ev.SEQUENCE)} sequence models it evaluates ({', '.join(ev.SEQUENCE)})" in text, text
    assert settings_from(parser.parse_args(["--models", "sequence", "--no-baselines"])).models == ev.SEQUENCE


def test_the_help_says_which_sequence_models_evaluate_leaves_out_and_counts_chunks_in_whole_numbers():
    """`licanom evaluate --help` said "'sequence' = the 4 sequence models" where detect --help and
    conf/defaults.yaml say five: the evaluation registers no DeepLog, and its help now says so
    (both counted from the registries); --small-max-train-chunks showed its default as 500.0."""
    import argparse
    import re
    from pathlib import Path

    from licanom.cli import build_parser
    from licanom.config import AutoModels, sequence_models
    from licanom.evaluation.cli import add_arguments

    parser = add_arguments(argparse.ArgumentParser())
    text = next(a.help for a in parser._actions if a.dest == "models")
    left_out = [n for n in sequence_models() if n not in ev.SEQUENCE]
    assert left_out == ["DeepLog"]
    assert "; DeepLog, in train.models' and detect's 'sequence', is not evaluated here" in text, text
    detect = next(a.help for a in build_parser("detect")._subparsers._group_actions[0].choices["detect"]._actions
                  if a.dest == "model")
    assert f"'sequence' (the {len(sequence_models())} sequence models: {', '.join(sequence_models())})" in detect
    words = {4: "four", 5: "five", 6: "six"}
    defaults = (Path(__file__).parents[1] / "conf" / "defaults.yaml").read_text()
    assert re.search(rf'"sequence" for the {words[len(sequence_models())]}\)', defaults)
    chunks = next(a for a in parser._actions if a.dest == "small_max_train_chunks")
    assert chunks.default == AutoModels().small_max_train_chunks == 500 and isinstance(chunks.default, int)
    shown = " ".join(build_parser("evaluate")._subparsers._group_actions[0].choices["evaluate"].format_help().split())
    assert "are 'small' (default: 500)" in shown, shown
    assert parser.parse_args(["--small-max-train-chunks", "120"]).small_max_train_chunks == 120


def test_settings_are_checked():
    with pytest.raises(ValueError, match="profile"):
        ev.EvalSettings(profiles=("retail",)).check()
    with pytest.raises(ValueError, match="folds"):
        ev.EvalSettings(folds=1).check()
    with pytest.raises(ValueError, match="anomaly_rate"):
        ev.EvalSettings(anomaly_rate=-1.0).check()
    with pytest.raises(ValueError, match="unknown detector"):
        ev.make_candidates(["NoSuchNet"], ev.EvalSettings())


@pytest.mark.slow
def test_blocked_folds_encode_with_the_training_blocks_vocabulary():
    sim = simulate("node-locked", seed=1, days=7)
    vendor = ev._prepare_vendor(sim, ev.EvalSettings(**TINY))
    n = len(vendor.truth)
    assert len(vendor.fold_X) == 2 and sorted(np.concatenate(vendor.test_blocks)) == list(range(n))
    for X, test in zip(vendor.fold_X, vendor.test_blocks, strict=True):
        train = np.setdiff1d(np.arange(n), test)
        categorical = X[..., 2:]  # ip .. country; 0.0 = unseen by the fold's vocabulary
        assert (categorical[train] > 0).all()
        assert (categorical[test] == 0).any()  # new keys/IPs in the held-out block


@pytest.mark.slow
def test_protocol_all_with_a_registered_toy_detector():
    """Fit on every chunk, score every chunk: M2 (the largest training score) flags nothing."""
    settings = ev.EvalSettings(**TINY, protocol="all", models=("IForest_summary",))
    toy = ev.Candidate("MeanDistance", "toy", _MeanDistance, inputs="summary")
    out = ev.run_evaluation(settings, [*ev.make_candidates(settings.models, settings), toy])
    m2 = out.table.filter(pl.col("decision") == "M2")
    assert m2["flagged"].to_list() == [0.0, 0.0]
    assert set(out.table["detector"]) == {"IForest_summary", "MeanDistance"}
    assert "own" not in out.table.filter(pl.col("detector") == "MeanDistance")["decision"].to_list()
    assert (out.table["n_train_chunks"] == out.table["n_chunks"]).all()


@pytest.fixture(scope="module")
def tiny() -> ev.Evaluation:
    settings = ev.EvalSettings(**TINY, models=("TCN_AE", *ev.BASELINES), train=TrainConfig(epochs=1, threads=1))
    return ev.run_evaluation(settings)


@pytest.mark.slow
def test_tiny_evaluation_has_every_column_and_row(tiny: ev.Evaluation, tmp_path):
    assert tiny.per_seed.columns == list(metrics.PER_SEED_COLUMNS)
    assert tiny.table.columns == list(metrics.TABLE_COLUMNS)
    expected = {("TCN_AE", d) for d in (*metrics.THRESHOLD_DECISIONS, *metrics.CLUSTER_DECISIONS, metrics.ORACLE_DECISION)}
    expected |= {(b, d) for b in ev.BASELINES for d in (*metrics.THRESHOLD_DECISIONS, "own", metrics.ORACLE_DECISION)}
    assert set(tiny.table.select("detector", "decision").rows()) == expected
    assert tiny.table.height == len(expected) and (tiny.table["n_seeds"] == 1).all()
    t = tiny.table
    assert t.select(metrics.KEY_COLUMNS).null_count().sum_horizontal().item() == 0
    for col in ("auroc", "auprc", "recall", "f1", "event_recall", "mean_kind_recall", *metrics.KIND_COLUMNS):
        assert t[col].drop_nulls().is_between(0, 1).all(), col
    assert (t["n_events"] >= len(ANOMALY_KINDS)).all()  # every kind at least once in 7 days
    assert (t["n_train_chunks"] < t["n_chunks"]).all()  # blocked: out-of-fold scores
    assert t.group_by("detector").agg(pl.col("auroc").n_unique())["auroc"].max() == 1  # one score per detector
    # false alarms agree with precision and the number flagged
    fa = t["flagged"] * (1 - t["precision"].fill_null(0)) * 1e4 / t["n_chunks"]
    assert np.allclose(fa.to_numpy(), t["false_alarms_per_10k"].to_numpy())

    oracle = t.filter(pl.col("decision") == metrics.ORACLE_DECISION)
    assert (oracle["false_alarms_per_10k"] <= 50 + 1e-9).all()  # the settings' budget
    assert metrics.ORACLE_DECISION not in output.recommend(tiny.table)["decision"].to_list()

    paths = tiny.write(tmp_path, output.recommend(tiny.table))
    assert all(p.exists() for p in paths)
    assert pl.read_csv(tmp_path / "evaluation.csv").shape == tiny.table.shape
    assert (tmp_path / "evaluation.md").read_text().count("\n") == tiny.table.height + 2


class _FakeTracker:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.fail_on = fail_on

    def __getattr__(self, name: str):
        def record(*args, **kwargs):
            self.calls.append((name, args + tuple(kwargs.values())))
            if name == self.fail_on:
                raise RuntimeError("store down")
            return "run-1" if name == "start_run" else None
        return record


@pytest.mark.slow
def test_log_evaluation_makes_one_run(tiny: ev.Evaluation):
    tracker = _FakeTracker()
    run_id = output.log_evaluation(tracker, tiny, output.recommend(tiny.table))  # type: ignore[arg-type]
    names = [c[0] for c in tracker.calls]
    assert run_id == "run-1" and names[0] == "start_run" and names[-1] == "end_run"
    assert tracker.calls[0][1][0] == "evaluation" and tracker.calls[-1][1] == ("run-1",)
    params = dict(next(c[1][1] for c in tracker.calls if c[0] == "log_params"))
    assert params["days"] == 7 and params["protocol"] == "blocked" and params["jobs"] == 1
    metrics: dict[str, float] = {}
    for name, args in tracker.calls:
        if name == "log_metrics":
            assert len(args[1]) <= 1000
            metrics |= args[1]
    assert "node-locked/TCN_AE/auroc" in metrics and "node-locked/LOF_flat/own/f1" in metrics
    artifacts = {args[-1] for name, args in tracker.calls if name in ("log_frame", "log_text")}
    assert artifacts == {"evaluation.csv", "evaluation_per_seed.csv", "evaluation.md",
                         "recommendation.csv", "recommendation.md"}

    failing = _FakeTracker(fail_on="log_frame")
    with pytest.raises(RuntimeError, match="store down"):
        output.log_evaluation(failing, tiny)  # type: ignore[arg-type]
    assert failing.calls[-1] == ("end_run", ("run-1", "FAILED"))


def test_make_eval_measures_every_model_the_defaults_can_choose():
    """The defaults follow from `make eval`: its default run evaluates every model that
    `train.models: auto` may train, and the model groups expand."""
    from benchmarks.eval_detectors import parse_args, settings_from
    from licanom.config import load_config

    default = settings_from(parse_args([])).models
    auto = load_config().train.auto
    assert set(auto.small) | set(auto.large) <= set(default)
    assert set(ev.AUTOENCODERS) | set(ev.SEQUENCE) | set(ev.CONTEXT) | set(ev.BASELINES) == set(default)
    assert settings_from(parse_args(["--models", "TCN_AE,GRU_OCSVM", "--no-baselines"])).models == ("TCN_AE", "GRU_OCSVM")


@pytest.mark.slow
def test_vendors_in_parallel_processes_give_the_same_rows_in_the_same_order():
    settings = ev.EvalSettings(profiles=("node-locked", "usage-based"), seeds=(1, 2), days=2,
                               models=("Tail_context", "IForest_summary"))
    one = ev.run_evaluation(settings)
    lines: list[str] = []
    two = ev.run_evaluation(settings, progress=lines.append, jobs=2)
    timing = [c for c in one.per_seed.columns if c.endswith("_seconds")]
    assert timing
    assert two.per_seed.drop(timing).equals(one.per_seed.drop(timing))
    assert len(lines) == 4 and lines[-1].endswith("s)") and "4/4 vendors" in lines[-1]
    assert (one.jobs, two.jobs) == (1, 2)
    with pytest.raises(ValueError, match="candidates=None"):
        ev.run_evaluation(settings, ev.make_candidates(settings.models, settings), jobs=2)
    with pytest.raises(ValueError, match="at least 1"):
        ev.run_evaluation(settings, jobs=0)
    # a detector registered in this process only: the worker processes would not know it
    ev.register("MeanDistance", lambda s: ev.Candidate("MeanDistance", "toy", _MeanDistance, inputs="summary"))
    try:
        late = ev.EvalSettings(profiles=("node-locked",), seeds=(1, 2), days=7, models=("MeanDistance",))
        with pytest.raises(ValueError, match="registered after"):
            ev.run_evaluation(late, jobs=2)
    finally:
        ev._REGISTRY.pop("MeanDistance")


@pytest.mark.slow
def test_a_vendor_that_fails_in_a_worker_process_fails_the_evaluation_with_its_error():
    from licanom.config import ChunkConfig
    from licanom.data.chunk import NotEnoughDataError

    settings = ev.EvalSettings(profiles=("node-locked",), seeds=(1, 2, 3), days=2, models=("Tail_context",),
                               chunk=ChunkConfig(size=100_000, stride=100_000))  # longer than the log
    with pytest.raises(NotEnoughDataError, match="fewer than one chunk"):
        ev.run_evaluation(settings, jobs=2)


def test_a_sequence_model_is_judged_by_its_own_boundary_too():
    """The blocked evaluation's "own" decision of a sequence model is its own boundary (its
    predict); the baselines' is scikit-learn's cut (predict_own)."""
    settings = ev.EvalSettings(**TINY, models=("LSTM_OCSVM",), clustering=False, thresholds=("M3",),
                               train=TrainConfig(epochs=1, threads=1))
    out = ev.run_evaluation(settings)
    assert {"M3", "own"} <= set(out.table.filter(pl.col("detector") == "LSTM_OCSVM")["decision"].to_list())


def test_the_autoencoders_take_the_columns_of_the_encoder_evaluated():
    """With --encoder rows the evaluation built its autoencoders for the thesis's 8 columns, and
    each failed on the rows mode's chunks ("inputs='thesis' has 8 columns, X has 40")."""
    from licanom.config import EncodeConfig

    for encoder, inputs in (("thesis", "thesis"), ("frequency", "thesis"), ("rows", "rows")):
        settings = ev.EvalSettings(encode=EncodeConfig(encoder=encoder))
        (candidate,) = ev.make_candidates([ev.AUTOENCODERS[0]], settings)
        assert candidate.make().inputs == inputs, encoder
