"""Benchmark: the sequence models (LSTM/GRU + OC-SVM/SVDD) on variable-length sequences.

    make bench-sequence            # or: python -m benchmarks.bench_sequence [--n 10000 --epochs 10]

Gradient-based LSTM_OCSVM on ``--n`` sequences of mean length about 100 (lengths 10 to 500, a
log-normal spread), ``--epochs`` epochs, timed beside LSTM_AE on the same number of chunks of
100 x 8 (the same number of requests on average) in the same process; then the QP variant's
seconds per outer iteration (SMO to convergence + one Cayley step). Torch threads: all cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def sequences(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(80), 0.6, n)), 10, 500).astype(int)
    return [rng.random((k, 8), dtype=np.float32) for k in lengths]


def main(argv: list[str] | None = None) -> int:
    from licanom.detectors.autoencoders.detector import AutoencoderDetector
    from licanom.detectors.sequence.detector import SequenceDetector

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--qp-iterations", type=int, default=3)
    p.add_argument("--qp-n", type=int, default=10_000, help="sequences for the QP variant")
    args = p.parse_args(argv)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)

    X = sequences(args.n)
    lengths = np.array([len(x) for x in X])
    chunks = np.random.default_rng(1).random((args.n, 100, 8), dtype=np.float32)
    print(f"{args.n:,} sequences, lengths {lengths.min()}-{lengths.max()} (mean {lengths.mean():.0f}); "
          f"{args.epochs} epochs, batch {args.batch_size}, {threads} threads")

    rows = []
    t0 = time.perf_counter()
    det = SequenceDetector("LSTM_OCSVM", solver="gradient", epochs=args.epochs, batch_size=args.batch_size,
                           threads=threads).fit(X)
    seq_s = time.perf_counter() - t0
    rows.append(("LSTM_OCSVM gradient", args.n, seq_s, seq_s / args.epochs))
    t0 = time.perf_counter()
    AutoencoderDetector(model="LSTM_AE", epochs=args.epochs, batch_size=args.batch_size, threads=threads,
                        val_fraction=0.0, progress_bar=False).fit(chunks)
    ae_s = time.perf_counter() - t0
    rows.append(("LSTM_AE (chunks 100x8)", args.n, ae_s, ae_s / args.epochs))

    Xq = X[: args.qp_n]
    t0 = time.perf_counter()
    qp = SequenceDetector("LSTM_OCSVM", solver="qp", epochs=args.qp_iterations, tol=0.0, threads=threads).fit(Xq)
    qp_s = time.perf_counter() - t0
    seconds = np.asarray(qp.history_.seconds)  # per outer iteration; entry 0 is the first SMO, before any step
    per_outer = float(seconds[1:].mean()) if len(seconds) > 1 else float(seconds.mean())
    rows.append((f"LSTM_OCSVM qp ({len(seconds) - 1} outer)", len(Xq), qp_s, per_outer))

    print(f"\n{'model':<30}{'sequences':>10}{'seconds':>10}{'s/epoch or s/outer':>20}")
    for name, n, s, per in rows:
        print(f"{name:<30}{n:>10,}{s:>10.1f}{per:>20.2f}")
    print(f"\nLSTM_OCSVM (gradient) / LSTM_AE on the same number of items: {seq_s / ae_s:.2f}x the time; "
          f"score: {det.decision_function(X[:1000]).shape[0]} sequences scored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
