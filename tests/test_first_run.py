"""The first run on a fresh machine: licanom's own settings wherever it starts, and the demo on a
cold Prefect home whose in-process API is slow to start."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("PREFECT_", "MLFLOW_", "DO_NOT_TRACK", "LICANOM_", "PYTEST_")


def _bare_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect's, MLflow's, licanom's or pytest's variables (a new shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_settings_apply_only_where_unset():
    from licanom import settings

    env = {"PREFECT_HOME": "/somewhere/else"}
    added = settings.apply(env)
    assert env["PREFECT_HOME"] == "/somewhere/else" and "PREFECT_HOME" not in added
    assert int(env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 120  # Prefect's own: 20
    assert env["DO_NOT_TRACK"] == "true" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


def test_a_fresh_process_anywhere_gets_licanoms_settings(tmp_path):
    """Started from another folder with none of the variables set: Prefect's home is the
    project's .prefect (not ~/.prefect, not the current folder), its start-up limit fits a cold
    start, telemetry is off for both, the output folder is the project's, and the library's
    warnings (a folder's file that is not read) reach a flow run's logs in the Prefect UI."""
    code = (
        "import json, logging, flows, licanom\n"
        "from prefect.settings import get_current_settings\n"
        "from prefect.logging.configuration import setup_logging\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "from licanom.config import load_config\n"
        "s = get_current_settings()\n"
        "setup_logging()\n"
        "print(json.dumps({'home': str(s.home), 'timeout': s.server.ephemeral.startup_timeout_seconds,\n"
        "  'analytics': s.server.analytics_enabled, 'mlflow_off': is_telemetry_disabled(),\n"
        "  'out': load_config('demo').output_dir,\n"
        "  'handlers': [type(h).__name__ for h in logging.getLogger('licanom').handlers],\n"
        "  'outside_a_run': s.logging.to_api.when_missing_flow}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_bare_env(), capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["home"] == str(ROOT / ".prefect")
    assert got["timeout"] >= 120 and got["analytics"] is False and got["mlflow_off"] is True
    assert got["out"] == str(ROOT / "out")
    assert "APILogHandler" in got["handlers"]  # Prefect's handler that sends a run's logs to its API
    assert got["outside_a_run"] == "ignore"  # the warning outside a flow run: no "no flow run id" noise
    assert not list(tmp_path.iterdir())  # nothing written in the current folder


# The ephemeral API answers its health check only after SLOW_POLLS polls, which Prefect counts as
# 0.1 s each: a start-up of 25 s by Prefect's clock, over its default limit of 20 s. The polls
# before that do not sleep, so the test does not wait those seconds.
SLOW_START = """
import sys, time as _time
import licanom  # licanom's settings first, as every entry point does
import httpx
import prefect.server.api.server as server

SLOW_POLLS = 250
polls = {"n": 0}
_get = httpx.Client.get

def get(self, url, *args, **kwargs):
    if str(url).endswith("/health") and polls["n"] < SLOW_POLLS:
        polls["n"] += 1
        raise httpx.ConnectError("still creating its database")
    return _get(self, url, *args, **kwargs)

class Clock:
    def __getattr__(self, name):
        return getattr(_time, name)

    def sleep(self, seconds):
        if polls["n"] >= SLOW_POLLS:
            _time.sleep(seconds)

httpx.Client.get = get
server.time = Clock()
"""
DEMO = SLOW_START + """
from flows.demo import main
main()
print("health polls refused:", polls["n"])
"""
# the same start-up for the smallest flow (none of the demo's imports: the start is the point)
A_FLOW = SLOW_START + """
from prefect import flow

@flow
def nothing() -> None:
    pass

nothing()
"""


def _demo_conf(tmp_path: Path, days: int = 4, seed: int = 7) -> tuple[Path, Path]:
    """conf/ with the demo vendor (``days`` simulated days: the demo scores the last 3 and trains
    on those before) writing into tmp_path/out, and an mlflow.yaml naming a store in tmp_path
    (created by the first run that tracks)."""
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True, exist_ok=True)
    (conf / "defaults.yaml").write_text((ROOT / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "demo.yaml").write_text(
        f"output_dir: {tmp_path / 'out'}\n"
        f"source: {{kind: simulate, profile: floating, seed: {seed}, days: {days}}}\n"
        "train:\n  models: auto\n  epochs: 1\n")
    (tmp_path / "mlflow.yaml").write_text(
        f"tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\nartifact_location: {tmp_path / 'artifacts'}\n")
    return conf, tmp_path / "mlflow.yaml"


def _demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    conf, mlflow_yaml = _demo_conf(tmp_path)
    return _bare_env(PREFECT_HOME=str(tmp_path / "cold-prefect-home"), LICANOM_CONF_DIR=str(conf),
                     LICANOM_MLFLOW_CONFIG=str(mlflow_yaml), OMP_NUM_THREADS="1", **extra)


def test_with_prefects_own_limit_a_slow_start_fails(tmp_path):
    """What the first `make demo` met: the same slow start under Prefect's default limit of 20 s."""
    env = _demo_env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="20")
    done = subprocess.run([sys.executable, "-c", A_FLOW], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode != 0
    assert "Timed out while attempting to connect to ephemeral Prefect API server" in done.stderr


@pytest.mark.slow
def test_the_demo_on_a_cold_prefect_home_with_a_slow_start(tmp_path):
    """The demo flow, first run: no Prefect home yet, an API slow to start; it trains the default
    detector beside one thesis autoencoder, the default is champion, one night is scored."""
    env = _demo_env(tmp_path)
    assert not (tmp_path / "cold-prefect-home").exists()
    done = subprocess.run([sys.executable, "-c", DEMO], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "health polls refused: 250" in out
    assert "champion: licanom-demo version 1 (Tail_context)" in out
    assert "TCN_AE" in out and "nightly scoring:" in out
    assert (tmp_path / "cold-prefect-home").is_dir()  # created by this first run
    assert "Traceback" not in done.stderr
    # epoch lines through the flow's logger (Prefect's console handler writes to stderr)
    assert "TCN_AE epoch 1/1: train/loss" in done.stderr + out


def test_an_expected_failure_is_one_line_on_the_console_and_a_bug_keeps_its_traceback():
    import logging

    from flows.console import _OneLineForExpected, expected_errors

    fmt = _OneLineForExpected(logging.Formatter("%(levelname)s %(message)s"), expected_errors())

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1,
                                     "Encountered exception during execution: %r", (exc,), sys.exc_info())

    expected = record(LookupError("vendor 'acme' has no champion model yet"))
    assert fmt.format(expected).count("\n") == 0 and "no champion model yet" in fmt.format(expected)
    assert expected.exc_info is not None  # other handlers (the Prefect API's) still get the traceback
    from licanom.ops.scoring_state import StateMissingError, VendorBusyError

    for exc in (StateMissingError("out/acme/state/state.json is missing, but vendor 'acme' has a trained model"),
                VendorBusyError("another run holds out/acme/state/lock")):
        assert fmt.format(record(exc)).count("\n") == 0
    bug = record(ZeroDivisionError("division by zero"))
    assert "Traceback (most recent call last)" in fmt.format(bug)


# Ctrl-C in a terminal: SIGINT to the whole foreground process group; a scheduler stopping the job:
# SIGTERM to the process. Sent at the first training step of the autoencoder that the demo vendor
# trains beside the default detector.
#
# One process imports what `licanom run train` imports (seconds of torch, Lightning, Prefect and
# MLflow), then forks one command per signal, one after the other: each child starts in a session
# of its own (as a terminal starts a command: the SIGINT to its process group reaches it and
# nothing else), writes its output to its own files, runs `licanom run train` to its end and
# exits through the interpreter's exit (atexit, where Prefect stops its temporary server), as
# the command does. Each has its own vendor folder and MLflow store; the Prefect home is the
# parent's (Prefect reads it when imported), its database made ahead as `make venv` makes the
# project's (tests/prefect_store.py; the demo test above is the one on a cold home).
INTERRUPTED_TRAININGS = """
import importlib, os, signal, sys
from pathlib import Path
import licanom  # licanom's settings first, as every entry point does
from licanom.detectors.autoencoders.module import AutoencoderModule
import flows.run
import flows.early_api, flows.console, flows.naming, flows.nightly, flows.score_vendor, flows.train_vendor, tasks.api
import prefect.server.api.server  # what flows.early_api imports to start the temporary server (2 s)
for name in flows.run.FIRST_CALL_IMPORTS["train"]:
    importlib.import_module(name)

sent = {}
step = AutoencoderModule.training_step

def interrupt(self, *args, **kwargs):
    if sent["signal"] == "SIGINT":
        os.killpg(os.getpgrp(), signal.SIGINT)
    else:
        os.kill(os.getpid(), signal.SIGTERM)
    return step(self, *args, **kwargs)

AutoencoderModule.training_step = interrupt
for signal_name, folder in zip(sys.argv[1::2], map(Path, sys.argv[2::2])):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the command
        os.setsid()
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        os.environ["LICANOM_CONF_DIR"] = str(folder / "conf")
        os.environ["LICANOM_MLFLOW_CONFIG"] = str(folder / "mlflow.yaml")
        sent["signal"] = signal_name
        sys.exit(flows.run.main(["train", "--vendor", "demo"]))
    _, status = os.waitpid(pid, 0)
    (folder / "exit").write_text(str(os.waitstatus_to_exitcode(status)))
"""
SIGNALS = ("SIGINT", "SIGTERM")


@pytest.fixture(scope="module")
def interrupted_trainings(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """Each signal's command: its exit code and its stderr."""
    from tests.mlflow_store import empty_store
    from tests.prefect_store import migrated_db

    root = tmp_path_factory.mktemp("interrupted")
    args: list[str] = []
    for seed, signal_name in enumerate(SIGNALS, start=7):
        folder = root / signal_name
        # enough for a training step (the signal comes at the first); a log of its own, so that
        # the second command computes its chunks rather than finding the first's in Prefect's cache
        _demo_conf(folder, days=2, seed=seed)
        empty_store(folder / "mlflow.db")  # not the point here: a copy of an empty store
        args += [signal_name, str(folder)]
    migrated_db(tmp_path_factory, root / "prefect-home" / "prefect.db")
    env = _bare_env(PREFECT_HOME=str(root / "prefect-home"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_TRAININGS, *args], env=env, capture_output=True,
                          text=True, timeout=900, cwd=root, start_new_session=True)
    results = {}
    for signal_name in SIGNALS:
        folder = root / signal_name
        code = (folder / "exit").read_text() if (folder / "exit").exists() else "no exit code"
        stderr = (folder / "stderr").read_text() if (folder / "stderr").exists() else ""
        results[signal_name] = (int(code) if code.lstrip("-").isdigit() else code,
                                stderr or f"(no stderr; the parent's: {done.stderr[-3000:]})")
    return results


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("signal_name", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_training_run_records_its_crash_and_ends_at_once(interrupted_trainings, signal_name, code):
    """Prefect's temporary server is out of the terminal's process group, so the interrupted run
    records its crash and ends (before, Ctrl-C killed the server with it and the run spent minutes
    retrying it, then exited 1); one line, the shell's exit code for the signal."""
    returncode, stderr = interrupted_trainings[signal_name]
    assert returncode == code, stderr[-3000:]
    assert f"licanom: train flow interrupted ({signal_name}); its run is marked crashed\n" in stderr
    assert "Finished in state Crashed" in stderr  # Prefect's API took the crash
    for dead_api in ("Error logging to API", "Connection refused", "Traceback"):
        assert dead_api not in stderr, stderr[-3000:]
    # and the server, in a session of its own, was stopped at exit: its port refuses
    port = int(re.search(r"Stopping temporary server on http://127\.0\.0\.1:(\d+)", stderr).group(1))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_the_interrupt_handler_is_put_back_unless_a_signal_came_and_a_second_signal_is_ignored():
    import signal

    from flows.run import Interrupted

    before = {s: signal.getsignal(s) for s in Interrupted.SIGNALS}
    with Interrupted.installed() as interrupt:
        assert all(signal.getsignal(s) is interrupt for s in Interrupted.SIGNALS if before[s] in
                   (signal.SIG_DFL, signal.default_int_handler))
    assert {s: signal.getsignal(s) for s in Interrupted.SIGNALS} == before and not interrupt.seen
    try:
        with Interrupted.installed() as interrupt, pytest.raises(KeyboardInterrupt):
            interrupt(signal.SIGTERM, None)
        assert interrupt.seen and interrupt.exit_code == 143
        interrupt(signal.SIGINT, None)  # winding down: ignored, the first signal's code stays
        assert interrupt.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is interrupt  # left in place while the process ends
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
