"""The autoencoders' training loader in groups of batches: the same batches, the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _X() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(5).random((22, 16, 8), dtype=np.float32))


def test_groups_hold_the_same_batches_in_the_same_order_every_epoch():
    from licanom.detectors.autoencoders.module import chunk_loader

    X = _X()
    single, grouped = chunk_loader(X, 4, shuffle=True, seed=3), chunk_loader(X, 4, shuffle=True, seed=3, steps=3)
    assert len(grouped) == 2  # 6 batches (4 x 5 + 2) in groups of 3
    for _ in range(2):  # each epoch draws a new permutation: both loaders draw the same one
        flat = [b for group in grouped for b in group]
        expected = list(single)
        assert [len(b) for b in flat] == [4, 4, 4, 4, 4, 2]
        assert len(flat) == len(expected) and all(torch.equal(a, b) for a, b in zip(flat, expected))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        chunk_loader(X, 4, shuffle=True, steps=0)


def test_training_on_groups_of_batches_gives_the_same_weights_and_losses():
    import pytorch_lightning as L

    from licanom.detectors.autoencoders.module import AutoencoderModule, LossHistory, chunk_loader
    from licanom.detectors.autoencoders.nets import build_net

    X = _X()
    results = []
    for steps in (1, 3):
        torch.manual_seed(0)
        module = AutoencoderModule(build_net("TCN_AE_Small", chunk_size=16, n_features=8), lr=1e-2)
        history = LossHistory()
        trainer = L.Trainer(max_epochs=2, logger=False, callbacks=[history], enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(module, chunk_loader(X, 4, shuffle=True, seed=1, steps=steps))
        assert trainer.global_step == 12  # one optimiser step per batch either way
        results.append((module.net.state_dict(), history.train))
    (w1, loss1), (w3, loss3) = results
    assert loss1 == loss3 and len(loss1) == 2
    assert all(torch.equal(w1[k], w3[k]) for k in w1)
