"""The public yardstick: every per-key sequence model on the HDFS block sessions.

    make bench-hdfs            # or: python -m benchmarks.bench_hdfs [--epochs 10 --workers 2]

Data: ``../shared/datasets/hdfs/`` (see its README). Train on ``hdfs_train`` (4,855 normal
sessions); test on ``hdfs_test_abnormal`` (16,838 anomalous) plus the 7,000 label-0 sessions
of ``robust_log_train.csv`` and ``robust_log_valid.csv`` (normal).

Each session becomes a Web API Log (licanom's input form), one block = one licence key:

* ``Key`` = ``blk_<n>``, one ``ProductId`` (1), one ``MachineCode`` ("datanode") and one
  private ``IP`` (10.0.0.1, country ZZ) for every block: HDFS has none of these, so the
  "new to the key" flags fire only on a block's first request, as for a fresh licence key;
* ``Time``: every block starts at the same instant (2025-01-01 00:00 UTC) and its i-th event
  comes i seconds later: HDFS's lines carry no usable timing here, so the gap feature says
  nothing (it is constant) and the order of the events carries the signal;
* ``State``: event id ``e`` (1..28, DeepLog's numbering) becomes the state code of method group
  ``(10, 20, 30, ...)[(e - 1) // 10]``, success, detail digit ``(e - 1) % 10`` (event 1 ->
  1010, event 10 -> 1019, event 11 -> 2010, event 28 -> 3017): one distinct state per event.

The logs then go through ``licanom.data.derive`` and ``licanom.detectors.sequence.sessions.make_sequences(by="key")``,
the same steps as ``licanom detect --sequences key`` (train on one log, score the other), and
each model is built by ``licanom.ops.detect.make_detector`` from the default configuration
(``sequence.contamination`` 0.01: at most 1% of training sessions above the threshold; DeepLog
also with its own rule, ``contamination`` null: a session with a step outside the top g). The
unseen-event rule flags a session holding an event or a pair of consecutive events never seen
in training. DeepLog is also trained with ``sequence.next_event_validation`` 0.2: a fifth of the
training sessions held out, g for events and for the end chosen on them (the smallest flagging at
most the budget of them), one row per budget of ``VALIDATION_FPRS`` from the same network. Each
model trains in its own process with one torch thread (``--workers`` at once).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "datasets" / "hdfs"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
# the table (recall, FPR on normals, AUROC), before the per-key models were fixed
BEFORE: dict[str, str] = {
    "LSTM_OCSVM gradient": "0.37 / 18% / 0.50",
    "LSTM_OCSVM qp": "0.55 / 48% / 0.59",
    "GRU_SVDD gradient": "0.96 / 95% / 0.67",
    "GRU_SVDD qp": "0.96 / 95% / 0.67",
    "unseen-event rule": "0.58 / 0.1% / 0.79",
    "LSTM_SVDD gradient": "key index zeroed: 0.37-0.45 / 0.03-0.9% / 0.47-0.67",
    "LSTM_SVDD qp": "key index zeroed: 0.37-0.45 / 0.03-0.9% / 0.47-0.67",
    "GRU_OCSVM gradient": "key index zeroed: 0.37-0.45 / 0.03-0.9% / 0.47-0.67",
    "GRU_OCSVM qp": "key index zeroed: 0.37-0.45 / 0.03-0.9% / 0.47-0.67",
}
# (model, solver); DeepLog "top-g" is its own rule (contamination null: flag a session with a miss);
# "validation": the same rule with g for events and for the end chosen on 20% of the training
# sessions held out, at each budget of VALIDATION_FPRS (one training, the budgets re-chosen on it)
MODELS: tuple[tuple[str, str], ...] = (
    ("DeepLog", "-"), ("DeepLog", "top-g"), ("DeepLog", "validation"),
    *((m, s) for m in ("LSTM_OCSVM", "LSTM_SVDD", "GRU_OCSVM", "GRU_SVDD") for s in ("gradient", "qp")),
)


def read_sessions(path: Path, label: str | None = None) -> list[list[int]]:
    """Sessions of a space-separated file, or of a ``Sequence,label`` CSV keeping ``label``."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: the HDFS data is missing (see ../shared/datasets/hdfs/README.md)")
    out = []
    with path.open() as f:
        for i, line in enumerate(f):
            line = line.strip()
            if label is not None:
                if i == 0:
                    continue
                seq, lab = line.rsplit(",", 1)
                if lab != label:
                    continue
                line = seq
            if line:
                try:
                    out.append([int(t) for t in line.split()])
                except ValueError:
                    raise ValueError(f"{path}:{i + 1}: not a list of event ids: {line[:60]!r}") from None
    return out


def event_state(event: int) -> int:
    """The Web API state code standing for HDFS event id ``event`` (see the module docstring)."""
    from licanom.data.states import METHOD_GROUPS, make_state

    k = event - 1
    if not 0 <= k < 10 * len(METHOD_GROUPS):
        raise ValueError(f"event id {event} is outside 1..{10 * len(METHOD_GROUPS)}")
    return make_state(METHOD_GROUPS[k // 10], True, k % 10)


def web_api_log(sessions: list[list[int]], prefix: str):  # -> pl.DataFrame
    """One Web API Log of ``sessions``, block i as key ``{prefix}{i}`` (see the module docstring)."""
    import polars as pl

    lengths = np.array([len(s) for s in sessions])
    events = np.concatenate([np.asarray(s, dtype=np.int64) for s in sessions])
    states = np.vectorize(event_state)(np.arange(1, 81))[events - 1]
    block = np.repeat(np.arange(len(sessions)), lengths)
    step = np.arange(len(events)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pl.DataFrame({
        "Id": np.arange(1, len(events) + 1, dtype=np.int64),
        "ProductId": np.ones(len(events), dtype=np.int64),
        "Key": pl.Series([f"{prefix}{b}" for b in range(len(sessions))]).gather(block),
        "IP": ["10.0.0.1"] * len(events),
        "Time": pl.Series([T0]).dt.cast_time_unit("us").gather(np.zeros(len(events), dtype=np.int64))
        + pl.Series(step * 1_000_000).cast(pl.Duration("us")),
        "State": states.astype(np.int32),
        "MachineCode": ["datanode"] * len(events),
    }).sort("Time", "Id")


def per_key_sequences(sessions: list[list[int]], prefix: str) -> list[np.ndarray]:
    """The sessions as licanom's per-key sequences, in session order."""
    from licanom.data.derive import derive
    from licanom.detectors.sequence.sessions import make_sequences

    seqs = make_sequences(derive(web_api_log(sessions, prefix)), by="key")
    order = np.argsort([int(k[len(prefix):]) for k in seqs.meta["key"].to_list()])
    if len(order) != len(sessions):
        raise RuntimeError(f"{len(sessions)} sessions became {len(order)} sequences")
    return [seqs.X[i] for i in order]


VALIDATION_SHARE = 0.2
VALIDATION_FPRS: tuple[float, ...] = (0.002, 0.001, 0.004)  # the first is the detector's setting


@dataclass(frozen=True)
class Row:
    name: str
    scores: np.ndarray
    flagged: np.ndarray
    seconds: float
    note: str


def unseen_rule(train: list[list[int]], test: list[list[int]]) -> Row:
    """Unseen events and consecutive pairs per session (the score) and any of them (the flag)."""
    t0 = time.perf_counter()
    seen = {e for s in train for e in s} | {p for s in train for p in zip(s, s[1:])}
    scores = np.array([sum(e not in seen for e in s) + sum(p not in seen for p in zip(s, s[1:])) for s in test],
                      dtype=np.float64)
    return Row("unseen-event rule", scores, scores > 0, time.perf_counter() - t0, "")


def run_model(model: str, solver: str, epochs: int, X_train: list[np.ndarray],
              X_test: list[np.ndarray], validation: float = VALIDATION_SHARE, window: int = 10,
              pooling: str | None = None, seed: int = 0) -> list[Row]:
    """Train one model as `licanom detect --sequences key` builds it; score the test sessions."""
    import torch

    from licanom.config import DetectConfig, SequenceConfig, TrainConfig
    from licanom.ops.detect import make_detector

    torch.set_num_threads(1)
    if solver == "top-g":
        seq = SequenceConfig(mode="key", contamination=None, window=window)
    elif solver == "validation":
        seq = SequenceConfig(mode="key", contamination=None, window=window, next_event_validation=validation,
                             next_event_validation_fpr=VALIDATION_FPRS[0])
    else:
        seq = SequenceConfig(mode="key", window=window, **({"solver": solver} if solver != "-" else {}))
    if pooling is not None and model != "DeepLog":
        seq = seq.model_copy(update={"pooling": pooling})
    det = make_detector(model, TrainConfig(epochs=epochs, threads=1, seed=seed), DetectConfig(), seq)
    t0 = time.perf_counter()
    det.fit(X_train)
    seconds = time.perf_counter() - t0
    scores = det.decision_function(X_test)
    name = {"-": f"{model} (top 1% of training)", "top-g": f"{model} (top-g rule)"}.get(solver, f"{model} {solver}")
    if pooling is not None and model != "DeepLog":
        name += f" (pooling {pooling})"
    conv = det.convergence_
    note = "" if conv is None or conv.converged is None else ("converged" if conv.converged else "not converged")
    if solver != "validation":
        return [Row(name, scores, scores > det.threshold_, seconds, note)]
    rows = []
    for fpr in VALIDATION_FPRS:  # the same network, g re-chosen for each budget on the held-out sessions
        det.g_, det.g_end_ = det.choose_g(fpr)
        s = det.decision_function(X_test)
        rows.append(Row(f"{model} (g on {100 * validation:g}% of training held out, budget {100 * fpr:g}%: "
                        f"g {det.g_}, end g {det.g_end_})",
                        s, s > det.threshold_, seconds, note))
    return rows


def metrics(row: Row, truth: np.ndarray, long: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, F1, FPR on normals, AUROC; with ``long`` (a mask of sessions) also the
    recall among the anomalies it marks."""
    from sklearn.metrics import roc_auc_score

    tp = int((row.flagged & truth).sum())
    fp = int((row.flagged & ~truth).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / int(truth.sum())
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / int((~truth).sum()),
            "auroc": float(roc_auc_score(truth, row.scores)),
            "recall_long": float("nan") if long is None else float(row.flagged[truth & long].mean())}


def render(rows: list[Row], truth: np.ndarray, header: str, long: np.ndarray) -> str:
    """The table; ``long`` marks the test sessions at least as long as the shortest training one
    (every shorter one is anomalous, so a length rule alone catches those)."""
    lines = [header, "",
             "| model | precision | recall | F1 | FPR on normals | AUROC | recall, sessions as long as training's | "
             "train s | solver | before (recall / FPR / AUROC) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        m = metrics(r, truth, long)
        lines.append(f"| {r.name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {100 * m['fpr']:.2f}% "
                     f"| {m['auroc']:.3f} | {m['recall_long']:.3f} | {r.seconds:.0f} | {r.note} "
                     f"| {BEFORE.get(r.name.split(' (pooling')[0], '')} |")
    lines.append("| DeepLog (published, CCS 2017) | 0.958 | 0.933 | 0.945 | about 0.15% | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--epochs", type=int, default=10, help="train.epochs for every model (the default config's)")
    p.add_argument("--workers", type=int, default=2, help="models trained at once, one process each")
    p.add_argument("--models", default=None,
                   help="comma-separated names, e.g. DeepLog,GRU_SVDD, or one variant, e.g. DeepLog:validation (default: all)")
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    p.add_argument("--window", type=int, default=10, help="DeepLog's window (sequence.window)")
    p.add_argument("--pooling", default=None,
                   help="the Ergen models' sequence.pooling (default: the configuration's, max per key)")
    p.add_argument("--seed", type=int, default=0, help="train.seed for every model (weights and shuffling)")
    p.add_argument("--validation", type=float, default=VALIDATION_SHARE,
                   help="DeepLog's held-out share of the training sessions to choose g on")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_start = time.perf_counter()
    train = read_sessions(args.data / "hdfs_train")
    abnormal = read_sessions(args.data / "hdfs_test_abnormal")
    normal = (read_sessions(args.data / "robust_log_train.csv", label="0")
              + read_sessions(args.data / "robust_log_valid.csv", label="0"))
    test = abnormal + normal
    truth = np.r_[np.ones(len(abnormal), bool), np.zeros(len(normal), bool)]
    X_train = per_key_sequences(train, "train")
    X_test = per_key_sequences(test, "test")
    print(f"HDFS: train {len(train):,} normal sessions; test {len(abnormal):,} anomalous + {len(normal):,} normal; "
          f"{X_train[0].shape[1]} columns per step; built in {time.perf_counter() - t_start:.0f} s", flush=True)
    wanted = None if args.models is None else set(args.models.split(","))
    jobs = [(m, s) for m, s in MODELS if wanted is None or m in wanted or f"{m}:{s}" in wanted]
    rows = [unseen_rule(train, test)]
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = [pool.submit(run_model, m, s, args.epochs, X_train, X_test, args.validation, args.window,
                               args.pooling, args.seed)
                   for m, s in jobs]
        for f in futures:
            rows += f.result()
            print(f"  {rows[-1].name}: {rows[-1].seconds:.0f} s", flush=True)
    header = (f"HDFS block sessions, per-key sequences (`make bench-hdfs`, {args.epochs} epochs, DeepLog window "
              f"{args.window}, held out for g {100 * args.validation:g}%, seed {args.seed}, "
              f"{time.perf_counter() - t_start:.0f} s in all, {args.workers} workers x 1 thread)")
    long = np.array([len(s) for s in test]) >= min(len(s) for s in train)
    table = render(rows, truth, header, long)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
