"""Torch threads and side-by-side training on a small shared machine, at the thesis's batch size 32.

``python -m benchmarks.bench_threads`` (``make bench-threads``), everything measured in one run,
interleaved over ``--rounds`` rounds (medians, with the range):

1. one family at a time (an autoencoder, a sequence model), fitted through the product's path on
   one and on two torch threads, alone and beside a process that keeps one core busy (a spinning
   Python loop, as another vendor's job or another user would);
2. two variants (an LSTM and a TCN autoencoder): one after another on two threads, one after another
   on one thread, and side by side (``train.parallel: 2``: two processes, one thread each);
3. the framework's cost at batch 32: the product's fit (Lightning) against a plain PyTorch loop over
   the same net, data and optimiser.

Writes the tables to ``--out`` (default benchmarks/results/threads.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks import headline

RESULTS = Path(__file__).parent / "results" / "threads.md"
STABLE_WITHIN = 0.20  # issue 24: a fit beside a busy process, (max - min) / median over the rounds


def _fit_autoencoder(model: str, X: np.ndarray, threads: int, epochs: int) -> float:
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    det = AutoencoderDetector(model, epochs=epochs, batch_size=32, threshold="M2", val_fraction=0.0,
                              progress_bar=False, threads=threads, seed=0, accelerator="cpu")
    t0 = time.perf_counter()
    det.fit(X)
    return time.perf_counter() - t0


def _fit_sequence(model: str, X: np.ndarray, threads: int, epochs: int) -> float:
    from licanom.detectors.sequence.detector import SequenceDetector

    det = SequenceDetector(model, epochs=epochs, batch_size=32, threads=threads, seed=0)
    t0 = time.perf_counter()
    det.fit(X)
    return time.perf_counter() - t0


class Spinner:
    """A process that keeps one core busy while it lives."""

    def __enter__(self) -> Spinner:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def write_headlines(one: dict[tuple[str, int, bool], list[float]], model: str, configured: int,
                    args: argparse.Namespace, n_chunks: int, started: headline.Start) -> None:
    """Issue 24's two thread rows from part 1: how steady a fit on ``train.threads`` is beside a busy
    process, and whether ``train.threads`` is the faster of one and two threads alone."""
    size = f"{model}, {n_chunks:,} chunks, {args.epochs} epoch(s), batch 32, {args.rounds} round(s)"
    busy = {t: one[model, t, True] for t in (1, 2) if (model, t, True) in one}
    if configured in busy:
        v = busy[configured]
        spread = (max(v) - min(v)) / statistics.median(v)
        other = (f"; {3 - configured} thread(s): {_summary(busy[3 - configured])} s" if 3 - configured in busy
                 else f"; {3 - configured} thread(s) not run beside it")
        headline.write("threads-stability", started, figure=100 * spread, unit="%",
                       measured=f"{100 * spread:.0f}% on {configured} thread(s): {_summary(v)} s{other}",
                       met=spread <= STABLE_WITHIN, full_size=model == "LSTM_AE" and args.rounds >= 3,
                       conditions=f"{size}, beside a spinning process; train.threads = {configured}")
    alone = {t: statistics.median(one[model, t, False]) for t in (1, 2)}
    fastest = min(alone, key=alone.__getitem__)
    headline.write("threads-fastest", started, figure=fastest, unit="threads",
                   measured=f"{fastest} thread(s) fastest: 1 thread {_summary(one[model, 1, False])} s, "
                            f"2 threads {_summary(one[model, 2, False])} s; train.threads = {configured}",
                   met=fastest == configured,
                   full_size=model == "LSTM_AE" and n_chunks >= 19_004 and args.epochs == 1,
                   conditions=f"{size}, alone (other users' load aside)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--autoencoder", default="LSTM_AE")
    parser.add_argument("--sequence", default="LSTM_OCSVM",
                        help='the sequence model of part 1 ("none": the autoencoder alone, all the table\'s rows need)')
    parser.add_argument("--pair", default="LSTM_AE,TCN_AE", help="the two variants of part 2")
    parser.add_argument("--skip-two-threads", action="store_true", help="part 2 without the two-thread run")
    parser.add_argument("--parts", default="1,2,3", help="which of the three parts to run")
    parser.add_argument("--busy-threads", default="1,2",
                        help="thread counts of part 1 fitted beside the busy process (the stability row needs "
                             "train.threads' only; two-thread fits there take minutes on a shared 2-core machine)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from benchmarks.bench_train import case3_chunks, plain_loop
    from licanom.ops import training
    from licanom.config import load_config
    from licanom.data.pipeline import Prepared

    X, _ = case3_chunks(args.chunks, 0)
    load_before = os.getloadavg()[0]
    fits: dict[str, Callable[[int], float]] = {
        args.autoencoder: lambda t: _fit_autoencoder(args.autoencoder, X, t, args.epochs),
    }
    if args.sequence != "none":
        fits[args.sequence] = lambda t: _fit_sequence(args.sequence, X, t, args.epochs)
    # 1. threads x (alone, beside a busy process)
    one: dict[tuple[str, int, bool], list[float]] = {}
    parts = set(args.parts.split(","))
    busy_threads = {int(t) for t in args.busy_threads.split(",")}
    fits[args.autoencoder](1)  # warm up (imports, allocator)
    started = headline.start()
    for r in range(args.rounds if "1" in parts else 0):
        for busy in (False, True):
            for name, fit in fits.items():
                for threads in (1, 2) if r % 2 == 0 else (2, 1):
                    if busy and threads not in busy_threads:
                        continue
                    if busy:
                        with Spinner():
                            seconds = fit(threads)
                    else:
                        seconds = fit(threads)
                    one.setdefault((name, threads, busy), []).append(seconds)
                    print(f"round {r + 1}: {name} {threads} thread(s){' beside a busy process' if busy else ''}: "
                          f"{seconds:.2f} s", file=sys.stderr, flush=True)
    if one:
        write_headlines(one, args.autoencoder, load_config().train.threads or torch.get_num_threads(), args, len(X),
                        started)
    # 2. two variants: one after another (2 threads, 1 thread) and side by side
    pair = args.pair.split(",")
    cfg = load_config(overrides={"train": {"models": pair, "epochs": args.epochs, "batch_size": 32,
                                           "val_fraction": 0.0, "threads": 1},
                                 "detect": {"m1": False, "threshold": "M2"},
                                 "output_dir": "out/bench/threads"})
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    def sequential(threads: int) -> float:
        t0 = time.perf_counter()
        for model in pair:
            AutoencoderDetector(model, epochs=args.epochs, batch_size=32, threshold="M2", val_fraction=0.0,
                                progress_bar=False, threads=threads, seed=0, accelerator="cpu").fit(X)
        return time.perf_counter() - t0

    import polars as pl

    from licanom.data.chunk import Chunks

    n = len(X)
    chunks = Chunks(X=X, meta=pl.DataFrame({"chunk": np.arange(n)}), size=X.shape[1], stride=X.shape[1], tail_rows=0)
    # what fitting the autoencoders reads of a prepared log: the chunks and the split
    prepared = Prepared(validation=None, encoded=SimpleNamespace(frame=None), chunks=chunks,  # type: ignore[arg-type]
                        test_mask=np.zeros(n, dtype=bool))
    side_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"parallel": 2})})

    def side_by_side() -> float:
        t0 = time.perf_counter()
        training.fit_side_by_side(side_cfg, prepared)
        seconds = time.perf_counter() - t0
        shutil.rmtree(cfg.output_dir, ignore_errors=True)  # no checkpoint to resume in the next round
        return seconds

    two: dict[str, list[float]] = {}
    for r in range(args.rounds if "2" in parts else 0):
        for name, run in (("one after another, 2 threads", lambda: sequential(2)),
                          ("one after another, 1 thread", lambda: sequential(1)),
                          ("side by side, 2 processes x 1 thread", side_by_side)):
            if args.skip_two_threads and "2 threads" in name:
                continue
            two.setdefault(name, []).append(run())
            print(f"round {r + 1}: {pair} {name}: {two[name][-1]:.2f} s", file=sys.stderr, flush=True)
    # 3. framework cost at batch 32, one thread
    torch.set_num_threads(1)
    cost: dict[str, list[float]] = {}
    for _ in range(args.rounds if "3" in parts else 0):
        cost.setdefault("plain", []).append(plain_loop(args.autoencoder, X, args.epochs, 32))
        cost.setdefault("product", []).append(_fit_autoencoder(args.autoencoder, X, 1, args.epochs))
    load_after = os.getloadavg()[0]

    lines = [f"# Torch threads and side-by-side training ({os.cpu_count()} CPUs, torch {torch.__version__})", "",
             f"`python -m benchmarks.bench_threads {' '.join(sys.argv[1:])}`: {len(X):,} case-3 chunks, "
             f"{args.epochs} epoch(s), batch 32, {args.rounds} interleaved rounds; seconds as median (range). "
             f"1-min load average {load_before:.1f} before, {load_after:.1f} after (other users of the machine).",
             ]
    if one:
        lines += ["", "## One fit: one or two torch threads, alone or beside a busy process", "",
                  "| model | threads | alone [s] | beside a busy process [s] |", "| --- | ---: | ---: | ---: |"]
        for name in fits:
            for threads in (1, 2):
                beside = _summary(one[name, threads, True]) if (name, threads, True) in one else "not run"
                lines.append(f"| {name} | {threads} | {_summary(one[name, threads, False])} | {beside} |")
        for name in fits:
            for busy in (False, True):
                if (name, 1, busy) not in one or (name, 2, busy) not in one:
                    continue
                ratio = statistics.median(one[name, 2, busy]) / statistics.median(one[name, 1, busy])
                lines.append(f"\n{name}{' beside a busy process' if busy else ''}: two threads take {ratio:.2f}x "
                             "the time of one")
    if two:
        lines += ["", f"## Two variants ({', '.join(pair)})", "", "| how | seconds |", "| --- | ---: |"]
        lines += [f"| {name} | {_summary(v)} |" for name, v in two.items()]
        side = statistics.median(two["side by side, 2 processes x 1 thread"])
        lines += [""] + [f"side by side against {name}: {side / statistics.median(v):.2f}x the time"
                         for name, v in two.items() if not name.startswith("side")]
    if cost:
        plain, product = statistics.median(cost["plain"]), statistics.median(cost["product"])
        lines += ["", "## The framework's cost at batch 32 (one thread)", "",
                  f"{args.autoencoder}: plain PyTorch loop {_summary(cost['plain'])} s, the product's fit (Lightning) "
                  f"{_summary(cost['product'])} s: {100 * (product / plain - 1):+.0f}% (the fit also computes the "
                  "training errors and the threshold after training)"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
