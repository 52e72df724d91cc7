"""Fault-injection benchmark: nights killed with SIGKILL at every crash point, at full size.

The test suite's harness (tests/night_harness.py: a night in a child process that kills itself
at a named crash point, a rerun with new rows, the ledger checked after each) on a larger vendor:
a Tail_context model on ``--train`` rows in chunks of ``--chunk``, ``--rows`` new rows before and
after every kill, every crash point of licanom.ops.scoring_state.CRASH_POINTS ``--rounds`` times over one
growing history. Prints how many kill points it tried and writes the figures to
benchmarks/results/bench_faults.json.

    python -m benchmarks.bench_faults [--rows 2000] [--train 5000] [--chunk 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_faults.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="new rows before and after each kill")
    parser.add_argument("--train", type=int, default=5000, help="training rows of the model")
    parser.add_argument("--chunk", type=int, default=100, help="chunk size")
    parser.add_argument("--rounds", type=int, default=2, help="passes over every crash point")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    from licanom.ops.scoring_state import CRASH_POINTS
    from tests.night_harness import make_bundle, run_kill_points

    points = list(CRASH_POINTS) * args.rounds
    t0 = time.perf_counter()
    bundle = make_bundle("acme", n=args.train, chunk=args.chunk)
    with tempfile.TemporaryDirectory() as tmp:
        counts = run_kill_points(Path(tmp), points, per_night=args.rows, bundle=bundle,
                                 trained_to=1000 + args.train - 1)
    seconds = time.perf_counter() - t0
    result = {**counts, "distinct_kill_points": len(CRASH_POINTS), "rounds": args.rounds,
              "rows_per_batch": args.rows, "train_rows": args.train, "chunk": args.chunk,
              "seconds": round(seconds, 1), "ledger": "held after every rerun"}
    print(f"bench-faults: {counts['killed']} nights killed at {len(CRASH_POINTS)} distinct kill points "
          f"x {args.rounds} rounds; {counts['rows']:,} rows, {counts['nights']} nights published; "
          f"the ledger held after every rerun ({seconds:.0f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
