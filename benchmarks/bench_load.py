"""Load benchmark: one night of many simulated vendors, scored through the team set-up's worker.

`make bench-load` (default 100 vendors). Uses the team set-up (deploy/team-up.sh: PostgreSQL,
MLflow and Prefect servers, a process worker): reuses it when it is up, otherwise starts it and
stops it again at the end.

1. Writes N vendor files into a temporary LICANOM_CONF_DIR: simulated vendors cycling through
   the four licensing profiles, a few days of log each, one tiny variant, one epoch.
2. Trains every vendor beforehand (not timed) through the library, in a few processes, against
   the team MLflow server: registry champion and scoring watermark as after `train-vendor`.
3. Registers `nightly/<name>` for that folder on the work pool and runs it with ``run_deployment``:
   the worker starts one flow run process, which scores every vendor (each its own score-vendor
   flow run) with the chosen runner. This is what is timed.
4. Reports wall time, per-vendor latency (p50/p95/max of the score-vendor flow runs), the peak
   memory of the worker's process tree (RSS summed over the tree, sampled every 0.25 s) and of
   the servers, and checks every vendor: its flow run completed, its night's chunks exist with
   Ids after the training watermark and up to the log's last Id, and its watermark is that Id.

    python -m benchmarks.bench_load --vendors 10                       # a quick look
    python -m benchmarks.bench_load --vendors 100 --runner dask --workers 2
    python -m benchmarks.bench_load --workers default,2,3 --rounds 2    # thread counts side by side
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from benchmarks import headline

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TEAM_DIR = Path(os.environ.get("LICANOM_TEAM_DIR", ROOT / ".team"))
POOL = os.environ.get("LICANOM_POOL", "licanom-process")
PROFILES = ("node-locked", "usage-based", "floating", "mixed")
TARGET_NIGHT_S = 120.0  # issue 24: one night of 100 vendors through the worker


# --- the team set-up -------------------------------------------------------------------------
def _script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["PY"] = sys.executable
    return subprocess.run(["bash", str(DEPLOY / name), *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def team_env() -> dict[str, str]:
    lines = (TEAM_DIR / "team.env").read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


# --- vendors ---------------------------------------------------------------------------------
def write_conf(root: Path, names: list[str], days: int, model: str, epochs: int, source: str = "files") -> Path:
    """The vendors' files. ``source``: "files", each vendor reads a Parquet log that training
    writes from the simulator (a night then costs what reading a vendor's export costs), or
    "simulate", each night simulates its vendor's log again (about 0.3 CPU s a vendor)."""
    conf = root / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((ROOT / "conf" / "defaults.yaml").read_text())
    for i, name in enumerate(names):
        where = f", path: {root / 'logs' / name / 'log.parquet'}" if source == "files" else ""
        (conf / "vendors" / f"{name}.yaml").write_text(
            f"output_dir: {root / 'out'}\n"
            f"source: {{kind: {source}{where}, profile: {PROFILES[i % len(PROFILES)]}, seed: {i}, days: {days}}}\n"
            f"train: {{models: [{model}], epochs: {epochs}, batch_size: 64, threads: 1}}\n"
            "detect: {m1: false}\n"
        )
    return conf


@dataclass(frozen=True)
class Trained:
    vendor: str
    trained_to: int      # the scoring watermark after training
    last_id: int         # the log's last Id: the watermark after the night
    seconds: float


def _init_worker(env: dict[str, str], log: str) -> None:
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # MLflow's and Lightning's chatter
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import torch

    torch.set_num_threads(1)


def train_one(vendor: str) -> Trained:
    """What the train-vendor flow does, through the library: train on all but the last day."""
    t0 = time.perf_counter()
    from licanom.data import pipeline
    from licanom.ops import scoring_state as state
    from licanom.ops import training
    from licanom.config import load_config
    from licanom.sim import simulate
    from licanom.ops.tracking import configure

    cfg = load_config(vendor)
    log = simulate(cfg.source.profile, seed=cfg.source.seed, days=cfg.source.days).log
    if cfg.source.kind == "files":  # the vendor's export, as a night reads it
        Path(cfg.source.path).parent.mkdir(parents=True, exist_ok=True)
        log.write_parquet(cfg.source.path)
    until = log["Time"].max() - timedelta(days=1)
    tracker = configure()
    validation = pipeline.validate(pipeline.extract(cfg.source, until=until), cfg.validate_)
    prepared = pipeline.encode_and_chunk(validation, cfg)
    cfg = training.for_vendor_size(cfg, prepared)
    run_id = training.start_training(tracker, cfg, prepared)
    variant = training.train_variant(tracker, cfg, prepared, cfg.train.models[0], run_id, training.work_dir())
    training.finish_training(tracker, cfg, run_id, [variant])
    shutil.rmtree(variant.bundle_dir.parent, ignore_errors=True)
    trained_to = int(prepared.chunks.meta["last_id"].max())
    state.start_after(Path(cfg.output_dir), vendor, trained_to)
    return Trained(vendor, trained_to, int(log["Id"].max()), time.perf_counter() - t0)


# --- memory ----------------------------------------------------------------------------------
class TreeMemory(threading.Thread):
    """Peak RSS (summed) of a process tree, and of other processes, sampled in the background;
    and the CPU seconds each tree used while sampled (per process: its last reading less its
    first, so a process that starts and ends between two samples is missed: a lower bound)."""

    def __init__(self, roots: dict[str, int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.roots, self.interval = roots, interval
        self.peak = {k: 0 for k in roots}
        self.peak_procs = {k: 0 for k in roots}
        self._cpu_first: dict[str, dict[int, float]] = {k: {} for k in roots}
        self._cpu_last: dict[str, dict[int, float]] = {k: {} for k in roots}
        self._halt = threading.Event()

    def cpu_seconds(self, k: str) -> float:
        first, last = self._cpu_first[k], self._cpu_last[k]
        return sum(last[pid] - first[pid] for pid in last)

    def _sample_cpu(self, k: str, pid: int) -> None:
        import psutil

        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total = t.user + t.system
            # a process new to the tree after the first sample started within the night: from 0
            self._cpu_first[k].setdefault(p.pid, 0.0 if self._sampled else total)
            self._cpu_last[k][p.pid] = total

    _sampled = False  # the first round of samples is the baseline

    @staticmethod
    def tree_rss(pid: int) -> tuple[int, int]:
        import psutil

        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total, len(procs)

    def run(self) -> None:
        while not self._halt.is_set():
            for k, pid in self.roots.items():
                rss, n = self.tree_rss(pid)
                self.peak[k] = max(self.peak[k], rss)
                self.peak_procs[k] = max(self.peak_procs[k], n)
                self._sample_cpu(k, pid)
            self._sampled = True
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _pid(name: str) -> int | None:
    try:
        return int((TEAM_DIR / "run" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def _postmaster_pid() -> int | None:
    try:
        return int((TEAM_DIR / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- the night -------------------------------------------------------------------------------
def score_runs(api: str, vendors: set[str], after) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The score-vendor flow runs of these vendors started after ``after``, by vendor."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime
    from prefect.settings import PREFECT_API_URL, temporary_settings

    found: dict[str, object] = {}
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["score-vendor"])),
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=after)),
                limit=200, offset=offset,
            )
            for run in page:
                vendor = run.parameters.get("vendor")
                if vendor in vendors:
                    found[vendor] = run
            if len(page) < 200:
                return found
            offset += 200


def check_vendor(out: Path, t: Trained, run) -> str | None:  # type: ignore[no-untyped-def]
    """None when the vendor's night is right, else what is wrong."""
    import polars as pl

    from licanom.ops.scoring_state import load_state

    if run is None:
        return "no score-vendor flow run"
    if run.state is None or not run.state.is_completed():
        return f"flow run {run.state.type.value if run.state else '?'}: {run.state.message if run.state else ''}"
    watermark = load_state(out, t.vendor).watermark
    if watermark != t.last_id:
        return f"watermark {watermark}, expected {t.last_id}"
    path = out / t.vendor / "nights" / f"after-{t.trained_to}-to-{t.last_id}" / "chunks.parquet"
    if not path.exists():
        return f"missing {path}"
    chunks = pl.read_parquet(path)
    if chunks.height == 0:
        return "no chunks scored"
    if not (chunks["first_id"].min() > t.trained_to and chunks["last_id"].max() <= t.last_id):
        return f"chunk Ids {chunks['first_id'].min()}..{chunks['last_id'].max()} outside ({t.trained_to}, {t.last_id}]"
    return None


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def cleanup_mlflow(mlflow_url: str, vendors: list[str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    for v in vendors:
        try:
            client.delete_registered_model(f"licanom-{v}")
        except Exception:
            pass
        exp = client.get_experiment_by_name(f"licanom/{v}")
        if exp is not None:
            client.delete_experiment(exp.experiment_id)


def workers_label(runner: str, workers: int | None) -> str:
    from flows.nightly import default_workers

    return f"{default_workers(runner)} (the nightly's default)" if workers is None else str(workers)


def reset_nights(out: Path, trained: dict[str, "Trained"]) -> None:
    """Every vendor back to the moment after its training: no state, no nights (its champion's
    cached files stay, as they stay between real nights)."""
    from licanom.ops.scoring_state import start_after

    for vendor, t in trained.items():
        for part in ("state", "nights"):
            shutil.rmtree(out / vendor / part, ignore_errors=True)
        start_after(out, vendor, t.trained_to)


def one_night(args, register, conf, deployment, names, env, trained, out, workers, headline_row,  # type: ignore[no-untyped-def]
              earlier) -> tuple[float, bool]:
    """Register the nightly deployment with ``workers``, run it through the worker, print its table."""
    done = subprocess.run(register + ["--conf-dir", str(conf), "--runner", args.runner]
                          + ([] if workers is None else ["--workers", str(workers)]),
                          env={**os.environ}, cwd=ROOT, text=True, capture_output=True, timeout=300)
    if done.returncode != 0:
        print(done.stderr + done.stdout, file=sys.stderr)
        raise SystemExit(1)
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    roots = {k: p for k, p in (("worker tree", _pid("worker")), ("prefect server", _pid("prefect-server")),
                               ("mlflow server", _pid("mlflow")), ("postgresql", _postmaster_pid()))
             if p is not None}
    mem = TreeMemory(roots)
    mem.start()
    started = headline.start()
    t0 = time.perf_counter()
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        run = run_deployment(f"nightly/{deployment}", timeout=args.timeout, poll_interval=1, as_subflow=False)
    wall = time.perf_counter() - t0
    mem.stop()
    state = run.state
    runs = score_runs(env["PREFECT_API_URL"], set(names), run.start_time or run.expected_start_time)
    problems = {v: p for v in names if (p := check_vendor(out, trained[v], runs.get(v))) is not None}
    lat = [(r.end_time - r.start_time).total_seconds() for r in runs.values() if r.start_time and r.end_time]
    run_s = (run.end_time - run.start_time).total_seconds() if run.start_time and run.end_time else float("nan")
    rows = [
        ("vendors", f"{len(names)}"),
        ("runner", f"{args.runner} ({workers_label(args.runner, workers)} at once)"),
        ("the night's rows", "a Parquet export per vendor" if args.source == "files" else "simulated again"),
        ("nightly flow run", f"{state.type.value if state else '?'}"),
        ("wall: trigger -> final state", f"{wall:.1f} s"),
        ("wall: nightly run start -> end", f"{run_s:.1f} s"),
        ("vendors per minute", f"{60 * len(names) / wall:.1f}"),
        ("score-vendor runs found", f"{len(runs)}"),
    ]
    if lat:
        rows += [("per-vendor latency p50", f"{statistics.median(lat):.2f} s"),
                 ("per-vendor latency p95", f"{pct(lat, 0.95):.2f} s"),
                 ("per-vendor latency max", f"{max(lat):.2f} s")]
    for k in roots:
        rows.append((f"peak RSS {k}", f"{mem.peak[k] / 2**20:,.0f} MiB ({mem.peak_procs[k]} processes)"))
    for k in roots:
        cpu = mem.cpu_seconds(k)
        rows.append((f"CPU seconds {k}", f"{cpu:.1f} s ({cpu / len(names):.2f} s per vendor)"))
    rows.append(("vendors right (output + watermark)", f"{len(names) - len(problems)} / {len(names)}"))
    width = max(len(k) for k, _ in rows)
    print()
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("(RSS summed over a tree counts shared pages, such as PostgreSQL's shared buffers, once per process; "
          "CPU seconds: user + system of each process of the tree while the night ran, sampled every 0.25 s)",
          flush=True)
    for v, p in sorted(problems.items())[:20]:
        print(f"  {v}: {p}")
    right = not problems and state is not None and state.is_completed()
    if headline_row:
        walls = [*earlier, wall]
        figure = statistics.median(walls)
        headline.write("night-100", started, figure=figure, unit="s",
                       measured=f"{figure:.1f} s"
                                + (f" (median of {', '.join(f'{x:.1f}' for x in walls)} s)" if len(walls) > 1 else "")
                                + f", {60 * len(names) / figure:.1f} vendors/min"
                                + (f", per vendor p50 {statistics.median(lat):.2f} s" if lat else "")
                                + f"; {len(names) - len(problems)}/{len(names)} vendors right",
                       met=right and figure <= TARGET_NIGHT_S, full_size=args.vendors >= 100,
                       conditions=f"{args.vendors} vendors, {args.model}, runner {args.runner} x "
                                  f"{workers_label(args.runner, workers)}, "
                                  f"source {args.source}, {len(walls)} round(s) "
                                  "(the servers and the worker count as other processes in the load)")
    return wall, right


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vendors", type=int, default=100)
    ap.add_argument("--runner", choices=("sequential", "threads", "dask"), default="threads")
    ap.add_argument("--workers", default="default",
                    help="vendors scored at once (threads or dask processes; 'default': the nightly flow's own "
                         "default, two per CPU with threads); a comma-separated list runs a round for each, side "
                         "by side, the first one's figure the headline")
    ap.add_argument("--rounds", type=int, default=1,
                    help="nights per worker count: before each further one every vendor's scoring state is "
                         "set back to its training watermark; the headline is the median")
    ap.add_argument("--days", type=int, default=3, help="simulated days per vendor (the last one is the night)")
    ap.add_argument("--source", choices=("files", "simulate"), default="files",
                    help="where a night reads its vendor's rows: a Parquet export written at training, "
                         "or the simulator run again")
    ap.add_argument("--model", default="LSTM_AE_Small")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-procs", type=int, default=2, help="processes that train the vendors beforehand")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for the night")
    ap.add_argument("--keep", action="store_true", help="keep the vendors' files, models and deployment")
    args = ap.parse_args(argv)

    brought_up = _script("team-status.sh", "-q", timeout=60).returncode != 0  # stopped again at the end
    if brought_up:
        print("team set-up is not up: starting it (deploy/team-up.sh)", flush=True)
        up = _script("team-up.sh", "--no-deploy", timeout=1200)
        if up.returncode != 0:
            print(up.stderr + up.stdout, file=sys.stderr)
            return 1
    env = team_env()
    tag = secrets.token_hex(2)
    names = [f"load{tag}-{i:03d}" for i in range(args.vendors)]
    root = Path(tempfile.mkdtemp(prefix="licanom-load-"))
    deployment = f"load-{tag}"
    register = [sys.executable, str(DEPLOY / "register.py"), "--pool", POOL, "--only-nightly",
                "--nightly-name", deployment, "--no-schedules"]
    try:
        conf = write_conf(root, names, args.days, args.model, args.epochs, args.source)
        work_env = {**env, "LICANOM_CONF_DIR": str(conf)}
        os.environ.update(work_env)

        # 1. train every vendor beforehand (not timed)
        t0 = time.perf_counter()
        print(f"training {len(names)} vendors ({args.model}, {args.epochs} epoch, {args.train_procs} processes; "
              f"log {root / 'train.log'})", flush=True)
        with mp.get_context("spawn").Pool(args.train_procs, _init_worker, (work_env, str(root / "train.log"))) as pool:
            trained = {t.vendor: t for t in pool.imap_unordered(train_one, names)}
        train_s = time.perf_counter() - t0
        print(f"trained {len(trained)} vendors in {train_s:.0f} s "
              f"(median {statistics.median(t.seconds for t in trained.values()):.1f} s each)", flush=True)
        print(f"scoring one night through the worker: nightly/{deployment}, runner {args.runner}", flush=True)

        # 2-4. the nightly deployment for these vendors, then the night through the worker, per round
        counts = [None if w == "default" else int(w) for w in str(args.workers).split(",")]
        out = root / "out"
        results: dict[int | None, list[tuple[float, bool]]] = {w: [] for w in counts}
        for r in range(args.rounds):
            for workers in counts:
                if r or workers != counts[0]:
                    reset_nights(out, trained)
                wall, right = one_night(args, register, conf, deployment, names, env, trained, out, workers,
                                        headline_row=workers == counts[0] and r == args.rounds - 1,
                                        earlier=[w for w, _ in results[workers]])
                results[workers].append((wall, right))
        if len(counts) > 1 or args.rounds > 1:
            print("\nside by side (trigger -> final state, each round):")
            for w, got in results.items():
                print(f"  {args.runner} x {workers_label(args.runner, w)}: " + ", ".join(f"{x:.1f} s" for x, _ in got)
                      + f"  (median {statistics.median(x for x, _ in got):.1f} s)")
        right = all(ok for got in results.values() for _, ok in got)
        return 0 if right else 1
    finally:
        if not args.keep:
            subprocess.run(register + ["--delete"], env={**os.environ}, cwd=ROOT, capture_output=True, timeout=120)
            if "MLFLOW_TRACKING_URI" in os.environ and not brought_up:
                cleanup_mlflow(os.environ["MLFLOW_TRACKING_URI"], names)
            shutil.rmtree(root, ignore_errors=True)
        if brought_up:
            down = _script("team-down.sh", timeout=180)
            if down.returncode != 0:
                print(down.stderr, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
