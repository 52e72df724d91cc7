"""Flow: score a vendor's new rows with its champion model (the nightly job)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.naming import run_name
from licanom.config import load_config
from licanom.nightly import NightResult
from tasks import data, scoring, training, vendors


@flow(name="score-vendor", log_prints=True, flow_run_name=run_name("score"))
def score_vendor(vendor: str = "demo", since: int | None = None) -> NightResult:
    """Rows after the watermark (or after ``since``) -> validate -> encode -> chunk -> score.

    Runs for the same vendor take turns under a lock; the watermark only moves forward.

    Args:
        vendor: The vendor to score (a file in conf/vendors/; fixed in a vendor's deployment).
        since: Re-score the rows after this log Id instead of after the watermark (empty: the new rows).
    """
    cfg = load_config(vendor)
    out = Path(cfg.output_dir)
    tracker = training.tracker()
    vendors.secrets_from_blocks(cfg)
    with scoring.vendor_lock(out, vendor):  # one run per vendor at a time; the second reads what the first left
        state = scoring.load_state(out, vendor)
        model, version = scoring.load_champion(tracker, vendor)
        model = scoring.with_seen(model, state, version)  # what the last nights saw is no longer new
        after = since if since is not None else state.watermark
        raw = data.extract(cfg, after_id=after)
        validation = scoring.validate_rows(model, raw, vendor)
        windows = scoring.make_windows(model, validation.valid, state.tail if since is None else None)
        chunks = scoring.score_windows(model, windows)
        watermark = scoring.new_watermark(raw, after)
        night = scoring.write_night(out, vendor, chunks, validation, version, after, watermark, model, windows)
        scoring.log_night(tracker, night)
        seen = scoring.pairs_seen(model, windows)
        scoring.advance_watermark(out, vendor, watermark, windows.tail, version, seen)
    print(f"{vendor}: {night.rows_read:,} rows read, {night.rows_quarantined:,} quarantined, "
          f"{chunks.height:,} chunks scored, {night.n_anomalies} flagged by champion version {version} "
          f"-> {night.out_dir}")
    return night
