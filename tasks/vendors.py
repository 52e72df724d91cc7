"""Tasks about the set of vendors (library: licanom.config)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from licanom import config


@task(cache_policy=NO_CACHE)
def list_vendors() -> list[str]:
    return config.list_vendors()


@task(cache_policy=NO_CACHE)
def report_nightly(outcomes: list[tuple[str, str, str]]) -> list[str]:
    return config.report_outcomes(outcomes)
