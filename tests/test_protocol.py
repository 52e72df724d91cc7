"""One contract over every registered detector: the protocol of licanom.detectors.base."""

from __future__ import annotations

import numpy as np
import pytest

from licanom.config import ChunkConfig, Config, ContextConfig, DetectConfig, SequenceConfig, TrainConfig
from licanom.detectors import BaseDetector, build, inputs_of, load, names, spec
from licanom.data.pipeline import prepare
from licanom.sim import simulate


@pytest.fixture(scope="module")
def prepared():
    sim = simulate("floating", seed=3, days=3, customers=10)
    return prepare(sim.log, Config(vendor="contract", chunk=ChunkConfig(size=20, stride=20)))


@pytest.mark.parametrize("name", names())
def test_every_detector_keeps_the_protocol(name, prepared, tmp_path):
    entry = spec(name)
    # IForest_context fits 20 forests out of fold: 20 trees each keep the contract (200 is the default)
    detector = build(name, TrainConfig(epochs=1, batch_size=16, threads=1), DetectConfig(m1=False),
                     SequenceConfig(), ContextConfig(n_estimators=20).resolved(small=False), progress_bar=False)
    assert isinstance(detector, BaseDetector) and detector.family == entry.family
    X = inputs_of(entry.inputs, prepared.chunks, prepared.encoded.frame)
    n = len(X)
    assert n >= 30
    fitted = detector.fit(X)
    assert fitted is detector
    assert detector.decision_scores_.shape == (n,)
    scores = detector.decision_function(X)
    assert scores.shape == (n,) and np.isfinite(scores).all()
    severity = detector.severity(X)
    assert severity.shape == (n,) and ((severity >= 0) & (severity <= 100)).all()
    np.testing.assert_allclose(detector.severity_of(scores), severity)
    labels = detector.predict(X)
    assert labels.dtype == np.int8 and set(np.unique(labels)) <= {0, 1}
    assert (labels == (scores > detector.threshold_)).all()
    columns = detector.explain_columns()
    assert detector.explain(X).shape == (n, len(columns))
    if columns:
        assert set(detector.top_columns(X)) <= set(columns)
    else:
        assert detector.top_columns(X) is None
    again = load(name, detector.save(tmp_path / "detector.pt"))
    np.testing.assert_allclose(again.decision_function(X), scores, rtol=1e-6)
    np.testing.assert_allclose(again.severity(X), severity, rtol=1e-6, atol=1e-9)
    assert again.threshold_ == pytest.approx(detector.threshold_)


def test_the_registry_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown detector 'NOPE'; valid: LSTM_AE"):
        spec("NOPE")
    assert len(names()) == len(set(names()))
    assert set(names("context")) == {"Tail_context", "IForest_context", "LOF_context"}
