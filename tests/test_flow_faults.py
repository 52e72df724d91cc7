"""Faults through the real flows: a registry write that dies, MLflow gone mid-night, the same night
run twice in a row and twice at once, the score-vendor flow killed with SIGKILL mid-night."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import flow_stores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vendor_env(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("faults")
    out = root / "out"
    mp = flow_stores(root, {"gamma": f"""
output_dir: {out}
source: {{kind: simulate, profile: floating, seed: 5, days: 3}}
train: {{models: [TCN_AE_Small], epochs: 1, batch_size: 64}}
detect: {{m1: false}}
context: {{n_estimators: 20}}
""", "kappa": f"""
output_dir: {out}
source: {{kind: files, path: {root / 'kappa.csv'}}}
"""})
    from flows.train_vendor import train_vendor
    from licanom.sim import simulate

    log = simulate("floating", seed=5, days=3).log
    until = log["Time"].max() - timedelta(days=1)
    summary = train_vendor("gamma", until=until)
    yield out, summary, log
    mp.undo()


def test_registry_write_that_dies_leaves_the_champion_alone(vendor_env, monkeypatch) -> None:
    from flows.train_vendor import train_vendor
    from licanom.ops.tracking import Tracker, configure

    before = configure().client.get_model_version_by_alias("licanom-gamma", "champion").version
    real = Tracker.register_bundle

    def dies_after_writing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(self, *args, **kwargs)  # the version is written ...
        raise SystemError("killed before the champion moved")  # ... and the process dies

    monkeypatch.setattr(Tracker, "register_bundle", dies_after_writing)
    state = train_vendor("gamma", return_state=True)
    assert state.is_failed()
    tracker = configure()
    # its parent MLflow run ended FAILED, saying why (it stayed RUNNING for good)
    parents = tracker.client.search_runs([tracker.client.get_experiment_by_name(tracker.experiment_name("gamma")).experiment_id],
                                         filter_string="attributes.run_name = 'train gamma'", order_by=["attributes.start_time DESC"])
    assert parents[0].info.status == "FAILED"
    assert parents[0].data.tags["licanom.outcome"] == "failed: SystemError: killed before the champion moved"
    assert not [r for r in parents if r.info.status == "RUNNING"]
    champion = tracker.client.get_model_version_by_alias("licanom-gamma", "champion")
    assert champion.version == before
    bundle, version = tracker.load_champion("gamma")
    assert version == before and bundle.vendor == "gamma"


def _watermark(out: Path) -> int | None:
    from licanom.ops.scoring_state import load_state

    return load_state(out, "gamma").watermark


def test_an_unreachable_mlflow_server_ends_licanom_run_with_4_naming_it(tmp_path, prefect_harness, capsys) -> None:
    """`licanom run score` with the MLflow tracking server down ended with 1 ("score flow failed:
    ..."), where an unreachable Prefect API ends with 4, as the exit codes' table has it for a
    source that cannot be reached: now 4 too, in one line naming the server's URI."""
    from flows.run import main

    mp = flow_stores(tmp_path, {"lambda": f"output_dir: {tmp_path / 'out'}\n"
                                          f"source: {{kind: files, path: {tmp_path / 'lambda.csv'}}}\n"})
    try:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.setenv(name, "http://ops:s3cret@127.0.0.1:9")
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mp.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        capsys.readouterr()
        assert main(["score", "--vendor", "lambda"]) == 4
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("licanom: score flow failed: MLflow tracking server http://***@127.0.0.1:9 is unreachable"), last
        assert "s3cret" not in last
    finally:
        mp.undo()


def test_mlflow_gone_mid_night_does_not_advance_the_watermark(vendor_env, monkeypatch) -> None:
    import tasks.scoring
    from flows.score_vendor import score_vendor
    from licanom.ops.tracking import Tracker, TrackingUnavailableError

    out, _, _ = vendor_env
    before = _watermark(out)
    calls = []

    def down(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise TrackingUnavailableError("MLflow tracking server http://mlflow:5000 is unreachable")

    monkeypatch.setattr(Tracker, "start_run", down)
    monkeypatch.setattr(tasks.scoring, "log_night", tasks.scoring.log_night.with_options(retry_delay_seconds=0))
    state = score_vendor("gamma", return_state=True)
    assert state.is_failed()
    assert "unreachable" in (state.message or "") or "unreachable" in str(state.result(raise_on_failure=False))
    assert len(calls) == 1  # MLflow's client already retried with back-off: Prefect does not retry again
    assert _watermark(out) == before


def test_same_night_twice_at_once_and_again_moves_the_watermark_once(vendor_env) -> None:
    from flows.score_vendor import score_vendor

    out, _, log = vendor_env
    before = _watermark(out)
    nights: list[object] = []

    def run() -> None:
        nights.append(score_vendor("gamma"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(nights) == 2
    read = sorted(n.rows_read for n in nights)  # type: ignore[attr-defined]
    expected = log.filter(pl.col("Id") > before).height
    assert read == [0, expected]  # the second waited for the lock and found nothing new
    after = _watermark(out)
    assert after == log["Id"].max()

    again = score_vendor("gamma")
    assert again.rows_read == 0 and _watermark(out) == after

    # re-scoring the same night from its start gives identical results and leaves the watermark
    first = next(n for n in nights if n.rows_read)  # type: ignore[attr-defined]
    assert (first.out_dir / "report.html").exists() and (first.out_dir / "run.json").exists()  # type: ignore[attr-defined]
    rerun = score_vendor("gamma", since=before)
    assert _watermark(out) == after
    assert rerun.chunks.drop("score").equals(first.chunks.drop("score"))  # type: ignore[attr-defined]
    assert rerun.chunks["score"].to_list() == pytest.approx(first.chunks["score"].to_list(), rel=1e-6)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def three_families(vendor_env):  # type: ignore[no-untyped-def]
    """One training of an autoencoder, a sequence model and a context model through the flow."""
    from flows.train_vendor import train_vendor

    return train_vendor("gamma", models=["TCN_AE_Small", "GRU_OCSVM", "IForest_context"])


def test_a_sequence_model_trains_registers_and_scores_through_the_flow(vendor_env, three_families) -> None:
    """LSTM/GRU + OC-SVM beside an autoencoder: tracked per epoch, registered, and its registered
    version scores raw rows like any other (no per-column errors)."""
    import mlflow

    from licanom.ops.bundle import score_log
    from licanom.ops.tracking import configure

    _, _, log = vendor_env
    summary = three_families
    assert [v.model for v in summary.versions] == ["TCN_AE_Small", "GRU_OCSVM", "IForest_context"]
    assert summary.champion.model == "TCN_AE_Small"
    gru = summary.versions[1]
    tracker = configure()
    assert tracker.client.get_run(gru.run_id).data.params["solver"] == "gradient"
    assert len(tracker.client.get_metric_history(gru.run_id, "train/loss")) >= 1
    mlflow.set_tracking_uri(tracker.config.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{gru.name}/{gru.version}")
    scored = score_log(model.unwrap_python_model().bundle, log.tail(500))
    assert scored.chunks.height == 5 and scored.chunks["top_feature"].null_count() == 5
    assert (scored.chunks["is_anomaly"] == (scored.chunks["score"] > scored.chunks["threshold"])).all()
    assert "GRU_OCSVM" in set(summary.results["model"])


def test_the_context_model_trains_registers_and_scores_through_the_flow(vendor_env, three_families) -> None:
    """IForest_context beside an autoencoder: registered, and its registered version scores raw
    rows, naming the context signal of each chunk."""
    import mlflow

    from licanom.ops.bundle import score_log
    from licanom.data.context_vector import CONTEXT_COLUMNS
    from licanom.ops.tracking import configure

    _, _, log = vendor_env
    summary = three_families
    ctx = summary.versions[2]
    tracker = configure()
    assert tracker.client.get_run(ctx.run_id).data.params["family"] == "context"
    mlflow.set_tracking_uri(tracker.config.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{ctx.name}/{ctx.version}")
    bundle = model.unwrap_python_model().bundle
    scored = score_log(bundle, log.tail(500))
    assert scored.chunks.height == 5 and set(scored.chunks["top_feature"]) <= set(CONTEXT_COLUMNS)
    assert scored.chunks["error_time"].null_count() == 5
    from licanom.ops.detect import chunk_nights

    flags = bundle.detector.flags(scored.chunks["score"].to_numpy(), chunk_nights(scored.chunks))
    assert scored.chunks["is_anomaly"].to_list() == flags.tolist()  # the threshold and the night rule
    row = summary.results.filter(summary.results["model"] == "IForest_context").row(0, named=True)
    assert row["bottleneck"] == f"({len(CONTEXT_COLUMNS)},)" and row["M3"] is not None


def test_auto_models_train_what_the_size_rule_names(vendor_env) -> None:
    """models: auto resolves by the vendor's training chunks inside the flow; the first of the
    resolved list becomes the champion."""
    from flows.train_vendor import train_vendor
    from licanom.config import load_config
    from licanom.ops.tracking import configure

    auto = load_config("gamma").train.auto
    summary = train_vendor("gamma", models=["auto"])
    n_train = configure().client.get_run(summary.parent_run_id).data.metrics["chunks_train"]
    expected = auto.small if n_train <= auto.small_max_train_chunks else auto.large
    assert [v.model for v in summary.versions] == list(expected)
    assert summary.champion.model == expected[0]
    assert configure().client.get_run(summary.parent_run_id).data.params["models"] == ",".join(expected)


def _kappa(root: Path):  # type: ignore[no-untyped-def]
    """Vendor kappa: a registered Tail_context champion, scoring starting after Id 1599, a CSV export."""
    from licanom.ops.tracking import configure
    from tests.night_harness import NightVendor, make_bundle

    v = NightVendor(root=root, name="kappa", model_dir=root / "model-kappa")
    if not v.model_dir.exists():
        tracker = configure()
        run_id = tracker.start_run("kappa", "train", "training")
        version = tracker.register_bundle("kappa", run_id, make_bundle("kappa").save(v.model_dir), "Tail_context", None)
        tracker.promote("kappa", [version], "Tail_context")
        tracker.end_run(run_id)
        v.start(1599)
    return v


def test_the_flow_killed_mid_night_then_rerun_counts_each_row_once(vendor_env) -> None:
    """`licanom run score` killed with SIGKILL inside the commit; the next run (with new rows)
    leaves every Id in one published night or the carried tail, the killed night's MLflow run
    FAILED, none RUNNING. (One point here, each costs a process; the library's night is killed at
    a sample of the points in test_fault_injection.py, at every point by `make bench-faults`.)"""
    from prefect.settings import PREFECT_API_URL

    from flows.score_vendor import score_vendor
    from licanom.ops.scoring_state import CRASH_ENV, load_state
    from licanom.ops.tracking import configure
    from tests.night_harness import check_ledger, rows

    out = vendor_env[0]
    v = _kappa(out.parent)
    first = load_state(out, "kappa").watermark + 1
    v.append(rows(first, 90, seed=first))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), CRASH_ENV: "commit:state-tmp",
           "PREFECT_API_URL": PREFECT_API_URL.value(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "flows.run", "score", "--vendor", "kappa", "--api-attempts", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    v.append(rows(first + 90, 50, seed=first + 1))
    night = score_vendor("kappa")
    assert night.rows_read > 0
    check_ledger(v, list(range(1600, first + 140)), configure())
