"""A Prefect database for a test, copied from one migrated once per test run.

Prefect creates a new SQLite database by running every migration, 5-8 s of CPU in the server's
start-up (benchmarks/results/fixed-costs.md); `make venv` migrates the project's .prefect/prefect.db
once for that reason, so a command finds its database made. A test whose Prefect home is not its
point (the session's API, the interrupted trainings, the real servers) gets a copy of a database
that `prefect server database upgrade` made once for the whole run, shared by the workers of
`make test`; the demo test keeps its cold home, where the migrations are the test.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = "prefect-template.db"


def _run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's temporary folder: under pytest-xdist each worker has its own below it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _run_folder(tmp_path_factory)
    path = folder / TEMPLATE
    with open(folder / f"{TEMPLATE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker makes it, the other waits for it
        if not path.exists():
            making = folder / f"{TEMPLATE}.making"
            _remove(making)  # a start that did not finish
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            env.update(PREFECT_HOME=str(folder / "prefect-template-home"),
                       PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{making}")
            done = subprocess.run([str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"],
                                  env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"prefect server database upgrade: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            _copy(making, path)  # one file, whatever Prefect left in its write-ahead log
            _remove(making)
    return path


def _remove(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


def _copy(source: Path, path: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(path)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def migrated_db(tmp_path_factory: pytest.TempPathFactory, path: Path) -> Path:
    """``path`` (a Prefect home's ``prefect.db``) as a database with Prefect's schema and nothing in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _copy(_template(tmp_path_factory), path)
    return path
