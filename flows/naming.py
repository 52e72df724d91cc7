"""Flow run names and tags: a vendor's runs are found by its name, its date and its tag."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from prefect import tags

PROJECT_TAG = "licanom"


def run_name(kind: str) -> Callable[[], str]:
    """A ``flow_run_name`` for a per-vendor flow: ``<kind>-<vendor>-<YYYY-MM-DD HH:MM>`` (UTC),
    the date being the run's scheduled start (the night it scores), e.g. ``score-demo-2025-03-04 02:00``."""

    def name() -> str:
        from prefect.runtime import flow_run

        vendor = flow_run.parameters.get("vendor", "all")
        start = flow_run.scheduled_start_time
        when = start.astimezone(UTC) if start is not None else datetime.now(UTC)
        return f"{kind}-{vendor}-{when:%Y-%m-%d %H:%M}"

    return name


def vendor_tags(vendor: str) -> list[str]:
    """The tags of a vendor's flow runs and deployments."""
    return [PROJECT_TAG, vendor]


@contextmanager
def tagged(vendor: str) -> Iterator[None]:
    """Flow runs started inside carry the vendor's tags (a deployment's runs carry its own)."""
    with tags(*vendor_tags(vendor)):
        yield
