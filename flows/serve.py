"""`licanom serve` / `make serve`: one nightly scoring and one training deployment per vendor.

Deployments come from conf/vendors/*.yaml (each vendor's `schedule` section, defaults in
conf/defaults.yaml) and are served by this process with Prefect's `serve`: the Prefect UI
lists them, runs them on their schedules and can start any of them by hand. Point
PREFECT_API_URL at a Prefect server (`make ui` starts one) so that the UI sees them.
"""

from __future__ import annotations

import argparse

from prefect import serve
from prefect.client.schemas.schedules import CronSchedule

from flows.nightly import nightly
from flows.score_vendor import score_vendor
from flows.train_vendor import train_vendor
from licanom.config import list_vendors, load_config


def deployments(vendors: list[str] | None = None) -> list:  # type: ignore[type-arg]
    """Runner deployments: score-<vendor> (nightly cron), train-<vendor> (weekly cron), nightly (all)."""
    out = []
    for vendor in vendors or list_vendors():
        schedule = load_config(vendor).schedule
        out.append(score_vendor.to_deployment(
            name=f"score-{vendor}", parameters={"vendor": vendor}, tags=["licanom", vendor],
            schedules=[CronSchedule(cron=schedule.score_cron, timezone=schedule.timezone)],
            concurrency_limit=1,
        ))
        out.append(train_vendor.to_deployment(
            name=f"train-{vendor}", parameters={"vendor": vendor}, tags=["licanom", vendor],
            schedules=[CronSchedule(cron=schedule.train_cron, timezone=schedule.timezone)],
            concurrency_limit=1,
        ))
    out.append(nightly.to_deployment(name="all-vendors", tags=["licanom"], description="score every vendor"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve licanom's per-vendor deployments")
    parser.add_argument("--vendor", action="append", help="only these vendors (default: all in conf/vendors)")
    args = parser.parse_args(argv)
    serve(*deployments(args.vendor))


if __name__ == "__main__":
    main()
