"""A vendor's scoring state between nights: the watermark (last Id scored) and the carried tail.

Written atomically (a temporary file, then a rename) and only after a night succeeded, so a
failed or interrupted night leaves the previous state in place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from licanom.columns import RAW


@dataclass(frozen=True)
class VendorState:
    watermark: int | None  # the highest Id already read; the next night reads Id > watermark
    tail: pl.DataFrame     # valid rows after the last full window, scored next time
    model_version: str | None = None


def state_dir(output_dir: Path, vendor: str) -> Path:
    return output_dir / vendor / "state"


def load_state(output_dir: Path, vendor: str) -> VendorState:
    d = state_dir(output_dir, vendor)
    meta = json.loads((d / "state.json").read_text()) if (d / "state.json").exists() else {}
    tail = pl.read_parquet(d / "tail.parquet") if (d / "tail.parquet").exists() else None
    if tail is None:
        from licanom.validate import validate_log

        tail = validate_log(pl.DataFrame({c: [] for c in RAW[:7]}, schema={c: pl.String for c in RAW[:7]})).valid
    return VendorState(watermark=meta.get("watermark"), tail=tail, model_version=meta.get("model_version"))


def save_state(output_dir: Path, vendor: str, state: VendorState) -> None:
    d = state_dir(output_dir, vendor)
    d.mkdir(parents=True, exist_ok=True)
    tmp_tail = d / "tail.parquet.tmp"
    state.tail.write_parquet(tmp_tail)
    tmp_meta = d / "state.json.tmp"
    tmp_meta.write_text(json.dumps({"watermark": state.watermark, "model_version": state.model_version}))
    os.replace(tmp_tail, d / "tail.parquet")
    os.replace(tmp_meta, d / "state.json")


def advance(output_dir: Path, vendor: str, watermark: int | None, tail: pl.DataFrame,
            model_version: str | None) -> VendorState:
    """Record a finished night: the new watermark and the rows to carry into the next one."""
    new = VendorState(watermark=watermark, tail=tail, model_version=model_version)
    save_state(output_dir, vendor, new)
    return new


def start_after(output_dir: Path, vendor: str, watermark: int | None) -> VendorState:
    """Before a vendor's first night: scoring starts after the rows the model was trained on.

    An existing state is left as it is (retraining never rewinds or skips nights).
    """
    if (state_dir(output_dir, vendor) / "state.json").exists():
        return load_state(output_dir, vendor)
    return advance(output_dir, vendor, watermark, load_state(output_dir, vendor).tail, None)
