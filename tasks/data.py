"""Tasks of the data path: extract, validate, encode, chunk (library: licanom.pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from prefect import task

from licanom import pipeline
from licanom.chunk import Chunks
from licanom.config import Config
from licanom.encode import Vocabulary
from licanom.validate import ValidationResult


@task(retries=3, retry_delay_seconds=[5, 30, 120])
def extract(cfg: Config, after_id: int | None = None) -> pl.DataFrame:
    return pipeline.extract(cfg.source, after_id)


@task
def validate(raw: pl.DataFrame, cfg: Config) -> ValidationResult:
    return pipeline.validate(raw, cfg.validate_)


@task
def encode(valid: pl.DataFrame, cfg: Config, vocabulary: Vocabulary | None = None) -> pipeline.Encoded:
    return pipeline.encode(valid, cfg.encode, vocabulary)


@task
def chunk(encoded: pipeline.Encoded, cfg: Config) -> tuple[Chunks, np.ndarray]:
    return pipeline.chunk(encoded, cfg.chunk, cfg.split)


@task
def write_prepared(prepared: pipeline.Prepared, out_dir: Path) -> Path:
    pipeline.write_prepared(prepared, out_dir)
    return out_dir
