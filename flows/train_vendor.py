"""Flow: train a vendor's configured variants side by side, track them, register the champion."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from licanom.config import load_config
from licanom.training import TrainingSummary
from tasks import data, training, vendors


@flow(name="train-vendor", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2))
def train_vendor(vendor: str = "demo", until: datetime | None = None,
                 models: list[str] | None = None) -> TrainingSummary:
    """extract -> validate -> encode-and-chunk -> train each variant -> thresholds, clustering -> register.

    ``until`` trains on the rows before that time; ``models`` overrides the configured variants
    (names, or ["all"]).
    """
    cfg = load_config(vendor, overrides={"train": {"models": models}} if models else None)
    tracker = training.tracker()
    vendors.secrets_from_blocks(cfg)
    raw = data.extract(cfg, until=until)
    validation = data.validate(raw, cfg)
    prepared = data.encode_and_chunk(validation, cfg)
    cfg = training.for_vendor_size(cfg, prepared)  # train.models: auto -> by the training chunks
    training.share_cores(len(cfg.train.models))
    parent_run_id = training.start_training(tracker, cfg, prepared)
    variants = training.train_variant.map(
        unmapped(tracker), unmapped(cfg), unmapped(prepared), list(cfg.train.models),
        unmapped(parent_run_id), unmapped(training.work_dir()),
    ).result()
    summary = training.finish_training(tracker, cfg, parent_run_id, variants)
    training.start_scoring_after(Path(cfg.output_dir), vendor, prepared.chunks.meta["last_id"].max())
    print(f"{vendor}: champion is {summary.champion.model} "
          f"(version {summary.champion.version} of {summary.champion.name})")
    return summary
