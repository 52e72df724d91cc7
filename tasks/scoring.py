"""Tasks of the nightly scoring flow (library: licanom.bundle, licanom.state, licanom.nightly)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from licanom import bundle as bundle_lib
from licanom import nightly, state
from licanom.context import KeyHistory
from licanom.tracking import Tracker
from licanom.validate import ValidationResult
from tasks.retry import unless


def vendor_lock(output_dir: Path, vendor: str):  # type: ignore[no-untyped-def]
    """The vendor's lock, held by the flow around a night (a context manager, not a task)."""
    return state.vendor_lock(output_dir, vendor)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60],
      retry_condition_fn=unless(LookupError))  # no champion yet: retrying will not train one
def load_champion(tracker: Tracker, vendor: str) -> tuple[bundle_lib.ModelBundle, str]:
    model, version = tracker.load_champion(vendor)
    get_run_logger().info("champion of %s: version %s (%s)", vendor, version, model.detector.model)
    return model, version


@task(cache_policy=NO_CACHE)
def load_state(output_dir: Path, vendor: str) -> state.VendorState:
    return state.load_state(output_dir, vendor)


@task(cache_policy=NO_CACHE)
def with_seen(model: bundle_lib.ModelBundle, vendor_state: state.VendorState,
              version: str) -> bundle_lib.ModelBundle:
    """The champion with the key pairs of the nights it already scored (same version only)."""
    return bundle_lib.with_seen(model, vendor_state.seen_by(version))


@task(cache_policy=NO_CACHE)
def pairs_seen(model: bundle_lib.ModelBundle, windows: bundle_lib.Windows) -> KeyHistory | None:
    return bundle_lib.pairs_seen(model, windows)


@task(cache_policy=NO_CACHE)
def validate_rows(model: bundle_lib.ModelBundle, raw: pl.DataFrame, vendor: str) -> ValidationResult:
    return bundle_lib.validate_rows(model, raw, vendor)


@task(cache_policy=NO_CACHE)
def make_windows(model: bundle_lib.ModelBundle, valid: pl.DataFrame, carry: pl.DataFrame | None) -> bundle_lib.Windows:
    return bundle_lib.make_windows(model, valid, carry)


@task(cache_policy=NO_CACHE)
def score_windows(model: bundle_lib.ModelBundle, windows: bundle_lib.Windows) -> pl.DataFrame:
    return bundle_lib.score_windows(model, windows)


@task(cache_policy=NO_CACHE)
def new_watermark(raw: pl.DataFrame, before: int | None) -> int | None:
    return nightly.new_watermark(raw, before)


@task(cache_policy=NO_CACHE)
def write_night(output_dir: Path, vendor: str, chunks: pl.DataFrame, validation: ValidationResult,
                model_version: str, watermark_before: int | None, watermark_after: int | None,
                model: bundle_lib.ModelBundle, windows: bundle_lib.Windows) -> nightly.NightResult:
    night = nightly.write_night(output_dir, vendor, chunks, validation, model_version, watermark_before,
                                watermark_after, rows=windows.rows, detector=model.detector,
                                secret=model.pseudonym_secret(), key_history=model.key_history)
    # the night's anomalous time frames (and entities) on the flow run's page in the Prefect UI
    report = night.out_dir / "report.html" if night.out_dir else None
    create_table_artifact(
        key=artifact_key(vendor), table=nightly.artifact_table(night) or [{"what": "nothing flagged"}],
        description=f"licanom: {vendor}'s anomalous time frames, {night.n_anomalies} of {chunks.height} chunks "
                    f"flagged by model version {model_version}"
                    + (f"; report: {report.resolve().as_uri()}" if report and report.exists() else ""),
    )
    if report is not None and report.exists():
        create_link_artifact(key=f"{artifact_key(vendor)}-report", link=report.resolve().as_uri(),
                             link_text=f"{vendor} report ({night.out_dir.name})",
                             description=f"licanom: {vendor}'s HTML report of the night")
    get_run_logger().info("%s: %s chunks scored, %s flagged -> %s", vendor, chunks.height, night.n_anomalies,
                          report.resolve() if report is not None and report.exists() else night.out_dir)
    return night


def artifact_key(vendor: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "anomalies-" + "".join(c if c.isalnum() else "-" for c in vendor.lower())


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60])
def log_night(tracker: Tracker, night: nightly.NightResult) -> str:
    return nightly.log_night(tracker, night)


@task(cache_policy=NO_CACHE)
def advance_watermark(output_dir: Path, vendor: str, watermark: int | None, tail: pl.DataFrame,
                      model_version: str, seen: KeyHistory | None = None) -> state.VendorState:
    return state.advance(output_dir, vendor, watermark, tail, model_version, seen)
