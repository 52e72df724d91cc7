"""`licanom serve` / `make serve`: one nightly scoring and one training deployment per vendor.

Deployments come from conf/vendors/*.yaml and *.yml (each vendor's `schedule` section, defaults in
conf/defaults.yaml) and are served by this process with Prefect's `serve`: the Prefect UI
lists them, runs them on their schedules and can start any of them by hand. Point
PREFECT_API_URL at a Prefect server (`make ui` starts one) so that the UI sees them.

A vendor's deployments have their vendor frozen (read-only in the UI's run form, enforced by the
API); the other parameters are described in the form from the flows' docstrings. A vendor whose
configuration or schedule cannot be read is not served, with one line saying why; the others are.
No vendor in conf/vendors/ (empty or missing) is refused, in one line naming the folder, with exit
code 2: nothing would be served but a nightly deployment that scores nothing; so is a set of
vendors none of which can be served (each one's line, then one naming them all), where the
nightly deployment would fail every vendor.
"""

from __future__ import annotations

import sys

from prefect import serve
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.annotations import freeze

from flows.naming import PROJECT_TAG, vendor_tags
from flows.nightly import nightly
from flows.score_vendor import score_vendor
from flows.train_vendor import train_vendor
from licanom.config import (VendorConfigError, describe_error, ignored_vendor_files, require_vendors, vendor_config,
                            vendor_file)


def deployments(vendors: list[str] | None = None) -> list:  # type: ignore[type-arg]
    """Runner deployments: score-<vendor> (nightly cron), train-<vendor> (weekly cron), nightly (all).
    A vendor whose configuration or schedules fail is left out, named on stderr, as are the files of
    conf/vendors/ whose names are no vendor's; no vendor there at all is a
    :class:`licanom.config.VendorConfigError` naming the folder (licanom.config.require_vendors), and
    so is no vendor that can be served, naming them."""
    out = []
    names = vendors or require_vendors()
    if not vendors and (ignored := ignored_vendor_files()):
        print(f"licanom serve: {ignored}", file=sys.stderr)
    for vendor in names:
        try:
            schedule = vendor_config(vendor).schedule  # a files source without its path: not served either
            crons = []
            for setting in ("score_cron", "train_cron"):  # the scheduler's parser checks the values
                cron = getattr(schedule, setting)
                try:
                    crons.append(CronSchedule(cron=cron, timezone=schedule.timezone))
                except ValueError as err:
                    raise ValueError(f"schedule.{setting}: {describe_error(err)} ({vendor_file(vendor)} "
                                     "or conf/defaults.yaml)") from None
        except ValueError as err:  # the configuration's (pydantic's, YAML's) or the scheduler's parser's
            print(f"licanom serve: vendor {vendor} not served: {describe_error(err)}", file=sys.stderr)
            continue
        out.append(score_vendor.to_deployment(
            name=f"score-{vendor}", parameters={"vendor": freeze(vendor)}, tags=vendor_tags(vendor),
            schedules=[crons[0]],
            concurrency_limit=1, description=f"Nightly scoring of {vendor}'s new rows with its champion model.",
        ))
        out.append(train_vendor.to_deployment(
            name=f"train-{vendor}", parameters={"vendor": freeze(vendor)}, tags=vendor_tags(vendor),
            schedules=[crons[1]],
            concurrency_limit=1, description=f"Weekly training of {vendor}'s variants; moves its champion.",
        ))
    if not out:  # the nightly deployment alone would fail every vendor, night after night
        raise VendorConfigError(f"configuration error: no vendor can be served: {', '.join(names)} (each one's line "
                                "above says why)")
    out.append(nightly.to_deployment(name="all-vendors", tags=[PROJECT_TAG], description="Score every vendor."))
    return out


def main(argv: list[str] | None = None) -> None:
    from licanom.cli import EXIT_USAGE, Parser, vendor_name

    parser = Parser(prog="licanom serve", description="Serve licanom's per-vendor deployments.")
    parser.add_argument("--vendor", type=vendor_name, action="append",
                        help="only this vendor, repeatable (default: every vendor in conf/vendors)")
    args = parser.parse_args(argv)
    try:
        served = deployments(args.vendor)
    except VendorConfigError as err:  # no vendor, or none that can be served: one line, not a server of nothing
        parser.exit(EXIT_USAGE, f"licanom serve: {err}; nothing served\n")
    serve(*served)


if __name__ == "__main__":
    main()
