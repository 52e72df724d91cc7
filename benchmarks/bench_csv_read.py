"""Reading CSV exports: what checking each line's field count costs (``read_log``).

A CSV line with fewer fields than its header is quarantined, not read with its last values cut
(``licanom.data.extract.files._short_line``). The check counts separators: a file without
separators inside quoted values pays a byte count; one with them pays a count per record with the
quoted values taken out. This times ``read_log`` on three files of the same rows (plain values;
a value with a comma in every row; one value over two lines), in this checkout and, with
``--baseline DIR`` (a checkout of other code, e.g. ``git worktree add /tmp/old <commit>``), in
that one, the two alternating in fresh processes so that both meet the same load.

    python -m benchmarks.bench_csv_read [--rows 1000000] [--repeat 3] [--baseline /tmp/old]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path("out/bench")
KINDS = ("plain", "comma in a quoted value", "a value over two lines")

_TIME = """
import sys, time
from licanom.data.extract.files import read_log
t = time.perf_counter(); frame = read_log(sys.argv[1]); took = time.perf_counter() - t
print(frame.height, took)
"""


def make_files(rows: int) -> dict[str, Path]:
    """The three CSV files of ``rows`` rows (cached under out/bench/)."""
    import polars as pl

    from licanom.sim import simulate

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {kind: CACHE / f"csv_{rows}_{i}.csv" for i, kind in enumerate(KINDS)}
    if all(p.exists() for p in paths.values()):
        return paths
    log = simulate("floating", seed=1, days=30).log
    while log.height < rows:
        log = pl.concat([log, log.with_columns(pl.col("Id") + log["Id"].max() + 1)])
    log = log.head(rows)
    name = pl.col("FriendlyName") if "FriendlyName" in log.columns else pl.lit("desk")
    log.with_columns(name.fill_null("desk").alias("FriendlyName")).write_csv(paths["plain"])
    log.with_columns(pl.lit("Desk, 2nd floor").alias("FriendlyName")).write_csv(paths["comma in a quoted value"])
    log.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("Desk,\nfloor 2")).otherwise(pl.lit("desk"))
                     .alias("FriendlyName")).write_csv(paths["a value over two lines"])
    return paths


def time_read(code: Path, path: Path) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _TIME, str(path)], env=env, cwd=code, capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), float(out[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    args = p.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    paths = {k: v.resolve() for k, v in make_files(args.rows).items()}
    codes = {"this checkout": here, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    best: dict[tuple[str, str], float] = {}
    heights: dict[tuple[str, str], int] = {}
    for _ in range(args.repeat):
        for kind, path in paths.items():
            for name, code in codes.items():  # alternating: both meet the same load
                n, took = time_read(code, path)
                best[name, kind] = min(best.get((name, kind), float("inf")), took)
                heights[name, kind] = n
    print(f"read_log on {args.rows:,}-row CSV files, best of {args.repeat} (seconds; fresh process each)\n")
    print("| file | " + " | ".join(codes) + (" | ratio |" if args.baseline else ""))
    print("| --- | " + " | ".join("---:" for _ in codes) + (" | ---: |" if args.baseline else ""))
    for kind in KINDS:
        cells = [f"{best[name, kind]:.2f} ({heights[name, kind]:,} rows)" for name in codes]
        ratio = f" | {best['this checkout', kind] / best['baseline', kind]:.2f}" if args.baseline else ""
        print(f"| {kind} | " + " | ".join(cells) + ratio + (" |" if args.baseline else ""))


if __name__ == "__main__":
    main()
