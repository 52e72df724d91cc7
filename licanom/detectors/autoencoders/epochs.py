"""How a caller hears of each training epoch's losses, without importing torch or Lightning.

A context model's training flow passes through :func:`epoch_listener` too, so the listener lives
here rather than beside the LightningModule: importing Lightning costs seconds that such a flow
never needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# Called at the end of each training epoch with (module, epoch from 1, {"train/loss", "val/loss"}):
# how a caller (licanom.ops.training) logs the losses live, without reaching into the Trainer.
# The module is an AutoencoderModule (typed loosely here so that this file needs no torch).
EpochListener = Callable[[Any, int, dict[str, float]], None]
_EPOCH_LISTENER: ContextVar[EpochListener | None] = ContextVar("licanom_epoch_listener", default=None)


@contextmanager
def epoch_listener(listener: EpochListener) -> Iterator[None]:
    """Every :class:`~licanom.detectors.autoencoders.module.AutoencoderModule` trained inside this
    block reports each epoch's losses to ``listener`` as the epoch ends (the same thread: Lightning
    trains in the caller's thread)."""
    token = _EPOCH_LISTENER.set(listener)
    try:
        yield
    finally:
        _EPOCH_LISTENER.reset(token)


def current_listener() -> EpochListener | None:
    """The listener of the innermost :func:`epoch_listener` block, if any."""
    return _EPOCH_LISTENER.get()
