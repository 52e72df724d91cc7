"""Other decisions on stored night chunks, measured offline (development seeds only).

``python -m benchmarks.eval_nightly --seeds 1,2,3,4,5,6 ... --detectors Tail_context --chunks-out
DIR`` keeps each vendor's judged night chunks (``severity``, the stored decision ``is_anomaly``,
``truth``, ``events``) and its entity results. This re-decides them two ways:

``night-reference``: the severity decision's night rule (licanom.detectors.decision.stands_out)
flags a chunk of severity at least a floor that lies a gap or more above its night's 90th
percentile; an event that fills more than a tenth of its night lifts that percentile itself. The
level's flags (severity >= 55) with the rule against other references for the night:

- ``p90``: the rule as it is (the script checks that it reproduces the stored decision);
- ``bulk p90``: the 90th percentile of the night's *normal bulk*, the night's severities that
  :func:`licanom.detectors.decision.normal_bulk` keeps (the calibration's trimming);
- ``p75``: the night's 75th percentile.

``key-day-newcomers``: the stored decision, and also every chunk that holds a request of a
flagged key-day's newcomers (the key's machine codes first seen that day and not in the training
rows): the requests that make a shared licence's key-day unusual, not the owner's own day. The
vendor's log is simulated again (the same world, profile and seed) for the training rows and the
night rows' Ids.

``small-nights``: the level's flags with the night rule as it was before small nights had their own
(every night against its 90th percentile, floor 40, gap 20), and with a night of fewer than K
chunks judged against its median (or 75th percentile) with its own floor and gap instead, with
the chunk itself among the night's severities (as the rule was until the report on 13001-13003)
or each chunk against the night's *other* chunks; the lower levels beside, for the line a level
draws. Stored chunks of runs before the small-night rule
(licanom.detectors.decision.SMALL_NIGHT_CHUNKS) hold the decision "as it was".

    python -m benchmarks.offline_decisions night-reference DIR [DIR ...]
    python -m benchmarks.offline_decisions key-day-newcomers DIR [DIR ...]
    python -m benchmarks.offline_decisions small-nights DIR [DIR ...]
    python -m benchmarks.offline_decisions tail-scale DIR [DIR ...]
    python -m benchmarks.offline_decisions event-origins DIR [DIR ...]
    python -m benchmarks.offline_decisions calibration-anchor DIR [DIR ...]
    python -m benchmarks.offline_decisions small-night-latest DIR [DIR ...]

``tail-scale``: the default decision (level and night rules as they are) with the severity's tail
scale multiplied by k: a severity above its value at the bulk's median is divided by k (100 stays
100, as the far rules give it). Each k draws one point of the line along which a vendor trades
events for false alarms; two runs (stored chunks of two versions of the code) compare along it.
A small night's reference is completed with the vendor's latest training chunks (read from the
``*.calibration.npy`` beside its chunks; without them, its other chunks alone).

``small-night-latest``: the tail scale's line twice, a small night's chunk judged against the
median of the night's other chunks alone (the decision until the report on 14001-14003) and with
the vendor's latest training chunks (``Calibration.recent``) as the library's night rule takes them:
on the report on 15001-15003 against the other chunks completed with them alone; since, above both
that median and the other chunks' own.

``event-origins``: no other decision; where the night's events, found and missed by the stored
decision, come from: an event that began in the training days and went on into the nights, a new
one from an address that a training-day event used, or a new one from another address. The vendor's
log is simulated again (the same world, profile and seed) and split as the run split it.

``calibration-anchor``: the default decision (the level, and the night rule) with the severity's
calibration anchored elsewhere than on its bulk's median: the bulk of the calibration scores
without their first block in time, whose out-of-fold scores hold the training log's first days (a
key's established machines new there). Reads the calibration scores that eval_nightly writes beside
the night chunks (``*.calibration.npy``, ``Tail_context``'s tail scale).

Each other measure prints events found, false alarms (flagged chunks without a labelled row, incident neighbours
included) per 10,000 chunks, as eval_nightly's tables count them, and vendors that flagged nothing
while events were present, overall and per world.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from licanom.detectors.decision import (
    DEFAULT_MIN_SEVERITY,
    DEFAULT_TRIM,
    SEVERITY_DECADES,
    STAND_OUT_FLOOR,
    STAND_OUT_GAP,
    normal_bulk,
    stands_out,
)

Reference = Callable[[np.ndarray], float]
VENDOR = ("world", "profile", "seed")


def _bulk_p90(sev: np.ndarray) -> float:
    keep = normal_bulk(sev, DEFAULT_TRIM) if sev.size >= 4 else np.ones(sev.size, dtype=bool)
    return float(np.quantile(sev[keep], 0.9))


REFERENCES: dict[str, Reference] = {
    "p90": lambda s: float(np.quantile(s, 0.9)),
    "bulk p90": _bulk_p90,
    "p75": lambda s: float(np.quantile(s, 0.75)),
}
# the entity severities at which a key-day's newcomers lift their chunks
KEY_DAY_SEVERITIES: tuple[float, ...] = (90.0, 95.0, 99.0)


def stored(folders: list[Path]) -> list[Path]:
    """The Tail_context night-chunk files in ``folders`` (one per vendor)."""
    files = sorted(f for d in folders for f in d.glob("*-Tail_context.parquet"))
    if not files:
        raise SystemExit(f"no *-Tail_context.parquet in {', '.join(map(str, folders))}: run eval_nightly with --chunks-out")
    return files


def judge(chunks: pl.DataFrame, flags: np.ndarray) -> tuple[float, float, int, dict[str, float]]:
    """Events found, false alarms (flagged chunks without a labelled row) per 10,000 chunks, silent
    vendors, events found per world."""
    x = chunks.with_columns(pl.Series("f", flags))
    normal = ~x["truth"]
    fa = float((x["f"] & normal).sum()) / max(x.height, 1) * 1e4  # per chunk, as the harness's tables
    events = (x.explode("events").filter(pl.col("events").is_not_null())
              .group_by(*VENDOR, "events").agg(pl.col("f").any()))
    silent = (x.group_by(*VENDOR).agg(pl.col("f").sum().alias("n"), pl.col("truth").sum().alias("t"))
              .filter((pl.col("n") == 0) & (pl.col("t") > 0)).height)
    per_world = dict(events.group_by("world").agg(pl.col("f").mean()).sort("world").iter_rows())
    return float(events["f"].mean()), fa, silent, per_world


def _line(name: str, chunks: pl.DataFrame, flags: np.ndarray) -> str:
    found, fa, silent, per_world = judge(chunks, flags)
    halves = []
    seeds = sorted(chunks["seed"].unique().to_list())
    for part in (seeds[: (len(seeds) + 1) // 2], seeds[(len(seeds) + 1) // 2:]):  # each half of the seeds (1-3 ; 4-6)
        if not part:
            continue
        half = chunks["seed"].is_in(part).to_numpy()
        f, a, s, _ = judge(chunks.filter(half), flags[half])
        halves.append(f"{f:.3f} / {a:.1f} / {s}")
    worlds = ", ".join(f"{w} {v:.2f}" for w, v in per_world.items())
    return f"| {name} | {found:.3f} | {fa:.1f} | {silent} | {' ; '.join(halves)} | {worlds} |"


NIGHT_CUT_HOUR = 0  # the hour the runs cut their nights at (eval_nightly --night-cut-hour; main sets it)


def _night_chunks(files: list[Path], *extra: str) -> pl.DataFrame:
    """The stored night chunks of ``files``, each with its night as the decision's night rule groups
    them: within one scoring pass (a vendor's chunks numbered from 0 again), the UTC day of its first
    request (licanom.ops.detect.chunk_nights), whatever hour the run cut its nights at. Cut at 02:00,
    a pass holds 22 hours of one UTC day and two of the next, which the next pass does not judge."""
    cols = (*VENDOR, "severity", *extra, "start_time", "truth", "events")
    return pl.concat(
        pl.read_parquet(f).select(*cols, ((pl.col("chunk") == 0).cum_sum() * 1_000_000 + pl.col("start_time").dt.epoch("d"))
                                  .alias("night"))
        for f in files)


def _by_night(chunks: pl.DataFrame, level: float, rule: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Severity at or above ``level``, or ``rule`` (one night's severities -> its flags), per vendor."""
    out = np.zeros(chunks.height, dtype=bool)
    for _, vendor in chunks.with_row_index("_i").group_by(list(VENDOR), maintain_order=True):
        sev, nights = vendor["severity"].to_numpy(), vendor["night"].to_numpy()
        flags = sev >= level
        for night in np.unique(nights):
            m = nights == night
            flags[m] |= rule(sev[m])
        out[vendor["_i"].to_numpy()] = flags
    return out


def night_reference(files: list[Path]) -> None:
    chunks = _night_chunks(files, "is_anomaly")

    def decide(reference: Reference, floor: float, gap: float, level: float = DEFAULT_MIN_SEVERITY) -> np.ndarray:
        return _by_night(chunks, level, lambda s: (s >= floor) & (s - reference(s) >= gap))

    as_it_is = _by_night(chunks, DEFAULT_MIN_SEVERITY, lambda s: stands_out(s, np.zeros(s.size)))  # small nights too
    mismatch = int((as_it_is != chunks["is_anomaly"].to_numpy()).sum())
    print(f"{len(files)} vendors, {chunks.height:,} night chunks; the rule as it is reproduces the stored "
          f"decision but for {mismatch} chunk(s) (a score at the threshold's edge); the rows below use the "
          f"90th percentile's rule for every night, small ones too")
    print("| reference, floor, gap | found | false alarms / 10k | silent | each half of the seeds | found per world |\n"
          "| --- | ---: | ---: | ---: | --- | --- |")
    for level in (52.0, 50.0):  # the rule as it is with a lower level, for the line a level draws
        print(_line(f"p90, {STAND_OUT_FLOOR:g}, {STAND_OUT_GAP:g}, level {level:g}", chunks,
                    decide(REFERENCES["p90"], STAND_OUT_FLOOR, STAND_OUT_GAP, level)))
    for name, ref in REFERENCES.items():
        for floor in (35.0, 40.0, 45.0):
            for gap in (20.0, 30.0):
                print(_line(f"{name}, {floor:g}, {gap:g}", chunks, decide(ref, floor, gap)))


def key_day_newcomers(files: list[Path]) -> None:
    from licanom.evaluation.nightly import WORLDS, NightlySettings, split_days

    settings = NightlySettings(night_cut_hour=NIGHT_CUT_HOUR)
    parts = []
    for f in files:
        c = pl.read_parquet(f)
        entities = pl.read_parquet(f.with_name(f.name.replace(".parquet", ".entities.parquet")))
        world, profile, seed = c["world"][0], c["profile"][0], int(c["seed"][0])
        train, nights = split_days(WORLDS[world].simulate(profile, seed, settings.days).log, settings)
        known = (train.filter(pl.col("MachineCode") != "").select("Key", "MachineCode").unique()
                 .with_columns(pl.lit(True).alias("_known")))
        night = (pl.concat(nights).with_columns(pl.col("Time").dt.date().alias("_day"))
                 .join(known, on=["Key", "MachineCode"], how="left")
                 .with_columns(pl.col("_day").min().over("Key", "MachineCode").alias("_first")))
        newcomers = night.filter(pl.col("_known").is_null() & (pl.col("MachineCode") != "")
                                 & (pl.col("_day") == pl.col("_first")))
        first, last = c["first_id"].to_numpy(), c["last_id"].to_numpy()
        key_days = (entities.filter(pl.col("entity_kind") == "key-day")
                    .with_columns(pl.col("start_time").dt.date().alias("_day")))
        base = c["is_anomaly"].to_numpy()
        lifted = {}
        for sev in KEY_DAY_SEVERITIES:
            flagged = key_days.filter(pl.col("severity") >= sev).select(pl.col("key").alias("Key"), "_day")
            ids = newcomers.join(flagged, on=["Key", "_day"])["Id"].to_numpy()
            at = np.searchsorted(first, ids, side="right") - 1
            at = at[(at >= 0) & (ids <= last[np.clip(at, 0, None)])]
            flags = base.copy()
            flags[at] = True
            lifted[f"lift {sev:g}"] = flags
        parts.append(c.select(*VENDOR, "truth", "events", "is_anomaly").with_columns(
            *(pl.Series(k, v) for k, v in lifted.items())))
    chunks = pl.concat(parts)
    print(f"{len(files)} vendors, {chunks.height:,} night chunks")
    print("| chunks flagged | found | false alarms / 10k | silent | each half of the seeds | found per world |\n"
          "| --- | ---: | ---: | ---: | --- | --- |")
    print(_line("the default decision", chunks, chunks["is_anomaly"].to_numpy()))
    for sev in KEY_DAY_SEVERITIES:
        print(_line(f"and those of the newcomers of key-days of severity >= {sev:g}", chunks,
                    chunks[f"lift {sev:g}"].to_numpy()))


# (chunks under which a night is small, its reference quantile, floor, gap) of the small-night rule
SMALL_NIGHT_VARIANTS: tuple[tuple[int, float, float, float], ...] = (
    (20, 0.5, 40.0, 20.0), (30, 0.5, 40.0, 20.0), (30, 0.5, 35.0, 25.0), (40, 0.5, 35.0, 25.0),
    (60, 0.5, 40.0, 20.0), (30, 0.75, 40.0, 20.0))
# the same, each chunk of a small night against its night's other chunks (the chunk itself left out)
SMALL_NIGHT_OTHERS: tuple[tuple[int, float, float, float], ...] = (
    (30, 0.5, 35.0, 25.0), (30, 0.5, 35.0, 20.0), (30, 0.5, 30.0, 25.0), (30, 0.5, 40.0, 25.0))


def small_nights(files: list[Path]) -> None:
    chunks = _night_chunks(files)

    def decide(small: int, q: float, floor: float, gap: float, level: float = DEFAULT_MIN_SEVERITY,
               others: bool = False) -> np.ndarray:
        def rule(s: np.ndarray) -> np.ndarray:
            if s.size < small:
                if others:  # each chunk against the quantile of the night's other chunks (none: not flagged)
                    ref = np.array([np.quantile(np.delete(s, i), q) if s.size > 1 else np.inf for i in range(s.size)])
                    return (s >= floor) & (s - ref >= gap)
                return (s >= floor) & (s - float(np.quantile(s, q)) >= gap)
            return (s >= STAND_OUT_FLOOR) & (s - float(np.quantile(s, 0.9)) >= STAND_OUT_GAP)
        return _by_night(chunks, level, rule)

    print(f"{len(files)} vendors, {chunks.height:,} night chunks")
    print("| decision | found | false alarms / 10k | silent | each half of the seeds | found per world |\n"
          "| --- | ---: | ---: | ---: | --- | --- |")
    print(_line("as it was (every night: 90th percentile, 40, 20)", chunks, decide(0, 0.9, 0.0, 0.0)))
    for level in (52.0, 50.0):
        print(_line(f"as it was, level {level:g}", chunks, decide(0, 0.9, 0.0, 0.0, level)))
    for small, q, floor, gap in SMALL_NIGHT_VARIANTS:
        print(_line(f"nights under {small}: quantile {q:g}, {floor:g}, {gap:g}", chunks, decide(small, q, floor, gap)))
    for small, q, floor, gap in SMALL_NIGHT_OTHERS:
        print(_line(f"nights under {small}: quantile {q:g} of the other chunks, {floor:g}, {gap:g}", chunks,
                    decide(small, q, floor, gap, others=True)))


# the tail scale's multipliers that tail-scale draws the line with
TAIL_SCALE_FACTORS: tuple[float, ...] = (0.8, 0.9, 1.0, 1.15, 1.3, 1.45, 1.6)


def _calibration_scores(files: list[Path]) -> dict[tuple[object, ...], np.ndarray]:
    """Each vendor's calibration scores in time order (``*.calibration.npy`` beside its night
    chunks; eval_nightly writes them), by (world, profile, seed); vendors without the file are left
    out."""
    out = {}
    for f in files:
        path = f.with_name(f.name.removesuffix(".parquet") + ".calibration.npy")
        if path.exists():
            out[pl.read_parquet(f, n_rows=1).select(*VENDOR).row(0)] = np.load(path)
    return out


def _latest_severities(files: list[Path]) -> dict[tuple[object, ...], np.ndarray]:
    """The severities of each vendor's latest training chunks (Calibration.recent), which complete a
    small night's reference in the default decision's night rule, from its calibration scores."""
    from licanom.detectors.context import TAIL_SCALE_NATS
    from licanom.detectors.decision import Calibration

    return {v: Calibration.fit(s, scale=TAIL_SCALE_NATS).recent_severity() for v, s in _calibration_scores(files).items()}


def _scaled(sev: np.ndarray, k: float) -> np.ndarray:
    """Severities with the tail's scale times ``k``: above its value at the bulk's median divided by k
    (100 stays 100, as the far rules give it)."""
    at_median = 100.0 * np.log10(2.0) / SEVERITY_DECADES  # the severity of a score at the bulk's median
    return np.where(sev >= 100.0, 100.0, np.where(sev > at_median, np.minimum(at_median + (sev - at_median) / k, 100.0), sev))


def _tail_scale_line(chunks: pl.DataFrame, latest: dict[tuple[object, ...], np.ndarray], k: float) -> np.ndarray:
    """The default decision with the tail scale times ``k``; a small night's reference completed with
    ``latest`` (empty: its other chunks alone)."""
    scaled = _scaled(chunks["severity"].to_numpy(), k)
    out = scaled >= DEFAULT_MIN_SEVERITY
    for key, vendor in chunks.with_row_index("_i").group_by(list(VENDOR), maintain_order=True):
        i = vendor["_i"].to_numpy()
        recent = latest.get(tuple(key), np.empty(0))
        out[i] |= stands_out(scaled[i], vendor["night"].to_numpy(), recent=_scaled(recent, k))
    return out


def tail_scale(files: list[Path]) -> None:
    chunks = _night_chunks(files)
    latest = _latest_severities(files)
    if len(latest) < len(files):
        print(f"{len(files) - len(latest)} vendor(s) without *.calibration.npy: their small nights are judged "
              "against their other chunks alone (the decision before the latest training chunks completed it)")
    print(f"{len(files)} vendors, {chunks.height:,} night chunks; severity's tail scale times k, the default decision")
    print("| k | found | false alarms / 10k | silent | each half of the seeds | found per world |\n"
          "| --- | ---: | ---: | ---: | --- | --- |")
    for k in TAIL_SCALE_FACTORS:
        print(_line(f"{k:g}", chunks, _tail_scale_line(chunks, latest, k)))


def small_night_latest(files: list[Path]) -> None:
    chunks = _night_chunks(files)
    latest = _latest_severities(files)
    if len(latest) < len(files):
        raise SystemExit(f"{len(files) - len(latest)} vendor(s) without *.calibration.npy: run eval_nightly --chunks-out "
                         "with a version that writes them")
    print(f"{len(files)} vendors, {chunks.height:,} night chunks; a small night's reference: its other chunks "
          "alone, or completed with the latest training chunks; along the tail scale's line")
    print("| reference, k | found | false alarms / 10k | silent | each half of the seeds | found per world |\n"
          "| --- | ---: | ---: | ---: | --- | --- |")
    for k in TAIL_SCALE_FACTORS:
        print(_line(f"other chunks, {k:g}", chunks, _tail_scale_line(chunks, {}, k)))
        print(_line(f"and the latest training chunks, {k:g}", chunks, _tail_scale_line(chunks, latest, k)))


# the levels along which calibration-anchor draws each anchor's line
ANCHOR_LEVELS: tuple[float, ...] = (50.0, 55.0, 60.0, 65.0)


def _anchors(scores: np.ndarray) -> dict[str, float]:
    """The bulk's median as the calibration takes it, and without the calibration's first block in
    time (the training log's first days, where a key's established machines are new)."""
    from licanom.detectors.decision import Calibration

    rest = scores[len(scores) // 4:]
    whole = Calibration.fit(scores).median
    return {"the bulk's median (as is)": whole,
            "the bulk's median without the first block": Calibration.fit(rest).median if len(scores) >= 16 else whole}


def calibration_anchor(files: list[Path]) -> None:
    from dataclasses import replace

    from licanom.detectors.context import TAIL_SCALE_NATS
    from licanom.detectors.decision import Calibration

    chunks = _night_chunks(files, "score")
    calibration = _calibration_scores(files)
    if len(calibration) < len(files):
        raise SystemExit(f"{len(files) - len(calibration)} vendor(s) without *.calibration.npy: run eval_nightly "
                         "--chunks-out with this version (it writes the calibration scores)")
    by_anchor: dict[str, np.ndarray] = {}
    latest: dict[str, dict[tuple[object, ...], np.ndarray]] = {}
    for key, vendor in chunks.with_row_index("_i").group_by(list(VENDOR), maintain_order=True):
        scores = calibration[tuple(key)]
        cal = Calibration.fit(scores, scale=TAIL_SCALE_NATS)
        for anchor, median in _anchors(scores).items():
            moved = replace(cal, median=median)
            sev = moved.severity(vendor["score"].to_numpy())
            by_anchor.setdefault(anchor, np.zeros(chunks.height))[vendor["_i"].to_numpy()] = sev
            latest.setdefault(anchor, {})[tuple(key)] = moved.recent_severity()
    stored_sev = chunks["severity"].to_numpy()
    as_is = next(iter(by_anchor.values()))
    print(f"{len(files)} vendors, {chunks.height:,} night chunks; the calibration as it is reproduces the stored "
          f"severities to {float(np.nanmax(np.abs(as_is - stored_sev))):.2g}")
    print("| calibration anchor, level | found | false alarms / 10k | silent | each half of the seeds | found per world |\n"
          "| --- | ---: | ---: | ---: | --- | --- |")
    for anchor, sev in by_anchor.items():
        for level in ANCHOR_LEVELS:
            flags = sev >= level
            for key, vendor in chunks.with_row_index("_i").group_by(list(VENDOR), maintain_order=True):
                i = vendor["_i"].to_numpy()
                flags[i] |= stands_out(sev[i], vendor["night"].to_numpy(), recent=latest[anchor][tuple(key)])
            print(_line(f"{anchor}, {level:g}", chunks, flags))


ORIGINS = ("went on from the training days", "new, from an address of a training-day event", "new, from another address")


def event_origins(files: list[Path]) -> None:
    from licanom.evaluation.nightly import WORLDS, NightlySettings, split_days

    settings = NightlySettings(night_cut_hour=NIGHT_CUT_HOUR)
    parts = []
    for f in files:
        c = pl.read_parquet(f)
        world, profile, seed = c["world"][0], c["profile"][0], int(c["seed"][0])
        sim = WORLDS[world].simulate(profile, seed, settings.days)
        train, nights = split_days(sim.log, settings)
        labels = sim.labels.select("Id", "event", "kind")
        before = train.join(labels, on="Id").filter(pl.col("event").is_not_null())
        night = pl.concat(nights).join(labels, on="Id").filter(pl.col("event").is_not_null())
        if not night.height:
            continue
        found = {int(e) for es in c.filter(pl.col("is_anomaly"))["events"].to_list() for e in es}
        addresses = set(before["IP"].to_list())
        went_on = set(before["event"].to_list())
        events = night.group_by("event", "kind").agg(pl.col("IP").first())
        parts.append(events.select(
            pl.lit(world).alias("world"), "kind",
            pl.when(pl.col("event").is_in(list(went_on))).then(pl.lit(ORIGINS[0]))
            .when(pl.col("IP").is_in(list(addresses))).then(pl.lit(ORIGINS[1]))
            .otherwise(pl.lit(ORIGINS[2])).alias("origin"),
            pl.col("event").is_in(list(found)).alias("found")))
    if not parts:
        raise SystemExit("no night held a labelled event")
    events = pl.concat(parts)
    print(f"{len(files)} vendors, {events.height} night events, found by the stored decision")
    print("| world | origin | events | found | share found |\n| --- | --- | ---: | ---: | ---: |")
    for (world, origin), part in sorted(events.group_by("world", "origin"), key=lambda g: (g[0][0], ORIGINS.index(g[0][1]))):
        n, k = part.height, int(part["found"].sum())
        print(f"| {world} | {origin} | {n} | {k} | {k / n:.2f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("measure", choices=("night-reference", "key-day-newcomers", "small-nights", "tail-scale", "event-origins",
                                       "calibration-anchor", "small-night-latest"))
    p.add_argument("folders", nargs="+", type=Path, help="folders written by eval_nightly --chunks-out")
    p.add_argument("--night-cut-hour", type=int, default=0,
                   help="the runs' eval_nightly --night-cut-hour (where a measure splits the simulated logs again)")
    args = p.parse_args(argv)
    global NIGHT_CUT_HOUR
    NIGHT_CUT_HOUR = args.night_cut_hour
    files = stored(args.folders)
    {"night-reference": night_reference, "key-day-newcomers": key_day_newcomers,
     "small-nights": small_nights, "tail-scale": tail_scale, "event-origins": event_origins,
     "calibration-anchor": calibration_anchor, "small-night-latest": small_night_latest}[args.measure](files)


if __name__ == "__main__":
    main()
