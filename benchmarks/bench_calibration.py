"""How the severity's tail holds on held-out nights, and other fits of it (development seeds only).

For each simulated vendor in nightly mode (``licanom.evaluation.nightly.scored_variants``: train
on the first days, score each later day as its own night), the detector's calibration scores
(out-of-fold scores of its training chunks) and its night chunks' scores. Each fit below maps
the same calibration scores to a severity; labels are read only to judge:

* ``current``: the detector's own severity (its :class:`licanom.detectors.decision.Calibration`;
  for ``Tail_context`` an exponential tail of one scale for every vendor above the bulk's median);
* ``fitted``: ``Calibration.fit`` with its scale fitted to each vendor's bulk (an exponential tail
  through the normal bulk's median and 90th percentile: Tail_context's until its scale was fixed);
* ``upper-80-98``: above the bulk's 80th percentile, an exponential through its 80th and 98th
  percentiles (the larger of that scale and the current one);
* ``gpd-80``: above the bulk's 80th percentile, a generalised Pareto fitted to the excesses
  (scipy, shape clipped to [0, 0.5]).

Printed: for the current fit, the share of normal night chunks at or above each severity beside
the tail probability that severity stands for; for every fit, events found and false alarms per
10,000 chunks pooled over the vendors at each severity level. ``docs/choosing-defaults.md``
quotes a run on seeds 1-6.

    python -m benchmarks.bench_calibration --seeds 1,2,3 --jobs 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Callable
from typing import Any
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl

LEVELS = (30, 40, 50, 55, 60, 65, 70, 80)
_LN10 = float(np.log(10.0))


def vendor(world: str, profile: str, seed: int, detector: str) -> dict[str, object]:
    """One vendor's calibration scores, night scores and labels (or why it could not be built)."""
    from licanom.evaluation.nightly import WORLDS, NightlySettings, night_truth, scored_variants
    from licanom.sim import ShareNotReached

    settings = NightlySettings(detectors=(detector,), clustering=False)
    out: dict[str, object] = {"world": world, "profile": profile, "seed": seed}
    try:
        sim = WORLDS[world].simulate(profile, seed, settings.days)
    except ShareNotReached as err:
        return {**out, "unbuilt": str(err)}
    (scored,) = scored_variants(sim, settings)
    if scored.chunks is None:
        return out
    truth, held, _ = night_truth(scored.chunks, sim.log, sim)
    assert scored.bundle is not None  # nightly mode: the trained bundle
    calibration = np.asarray(scored.bundle.detector.calibration_scores_, dtype=np.float64)  # type: ignore[attr-defined]
    return {**out, "calibration": calibration, "score": scored.chunks["score"].to_numpy(),
            "severity": scored.chunks["severity"].to_numpy(), "truth": truth, "held": [sorted(h) for h in held]}


def _severity(log10_p: np.ndarray) -> np.ndarray:
    from licanom.detectors.decision import SEVERITY_DECADES

    return np.clip(-np.minimum(log10_p, 0.0) / SEVERITY_DECADES * 100.0, 0.0, 100.0)


def _far_rule(cal: Any, scores: np.ndarray, severity: np.ndarray) -> np.ndarray:
    """``severity`` with Calibration's far-beyond rule applied (100 from ``cal.far_score`` on)."""
    far = cal.far_score
    return severity if far is None else np.where(scores >= far, 100.0, severity)


def current(v: dict[str, np.ndarray]) -> np.ndarray:
    return v["severity"]


def fitted(v: dict[str, np.ndarray]) -> np.ndarray:
    from licanom.detectors.decision import Calibration

    return Calibration.fit(v["calibration"]).severity(v["score"])


def upper(v: dict[str, np.ndarray], lo: float = 0.8, hi: float = 0.98) -> np.ndarray:
    from licanom.detectors.decision import Calibration, normal_bulk

    calibration, scores = v["calibration"], v["score"]
    cal = Calibration.fit(calibration)
    q_lo, q_hi = np.quantile(calibration[normal_bulk(calibration)], [lo, hi])
    beta = max((q_hi - q_lo) / np.log((1 - lo) / (1 - hi)), cal.beta)
    log10_p = np.where(scores > q_lo, (np.log(1 - lo) - (scores - q_lo) / beta) / _LN10, cal.log10_tail(scores))
    return _far_rule(cal, scores, _severity(log10_p))


def gpd(v: dict[str, np.ndarray], lo: float = 0.8) -> np.ndarray:
    from scipy.stats import genpareto

    from licanom.detectors.decision import Calibration, normal_bulk

    calibration, scores = v["calibration"], v["score"]
    cal = Calibration.fit(calibration)
    bulk = calibration[normal_bulk(calibration)]
    u = float(np.quantile(bulk, lo))
    excess = bulk[bulk > u] - u
    if len(excess) < 10:  # too few to fit a shape: the current fit
        return cal.severity(scores)
    shape, _, scale = genpareto.fit(excess, floc=0.0)
    shape = min(max(shape, 0.0), 0.5)
    log10_p = np.where(scores > u, (np.log(1 - lo) + genpareto.logsf(scores - u, shape, 0.0, scale)) / _LN10,
                       cal.log10_tail(scores))
    return _far_rule(cal, scores, _severity(log10_p))


FITS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {"current": current, "fitted": fitted,
                                                                  "upper-80-98": upper, "gpd-80": gpd}


def judge(vendors: list[dict[str, object]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the current fit's observed share of normal chunks against the nominal one per level,
    events found and false alarms per 10,000 chunks per fit and level, pooled)."""
    from licanom.detectors.decision import SEVERITY_DECADES

    rows, normal_sev = [], []
    for v in vendors:
        if "score" not in v:
            continue
        truth, held = np.asarray(v["truth"]), v["held"]
        present = set().union(*map(set, held)) if held else set()  # type: ignore[arg-type]
        for name, fit in FITS.items():
            severity = fit(v)  # type: ignore[arg-type]
            if name == "current":
                normal_sev.append(severity[~truth])
            for level in LEVELS:
                flagged = severity >= level
                found = set().union(*(set(h) for h, f in zip(held, flagged, strict=True) if f))  # type: ignore[arg-type]
                rows.append({"fit": name, "severity": level, "chunks": len(truth), "false_alarms": int((flagged & ~truth).sum()),
                             "events": len(present), "found": len(found & present)})
    normal = np.concatenate(normal_sev) if normal_sev else np.zeros(0)
    tail = pl.DataFrame([{"severity >=": level, "stands for": 10 ** (-level / 100 * SEVERITY_DECADES),
                          "normal night chunks at or above": float((normal >= level).mean()) if len(normal) else None}
                         for level in LEVELS]).with_columns(
        (pl.col("normal night chunks at or above") / pl.col("stands for")).alias("ratio"))
    pooled = (pl.DataFrame(rows).group_by("fit", "severity", maintain_order=True)
              .agg((pl.col("found").sum() / pl.col("events").sum()).alias("events found"),
                   (pl.col("false_alarms").sum() * 10_000 / pl.col("chunks").sum()).alias("false alarms / 10k")))
    return tail, pooled


def _markdown(frame: pl.DataFrame) -> str:
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in frame.iter_rows()]
    lines = ["| " + " | ".join(frame.columns) + " |", "| " + " | ".join("---:" for _ in frame.columns) + " |"]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def main(argv: list[str] | None = None) -> int:
    from licanom.evaluation.nightly import PROFILES, REPORT_SEEDS, SWEEP, _one_thread

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3", help="development seeds, comma-separated (never the report seeds)")
    p.add_argument("--detector", default="Tail_context")
    p.add_argument("--jobs", type=int, default=2, help="vendors at once (processes)")
    args = p.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    if set(seeds) & set(REPORT_SEEDS):
        raise SystemExit(f"the report seeds {REPORT_SEEDS} are not for choosing: use development seeds")
    tasks = [(w.name, profile, seed, args.detector) for w in SWEEP for profile in PROFILES for seed in seeds]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        vendors = list(pool.map(vendor, *zip(*tasks, strict=True)))
    unbuilt = sum("unbuilt" in v for v in vendors)
    tail, pooled = judge(vendors)
    print(f"{args.detector}, seeds {args.seeds}, the {len(SWEEP)} worlds of the sweep, {len(vendors) - unbuilt} vendors "
          f"({unbuilt} the simulator could not build)\n")
    print("The current fit on held-out nights:\n\n" + _markdown(tail) + "\n")
    wide = pooled.pivot(on="fit", index="severity", values=["events found", "false alarms / 10k"])
    print("Every fit, pooled over the vendors:\n\n" + _markdown(wide))
    return 0


if __name__ == "__main__":
    sys.exit(main())
