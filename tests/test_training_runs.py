"""A training's parent MLflow run ends FAILED when the training fails or is stopped (as a night's
run does), its own error still the one raised; a run that finished is left finished."""

from __future__ import annotations

import pytest

from licanom.config import load_config
from licanom.data.pipeline import prepare
from licanom.ops import training
from licanom.ops.tracking import Tracker, TrackingConfig
from tests.conftest import make_raw_log
from tests.mlflow_store import empty_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    empty_store(root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(tracking_uri=uri, registry_uri=uri,
                                     artifact_location=(root / "artifacts").as_uri()))
    cfg = load_config(overrides={"vendor": "runs", "chunk": {"size": 100, "stride": 100}, "output_dir": str(root / "out")})
    return tracker, cfg, prepare(make_raw_log(600, seed=2), cfg)


def _run(tracker: Tracker, run_id: str):  # type: ignore[no-untyped-def]
    return tracker.client.get_run(run_id)


@pytest.mark.parametrize(("error", "outcome"), [
    (ValueError("Too many bins for data range"), "failed: ValueError: Too many bins for data range"),
    (KeyboardInterrupt(), "stopped: KeyboardInterrupt"),
])
def test_a_failed_or_stopped_training_ends_its_run_failed(setup, error, outcome) -> None:
    tracker, cfg, prepared = setup
    run_id = training.start_training(tracker, cfg, prepared)
    assert _run(tracker, run_id).info.status == "RUNNING"
    assert training.fail_training(tracker, run_id, error) is True
    run = _run(tracker, run_id)
    assert run.info.status == "FAILED" and run.data.tags["licanom.outcome"] == outcome


def test_a_finished_run_stays_finished_and_a_store_gone_raises_nothing(setup) -> None:
    tracker, cfg, prepared = setup
    run_id = training.start_training(tracker, cfg, prepared)
    tracker.end_run(run_id)
    assert training.fail_training(tracker, run_id, RuntimeError("after the run finished")) is False
    assert _run(tracker, run_id).info.status == "FINISHED"

    class Gone:
        @property
        def client(self):  # type: ignore[no-untyped-def]
            raise ConnectionError("the tracking server went away")

    assert training.fail_training(Gone(), run_id, ValueError("the training's own")) is False  # type: ignore[arg-type]


def test_a_run_whose_start_fails_part_way_ends_failed(setup, monkeypatch) -> None:
    tracker, cfg, prepared = setup
    started: list[str] = []
    real = Tracker.start_run

    def start_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(real(self, *args, **kwargs))
        return started[-1]

    def log_text(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("the artifact store is full")

    monkeypatch.setattr(Tracker, "start_run", start_run)
    monkeypatch.setattr(Tracker, "log_text", log_text)
    with pytest.raises(OSError, match="the artifact store is full"):
        training.start_training(tracker, cfg, prepared)
    assert _run(tracker, started[0]).info.status == "FAILED"
