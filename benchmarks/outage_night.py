"""A licensing outage as a night: every request of it fails.

A vendor of the simulator (the 2% world, ``--seed``) is trained on its first 14 days as the training
flow trains (licanom.evaluation.nightly), then its 15th day is scored as the night through the
scoring flow's calls, each of its requests set to fail (the same requests, the state's outcome digit
turned to failure). Prints the night's chunks, how many are flagged and their severities: the far
rule for a failure share (licanom.detectors.context.FAR_SHARE_GAP) puts them at 100.

    python -m benchmarks.outage_night [--profile node-locked] [--seed 7]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import polars as pl

from licanom.data.states import FAILURE_DIGIT, SUCCESS_DIGIT
from licanom.evaluation.nightly import NightlySettings, World, scored_variants, split_days
from licanom.sim import PROFILES


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=PROFILES, default="node-locked")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    settings = NightlySettings(detectors=("Tail_context",), clustering=False, night_cut_hour=2)
    sim = World("share 2%", 0.02).simulate(args.profile, args.seed, settings.days)
    train, nights = split_days(sim.log, settings)
    failing = nights[0].with_columns(
        pl.when((pl.col("State") // 10) % 10 == SUCCESS_DIGIT)
        .then(pl.col("State") + (FAILURE_DIGIT - SUCCESS_DIGIT) * 10).otherwise(pl.col("State")))
    outage = replace(sim, log=pl.concat([train, failing]).sort("Time", "Id"))
    for scored in scored_variants(outage, replace(settings, days=15, train_fraction=14 / 15)):
        chunks = scored.chunks
        if chunks is None:
            print("no night chunk")
            continue
        sev = chunks["severity"]
        print(f"{args.profile}, seed {args.seed}: {chunks.height} night chunks, {int(chunks['is_anomaly'].sum())} flagged; "
              f"severity {sev.min():.1f} / {sev.median():.1f} / {sev.max():.1f} (least / median / most); "
              f"top signal {chunks['top_feature'].mode().sort().to_list()[0]}")


if __name__ == "__main__":
    main()
