"""Tasks of the training flow (library: licanom.ops.training, licanom.ops.tracking)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from licanom.ops import scoring_state as state
from licanom.ops import training
from licanom.config import Config
from licanom.ops.detect import ModelOutcome
from licanom.data.pipeline import Prepared
from licanom.ops.tracking import Tracker, configure


@task(cache_policy=NO_CACHE)
def tracker() -> Tracker:
    return configure()


@task(cache_policy=NO_CACHE)
def last_chunked_id(prepared: Prepared) -> int | None:
    return training.last_chunked_id(prepared)


@task(cache_policy=NO_CACHE)
def start_scoring_after(output_dir: Path, vendor: str, watermark: int | None) -> None:
    state.start_after(output_dir, vendor, watermark)


@task(cache_policy=NO_CACHE)
def work_dir() -> Path:
    return training.work_dir()


@task(cache_policy=NO_CACHE)
def discard_work_dir(path: Path) -> None:
    training.discard_work_dir(path)


@task(cache_policy=NO_CACHE)
def for_vendor_size(cfg: Config, prepared: Prepared) -> Config:
    return training.for_vendor_size(cfg, prepared)


@task(cache_policy=NO_CACHE)
def end_killed_trainings(tracker: Tracker, vendor: str) -> list[str]:
    """Mark KILLED the vendor's training runs that a killed training left RUNNING; a line each."""
    lines = training.end_killed_trainings(tracker, vendor)
    for line in lines:
        get_run_logger().warning("%s", line)
    return lines


@task(cache_policy=NO_CACHE)
def start_training(tracker: Tracker, cfg: Config, prepared: Prepared) -> str:
    return training.start_training(tracker, cfg, prepared)


@task(cache_policy=NO_CACHE)
def fail_training(tracker: Tracker, run_id: str, error: BaseException) -> bool:
    return training.fail_training(tracker, run_id, error)


@task(cache_policy=NO_CACHE)
def kept_training_quarantine(cfg: Config, run_id: str) -> Path | None:
    return training.kept_training_quarantine(cfg, run_id)


@task(cache_policy=NO_CACHE)
def fit_side_by_side(cfg: Config, prepared: Prepared) -> dict[str, ModelOutcome]:
    return training.fit_side_by_side(cfg, prepared)


@task(cache_policy=NO_CACHE, task_run_name="train-{model}")
def train_variant(tracker: Tracker, cfg: Config, prepared: Prepared, model: str, parent_run_id: str,
                  work_dir: Path, fitted: ModelOutcome | None = None) -> training.VariantResult:
    logger = get_run_logger()

    def epoch_line(name: str, epoch: int, epochs: int, losses: dict[str, float]) -> None:
        logger.info("%s epoch %d/%d: %s", name, epoch, epochs,
                    ", ".join(f"{k} {v:.5f}" for k, v in losses.items()) or "no loss yet")

    result = training.train_variant(tracker, cfg, prepared, model, parent_run_id, work_dir, on_epoch=epoch_line,
                                     fitted=fitted)
    row = result.row.row(0, named=True)
    logger.info("%s trained in %.1f s: its decision %s (score %s); the thesis's M3 would be %s, %s of %s test "
                "chunks above it", model, row["train_seconds"], result.decision,
                "?" if result.threshold is None else f"{result.threshold:.5g}",
                "none" if row["threshold_M3"] is None else f"{row['threshold_M3']:.5g}", row["M3"], row["test_chunks"])
    if result.caution:
        logger.warning("%s: %s", model, result.caution)
    return result


@task(cache_policy=NO_CACHE)
def finish_training(tracker: Tracker, cfg: Config, parent_run_id: str,
                    variants: list[training.VariantResult], prepared: Prepared) -> training.TrainingSummary:
    summary = training.finish_training(tracker, cfg, parent_run_id, variants, prepared)
    get_run_logger().info("registered %s; champion: %s version %s (%s)",
                          ", ".join(f"{v.model} v{v.version}" for v in summary.versions),
                          summary.champion.name, summary.champion.version, summary.champion.model)
    return summary
