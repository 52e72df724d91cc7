"""What an evaluation writes: markdown tables, the recommended default per vendor size, and its MLflow run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import polars as pl

from licanom.sim import ANOMALY_KINDS
from licanom.evaluation.metrics import KIND_COLUMNS, ORACLE_DECISION, REPORT_COLUMNS

if TYPE_CHECKING:
    from licanom.evaluation.blocked import Evaluation
    from licanom.ops.tracking import Tracker


# ---------------------------------------------------------------------------------------------
# Reporting


def to_markdown(frame: pl.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table: numbers right-aligned, floats to ``digits`` places,
    nulls and NaN empty."""
    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    numeric = [dt.is_numeric() for dt in frame.dtypes]
    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " |",
    ]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def report_markdown(table: pl.DataFrame, digits: int = 3) -> str:
    """The aggregated table in REPORT_COLUMNS, short headers (``fa/10k``, ``r_<kind>``)."""
    view = table.select([c for c in REPORT_COLUMNS if c in table.columns])
    view = view.rename({c: c.replace("recall_", "r_") for c in KIND_COLUMNS if c in view.columns}
                       | {"false_alarms_per_10k": "fa/10k", "false_alarms_elsewhere_per_10k": "fa_elsewhere/10k",
                          "mean_kind_recall": "kind_recall",
                          "train_seconds": "train_s", "score_seconds": "score_s"})
    return to_markdown(view, digits)


RECOMMENDATION_COLUMNS: tuple[str, ...] = (
    "size", "profiles", "n_train_chunks", "detector", "family", "decision", "mean_kind_recall",
    "false_alarms_per_10k", "auprc", "f1", "cost_seconds", "meets_limit", *KIND_COLUMNS, "note",
)


def recommend(
    table: pl.DataFrame,
    *,
    small_max_train_chunks: float = 500.0,
    max_false_alarms: float = 50.0,
    weak_recall: float = 0.5,
    tie: float = 1e-9,
) -> pl.DataFrame:
    """A default detector and decision per vendor size, by a fixed rule on the aggregated table.

    Size: a profile is ``small`` when its models trained on at most ``small_max_train_chunks``
    chunks on average (``n_train_chunks``), else ``large``. Within a size, every (detector,
    decision) is averaged over its profiles; among those with ``false_alarms_per_10k`` below
    ``max_false_alarms`` the highest ``mean_kind_recall`` wins; recalls within ``tie`` of the
    best are a tie, broken by the lower cost (train + score + decision seconds), then by name.
    When none meets the limit, the one with the fewest false alarms is chosen
    (``meets_limit`` false). ``note`` names the kinds no detector found at all under the limit
    (chunk-level detection cannot find them here) and the kinds the choice finds less than
    ``weak_recall`` of. The ``oracle`` rows (thresholds set with the labels) are never chosen.
    """
    sized = table.with_columns(
        pl.when(pl.col("n_train_chunks").mean().over("profile") <= small_max_train_chunks)
        .then(pl.lit("small")).otherwise(pl.lit("large")).alias("size"),
        (pl.col("train_seconds") + pl.col("score_seconds") + pl.col("decision_seconds")).alias("cost_seconds"),
    )
    metrics = ["mean_kind_recall", "false_alarms_per_10k", "auprc", "f1", "cost_seconds", "n_train_chunks", *KIND_COLUMNS]
    rows = []
    for size in ("small", "large"):
        part = sized.filter((pl.col("size") == size) & (pl.col("decision") != ORACLE_DECISION))
        if part.height == 0:
            continue
        profiles = ",".join(part["profile"].unique(maintain_order=True).to_list())
        per = (
            part.group_by("detector", "family", "decision", maintain_order=True)
            .agg(*[pl.col(c).mean() for c in metrics])
            .filter(pl.col("mean_kind_recall").is_not_null())
        )
        if per.height == 0:
            continue
        ok = per.filter(pl.col("false_alarms_per_10k") < max_false_alarms)
        if ok.height:
            best = ok["mean_kind_recall"].max()
            ties = ok.filter(pl.col("mean_kind_recall") >= best - tie)  # type: ignore[operator]
            chosen = ties.sort("cost_seconds", "detector", "decision").row(0, named=True)
        else:
            chosen = per.sort("false_alarms_per_10k", "cost_seconds", "detector", "decision").row(0, named=True)
        notes = []
        if not ok.height:
            notes.append(f"no detector stays under {max_false_alarms:g} false alarms per 10k chunks")
        unfound = [k for k in ANOMALY_KINDS if ok.height and not (ok[f"recall_{k}"].fill_null(0.0) > 0).any()]
        if unfound:
            notes.append("no detector found any event of: " + ", ".join(unfound))
        weak = [k for k in ANOMALY_KINDS if k not in unfound and chosen[f"recall_{k}"] is not None
                and chosen[f"recall_{k}"] < weak_recall]
        if weak:
            notes.append(f"the choice finds under {weak_recall:.0%} of: " + ", ".join(weak))
        rows.append({**chosen, "size": size, "profiles": profiles, "meets_limit": bool(ok.height),
                     "note": "; ".join(notes)})
    schema = {c: pl.Float64() for c in RECOMMENDATION_COLUMNS}
    schema.update(size=pl.String(), profiles=pl.String(), detector=pl.String(), family=pl.String(),
                  decision=pl.String(), meets_limit=pl.Boolean(), note=pl.String())
    return pl.DataFrame([{c: r.get(c) for c in RECOMMENDATION_COLUMNS} for r in rows],
                        schema={c: schema[c] for c in RECOMMENDATION_COLUMNS})


# ---------------------------------------------------------------------------------------------
# MLflow

_RUN_METRICS = ("precision", "recall", "f1", "false_alarms_per_10k", "event_recall", "mean_kind_recall")
_DETECTOR_METRICS = ("auroc", "auprc", "train_seconds", "score_seconds")


def evaluation_metrics(table: pl.DataFrame) -> dict[str, float]:
    """MLflow metrics from the aggregated table: ``<profile>/<detector>/<metric>`` for the
    score's metrics and seconds, ``<profile>/<detector>/<decision>/<metric>`` for decisions."""
    out: dict[str, float] = {}
    for row in table.iter_rows(named=True):
        stem = f"{row['profile']}/{row['detector']}"
        for m in _DETECTOR_METRICS:
            if row[m] is not None:
                out[f"{stem}/{m}"] = float(row[m])
        for m in _RUN_METRICS:
            if row[m] is not None:
                out[f"{stem}/{row['decision']}/{m}"] = float(row[m])
    return out


def log_evaluation(
    tracker: Tracker,
    evaluation: Evaluation,
    recommendation: pl.DataFrame | None = None,
    *,
    experiment: str = "evaluation",
    run_name: str | None = None,
) -> str:
    """One MLflow run (experiment ``<prefix><experiment>``) with the settings as parameters,
    the per-detector metrics, and the tables as CSV and markdown artifacts; returns its id."""
    s = evaluation.settings
    name = run_name or f"evaluate {len(s.profiles)} profiles x {len(s.seeds)} seeds, {s.days} days"
    run_id = tracker.start_run(experiment, name, "evaluation")
    try:
        tracker.log_params(run_id, {**s.as_params(), "seconds": round(evaluation.seconds, 1), "jobs": evaluation.jobs})
        items = list(evaluation_metrics(evaluation.table).items())
        for start in range(0, len(items), 900):  # MLflow takes at most 1000 metrics a batch
            tracker.log_metrics(run_id, dict(items[start:start + 900]))
        tracker.log_frame(run_id, evaluation.table, "evaluation.csv")
        tracker.log_frame(run_id, evaluation.per_seed, "evaluation_per_seed.csv")
        tracker.log_text(run_id, report_markdown(evaluation.table) + "\n", "evaluation.md")
        if recommendation is not None:
            tracker.log_frame(run_id, recommendation, "recommendation.csv")
            tracker.log_text(run_id, to_markdown(recommendation) + "\n", "recommendation.md")
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    return run_id
