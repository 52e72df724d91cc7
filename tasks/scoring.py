"""Tasks of the nightly scoring flow, one library call each (licanom.ops.nightly's steps of a
:class:`licanom.ops.nightly.Night`, which carries what each step prepared to the next).

Each task ends at a crash point of its name (``after:<step>``, licanom.ops.scoring_state.CRASH_POINTS), where
the fault-injection tests kill the night.

Retries: only the tasks that talk to MLflow retry, and not after an error the next try meets
again (:data:`PERMANENT`), nor after MLflow's own client gave up on an unreachable server
(:class:`licanom.ops.tracking.TrackingUnavailableError`: its HTTP requests were already retried with
back-off, MLFLOW_HTTP_REQUEST_MAX_RETRIES): one layer of retries per call. Reading the rows is
not retried here: the log source's client retries its own requests (licanom.data.extract).
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from licanom.config import Config
from licanom.ops import bundle as bundle_lib
from licanom.ops import nightly
from licanom.ops import scoring_state as state
from licanom.ops.nightly import Night
from licanom.ops.scoring_state import crash_point
from licanom.ops.tracking import Tracker, TrackingUnavailableError
from licanom.data.privacy import MissingSecretError
from licanom.data.validate import ValidationError
from tasks.retry import unless

# errors that the next try meets again: a retry only delays the failure
PERMANENT = (LookupError, nightly.ModelLoadError, state.StateError, ValidationError, bundle_lib.VendorMismatchError,
             TrackingUnavailableError, MissingSecretError)


def vendor_lock(output_dir: Path, vendor: str):  # type: ignore[no-untyped-def]
    """The vendor's lock, held by the flow around a night (a context manager, not a task; it yields
    a licanom.ops.scoring_state.LockHeld: whether the run waited for another run of the vendor)."""
    return state.vendor_lock(output_dir, vendor)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=unless(*PERMANENT))
def open_night(output_dir: Path, vendor: str, tracker: Tracker, since: int | None = None,
               cfg: Config | None = None, waited: float | None = None) -> Night:
    """Recover a killed night, load the champion (checked against the vendor's privacy settings)
    and the committed state (safe to repeat); ``waited``: the seconds the run waited for the vendor's lock."""
    night = nightly.open_night(output_dir, vendor, tracker, since, cfg=cfg, waited=waited)
    for note in night.notes:
        print(f"{vendor}: recovered: {note}")
    get_run_logger().info("champion of %s: version %s (%s)", vendor, night.version, night.model.detector.model)
    return night


@task(cache_policy=NO_CACHE)
def score_rows(night: Night, max_bad_fraction: float, tracker: Tracker | None = None) -> Night:
    """Validate (unknown products quarantined), quarantine far-beyond Ids, refuse a night of
    mostly bad rows (with a FAILED MLflow run), find the new watermark; cut the windows and score them.
    The night's messages are logged as warnings (they are in its report.md too)."""
    night = nightly.score_rows(night, max_bad_fraction, tracker)
    assert night.screened is not None
    logger = get_run_logger()
    for message in night.screened.messages:  # what the operator should act on (late rows, a source that
        logger.warning("%s: %s", night.vendor, message)  # shrank, retrain, ...): a warning in the run's log
    return night


@task(cache_policy=NO_CACHE)
def stage_night(night: Night) -> Night:
    """The night's outputs, staged; its anomalous time frames (and incidents) and a link to its
    report on the flow run's page in the Prefect UI."""
    night = nightly.stage_night(night)
    result = night.result
    assert result is not None
    vendor = night.vendor
    report = result.staging / "report.html" if result.staging else None
    final = result.out_dir / "report.html" if result.out_dir else None  # where publish puts it
    create_table_artifact(
        key=artifact_key(vendor), table=nightly.artifact_table(result) or [{"what": "nothing flagged"}],
        description=f"licanom: {vendor}'s anomalous time frames, {result.n_anomalies} of {result.chunks.height} chunks "
                    f"flagged by model version {night.version}"
                    + (f"; report: {final.resolve().as_uri()}" if final and report and report.exists() else ""),
    )
    if final is not None and report is not None and report.exists():
        create_link_artifact(key=f"{artifact_key(vendor)}-report", link=final.resolve().as_uri(),
                             link_text=f"{vendor} report ({final.parent.name})",
                             description=f"licanom: {vendor}'s HTML report of the night")
    get_run_logger().info("%s: %s chunks scored, %s flagged -> %s", vendor, result.chunks.height, result.n_anomalies,
                          final.resolve() if final is not None else "no night written (nothing new)")
    crash_point("after:stage")
    return night


def artifact_key(vendor: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "anomalies-" + "".join(c if c.isalnum() else "-" for c in vendor.lower())


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=unless(*PERMANENT))
def log_night(tracker: Tracker, night: Night) -> Night:
    return nightly.log(tracker, night)


@task(cache_policy=NO_CACHE)
def publish_night(tracker: Tracker, night: Night) -> Night:
    """Commit the state with the night (one rename), publish its folder, finish its MLflow run."""
    return nightly.publish(tracker, night)
