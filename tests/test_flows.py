"""The Prefect flows end to end, under one session-wide test harness and a temporary MLflow store."""

from __future__ import annotations

import logging

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import flow_stores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory, prefect_harness):
    """conf/ with two simulated vendors and a broken one; a temporary MLflow store; out dir."""
    root = tmp_path_factory.mktemp("flows")
    out = root / "out"
    common = f"""
output_dir: {out}
train:
  models: [TCN_AE, LSTM_AE_Small]
  epochs: 2
  batch_size: 64
detect:
  m1: false
"""
    mp = flow_stores(root, {
        "alpha": common + "source: {kind: simulate, profile: floating, seed: 3, days: 3}\n",
        # scored beside alpha by `nightly`; its model is not the test's point: the fastest to fit
        "beta": f"output_dir: {out}\ntrain:\n  models: [Tail_context]\n"
                "source: {kind: simulate, profile: mixed, seed: 4, days: 4}\n",
        "broken": common + f"source: {{kind: files, path: {root / 'missing.csv'}}}\n",
        "epsilon": f"output_dir: {out}\ntrain:\n  models: [Tail_context]\n"
                 "source: {kind: simulate, profile: floating, seed: 5, days: 3}\n",
        "gamma": f"output_dir: {out}\ntrain:\n  models: [Tail_context]\n"
                 "source: {kind: simulate, profile: floating, seed: 8, days: 3}\n",
    })
    # what `nightly` scores: alpha and beta beside the broken one (a conf/ of their own: the
    # module's other vendors are other tests', each a flow run per night that shows nothing more)
    nightly_conf = root / "conf-nightly" / "vendors"
    nightly_conf.mkdir(parents=True)
    (nightly_conf.parent / "defaults.yaml").write_text((root / "conf" / "defaults.yaml").read_text())
    for name in ("alpha", "beta", "broken"):
        (nightly_conf / f"{name}.yaml").write_text((root / "conf" / "vendors" / f"{name}.yaml").read_text())
    yield root, out
    mp.undo()


@pytest.fixture(scope="module")
def trained_alpha(flow_env):
    from flows.train_vendor import train_vendor
    from licanom.config import load_config
    from licanom.sim import simulate

    cfg = load_config("alpha")
    log = simulate(cfg.source.profile, seed=cfg.source.seed, days=cfg.source.days).log
    until = log["Time"].max() - timedelta(days=1)
    summary = train_vendor("alpha", until=until)
    return summary, until


class RunLog(logging.Handler):
    """The records of Prefect's flow-run and task-run loggers (which do not propagate to the root's),
    while in its ``with`` block: entered once Prefect is imported (it sets its loggers up when first
    imported, dropping the handlers they had)."""

    LOGGERS = ("prefect.flow_runs", "prefect.task_runs")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[tuple[str, str]]:
        return [(r.name, r.getMessage()) for r in self.records if r.levelno >= logging.ERROR]

    def __enter__(self) -> RunLog:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


def test_versions_without_the_champion_alias_say_how_to_set_it_not_train_first(trained_alpha, monkeypatch):
    """The alias deleted (a rollback half done): "no champion model yet: train it first" was wrong
    advice, as training would move the alias anyway; the versions are there to choose from."""
    from licanom.ops.tracking import configure

    summary, _ = trained_alpha
    tracker = configure()
    champion = summary.champion.version
    tracker.client.delete_registered_model_alias("licanom-alpha", "champion")
    try:
        with pytest.raises(LookupError, match=r"has no champion: its registered model licanom-alpha has version\(s\) "
                                              r"1, 2 but none holds the alias 'champion'; set it"):
            tracker.load_champion("alpha")
    finally:
        tracker.client.set_registered_model_alias("licanom-alpha", "champion", champion)
    with pytest.raises(LookupError, match="no champion model yet: train it first"):
        tracker.load_champion("never-trained")
    # a registry that fails otherwise (refused, an error of its own) is not "train it first" (exit 2)
    from mlflow.exceptions import MlflowException

    def refused(name, alias):  # type: ignore[no-untyped-def]
        raise MlflowException("permission denied", error_code="PERMISSION_DENIED")

    monkeypatch.setattr(tracker.client, "get_model_version_by_alias", refused)
    with pytest.raises(MlflowException, match="permission denied"):
        tracker.load_champion("alpha")


def test_training_registers_versions_with_aliases(trained_alpha):
    from licanom.ops.tracking import configure

    summary, _ = trained_alpha
    tracker = configure()
    assert [v.model for v in summary.versions] == ["TCN_AE", "LSTM_AE_Small"]
    champion = tracker.client.get_model_version_by_alias("licanom-alpha", "champion")
    challenger = tracker.client.get_model_version_by_alias("licanom-alpha", "challenger")
    assert champion.version == summary.champion.version
    assert champion.tags["model"] == "TCN_AE"  # the configured default variant
    assert challenger.version == summary.versions[-1].version
    # per-epoch curves on each nested run
    for v in summary.versions:
        history = tracker.client.get_metric_history(v.run_id, "val/loss")
        assert [m.step for m in history] == [1, 2]
        run = tracker.client.get_run(v.run_id)
        assert run.data.tags["mlflow.parentRunId"] == summary.parent_run_id
        assert {"architecture", "bottleneck", "depth", "data_hash", "seed"} <= set(run.data.params)
    artifacts = {a.path for a in tracker.client.list_artifacts(summary.parent_run_id)}
    assert {"results.csv", "loss_curves.png", "vocabulary.json"} <= artifacts


def test_scoring_flow_matches_the_library_and_is_idempotent(trained_alpha, flow_env, caplog):
    import mlflow

    from flows.score_vendor import score_vendor
    from licanom.ops.bundle import score_log
    from licanom.config import load_config
    from licanom.data.pipeline import extract
    from licanom.ops.scoring_state import load_state
    from licanom.ops.tracking import configure

    _, out = flow_env
    before = load_state(out, "alpha")
    caplog.set_level(logging.INFO)
    first = score_vendor("alpha")
    assert first.rows_read > 0 and first.chunks.height > 0
    ledger = pl.read_parquet(first.out_dir / "ledger.parquet")
    assert first.rows_carried == int((ledger["fate"] == "carried").sum())
    said = caplog.text  # the flow's print, in its run's logs (log_prints)
    caplog.clear()
    assert f"{first.rows_read:,} rows read" in said
    assert (f", {first.rows_carried:,} carried to the next night ->" in said) == (first.rows_carried > 0)
    after = load_state(out, "alpha")
    assert after.watermark > before.watermark
    assert before.rows is None and after.rows is not None  # a rows-mode champion: its rows state carried

    # the registered pyfunc gives exactly what the library gives for the same rows
    tracker = configure()
    raw = extract(load_config("alpha").source, after_id=before.watermark)
    model = mlflow.pyfunc.load_model(tracker.champion_uri("alpha"))
    via_mlflow = pl.from_pandas(model.predict(raw.to_pandas()))
    direct = score_log(model.unwrap_python_model().bundle, raw).chunks
    assert via_mlflow.select("first_id", "last_id", "score", "is_anomaly").equals(
        direct.select("first_id", "last_id", "score", "is_anomaly"))

    # the same night again changes nothing; and Prefect does not walk through what a night
    # carries (the rows state's per-key tuples grow with the vendor) to track task inputs
    import prefect.utilities.collections as collections

    visited: list[type] = []
    walk = collections.visit_collection

    def counted(expr, *args, **kwargs):  # type: ignore[no-untyped-def]
        visited.append(type(expr))
        return walk(expr, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(collections, "visit_collection", counted)
        again = score_vendor("alpha")
    assert len(after.rows.after.key_last) > 20
    assert visited.count(tuple) < 200, f"{visited.count(tuple)} tuples walked by Prefect"
    assert again.chunks.height == 0 and again.rows_read == 0
    assert (f"no night written (nothing new after the watermark, Id {after.watermark}; --since ID"
            in caplog.text)
    assert load_state(out, "alpha").watermark == after.watermark
    assert load_state(out, "alpha").rows == after.rows
    nights = list((out / "alpha" / "nights").iterdir())
    assert len([n for n in nights if (n / "chunks.parquet").exists() and pl.read_parquet(n / "chunks.parquet").height]) == 1


def test_a_night_refused_as_its_rows_are_read_has_a_failed_mlflow_run(trained_alpha, flow_env, monkeypatch):
    """The score-vendor flow gives the reading task the tracker: an export refused as it is read (a
    file without a required column) fails the flow run and leaves a FAILED nightly MLflow run, as a
    night refused for its bad rows does."""
    from flows.score_vendor import score_vendor
    from licanom.data.validate import ValidationError
    from licanom.ops import nightly
    from licanom.ops.scoring_state import load_state
    from licanom.ops.tracking import configure

    _, out = flow_env
    said = "/exports/alpha/b.csv: the log file lacks required column(s) ['MachineCode']; it has ['Machine Code']"

    def refused(night, source):  # type: ignore[no-untyped-def]
        raise ValidationError(said)

    monkeypatch.setattr(nightly, "_read_night", refused)
    watermark = load_state(out, "alpha").watermark
    state = score_vendor("alpha", return_state=True)
    assert state.is_failed() and said in str(state.message)
    tracker = configure()
    experiment = tracker.client.get_experiment_by_name("licanom/alpha/nightly").experiment_id
    run = tracker.client.search_runs([experiment], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.info.status == "FAILED" and run.data.tags["licanom.refusal"] == said
    assert run.info.run_name == f"nightly score (refused after Id {watermark})"
    assert load_state(out, "alpha").watermark == watermark


def test_nightly_reports_a_failing_vendor_and_scores_the_others(trained_alpha, flow_env, monkeypatch, caplog):
    from flows.nightly import nightly
    from flows.train_vendor import train_vendor

    train_vendor("beta")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(flow_env[0] / "conf-nightly"))
    # a file whose name is no vendor's (a copy left beside the vendors): ignored, named in a warning,
    # not scored as a vendor and failed at the end
    (flow_env[0] / "conf-nightly" / "vendors" / "Alpha.yaml").write_text("source: {kind: simulate}\n")
    caplog.clear()
    state = nightly(return_state=True)
    assert state.is_failed()
    assert "ignored, not vendors: " in caplog.text and "Alpha.yaml" in caplog.text
    assert "broken" in str(state.message) or "broken" in repr(state)
    # the failing vendor's own run holds its error; the nightly run ends with one line, no traceback
    assert str(state.message).startswith("1 of 3 vendors failed: broken")
    # and `licanom run nightly` with the exit code `licanom run score --vendor broken` gives (2: no
    # champion yet), not 1 whatever the vendors failed on
    from flows.run import _input_failure

    assert _input_failure(state) == (2, "1 of 3 vendors failed: broken")
    # (before: the reporting task raised "1 of 3 vendors failed", logged with its traceback by the task and the flow)
    assert not any(r.exc_info and "vendors failed" in str(r.exc_info[1]) for r in caplog.records)
    assert "RuntimeError" not in caplog.text
    _, out = flow_env
    assert (out / "beta" / "state" / "state.json").exists()
    # the same side by side in threads (tasks.vendors.score_one runs each vendor's flow)
    threaded = nightly(runner="threads", workers=2, return_state=True)
    assert threaded.is_failed() and "broken" in str(threaded.message)
    assert "alpha: completed" in str(threaded.message) and "beta: completed" in str(threaded.message)
    assert "1 of 3 vendors failed" in str(threaded.message)
    assert _input_failure(threaded) == (2, "1 of 3 vendors failed: broken")


def test_nightly_checks_the_defaults_once_before_any_vendor(flow_env, monkeypatch, capfd):
    """A conf/defaults.yaml missing failed each vendor's run in turn with the same error; the
    nightly run now fails at once, in one line, before any vendor's run, with the exit code of a
    configuration error (2)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.nightly import nightly
    from flows.run import _input_failure

    conf = flow_env[0] / "conf-no-defaults"
    (conf / "vendors").mkdir(parents=True)
    (conf / "vendors" / "alpha.yaml").write_text((flow_env[0] / "conf" / "vendors" / "alpha.yaml").read_text())
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))

    def score_runs() -> int:
        with get_client(sync_client=True) as client:
            return len(client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["score-vendor"]))))

    # checked in a task run of its own (tasks.vendors.check_defaults), as flows only wire tasks: the
    # flow called licanom.config.check_defaults itself, outside any task run
    import licanom.config
    from prefect.context import TaskRunContext

    checked_in: list[str | None] = []
    check = licanom.config.check_defaults

    def seen(*args, **kwargs):  # type: ignore[no-untyped-def]
        run = TaskRunContext.get()
        checked_in.append(run.task.name if run else None)
        return check(*args, **kwargs)

    monkeypatch.setattr(licanom.config, "check_defaults", seen)
    before = score_runs()
    capfd.readouterr()
    with RunLog() as run_log:
        state = nightly(return_state=True)
    assert checked_in == ["check_defaults"]
    assert state.is_failed() and str(state.message) == (
        f"configuration error: {conf / 'defaults.yaml'} not found: a configuration folder needs its defaults.yaml "
        "(copy the repository's conf/defaults.yaml there)")
    assert _input_failure(state) == (2, str(state.message))
    assert score_runs() == before  # no vendor's run
    assert "Traceback" not in capfd.readouterr().err
    assert run_log.errors() == [("prefect.flow_runs", str(state.message))], run_log.errors()


def test_nightly_with_no_vendor_fails_naming_the_folder(flow_env, monkeypatch, capfd):
    """conf/vendors/ empty or missing: the nightly run scored nothing and completed, so a scheduled
    night (a deployment, which no `licanom run` checks first) did nothing unnoticed. It fails at once,
    in one line naming the folder looked in, with the exit code of a configuration error (2)."""
    from flows.nightly import nightly
    from flows.run import _input_failure

    conf = flow_env[0] / "conf-no-vendors"
    conf.mkdir()
    (conf / "defaults.yaml").write_text((flow_env[0] / "conf" / "defaults.yaml").read_text())
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    for there in (False, True):  # the folder missing, then there and empty
        if there:
            (conf / "vendors").mkdir()
        capfd.readouterr()
        state = nightly(return_state=True)
        where = f"no <vendor>.yaml or .yml in {conf / 'vendors'}" if there else f"{conf / 'vendors'} does not exist"
        assert state.is_failed() and str(state.message) == (
            f"configuration error: no vendors configured: {where} (add one file per vendor)"), state.message
        assert _input_failure(state) == (2, str(state.message))
        printed = capfd.readouterr()
        assert "Traceback" not in printed.err and "nightly: scoring" not in printed.out + printed.err


def test_a_vendor_whose_configuration_cannot_be_read_fails_its_run_in_one_line(flow_env, monkeypatch, capfd):
    """In a nightly run of many vendors, one vendor's YAML typo is its run's one-line failure,
    not a traceback on the console; so is it for a vendor's training and preparing run (a
    deployment's, which no `licanom run` checks first), with the configuration's exit code, 2.
    The settings are read in a task run of their own (tasks.vendors.vendor_config), as flows only
    wire tasks: the flows called licanom.config.vendor_config themselves, outside any task run.
    The run's log holds the error once, at ERROR, from the flow run: its task run, ending failed,
    logged it twice at ERROR before (its state's repr, then "Finished in state Failed")."""
    import licanom.config
    from prefect.context import TaskRunContext

    from flows.prepare_vendor import prepare_vendor
    from flows.run import _input_failure
    from flows.score_vendor import score_vendor
    from flows.train_vendor import train_vendor

    conf = flow_env[0] / "conf-typo"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((flow_env[0] / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "typo.yaml").write_text("source:\n  kind: files\n  pth: /tmp/x\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    read_in: list[tuple[str | None, object]] = []
    read = licanom.config.vendor_config

    def seen(vendor, *args, **kwargs):  # type: ignore[no-untyped-def]
        run = TaskRunContext.get()
        read_in.append((run.task.name if run else None, kwargs.get("overrides")))
        return read(vendor, *args, **kwargs)

    monkeypatch.setattr(licanom.config, "vendor_config", seen)
    for run, overrides in ((lambda: score_vendor("typo", return_state=True), None),
                           (lambda: train_vendor("typo", models=["Tail_context"], return_state=True),
                            {"train": {"models": ["Tail_context"]}}),
                           (lambda: prepare_vendor("typo", return_state=True), None)):
        read_in.clear()
        capfd.readouterr()
        with RunLog() as run_log:
            state = run()
        assert read_in == [("vendor_config", overrides)]
        assert state.is_failed() and str(state.message).startswith("configuration error for vendor 'typo': ") \
            and "pth" in str(state.message) and "\n" not in str(state.message), state.message
        assert _input_failure(state) == (2, str(state.message))
        printed = capfd.readouterr()
        assert "Traceback" not in printed.err + printed.out
        assert run_log.errors() == [("prefect.flow_runs", str(state.message))], run_log.errors()


def test_a_bug_reading_the_configuration_keeps_its_traceback_and_exit_code_1(flow_env, monkeypatch):
    """Only a configuration error ends a flow as a refusal (one line, exit code 2): any other
    error of the task that reads the settings (a bug) ended the flow with its bare message
    ("division by zero", its type gone) as if refused; it now fails the flow as a bug does, its
    type named and its traceback logged, with exit code 1 (licanom.cli.failure_exit: none)."""
    import licanom.config

    from flows.run import _input_failure
    from flows.score_vendor import score_vendor

    def bug(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(licanom.config, "vendor_config", bug)
    with RunLog() as run_log:
        state = score_vendor("gamma", return_state=True)
    assert state.is_failed() and "ZeroDivisionError: division by zero" in str(state.message), state.message
    assert _input_failure(state) is None
    traced = [r for r in run_log.records if r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError)]
    assert {r.name for r in traced} == {"prefect.task_runs", "prefect.flow_runs"}, run_log.errors()


def test_training_the_same_data_again_gives_the_same_models(trained_alpha):
    """Variants train one after another: torch's random generator is global, so variants trained
    side by side in threads drew from it in turn and gave different models on the same data."""
    from flows.train_vendor import train_vendor

    first, until = trained_alpha
    again = train_vendor("alpha", until=until)
    same = ["model", "M2", "M3", "GMM", "KMeans", "quantile", "pot", "budget", "train_loss", "val_loss"]
    assert again.results.select(same).equals(first.results.select(same))


def test_a_context_champion_remembers_what_each_night_saw(flow_env, monkeypatch):
    """Tail_context's registered bundle keeps its training rows' key pairs; a night adds the pairs
    it scored to the vendor's state, for the next night to score against. The training run's
    bundle folder is gone once the bundle is in MLflow. A run an earlier training of the vendor left
    RUNNING when it was killed (its process gone) is marked KILLED as the training starts."""
    import subprocess

    from flows.score_vendor import score_vendor
    from flows.train_vendor import train_vendor
    from licanom.config import load_config
    from licanom.ops import training
    from licanom.sim import simulate
    from licanom.ops.scoring_state import load_state
    from licanom.ops.tracking import OWNER_PID_TAG, configure

    _, out = flow_env
    gone = subprocess.Popen(["true"])
    gone.wait()
    killed = configure().start_run("epsilon", "train epsilon", "training", tags={OWNER_PID_TAG: str(gone.pid)})
    made: list[Path] = []
    real_work_dir = training.work_dir
    monkeypatch.setattr(training, "work_dir", lambda: made.append(real_work_dir()) or made[-1])
    cfg = load_config("epsilon")
    log = simulate(cfg.source.profile, seed=cfg.source.seed, days=cfg.source.days).log
    until = log["Time"].max() - timedelta(days=2)
    summary = train_vendor("epsilon", until=until)
    assert len(made) == 1 and not made[0].exists()
    assert configure().client.get_run(killed).info.status == "KILLED"
    # the code stored with the version is not run: one an earlier release stored (importing a
    # module since moved) does not stop the champion from loading
    tracker = configure()
    mv = tracker.client.get_model_version_by_alias(tracker.model_name("epsilon"), "champion")
    model_id = mv.source.rsplit("/", 1)[-1]  # models:/m-<id>
    stored = [p for p in Path(str(tracker.config.artifact_location).removeprefix("file://")).rglob("pyfunc_model.py")
              if model_id in p.parts]
    assert len(stored) == 1
    for code in stored:
        code.write_text("from licanom.ops.tracking import LicanomPyfunc  # an earlier release's module\n")
    bundle, version = tracker.load_champion("epsilon")
    assert bundle.detector.model == "Tail_context" and bundle.key_history is not None
    assert bundle.key_history.levels is not None  # the entities' own levels travel with the champion
    trained = log.filter(pl.col("Time") <= until)
    assert bundle.key_history.machines.height == trained.filter(pl.col("MachineCode") != "").select(
        "Key", "MachineCode").unique().height

    # the last Id its training read, kept with the champion: where the vendor's first night starts
    assert bundle.train_last_id is not None and bundle.train_last_id == load_state(out, "epsilon").watermark
    assert bundle.absent_fields == ()  # its training rows held addresses and machine codes: nothing emptied at night
    night = score_vendor("epsilon")
    state = load_state(out, "epsilon")
    assert night.chunks.height > 0 and state.model_version == version == summary.champion.version
    assert state.seen is not None
    scored = log.filter(pl.col("Time") > until, pl.col("MachineCode") != "").select("Key", "MachineCode").unique()
    missing = state.seen.machines.join(scored, on=["Key", "MachineCode"], how="anti")
    assert missing.height == 0 and state.seen.machines.height >= 0.9 * scored.height


def test_mlflow_runs_as_model_training_with_live_epochs_datasets_and_signatures(trained_alpha):
    """The vendor's experiment is a model-training experiment; each epoch's losses were logged
    as it ended (steps 1..n, timestamps increasing); the training rows are a dataset input; each
    registered version has a signature, an input example and a description."""
    import mlflow

    from licanom.ops.tracking import EXPERIMENT_KIND_TAG, INPUT_COLUMNS, MODEL_TRAINING_KIND, OPTIONAL_INPUT_COLUMNS, configure

    summary, _ = trained_alpha
    tracker = configure()
    exp = tracker.client.get_experiment_by_name(tracker.experiment_name("alpha"))
    assert exp.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    for v in summary.versions:
        for key in ("train/loss", "val/loss"):
            history = sorted(tracker.client.get_metric_history(v.run_id, key), key=lambda m: m.step)
            assert [m.step for m in history] == [1, 2]
            stamps = [m.timestamp for m in history]
            assert stamps == sorted(stamps) and stamps[0] < stamps[-1], f"{v.model} {key}: {stamps}"
        run = tracker.client.get_run(v.run_id)
        datasets = run.inputs.dataset_inputs
        assert [d.dataset.name for d in datasets] == ["alpha-training"]
        assert any(t.key == "mlflow.data.context" and t.value == "training" for t in datasets[0].tags)
        mv = tracker.client.get_model_version("licanom-alpha", v.version)
        assert v.model in mv.description and "chunks" in mv.description
        info = mlflow.models.get_model_info(f"models:/licanom-alpha/{v.version}")
        assert info.signature is not None
        assert info.signature.inputs.input_names() == [c for c, _ in (*INPUT_COLUMNS, *OPTIONAL_INPUT_COLUMNS)]
        assert not any(spec.required for spec in info.signature.inputs.inputs[len(INPUT_COLUMNS):])
        assert "is_anomaly" in info.signature.outputs.input_names()
        assert info.saved_input_example_info is not None
    assert tracker.client.get_registered_model("licanom-alpha").description


def test_a_tagged_night_is_named_tagged_and_leaves_a_table_of_frames(flow_env):
    """A vendor's night: flow run named score-<vendor>-<date>, tagged with the vendor, a table
    artifact of its anomalous time frames, a link to its report, its MLflow run in the vendor's
    nightly experiment (apart from the training runs)."""
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.naming import tagged
    from flows.score_vendor import score_vendor
    from flows.train_vendor import train_vendor
    from licanom.config import load_config
    from licanom.sim import simulate
    from licanom.ops.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, configure

    cfg = load_config("gamma")
    log = simulate(cfg.source.profile, seed=cfg.source.seed, days=cfg.source.days).log
    train_vendor("gamma", until=log["Time"].max() - timedelta(days=2))
    with tagged("gamma"):
        state = score_vendor("gamma", return_state=True)
    assert state.is_completed()
    night = state.result()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert re.fullmatch(r"score-gamma-\d{4}-\d{2}-\d{2} \d{2}:\d{2}", run.name), run.name
    assert {"licanom", "gamma"} <= set(run.tags)
    import json

    by_key = {a.key: a for a in artifacts}
    table = by_key["anomalies-gamma"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    frames = [r for r in rows if r.get("what") == "time frame"]
    assert night.n_anomalies > 0 and frames and {"start_time", "end_time", "requests", "severity"} <= set(frames[0])
    assert all(0 <= f["severity"] <= 100 for f in frames)  # the peak chunk's 0-100, as the incidents'
    assert {f["flagged_by"] for f in frames} <= {"threshold", "night"}
    link = by_key["anomalies-gamma-report"].data  # a link artifact: markdown [text](file:///.../report.html)
    assert re.search(r"\(file:///\S+/report\.html\)", link), link

    tracker = configure()
    nightly_exp = tracker.client.get_experiment_by_name(tracker.nightly_experiment_name("gamma"))
    assert nightly_exp.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    training_exp = tracker.client.get_experiment_by_name(tracker.experiment_name("gamma"))
    kinds_in = {r.data.tags["licanom.kind"] for r in tracker.client.search_runs([training_exp.experiment_id])}
    assert "nightly" not in kinds_in
    assert tracker.client.search_runs([nightly_exp.experiment_id], "tags.`licanom.kind` = 'nightly'")


def test_training_runs_are_named_by_vendor_and_date(trained_alpha):
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train-vendor"])))
    names = [r.name for r in runs]
    assert names and all(re.fullmatch(r"train-[a-z]+-\d{4}-\d{2}-\d{2} \d{2}:\d{2}", n) for n in names), names


def test_deployments_fix_the_vendor_and_describe_the_parameters(flow_env):
    from flows.serve import deployments

    by_name = {d.name: d for d in deployments(["alpha"])}
    score = by_name["score-alpha"]
    schema = score._parameter_openapi_schema.properties
    assert schema["vendor"]["readOnly"] is True and schema["vendor"]["enum"] == ["alpha"]
    assert score.parameters == {"vendor": "alpha"} and set(score.tags) >= {"licanom", "alpha"}
    assert "watermark" in schema["since"]["description"]
    train = by_name["train-alpha"]._parameter_openapi_schema.properties
    assert train["vendor"]["readOnly"] is True and train["models"]["description"]
    assert by_name["all-vendors"]._parameter_openapi_schema.properties["runner"]["description"]


def test_a_vendor_whose_schedule_cannot_be_read_is_not_served_and_the_others_are(flow_env, capsys):
    """One vendor's slip in its schedule (a cron of four fields, an unknown zone) or a file source
    without its path: that vendor is named in one line and left out, the others are served; the
    configuration refuses the schedule's shape when it is read, and `licanom run` the missing path."""
    from flows.run import main
    from flows.serve import deployments
    from licanom.config import ScheduleConfig, VendorConfigError, vendor_config

    root, _ = flow_env
    conf = root / "conf" / "vendors"
    (conf / "typo.yaml").write_text("schedule: {score_cron: '0 2 * *'}\n")
    (conf / "zone.yaml").write_text("schedule: {timezone: Europe/Berln}\n")
    (conf / "nopath.yaml").write_text("source: {kind: files}\n")
    (conf / "hour25.yaml").write_text("source: {kind: simulate}\nschedule: {train_cron: '0 25 * * *'}\n")
    try:
        names = {d.name for d in deployments(["alpha", "typo", "zone", "nopath", "hour25"])}
        assert names == {"score-alpha", "train-alpha", "all-vendors"}
        err = capsys.readouterr().err.splitlines()
        # a value out of range, which only the scheduler's parser sees: the setting and where it is set
        assert err[3].startswith("licanom serve: vendor hour25 not served: schedule.train_cron: ") and \
            "0 25 * * *" in err[3] and "conf/vendors/hour25.yaml" in err[3], err[3]
        assert err[0].startswith("licanom serve: vendor typo not served: configuration error for vendor 'typo': "
                                 "schedule.score_cron: '0 2 * *' is not a cron")
        assert "vendor zone not served: configuration error for vendor 'zone': schedule.timezone: unknown time zone" in err[1]
        assert "vendor nopath not served: configuration error for vendor 'nopath': source.path:" in err[2]
        for bad in ({"score_cron": "0 2 * *"}, {"train_cron": "0 3 * * 0 1 2"}, {"timezone": "Mars/Olympus"}):
            with pytest.raises(ValueError):
                ScheduleConfig(**bad)
        assert ScheduleConfig(score_cron="@daily", train_cron="0 3 * * 0").score_cron == "@daily"
        with pytest.raises(VendorConfigError, match=r"^configuration error for vendor 'nopath': source\.path: "):
            vendor_config("nopath")
        assert main(["train", "--vendor", "nopath"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            "licanom: configuration error for vendor 'nopath': source.path: the log's file or folder is not set "
            f"(source.kind is 'files'): set it in {conf / 'nopath.yaml'}"]
    finally:
        for name in ("typo", "zone", "nopath", "hour25"):
            (conf / f"{name}.yaml").unlink()


def test_serve_refuses_when_no_vendor_can_be_served(tmp_path, monkeypatch, capsys):
    """Every vendor's configuration or schedule unreadable: `licanom serve` served the nightly
    deployment alone, which would fail every vendor each night, and exited only when stopped. It
    refuses as it refuses no vendor at all: each vendor on its line saying why, then one line
    naming them all, nothing served, exit 2; so does `--vendor V` of a vendor that cannot be read."""
    from flows import serve

    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "typo.yaml").write_text("schedule: {score_cron: '0 2 * *'}\n")
    (conf / "vendors" / "zone.yaml").write_text("schedule: {timezone: Europe/Berln}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    monkeypatch.setattr(serve, "serve", lambda *deployments: pytest.fail(f"served {[d.name for d in deployments]}"))
    for argv, named in (([], "typo, zone"), (["--vendor", "zone"], "zone")):
        with pytest.raises(SystemExit) as exit_:
            serve.main(argv)
        err = capsys.readouterr().err.splitlines()
        assert exit_.value.code == 2, err
        vendors = named.split(", ")
        assert [line.split(":", 2)[1] for line in err[:-1]] == [f" vendor {v} not served" for v in vendors], err
        assert "schedule.timezone: unknown time zone" in err[-2]
        assert err[-1] == (f"licanom serve: configuration error: no vendor can be served: {named} (each one's line "
                           "above says why); nothing served"), err


def test_no_vendor_is_neither_served_nor_registered(tmp_path, monkeypatch, capsys):
    """`licanom serve` with conf/vendors/ empty served the nightly deployment alone, which scored
    nothing; deploy/register.py registered it alone. Both refuse in one line naming the folder, as
    the nightly run does (exit 2, nothing served or registered); register.py's --only-nightly, which
    registers no vendor on purpose, is still taken."""
    from flows import serve
    from licanom.config import VendorConfigError

    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    said = f"configuration error: no vendors configured: no <vendor>.yaml or .yml in {conf / 'vendors'} (add one file per vendor)"
    with pytest.raises(VendorConfigError) as refused:
        serve.deployments()
    assert str(refused.value) == said
    monkeypatch.setattr(serve, "serve", lambda *deployments: pytest.fail("served"))
    with pytest.raises(SystemExit) as exit_:
        serve.main([])
    assert exit_.value.code == 2 and capsys.readouterr().err == f"licanom serve: {said}; nothing served\n"

    register = _register_module()
    with pytest.raises(SystemExit) as exit_:
        register.build("pool", None, conf, "all-vendors", only_nightly=False, no_nightly=False, schedules=True,
                       runner=None, workers=None)
    assert exit_.value.code == 2 and capsys.readouterr().err == f"register: {said}; nothing registered\n"
    only = register.build("pool", None, conf, "all-vendors", only_nightly=True, no_nightly=False, schedules=True,
                          runner=None, workers=None)
    assert [d.name for d in only] == ["all-vendors"]


def _register_module():  # type: ignore[no-untyped-def]
    """deploy/register.py, a script outside the packages, as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("register", Path(__file__).resolve().parent.parent / "deploy" / "register.py")
    assert spec is not None and spec.loader is not None
    register = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(register)
    return register


def test_register_refuses_with_the_exit_code_of_a_configuration_error(tmp_path, monkeypatch, capsys):
    """deploy/register.py ended its refusals with 1 (SystemExit with the line), where licanom's
    commands end wrong usage or configuration with 2; and it took a vendor of no file (--vendor
    acme: deployments of the defaults' settings) and a files source without its path, which
    `licanom serve` leaves out. Each is one line on stderr, nothing registered, exit 2."""
    register = _register_module()
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "alpha.yaml").write_text("source: {kind: simulate}\n")
    (conf / "vendors" / "nopath.yaml").write_text("source: {kind: files}\n")
    (conf / "vendors" / "zone.yaml").write_text("source: {kind: simulate}\nschedule: {timezone: Europe/Berln}\n")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached: refused before
    for argv, line in (
        (["--vendor", "zone"], "register: configuration error for vendor 'zone': schedule.timezone: "
                               "unknown time zone"),
        (["--vendor", "nopath"], "register: configuration error for vendor 'nopath': source.path: "),
        (["--vendor", "acme"], f"register: unknown vendor 'acme': no {conf / 'vendors' / 'acme.yaml'} or acme.yml; "
                               "vendors: alpha, nopath, zone"),
        (["--secret-env", "CRYPTOLENS_TOKEN"], "register: --secret-env 'CRYPTOLENS_TOKEN': expected "
                                               "ENV_NAME=secret-block-name"),
    ):
        with pytest.raises(SystemExit) as exit_:
            register.main(["--conf-dir", str(conf), *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith(line), (argv, err)
        assert err.endswith("; nothing registered\n") or "--secret-env" in line, err


def test_prepare_flow_writes_into_the_vendors_output_dir(flow_env):
    from flows.prepare_vendor import prepare_vendor

    _, out = flow_env
    prepared = prepare_vendor("gamma")
    assert prepared.chunks.n_chunks > 0
    assert (out / "gamma" / "prepared" / "chunks.npy").exists()


def test_run_ends_a_flow_failed_on_its_input_with_prepares_exit_code(flow_env, capsys):
    """`licanom run train` of a vendor whose log file is missing: exit 4 and the file named in
    the last line, as `licanom prepare` does."""
    from flows.run import main

    assert main(["train", "--vendor", "broken"]) == 4
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("licanom: train flow failed: ") and "missing.csv" in last


def test_a_missing_pseudonym_secret_is_refused_before_training_reads_anything(flow_env, capsys, monkeypatch):
    """Pseudonymisation on without its secret (no variable, no Prefect Secret block): `licanom run
    train` ends with the configuration's exit code 2 and one line naming the variable and the
    block, before the log is read (the vendor's log file does not even exist). Scoring needs the
    secret its champion was trained with, and says so when it reads the rows."""
    from flows.run import main

    root, out = flow_env
    conf = root / "conf" / "vendors" / "private.yaml"
    conf.write_text(f"output_dir: {out}\nsource: {{kind: files, path: {root / 'never-read.csv'}}}\n"
                    "privacy: {pseudonymise: true}\n")
    monkeypatch.delenv("LICANOM_PSEUDONYM_SECRET_PRIVATE", raising=False)
    try:
        assert main(["train", "--vendor", "private"]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last == ("licanom: train flow failed: vendor 'private' needs its pseudonym secret (privacy.pseudonymise), "
                        "but the environment variable LICANOM_PSEUDONYM_SECRET_PRIVATE is not set (nor the Prefect "
                        "Secret block licanom-private-pseudonym-secret): set it; nothing was read")
        monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_PRIVATE", "short" + " " * 20)
        assert main(["train", "--vendor", "private"]) == 2
        assert "LICANOM_PSEUDONYM_SECRET_PRIVATE holds fewer than 16 characters" in capsys.readouterr().err
    finally:
        conf.unlink()


def test_score_refuses_a_missing_token_and_a_vendor_never_trained_in_one_line(flow_env, capsys, monkeypatch):
    """`licanom run score` of a Cryptolens vendor without its token ended with 1 and two tracebacks
    (training refused it in one line with 2); a vendor never trained ended with 1 and Prefect's
    "Flow run encountered an exception: LookupError". Both: 2 and the line that says what to do."""
    from flows.run import main

    root, out = flow_env
    conf = root / "conf" / "vendors" / "remote.yaml"
    conf.write_text(f"output_dir: {out}\nsource: {{kind: cryptolens, product_id: 12345, token_env: LICANOM_TEST_TOKEN}}\n")
    monkeypatch.delenv("LICANOM_TEST_TOKEN", raising=False)
    try:
        assert main(["score", "--vendor", "remote"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("licanom: score flow failed: vendor 'remote' needs its cryptolens token "
                                  "(source.token_env (source.kind: cryptolens)), but the environment variable "
                                  "LICANOM_TEST_TOKEN is not set"), err
        assert not any("Traceback" in line for line in err), err
        monkeypatch.setenv("LICANOM_TEST_TOKEN", "a-token")
        assert main(["score", "--vendor", "remote"]) == 2  # the token set: no champion yet
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            "licanom: score flow failed: vendor 'remote' has no champion model yet: train it first: licanom run train "
            "--vendor remote")
    finally:
        conf.unlink()


def test_run_refuses_the_options_its_flow_would_ignore(flow_env, capsys):
    """`licanom run nightly` scores every vendor: a --vendor (or --since) would be ignored, so it
    is refused in one line before anything runs."""
    import pytest

    from flows.run import main

    for argv, words in ((["nightly", "--vendor", "alpha"], "licanom run score --vendor alpha"),
                        (["train", "--since", "4"], "--since is for score")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0]


def test_the_threads_runner_defaults_to_two_vendors_per_cpu(monkeypatch):
    import flows.nightly as nightly

    monkeypatch.setattr(nightly.os, "cpu_count", lambda: 3)
    assert nightly.default_workers("threads") == 6 and nightly.default_workers("dask") == 3
    assert nightly.task_runner("threads")._max_workers == 6
    assert nightly.task_runner("threads", workers=2)._max_workers == 2


def test_the_flow_stores_leave_no_mlflow_address_behind(tmp_path, monkeypatch):
    """The flows export MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI (mlflow.set_*_uri); undoing the
    stores removes them, else a later module's MlflowClient read this module's registry."""
    import os

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    mp = flow_stores(tmp_path, {"alpha": "train: {models: [Tail_context]}\n"})
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mp.undo()
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ


def test_a_nights_messages_are_warnings_in_its_run_log(prefect_harness, monkeypatch, caplog):
    """Late rows, a source that shrank, "retrain": what the operator should act on was logged at
    INFO, beside every task's "Finished in state Completed()", where a run's warnings are looked for."""
    from types import SimpleNamespace

    from prefect import flow

    from tasks import scoring

    said = ("late rows: 3 rows with Ids at or below the watermark 41 appeared in the source since the last night",)
    night = SimpleNamespace(vendor="acme", screened=SimpleNamespace(messages=said))
    monkeypatch.setattr(scoring.nightly, "score_rows", lambda night, *args: night)

    @flow
    def one_task() -> None:
        scoring.score_rows(night, 0.5)

    runs = logging.getLogger("prefect.task_runs")  # Prefect's run loggers do not propagate to the root's
    runs.addHandler(caplog.handler)
    try:
        one_task()
    finally:
        runs.removeHandler(caplog.handler)
    logged = [r for r in caplog.records if said[0] in r.getMessage()]
    assert logged and all(r.levelno == logging.WARNING for r in logged)
    assert logged[0].getMessage().startswith("acme: late rows: 3 rows")
