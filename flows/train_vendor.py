"""Flow: train a vendor's configured variants one after another, track them, register the champion."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

from prefect import flow
from prefect.utilities.annotations import opaque

from flows.naming import run_name
from flows.states import refused
from licanom.config import VendorConfigError
from licanom.ops.training import TrainingSummary
from tasks import data, training, vendors


@flow(name="train-vendor", log_prints=True, flow_run_name=run_name("train"))
def train_vendor(vendor: str = "demo", until: datetime | None = None,
                 models: list[str] | None = None) -> TrainingSummary:
    """extract -> validate -> encode-and-chunk -> train each variant -> thresholds, clustering -> register.

    Args:
        vendor: The vendor to train (a file in conf/vendors/; fixed in a vendor's deployment).
        until: Train on the rows logged before this time (empty: every row the source has).
        models: Variants to train instead of the vendor's train.models: names such as
            Tail_context or TCN_AE, or ["all"] for the thesis's autoencoders (empty: as configured).
    """
    cfg = vendors.vendor_config(vendor, {"train": {"models": models}} if models else None)
    if isinstance(cfg, VendorConfigError):  # one line, not a traceback; the error: its exit code, 2
        return refused(cfg)  # type: ignore[return-value]
    data.prune_chunk_cache()
    tracker = training.tracker()
    vendors.secrets_from_blocks(cfg)
    vendors.require_secrets(cfg)  # a missing secret: one line before the log is read, not after it
    raw = data.extract(cfg, until=until)
    validation = data.validate(raw, cfg)
    print(f"{vendor}: {raw.height:,} rows read, {validation.valid.height:,} valid, "
          f"{validation.quarantine.height:,} quarantined" + (f": {validation.reasons()}" if validation.quarantine.height else ""))
    prepared = data.encode_and_chunk(opaque(validation), cfg)
    cfg = training.for_vendor_size(cfg, opaque(prepared))  # train.models: auto -> by the training chunks
    print(f"{vendor}: {prepared.chunks.n_chunks:,} chunks ({int((~prepared.test_mask).sum()):,} for training); "
          f"training {', '.join(cfg.train.models)} (the first is the default)")
    training.end_killed_trainings(tracker, vendor)  # runs a killed training left RUNNING: KILLED, a line each
    parent_run_id = training.start_training(tracker, cfg, opaque(prepared))
    try:  # failed or stopped from here: its parent run ends FAILED, not RUNNING for good
        if validation.quarantine.height:
            own = training.kept_training_quarantine(cfg, parent_run_id)
            kept = f"{own}; pseudonymised: " if own is not None else ""
            print(f"{vendor}: the quarantined rows, each with its reason: {kept}quarantine.parquet among the artifacts of "
                  f"MLflow run {parent_run_id} (experiment {tracker.experiment_name(vendor)})")
        work_dir = training.work_dir()
        try:
            # train.parallel > 1: the variants fitted side by side, one process and one thread each
            # (licanom.ops.training.fit_side_by_side); else one after another, each on train.threads
            fitted = training.fit_side_by_side(cfg, opaque(prepared))
            variants = [training.train_variant(tracker, cfg, opaque(prepared), model, parent_run_id, work_dir, fitted.get(model))
                        for model in cfg.train.models]
            summary = training.finish_training(tracker, cfg, parent_run_id, variants, opaque(prepared))
        finally:  # the bundles are in MLflow now (or the run failed): nothing to keep
            training.discard_work_dir(work_dir)
        training.start_scoring_after(Path(cfg.output_dir), vendor, training.last_chunked_id(opaque(prepared)))
        print(f"{vendor}: champion is {summary.champion.model} "
              f"(version {summary.champion.version} of {summary.champion.name})")
    except BaseException as err:
        with contextlib.suppress(Exception):  # the training's own error is the one raised
            training.fail_training(tracker, parent_run_id, err)
        raise
    return summary
