"""Evaluate every detector and decision on simulated vendors with planted anomalies.

For each profile x seed it simulates a vendor, fits each detector without labels (blocked
two-fold protocol by default, see licanom.evaluate), and prints the table of AUROC, AUPRC,
precision/recall/F1, false alarms per 10k chunks and recall per anomaly kind, averaged over
seeds, followed by the recommended default per vendor size. Writes ``evaluation.csv``,
``evaluation_per_seed.csv``, ``evaluation.md``, ``recommendation.csv`` and
``recommendation.md`` into ``--out``.

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
import os
import sys
import time
from pathlib import Path

from licanom.config import DetectConfig, EncodeConfig, TrainConfig
from licanom.evaluate import (
    AUTOENCODERS,
    BASELINES,
    CONTEXT,
    SEQUENCE,
    THRESHOLD_DECISIONS,
    EvalSettings,
    log_evaluation,
    recommend,
    registered,
    report_markdown,
    run_evaluation,
    to_markdown,
)
from licanom.simulate import PROFILES


# Twelve seeds: with three, one event more or less found moves a kind's recall by a third.
DEFAULT_SEEDS = ",".join(str(s) for s in range(1, 13))


def _cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every OS
        return os.cpu_count() or 1


def _names(text: str, everything: tuple[str, ...]) -> tuple[str, ...]:
    return everything if text == "all" else tuple(t.strip() for t in text.split(",") if t.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profiles", default="all", help=f"comma list of {', '.join(PROFILES)} (default all)")
    p.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma list of simulation seeds (default {DEFAULT_SEEDS})")
    p.add_argument("--days", type=int, default=21, help="days of log per vendor (default 21)")
    p.add_argument("--epochs", type=int, default=5, help="autoencoder epochs (default 5)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--models", default="all,sequence",
                   help="comma list of registered detectors; 'all' = the eight autoencoders, 'sequence' = "
                        f"the four sequence models (default both; registered: {', '.join(registered())})")
    p.add_argument("--no-baselines", action="store_true", help=f"leave out {', '.join(CONTEXT + BASELINES)}")
    p.add_argument("--m1", action="store_true", help="also the M1 threshold (retrains; slow)")
    p.add_argument("--no-clustering", action="store_true", help="leave out GMM and KMeans")
    p.add_argument("--protocol", choices=("blocked", "all"), default="blocked")
    p.add_argument("--encoder", choices=("thesis", "frequency"), default="thesis",
                   help="categorical encoding: thesis (order of first appearance) or frequency (rarest to commonest)")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per fit (default 1, kind to a shared machine; 0 = torch's default, "
                        "in each of the --jobs processes)")
    p.add_argument("--jobs", type=int, default=_cpus(),
                   help="vendors evaluated at once, in as many processes (default: one per CPU this process "
                        f"may use, here {_cpus()}); the same rows as one job, but the seconds are measured "
                        "side by side: use --jobs 1 to time the detectors")
    p.add_argument("--small-max-train-chunks", type=float, default=500.0,
                   help="vendors whose models train on at most this many chunks are 'small'")
    p.add_argument("--max-false-alarms", type=float, default=50.0,
                   help="per 10,000 chunks: the recommendation's limit, and the budget of the 'oracle' rows "
                        "(the threshold set with the labels: an upper bound, never recommended)")
    p.add_argument("--no-oracle", action="store_true", help="leave out the 'oracle' rows")
    p.add_argument("--out", type=Path, default=Path("out/eval"))
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false",
                   help="do not log the evaluation as a run in the store of mlflow.yaml (logged by default)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> EvalSettings:
    groups = {"all": AUTOENCODERS, "sequence": SEQUENCE}
    names = [t.strip() for t in args.models.split(",") if t.strip()]
    models = tuple(dict.fromkeys(m for name in names for m in groups.get(name, (name,))))
    if not args.no_baselines:
        models += tuple(b for b in CONTEXT + BASELINES if b not in models)
    thresholds = (*THRESHOLD_DECISIONS, "M1") if args.m1 else THRESHOLD_DECISIONS
    return EvalSettings(
        profiles=_names(args.profiles, PROFILES),
        seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()),
        days=args.days,
        models=models,
        thresholds=thresholds,
        clustering=not args.no_clustering,
        protocol=args.protocol,
        folds=args.folds,
        oracle_budget=None if args.no_oracle else args.max_false_alarms,
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, threads=args.threads or None),
        detect=DetectConfig(m1=args.m1),
        encode=EncodeConfig(encoder=args.encoder),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from(args)
        settings.check()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    evaluation = run_evaluation(settings, progress=lambda line: print(line, file=sys.stderr, flush=True),
                                jobs=args.jobs)
    rec = recommend(evaluation.table, small_max_train_chunks=args.small_max_train_chunks,
                    max_false_alarms=args.max_false_alarms)
    paths = evaluation.write(args.out, rec)
    print(report_markdown(evaluation.table))
    print()
    print(to_markdown(rec.select("size", "profiles", "n_train_chunks", "detector", "decision",
                                 "mean_kind_recall", "false_alarms_per_10k", "meets_limit", "note")))
    print(f"\n{len(evaluation.per_seed)} rows in {time.perf_counter() - t0:.0f} s; wrote "
          + ", ".join(str(p) for p in paths))
    if args.mlflow:
        from licanom.tracking import configure

        run_id = log_evaluation(configure(), evaluation, rec)
        print(f"MLflow run {run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
