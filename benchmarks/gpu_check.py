"""Training on a GPU through the product's path: where it ran, repeatability, CPU scoring after.

Run it on a machine with a GPU, after `python -m benchmarks.bench_train --save-data out/case3.npz`
here (the check needs torch, Lightning and numpy only, not the simulator):

    python -m benchmarks.gpu_check --data out/case3.npz

For each variant it checks that Lightning's ``accelerator="auto"`` trained on the GPU, fits twice
with the same seed (cuDNN's LSTM kernels are not bit-repeatable, so it prints the largest score
difference rather than asserting none), and that the saved detector scores the same on the CPU.
Then the same for the LSTM/GRU + OC-SVM/SVDD sequence detectors with ``accelerator="gpu"``, both
solvers, on variable-length sequences cut from the same chunks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from licanom.detectors.autoencoders.detector import AutoencoderDetector
from licanom.detectors.autoencoders.nets import NETS
from licanom.detectors.sequence import SequenceDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help=".npz with arrays X and X_val")
    parser.add_argument("--models", default="all")
    parser.add_argument("--chunks", type=int, default=4_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no GPU visible to torch: nothing to check here")
    with np.load(args.data) as saved:
        X, X_val = saved["X"][:args.chunks], saved["X_val"]
    models = list(NETS) if args.models == "all" else args.models.split(",")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}; {len(X):,} chunks, {args.epochs} epochs")
    header = f"{'model':<15}{'device':>8}{'fit [s]':>9}{'val MAE':>9}{'repeat max |d|':>16}{'CPU reload':>12}"
    rows, failed = [], []
    for model in models:
        fits = [AutoencoderDetector(model, epochs=args.epochs, seed=0, progress_bar=False, threshold="M2").fit(X)
                for _ in range(2)]
        first, second = fits
        scores = first.decision_function(X_val)
        repeat = float(np.max(np.abs(scores - second.decision_function(X_val))))
        with tempfile.TemporaryDirectory() as tmp:
            again = AutoencoderDetector.load(first.save(Path(tmp) / "det.pt"))
        same = bool(np.array_equal(again.decision_function(X_val), scores))
        on_gpu = first.report_.device.startswith("cuda") and second.report_.device.startswith("cuda")
        if not (on_gpu and same and np.isfinite(scores).all()):
            failed.append(model)
        rows.append(f"{model:<15}{first.report_.device:>8}{first.report_.seconds:>9.1f}{scores.mean():>9.4f}"
                    f"{repeat:>16.2e}{'identical' if same else 'DIFFERS':>12}")
        print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)
    print("\n" + header + "\n" + "\n".join(rows))

    rng = np.random.default_rng(0)
    seqs = [x[:int(n)] for x, n in zip(X[:1_000], rng.integers(10, 101, 1_000), strict=True)]
    print(f"\nsequence detectors, accelerator='gpu': {len(seqs):,} sequences of 10-100 steps")
    header = f"{'model':<13}{'solver':>9}{'fit [s]':>9}{'objective':>11}{'repeat max |d|':>16}{'CPU reload':>12}"
    rows = []
    for model in ("LSTM_OCSVM", "GRU_SVDD"):
        for solver in ("gradient", "qp"):
            fits = []
            for _ in range(2):
                t0 = time.perf_counter()
                fits.append(SequenceDetector(model, solver=solver, epochs=5, accelerator="gpu", seed=0).fit(seqs))
                seconds = time.perf_counter() - t0
            first, second = fits
            scores = first.decision_function(seqs)
            repeat = float(np.max(np.abs(scores - second.decision_function(seqs))))
            trained_on = first._device().type  # the net comes back to the CPU after fit
            with tempfile.TemporaryDirectory() as tmp:
                again = SequenceDetector.load(first.save(Path(tmp) / "seq.pt"))
            same = bool(np.allclose(again.decision_function(seqs), scores, rtol=1e-5, atol=1e-6))
            if not (trained_on == "cuda" and same and np.isfinite(scores).all()):
                failed.append(f"{model}/{solver}")
            rows.append(f"{model:<13}{solver:>9}{seconds:>9.1f}{first.history_.objective[-1]:>11.4f}"
                        f"{repeat:>16.2e}{'same' if same else 'DIFFERS':>12}  (trained on {trained_on})")
            print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (not on the GPU, non-finite scores or a reload that differs)")


if __name__ == "__main__":
    main()
