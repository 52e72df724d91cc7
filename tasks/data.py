"""Tasks of the data path: extract, validate, encode-and-chunk (library: licanom.data.pipeline)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from licanom.ops import nightly, training
from licanom.data import pipeline
from licanom.config import Config
from licanom.ops.nightly import Night
from licanom.ops.tracking import Tracker
from licanom.data.validate import ValidationResult


# Not retried here: the HTTP source's client retries its own requests with back-off
# (licanom.data.extract.cryptolens), and a missing or unreadable file stays so.
@task(cache_policy=NO_CACHE)
def extract(cfg: Config, after_id: int | None = None, until: datetime | None = None) -> pl.DataFrame:
    return pipeline.extract(cfg.source, after_id, until)


@task(cache_policy=NO_CACHE)
def read_night(cfg: Config, night: Night, tracker: Tracker | None = None) -> Night:
    """The night's rows: Id > the watermark (or ``since``), less the far-beyond Ids an earlier
    night quarantined (an export refused as it is read: a FAILED MLflow run, with ``tracker``)."""
    return nightly.read_night(night, cfg.source, tracker)


@task(cache_policy=NO_CACHE)
def validate(raw: pl.DataFrame, cfg: Config) -> ValidationResult:
    return pipeline.validate(raw, cfg.validate_, private=cfg.privacy.pseudonymise)


def _encode_chunk_key(context: Any, parameters: dict[str, Any]) -> str:
    """Same valid rows and same settings -> same key (so a rerun reuses the chunks)."""
    cfg: Config = parameters["cfg"]
    valid: pl.DataFrame = parameters["validation"].valid
    h = hashlib.sha256()
    h.update(valid.hash_rows(seed=0).to_numpy().tobytes())
    h.update(cfg.encode.model_dump_json().encode() + cfg.chunk.model_dump_json().encode()
             + cfg.split.model_dump_json().encode() + cfg.privacy.model_dump_json().encode()
             + cfg.vendor.encode())
    return training.CHUNK_CACHE_PREFIX + h.hexdigest()[:32]


# How long a training's chunks stay cached for a rerun (a failed training retried the same day);
# older ones are removed when a training flow starts (prune_chunk_cache).
CHUNK_CACHE = timedelta(days=1)


@task(cache_key_fn=_encode_chunk_key, cache_expiration=CHUNK_CACHE, persist_result=True)
def encode_and_chunk(validation: ValidationResult, cfg: Config) -> pipeline.Prepared:
    return pipeline.encode_and_chunk(validation, cfg)


@task(cache_policy=NO_CACHE)
def prune_chunk_cache() -> int:
    """Remove cached chunks past their expiry from Prefect's result storage; how many."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    return len(training.prune_chunk_cache(Path(PREFECT_LOCAL_STORAGE_PATH.value()), CHUNK_CACHE))


@task(cache_policy=NO_CACHE)
def write_prepared(prepared: pipeline.Prepared, out_dir: Path) -> Path:
    pipeline.write_prepared(prepared, out_dir)
    return out_dir
