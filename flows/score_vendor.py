"""Flow: score a vendor's new rows with its champion model (the nightly job)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.naming import run_name
from licanom.config import load_config
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
    cfg = load_config(vendor)
    out = Path(cfg.output_dir)
    tracker = training.tracker()
    vendors.secrets_from_blocks(cfg)
    with scoring.vendor_lock(out, vendor):  # one run per vendor at a time; the second reads what the first left
        scoring.recover(out, vendor, tracker)
        model, version = scoring.load_champion(tracker, vendor)
        state = scoring.load_state(out, vendor, version, since)
        model = scoring.with_seen(model, state, version)  # what the last nights saw is no longer new
        after = since if since is not None else state.watermark
        raw = data.extract_after(cfg, after, state.ahead)
        screened = scoring.screen_rows(model, raw, vendor, after, cfg.validate_.max_bad_fraction, state.ahead)
        windows = scoring.make_windows(model, screened.validation.valid, state.tail if since is None else None)
        chunks = scoring.score_windows(model, windows)
        night = scoring.write_night(out, vendor, chunks, screened, version, after, model, windows)
        run_id = scoring.log_night(tracker, night)
        seen = scoring.pairs_seen(model, windows)
        night = scoring.publish_night(out, vendor, tracker, night, run_id, screened, windows.tail, version, seen)
    print(f"{vendor}: {night.rows_read:,} rows read, {night.rows_quarantined:,} quarantined, "
          f"{chunks.height:,} chunks scored, {night.n_anomalies} flagged by champion version {version} "
          f"-> {night.out_dir}")
    return night
