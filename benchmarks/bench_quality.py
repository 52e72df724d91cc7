"""Quality floors on planted anomalies (make bench-quality): each detector's AUROC on seeded vendors.

The bars the test suite held on fixed seeds until the tests became contracts (a quality bar pinned
to a seed is a measurement, not a test): a simulated floating-licence vendor with planted
anomalies of every kind, a detector fitted on its days, and the area under the ROC curve of its
scores against "the chunk holds a planted anomaly".

- the autoencoders (``LSTM_AE_Small``, ``TCN_AE``; thesis encoder, 4 epochs, batch 64): every
  chunk scored, floor 0.85;
- the context models (``Tail_context``, ``IForest_context``, ``LOF_context``; their default
  settings, quantile decision): fitted on the first 80% of the days, the held-out days' chunks
  scored, floor 0.85;
- the context vector alone (scikit-learn's ``IsolationForest`` on it): every chunk, floor 0.80.

Prints a Markdown table (and writes it with ``--out``); exits 1 when a row is under its floor.

    python -m benchmarks.bench_quality [--seeds 11] [--days 14] [--only Tail_context,TCN_AE] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUTOENCODERS = ("LSTM_AE_Small", "TCN_AE")
CONTEXT = ("Tail_context", "IForest_context", "LOF_context")
VECTOR = "context vector + IsolationForest"
FLOOR = {**dict.fromkeys(AUTOENCODERS, 0.85), **dict.fromkeys(CONTEXT, 0.85), VECTOR: 0.80}


@dataclass(frozen=True)
class Row:
    detector: str
    seed: int
    scored: str
    chunks: int
    anomalous: int
    auroc: float
    seconds: float

    @property
    def floor(self) -> float:
        return FLOOR[self.detector]

    @property
    def ok(self) -> bool:
        return bool(self.auroc >= self.floor)


def _vendor(seed: int, days: int, encoder: str | None):  # type: ignore[no-untyped-def]
    """A prepared floating-licence vendor (split in time) and its chunk-level truth."""
    from licanom.config import load_config
    from licanom.data.pipeline import prepare
    from licanom.evaluation.labels import chunk_truth
    from licanom.sim import simulate

    sim = simulate("floating", seed=seed, days=days)
    overrides: dict[str, object] = {"split": {"method": "time"}}
    if encoder:
        overrides["encode"] = {"encoder": encoder}
    prepared = prepare(sim.log, load_config(overrides=overrides))
    return prepared, chunk_truth(prepared.encoded.frame, prepared.chunks, sim.labels)


def _timed(detector: str, seed: int, scored: str, truth: np.ndarray, fit_score: Callable[[], np.ndarray]) -> Row:
    from licanom.evaluation.labels import auroc

    t0 = time.perf_counter()
    scores = fit_score()
    return Row(detector, seed, scored, len(truth), int(truth.sum()), auroc(truth, scores), time.perf_counter() - t0)


def autoencoder_rows(seed: int, days: int, models: tuple[str, ...]) -> list[Row]:
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    prepared, truth = _vendor(seed, days, "thesis")
    X = prepared.chunks.X
    train = X[~prepared.test_mask]

    def fit_score(model: str) -> Callable[[], np.ndarray]:
        return lambda: AutoencoderDetector(model, epochs=4, batch_size=64, seed=0, threads=1,
                                           progress_bar=False).fit(train).decision_function(X)

    return [_timed(m, seed, "every chunk", truth, fit_score(m)) for m in models]


def context_rows(seed: int, days: int, models: tuple[str, ...], vector: bool) -> list[Row]:
    from licanom.detectors.context import ContextDetector
    from licanom.ops.detect import model_inputs

    prepared, truth = _vendor(seed, days, None)
    X = model_inputs("Tail_context", prepared)
    test = prepared.test_mask

    def fit_score(model: str) -> Callable[[], np.ndarray]:
        return lambda: ContextDetector(model, threshold="quantile", seed=0).fit(X[~test]).decision_function(X[test])

    rows = [_timed(m, seed, "held-out days", truth[test], fit_score(m)) for m in models]
    if vector:
        from sklearn.ensemble import IsolationForest

        rows.append(_timed(VECTOR, seed, "every chunk", truth,
                           lambda: -IsolationForest(random_state=0).fit(X).score_samples(X)))
    return rows


def table(rows: list[Row], days: int) -> str:
    lines = [f"Floating-licence vendor, {days} simulated days, planted anomalies of every kind.", "",
             "| detector | seed | chunks scored | chunks | with an anomaly | AUROC | floor | fit + score [s] |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        mark = "" if r.ok else " **under**"
        lines.append(f"| {r.detector} | {r.seed} | {r.scored} | {r.chunks:,} | {r.anomalous:,} | "
                     f"{r.auroc:.3f}{mark} | {r.floor:.2f} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_quality", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="11", help="comma-separated simulator seeds (default: 11, the tests' seed)")
    p.add_argument("--days", type=int, default=14, help="simulated days per vendor (default: 14)")
    p.add_argument("--only", default="", help="comma-separated detectors (default: all; the vector's row is 'vector')")
    p.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {*AUTOENCODERS, *CONTEXT, "vector"}
    if unknown:
        p.error(f"unknown detector(s) {sorted(unknown)}; valid: {', '.join((*AUTOENCODERS, *CONTEXT, 'vector'))}")
    pick = (lambda names: tuple(n for n in names if not only or n in only))  # noqa: E731
    rows: list[Row] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        if pick(AUTOENCODERS):
            rows += autoencoder_rows(seed, args.days, pick(AUTOENCODERS))
        if pick(CONTEXT) or not only or "vector" in only:
            rows += context_rows(seed, args.days, pick(CONTEXT), vector=not only or "vector" in only)
    text = table(rows, args.days)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    under = [r for r in rows if not r.ok]
    if under:
        print(f"under the floor: {', '.join(f'{r.detector} (seed {r.seed}: {r.auroc:.3f})' for r in under)}")
    return 1 if under else 0


if __name__ == "__main__":
    sys.exit(main())
