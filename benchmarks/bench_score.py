"""Scoring raw log rows through the registered model's path, per detector family.

``python -m benchmarks.bench_score`` (``make bench-score``): simulates a floating-licence vendor
(cached under out/bench/), trains one bundle per family on its first rows (the default
``Tail_context``, the autoencoder ``TCN_AE``, the sequence model ``LSTM_OCSVM`` and the baseline
``IForest_summary``; one epoch for the networks: the speed of scoring does not depend on how well
they learned), then scores the first 0.1, 1 and 2.5 million rows of the log as the registered
model does (:class:`licanom.ops.tracking.LicanomPyfunc`'s ``predict``: validate, derive, encode, cut
windows, context, score; pandas in, pandas out) and prints rows/s and chunks/s, the best of
``--repeat`` passes (wall seconds, and the CPU seconds of all threads: on a busy machine the CPU
time moves less). ``--profile`` runs cProfile on the default detector's largest pass instead.

    python -m benchmarks.bench_score [--sizes 100000,1000000,2500000] [--models Tail_context]
    python -m benchmarks.bench_score --profile --sizes 2500000
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from benchmarks import headline
from benchmarks.bench_data import make_log

FAMILIES = {"Tail_context": "context", "TCN_AE": "autoencoder", "LSTM_OCSVM": "sequence",
            "IForest_summary": "classical"}
TARGET_ROWS_PER_S = 2_000_000  # the default detector, 2.5 M rows (issue 24)
TRAIN_ROWS = 300_000


def train_bundle(model: str, rows: pl.DataFrame, directory: Path) -> Path:
    """A bundle of ``model`` trained on ``rows`` (raw), saved in ``directory``; its path."""
    from licanom.ops.bundle import ModelBundle
    from licanom.config import load_config
    from licanom.data.context_vector import KeyHistory
    from licanom.ops.detect import evaluate_model, is_context_model, make_detector, model_inputs
    from licanom.data.pipeline import prepare

    cfg = load_config(overrides={"train": {"epochs": 1, "threads": 1},
                                 "detect": {"m1": False}})
    prepared = prepare(rows, cfg)
    cfg = cfg.for_size(int((~prepared.test_mask).sum()))
    detector = make_detector(model, cfg.train, cfg.detect, cfg.sequence, cfg.context, cfg.encode,
                             progress_bar=False)
    evaluate_model(detector, model_inputs(model, prepared), prepared.test_mask, cfg.detect)
    return ModelBundle(
        vendor=cfg.vendor, detector=detector, vocabulary=prepared.encoded.vocabulary, chunk=cfg.chunk,
        encode=cfg.encode, product_ids=tuple(sorted(prepared.validation.valid["ProductId"].unique().to_list())),
        key_history=KeyHistory.from_rows(prepared.encoded.frame, levels=True) if is_context_model(model) else None,
    ).save(directory / model)


def pyfunc(bundle_dir: Path) -> object:
    """The registered model's Python object over a saved bundle (what MLflow loads)."""
    from licanom.ops.tracking import LicanomPyfunc

    model = LicanomPyfunc()
    model.load_context(type("Context", (), {"artifacts": {"bundle": str(bundle_dir)}})())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,2500000")
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile the first model's largest pass")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    models = args.models.split(",")
    log = pl.read_parquet(make_log(max(max(sizes), TRAIN_ROWS)))
    work = Path(tempfile.mkdtemp(prefix="licanom-bench-score-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # the scratch folder goes with the run
    bundles = {}
    for model in models:
        t0 = time.perf_counter()
        bundles[model] = train_bundle(model, log.head(TRAIN_ROWS), work)
        print(f"trained {model} on {TRAIN_ROWS:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    inputs = {n: log.head(n).to_pandas() for n in sizes}
    if args.profile:
        model = pyfunc(bundles[models[0]])
        rows = inputs[max(sizes)]
        model.predict(None, inputs[min(sizes)])  # warm up
        prof = cProfile.Profile()
        prof.enable()
        model.predict(None, rows)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    started = headline.start()
    lines = [f"Scoring raw rows through the registered model (pandas in, pandas out), {os.cpu_count()} CPUs, "
             f"best of {args.repeat}; 1-min load average before: {os.getloadavg()[0]:.1f}", "",
             f"| model | family | rows | chunks | seconds | cpu s | rows/s | chunks/s | of {TARGET_ROWS_PER_S / 1e6:.0f} M rows/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    results, per_cpu = {}, {}
    for model in models:
        scorer = pyfunc(bundles[model])
        scorer.predict(None, inputs[min(sizes)])  # warm up (imports, caches)
        for n in sizes:
            best, cpu, chunks = float("inf"), float("inf"), 0
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                out = scorer.predict(None, inputs[n])
                best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
                chunks = len(out)
            results[model, n] = n / best
            per_cpu[model, n] = n / cpu
            line = (f"| {model} | {FAMILIES.get(model, '?')} | {n:,} | {chunks:,} | {best:.2f} | {cpu:.2f} | "
                    f"{n / best:,.0f} | {chunks / best:,.0f} | {n / best / TARGET_ROWS_PER_S:.2f}x |")
            lines.append(line)
            print(line, flush=True)
    default = models[0]
    if (default, max(sizes)) in results:
        got = results[default, max(sizes)]
        lines += ["", f"{default} on {max(sizes):,} rows: {got / 1e6:.2f} M rows/s against the target "
                  f"{TARGET_ROWS_PER_S / 1e6:.0f} M rows/s -> {'met' if got >= TARGET_ROWS_PER_S else 'NOT met'} "
                  f"({per_cpu[default, max(sizes)] / 1e6:.2f} M rows per CPU second)"]
        print(lines[-1])
        if default == "Tail_context":
            headline.write("score", started, figure=got, unit="rows/s", measured=f"{got / 1e6:.2f} M rows/s "
                           f"({per_cpu[default, max(sizes)] / 1e6:.2f} M rows per CPU s)",
                           met=got >= TARGET_ROWS_PER_S, full_size=max(sizes) >= 2_500_000,
                           conditions=f"{default}, {max(sizes):,} rows, best of {args.repeat}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
