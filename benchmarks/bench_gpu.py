"""The eight autoencoders and the sequence models at the thesis's case-3 volume, on a GPU when there is one.

``python -m benchmarks.bench_gpu`` (``make bench-gpu``): 19,004 training chunks of 100 x 8 of a
simulated floating vendor (as ``benchmarks.bench_train``; ``--data`` reads them from an .npz that
``bench_train --save-data`` wrote, for a machine without the simulator), then each of the eight
autoencoders trained for 10 epochs at the thesis's batch size 32 through the product's path
(``AutoencoderDetector`` -> Lightning, ``accelerator="auto"``), then the four LSTM/GRU +
OC-SVM/SVDD sequence models on the same chunks. Prints, per model, the device it trained on, the
seconds, and for the autoencoders the thesis's Figure 4.5 seconds and how many times faster this
run is (the thesis has no figure for the sequence models). One call of a few minutes on a GPU;
``--quick`` (a few hundred chunks, one epoch) runs on a CPU in about a minute, to check the script.

    python -m benchmarks.bench_gpu [--out benchmarks/results/gpu-bench.md]
    python -m benchmarks.bench_gpu --quick
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import headline
from benchmarks.bench_train import THESIS_SECONDS, case3_chunks
from licanom.detectors.autoencoders.detector import AutoencoderDetector
from licanom.detectors.autoencoders.nets import NETS
from licanom.detectors.sequence.detector import NEXT_EVENT_MODELS, SEQUENCE_MODELS

CASE3_CHUNKS = 19_004
TARGET_EIGHT_S = 8 * 60  # issue 24: the eight autoencoders at case-3 volume, 10 epochs, wall


def fit_one(model: str, X: np.ndarray, epochs: int, batch: int) -> tuple[str, str, float]:
    """One autoencoder through the product's path: (model, device, training seconds)."""
    det = AutoencoderDetector(model, epochs=epochs, batch_size=batch, threshold="M2", val_fraction=0.0,
                              progress_bar=False, seed=0).fit(X)
    assert det.report_ is not None
    return model, det.report_.device, det.report_.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 chunks, 1 epoch: a check that runs on a CPU")
    parser.add_argument("--chunks", type=int, default=None, help=f"training chunks (default {CASE3_CHUNKS:,})")
    parser.add_argument("--epochs", type=int, default=None, help="autoencoder epochs (default 10, the thesis's)")
    parser.add_argument("--seq-epochs", type=int, default=None, help="sequence-model epochs (default 10)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (the thesis's 32)")
    parser.add_argument("--models", default="all", help="autoencoders: 'all' or names, comma-separated")
    parser.add_argument("--sequence", default="all", help="sequence models: 'all', 'none' or names")
    parser.add_argument("--data", type=Path, default=None, help=".npz with an array X (bench_train --save-data)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    parser.add_argument("--parallel", type=int, default=1,
                        help="without a GPU: autoencoders fitted this many at a time, each in its own process on "
                             "one torch thread (as train.parallel does)")
    args = parser.parse_args()
    chunks = args.chunks or (600 if args.quick else CASE3_CHUNKS)
    epochs = args.epochs or (1 if args.quick else 10)
    seq_epochs = args.seq_epochs or (1 if args.quick else 10)
    if args.data:
        with np.load(args.data) as saved:
            X = saved["X"][:chunks]
    else:
        X, _ = case3_chunks(chunks, 0)
    gpu = torch.cuda.is_available()
    where = torch.cuda.get_device_name(0) if gpu else f"CPU ({torch.get_num_threads()} torch threads)"
    head = (f"{len(X):,} chunks of {X.shape[1]} x {X.shape[2]}, batch {args.batch}; torch {torch.__version__} "
            f"on {where}, {platform.node()}")
    print(head, flush=True)
    autoencoders = list(NETS) if args.models == "all" else [m for m in args.models.split(",") if m]
    sequence = ([m for m in SEQUENCE_MODELS if m not in NEXT_EVENT_MODELS] if args.sequence == "all"
                else [] if args.sequence == "none" else args.sequence.split(","))
    lines = ["| model | device | epochs | seconds | thesis (Fig. 4.5, 10 epochs) | times faster (scaled to 10 epochs, case 3) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    started = headline.start()
    t_all = time.perf_counter()
    parallel = 1 if gpu else max(1, args.parallel)
    if parallel > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from licanom.ops.side_by_side import one_thread

        where = f"CPU, {parallel} processes of one torch thread"
        with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=one_thread) as pool:
            fits = [f.result() for f in [pool.submit(fit_one, m, X, epochs, args.batch) for m in autoencoders]]
    else:
        fits = (fit_one(m, X, epochs, args.batch) for m in autoencoders)
    for model, device, seconds in fits:
        thesis = THESIS_SECONDS.get(model)
        per_10 = seconds * 10 / epochs * CASE3_CHUNKS / len(X)  # the thesis's: 10 epochs of case 3
        ratio = f"{thesis / per_10:.1f}" if thesis else "-"
        lines.append(f"| {model} | {device} | {epochs} | {seconds:.1f} | "
                     f"{thesis if thesis else '-'} | {ratio} |")
        print(lines[-1], flush=True)
    eight = time.perf_counter() - t_all
    if autoencoders:
        how = "one after another" if parallel == 1 else f"{parallel} at a time"
        headline.write("eight-autoencoders", started, figure=eight / 60, unit="min",
                       measured=f"{eight / 60:.1f} min ({eight:.0f} s; {len(autoencoders)} autoencoders {how} on {where})",
                       met=eight <= TARGET_EIGHT_S and len(autoencoders) == len(NETS),
                       full_size=(set(autoencoders) == set(NETS) and len(X) >= CASE3_CHUNKS and epochs >= 10
                                  and args.batch == 32),
                       conditions=f"{'the eight' if set(autoencoders) == set(NETS) else ', '.join(autoencoders)}; "
                                  f"{len(X):,} chunks, {epochs} epochs, batch {args.batch}")
    for model in sequence:
        from licanom.detectors.sequence.detector import SequenceDetector

        t0 = time.perf_counter()
        det = SequenceDetector(model, epochs=seq_epochs, batch_size=args.batch, seed=0,
                               accelerator="auto" if gpu else "cpu").fit(X)
        seconds = time.perf_counter() - t0
        lines.append(f"| {model} | {det._device() if gpu else 'cpu'} | {seq_epochs} | {seconds:.1f} | - | - |")
        print(lines[-1], flush=True)
    total = f"all models: {time.perf_counter() - t_all:.0f} s"
    print(total)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"{head}\n\n" + "\n".join(lines) + f"\n\n{total}; `python -m benchmarks.bench_gpu "
                            f"{' '.join(sys.argv[1:])}`\n")


if __name__ == "__main__":
    main()
