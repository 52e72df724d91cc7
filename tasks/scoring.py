"""Tasks of the nightly scoring flow (library: licanom.ops.bundle, licanom.ops.scoring_state, licanom.ops.nightly).

Each task ends at a crash point of its name (``after:<task>``, licanom.ops.scoring_state.CRASH_POINTS), where
the fault-injection tests kill the night."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from licanom.ops import bundle as bundle_lib
from licanom.ops import nightly
from licanom.ops import scoring_state as state
from licanom.detectors.context import KeyHistory
from licanom.ops.scoring_state import crash_point
from licanom.ops.tracking import Tracker
from licanom.data.validate import ValidationError
from tasks.retry import unless

# errors that the next try meets again: a retry only delays the failure
PERMANENT = (LookupError, nightly.ModelLoadError, state.StateError, ValidationError, bundle_lib.VendorMismatchError)


def vendor_lock(output_dir: Path, vendor: str):  # type: ignore[no-untyped-def]
    """The vendor's lock, held by the flow around a night (a context manager, not a task)."""
    return state.vendor_lock(output_dir, vendor)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=unless(*PERMANENT))
def recover(output_dir: Path, vendor: str, tracker: Tracker) -> list[str]:
    """Finish or undo a night that was killed; its notes are printed."""
    crash_point("after:lock")
    notes = nightly.recover(output_dir, vendor, tracker)
    for note in notes:
        print(f"{vendor}: recovered: {note}")
    crash_point("after:recover")
    return notes


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60],
      retry_condition_fn=unless(*PERMANENT))  # no champion, or damaged files: retrying will not mend them
def load_champion(tracker: Tracker, vendor: str) -> tuple[bundle_lib.ModelBundle, str]:
    model, version = nightly.load_champion(tracker, vendor)
    crash_point("after:load_champion")
    get_run_logger().info("champion of %s: version %s (%s)", vendor, version, model.detector.model)
    return model, version


@task(cache_policy=NO_CACHE)
def load_state(output_dir: Path, vendor: str, model_version: str | None = None,
               since: int | None = None) -> state.VendorState:
    st = nightly.night_state(output_dir, vendor, model_version, since)
    crash_point("after:load_state")
    return st


@task(cache_policy=NO_CACHE)
def with_seen(model: bundle_lib.ModelBundle, vendor_state: state.VendorState,
              version: str) -> bundle_lib.ModelBundle:
    """The champion with the key pairs of the nights it already scored (same version only)."""
    return bundle_lib.with_seen(model, vendor_state.seen_by(version))


@task(cache_policy=NO_CACHE)
def pairs_seen(model: bundle_lib.ModelBundle, windows: bundle_lib.Windows) -> KeyHistory | None:
    return bundle_lib.pairs_seen(model, windows)


@task(cache_policy=NO_CACHE)
def screen_rows(model: bundle_lib.ModelBundle, raw: pl.DataFrame, vendor: str, before: int | None,
                max_bad_fraction: float, ahead: tuple[int, ...] = ()) -> nightly.Screened:
    """Validate (unknown products quarantined), quarantine far-beyond Ids, refuse a night of
    mostly bad rows, and find the new watermark."""
    screened = nightly.screen(bundle_lib.validate_rows(model, raw, vendor), raw, before, vendor,
                              max_bad_fraction, ahead)
    for message in screened.messages:
        print(f"{vendor}: {message}")
    crash_point("after:validate")
    return screened


@task(cache_policy=NO_CACHE)
def make_windows(model: bundle_lib.ModelBundle, valid: pl.DataFrame, carry: pl.DataFrame | None) -> bundle_lib.Windows:
    windows = bundle_lib.make_windows(model, valid, carry)
    crash_point("after:windows")
    return windows


@task(cache_policy=NO_CACHE)
def score_windows(model: bundle_lib.ModelBundle, windows: bundle_lib.Windows) -> pl.DataFrame:
    chunks = bundle_lib.score_windows(model, windows)
    crash_point("after:score")
    return chunks


@task(cache_policy=NO_CACHE)
def write_night(output_dir: Path, vendor: str, chunks: pl.DataFrame, screened: nightly.Screened,
                model_version: str, watermark_before: int | None,
                model: bundle_lib.ModelBundle, windows: bundle_lib.Windows) -> nightly.NightResult:
    night = nightly.write_night(output_dir, vendor, chunks, screened.validation, model_version, watermark_before,
                                screened.watermark, rows=windows.rows, detector=model.detector,
                                secret=model.pseudonym_secret(), key_history=model.key_history, tail=windows.tail,
                                rows_unknown_product=screened.rows_unknown_product, messages=screened.messages,
                                entities=bundle_lib.score_entities(model, screened.validation.valid))
    # the night's anomalous time frames (and incidents) on the flow run's page in the Prefect UI
    report = night.staging / "report.html" if night.staging else None
    final = night.out_dir / "report.html" if night.out_dir else None  # where publish_night puts it
    create_table_artifact(
        key=artifact_key(vendor), table=nightly.artifact_table(night) or [{"what": "nothing flagged"}],
        description=f"licanom: {vendor}'s anomalous time frames, {night.n_anomalies} of {chunks.height} chunks "
                    f"flagged by model version {model_version}"
                    + (f"; report: {final.resolve().as_uri()}" if final and report and report.exists() else ""),
    )
    if final is not None and report is not None and report.exists():
        create_link_artifact(key=f"{artifact_key(vendor)}-report", link=final.resolve().as_uri(),
                             link_text=f"{vendor} report ({final.parent.name})",
                             description=f"licanom: {vendor}'s HTML report of the night")
    get_run_logger().info("%s: %s chunks scored, %s flagged -> %s", vendor, chunks.height, night.n_anomalies,
                          final.resolve() if final is not None else night.out_dir)
    crash_point("after:stage")
    return night


def artifact_key(vendor: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "anomalies-" + "".join(c if c.isalnum() else "-" for c in vendor.lower())


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60])
def log_night(tracker: Tracker, night: nightly.NightResult) -> str:
    run_id = nightly.log_night(tracker, night)
    crash_point("after:log")
    return run_id


@task(cache_policy=NO_CACHE)
def publish_night(output_dir: Path, vendor: str, tracker: Tracker, night: nightly.NightResult, run_id: str,
                  screened: nightly.Screened, tail: pl.DataFrame, model_version: str,
                  seen: KeyHistory | None = None) -> nightly.NightResult:
    """Commit the state with the night (one rename), publish its folder, finish its MLflow run."""
    return nightly.publish_night(output_dir, vendor, tracker, night, run_id, screened, tail, model_version, seen)
