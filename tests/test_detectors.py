"""The autoencoder detector beyond the protocol's contract (tests/test_protocol.py): its training
report, per-feature errors and latent code, persistence of its device, checkpoints, thresholds.
Its AUROC on planted anomalies is a benchmark (make bench-quality)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from licanom.detectors.autoencoders.detector import AutoencoderDetector


# One LSTM and one TCN: the protocol's contract over every registered detector is tests/test_protocol.py.
@pytest.mark.parametrize("model", ["LSTM_AE_Small", "TCN_AE"])
def test_training_report_feature_errors_and_a_saved_device(model, tmp_path):
    X = np.random.default_rng(5).random((48, 16, 8), dtype=np.float32)
    det = AutoencoderDetector(model, epochs=2, batch_size=16, seed=0, threads=1, progress_bar=False).fit(X[:40])

    assert np.isfinite(det.threshold_) and set(np.unique(det.labels_)) <= {0, 1}
    assert len(det.report_.train_loss) == 2 and len(det.report_.val_loss) == 2  # one per epoch
    expected_device = "cuda:0" if torch.cuda.is_available() else "cpu"  # accelerator="auto"
    assert det.report_.device == expected_device

    scores = det.decision_function(X)
    fe = det.feature_errors(X[:5])
    assert fe.shape == (5, 8)
    np.testing.assert_allclose(fe.mean(axis=1), scores[:5], rtol=1e-6)  # the score is the mean feature error
    assert det.encode(X[:3]).shape[0] == 3

    # identical scores after a save and load round-trip, on the device it was trained on
    again = AutoencoderDetector.load(det.save(tmp_path / f"{model}.pt"))
    np.testing.assert_array_equal(again.decision_function(X), scores)
    assert again.threshold_ == det.threshold_
    assert again.report_.device == det.report_.device


def test_fit_is_repeatable_on_cpu():
    X = np.random.default_rng(0).random((40, 32, 8), dtype=np.float32)
    a = AutoencoderDetector("TCN_AE", epochs=2, batch_size=16, seed=3).fit(X)
    b = AutoencoderDetector("TCN_AE", epochs=2, batch_size=16, seed=3).fit(X)
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)


def test_train_loss_is_the_epoch_mean_weighted_by_batch_size():
    import pytorch_lightning as L

    from licanom.detectors.autoencoders.module import AutoencoderModule, LossHistory, chunk_loader
    from licanom.detectors.autoencoders.nets import build_net

    X = torch.from_numpy(np.random.default_rng(4).random((10, 16, 8), dtype=np.float32))
    torch.manual_seed(0)
    net = build_net("LSTM_AE", chunk_size=16, n_features=8)
    module = AutoencoderModule(net, lr=0.0)  # the weights stay put: every epoch sees the same losses
    history = LossHistory()
    trainer = L.Trainer(max_epochs=2, logger=False, callbacks=[history], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, chunk_loader(X, 4, shuffle=True))  # batches of 4, 4 and 2 chunks
    with torch.no_grad():
        expected = float((net(X) - X).abs().mean())  # = the batch means weighted by batch size
    assert history.train == pytest.approx([expected, expected], rel=1e-5)


def test_ctrl_c_during_training_reaches_the_caller_as_an_interrupt(monkeypatch):
    """Lightning turns a KeyboardInterrupt in training into sys.exit(1) and leaves SIGINT ignored;
    the detector raises it again as an interrupt and puts the handler back."""
    import signal

    import pytorch_lightning as L

    from licanom.detectors.autoencoders.module import AutoencoderModule

    def interrupted(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(AutoencoderModule, "training_step", interrupted)
    X = np.random.default_rng(0).random((20, 32, 8), dtype=np.float32)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        AutoencoderDetector("TCN_AE", epochs=1, batch_size=8).fit(X)
    assert signal.getsignal(signal.SIGINT) == handler
    # what Lightning alone does, which a caller took for a failure
    from licanom.detectors.autoencoders.module import chunk_loader
    from licanom.detectors.autoencoders.nets import build_net

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    try:
        with pytest.raises(SystemExit):
            trainer.fit(AutoencoderModule(build_net("TCN_AE", chunk_size=32, n_features=8), lr=0.0),
                        chunk_loader(torch.from_numpy(X), 8, shuffle=False))
    finally:
        signal.signal(signal.SIGINT, handler)


def test_bad_settings_and_inputs_are_clear():
    X = np.zeros((20, 32, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="unknown model"):
        AutoencoderDetector("NOPE").fit(X)
    with pytest.raises(ValueError, match="unknown decision"):
        AutoencoderDetector("TCN_AE", threshold="M9").fit(X)
    with pytest.raises(ValueError, match="shape"):
        AutoencoderDetector("TCN_AE").fit(X[0])
    with pytest.raises(RuntimeError, match="not fitted"):
        AutoencoderDetector("TCN_AE").decision_function(X)
    det = AutoencoderDetector("TCN_AE", epochs=1).fit(X)
    with pytest.raises(ValueError, match="fitted on"):
        det.decision_function(np.zeros((2, 16, 8), dtype=np.float32))


def test_interrupted_training_resumes_from_checkpoint(tmp_path):
    X = np.random.default_rng(1).random((40, 32, 8), dtype=np.float32)
    ckpt = tmp_path / "ckpt"
    first = AutoencoderDetector("TCN_AE", epochs=2, batch_size=16, checkpoint_dir=str(ckpt)).fit(X)
    assert (ckpt / "last.ckpt").exists() and not first.report_.resumed
    # a later run with more epochs continues from epoch 2 instead of starting over
    second = AutoencoderDetector("TCN_AE", epochs=4, batch_size=16, checkpoint_dir=str(ckpt)).fit(X)
    assert second.report_.resumed
    # the loss history carries over: epochs 1-2 are the first run's, 3-4 are new
    assert len(second.report_.train_loss) == 4
    assert second.report_.train_loss[:2] == first.report_.train_loss


@pytest.mark.parametrize("threshold", ["M2", "M3", "quantile", "pot", "budget", "M1"])
def test_each_threshold_method_fits(threshold):
    X = np.random.default_rng(2).random((30, 16, 8), dtype=np.float32)
    det = AutoencoderDetector("TCN_AE", threshold=threshold, epochs=1, batch_size=8, m1_max_rounds=2).fit(X)
    assert det.threshold_method_.startswith(threshold) or det.threshold_method_.startswith("M3")
    assert np.isfinite(det.threshold_)
