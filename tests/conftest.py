"""Shared fixtures: tiny seeded logs, and a clean environment for Prefect and MLflow."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

# One torch (OpenMP) thread in every test process and the processes it starts, as licanom trains
# (train.threads: 1): `make test` runs two workers on two cores, and torch's default of a thread
# per core had each worker's threads spin while waiting for a core the other worker held (the
# network tests took several times the CPU: benchmarks/results/test-suite.md). Set before numpy
# and torch are imported; a test that needs torch's default removes it from its child's
# environment (tests/test_layers.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import polars as pl
import pytest
from hypothesis import settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Property tests (docs/testing.md): "suite", the default, draws the same few examples on every
# run (derandomized: a run that passed passes again on the same code); "deep" draws ten times
# more, new ones each run: HYPOTHESIS_PROFILE=deep, or pytest --hypothesis-profile=deep.
settings.register_profile("suite", max_examples=30, derandomize=True, database=None, deadline=None)
settings.register_profile("deep", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def examples(n: int) -> int:
    """A property test's number of examples: ``n`` for a profile of 100 (Hypothesis's default),
    scaled to the loaded profile's."""
    return max(5, n * settings.default.max_examples // 100)

STATES = (1010, 1010, 1010, 1011, 1021, 2010, 2023, 6010, 8010)
IPS = ("8.8.8.8", "1.1.1.1", "81.2.69.160", "2001:4860::1", "192.168.1.10", "")


def make_raw_log(n: int = 1000, seed: int = 0, start: datetime | None = None) -> pl.DataFrame:
    """A small, well-formed raw Web API Log of n rows (typed as after extraction)."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2025, 3, 1, tzinfo=UTC)
    gaps = rng.exponential(30.0, n).cumsum()
    return pl.DataFrame(
        {
            "Id": np.arange(1000, 1000 + n, dtype=np.int64),
            "ProductId": rng.choice([3, 7], n).astype(np.int64),
            "Key": [f"KEY{k:03d}-ABCDE" for k in rng.integers(0, 40, n)],
            "IP": [IPS[i] for i in rng.integers(0, len(IPS), n)],
            "Time": [start + timedelta(seconds=float(s)) for s in gaps],
            "State": rng.choice(STATES, n).astype(np.int64),
            "MachineCode": [f"mc{m:02d}" if m else "" for m in rng.integers(0, 60, n)],
        },
        schema_overrides={"Time": pl.Datetime("us", "UTC")},
    )


@pytest.fixture
def raw_log() -> pl.DataFrame:
    return make_raw_log()


@pytest.fixture(autouse=True)
def _prefect_console_outlives_the_test():
    """Prefect (re)binds its console log handlers to the sys.stderr of the moment it sets logging
    up (on import, when a server starts): inside a test that captures with capfd, that test's
    stream, closed after it. Every later flow in the same process then failed to log ("I/O
    operation on closed file", then a recursion in Prefect's error printing). After each test,
    a handler left on a closed stream is pointed at the current sys.stderr."""
    yield
    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for handler in (h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)):
        if getattr(handler.stream, "closed", False):
            handler.stream = sys.stderr  # not setStream: it flushes the closed one first
            handler.console.file = sys.stderr


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One ephemeral Prefect API for the whole session (starting one costs seconds), on a copy of
    the run's migrated Prefect database (tests/prefect_store.py) instead of one it migrates.

    It leaves out what no test here reads, about a tenth of a flow test's CPU: the flows' log
    lines sent to the API, the events stored, automations; the flow runs' heartbeats, whose
    thread sleeps in steps of a second that every flow run waited out at its end (up to a second
    of nothing per flow run, about 0.9 s for a short one); and the task runs' records, which the
    server writes from the task runs' events (the flows' files read flow runs and artifacts, no
    task run), a busy server being slower to answer the flows. test_servers.py and the demo test
    (test_first_run.py) run Prefect with its defaults."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_ENABLED,
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED,
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED,
        PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED,
        temporary_settings,
    )
    from prefect.testing import utilities
    from prefect.testing.utilities import prefect_test_harness

    from tests.prefect_store import migrated_db

    unread = {PREFECT_LOGGING_TO_API_ENABLED: False, PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED: False,
              PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED: False, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
              PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: False}
    # the harness keeps its database as prefect-test.db in a folder of mkdtemp's: this folder, the
    # database there already (were that name to change, the harness would migrate a new one itself)
    folder = tmp_path_factory.mktemp("prefect-harness")
    migrated_db(tmp_path_factory, folder / "prefect-test.db")
    with ExitStack() as stack:
        stack.enter_context(temporary_settings(updates=unread))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(utilities, "mkdtemp", lambda: str(folder))
            stack.enter_context(prefect_test_harness(server_startup_timeout=120))
        yield


def flow_stores(root: Path, vendors: dict[str, str]) -> pytest.MonkeyPatch:
    """conf/ with the project's defaults and the given vendor files, a temporary MLflow store
    (``root/mlflow.db``, ``root/artifacts``), the environment pointing at both; undo it after."""
    conf = root / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    for name, text in vendors.items():
        (conf / "vendors" / f"{name}.yaml").write_text(text)
    from tests.mlflow_store import empty_store

    empty_store(root / "mlflow.db")
    mlflow_yaml = root / "mlflow.yaml"
    mlflow_yaml.write_text(f"tracking_uri: sqlite:///{root / 'mlflow.db'}\nartifact_location: {root / 'artifacts'}\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("LICANOM_CONF_DIR", str(conf))
    mp.setenv("LICANOM_MLFLOW_CONFIG", str(mlflow_yaml))
    # mlflow.set_tracking_uri / set_registry_uri export these; a store of an earlier module's
    # would otherwise win over this one (the registry did: its versions went to the first store).
    # Set, then deleted: undo() then removes what this module's flows export too (a registry URI
    # left behind pointed a later module's MlflowClient at this module's store)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        mp.setenv(name, "")
        mp.delenv(name)
    return mp


# --- how `make test` hands the files to its two workers (pytest-xdist, --dist loadfile) ----------

# The files whose tests use the session's Prefect API (prefect_harness): one unit of work, so
# that one worker starts that API (about 15 s of CPU) instead of each worker that meets one of
# them. tests/test_schedule.py checks that the list names every such file.
PREFECT_FILES = ("tests/test_flows.py", "tests/test_flow_faults.py", "tests/test_isolation.py")
# Handed out first, the longest first, so that no worker is left with a long file at the end
# while the other idles: every file of 8 s or more in a run of the suite, in the order of their
# times there (benchmarks/results/test-suite.md); the other files, all short, follow in their
# usual order.
LONGEST_FIRST = (*PREFECT_FILES, "tests/test_first_run.py", "tests/test_servers.py", "tests/test_nights.py",
                 "tests/test_fault_injection.py", "tests/test_evaluate.py", "tests/test_cli.py",
                 "tests/test_training_parallel.py", "tests/test_sequence_models.py", "tests/test_layers.py",
                 "tests/test_bad_input_scale.py", "tests/test_report.py", "tests/test_validate.py",
                 "tests/test_faults.py", "tests/test_nightly_modes.py", "tests/test_simulate.py",
                 "tests/test_secondsim.py", "tests/test_report_templates.py", "tests/test_rows_state.py")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of LONGEST_FIRST first, in that order (a stable sort: each file's tests stay
    together and in their order, so a module fixture is still made once)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_file_of(item.nodeid), len(rank)))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """--dist loadfile with the PREFECT_FILES as one unit, handed out in the collection's order
    (the order above) instead of xdist's (the files with the most tests first)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesSharingPrefect(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            name = _file_of(nodeid)
            return "prefect_harness" if name in PREFECT_FILES else name

    config.option.loadscopereorder = False
    return FilesSharingPrefect(config, log)
