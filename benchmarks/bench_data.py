"""Data-path benchmark: extract + validate + derive + encode + chunk of a large simulated log.

Generates (once, cached under out/bench/) a floating-licence vendor's log of about
10 million rows as Parquet, then times each step of the data path in a fresh process and
reports rows per second and the process's peak memory.

    python -m benchmarks.bench_data [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path("out/bench")


def make_log(rows: int) -> Path:
    """Simulate floating vendors until the log holds at least `rows` rows; cache the Parquet."""
    import polars as pl

    from licanom.simulate import simulate

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


def run_once(path: str) -> dict[str, float]:
    """Time each step in this process (called in a fresh subprocess for a clean peak RSS)."""
    from licanom.config import load_config
    from licanom.extract.files import read_log
    from licanom.pipeline import chunk, encode, validate

    cfg = load_config()
    times: dict[str, float] = {}
    t = time.perf_counter()
    raw = read_log(path)
    times["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    validation = validate(raw, cfg.validate_)
    times["validate"] = time.perf_counter() - t
    del raw
    t = time.perf_counter()
    encoded = encode(validation.valid, cfg.encode)
    times["derive+encode"] = time.perf_counter() - t
    t = time.perf_counter()
    chunks, _ = chunk(encoded, cfg.chunk, cfg.split)
    times["chunk"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    times["rows"] = float(validation.n_in)
    times["chunks"] = float(chunks.n_chunks)
    times["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--once", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.once)))
        return
    path = make_log(args.rows)
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_data", "--once", str(path)],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["total"])
    steps = ("extract", "validate", "derive+encode", "chunk", "total")
    print(f"\nData path on {int(best['rows']):,} rows -> {int(best['chunks']):,} chunks "
          f"(best of {len(runs)} fresh processes)")
    print(f"{'step':<16}{'seconds':>10}{'rows/s':>16}")
    for step in steps:
        print(f"{step:<16}{best[step]:>10.2f}{best['rows'] / best[step]:>16,.0f}")
    print(f"{'peak memory':<16}{best['peak_rss_gib']:>10.2f} GiB")
    totals = ", ".join(f"{r['total']:.2f}" for r in runs)
    print(f"all runs, total seconds: {totals}")
    print(f"bar: total < 5 s and peak < 4 GiB -> {'met' if best['total'] < 5 and best['peak_rss_gib'] < 4 else 'NOT met'}")


if __name__ == "__main__":
    main()
