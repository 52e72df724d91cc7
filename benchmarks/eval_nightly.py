"""The held-out evaluation (make eval): nightly mode over the robustness sweep, report seeds.

    python -m benchmarks.eval_nightly --seeds report --night-cut-hour 2 --out benchmarks/results/nightly
    python -m benchmarks.eval_nightly --seeds dev --night-cut-hour 2   # for choosing designs and defaults

(``make eval`` and ``make eval-dev`` cut the nights at 02:00 UTC, as the flows' default schedule; the
option's default, midnight, is what the reports before 12001-12003 used.)

Prints one table per detector: per world, the events found at the default decision (per kind),
false alarms per 10,000 chunks (all, and outside the events' incidents), the labelled-threshold
row (events found with the threshold set from the labels at 20 false alarms per 10,000 chunks)
and the vendors that flagged nothing while events were present. The late kinds are a world of
their own ("late kinds"), reported apart, and so are the second generator's four worlds ("second:
low" to "second: storm", licanom.evaluation.secondsim: vendors, traffic and anomalies written
without reading licanom.sim). See licanom.evaluation.nightly.

An autoencoder is named with the input mode it reads, both modes side by side, e.g.

    python -m benchmarks.eval_nightly --seeds dev --epochs 5 --by world,profile \
        --detectors Tail_context,IForest_summary,TCN_AE:rows,TCN_AE:thesis,LSTM_AE:rows,LSTM_AE:thesis

(GMM and KMeans on their latent code are judged beside them; --no-clustering skips that.)

``--mode detect`` judges ``licanom detect`` instead (make eval-detect): each vendor's whole log
prepared at once, its chunks split at random as the configuration says, the default decision on
the held-out test chunks (``--detect-chunks all``: on every chunk, the training chunks as
``licanom detect`` flags them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from licanom.evaluation.nightly import (DEV_SEEDS, HEADLINE_LEVEL, LATE, REPORT_SEEDS, SECOND, SWEEP, WORLDS, NightlySettings,
                                       headline, run_sweep, summarise)


def _table(frame: pl.DataFrame) -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in frame.iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if v != v else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}")
            else:
                cells.append("" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pool_runs(paths: list[Path]) -> pl.DataFrame:
    """Several runs' per_vendor.csv as one frame; a vendor (world, profile, seed, detector) in more
    than one is refused, naming it and the files: it would count twice."""
    frames = [pl.read_csv(p, infer_schema_length=None).with_columns(pl.lit(str(p)).alias("_file")) for p in paths]
    for p, frame in zip(paths[1:], frames[1:]):  # a column one run lacks would count its vendors as nulls
        differ = sorted(set(frame.columns) ^ set(frames[0].columns))
        if differ:
            raise SystemExit(f"--summarise: {p} and {paths[0]} have other columns ({', '.join(differ[:5])}"
                             f"{', ...' if len(differ) > 5 else ''}): pool runs of one version of the evaluation")
    pooled = pl.concat(frames, how="vertical_relaxed")
    key = [c for c in ("world", "profile", "seed", "detector") if c in pooled.columns]
    twice = pooled.filter(pl.len().over(key) > 1)
    if twice.height:
        first = twice.row(0, named=True)
        files = sorted(twice.filter(pl.all_horizontal(pl.col(c) == first[c] for c in key))["_file"])
        raise SystemExit(f"--summarise: {', '.join(f'{c} {first[c]}' for c in key)} is in {' and '.join(files)}: "
                         "pool runs of other seeds")
    return pooled.drop("_file")


def _headline_table(frame: pl.DataFrame, by: tuple[str, ...]) -> str:
    """The headline (licanom.evaluation.nightly.headline) as a short table: each figure with its interval."""
    def ratio(v: float, lo: float, hi: float, digits: int) -> str:
        return "" if v != v else f"{v:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"

    pct = round(HEADLINE_LEVEL * 100)
    head = [*by, "vendors", "events", f"found ({pct}% interval)", "weakest kind", f"false alarms / 10k ({pct}% interval)",
            "silent vendors"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in frame.iter_rows(named=True):
        weakest = "" if r["weakest_kind"] is None else f"{r['weakest_kind']} {r['weakest_found']:.3f}"  # 0.897 is no 0.90
        cells = [*(str(r[c]) for c in by), str(r["vendors"]), str(r["events"]), ratio(r["found"], r["found_lo"], r["found_hi"], 2),
                 weakest, ratio(r["fa_per_10k"], r["fa_lo"], r["fa_hi"], 1), str(r["silent_vendors"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.eval_nightly", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="report",
                   help="report (the figures to publish), dev (for choosing), or a comma list (default: report)")
    p.add_argument("--worlds", default="all",
                   help="'all' (the sweep, the late kinds and the second generator's worlds), 'second' (those only) or a "
                        "|-separated list of names (also the combined worlds, licanom.evaluation.nightly.COMBINED)")
    p.add_argument("--profiles", default=None,
                   help="comma list of profiles (default: each world's own, licanom.sim.PROFILES or "
                        "licanom.evaluation.secondsim.PROFILES)")
    p.add_argument("--detectors", default="Tail_context,IForest_summary",
                   help="comma list of registered names; an autoencoder may name its input mode, e.g. TCN_AE:rows")
    p.add_argument("--mode", choices=("nightly", "detect"), default="nightly",
                   help="nightly: train on the first days, score each later day (the flows); detect: licanom detect "
                        "on the whole log, its random test chunks judged")
    p.add_argument("--detect-chunks", choices=("test", "all"), default="test",
                   help="detect mode: judge the held-out test chunks (default) or every chunk of the log, the training "
                        "chunks as licanom detect flags them in chunks.parquet")
    p.add_argument("--days", type=int, default=21)
    p.add_argument("--night-cut-hour", type=int, default=0, metavar="HOUR",
                   help="nightly mode: the UTC hour the training ends and each night is cut at (0: midnight; "
                        "the flows' default score_cron runs at 2)")
    p.add_argument("--epochs", type=int, default=None, help="the autoencoders' epochs (default: the configuration's)")
    p.add_argument("--no-clustering", action="store_true", help="skip GMM/KMeans on the latent code")
    p.add_argument("--carry-rows-state", action="store_true",
                   help="advance the rows encoder's state with each scored night (the flow keeps the training state)")
    p.add_argument("--by", default="world", help="the summary's grouping besides the detector: world, or world,profile")
    p.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="vendors at once (processes)")
    p.add_argument("--out", type=Path, default=None, help="folder for per_vendor.csv, summary.csv and summary.md")
    p.add_argument("--chunks-out", type=Path, default=None, metavar="DIR",
                   help="also write each vendor's judged night chunks (Parquet, one file per vendor and detector), "
                        "and beside them its labelled night rows, entity results and the scores its severity was "
                        "calibrated on")
    p.add_argument("--summarise", type=Path, nargs="+", default=None, metavar="PER_VENDOR_CSV",
                   help="only print (and with --out write) the summary of earlier runs' per_vendor.csv, pooled when "
                        "several (runs of other seeds of one design: a vendor in two of them is refused)")
    args = p.parse_args(argv)
    by = (*[c.strip() for c in args.by.split(",")], "detector")
    if args.detect_chunks != "test" and args.mode != "detect":
        p.error("--detect-chunks is for --mode detect")
    if args.summarise:
        earlier = pool_runs(args.summarise)
        header = f"Summary of {', '.join(map(str, args.summarise))}.\n"
        return _write(header, summarise(earlier, by=by), headline(earlier, by=by), None, args.out)
    seeds = {"report": REPORT_SEEDS, "dev": DEV_SEEDS}.get(args.seeds) or tuple(int(s) for s in args.seeds.split(","))
    shortcuts = {"all": (*SWEEP, LATE, *SECOND), "second": SECOND}
    names = [n.strip() for n in args.worlds.split("|")] if args.worlds not in shortcuts else []
    unknown = [n for n in names if n not in WORLDS]
    if unknown:
        p.error(f"unknown world(s) {unknown}; expected some of {list(WORLDS)}")
    worlds = shortcuts[args.worlds] if args.worlds in shortcuts else tuple(WORLDS[n] for n in names)
    profiles = None if args.profiles is None else [s.strip() for s in args.profiles.split(",")]
    settings = NightlySettings(days=args.days, detectors=tuple(args.detectors.split(",")),
                               clustering=not args.no_clustering, carry_rows_state=args.carry_rows_state,
                               chunks_out=args.chunks_out, mode=args.mode,
                               detect_chunks=args.detect_chunks, night_cut_hour=args.night_cut_hour)
    if args.epochs is not None:
        cfg = settings.config
        settings = replace(settings, config=cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": args.epochs})}))
    t0 = time.perf_counter()
    per_vendor = run_sweep(worlds, profiles=profiles, seeds=seeds, settings=settings, jobs=args.jobs,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    summary = summarise(per_vendor, by=by)
    how = (f"Nightly mode, {args.days} days (train on the first {round(args.days * settings.train_fraction)}, "
           f"score each later day{f', nights cut at {args.night_cut_hour:02d}:00 UTC' if args.night_cut_hour else ''})" if args.mode == "nightly" else
           f"Detect mode, {args.days} days (licanom detect on the whole log: {settings.config.split.method} split, "
           f"{'the test chunks' if args.detect_chunks == 'test' else 'every chunk'} judged)")
    header = (f"{how}, autoencoders {settings.config.train.epochs} epochs, seeds {','.join(map(str, seeds))}, profiles {args.profiles or 'of each world'}; "
              f"{datetime.now(UTC):%Y-%m-%d}, {time.perf_counter() - t0:.0f} s, {args.jobs} job(s).\n"
              f"Command: python -m benchmarks.eval_nightly {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    return _write(header, summary, headline(per_vendor, by=by), per_vendor, args.out)


def _write(header: str, summary: pl.DataFrame, heads: pl.DataFrame, per_vendor: pl.DataFrame | None,
           out: Path | None) -> int:
    print(header)
    text = [header]
    by = tuple(c for c in heads.columns[: heads.columns.index("vendors")] if c != "detector")  # headline's schema
    for detector, part in summary.partition_by("detector", as_dict=True, maintain_order=True).items():
        shown = part.drop("detector", "chunks")
        head = _headline_table(heads.filter(pl.col("detector") == detector[0]), by)
        block = (f"### {detector[0]}\n\nThe default decision, with {round(HEADLINE_LEVEL * 100)}% intervals (a "
                 f"bootstrap resampling whole vendors, widened to the exact binomial interval where that is wider):\n\n{head}\n\nEvery figure:\n\n{_table(shown)}\n")
        print(block)
        text.append(block)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        if per_vendor is not None:
            per_vendor.write_csv(out / "per_vendor.csv")
        summary.write_csv(out / "summary.csv")
        (out / "summary.md").write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
