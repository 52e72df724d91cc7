"""Entity scoring: its cost beside a night's chunk scoring, and what it finds on the development seeds.

``python -m benchmarks.bench_entities`` (``make bench-entities``): simulates a vendor, trains a
Tail_context bundle and an :class:`licanom.detectors.entities.EntityModel` on its first days, then
scores the same ``--rows`` later rows with :func:`licanom.ops.bundle.score_log` and with
``EntityModel.score`` (on the rows derived once, as the night's scoring derives them), interleaved
over ``--rounds`` rounds in one run; prints the medians and the ratio and writes
``benchmarks/results/entities.md``.

``--eval-dev``: nightly mode on the development seeds (1, 2, 3; never the report seeds) of every
profile in the late-kinds world (all eight kinds, 10% anomalous chunks): trains on the first
two thirds of the days, scores each later day as its own night (with the key pairs of the nights
before), and counts per kind the events found (a flagged entity holds one of the event's rows)
and the normal entities flagged (no labelled row). Appends the table to the results file.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

RESULTS = Path(__file__).parent / "results" / "entities.md"


def _bucket(kind: str) -> str:
    return "1h" if kind == "address-hour" else "1d"


def entity_ids(entities: pl.DataFrame) -> pl.DataFrame:
    """One id string per entity (kind, identity, day or hour)."""
    return entities.with_columns(
        pl.when(pl.col("entity_kind") == "address-hour").then(pl.col("start_time").dt.truncate("1h"))
        .otherwise(pl.col("start_time").dt.truncate("1d")).alias("_bucket")
    ).with_columns(pl.concat_str(pl.col("entity_kind"), pl.lit("|"), pl.col("entity"), pl.lit("|"),
                                 pl.col("_bucket").dt.strftime("%Y-%m-%dT%H")).alias("_eid"))


def row_entity_ids(rows: pl.DataFrame) -> pl.DataFrame:
    """Per row (Id, Key, MachineCode, IP, Time): the ids of the entities it belongs to (_eid)."""
    r = rows.select("Id", pl.col("Key").cast(pl.String).fill_null(""), pl.col("MachineCode").cast(pl.String).fill_null(""),
                    pl.col("IP").cast(pl.String).fill_null(""), "Time")
    day = pl.col("Time").dt.truncate("1d").dt.strftime("%Y-%m-%dT%H")
    hour = pl.col("Time").dt.truncate("1h").dt.strftime("%Y-%m-%dT%H")
    return pl.concat([
        r.select("Id", pl.concat_str(pl.lit("key-day|"), "Key", pl.lit("|"), day).alias("_eid")),
        r.filter(pl.col("MachineCode") != "").select(
            "Id", pl.concat_str(pl.lit("key-machine|"), "Key", pl.lit(" / "), "MachineCode", pl.lit("|"), day).alias("_eid")),
        r.select("Id", pl.concat_str(pl.lit("address-hour|"), "IP", pl.lit("|"), hour).alias("_eid")),
    ])


def eval_vendor(profile: str, seed: int, days: int = 21, train_fraction: float = 2 / 3) -> dict[str, object]:
    from licanom.data.context_vector import KeyHistory
    from licanom.data.derive import derive
    from licanom.detectors.entities import EntityModel
    from licanom.evaluation.nightly import ALL_KINDS, LATE

    sim = LATE.simulate(profile, seed, days)
    log = derive(sim.log.sort("Time", "Id"))
    start = log["Time"].min()
    cut = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=max(1, round(days * train_fraction)))
    train, nights = log.filter(pl.col("Time") < cut), log.filter(pl.col("Time") >= cut)
    t0 = time.perf_counter()
    model = EntityModel().fit(train)
    fit_s = time.perf_counter() - t0
    seen, scored = None, []
    t0 = time.perf_counter()
    for night in nights.with_columns(pl.col("Time").dt.truncate("1d").alias("_night")).partition_by(
            "_night", maintain_order=True, include_key=False):
        scored.append(model.score(night, seen))
        pairs = KeyHistory.from_rows(night)
        seen = pairs if seen is None else seen.union(pairs)
    score_s = time.perf_counter() - t0
    entities = entity_ids(pl.concat(scored))
    members = row_entity_ids(nights).join(sim.labels.select("Id", "event"), on="Id", how="inner")
    present = set(members["event"].unique().to_list())
    flagged = entities.filter(pl.col("is_anomaly"))
    found = set(members.join(flagged.select("_eid"), on="_eid")["event"].unique().to_list())
    anomalous_eids = members.select("_eid").unique()
    normal = entities.join(anomalous_eids, on="_eid", how="anti")
    kinds = dict(zip(sim.events["event"].to_list(), sim.events["kind"].to_list(), strict=True))
    row: dict[str, object] = {
        "profile": profile, "seed": seed, "rows_scored": nights.height, "entities": entities.height,
        "normal_entities": normal.height, "normal_flagged": int(normal["is_anomaly"].sum()),
        "flagged": flagged.height, "events": len(present), "found": len(found & present),
        "fit_seconds": fit_s, "score_seconds": score_s,
    }
    for kind in ALL_KINDS:
        of_kind = {e for e in present if kinds[e] == kind}
        row[f"events_{kind}"] = len(of_kind)
        row[f"found_{kind}"] = len(of_kind & found)
    by_kind = normal.group_by("entity_kind").agg(pl.len().alias("n"), pl.col("is_anomaly").sum().alias("f"))
    for k, n, f in by_kind.iter_rows():
        row[f"normal_{k}"], row[f"normal_flagged_{k}"] = n, f
    return row


def run_eval(profiles: list[str], seeds: list[int], days: int) -> str:
    from licanom.evaluation.nightly import ALL_KINDS, DEV_SEEDS

    bad = [s for s in seeds if s not in DEV_SEEDS]
    if bad:
        raise SystemExit(f"--eval-dev runs the development seeds {DEV_SEEDS} only, got {bad}")
    rows = []
    for profile in profiles:
        for seed in seeds:
            r = eval_vendor(profile, seed, days)
            print(r, file=sys.stderr, flush=True)
            rows.append(r)
    df = pl.DataFrame(rows)
    lines = [
        f"## Found on the development seeds ({', '.join(map(str, seeds))}), late-kinds world, {days} days, "
        f"trained on the first {round(days * 2 / 3)}, each later day scored as a night",
        "",
        "Events found (a flagged entity holds one of its rows) at the default decision (severity >= 55):",
        "",
        "| profile | " + " | ".join(ALL_KINDS) + " | all | normal entities flagged |",
        "| --- | " + " | ".join("---:" for _ in ALL_KINDS) + " | ---: | ---: |",
    ]

    def cells(g: pl.DataFrame) -> str:
        out = [f"{int(g[f'found_{k}'].sum())}/{int(g[f'events_{k}'].sum())}" for k in ALL_KINDS]
        out.append(f"{int(g['found'].sum())}/{int(g['events'].sum())}")
        n, f = int(g["normal_entities"].sum()), int(g["normal_flagged"].sum())
        out.append(f"{f}/{n:,} ({100 * f / max(n, 1):.2f}%)")
        return " | ".join(out)

    for profile in profiles:
        lines.append(f"| {profile} | {cells(df.filter(pl.col('profile') == profile))} |")
    lines.append(f"| **all** | {cells(df)} |")
    lines += ["", "Normal entities flagged per kind (all profiles and seeds):", "",
              "| kind | flagged | normal entities | share |", "| --- | ---: | ---: | ---: |"]
    from licanom.detectors.entities import ENTITY_KINDS

    for k in ENTITY_KINDS:
        n = int(df[f"normal_{k}"].fill_null(0).sum()) if f"normal_{k}" in df.columns else 0
        f = int(df[f"normal_flagged_{k}"].fill_null(0).sum()) if f"normal_flagged_{k}" in df.columns else 0
        lines.append(f"| {k} | {f} | {n:,} | {100 * f / max(n, 1):.3f}% |")
    lines += ["", f"Rows scored: {int(df['rows_scored'].sum()):,}; entity fit {df['fit_seconds'].sum():.0f} s, "
              f"entity scoring {df['score_seconds'].sum():.0f} s in all (2 shared cores).", ""]
    return "\n".join(lines)


def run_bench(rows: int, rounds: int, customers: int, train_days: int) -> str:
    from licanom.ops.bundle import ModelBundle, score_log
    from licanom.config import Config
    from licanom.data.context_vector import KeyHistory
    from licanom.data.derive import derive
    from licanom.detectors import build, inputs_of, spec
    from licanom.detectors.entities import EntityModel
    from licanom.data.pipeline import prepare
    from licanom.sim import simulate

    days = train_days + 1
    while True:  # the smallest simulation that holds `rows` rows after the training days
        sim = simulate("floating", seed=7, days=days, customers=customers)
        cut = sim.log["Time"].min().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=train_days)
        night = sim.log.filter(pl.col("Time") >= cut).sort("Time", "Id")
        if night.height >= rows:
            break
        days = train_days + int(np.ceil((days - train_days) * rows / max(night.height, 1) * 1.1))
    night = night.head(rows)
    train_raw = sim.log.filter(pl.col("Time") < cut)
    cfg = Config(vendor="bench")
    prepared = prepare(train_raw, cfg)
    cfg = cfg.for_size(int((~prepared.test_mask).sum()))
    det = build("Tail_context", cfg.train, cfg.detect, cfg.sequence, cfg.context, cfg.encode)
    det.fit(inputs_of(spec("Tail_context").inputs, prepared.chunks, prepared.encoded.frame)[~prepared.test_mask])
    bundle = ModelBundle(vendor="bench", detector=det, vocabulary=prepared.encoded.vocabulary, chunk=cfg.chunk,
                         encode=cfg.encode, product_ids=tuple(sorted(train_raw["ProductId"].unique().to_list())),
                         key_history=KeyHistory.from_rows(prepared.encoded.frame, levels=True))
    t0 = time.perf_counter()
    model = EntityModel().fit(derive(train_raw))
    fit_s = time.perf_counter() - t0
    derived = derive(night)
    chunk_s, entity_s, derive_s = [], [], []
    n_entities = n_flagged = 0
    for _ in range(rounds):  # interleaved, so a change of the machine's pace falls on both
        t0 = time.perf_counter()
        score_log(bundle, night)
        chunk_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        derive(night)
        derive_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = model.score(derived)
        entity_s.append(time.perf_counter() - t0)
        n_entities, n_flagged = out.height, int(out["is_anomaly"].sum())
    a, b, d = float(np.median(chunk_s)), float(np.median(entity_s)), float(np.median(derive_s))
    return "\n".join([
        "# Entity scoring",
        "",
        f"One simulated floating vendor ({customers} customers, seed 7): Tail_context bundle and entity model trained "
        f"on {train_days} days ({train_raw.height:,} rows; entity fit {fit_s:.1f} s), then the same {night.height:,} "
        f"later rows scored both ways, interleaved, median of {rounds} rounds, in one run (2 shared cores).",
        "",
        "| rows | `score_log` (Tail_context) [s] | entity scoring [s] | added | target | derive again [s] |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {night.height:,} | {a:.2f} | {b:.2f} | {100 * b / a:+.1f}% | <= 20% | {d:.2f} |",
        "",
        f"{n_entities:,} entities, {n_flagged} flagged. Entity scoring reads the derived rows (Time, Key, MachineCode, "
        "IP, country, success) that the night's chunk scoring derives anyway; a caller that derives the rows "
        "again pays the last column on top.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_entities", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows to score (default: 1000000)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--customers", type=int, default=1500, help="the simulated vendor's size (default: 1500)")
    p.add_argument("--train-days", type=int, default=3)
    p.add_argument("--eval-dev", action="store_true", help="also count what entities find on the development seeds")
    p.add_argument("--only-eval", action="store_true", help="skip the timing")
    p.add_argument("--profiles", default="node-locked,usage-based,floating,mixed")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--days", type=int, default=21)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    parts = []
    if not args.only_eval:
        parts.append(run_bench(args.rows, args.rounds, args.customers, args.train_days))
        print(parts[-1], flush=True)
    if args.eval_dev or args.only_eval:
        parts.append(run_eval(args.profiles.split(","), [int(s) for s in args.seeds.split(",")], args.days))
        print(parts[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.only_eval and args.out.exists():  # keep the timing written before
        text = args.out.read_text().split("\n## Found on the development seeds")[0].rstrip() + "\n\n" + parts[-1]
    else:
        text = "\n".join(parts)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
