"""A vendor's scoring state between nights: the watermark (last Id scored), the carried tail and,
for a context model, the (key, machine code) and (key, country) pairs seen in the nights scored
since the model was trained (so that a pair is new to its key once, not every night).

Written atomically (a temporary file, then a rename) and only after a night succeeded, so a
failed or interrupted night leaves the previous state in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from licanom.columns import RAW
from licanom.context import KeyHistory


@dataclass(frozen=True)
class VendorState:
    watermark: int | None  # the highest Id already read; the next night reads Id > watermark
    tail: pl.DataFrame     # valid rows after the last full window, scored next time
    model_version: str | None = None
    seen: KeyHistory | None = None  # pairs of the nights scored with model_version (context models)

    def seen_by(self, model_version: str | None) -> KeyHistory | None:
        """The pairs seen by ``model_version``; None for another version (a new model starts afresh)."""
        return self.seen if self.model_version == model_version else None


def state_dir(output_dir: Path, vendor: str) -> Path:
    return output_dir / vendor / "state"


def load_state(output_dir: Path, vendor: str) -> VendorState:
    d = state_dir(output_dir, vendor)
    meta = json.loads((d / "state.json").read_text()) if (d / "state.json").exists() else {}
    tail = pl.read_parquet(d / "tail.parquet") if (d / "tail.parquet").exists() else None
    if tail is None:
        from licanom.validate import validate_log

        tail = validate_log(pl.DataFrame({c: [] for c in RAW[:7]}, schema={c: pl.String for c in RAW[:7]})).valid
    return VendorState(watermark=meta.get("watermark"), tail=tail, model_version=meta.get("model_version"),
                       seen=KeyHistory.load(d))


def save_state(output_dir: Path, vendor: str, state: VendorState) -> None:
    d = state_dir(output_dir, vendor)
    d.mkdir(parents=True, exist_ok=True)
    tmp_tail = d / "tail.parquet.tmp"
    state.tail.write_parquet(tmp_tail)
    tmp_meta = d / "state.json.tmp"
    tmp_meta.write_text(json.dumps({"watermark": state.watermark, "model_version": state.model_version}))
    KeyHistory.keep(d, state.seen)
    os.replace(tmp_tail, d / "tail.parquet")
    os.replace(tmp_meta, d / "state.json")


class VendorBusyError(RuntimeError):
    """Another run holds the vendor's lock for longer than we were willing to wait."""


@contextlib.contextmanager
def vendor_lock(output_dir: Path, vendor: str, timeout: float = 3600.0, poll: float = 0.2) -> Iterator[None]:
    """Hold the vendor's scoring lock (an exclusive ``flock`` on ``<state>/lock``).

    Two runs for the same vendor, in one process or in two, take turns: the second one waits
    (up to ``timeout`` seconds, then :class:`VendorBusyError`) and then reads the state the
    first one left, so a night is never scored twice and the watermark moves once. The lock
    is released by the kernel if its holder dies, so a killed run never blocks the next one.
    """
    d = state_dir(output_dir, vendor)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise VendorBusyError(
                        f"vendor {vendor!r} is being scored by another run (lock {d / 'lock'}) "
                        f"for more than {timeout:.0f} s"
                    ) from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def advance(output_dir: Path, vendor: str, watermark: int | None, tail: pl.DataFrame,
            model_version: str | None, seen: KeyHistory | None = None) -> VendorState:
    """Record a finished night: the new watermark, the rows to carry into the next one and the
    key pairs it saw (``seen``, added to those of the earlier nights of the same model version).

    The watermark never moves back: re-running an older night (``since`` below the current
    watermark) rewrites that night's results and leaves the state as it was.
    """
    current = load_state(output_dir, vendor)
    if current.watermark is not None and (watermark is None or watermark <= current.watermark):
        return current
    earlier = current.seen_by(model_version)
    if seen is not None and earlier is not None:
        seen = earlier.union(seen)
    new = VendorState(watermark=watermark, tail=tail, model_version=model_version, seen=seen)
    save_state(output_dir, vendor, new)
    return new


def start_after(output_dir: Path, vendor: str, watermark: int | None) -> VendorState:
    """Before a vendor's first night: scoring starts after the rows the model was trained on.

    An existing state is left as it is (retraining never rewinds or skips nights).
    """
    if (state_dir(output_dir, vendor) / "state.json").exists():
        return load_state(output_dir, vendor)
    new = VendorState(watermark=watermark, tail=load_state(output_dir, vendor).tail, model_version=None)
    save_state(output_dir, vendor, new)
    return new
