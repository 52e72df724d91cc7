"""Markdown tables of the autoencoders' nightly evaluation in both input modes, beside the
context model, from the per_vendor.csv files ``benchmarks.eval_nightly --out`` writes.

    python -m benchmarks.ae_nightly_tables RUN/per_vendor.csv [MORE.csv ...] [--reference Tail_context]

Prints: AUPRC per (world, profile) of every detector with the best rows-mode autoencoder's gap
to the reference; per profile over the worlds: AUROC, AUPRC, events found, false alarms per
10,000 chunks and training seconds; GMM and KMeans on the latent code (share of normal chunks
flagged, events found). AUROC/AUPRC are means over the vendors whose nights hold a labelled
chunk (the others have none to rank); events and false alarms are pooled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl


def _fmt(v: object, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _md(frame: pl.DataFrame, digits: int = 2) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "| " + " | ".join("---" for _ in frame.columns) + " |"]
    lines += ["| " + " | ".join(_fmt(v, digits) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def auprc_table(f: pl.DataFrame, reference: str) -> pl.DataFrame:
    """AUPRC per (world, profile), a column per detector, the best rows-mode AE's gap."""
    ranked = f.filter(pl.col("anomalous_chunks") > 0)
    detectors = f["detector"].unique(maintain_order=True).to_list()
    long = ranked.group_by("world", "profile", "detector", maintain_order=True).agg(
        pl.len().alias("vendors"), pl.col("auprc").mean())
    wide = long.pivot(on="detector", index=["world", "profile", "vendors"], values="auprc").select(
        "world", "profile", "vendors", *[d for d in detectors if d in long["detector"].unique()])
    rows_mode = [d for d in wide.columns if d.endswith(":rows")]
    if rows_mode and reference in wide.columns:
        best = pl.max_horizontal(rows_mode)
        wide = wide.with_columns((best - pl.col(reference)).alias("best rows - ref"),
                                 (best >= pl.col(reference) - 0.1).alias("within 0.1"))
    return wide


def per_profile(f: pl.DataFrame) -> pl.DataFrame:
    """Over all worlds, per profile and detector."""
    return f.group_by("profile", "detector", maintain_order=True).agg(
        pl.col("auroc").filter(pl.col("anomalous_chunks") > 0).mean().alias("AUROC"),
        pl.col("auprc").filter(pl.col("anomalous_chunks") > 0).mean().alias("AUPRC"),
        (pl.col("found").sum() / pl.col("events").sum()).alias("events found"),
        (pl.col("false_alarms").sum() * 10_000 / pl.col("chunks").sum()).alias("FA/10k"),
        pl.col("train_seconds").mean().alias("train s"),
        pl.col("epochs").first().alias("epochs"),
        pl.len().alias("vendors"),
    )


def clusters(f: pl.DataFrame) -> pl.DataFrame:
    """GMM and KMeans on the latent code of the night chunks, per profile and detector."""
    g = f.filter(pl.col("gmm_found").is_not_null())
    normal = pl.col("chunks") - pl.col("anomalous_chunks")
    return g.group_by("profile", "detector", maintain_order=True).agg(
        *[e for m, name in (("gmm", "GMM"), ("kmeans", "KMeans")) for e in (
            (pl.col(f"{m}_false_alarms").sum() / normal.sum()).alias(f"{name} normal flagged"),
            (pl.col(f"{m}_found").sum() / pl.col("events").sum()).alias(f"{name} events found"))],
        (pl.col("false_alarms").sum() / normal.sum()).alias("default normal flagged"),
        (pl.col("found").sum() / pl.col("events").sum()).alias("default events found"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+", type=Path)
    ap.add_argument("--reference", default="Tail_context")
    args = ap.parse_args()
    f = pl.concat([pl.read_csv(p, infer_schema_length=None) for p in args.csv], how="diagonal_relaxed")
    f = f.filter(pl.col("chunks") > 0)
    print("## AUPRC per world and profile\n")
    print(_md(auprc_table(f, args.reference)))
    print("\n## Per profile, over the worlds\n")
    print(_md(per_profile(f)))
    if "gmm_found" in f.columns:  # not in a run with --no-clustering
        print("\n## GMM / KMeans on the latent code (night chunks), beside the default decision\n")
        print(_md(clusters(f)))


if __name__ == "__main__":
    main()
