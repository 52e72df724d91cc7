"""Flow: score every configured vendor, each in its own flow run; failures are reported."""

from __future__ import annotations

from prefect import flow

from flows.score_vendor import score_vendor
from tasks import vendors


@flow(name="nightly", log_prints=True)
def nightly() -> list[str]:
    names = vendors.list_vendors()
    states = [score_vendor(vendor, return_state=True) for vendor in names]
    outcomes = [(name, s.type.value, s.message or "") for name, s in zip(names, states, strict=True)]
    return vendors.report_nightly(outcomes)
