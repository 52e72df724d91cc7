"""Flow: score a vendor's new rows with its champion model (the nightly job)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.utilities.annotations import opaque

from flows.naming import run_name
from flows.states import refused
from licanom.config import VendorConfigError
from licanom.ops.nightly import NightResult
from tasks import data, scoring, training, vendors


@flow(name="score-vendor", log_prints=True, flow_run_name=run_name("score"))
def score_vendor(vendor: str = "demo", since: int | None = None) -> NightResult:
    """Rows after the watermark (or after ``since``) -> validate -> encode -> chunk -> score ->
    stage the night -> MLflow run -> commit the state and publish the night.

    Runs for the same vendor take turns under a lock; a night killed at any point is finished
    or undone by the next run (licanom.ops.nightly.recover); the watermark only moves forward.

    Args:
        vendor: The vendor to score (a file in conf/vendors/; fixed in a vendor's deployment).
        since: Re-score the rows after this log Id instead of after the watermark (empty: the new rows).
    """
    cfg = vendors.vendor_config(vendor)
    if isinstance(cfg, VendorConfigError):  # one line in the nightly run's list; the error: its exit code, 2
        return refused(cfg)  # type: ignore[return-value]
    out = Path(cfg.output_dir)
    tracker = training.tracker()
    vendors.secrets_from_blocks(cfg)
    vendors.require_secrets(cfg)  # a missing secret: one line before the log is read, as in training
    with scoring.vendor_lock(out, vendor) as held:  # one run per vendor at a time; the second reads what the first left
        night = scoring.open_night(out, vendor, tracker, since, cfg, held.waited)
        night = data.read_night(cfg, opaque(night), tracker)
        night = scoring.score_rows(opaque(night), cfg.validate_.max_bad_fraction, tracker)
        night = scoring.stage_night(opaque(night))
        night = scoring.log_night(tracker, opaque(night))
        night = scoring.publish_night(tracker, opaque(night))
    result = night.result
    for line in result.summary():
        print(line)
    return result
