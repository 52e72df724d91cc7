"""Data-path benchmark: extract + validate + derive + encode + chunk of a large simulated log.

Generates (once, cached under out/bench/) a floating-licence vendor's log of about
10 million rows as Parquet, then runs the data path in fresh processes, one per run, and
reports per step the wall and CPU seconds (all threads) and the peak resident memory during
the step, for the thesis's encoder (the path the target is set on) and the rows encoder (the
vendor default, conf/defaults.yaml).

    python -m benchmarks.bench_data [--rows 10000000] [--repeat 3] [--encoder thesis rows]
    python -m benchmarks.bench_data --baseline /tmp/old   # /tmp/old/licanom: code to compare with

With ``--baseline`` each repeat runs the baseline's code and this checkout's one after the other,
so that both meet the same load on a shared machine; compare their CPU seconds, not their wall
seconds, when other processes are busy (the run prints how busy).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CACHE = Path("out/bench")
STEPS = ("extract", "validate", "derive+encode", "chunk")
TARGET_SECONDS = 2.0  # issue 24: the 10 M-row data path, wall
TARGET_PEAK_GIB = 2.5


def make_log(rows: int) -> Path:
    """Simulate floating vendors until the log holds at least `rows` rows; cache the Parquet."""
    from licanom.sim import simulate

    path = CACHE / f"floating_{rows}.parquet"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    days = 365
    log = simulate("floating", seed=1, days=days).log
    while log.height < rows:
        days = int(days * rows / max(log.height, 1) * 1.05) + 1
        log = simulate("floating", seed=1, days=days).log
    log.head(rows).write_parquet(path)
    print(f"generated {rows:,} rows ({days} simulated days) in {time.perf_counter() - t0:.0f} s -> {path}",
          file=sys.stderr)
    return path


def _peak_gib() -> float:
    """The process's peak resident memory since the last :func:`_reset_peak` (Linux), else since start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current size
    except OSError:
        pass


def run_once(path: str, encoder: str) -> dict[str, float]:
    """Run each step in this process (a fresh one per run, for a clean peak).

    Per step: wall seconds, ``cpu <step>`` (user + system of all threads) and ``peak <step>``
    (GiB resident at the step's highest, the frames of earlier steps included).
    """
    from licanom.config import load_config
    from licanom.data.extract.files import read_log
    from licanom.data.pipeline import chunk, encode, validate

    cfg = load_config(overrides={"encode": {"encoder": encoder}})
    times: dict[str, float] = {}
    state: dict[str, object] = {}

    def step(name: str, run: Callable[[], object]) -> None:
        _reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        times[name] = time.perf_counter() - wall
        times[f"cpu {name}"] = time.process_time() - cpu
        times[f"peak {name}"] = _peak_gib()

    step("extract", lambda: state.update(raw=read_log(path)))
    step("validate", lambda: state.update(validation=validate(state.pop("raw"), cfg.validate_)))
    validation = state["validation"]
    # the texts' codes validation found, where the code measured has them (a --baseline may not)
    reuse = {"codes": validation.codes} if "codes" in inspect.signature(encode).parameters else {}
    step("derive+encode", lambda: state.update(encoded=encode(validation.valid, cfg.encode, **reuse)))
    step("chunk", lambda: state.update(chunks=chunk(state["encoded"], cfg.chunk, cfg.split)[0]))
    for prefix in ("", "cpu "):
        times[f"{prefix}total"] = sum(times[f"{prefix}{s}"] for s in STEPS)
    # the highest of the steps' peaks: the process's own ru_maxrss would hold the parent's high-water
    # mark (Linux keeps it across fork and exec), 3.8 GiB after a parent that had just generated the log
    times["peak total"] = max(times[f"peak {s}"] for s in STEPS)
    times["rows"] = float(validation.n_in)
    times["chunks"] = float(state["chunks"].n_chunks)
    return times


def _child_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_child(code: Path, path: Path, encoder: str) -> dict[str, float]:
    """:func:`run_once` in a fresh process that imports ``licanom`` from ``code``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(code), os.environ.get("PYTHONPATH"))))}
    out = subprocess.run([sys.executable, __file__, "--once", str(path), "--encoder", encoder],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median(runs: list[dict[str, float]], key: str) -> float:
    values = sorted(r[key] for r in runs)
    return values[len(values) // 2]


def _table(label: str, runs: list[dict[str, float]]) -> None:
    print(f"  {label} (median of {len(runs)} fresh processes)")
    print(f"  {'step':<16}{'wall s':>9}{'cpu s':>9}{'peak GiB':>10}")
    for step in (*STEPS, "total"):
        print(f"  {step:<16}{_median(runs, step):>9.2f}{_median(runs, f'cpu {step}'):>9.2f}"
              f"{_median(runs, f'peak {step}'):>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--encoder", nargs="+", default=["thesis", "rows"], choices=["thesis", "rows"])
    parser.add_argument("--baseline", type=Path, help="a folder holding the licanom package to compare with")
    parser.add_argument("--once", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.once, args.encoder[0])))
        return
    import licanom

    from benchmarks import headline  # here, not at the top: --once runs this file as a script

    here = Path(licanom.__file__).resolve().parents[1]
    if args.baseline is not None and not (args.baseline / "licanom" / "__init__.py").exists():
        parser.error(f"--baseline {args.baseline} holds no licanom package")
    path = make_log(args.rows).resolve()
    versions = {"this checkout": here}
    if args.baseline is not None:
        versions[f"baseline {args.baseline}"] = args.baseline.resolve()
    runs: dict[tuple[str, str], list[dict[str, float]]] = {(v, e): [] for e in args.encoder for v in versions}
    started = headline.start()
    load_before = os.getloadavg()
    machine, ours = headline.busy_seconds(), _child_seconds()
    wall = time.perf_counter()
    for _ in range(args.repeat):
        for encoder in args.encoder:
            for version, code in versions.items():
                runs[version, encoder].append(_run_child(code, path, encoder))
    wall = time.perf_counter() - wall
    others = max(0.0, (headline.busy_seconds() - machine) - (_child_seconds() - ours))
    load_after = os.getloadavg()
    first = next(iter(runs.values()))[0]
    print(f"\nData path on {int(first['rows']):,} rows -> {int(first['chunks']):,} chunks, {os.cpu_count()} CPUs")
    for encoder in args.encoder:
        print(f"\nencoder {encoder!r}" + (" (the vendor default)" if encoder == "rows" else ""))
        for version in versions:
            _table(version, runs[version, encoder])
    print(f"\nother processes: {others / wall:.2f} of {os.cpu_count()} CPUs busy during the runs; 1-min load "
          f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
          + ("; wall times are inflated, compare CPU seconds" if others / wall > 0.2 else ""))
    if "thesis" in args.encoder:
        mine = runs["this checkout", "thesis"]
        best_wall = min(r["total"] for r in mine)
        peak = _median(mine, "peak total")
        floor = _median(mine, "cpu total") / (os.cpu_count() or 1)
        print(f"target (thesis encoder): total <= {TARGET_SECONDS:.0f} s wall and peak <= {TARGET_PEAK_GIB} GiB -> "
              f"best wall {best_wall:.2f} s, peak {peak:.2f} GiB, CPU seconds / CPUs {floor:.2f} s: "
              + ("met" if best_wall <= TARGET_SECONDS and peak <= TARGET_PEAK_GIB else "NOT met"))
        headline.write("data", started, figure=best_wall, unit="s", measured=f"{best_wall:.2f} s wall (best), "
                       f"peak {peak:.2f} GiB, {_median(mine, 'cpu total'):.2f} CPU s",
                       met=best_wall <= TARGET_SECONDS and peak <= TARGET_PEAK_GIB, full_size=args.rows >= 10_000_000,
                       conditions=f"{int(first['rows']):,} rows, thesis encoder, {args.repeat} fresh processes")


if __name__ == "__main__":
    main()
