"""One LightningModule that trains any autoencoder net with the thesis's MAE loss and Adam."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import pytorch_lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from licanom.detectors.autoencoders.epochs import current_listener
from licanom.detectors.autoencoders.nets import AutoencoderNet


# Batches the training loader hands Lightning at a time (chunk_loader's ``steps``): one Adam step
# each, so the weights are those of one batch at a time; Lightning's per-batch work is paid once
# per group (benchmarks/results/train-framework-cost.md).
STEPS_PER_CALL = 8

# Attributes Lightning (or this module) sets on the module around every hook call and every step:
# plain values, never a parameter, buffer or submodule (see AutoencoderModule.__setattr__).
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_train_sum", "_train_count"})


class AutoencoderModule(L.LightningModule):
    """Trains ``net`` to reconstruct its input; logs ``train/loss`` and ``val/loss`` per epoch.

    One Adam step per batch, written out in :meth:`training_step` (Lightning's manual
    optimisation): the same zero-grad, backward and step, in that order, as Lightning's automatic
    optimisation takes, so the weights come out bit for bit the same, without its per-step closure
    and result bookkeeping (benchmarks/results/train-framework-cost.md).
    """

    def __init__(self, net: AutoencoderNet, lr: float = 1e-3) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.lr = lr
        self.save_hyperparameters(ignore=["net"])
        self._reset_train_loss()

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets ``_current_fx_name`` before and after each of the few dozen hooks it calls
        # per step; torch's Module.__setattr__ first checks every value against Parameter, Module
        # and Buffer (tens of microseconds a step in all). These names only ever hold plain values,
        # where Module.__setattr__ ends in object.__setattr__ anyway.
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss(self, x: Tensor) -> Tensor:
        return F.l1_loss(self.net(x), x)

    def _reset_train_loss(self) -> None:
        self._train_sum: Tensor | None = None
        self._train_count = 0

    def on_train_epoch_start(self) -> None:
        self._reset_train_loss()

    def training_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> Tensor:
        """One Adam step on ``batch``, or one after another on each batch of a group of them
        (:func:`chunk_loader` with ``steps`` > 1)."""
        optimizer = self.optimizers()
        for xb in (batch,) if isinstance(batch, Tensor) else batch:
            loss = self._loss(xb)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            # The epoch's batch-size-weighted mean (what `self.log(..., on_epoch=True)` would give),
            # kept here and logged once, at the epoch's last batch: a `self.log` call per step costs
            # Lightning about a millisecond of bookkeeping, 3-4% of an epoch of these nets on a CPU.
            weighted = loss.detach() * len(xb)
            self._train_sum = weighted if self._train_sum is None else self._train_sum + weighted
            self._train_count += len(xb)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._log_train_loss()
        return loss

    def on_train_epoch_end(self) -> None:
        if math.isinf(self.trainer.num_training_batches):  # a loader of unknown length: no last batch seen
            self._log_train_loss()
        listener = current_listener()
        if listener is not None:  # after the epoch's validation: both losses are in
            metrics = self.trainer.callback_metrics
            listener(self, self.current_epoch + 1,
                     {k: float(metrics[k]) for k in ("train/loss", "val/loss") if k in metrics})

    def _log_train_loss(self) -> None:
        if self._train_sum is not None:
            self.log("train/loss", self._train_sum / self._train_count, on_step=False, on_epoch=True,
                     prog_bar=True, batch_size=1)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # the fused kernel saves about a millisecond a step on CPU and works on CUDA too
        return torch.optim.Adam(self.parameters(), lr=self.lr, fused=True)


class ChunkDataset(Dataset[Tensor]):
    """Chunks ``(n, chunk_size, n_features)`` served as whole batches (no per-item collate), or as
    lists of whole batches when the loader's batch sampler yields groups of batches."""

    def __init__(self, X: Tensor) -> None:
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> Tensor:
        return self.X[i]

    def __getitems__(self, idx: Sequence[int] | Sequence[Sequence[int]]) -> Tensor | list[Tensor]:
        if idx and not isinstance(idx[0], int):
            return [self.X[torch.as_tensor(b)] for b in idx]
        return self.X[torch.as_tensor(idx)]


class BatchGroups(Sampler[list[list[int]]]):
    """The batches of ``batches`` in groups of ``steps`` consecutive ones (the last group shorter)."""

    def __init__(self, batches: BatchSampler, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return -(-len(self.batches) // self.steps)

    def __iter__(self) -> Iterator[list[list[int]]]:
        it = iter(self.batches)
        while group := list(itertools.islice(it, self.steps)):
            yield group


def _identity(batch: Tensor) -> Tensor:
    return batch


def chunk_loader(X: Tensor, batch_size: int, shuffle: bool, seed: int = 0, steps: int = 1) -> DataLoader[Tensor]:
    """A DataLoader that gathers each batch with one indexing op (fast on CPU).

    ``steps`` > 1: each item is a list of that many consecutive batches (the same batches, in the
    same order, as ``steps=1`` gives), which :class:`AutoencoderModule` trains on one after
    another in one call of its training step: Lightning's own work per batch it hands over (the
    fetch, its hooks, its step bookkeeping: about 0.3 ms on a CPU) is then paid once per group.
    """
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    dataset = ChunkDataset(X)
    if steps == 1:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=_identity, num_workers=0)
    # what DataLoader(batch_size=, shuffle=, generator=) builds inside, then grouped: the loader
    # draws its base seed from ``generator`` before the sampler's permutation, as it does there
    sampler: Sampler[int] = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    groups = BatchGroups(BatchSampler(sampler, batch_size, drop_last=False), steps)
    return DataLoader(dataset, batch_sampler=groups, generator=generator, collate_fn=_identity, num_workers=0)


class LossHistory(L.Callback):
    """Keeps the per-epoch ``train/loss`` and ``val/loss`` (and hands them to a sink if given)."""

    def __init__(self) -> None:
        self.train: list[float] = []
        self.val: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if "train/loss" in metrics:
            self.train.append(float(metrics["train/loss"]))
        if "val/loss" in metrics:
            self.val.append(float(metrics["val/loss"]))

    def state_dict(self) -> dict[str, list[float]]:
        return {"train": list(self.train), "val": list(self.val)}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.train, self.val = list(state["train"]), list(state["val"])
