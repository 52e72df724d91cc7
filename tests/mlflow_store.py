"""An empty MLflow store on SQLite for a test, copied from one made once per process.

MLflow creates a new SQLite store by running its schema migrations, about two seconds of CPU
each time; a test that needs a store of its own gets a copy of an empty one made by the same
MLflow instead (an empty store names no path, so a copy is the same as a new one).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

_TEMPLATE: Path | None = None


def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None or not _TEMPLATE.exists():
        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="licanom-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # one per test process, gone with it
        path = folder / "mlflow.db"
        client = MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}")
        client.search_experiments()  # the tracking schema
        client.search_registered_models()  # the registry's (the same database)
        _TEMPLATE = path
    return _TEMPLATE


def empty_store(path: Path) -> Path:
    """``path`` (an ``mlflow.db`` file) as a new, empty MLflow store, unless it exists already."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), path)
    return path
