"""The autoencoders in the thesis's input mode and in the rows mode, beside the context model.

Runs the held-out evaluation of licanom.evaluation.blocked (blocked protocol, out-of-fold scores) twice on
the same simulated vendors: once with the thesis's encoder (the thesis-mode autoencoders,
``Tail_context`` and ``IForest_summary``), once with the rows encoder (the same networks with
``inputs="rows"``, registered here as ``<net>_rows``, and ``TCN_AE`` with the two other chunk
scores). The baselines do not read the encoder's columns, so they run once. Writes
``evaluation.csv`` and ``evaluation_per_seed.csv`` of both runs (a ``mode`` column added) and a
markdown summary (AUROC/AUPRC per profile, training seconds, and the GMM/KMeans decisions on
the latent code) into ``--out``.

    nice -n 10 python -m benchmarks.eval_autoencoder_modes --seeds 1,2 --days 21 --epochs 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from licanom.config import EncodeConfig, TrainConfig
from licanom.evaluation.blocked import Candidate, EvalSettings, make_candidates, register, run_evaluation
from licanom.evaluation.output import to_markdown
from licanom.sim import PROFILES

THESIS_MODELS = ("TCN_AE", "LSTM_AE_Small")
BASELINES = ("Tail_context", "IForest_summary")
# name -> (network, chunk score)
ROWS_MODELS: dict[str, tuple[str, str]] = {
    "TCN_AE_rows": ("TCN_AE", "auto"),
    "LSTM_AE_Small_rows": ("LSTM_AE_Small", "auto"),
    "TCN_AE_rows_mean": ("TCN_AE", "mean"),
    "TCN_AE_rows_topk": ("TCN_AE", "topk"),
}


def _rows_candidate(name: str, net: str, score: str):
    def factory(settings: EvalSettings) -> Candidate:
        from licanom.detectors.autoencoders.detector import AutoencoderDetector

        train = settings.train

        def make() -> AutoencoderDetector:
            return AutoencoderDetector(
                model=net, inputs="rows", score=score, threshold="M3", epochs=train.epochs,
                batch_size=train.batch_size, lr=train.lr, val_fraction=train.val_fraction,
                patience=train.patience, seed=train.seed, threads=train.threads, progress_bar=False,
            )

        return Candidate(name, "autoencoder", make, "chunks")

    return factory


for _name, (_net, _score) in ROWS_MODELS.items():
    register(_name, _rows_candidate(_name, _net, _score))


def summary(table: pl.DataFrame) -> str:
    """AUROC, AUPRC and training seconds per profile and detector (one row per detector)."""
    scores = table.filter(pl.col("decision") == "M3").select("profile", "mode", "detector", "auroc", "auprc",
                                                              "train_seconds")
    wide = []
    for (mode, det), g in scores.group_by(["mode", "detector"], maintain_order=True):
        row: dict[str, object] = {"mode": mode, "detector": det}
        for p in PROFILES:
            r = g.filter(pl.col("profile") == p)
            row[f"{p} auroc"] = r["auroc"][0] if r.height else None
            row[f"{p} auprc"] = r["auprc"][0] if r.height else None
        row["train_s (mean)"] = float(g["train_seconds"].mean())  # type: ignore[arg-type]
        wide.append(row)
    return to_markdown(pl.DataFrame(wide))


def clustering(table: pl.DataFrame) -> str:
    """GMM and KMeans on the latent code (and budget, M3 and the oracle beside them)."""
    view = table.filter(pl.col("decision").is_in(["GMM", "KMeans", "M3", "budget", "oracle"])).select(
        "profile", "mode", "detector", "decision", "precision", "recall", "false_alarms_per_10k", "mean_kind_recall",
    ).rename({"false_alarms_per_10k": "fa/10k", "mean_kind_recall": "kind_recall"})
    return to_markdown(view)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--models", default="", help="comma list of the detectors above (default all)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/autoencoder-modes"))
    args = ap.parse_args()
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, threads=1)
    common = dict(profiles=tuple(args.profiles.split(",")), seeds=tuple(int(s) for s in args.seeds.split(",")),
                  days=args.days, train=train, clustering=True, protocol="blocked")
    wanted = set(args.models.split(",")) if args.models else None
    chosen = {mode: tuple(m for m in models if wanted is None or m in wanted)
              for mode, models in (("thesis", (*THESIS_MODELS, *BASELINES)), ("rows", tuple(ROWS_MODELS)))}
    runs = {mode: EvalSettings(models=models, encode=EncodeConfig(encoder=mode), **common)
            for mode, models in chosen.items() if models}
    tables, per_seed = [], []
    t0 = time.perf_counter()
    for mode, settings in runs.items():
        result = run_evaluation(settings, candidates=make_candidates(settings.models, settings),
                                progress=lambda line: print(line, flush=True), jobs=1)
        mode_col = pl.lit(mode).alias("mode")
        tables.append(result.table.with_columns(mode_col))
        per_seed.append(result.per_seed.with_columns(mode_col))
        print(f"{mode}: {result.seconds:.0f} s", flush=True)
    table = pl.concat(tables)
    args.out.mkdir(parents=True, exist_ok=True)
    table.write_csv(args.out / "evaluation.csv")
    pl.concat(per_seed).write_csv(args.out / "evaluation_per_seed.csv")
    text = (f"## Scores (out-of-fold, mean over seeds)\n\n{summary(table)}\n\n"
            f"## Decisions: GMM/KMeans on the latent code, beside M3, budget and the oracle\n\n{clustering(table)}\n")
    (args.out / "summary.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
