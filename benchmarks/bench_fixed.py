"""Fixed costs of the per-vendor flows: where a one-vendor training flow and a one-vendor night
spend their seconds outside the library.

One process, a temporary conf/ with simulated vendors (Tail_context, a few days each), an MLflow
store on SQLite and Prefect's ephemeral API, as `make demo` runs. Each flow is run for a first
vendor (cold: Prefect's API starts, MLflow's store is created) and a second one (warm). The
library's own calls (the ones each task wraps) are timed by wrapping them; a flow's seconds
outside them are Prefect's (start-up, flow and task runs, artifacts) and the flow's wiring.
Inside the library, MLflow's part (model logging and registration, loading the champion, the
night's run) and the report are timed apart.

Then the command a vendor runs, `licanom run train --vendor V`, end to end in fresh processes (the
row of issue 24's table): Prefect's database created as `make` installs it (`prefect server
database upgrade`, timed apart), then three vendors one after another, each its own process with
Prefect's temporary API; the first also creates the MLflow store. A fourth process on a home that
was never set up shows what the very first run costs without the install step.

    python -m benchmarks.bench_fixed [--days 4] [--out benchmarks/results/fixed-costs.md]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import statistics
import subprocess
import functools
import importlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_TRAIN_FLOW_S = 15.0  # issue 24: a one-vendor training flow of the default context model

# (module, function): what the flows' tasks call (this version's and the earlier one's names);
# only the outermost call is counted, so nested ones never count twice
TASK_CALLS = [
    ("licanom.data.pipeline", "extract"), ("licanom.data.pipeline", "validate"), ("licanom.data.pipeline", "encode_and_chunk"),
    ("licanom.ops.training", "for_vendor_size"), ("licanom.ops.training", "start_training"),
    ("licanom.ops.training", "train_variant"), ("licanom.ops.training", "finish_training"), ("licanom.ops.training", "work_dir"),
    ("licanom.ops.training", "last_chunked_id"),
    ("licanom.ops.scoring_state", "start_after"), ("licanom.ops.tracking", "configure"), ("licanom.ops.tracking", "shared"),
    ("licanom.ops.nightly", "open_night"), ("licanom.ops.nightly", "read_night"), ("licanom.ops.nightly", "score_rows"),
    ("licanom.ops.nightly", "stage_night"), ("licanom.ops.nightly", "log"), ("licanom.ops.nightly", "publish"),
    ("licanom.ops.nightly", "recover"), ("licanom.ops.nightly", "load_champion"), ("licanom.ops.nightly", "night_state"),
    ("licanom.ops.nightly", "screen"), ("licanom.ops.nightly", "write_night"), ("licanom.ops.nightly", "log_night"),
    ("licanom.ops.nightly", "publish_night"), ("licanom.ops.nightly", "without_ahead"),
    ("licanom.ops.bundle", "with_seen"), ("licanom.ops.bundle", "validate_rows"), ("licanom.ops.bundle", "make_windows"),
    ("licanom.ops.bundle", "score_windows"), ("licanom.ops.bundle", "score_entities"), ("licanom.ops.bundle", "pairs_seen"),
    ("licanom.config", "vendor_config"), ("licanom.config", "check_defaults"), ("licanom.config", "require_vendors"),
    ("licanom.config", "list_vendors"), ("licanom.config", "report_outcomes"),
]
# parts of the library timed apart (counted whatever the depth)
PARTS = [
    ("licanom.ops.tracking", "Tracker.register_bundle", "MLflow: log and register the model"),
    ("licanom.ops.tracking", "Tracker.load_champion", "MLflow: load the champion"),
    ("licanom.ops.tracking", "Tracker.start_run", "MLflow: start a run"),
    ("licanom.ops.tracking", "Tracker.__init__", "MLflow: a client (tracker)"),
    ("licanom.report", "write_report", "report: HTML and CSV"),
    ("licanom.ops.nightly", "log_night", "MLflow: the night's run"),
    ("licanom.ops.nightly", "recover", "recovery (MLflow look-ups)"),
]


class Clock:
    def __init__(self) -> None:
        self.depth = 0
        self.library = 0.0
        self.parts: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap_outer(self, module, name: str) -> None:  # type: ignore[no-untyped-def]
        real = getattr(module, name, None)
        if real is None or getattr(real, "_clocked", False):
            return

        @functools.wraps(real)
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.library += time.perf_counter() - t0

        timed._clocked = True  # type: ignore[attr-defined]
        setattr(module, name, timed)

    def wrap_part(self, owner, name: str, label: str) -> None:  # type: ignore[no-untyped-def]
        real = getattr(owner, name, None)
        if real is None:
            return

        @functools.wraps(real)
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.parts[label] += time.perf_counter() - t0
                self.calls[label] += 1

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.library = 0.0
        self.parts.clear()
        self.calls.clear()


def install(clock: Clock) -> None:
    for mod, label_path, label in PARTS:
        module = importlib.import_module(mod)
        owner, _, name = label_path.rpartition(".")
        clock.wrap_part(getattr(module, owner) if owner else module, name, label)
    for mod, name in TASK_CALLS:
        clock.wrap_outer(importlib.import_module(mod), name)


def write_conf(root: Path, names: list[str], days: int) -> Path:
    """The vendors' conf (bench_load's, one Tail_context each) and an SQLite MLflow store under ``root``."""
    from benchmarks.bench_load import write_conf as vendors_conf

    conf = vendors_conf(root, names, days, "Tail_context", 1, source="simulate")
    (root / "mlflow.yaml").write_text(f"tracking_uri: sqlite:///{root / 'mlflow.db'}\n"
                                      f"artifact_location: {root / 'artifacts'}\n")
    return conf


def command_runs(root: Path, conf: Path, names: list[str]) -> tuple[float, list[float], float]:
    """`licanom run train` in fresh processes: the install step's seconds, each vendor's seconds on
    the installed home, and the seconds of a first run on a Prefect home never set up."""
    env = {**os.environ, "LICANOM_CONF_DIR": str(conf), "LICANOM_MLFLOW_CONFIG": str(root / "mlflow-cli.yaml"),
           "PREFECT_HOME": str(root / "prefect-cli"), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    (root / "mlflow-cli.yaml").write_text(f"tracking_uri: sqlite:///{root / 'mlflow-cli.db'}\n"
                                          f"artifact_location: {root / 'artifacts-cli'}\n")

    def timed(cmd: list[str], **over: str) -> float:
        t = time.perf_counter()
        done = subprocess.run(cmd, env={**env, **over}, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"bench_fixed: {' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return time.perf_counter() - t

    prefect = str(Path(sys.executable).with_name("prefect"))
    install = timed([prefect, "server", "database", "upgrade", "-y"])
    runs = [timed([sys.executable, "-m", "flows.run", "train", "--vendor", name]) for name in names]
    never_set_up = timed([sys.executable, "-m", "flows.run", "train", "--vendor", names[0]],
                         PREFECT_HOME=str(root / "prefect-bare"))
    return install, runs, never_set_up


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    ap.add_argument("--label", default="", help="a name for this measurement in the table's title")
    args = ap.parse_args(argv)
    from benchmarks import headline

    started = headline.start()
    root = Path(tempfile.mkdtemp(prefix="licanom-fixed-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # the scratch folder goes with the run
    names = ["fixa", "fixb"]
    cli_names = ["clia", "clib", "clic"]
    conf = write_conf(root, names + cli_names, args.days)
    # the command first, in fresh processes, before this process imports anything of Prefect's
    install_s, cli_runs, bare_s = command_runs(root, conf, cli_names)
    os.environ.update({"LICANOM_CONF_DIR": str(conf), "LICANOM_MLFLOW_CONFIG": str(root / "mlflow.yaml"),
                       "PREFECT_HOME": str(root / "prefect"), "OMP_NUM_THREADS": "1"})
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    rows: list[tuple[str, float, float, float, dict[str, float]]] = []
    t0 = time.perf_counter()
    from flows.score_vendor import score_vendor
    from flows.train_vendor import train_vendor
    from licanom.config import load_config
    from licanom.data.pipeline import extract

    import_s = time.perf_counter() - t0
    clock = Clock()
    install(clock)
    for i, vendor in enumerate(names):
        cfg = load_config(vendor)
        until = extract(cfg.source)["Time"].max() - timedelta(days=1)
        for what, run in (("training flow", lambda: train_vendor(vendor, until=until)),
                          ("night (score-vendor flow)", lambda: score_vendor(vendor))):
            clock.reset()
            t = time.perf_counter()
            run()
            wall = time.perf_counter() - t
            rows.append((f"{what}, {'first vendor (cold)' if i == 0 else 'second vendor (warm)'}", wall,
                         clock.library, wall - clock.library, dict(clock.parts)))
    labels = [label for _, _, label in PARTS]
    head = "| run | wall s | library s | outside the library s | " + " | ".join(labels) + " |"
    lines = [f"Fixed costs of the per-vendor flows{f' ({args.label})' if args.label else ''}: one process, "
             f"Tail_context, {args.days} simulated days per vendor, MLflow on SQLite, Prefect's ephemeral API; "
             f"importing the flows took {import_s:.1f} s.", "", head,
             "|" + " --- |" * (4 + len(labels))]
    for name, wall, lib, outside, parts in rows:
        lines.append(f"| {name} | {wall:.1f} | {lib:.1f} | {outside:.1f} | "
                     + " | ".join(f"{parts.get(label, 0.0):.2f}" for label in labels) + " |")
    cold, warm = rows[0], rows[2]  # the training flow, first and second vendor
    figure = statistics.median(cli_runs)
    lines += ["", f"`licanom run train --vendor V`, each vendor in a fresh process (Prefect's temporary API started "
                  f"while the flows import): {', '.join(f'{s:.1f}' for s in cli_runs)} s for {len(cli_runs)} vendors "
                  f"one after another (the first also creates the MLflow store), median {figure:.1f} s, after "
                  f"`prefect server database upgrade` ({install_s:.1f} s, once, as `make` installs); "
                  f"{bare_s:.1f} s for a first run on a Prefect home never set up (its database created "
                  f"and migrated on the way)."]
    text = "\n".join(lines) + "\n"
    print(text)
    headline.write("train-flow", started, figure=figure, unit="s",
                   measured=f"{figure:.1f} s, `licanom run train` in a fresh process (median of "
                            f"{', '.join(f'{s:.1f}' for s in cli_runs)}); {bare_s:.1f} s on a Prefect home never set up; "
                            f"in one process: {cold[1]:.1f} s first flow, {warm[1]:.1f} s the next",
                   met=figure <= TARGET_TRAIN_FLOW_S, full_size=args.days >= 4,
                   conditions=f"Tail_context, {args.days} simulated days, MLflow on SQLite, Prefect's temporary API; "
                              f"Prefect's database set up as `make` installs it ({install_s:.1f} s once)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
