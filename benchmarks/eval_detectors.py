"""Evaluate every detector and decision on simulated vendors, blocked folds (make eval-blocked):
what it runs and writes is licanom.evaluation.cli's docstring. The held-out headline is
benchmarks.eval_nightly (make eval).

    python -m benchmarks.eval_detectors                       # defaults: see below
    python -m benchmarks.eval_detectors --profiles floating --seeds 1 --days 14 --epochs 3 \\
        --models TCN_AE,LSTM_AE_Small                         # a quick look (a few minutes)
    python -m benchmarks.eval_detectors --m1 --no-mlflow      # also M1 (slow); no MLflow run

Defaults: four profiles x seeds 1-12 x 21 days (about 1,000-2,300 chunks a floating seed), the
eight autoencoders at 5 epochs with one torch thread, the four sequence models, the three context
models and the four baselines, one vendor per CPU at a time (``--jobs``): 1,051 s on an otherwise
idle 2-core machine (autoencoder training dominates; a busy machine takes longer). The seconds
in the table are measured with the vendors side by side; ``--jobs 1`` times the detectors alone.
"""

from __future__ import annotations

import argparse

from licanom.evaluation.cli import DEFAULT_SEEDS, add_arguments, run, settings_from

__all__ = ["DEFAULT_SEEDS", "main", "parse_args", "settings_from"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_detectors", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_arguments(parser).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
