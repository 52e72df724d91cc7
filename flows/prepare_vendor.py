"""Flow: a vendor's log from its source to chunks (extract -> validate -> encode -> chunk)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from licanom.config import load_config
from licanom.pipeline import Prepared
from tasks import data


@flow(name="prepare-vendor", log_prints=True)
def prepare_vendor(vendor: str = "demo", out_dir: str = "out") -> Prepared:
    cfg = load_config(vendor)
    raw = data.extract(cfg)
    validation = data.validate(raw, cfg)
    encoded = data.encode(validation.valid, cfg)
    chunks, test_mask = data.chunk(encoded, cfg)
    prepared = Prepared(validation=validation, encoded=encoded, chunks=chunks, test_mask=test_mask)
    data.write_prepared(prepared, Path(out_dir) / vendor / "prepared")
    return prepared
