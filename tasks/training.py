"""Tasks of the training flow (library: licanom.training, licanom.tracking)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from licanom import state, training
from licanom.config import Config
from licanom.pipeline import Prepared
from licanom.tracking import Tracker, configure


@task(cache_policy=NO_CACHE)
def tracker() -> Tracker:
    return configure()


@task(cache_policy=NO_CACHE)
def start_scoring_after(output_dir: Path, vendor: str, watermark: int | None) -> None:
    state.start_after(output_dir, vendor, watermark)


@task(cache_policy=NO_CACHE)
def work_dir() -> Path:
    return training.work_dir()


@task(cache_policy=NO_CACHE)
def for_vendor_size(cfg: Config, prepared: Prepared) -> Config:
    return training.for_vendor_size(cfg, prepared)


@task(cache_policy=NO_CACHE)
def start_training(tracker: Tracker, cfg: Config, prepared: Prepared) -> str:
    return training.start_training(tracker, cfg, prepared)


@task(cache_policy=NO_CACHE, task_run_name="train-{model}")
def train_variant(tracker: Tracker, cfg: Config, prepared: Prepared, model: str, parent_run_id: str,
                  work_dir: Path) -> training.VariantResult:
    return training.train_variant(tracker, cfg, prepared, model, parent_run_id, work_dir)


@task(cache_policy=NO_CACHE)
def finish_training(tracker: Tracker, cfg: Config, parent_run_id: str,
                    variants: list[training.VariantResult]) -> training.TrainingSummary:
    return training.finish_training(tracker, cfg, parent_run_id, variants)
