"""How a flow ends on a configuration error that a check returned: its one line as the flow's end."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.states import Failed, State

from licanom.config import VendorConfigError


def refused(err: VendorConfigError) -> State:
    """A configuration error a check task returned (tasks.vendors.refusing: check_defaults,
    list_vendors, vendor_config) as the flow run's end, before anything else is run: one ERROR line
    in the run's log, no traceback, and the error as the state's data (exit code 2:
    licanom.cli.failure_exit). Any other error of those tasks is raised, traceback and all."""
    get_run_logger().error("%s", err)
    return Failed(message=str(err), data=err)
