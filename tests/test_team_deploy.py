"""The team set-up for real: PostgreSQL, MLflow and Prefect servers, a process work pool and its worker.

`make team-test` runs this. The module fixture reuses the set-up when deploy/team-status.sh says it
is up, and otherwise brings it up with deploy/team-up.sh (installing PostgreSQL from Debian's
packages when it is missing) and stops it again with deploy/team-down.sh at the end. A set-up
that cannot come up fails the test with the script's message; it is never skipped.

One simulated vendor, with a unique name, gets its train and score deployments on the pool; a
module fixture runs both through the worker with ``run_deployment``, and each test checks one
part, whichever runs alone: the PostgreSQL-backed registry (champion alias, read back from
PostgreSQL itself) and the proxied artifacts; the night's output and the watermark; `nightly`
over a Dask cluster (prefect-dask) on the same vendor finding nothing new. Its deployments,
registered model and experiment are removed at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.team, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TEAM_DIR = Path(os.environ.get("LICANOM_TEAM_DIR", ROOT / ".team"))
POOL = os.environ.get("LICANOM_POOL", "licanom-process")
UP_S = 1200        # team-up.sh: a first start may install PostgreSQL and the team extra
RUN_S = 600        # each flow run, from trigger to a final state (a worker process starts per run)
MODEL = "TCN_AE_Small"


@dataclass(frozen=True)
class Team:
    env: dict[str, str]          # from .team/team.env: PREFECT_API_URL, MLFLOW_TRACKING_URI, ...
    started_here: bool

    @property
    def prefect_api(self) -> str:
        return self.env["PREFECT_API_URL"]

    @property
    def mlflow_url(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]


def _script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["PY"] = sys.executable
    return subprocess.run(["bash", str(DEPLOY / name), *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _read_env(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    started = _script("team-status.sh", "-q", timeout=60).returncode != 0
    try:
        if started:
            up = _script("team-up.sh", timeout=UP_S)
            if up.returncode != 0:
                pytest.fail(f"the team set-up did not come up (deploy/team-up.sh exited {up.returncode}):\n"
                            f"{up.stderr}\n{up.stdout}", pytrace=False)
        yield Team(_read_env(TEAM_DIR / "team.env"), started)
    finally:
        if started:
            down = _script("team-down.sh", timeout=180)
            assert down.returncode == 0, f"deploy/team-down.sh failed:\n{down.stderr}\n{down.stdout}"


@dataclass(frozen=True)
class Vendor:
    name: str
    conf: Path
    out: Path
    last_id: int


@pytest.fixture(scope="module")
def vendor(team: Team, tmp_path_factory) -> Iterator[Vendor]:
    """A simulated vendor with its deployments on the pool; everything of it removed afterwards."""
    from licanom.sim import simulate

    name = f"teamtest-{secrets.token_hex(3)}"
    root = tmp_path_factory.mktemp("team")
    conf, out = root / "conf", root / "out"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((ROOT / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / f"{name}.yaml").write_text(f"""
output_dir: {out}
source: {{kind: simulate, profile: usage-based, seed: 11, days: 3}}
train: {{models: [{MODEL}], epochs: 1, batch_size: 64}}
detect: {{m1: false}}
""")
    last_id = int(simulate("usage-based", seed=11, days=3).log["Id"].max())
    register = [sys.executable, str(DEPLOY / "register.py"), "--pool", POOL, "--conf-dir", str(conf),
                "--vendor", name, "--nightly-name", name, "--no-schedules"]
    env = {**os.environ, **team.env}
    done = subprocess.run(register, env=env, cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, f"register.py failed:\n{done.stderr}\n{done.stdout}"
    try:
        yield Vendor(name, conf, out, last_id)
    finally:
        subprocess.run(register + ["--delete"], env=env, cwd=ROOT, capture_output=True, timeout=120)
        if not team.started_here:  # a shared set-up: leave no test vendor in its registry
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=team.mlflow_url, registry_uri=team.mlflow_url)
            try:
                client.delete_registered_model(f"licanom-{name}")
                exp = client.get_experiment_by_name(f"licanom/{name}")
                if exp is not None:
                    client.delete_experiment(exp.experiment_id)
            except Exception as err:  # cleanup only
                print(f"cleanup of {name} in MLflow: {err}")


def _run(team: Team, deployment: str, parameters: dict | None = None):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: team.prefect_api}):
        flow_run = run_deployment(deployment, parameters=parameters or {}, timeout=RUN_S, poll_interval=2,
                                  as_subflow=False)
    state = flow_run.state
    log = TEAM_DIR / "logs" / "worker.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log.exists() else ""
    assert state is not None and state.is_final(), f"{deployment}: not finished within {RUN_S} s: {state}\n{tail}"
    assert state.is_completed(), f"{deployment}: {state.type} {state.message}\n{tail}"
    assert flow_run.work_pool_name == POOL
    assert flow_run.infrastructure_pid, "the flow run did not run in a worker's process"
    return flow_run


def _watermark(out: Path, name: str) -> int | None:
    from licanom.ops.scoring_state import load_state

    return load_state(out, name).watermark


@dataclass(frozen=True)
class Scored:
    """The vendor trained and its night scored through the worker."""

    trained_to: int


@pytest.fixture(scope="module")
def scored(team: Team, vendor: Vendor) -> Scored:
    """Training, then the nightly scoring, through the worker (each test reads what it needs)."""
    from licanom.sim import simulate

    log = simulate("usage-based", seed=11, days=3).log
    until = log["Time"].max() - timedelta(days=1)
    _run(team, f"train-vendor/train-{vendor.name}", {"until": until.isoformat()})
    trained_to = _watermark(vendor.out, vendor.name)
    assert trained_to is not None and trained_to < vendor.last_id  # scoring starts after the last trained row
    _run(team, f"score-vendor/score-{vendor.name}")
    return Scored(trained_to)


def test_training_registers_the_champion_in_postgresql_with_proxied_artifacts(team: Team, vendor: Vendor,
                                                                                scored: Scored) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=team.mlflow_url, registry_uri=team.mlflow_url)
    champion = client.get_model_version_by_alias(f"licanom-{vendor.name}", "champion")
    assert champion.version == "1" and champion.tags["model"] == MODEL
    exp = client.get_experiment_by_name(f"licanom/{vendor.name}")
    assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:"), exp
    stored = TEAM_DIR / "mlflow-artifacts" / "licanom" / vendor.name
    assert list(stored.rglob("MLmodel")), f"no model artifacts under {stored} (the server's artifact store)"

    # the registry lives in PostgreSQL: read the alias from the database itself
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=int(os.environ.get("LICANOM_PG_PORT", "5433")),
                         dbname=os.environ.get("LICANOM_PG_MLFLOW_DB", "mlflow"),
                         user=os.environ.get("LICANOM_PG_USER", "licanom"),
                         password=os.environ.get("LICANOM_PG_PASSWORD", "licanom-dev")) as conn:
        rows = conn.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s",
                            (f"licanom-{vendor.name}",)).fetchall()
    assert ("champion", 1) in rows, rows


def test_the_night_scored_through_the_worker_reaches_the_last_id(team: Team, vendor: Vendor,
                                                                 scored: Scored) -> None:
    from mlflow import MlflowClient

    trained_to = scored.trained_to
    night = vendor.out / vendor.name / "nights" / f"after-{trained_to}-to-{vendor.last_id}"
    chunks = pl.read_parquet(night / "chunks.parquet")
    assert chunks.height > 0
    assert chunks["first_id"].min() > trained_to and chunks["last_id"].max() <= vendor.last_id
    assert (night / "report.md").exists()
    client = MlflowClient(tracking_uri=team.mlflow_url, registry_uri=team.mlflow_url)
    nightly_exp = client.get_experiment_by_name(f"licanom/{vendor.name}/nightly")  # nights apart from training
    nightly_runs = client.search_runs([nightly_exp.experiment_id], "tags.`licanom.kind` = 'nightly'")
    assert [int(r.data.metrics["watermark"]) for r in nightly_runs] == [vendor.last_id]


def test_nightly_over_dask_through_the_worker_finds_nothing_new(team: Team, vendor: Vendor, scored: Scored) -> None:
    """After the vendor's night (the fixture ``scored``): `nightly` with the Dask runner scores
    the vendor again, with no new rows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter,
                                                FlowRunFilterParentFlowRunId, FlowRunFilterStartTime)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert _watermark(vendor.out, vendor.name) == vendor.last_id
    run = _run(team, f"nightly/{vendor.name}", {"runner": "dask", "workers": 1})
    with temporary_settings(updates={PREFECT_API_URL: team.prefect_api}), get_client(sync_client=True) as client:
        fan_out = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        scored = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["score-vendor"])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=run.start_time)))
    assert [r.flow_id for r in fan_out] and all(r.state.is_completed() for r in fan_out), fan_out
    mine = [r for r in scored if r.parameters.get("vendor") == vendor.name]
    assert len(mine) == 1 and mine[0].state.is_completed(), mine
    assert _watermark(vendor.out, vendor.name) == vendor.last_id
