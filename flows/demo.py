"""`make demo`: the main job on a generated demo vendor, with embedded defaults.

Simulates the demo vendor, trains its configured variants (``train.models: auto``: the default
detector, then one thesis autoencoder) on all but the last SCORE_DAYS simulated days, registers
them with the default as champion, then runs one nightly scoring over those days' rows (which
hold planted anomalies: the report shows what was found and why). Each epoch is logged as it
ends (Lightning's progress bar too, in a terminal).
`LICANOM_DEMO_MODELS=all` (or a comma-separated list) trains other variants.

Safe on a first run: licanom's settings (licanom.settings) give Prefect's in-process API time to
create its database on a slow or busy machine, and keep its state in the project's .prefect/.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from flows.naming import tagged
from flows.score_vendor import score_vendor
from flows.train_vendor import train_vendor
from licanom.config import Config, load_config
from licanom.ops.detect import format_results
from licanom.ops.nightly import NightResult
from licanom.ops.scoring_state import state_dir
from licanom.ops.tracking import TrackingConfig


SCORE_DAYS = 3


def demo_cutoff(cfg: Config) -> datetime:
    """Training sees the days before this time, the nightly scoring the last SCORE_DAYS."""
    from licanom.data.pipeline import extract

    log = extract(cfg.source)  # simulated once: the training and the night read the same log
    return log["Time"].max() - timedelta(days=SCORE_DAYS)


def night_line(night: NightResult) -> str:
    """The demo's line for its night: what it read and what it flagged, chunks and entities, as the
    night's report.md counts them."""
    return (f"nightly scoring: {night.rows_read:,} new rows, {night.chunks.height:,} chunks, {night.found()} "
            f"(champion version {night.model_version})")


def main() -> None:
    from flows.console import quiet_expected_tracebacks
    from flows.early_api import start_early
    from flows.run import FIRST_CALL_IMPORTS

    t0 = time.perf_counter()
    api = start_early()  # Prefect's temporary server comes up while the demo's log is simulated
    quiet_expected_tracebacks()
    cfg = load_config("demo")
    models = os.environ.get("LICANOM_DEMO_MODELS")
    # the demo replays the same simulated night each time: start its scoring state afresh
    shutil.rmtree(state_dir(Path(cfg.output_dir), "demo"), ignore_errors=True)
    until = demo_cutoff(cfg)
    print(f"Demo vendor: a simulated {cfg.source.profile} vendor, {cfg.source.days} days; training on the days "
          f"before {until:%Y-%m-%d %H:%M}, then scoring the last {SCORE_DAYS} as one night.", flush=True)
    api.wait(FIRST_CALL_IMPORTS["train"])
    with tagged("demo"):
        summary = train_vendor("demo", until=until, models=models.split(",") if models else None)
        night = score_vendor("demo")
    tracking = TrackingConfig.load()
    print()
    print(f"Demo vendor: trained on the simulated log before {until:%Y-%m-%d %H:%M}, then scored the last {SCORE_DAYS} days.")
    print(format_results(summary.results))
    print(f"champion: {summary.champion.name} version {summary.champion.version} ({summary.champion.model})")
    print(night_line(night))
    report = night.out_dir / "report.html" if night.out_dir else None
    print(f"  report:        {report if report and report.exists() else '-'}  (open it in a browser)")
    print(f"  anomalies:     {night.out_dir / 'anomalies.csv' if report and report.exists() else '-'}")
    print(f"  chunk results: {night.out_dir / 'chunks.parquet' if night.out_dir else '-'}")
    print(f"  MLflow:        {tracking.tracking_uri}  (`make ui`, then "
          f"http://127.0.0.1:5000/#/experiments?workflowType=machine_learning : licanom/demo for training, "
          f"licanom/demo/nightly for the nights)")
    print(f"  Prefect:       {os.environ['PREFECT_HOME']}  (`make ui`, then http://127.0.0.1:4200)")
    print(f"took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    import contextlib

    from flows.run import Interrupted

    with Interrupted.installed() as interrupt:
        try:
            main()
        except (KeyboardInterrupt, SystemExit):
            if not interrupt.seen:
                raise
            with contextlib.suppress(OSError):  # a terminal that hung up takes no more lines
                print("licanom demo: interrupted; run `make demo` again to start over", file=sys.stderr)
            sys.exit(interrupt.exit_code)
