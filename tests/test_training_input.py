"""The training's input: a log of fewer than two training chunks is refused before any model or
MLflow run, with the error and message `licanom detect` gives (the command's exit code 3)."""

from __future__ import annotations

import pytest

from licanom.config import load_config
from licanom.data.chunk import NotEnoughDataError
from licanom.data.pipeline import prepare
from licanom.ops import training
from tests.conftest import make_raw_log


class _NoTracker:
    """A tracker that fails the test if the training starts a run."""

    def start_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("an MLflow run was started for a log that cannot be trained on")


@pytest.mark.parametrize("models", [["auto"], ["all"]])
def test_one_training_chunk_is_refused_before_any_model_or_run(models: list[str]) -> None:
    cfg = load_config(overrides={"train": {"models": models}, "chunk": {"size": 100, "stride": 100}})
    prepared = prepare(make_raw_log(150, seed=1), cfg)
    assert prepared.chunks.n_chunks == 1
    expected = r"the log gives 1 chunk\(s\) of 100 requests, 1 of them for training; a detector needs at least 2"
    with pytest.raises(NotEnoughDataError, match=expected):
        training.for_vendor_size(cfg, prepared)
    with pytest.raises(NotEnoughDataError, match=expected):
        training.start_training(_NoTracker(), cfg, prepared)  # type: ignore[arg-type]
