"""Process settings that licanom needs wherever it starts (the CLI, a flow, a worker, a test).

Applied once, when ``licanom`` is first imported (``licanom/__init__.py``), and by ``flows`` and
``tasks`` before they import Prefect: Prefect reads its settings when it is imported, and
MLflow when it first tracks. Each is a default: a variable already set in the environment wins.

- ``PREFECT_HOME``: ``<project>/.prefect`` in a checkout (where ``make ui`` finds it), else
  ``$XDG_DATA_HOME/licanom/prefect`` (``~/.local/share/licanom/prefect``); never ``~/.prefect``
  of another project, never the current folder.
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``: Prefect gives its in-process API 20 s to
  start; the first start creates and migrates its database, which takes longer than that on a
  busy or slow machine, so the first run failed. :data:`STARTUP_TIMEOUT_SECONDS`.
- Telemetry and analytics off: ``DO_NOT_TRACK`` (read by Prefect's client and by MLflow, which
  accepts only ``true``), ``PREFECT_SERVER_ANALYTICS_ENABLED``, ``MLFLOW_DISABLE_TELEMETRY``.
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``: no tqdm bars for reading local artifacts.
- ``PREFECT_LOGGING_EXTRA_LOGGERS``: ``licanom``, so that the library's warnings (a folder's files
  that are not read, an API retried) reach a flow run's logs in the Prefect UI as well as the console.
- ``PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW``: ``ignore``, so that the same warning logged outside a
  flow run (``licanom detect``, a test) stays on the console without Prefect warning that it has no
  run to send it to.

Nothing here imports Prefect or MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 300  # the ephemeral Prefect API's start-up limit (Prefect's default: 20)


def is_checkout(root: Path = PROJECT_ROOT) -> bool:
    """True when licanom runs from its project folder (pyproject.toml beside the package), not an
    install. Not conf/defaults.yaml: a checkout that lost it moved its Prefect home as if installed,
    where the configuration refuses it (:func:`licanom.config.defaults_file`)."""
    return (root / "pyproject.toml").is_file()


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where licanom keeps its own state outside a checkout: ``$XDG_DATA_HOME/licanom``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "licanom"


def prefect_home(environ: Mapping[str, str] | None = None) -> Path:
    """``<project>/.prefect`` in a writable checkout, else ``<data home>/prefect``."""
    if is_checkout() and os.access(PROJECT_ROOT, os.W_OK):
        return PROJECT_ROOT / ".prefect"
    return data_home(environ) / "prefect"


def defaults(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment defaults licanom sets (a variable already set is kept)."""
    return {
        "PREFECT_HOME": str(prefect_home(environ)),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_SECONDS),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_ENABLE_HTTP2": "false",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "licanom",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    }


def apply(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set :func:`defaults` in ``environ`` (``os.environ``) where unset; returns what was set."""
    env = os.environ if environ is None else environ
    added = {}
    for name, value in defaults(env).items():
        if not env.get(name):
            env[name] = value
            added[name] = value
    return added
