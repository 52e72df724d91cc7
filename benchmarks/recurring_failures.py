"""A failing batch job that recurs every day: does the night flag it?

The failure share's far rule (licanom.detectors.context.FAR_SHARE_GAP) puts a chunk at the top
severity when its share of failed requests lies half a chunk above the largest of the training chunks
the robust reference kept. Its known risk: a vendor's ordinary traffic with a recurring high-failure
pattern in a small share of its chunks (a nightly job checking lapsed licences) has those chunks set
aside by the trimming, and each night's then crosses the line. This measures it on the simulator.

A vendor of the simulator (the 2% world, ``--seed``) gets one more client: every day at ``--hour``
UTC, one of its machines sends ``--requests`` requests within ``--minutes`` (20), each failing (an ordinary
request of the vendor, its state's outcome digit turned to failure). The vendor is trained on its
first 14 days as the training flow trains (licanom.evaluation.nightly), the 15th day is scored as the
night through the scoring flow's calls (``--train-days`` other than 14: trained on that many, the job
on the last ``--job-days`` of them and the night). Prints the night's chunks that hold the job's
requests, their severities and top signals, and how many other chunks were flagged.

    python -m benchmarks.recurring_failures [--profile usage-based] [--seed 7] [--requests 70]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import timedelta

import polars as pl

from licanom.data.states import FAILURE_DIGIT, SUCCESS_DIGIT
from licanom.evaluation.nightly import NightlySettings, World, scored_variants, split_days
from licanom.sim import PROFILES


def with_job(log: pl.DataFrame, requests: int, hour: int, days: range, minutes: int = 20) -> pl.DataFrame:
    """``log`` with the daily failing job added on ``days`` (counted from the log's first UTC day: one
    machine's ordinary request, repeated, failing), its Ids renumbered in time order."""
    ok = log.filter(((pl.col("State") // 10) % 10 == SUCCESS_DIGIT) & (pl.col("MachineCode") != ""))
    if ok.is_empty():
        raise SystemExit("the vendor has no successful request with a machine code to repeat")
    proto = ok.row(ok.height // 2, named=True)
    first = log["Time"].min().replace(hour=0, minute=0, second=0, microsecond=0)
    times = [first + timedelta(days=d, hours=hour, seconds=minutes * 60 * i / requests)
             for d in days for i in range(requests)]
    job = pl.DataFrame([{**proto, "Time": t, "State": proto["State"] + (FAILURE_DIGIT - SUCCESS_DIGIT) * 10}
                        for t in times], schema=log.schema)
    return (pl.concat([log, job]).sort("Time", "Id")
            .with_columns(pl.int_range(1, pl.len() + 1).cast(log.schema["Id"]).alias("Id")))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=PROFILES, default="usage-based")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--requests", type=int, default=70, help="the job's requests each day (default 70)")
    p.add_argument("--hour", type=int, default=3, help="the UTC hour the job starts (default 3)")
    p.add_argument("--minutes", type=int, default=20, help="how long the job runs each day (default 20)")
    p.add_argument("--train-days", type=int, default=14, help="training days before the night (default 14)")
    p.add_argument("--job-days", type=int, default=None,
                   help="the job runs on the last this many training days and the night (default: every day)")
    args = p.parse_args(argv)
    job_days = args.train_days if args.job_days is None else args.job_days
    if args.requests < 1 or not 0 <= args.hour <= 23 or not 1 <= args.minutes <= 60 or args.train_days < 2 \
            or not 1 <= job_days <= args.train_days:
        p.error("--requests must be at least 1, --hour lie in 0-23, --minutes in 1-60, --train-days be at least 2 "
                "and --job-days lie in 1..--train-days")
    # the training days and the night; simulated with a day after it (and no fewer days than the nightly
    # evaluation's 21, whose first days are then the same)
    settings = NightlySettings(detectors=("Tail_context",), clustering=False, night_cut_hour=2,
                               days=args.train_days + 1, train_fraction=args.train_days / (args.train_days + 1))
    sim = World("share 2%", 0.02).simulate(args.profile, args.seed, max(NightlySettings().days, args.train_days + 2))
    log = with_job(sim.log, args.requests, args.hour, range(args.train_days - job_days, args.train_days + 1),
                   args.minutes)
    train, nights = split_days(log, settings)
    night = nights[0]
    # the simulator's own events keep their rows but not their Ids (renumbered): judged here by time only
    one = replace(sim, log=pl.concat([train, night]).sort("Time", "Id"), labels=sim.labels.clear(),
                  events=sim.events.clear())
    start = night["Time"].min().replace(hour=args.hour, minute=0, second=0, microsecond=0)
    if start < night["Time"].min():
        start += timedelta(days=1)
    end = start + timedelta(minutes=args.minutes)
    for scored in scored_variants(one, settings):
        chunks = scored.chunks
        if chunks is None:
            print("no night chunk")
            continue
        holds = (pl.col("start_time") <= end) & (pl.col("end_time") >= start)
        job, other = chunks.filter(holds), chunks.filter(~holds)
        flagged = job.filter(pl.col("is_anomaly"))
        print(f"{args.profile}, seed {args.seed}, {args.requests} failing requests in {args.minutes} minutes a day at "
              f"{args.hour:02d}:00 UTC on the last {job_days} of {args.train_days} training days: "
              f"{chunks.height} night chunks, {job.height} hold the job, {flagged.height} of them flagged "
              f"(severities {', '.join(f'{s:.0f}' for s in job['severity'])}; top signals "
              f"{', '.join(sorted(set(job['top_feature'].to_list())))}); {int(other['is_anomaly'].sum())} other chunks flagged")


if __name__ == "__main__":
    main()
