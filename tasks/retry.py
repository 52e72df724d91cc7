"""When a task's retries are worth it: not after an error that the next try would meet again."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

from prefect.states import State

# Damaged data (a truncated pickle or JSON, bytes that are not text): read again, it is the same.
DAMAGED: tuple[type[BaseException], ...] = (pickle.UnpicklingError, EOFError, json.JSONDecodeError, UnicodeDecodeError)


def unless(*permanent: type[BaseException]) -> Callable[[Any, Any, State], bool]:
    """A ``retry_condition_fn`` that retries after any error but ``permanent`` ones (a missing
    file, a vendor without a model) and damaged data (:data:`DAMAGED`, also as the cause of
    another error): those fail the task at once instead of after the delays."""

    def worth_retrying(task: Any, task_run: Any, state: State) -> bool:
        err = state.result(raise_on_failure=False)
        if isinstance(err, permanent):
            return False
        for _ in range(20):  # the chain of causes, bounded
            if not isinstance(err, BaseException):
                break
            if isinstance(err, DAMAGED):
                return False
            err = err.__cause__ or err.__context__
        return True

    return worth_retrying
