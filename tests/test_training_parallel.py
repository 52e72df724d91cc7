"""train.parallel: variants fitted side by side (one process, one thread each) are the models that
fitting them one after another on one thread gives."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import pytest

from licanom.ops import training
from licanom.config import load_config
from licanom.data.pipeline import prepare
from tests.conftest import make_raw_log


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    models = ["TCN_AE_Small", "Tail_context"]
    cfg = load_config(overrides={"train": {"models": models, "epochs": 2, "threads": 1, "batch_size": 32},
                                 "chunk": {"size": 20, "stride": 20}, "detect": {"m1": False},
                                 "output_dir": str(out)})
    prepared = prepare(make_raw_log(3000, seed=3), cfg)
    return training.for_vendor_size(cfg, prepared), prepared


@pytest.mark.slow  # starts two Python processes
def test_side_by_side_equals_one_after_another(setup):
    cfg, prepared = setup
    assert training.fit_side_by_side(cfg, prepared) == {}  # train.parallel 1: nothing fitted ahead
    side = training.fit_side_by_side(cfg.model_copy(update={"train": cfg.train.model_copy(update={"parallel": 2})}),
                                     prepared)
    assert list(side) == list(cfg.train.models)
    for model in cfg.train.models:  # no checkpoint left to resume from: the fit starts afresh
        shutil.rmtree(training.checkpoint_dir(cfg, prepared, model), ignore_errors=True)
        alone = training._fit(cfg, prepared, model)
        np.testing.assert_array_equal(side[model].scores, alone.scores)
        assert side[model].detector.threshold_ == alone.detector.threshold_
        assert side[model].row["train_loss"] == alone.row["train_loss"]


def test_the_fits_side_by_side_are_given_the_chunks_days(setup, monkeypatch):
    """Each fit side by side gets what the fit here gets, the chunks' UTC days with the inputs (a context
    model's recurring failure share reads them): the process pool replaced by one that records its calls."""
    import concurrent.futures

    cfg, prepared = setup
    calls: dict[str, tuple] = {}

    class Recording:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc) -> bool:  # type: ignore[no-untyped-def]
            return False

        def submit(self, fn, *args):  # type: ignore[no-untyped-def]
            calls[args[1]] = args
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(None)
            return done

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Recording)
    training.fit_side_by_side(cfg.model_copy(update={"train": cfg.train.model_copy(update={"parallel": 2})}), prepared)
    assert set(calls) == set(cfg.train.models)
    for args in calls.values():
        assert len(args) == len(training._fit_arguments(cfg, prepared, "Tail_context"))
        np.testing.assert_array_equal(args[-1], prepared.chunks.days())


def test_parallel_must_be_positive():
    with pytest.raises(ValueError, match="parallel"):
        load_config(overrides={"train": {"parallel": 0}})


class _Recorder:
    """Just what train_variant calls on a tracker, recorded."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    @contextmanager
    def run(self, *args, **kwargs):
        yield "run-1"

    def log_epoch(self, run_id, epoch, losses):
        self.epochs.append(epoch)

    def log_dataset(self, *args, **kwargs): ...
    def log_params(self, *args, **kwargs): ...
    def log_metrics(self, *args, **kwargs): ...
    def log_bytes(self, *args, **kwargs): ...


def test_a_variant_fitted_ahead_is_recorded_as_if_trained_there(setup, tmp_path):
    cfg, prepared = setup
    model = "TCN_AE_Small"
    fitted = training._fit(cfg, prepared, model)
    tracker = _Recorder()
    result = training.train_variant(tracker, cfg, prepared, model, "parent", tmp_path, fitted=fitted)
    assert tracker.epochs == [1, 2]  # the curves, logged once the fit is done
    assert result.row.row(0, named=True)["train_loss"] == fitted.row["train_loss"]
    assert (result.bundle_dir / "detector.pt").exists()
    assert not training.checkpoint_dir(cfg, prepared, model).exists()
    # the decision it flags by, which the training log names beside the thesis's M3
    assert result.decision == fitted.detector.threshold_method_ and result.threshold == fitted.detector.threshold_
    # and what the training log warns of: a calibration of too few chunks, or nothing
    assert result.caution == fitted.detector.calibration_caution()
    fitted.detector.calibration_caution = lambda: "its severity is calibrated on 9 training chunks"  # a small vendor's
    again = training.train_variant(_Recorder(), cfg, prepared, model, "parent", tmp_path / "again", fitted=fitted)
    assert again.caution == "its severity is calibrated on 9 training chunks"
