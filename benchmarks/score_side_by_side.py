"""Scoring raw rows before and after a change, side by side (the method of benchmarks/results/score.md).

``python -m benchmarks.score_side_by_side --before COMMIT``: exports ``licanom/`` of ``COMMIT`` into a
temporary folder, trains one bundle per model with this checkout (as ``make bench-score`` does),
then scores the first ``--rows`` rows through the registered model's ``predict`` (pandas in, pandas
out) in a fresh process per pass, alternating the code before and after ``--passes`` times, and
prints the CPU seconds (all threads) and wall seconds of each pass with the machine's load, and
whether both gave the same chunk frame (``polars.testing.assert_frame_equal``). ``--steps`` also
prints each step's CPU and wall seconds in the code after (from pandas, validate, windows, the
detector's inputs, score, to pandas).

    python -m benchmarks.score_side_by_side --before 8e8e7ae --rows 2500000 --passes 3
    python -m benchmarks.score_side_by_side --before 8e8e7ae --models TCN_AE,IForest_summary --rows 300000 --passes 1
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PASS = r'''
import json, os, resource, sys, time
from pathlib import Path
import polars as pl
bundle_dir, n, out, steps = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
from benchmarks.bench_data import make_log
from benchmarks.bench_score import pyfunc
log = pl.read_parquet(make_log(n))
rows, small = log.head(n).to_pandas(), log.head(min(n, 100_000)).to_pandas()
scorer = pyfunc(bundle_dir)
scorer.predict(None, small)  # warm up (imports, caches)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
result = {}
if steps:
    from licanom.ops import bundle as B
    b, marks = scorer.bundle, [("start", cpu(), time.perf_counter())]
    def mark(name):
        marks.append((name, cpu(), time.perf_counter()))
    raw = pl.from_pandas(rows); mark("from pandas")
    validation = B.validate_rows(b, raw); mark("validate")
    windows = B.make_windows(b, validation.valid); mark("windows")
    inputs = B.window_inputs(b, windows); mark("inputs")
    chunks = B.score_windows(b, windows, inputs); mark("score")
    frame = chunks.to_pandas(); mark("to pandas")
    result["steps"] = [(a[0], a[1] - p[1], a[2] - p[2]) for p, a in zip(marks, marks[1:])]
else:
    c0, t0 = cpu(), time.perf_counter()
    frame = scorer.predict(None, rows)
    result["cpu"], result["wall"] = cpu() - c0, time.perf_counter() - t0
import licanom
result["load"], result["code"] = os.getloadavg()[0], licanom.__file__
pl.from_pandas(frame).write_parquet(out)
print(json.dumps(result))
'''


def export(commit: str, into: Path) -> Path:
    """``licanom/`` of ``commit`` under ``into``."""
    data = subprocess.run(["git", "archive", commit, "licanom"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def one_pass(code: Path, bundle: Path, rows: int, out: Path, steps: bool = False) -> dict:
    """One scoring pass in a fresh process with ``code`` first on the path (the script runs from
    a file beside the outputs: ``python -c`` would put this checkout first)."""
    script = out.parent / "score_pass.py"
    script.write_text(_PASS)
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(bundle), str(rows), str(out), "1" if steps else "0"],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["code"]).is_relative_to(code):
        raise RuntimeError(f"the pass imported {result['code']}, not the code under {code}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit whose licanom/ is the code before")
    parser.add_argument("--models", default="Tail_context")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--steps", action="store_true", help="also each step's seconds in the code after")
    args = parser.parse_args()
    import polars as pl
    from polars.testing import assert_frame_equal

    from benchmarks.bench_data import make_log
    from benchmarks.bench_score import TRAIN_ROWS, train_bundle

    work = Path(tempfile.mkdtemp(prefix="licanom-score-side-"))

    atexit.register(shutil.rmtree, work, ignore_errors=True)  # the scratch folder goes with the run
    before = export(args.before, work / "before")
    log = pl.read_parquet(make_log(max(args.rows, TRAIN_ROWS)))
    for model in args.models.split(","):
        bundle = train_bundle(model, log.head(TRAIN_ROWS), work / "bundles")
        figures: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.passes):
            for name, code in (("before", before), ("after", ROOT)):
                figures[name].append(one_pass(code, bundle, args.rows, work / f"{name}.parquet"))
                f = figures[name][-1]
                print(f"{model} {args.rows:,} rows, {name:6s}: cpu {f['cpu']:.2f} s, wall {f['wall']:.2f} s, "
                      f"load {f['load']:.1f}", flush=True)
        assert_frame_equal(pl.read_parquet(work / "before.parquet"), pl.read_parquet(work / "after.parquet"))
        print(f"{model} {args.rows:,} rows: the chunk frames before and after are identical")
        for name, passes in figures.items():
            cpu, wall = sorted(p["cpu"] for p in passes), sorted(p["wall"] for p in passes)
            print(f"| {model} | {name} | {', '.join(f'{c:.2f}' for c in cpu)} | {cpu[len(cpu) // 2]:.2f} | "
                  f"{', '.join(f'{w:.2f}' for w in wall)} | {wall[len(wall) // 2]:.2f} |")
        if args.steps:
            f = one_pass(ROOT, bundle, args.rows, work / "steps.parquet", steps=True)
            print("after, per step (cpu / wall s): " + ", ".join(f"{s} {c:.2f} / {w:.2f}" for s, c, w in f["steps"]))


if __name__ == "__main__":
    main()
