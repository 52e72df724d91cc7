"""The vendor report: who did what (flagged entities, incidents), then when (anomalous time frames).

Owns: what the report computes (:mod:`.analysis`, pure functions over polars frames and typed
dataclasses), how it is written (:mod:`.render`, Jinja2 templates in ``templates/`` with
autoescape on), its figures (:mod:`.histogram`, the score histogram's inline SVG; :mod:`.plots`,
matplotlib's object API, for loss curves and the training's figures) and the run folder a
report is rebuilt from (:mod:`.store`). May import the data and detector layers
(licanom.data.columns, licanom.detectors.context, licanom.data.derive, licanom.data.states, licanom.detectors); never
Prefect or MLflow.

Entry points: :func:`write_report` (``report.html`` and ``anomalies.csv`` of a
:class:`ReportInput`), :func:`anomaly_report` (a night's ``report.md``), :func:`save_run` /
:func:`load_run` (``licanom report --run``).
"""

from licanom.report.analysis import (
    CALIBRATED_BANDS,
    CSV_COLUMNS,
    FRAME_COLUMNS,
    SEVERITY_BANDS,
    Computed,
    ReportInput,
    ScoreWording,
    anomalies_csv,
    anomaly_frames,
    chunk_feature_errors,
    decision_name,
    decision_note,
    detector_report_input,
    score_wording,
    severity,
)
from licanom.report.render import ReportPaths, anomaly_report, render_html, write_report
from licanom.report.store import load_run, save_run

__all__ = [
    "CALIBRATED_BANDS", "CSV_COLUMNS", "FRAME_COLUMNS", "SEVERITY_BANDS", "Computed", "ReportInput", "ReportPaths",
    "ScoreWording", "anomalies_csv", "anomaly_frames", "anomaly_report", "chunk_feature_errors", "decision_name", "decision_note",
    "detector_report_input", "load_run", "render_html", "save_run", "score_wording", "severity", "write_report",
]
