"""Headline figures of issue 24's table: each bench writes its row as one small JSON record.

A bench calls :func:`start` before it measures and :func:`write` after, with the figure it judges
against the row's target; ``python -m benchmarks.summary`` reads the records back and prints the
table. Records go to ``benchmarks/results/latest/<row>.json`` (``LICANOM_BENCH_RECORDS`` names
another folder, e.g. for a check at reduced sizes that must not replace the full-size figures).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

RECORDS = Path(__file__).parent / "results" / "latest"


@dataclass(frozen=True)
class Row:
    """One row of issue 24's table: what is measured, its target, and the command that measures it."""

    title: str
    target: str
    make: str


# issue 24's table, in its order
ROWS: dict[str, Row] = {
    "score": Row("default detector scoring raw rows (model.predict), 2.5 M rows", ">= 2 M rows/s", "make bench-score"),
    "data": Row("data path, 10 M-row Parquet (thesis encoder)", "<= 2 s, peak <= 2.5 GiB", "make bench-data"),
    "train-flow": Row("training flow of the default context model, one vendor (cold)", "<= 15 s", "make bench-fixed"),
    "night-100": Row("one night for 100 vendors through the worker", "<= 120 s",
                     "make bench-load (needs the team set-up; deploy/README.md)"),
    "threads-stability": Row("LSTM_AE fit beside another process, train.threads as configured",
                             "stable within 20% (max-min over median)", "make bench-threads"),
    "threads-fastest": Row("LSTM_AE, batch 32, one epoch of case 3: thread count",
                           "train.threads is the fastest measured", 'make bench-threads BENCH_THREADS_ARGS="--chunks 19004"'),
    "eight-autoencoders": Row("the eight autoencoders, case-3 volume, 10 epochs, batch 32", "<= 8 min wall",
                              "make bench-gpu (a few minutes on a GPU)"),
    "framework-cost": Row("framework cost over a plain PyTorch loop at batch 32 (worst net)", "<= 5%",
                          'make bench-train BENCH_TRAIN_ARGS="--batch 32 --threads 1 --repeat 3"'),
}


@dataclass(frozen=True)
class Start:
    """The moment a measurement began: wall clock, load average, the machine's and this process's CPU seconds."""

    wall: float
    load: float
    machine_busy: float
    own_cpu: float


@dataclass(frozen=True)
class Headline:
    """A row's figure from one run of a bench."""

    row: str
    figure: float          # the number judged against the target, in ``unit``
    unit: str
    measured: str          # the figure as the table shows it, with what else the bench saw
    target: str
    met: bool
    full_size: bool        # measured at the size the row names (else a reduced check)
    conditions: str        # what was measured: sizes, rounds, models
    command: str
    date: str              # UTC, ISO 8601
    machine: str
    load_before: float     # 1-minute load average
    load_after: float
    others_busy: float     # CPUs kept busy by other processes during the run, on average


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        values = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU seconds of this process (all threads) and of its children that ended."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def start() -> Start:
    return Start(time.perf_counter(), os.getloadavg()[0], busy_seconds(), _own_cpu())


def command() -> str:
    """How this process was started, as ``python -m module args``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([program, shlex.join(sys.argv[1:])]).strip()


def _machine() -> str:
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    how = [f"nice {os.nice(0)}"] if os.nice(0) else []  # what slows a run beside the load
    how += [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ]
    return ", ".join([f"{platform.node()}", f"{os.cpu_count()} CPUs ({cpu})", *how])


def folder() -> Path:
    return Path(os.environ.get("LICANOM_BENCH_RECORDS") or RECORDS)


def write(row: str, started: Start, *, figure: float, unit: str, measured: str, met: bool, full_size: bool,
          conditions: str) -> Path:
    """Write ``row``'s record (target from :data:`ROWS`, load from ``started`` to now); its path."""
    if row not in ROWS:
        raise ValueError(f"unknown row {row!r}; the rows are {', '.join(ROWS)}")
    wall = max(time.perf_counter() - started.wall, 1e-9)
    others = max(0.0, (busy_seconds() - started.machine_busy) - (_own_cpu() - started.own_cpu)) / wall
    record = Headline(row=row, figure=float(figure), unit=unit, measured=measured, target=ROWS[row].target,
                      met=bool(met), full_size=bool(full_size), conditions=conditions, command=command(),
                      date=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=_machine(),
                      load_before=round(started.load, 2), load_after=round(os.getloadavg()[0], 2),
                      others_busy=round(others, 2))
    path = folder() / f"{row}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record), indent=1) + "\n")
    print(f"headline {row}: {measured} (target {record.target}: {'met' if met else 'NOT met'}"
          f"{'' if full_size else ', reduced size'}) -> {path}", file=sys.stderr)
    return path


def read(path: Path) -> Headline:
    """A record written by :func:`write`; ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text())
        names = {f.name for f in fields(Headline)}
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if set(data) != names:
            raise ValueError(f"fields missing {sorted(names - set(data))}, unexpected {sorted(set(data) - names)}")
        return Headline(**data)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a headline record ({e})") from None
