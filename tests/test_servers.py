"""`make ui` + `make serve` for real: a Prefect server, an MLflow server and the served deployments.

One module fixture starts `prefect server start` and `mlflow server` on loopback ports chosen at
run time (each with its own stores in a temporary folder), serves one simulated vendor's
deployments with `python -m flows.serve --vendor <vendor>` against that Prefect server, and runs
its training deployment through the server with ``run_deployment``. The tests then read the
results back through both servers' REST APIs with plain HTTP. Every process is started in its
own process group and stopped (SIGTERM, then SIGKILL) when the module ends, failed or not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VENDOR = "srv"
FLOW, DEPLOYMENT = "train-vendor", f"train-{VENDOR}"

SERVER_START_S = 120     # each server, measured ~25 s on a busy 2-core machine
DEPLOYMENTS_S = 90       # `flows.serve` registering its deployments
FLOW_RUN_S = 180         # the training flow run, from trigger to a final state
STOP_S = 15              # SIGTERM -> SIGKILL


# --- processes ------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 60) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError as err:
            return f"({self.name}: no log: {err})"
        return f"--- {self.name} (last {n} lines of {self.log}) ---\n" + "\n".join(lines[-n:])


@dataclass
class Procs:
    items: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> Proc:
        with log.open("wb") as out:
            popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, popen, log)
        self.items.append(proc)
        return proc

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.items)

    def stop(self) -> None:
        """SIGTERM every process group, wait, then SIGKILL what is left (children included)."""
        for p in reversed(self.items):
            _signal_group(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for p in reversed(self.items):
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.items:  # leaders that ignored SIGTERM, and any children left in the group
            _signal_group(p.popen.pid, signal.SIGKILL)
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _executable(name: str) -> str:
    path = BIN / name
    assert path.exists() and os.access(path, os.X_OK), f"{name} executable missing next to {sys.executable}"
    return str(path)


# --- plain HTTP -----------------------------------------------------------------------------
def http(method: str, url: str, body: object | None = None, timeout: float = 15) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def ok(method: str, url: str, body: object | None = None) -> object:
    status, payload = http(method, url, body)
    assert status == 200, f"{method} {url} -> {status}: {payload}"
    return payload


def _answers_200(url: str) -> bool:
    try:
        return http("GET", url, timeout=5)[0] == 200
    except (urllib.error.URLError, OSError):  # not listening yet
        return False


def wait_until(what: str, check, procs: Procs, watch: list[Proc], timeout: float,
               interval: float = 0.5) -> None:
    """Poll ``check()`` until true; fail (with the logs) on timeout or if a watched process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        dead = [p for p in watch if p.popen.poll() is not None]
        if dead:
            pytest.fail(f"{what}: {', '.join(f'{p.name} exited with {p.popen.returncode}' for p in dead)}\n"
                        + procs.tails())
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n" + procs.tails())
        time.sleep(interval)


# --- the stack ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stack:
    prefect_api: str
    mlflow_url: str
    deployment_id: str
    flow_run_id: str
    seconds: dict[str, float]


def _write_conf(root: Path, mlflow_url: str) -> tuple[Path, Path]:
    conf = root / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((ROOT / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / f"{VENDOR}.yaml").write_text(f"""
output_dir: {root / 'out'}
source: {{kind: simulate, profile: floating, seed: 3, days: 2}}
train:
  models: [TCN_AE]
  epochs: 1
  batch_size: 64
detect:
  m1: false
""")
    mlflow_yaml = root / "mlflow.yaml"
    mlflow_yaml.write_text(f"tracking_uri: {mlflow_url}\nartifact_location: {(root / 'artifacts').as_uri()}\n")
    return conf, mlflow_yaml


def _base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_")) and k not in ("LICANOM_CONF_DIR", "LICANOM_MLFLOW_CONFIG")}
    env.update(PREFECT_HOME=str(root / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_ENABLE_HTTP2="false", MLFLOW_ENABLE_TELEMETRY="false", DO_NOT_TRACK="1",
               PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    from tests.prefect_store import migrated_db

    prefect_exe, mlflow_exe = _executable("prefect"), _executable("mlflow")
    root = tmp_path_factory.mktemp("servers")
    logs = root / "logs"
    logs.mkdir()
    p_port, m_port = _free_port(), _free_port()
    while m_port == p_port:
        m_port = _free_port()
    prefect_api, mlflow_url = f"http://127.0.0.1:{p_port}/api", f"http://127.0.0.1:{m_port}"
    conf, mlflow_yaml = _write_conf(root, mlflow_url)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    procs = Procs()
    # Prefect's database made ahead, as `make venv` makes the project's for `make ui`
    # (tests/prefect_store.py); MLflow's server creates its own
    migrated_db(tmp_path_factory, root / "prefect-home" / "prefect.db")
    try:
        # 1. both servers at once (each needs ~25 s here, mostly imports, and MLflow's migrations)
        prefect_env = _base_env(root) | {
            "PREFECT_SERVER_UI_ENABLED": "false",
            # no scheduled runs: only the run this test starts (serve.py attaches cron schedules)
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        }
        prefect = procs.start("prefect server", [prefect_exe, "server", "start", "--host", "127.0.0.1",
                                                  "--port", str(p_port)], prefect_env, logs / "prefect.log", root)
        mlflow_env = _base_env(root) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        mlflow = procs.start("mlflow server", [
            mlflow_exe, "server", "--host", "127.0.0.1", "--port", str(m_port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root", (root / "artifacts").as_uri(),
        ], mlflow_env, logs / "mlflow.log", root)
        wait_until("prefect server health", lambda: _answers_200(f"{prefect_api}/health"), procs, [prefect],
                   SERVER_START_S)
        seconds["prefect_healthy"] = time.monotonic() - t0

        # 2. the project's `serve` entry point, limited to the vendor, against that server
        serve_env = _base_env(root) | {
            "PREFECT_API_URL": prefect_api,
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "LICANOM_CONF_DIR": str(conf),
            "LICANOM_MLFLOW_CONFIG": str(mlflow_yaml),
        }
        serve = procs.start("flows.serve", [sys.executable, "-m", "flows.serve", "--vendor", VENDOR],
                            serve_env, logs / "serve.log", ROOT)
        deployment_url = f"{prefect_api}/deployments/name/{FLOW}/{DEPLOYMENT}"
        wait_until("mlflow server health", lambda: _answers_200(f"{mlflow_url}/health"), procs, [mlflow, serve],
                   SERVER_START_S)
        seconds["mlflow_healthy"] = time.monotonic() - t0
        wait_until(f"deployment {FLOW}/{DEPLOYMENT} registered",
                   lambda: _answers_200(deployment_url), procs, [prefect, serve], DEPLOYMENTS_S)
        seconds["deployment_registered"] = time.monotonic() - t0
        deployment = ok("GET", deployment_url)
        assert deployment["parameters"] == {"vendor": VENDOR}, deployment

        # 3. run it through the server and wait for a final state
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
            flow_run = run_deployment(f"{FLOW}/{DEPLOYMENT}", timeout=FLOW_RUN_S, poll_interval=1,
                                      as_subflow=False)
        seconds["flow_run_final"] = time.monotonic() - t0
        state = flow_run.state
        assert state is not None and state.is_final(), (
            f"flow run {flow_run.id} not finished within {FLOW_RUN_S} s: {state}\n" + procs.tails())
        assert state.is_completed(), f"flow run {flow_run.id}: {state.type} {state.message}\n" + procs.tails()
        assert serve.popen.poll() is None, "flows.serve exited\n" + procs.tails()
        yield Stack(prefect_api, mlflow_url, str(deployment["id"]), str(flow_run.id), seconds)
    finally:
        procs.stop()
        seconds["stopped"] = time.monotonic() - t0
        print(f"\nserver test timings (s since start): {json.dumps({k: round(v, 1) for k, v in seconds.items()})}")


# --- the tests ------------------------------------------------------------------------------
def test_prefect_api_shows_the_completed_training_run(stack: Stack) -> None:
    runs = ok("POST", f"{stack.prefect_api}/flow_runs/filter", {
        "flows": {"name": {"any_": [FLOW]}},
        "flow_runs": {"deployment_id": {"any_": [stack.deployment_id]}},
    })
    assert [r["id"] for r in runs] == [stack.flow_run_id], runs
    run = runs[0]
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"] == {"vendor": VENDOR}
    assert {"licanom", VENDOR} <= set(run["tags"])
    flow = ok("GET", f"{stack.prefect_api}/flows/{run['flow_id']}")
    assert flow["name"] == FLOW
    # the other served deployments are registered too
    for name in (f"score-vendor/score-{VENDOR}", "nightly/all-vendors"):
        ok("GET", f"{stack.prefect_api}/deployments/name/{name}")


def test_mlflow_api_shows_parent_and_variant_runs_and_the_champion(stack: Stack) -> None:
    api = f"{stack.mlflow_url}/api/2.0/mlflow"
    experiment = ok("GET", f"{api}/experiments/get-by-name?"
                    + urllib.parse.urlencode({"experiment_name": f"licanom/{VENDOR}"}))["experiment"]
    runs = ok("POST", f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                             "max_results": 100}).get("runs", [])

    def tags(run: dict) -> dict[str, str]:
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    by_kind: dict[str, list[dict]] = {}
    for run in runs:
        by_kind.setdefault(tags(run).get("licanom.kind", "?"), []).append(run)
    assert len(by_kind.get("training", [])) == 1, runs
    assert len(by_kind.get("variant", [])) == 1, runs
    parent, variant = by_kind["training"][0], by_kind["variant"][0]
    assert parent["info"]["status"] == "FINISHED" and variant["info"]["status"] == "FINISHED"
    parent_id, variant_id = parent["info"]["run_id"], variant["info"]["run_id"]
    assert tags(variant)["mlflow.parentRunId"] == parent_id
    assert tags(variant)["model"] == "TCN_AE"
    params = {p["key"]: p["value"] for p in parent["data"].get("params", [])}
    assert params["champion_model"] == "TCN_AE"

    history = ok("GET", f"{api}/metrics/get-history?"
                 + urllib.parse.urlencode({"run_id": variant_id, "metric_key": "val/loss"}))["metrics"]
    assert [m["step"] for m in history] == [1]  # one epoch, step = epoch
    assert all(m["value"] >= 0 for m in history)

    champion = ok("GET", f"{api}/registered-models/alias?"
                  + urllib.parse.urlencode({"name": f"licanom-{VENDOR}", "alias": "champion"}))["model_version"]
    assert champion["version"] == params["champion_version"] == "1"
    assert champion["run_id"] == variant_id
