"""The terminal's view of a flow run: an expected failure is one line, not a traceback.

Prefect logs a failed run's exception with its traceback; the Prefect API (and so the UI) keeps
it whole. On the console, a failure that names its cause (no champion yet, a missing log file,
rows that fail validation, a missing secret, an unreachable tracking server, a scoring state that
is missing or unreadable, a vendor busy with another run) keeps its one-line
message and drops the traceback; any other exception (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging


def expected_errors() -> tuple[type[BaseException], ...]:
    """licanom's errors that say what is wrong and what to do: no traceback needed."""
    from pydantic import ValidationError as ConfigError

    from licanom.ops.bundle import VendorMismatchError
    from licanom.ops.scoring_state import StateError, VendorBusyError
    from licanom.data.chunk import NotEnoughDataError
    from licanom.data.extract.files import ExtractFileError
    from licanom.data.privacy import MissingSecretError
    from licanom.ops.tracking import TrackingUnavailableError
    from licanom.data.validate import ValidationError

    return (LookupError, ExtractFileError, ValidationError, NotEnoughDataError, VendorMismatchError,
            MissingSecretError, TrackingUnavailableError, ConfigError, StateError, VendorBusyError)


class _OneLineForExpected(logging.Formatter):
    def __init__(self, inner: logging.Formatter, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.inner, self.expected = inner, expected

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not isinstance(exc, self.expected):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def quiet_expected_tracebacks() -> None:
    """Wrap the formatter of Prefect's console handlers."""
    import prefect.main  # noqa: F401 - Prefect configures its logging when this is first imported
    from prefect.logging.handlers import PrefectConsoleHandler

    expected = expected_errors()
    loggers = [logging.root, *(logging.getLogger(n) for n in logging.root.manager.loggerDict if n.startswith("prefect"))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _OneLineForExpected):
                handler.setFormatter(_OneLineForExpected(handler.formatter or logging.Formatter(), expected))
