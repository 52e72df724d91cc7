"""When a task's retries are worth it: not after an error that the next try would meet again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.states import State


def unless(*permanent: type[BaseException]) -> Callable[[Any, Any, State], bool]:
    """A ``retry_condition_fn`` that retries after any error but ``permanent`` ones (a missing
    file, a vendor without a model): those fail the task at once instead of after the delays."""

    def worth_retrying(task: Any, task_run: Any, state: State) -> bool:
        return not isinstance(state.result(raise_on_failure=False), permanent)

    return worth_retrying
