"""One LightningModule that trains a :class:`SequenceSVM` on the smoothed objective ``F_τ``.

Manual optimisation: each batch takes one :class:`StiefelSGD` step (Cayley steps for the gate
weights, plain SGD for biases, ``w``/``ρ`` or ``c``/``R²``), then ``R² ≥ 0`` is restored.
``train/loss`` is the epoch's mean batch objective, logged once per epoch (kept in ``history``,
with the seconds of each epoch in ``seconds``).
"""

from __future__ import annotations

import time

import pytorch_lightning as L
import torch
from torch import Tensor

from licanom.detectors.sequence.nets import SequenceSVM, StiefelSGD


class SequenceSVMModule(L.LightningModule):
    """Trains ``net`` jointly (recurrent weights and SVM head) by stochastic gradient on ``F_τ``."""

    def __init__(self, net: SequenceSVM, lr: float, tau: float) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.lr, self.tau = lr, tau
        self.history: list[float] = []
        self.seconds: list[float] = []
        self._t0 = 0.0
        self._sum = 0.0
        self._count = 0

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.net(x, lengths)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, lengths, y, weight = batch
        opt = self.optimizers()
        opt.zero_grad()
        loss = self.net.head.objective(self.net.encoder(x, lengths), y, weight, self.tau)
        self.manual_backward(loss)
        opt.step()
        self.net.head.project_()
        value = loss.detach()
        self._sum += float(value) * len(y)
        self._count += len(y)
        return value

    def on_train_epoch_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        mean = self._sum / max(self._count, 1)
        self.history.append(mean)
        self.seconds.append(time.perf_counter() - self._t0)
        self._sum, self._count = 0.0, 0
        self.log("train/loss", mean, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return StiefelSGD(self.net.param_groups(self.lr), lr=self.lr)
