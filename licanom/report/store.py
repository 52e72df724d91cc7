"""A scored run's folder: what a report is rebuilt from (``licanom report --run``).

Beside a run's ``chunks.parquet`` (``licanom detect``'s ``--out`` folder, or a night folder):
``run.json`` (vendor, run, model, threshold, losses, training scores, whether the model was
trained in the run, what its score is), ``rows.parquet`` (the rows the chunks cover, with their
derived columns), the key history of those rows' keys, and ``context.parquet`` when the caller
gave the chunks' context vectors. A night folder's ``entities.parquet`` and
``incidents.parquet`` (written by the night) are read back too.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from licanom.data.columns import RAW
from licanom.data.context_vector import CONTEXT_COLUMNS, KeyHistory
from licanom.data.validate import QUARANTINE_FILE, QUARANTINE_WHAT
from licanom.report.analysis import Computed, ReportInput, ScoreWording, chunk_feature_errors

__all__ = ["ROWS_FILE", "ROW_COLUMNS", "RUN_FILE", "load_run", "save_run"]

RUN_FILE = "run.json"
ROWS_FILE = "rows.parquet"
CONTEXT_FILE = "context.parquet"
ENTITIES_FILE = "entities.parquet"
INCIDENTS_FILE = "incidents.parquet"
ROW_COLUMNS: tuple[str, ...] = (*RAW, "success", "action", "country")


def save_run(inp: ReportInput, run_dir: Path) -> None:
    """Keep what a report needs beside the run's ``chunks.parquet`` (see the module text), so
    that ``licanom report --run`` can write the same page again later. The entity results and
    incidents are the caller's to write (a night writes them as its outputs)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    inp.rows.select([c for c in ROW_COLUMNS if c in inp.rows.columns]).write_parquet(run_dir / ROWS_FILE)
    KeyHistory.keep(run_dir, inp.key_history.for_keys(inp.rows["Key"]) if inp.key_history is not None else None)
    context = inp.computed.context
    if context is not None:
        pl.DataFrame(np.asarray(context, dtype=np.float64), schema=list(CONTEXT_COLUMNS), orient="row"
                     ).write_parquet(run_dir / CONTEXT_FILE)
    else:
        (run_dir / CONTEXT_FILE).unlink(missing_ok=True)
    meta = {
        "vendor": inp.vendor, "run_id": inp.run_id, "model": inp.model,
        "threshold_name": inp.threshold_name, "threshold": inp.threshold, "decision_note": inp.decision_note,
        "train_loss": list(inp.train_loss), "val_loss": list(inp.val_loss),
        "train_errors": None if inp.train_errors is None else [float(x) for x in inp.train_errors],
        "trained_in_run": inp.trained_in_run,
        "wording": None if inp.wording is None else asdict(inp.wording),
        "notes": list(inp.notes),
    }
    tmp = run_dir / f"{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(run_dir / RUN_FILE)


def load_run(run_dir: Path, chunks_file: str = "chunks.parquet", out: Path | None = None) -> ReportInput:
    """The report input of a run folder written by ``licanom detect`` or a nightly scoring;
    ``out``: where its report is written, when not beside it (its notes then name the run folder's
    quarantine by its path)."""
    run_dir = Path(run_dir)
    missing = [f for f in (RUN_FILE, ROWS_FILE, chunks_file) if not (run_dir / f).exists()]
    if missing and (run_dir / "sequences.parquet").exists() and not (run_dir / chunks_file).exists():
        raise ValueError(f"{run_dir} holds a per-key sequences run (sequences.parquet, one row per key and period): "
                         "the page is written for runs of chunks; the sequences and their scores are in sequences.parquet")
    if missing:
        raise ValueError(
            f"{run_dir} is not a scored run folder (missing {', '.join(missing)}); "
            "give the --out folder of `licanom detect` or a night folder under out/<vendor>/nights/"
        )
    meta = json.loads((run_dir / RUN_FILE).read_text())
    chunks = pl.read_parquet(run_dir / chunks_file)
    train_errors = meta.get("train_errors")
    wording = meta.get("wording")
    context = None
    if (run_dir / CONTEXT_FILE).exists():  # a run stored before a column was added has it as NaN
        stored = pl.read_parquet(run_dir / CONTEXT_FILE)
        context = stored.select(pl.col(c) if c in stored.columns else pl.lit(None, dtype=pl.Float64).alias(c)
                                for c in CONTEXT_COLUMNS).to_numpy().astype(np.float64)
    computed = Computed(
        entities=pl.read_parquet(run_dir / ENTITIES_FILE) if (run_dir / ENTITIES_FILE).exists() else None,
        incidents=pl.read_parquet(run_dir / INCIDENTS_FILE) if (run_dir / INCIDENTS_FILE).exists() else None,
        context=context if context is not None and len(context) == chunks.height else None,
    )
    return ReportInput(
        vendor=meta["vendor"], run_id=meta["run_id"], model=meta["model"],
        threshold_name=meta["threshold_name"], threshold=float(meta["threshold"]),
        decision_note=meta.get("decision_note") or "",  # a run stored before the night rule has none
        chunks=chunks, rows=pl.read_parquet(run_dir / ROWS_FILE), feature_errors=chunk_feature_errors(chunks),
        train_errors=None if train_errors is None else np.asarray(train_errors, dtype=np.float64),
        train_loss=tuple(meta.get("train_loss") or ()), val_loss=tuple(meta.get("val_loss") or ()),
        key_history=KeyHistory.load(run_dir), trained_in_run=meta.get("trained_in_run"),
        wording=None if wording is None else ScoreWording(**wording), computed=computed,
        notes=_notes(tuple(meta.get("notes") or ()), run_dir, out),  # a run stored before notes were kept has none
    )


def _notes(notes: tuple[str, ...], run_dir: Path, out: Path | None) -> tuple[str, ...]:
    """A night's notes as a report written in ``out`` reads them: its quarantine note named the
    file beside the night's report (``quarantine.parquet``), which stays in the night folder."""
    if out is None or Path(out).absolute() == run_dir.absolute():
        return notes
    beside, there = f"({QUARANTINE_FILE}{QUARANTINE_WHAT})", f"({run_dir.absolute() / QUARANTINE_FILE}{QUARANTINE_WHAT})"
    return tuple(note.replace(beside, there) for note in notes)
