"""Training benchmark at the thesis's case-3 volume: 19,004 chunks of 100 x 8, ten epochs.

For each variant it trains through the product's own path (AutoencoderDetector -> Lightning)
and, side by side in the same process, through a plain PyTorch loop over the same net, data,
batch size and optimiser, so that the framework's overhead is a ratio measured on the same
machine at the same time. It prints the thesis's Figure 4.5 seconds beside ours, the speed-up,
the validation loss reached, and scoring throughput (chunks per second). With ``--repeat N`` it
trains every variant N times in turn (round-robin, so a slow spell of a shared machine falls on all
variants alike) and judges the bars on the median; the range of the N times is printed beside it.
Round r seeds the weights and the shuffling with r - 1, so the validation loss is also a median over
N seeds, with its range: a difference between batch sizes smaller than that range is noise.

    python -m benchmarks.bench_train                    # every variant, batch 128, 10 epochs
    python -m benchmarks.bench_train --batch 32,128     # also the thesis's batch size
    python -m benchmarks.bench_train --batch 128,512 --lr 0.001,0.004   # a learning rate per batch size
    python -m benchmarks.bench_train --models TCN_AE --epochs 2 --plain-epochs 1
    python -m benchmarks.bench_train --repeat 3 --out benchmarks/results/train-cpu.md   # medians of 3 rounds
    python -m benchmarks.bench_train --save-data out/case3.npz        # the chunks, for another machine
    python -m benchmarks.bench_train --data out/case3.npz             # ... trained there (no simulator needed)

Both paths train on the device Lightning's ``accelerator="auto"`` picks: a GPU when present.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import headline
from licanom.detectors.autoencoders.detector import AutoencoderDetector
from licanom.detectors.autoencoders.nets import NETS, build_net, tune_cpu_allocator

# Thesis Figure 4.5, floating (case 3): seconds for 10 epochs.
THESIS_SECONDS = {
    "LSTM_AE": 1067.8, "LSTM_AE_Small": 938.1, "LSTM_AE_Deep": 1627.3, "LSTM_AE_Deep2": 2000.5,
    "TCN_AE": 214.4, "TCN_AE2": 216.2, "TCN_AE_Small": 202.8, "TCN_AE_Small2": 217.8,
}
BAR = {"lstm": 15.0, "tcn": 3.0}
CACHE = Path("out/bench")
TARGET_COST_32 = 0.05  # issue 24: the framework's cost over a plain PyTorch loop at batch 32


def case3_chunks(n_train: int, n_val: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Chunks of a simulated floating vendor: n_train for training and n_val held out."""
    path = CACHE / f"case3_{n_train}_{n_val}_{seed}.npy"
    if path.exists():
        X = np.load(path)
    else:
        from licanom.config import load_config
        from licanom.data.pipeline import prepare
        from licanom.sim import simulate

        need, days = n_train + n_val, 365
        while True:
            sim = simulate("floating", seed=seed, days=days)
            if sim.log.height >= need * 100:
                break
            days = int(days * need * 100 / sim.log.height * 1.1) + 1
        # the thesis's 8 features per request (the vendors' default encoder has more)
        X = prepare(sim.log.head(need * 100), load_config(overrides={"encode": {"encoder": "thesis"}})).chunks.X
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, X)
    order = np.random.default_rng(seed).permutation(len(X))
    return X[order[:n_train]], X[order[n_train:n_train + n_val]]


def device() -> torch.device:
    """The device Lightning's ``accelerator="auto"`` trains on."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def plain_loop(model: str, X: np.ndarray, epochs: int, batch: int, lr: float = 1e-3, seed: int = 0,
               cpu: list[float] | None = None) -> float:
    """Seconds for `epochs` epochs of a bare PyTorch loop (Adam, L1) over the same data, on the
    same device as the product's path (each batch copied from host memory, as its loader does);
    its CPU seconds are appended to ``cpu`` when given."""
    dev = device()
    torch.manual_seed(seed)
    net = build_net(model, chunk_size=X.shape[1], n_features=X.shape[2]).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True)  # as the product's module
    data = torch.from_numpy(X)
    g = torch.Generator().manual_seed(seed)
    net.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=g).split(batch):
            xb = data[idx].to(dev, non_blocking=True)
            loss = F.l1_loss(net(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0


@contextmanager
def fit_cpu_seconds() -> Iterator[list[float]]:
    """The CPU seconds (this process, all threads) of each ``Trainer.fit`` inside the block: the
    span the product's ``report_.seconds`` times in wall seconds."""
    import pytorch_lightning as L

    spent: list[float] = []
    fit = L.Trainer.fit

    def timed(self: L.Trainer, *args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        try:
            return fit(self, *args, **kwargs)
        finally:
            spent.append(time.process_time() - t0)

    L.Trainer.fit = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        L.Trainer.fit = fit  # type: ignore[method-assign]


def warm_up(model: str, X: np.ndarray, batch: int) -> None:
    """One small fit through each path before anything is timed: the process's first fit pays
    once for lazy imports and first calls (about a second), which is no cost of an epoch."""
    plain_loop(model, X[:4 * batch], 1, batch)
    AutoencoderDetector(model, epochs=1, batch_size=batch, val_fraction=0.0, progress_bar=False, threshold="M2",
                        seed=0).fit(X[:4 * batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--plain-epochs", type=int, default=2,
                        help="epochs of the plain loop (per-epoch time compared), half before and half after "
                             "the product's fit")
    parser.add_argument("--batch", default="128")
    parser.add_argument("--lr", default="0.001",
                        help="Adam's learning rate: one for every batch size, or one per --batch entry")
    parser.add_argument("--chunks", type=int, default=19_004)
    parser.add_argument("--val-chunks", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over all variants; the table gives medians and the range")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    parser.add_argument("--data", type=Path, default=None,
                        help="read the chunks from this .npz (arrays X and X_val) instead of simulating them")
    parser.add_argument("--save-data", type=Path, default=None,
                        help="write the chunks to this .npz and stop")
    args = parser.parse_args()
    if args.repeat < 1 or args.plain_epochs < 1:
        parser.error(f"--repeat and --plain-epochs must be >= 1, got {args.repeat} and {args.plain_epochs}")
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()  # the product's training path does this too: same footing for both
    models = list(NETS) if args.models == "all" else args.models.split(",")
    batches = [int(b) for b in args.batch.split(",")]
    lrs = [float(v) for v in args.lr.split(",")]
    if len(lrs) == 1:
        lrs *= len(batches)
    if len(lrs) != len(batches):
        parser.error(f"--lr gives {len(lrs)} learning rates for {len(batches)} batch sizes")
    if args.data is not None:
        with np.load(args.data) as saved:
            X, X_val = saved["X"][:args.chunks], saved["X_val"][:args.val_chunks]
    else:
        X, X_val = case3_chunks(args.chunks, args.val_chunks)
    if args.save_data is not None:
        args.save_data.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save_data, X=X, X_val=X_val)
        print(f"wrote {args.save_data}: {len(X):,} + {len(X_val):,} chunks")
        return
    dev = device()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    title = (f"{len(X):,} training chunks {X.shape[1:]}, {len(X_val):,} held-out; torch {torch.__version__}, "
             f"{where}; {args.epochs} epochs; {args.repeat} round(s)")
    print(title, flush=True)
    runs: dict[tuple[str, int, float], list[Run]] = {}
    warm_up(models[0], X, batches[0])
    started = headline.start()
    # Round-robin: every round trains each variant once, so a slow spell of a shared machine
    # falls on all of them instead of on whichever model happened to be running.
    for rnd in range(1, args.repeat + 1):
        for model in models:
            for batch, lr in zip(batches, lrs, strict=True):
                run = measure(model, X, X_val, batch, lr, args.epochs, args.plain_epochs, dev, seed=rnd - 1)
                runs.setdefault((model, batch, lr), []).append(run)
                print(f"round {rnd}/{args.repeat} {model:<15} batch {batch:>4} lr {lr:g}: ours {run.ours:6.1f} s, "
                      f"plain {run.plain_per_epoch:5.2f} s/epoch, overhead {run.overhead(args.epochs):+.1%} wall, "
                      f"{run.cpu_overhead(args.epochs):+.1%} CPU, val MAE {run.val_mae:.4f}", flush=True)
    table = render(runs, args.epochs, args.repeat)
    print("\n" + table)
    # The framework's cost at batch 32 per net (as in the table; its worst lr), in wall and in CPU
    # seconds. On one CPU thread it is judged in CPU seconds: the plain loop and the fit alternate
    # in one process, but other users of a shared machine take wall seconds from one side or the
    # other at random (benchmarks/results/train-framework-cost.md); on more threads or a GPU, in wall seconds.
    on_cpu = "CPU" if dev.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    wall32: dict[str, float] = {}
    cpu32: dict[str, float] = {}
    for (model, batch, _), rs in runs.items():
        if batch == 32:
            for costs, cost in ((wall32, statistics.median(r.overhead(args.epochs) for r in rs)),
                                (cpu32, statistics.median(r.cpu_overhead(args.epochs) for r in rs))):
                costs[model] = max(cost, costs.get(model, cost))
    if wall32:
        at32 = cpu32 if on_cpu == "CPU" else wall32
        worst = max(at32, key=at32.__getitem__)
        other, other_name = (wall32, "wall") if on_cpu == "CPU" else (cpu32, "CPU")
        headline.write("framework-cost", started, figure=100 * at32[worst], unit="%",
                       measured=f"{at32[worst]:+.1%} in {on_cpu} seconds ({worst}, the worst of {len(at32)} nets); "
                                f"in {other_name} seconds the worst {max(other.values()):+.1%}",
                       met=at32[worst] <= TARGET_COST_32,
                       full_size=len(X) >= 19_004 and set(at32) == set(NETS) and args.epochs >= 10,
                       conditions=", ".join(f"{m} {c:+.1%}" for m, c in at32.items())
                       + f" ({on_cpu}); {len(X):,} chunks, {args.epochs} epochs, {args.plain_epochs} plain epochs "
                       f"around each fit, median of {args.repeat} round(s), {where}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = f"python -m benchmarks.bench_train {' '.join(sys.argv[1:])}"
        measured = f"Measured {datetime.date.today().isoformat()} on {_cpu_name()} ({os.cpu_count()} CPUs)."
        args.out.write_text(f"# Training speed, `{command}`\n\n{measured} {title}\n\n```\n{table}\n```\n")
        print(f"wrote {args.out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Run:
    """One side-by-side measurement of a variant: the plain loop, then the product's path."""

    plain_per_epoch: float  # seconds
    ours: float  # seconds for all epochs through AutoencoderDetector.fit
    val_mae: float
    score_per_s: float  # held-out chunks scored per second
    plain_cpu_per_epoch: float  # CPU seconds (this process, all threads)
    ours_cpu: float  # CPU seconds of the product's Trainer.fit (the span ``ours`` times)

    def overhead(self, epochs: int) -> float:
        """The framework's cost in wall seconds: ours per epoch over the plain loop's, minus 1."""
        return self.ours / epochs / self.plain_per_epoch - 1

    def cpu_overhead(self, epochs: int) -> float:
        """The same in CPU seconds: what a shared machine's other users do not move."""
        return self.ours_cpu / epochs / self.plain_cpu_per_epoch - 1


def measure(model: str, X: np.ndarray, X_val: np.ndarray, batch: int, lr: float, epochs: int,
            plain_epochs: int, dev: torch.device, seed: int = 0) -> Run:
    # The plain loop's epochs bracket the product's fit (half before, half after), so a change of
    # the machine's pace during the fit moves both sides of the overhead ratio alike.
    before = (plain_epochs + 1) // 2
    plain_cpu: list[float] = []
    plain_s = plain_loop(model, X, before, batch, lr, seed, cpu=plain_cpu)
    det = AutoencoderDetector(model, epochs=epochs, batch_size=batch, lr=lr, val_fraction=0.0,
                              progress_bar=False, threshold="M2", seed=seed)
    with fit_cpu_seconds() as ours_cpu:
        det.fit(X)
    if plain_epochs > before:
        plain_s += plain_loop(model, X, plain_epochs - before, batch, lr, seed, cpu=plain_cpu)
    plain = plain_s / plain_epochs
    assert det.report_.device == str(dev), (det.report_.device, dev)
    t0 = time.perf_counter()
    scores = det.decision_function(X_val)  # per-chunk MAE: timed for throughput, averaged for the loss
    throughput = len(X_val) / (time.perf_counter() - t0)
    return Run(plain, det.report_.seconds, float(scores.mean()), throughput, sum(plain_cpu) / plain_epochs,
               sum(ours_cpu))


def render(runs: dict[tuple[str, int, float], list[Run]], epochs: int, rounds: int) -> str:
    """The table: medians over the rounds (the bar is judged on the median), the ranges of ours and of val MAE."""
    header = (f"{'model':<15}{'batch':>6}{'lr':>7}{'ours [s]':>10}{'min-max [s]':>14}{'thesis [s]':>11}"
              f"{'speed-up':>9}{'bar':>6}{'plain/epoch':>12}{'ours/epoch':>11}{'overhead':>9}{'CPU':>7}{'val MAE':>9}{'seeds':>15}"
              f"{'score ch/s':>11}")
    lines = [header]
    for (model, batch, lr), rs in runs.items():
        family = "lstm" if model.startswith("LSTM") else "tcn"
        ours = statistics.median(r.ours for r in rs)
        plain = statistics.median(r.plain_per_epoch for r in rs)
        # overhead: each round's ratio (its plain epochs bracket its fit), then the median of those
        overhead = statistics.median(r.overhead(epochs) for r in rs)
        cpu_overhead = statistics.median(r.cpu_overhead(epochs) for r in rs)
        speedup = THESIS_SECONDS[model] * epochs / 10 / ours
        spread = f"{min(r.ours for r in rs):.1f}-{max(r.ours for r in rs):.1f}"
        val_spread = f"{min(r.val_mae for r in rs):.4f}-{max(r.val_mae for r in rs):.4f}"
        lines.append(
            f"{model:<15}{batch:>6}{lr:>7g}{ours:>10.1f}{spread:>14}{THESIS_SECONDS[model]:>11.1f}{speedup:>8.1f}x"
            f"{'met' if speedup >= BAR[family] else 'NOT':>6}{plain:>12.2f}{ours / epochs:>11.2f}{overhead:>+9.1%}{cpu_overhead:>+7.1%}"
            f"{statistics.median(r.val_mae for r in rs):>9.4f}{val_spread:>15}"
            f"{statistics.median(r.score_per_s for r in rs):>11,.0f}")
    lines.append(
        f"bars: LSTM >= {BAR['lstm']:.0f}x and TCN >= {BAR['tcn']:.0f}x the thesis's Figure 4.5 (case 3, 10 epochs), "
        f"judged on the median of {rounds} round(s); overhead = median over rounds of ours per epoch / plain loop "
        "per epoch - 1, the plain epochs run half before and half after the fit (CPU: the same in CPU seconds); val MAE = median over the rounds' "
        "seeds (0, 1, ...), seeds = its range")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
