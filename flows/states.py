"""How a flow ends on a task run that refused its input: the task's one line as the flow's end."""

from __future__ import annotations

from prefect.states import Failed, State


def refused(check: State) -> State:
    """A check's failed task run as the flow run's end: its one line and its error (that of a
    configuration error, exit code 2: licanom.cli.failure_exit), before anything else is run.
    The task returned its failed state rather than raising (tasks.vendors.check_defaults,
    list_vendors, vendor_config), so no traceback is logged for it, in the task run or the flow's."""
    err = check.result(raise_on_failure=False)
    return Failed(message=str(err), data=err)
