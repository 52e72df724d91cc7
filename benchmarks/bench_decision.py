"""What severity and the decision add to scoring (make bench-decision): side by side in one run.

Scores the context vectors of a simulated vendor with Tail_context, then times the score alone
and the score plus severity and the decision (the threshold and the night rule, over 30 nights by
default), over several rounds; prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_decision", description=__doc__)
    p.add_argument("--chunks", type=int, default=200_000, help="context vectors to score (default: 200000)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--nights", type=int, default=30, help="the nights the chunks fall in (the night rule's groups)")
    args = p.parse_args(argv)

    from licanom.config import Config
    from licanom.ops.detect import make_detector, model_inputs
    from licanom.data.pipeline import prepare
    from licanom.sim import simulate

    cfg = Config(vendor="bench")
    prepared = prepare(simulate("floating", seed=7, days=14).log, cfg)
    X = model_inputs("Tail_context", prepared)
    det = make_detector("Tail_context", cfg.train, cfg.detect, context=cfg.context.resolved(small=False)).fit(X)
    big = X[np.random.default_rng(0).integers(0, len(X), args.chunks)]
    nights = np.arange(args.chunks) * args.nights // args.chunks  # contiguous nights, as a log's days
    plain, full = [], []
    for _ in range(args.rounds):  # interleaved, so a change of the machine's pace falls on both
        t0 = time.perf_counter()
        det.decision_function(big)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scores = det.decision_function(big)
        severity = det.severity_of(scores)
        _ = det.flags(scores, nights, severity)  # the threshold and the night rule, as the scoring does
        full.append(time.perf_counter() - t0)
    a, b = float(np.median(plain)), float(np.median(full))
    print(f"| chunks | score only [s] | score + severity + decision [s] | added | target |")
    print(f"| ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.chunks:,} | {a:.3f} | {b:.3f} | {100 * (b / a - 1):+.1f}% | <= 10% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
