"""The options and the run of `licanom evaluate` (also `python -m benchmarks.eval_detectors`, `make eval-blocked`).

For each profile x seed it simulates a vendor, fits each detector without labels (blocked
two-fold protocol by default, see licanom.evaluation.blocked), and prints the table of AUROC, AUPRC,
precision/recall/F1, false alarms per 10k chunks and recall per anomaly kind, averaged over
seeds, followed by the recommended default per vendor size. Writes ``evaluation.csv``,
``evaluation_per_seed.csv``, ``evaluation.md``, ``recommendation.csv`` and
``recommendation.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def add_arguments(p: argparse.ArgumentParser, positive: Callable[[str], int] = int,
                  non_negative: Callable[[str], int] = int) -> argparse.ArgumentParser:
    """The evaluation's options on ``p``; ``positive`` and ``non_negative`` check counts."""
    from licanom.config import AutoModels, sequence_models
    from licanom.data.encode import ENCODERS
    from licanom.evaluation.blocked import AUTOENCODERS, BASELINES, CONTEXT, SEQUENCE, registered
    from licanom.sim import PROFILES

    # train.models' and detect's 'sequence' holds models this evaluation does not register (DeepLog)
    unevaluated = [name for name in sequence_models() if name not in SEQUENCE]

    p.add_argument("--profiles", default="all", help=f"comma list of {', '.join(PROFILES)}, or all")
    p.add_argument("--seeds", default=DEFAULT_SEEDS, help="comma list of simulation seeds")
    p.add_argument("--days", type=positive, default=21, help="days of log per vendor")
    p.add_argument("--epochs", type=positive, default=5, help="autoencoder epochs")
    p.add_argument("--batch-size", type=positive, default=128, help="autoencoder batch size")
    p.add_argument("--models", default="all,sequence",
                   help=f"comma list of registered detectors; 'all' = the {len(AUTOENCODERS)} autoencoders, 'sequence' = "
                        f"the {len(SEQUENCE)} sequence models it evaluates ({', '.join(SEQUENCE)})"
                        + (f"; {', '.join(unevaluated)}, in train.models' and detect's 'sequence', {'is' if len(unevaluated) == 1 else 'are'} not evaluated here"
                           if unevaluated else "")
                        + f" (registered: {', '.join(registered())})")
    p.add_argument("--no-baselines", action="store_true", help=f"leave out {', '.join(CONTEXT + BASELINES)}")
    p.add_argument("--m1", action="store_true", help="also the M1 threshold (retrains; slow)")
    p.add_argument("--no-clustering", action="store_true", help="leave out GMM and KMeans")
    p.add_argument("--protocol", choices=("blocked", "all"), default="blocked",
                   help="blocked: folds of consecutive days, each scored by a model fitted on the others")
    p.add_argument("--encoder", choices=tuple(ENCODERS), default="thesis",
                   help="how each request becomes the models' features, as the configuration's encode.encoder")
    p.add_argument("--folds", type=positive, default=2, help="blocks in time (blocked protocol)")
    p.add_argument("--threads", type=non_negative, default=1,
                   help="torch threads per fit (1 is kind to a shared machine; 0 = torch's default, "
                        "in each of the --jobs processes)")
    p.add_argument("--jobs", type=positive, default=_cpus(),
                   help="vendors evaluated at once, in as many processes (one per CPU this process may use); "
                        "the same rows as one job, but the seconds are measured side by side: use --jobs 1 "
                        "to time the detectors")
    p.add_argument("--small-max-train-chunks", type=non_negative,
                   default=AutoModels.model_fields["small_max_train_chunks"].default,
                   help="vendors whose models train on at most this many chunks are 'small'")
    p.add_argument("--max-false-alarms", type=float, default=50.0,
                   help="per 10,000 chunks: the recommendation's limit, and the budget of the 'oracle' rows "
                        "(the threshold set with the labels: an upper bound, never recommended)")
    p.add_argument("--no-oracle", action="store_true", help="leave out the 'oracle' rows")
    p.add_argument("--out", type=Path, default=Path("out/eval"), help="folder for the tables")
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false",
                   help="do not log the evaluation as a run in the store of mlflow.yaml (by default it is logged)")
    return p


def settings_from(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The :class:`licanom.evaluation.blocked.EvalSettings` of parsed options."""
    from licanom.config import DetectConfig, EncodeConfig, TrainConfig
    from licanom.evaluation.blocked import AUTOENCODERS, BASELINES, CONTEXT, SEQUENCE, EvalSettings
    from licanom.evaluation.metrics import THRESHOLD_DECISIONS
    from licanom.sim import PROFILES

    groups = {"all": AUTOENCODERS, "sequence": SEQUENCE}
    names = [t.strip() for t in args.models.split(",") if t.strip()]
    models = tuple(dict.fromkeys(m for name in names for m in groups.get(name, (name,))))
    if not args.no_baselines:
        models += tuple(b for b in CONTEXT + BASELINES if b not in models)
    thresholds = (*THRESHOLD_DECISIONS, "M1") if args.m1 else THRESHOLD_DECISIONS
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds takes whole numbers separated by commas, got {args.seeds!r}") from None
    return EvalSettings(
        profiles=_names(args.profiles, PROFILES),
        seeds=seeds,
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


def run(args: argparse.Namespace) -> int:
    """Run the evaluation of parsed options; 0, or 2 for settings that cannot be evaluated."""
    from licanom.evaluation.blocked import run_evaluation
    from licanom.evaluation.output import log_evaluation, recommend, report_markdown, to_markdown

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
        from licanom.ops.tracking import configure

        run_id = log_evaluation(configure(), evaluation, rec)
        print(f"MLflow run {run_id}")
    return 0
