"""The `licanom` command line: simulate logs, run the data path, detect anomalies.

Exit codes: 0 success; 1 an unexpected error (named in one line, no traceback); 2 wrong usage
or configuration; 3 the input cannot be used (a missing column, too many bad rows, fewer rows
than one chunk); 4 the log source or a server failed (a missing or unreadable file, the HTTP API;
for `licanom run`, a Prefect API or MLflow tracking server that cannot be reached). `licanom run`
ends a flow run that failed alike (:func:`failure_exit`; flows/run.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from licanom import __version__
from licanom.detectors.decision import DECISIONS

if TYPE_CHECKING:
    from licanom.ops.earlier_run import EarlierRunKept

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_SOURCE = 0, 1, 2, 3, 4
PROFILES = ("node-locked", "usage-based", "floating", "mixed")  # licanom.sim.PROFILES, without importing it
SIM_FORMATS = ("parquet", "csv", "both")  # licanom.sim.world.FORMATS, without importing it


# --- the parser: one-line refusals, defaults in every option's help ---------------------------

class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; an option whose default comes from the
    configuration (None) or a flag (an option that takes no value) says so in its own words
    instead: a flag's default is the value of its destination, so ``--no-mlflow``, which logs
    unless given, read "(default: True)", as if it were on by default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0
                or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line: ``licanom detect: error: argument
    --epochs: ... (licanom detect --help)``, exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def whole(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{what}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def number(low: float, high: float | None = None, low_open: bool = True, high_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a number above ``low`` (and below ``high``), the ends open unless said."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:
            span = (f"{'above' if low_open else 'at least'} {low:g}" if high is None else
                    f"{'>' if low_open else '>='} {low:g} and {'<' if high_open else '<='} {high:g}")
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


POSITIVE = whole(1)
NON_NEGATIVE = whole(0)


def iso_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 date or time (2024-05-01, 2024-05-01T02:00, with an offset or
    not: the one who reads it takes a time without one as UTC)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time such as 2024-05-01 or 2024-05-01T02:00 (+02:00 for an offset), got {text!r}"
        ) from None


def separator(text: str) -> str:
    """An argparse type: a CSV separator (licanom.config.check_separator, which source.separator
    in a vendor's YAML goes through too)."""
    from licanom.config import check_separator

    try:
        return check_separator(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def vendor_name(text: str) -> str:
    """An argparse type: a vendor with a file in conf/vendors/ (the message lists those that have one)."""
    from licanom.config import unknown_vendor_message, validate_vendor_name

    try:
        validate_vendor_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    problem = unknown_vendor_message(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def model_names(text: str) -> str:
    """An argparse type: a model name, several separated by commas, 'all', 'sequence' or 'auto'."""
    if text in ("all", "sequence", "auto"):
        return text
    from licanom.config import known_models, sequence_models
    from licanom.detectors.catalog import AUTOENCODERS

    known = known_models()
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        sequence = sequence_models()  # the catalog's names, as the configuration's message says them
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(map(repr, unknown)) or repr(text)}; valid: {', '.join(known)}, "
            f"all (the {len(AUTOENCODERS)} autoencoders), sequence (the {len(sequence)} sequence models: "
            f"{', '.join(sequence)}) or auto")
    return ",".join(names)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from licanom.sim import simulate

    t0 = time.perf_counter()
    sim = simulate(args.profile, seed=args.seed, days=args.days)
    written = sim.write(Path(args.out), args.format)
    kinds = sim.events.group_by("kind").len().sort("kind")
    print(f"simulated {sim.log.height:,} rows, {sim.events.height} anomalous events "
          f"({sim.labels.height:,} labelled rows) in {time.perf_counter() - t0:.1f} s -> {args.out} "
          f"({', '.join(p.name for p in written)})")
    for kind, n in kinds.iter_rows():
        print(f"  {kind:<18} {n} event{'s' if n != 1 else ''}")
    return EXIT_OK


def _load_cfg(args: argparse.Namespace) -> Any:
    from licanom.config import load_config

    source = _source_overrides(args)
    overrides: dict[str, Any] = {"source": source} if source else {}
    if getattr(args, "chunk_size", None) is not None:
        overrides.setdefault("chunk", {})["size"] = args.chunk_size
        overrides["chunk"]["stride"] = args.stride if args.stride is not None else args.chunk_size
    elif getattr(args, "stride", None) is not None:
        overrides.setdefault("chunk", {})["stride"] = args.stride
    return _with_a_log(args, load_config(args.vendor, overrides=overrides))


def _with_a_log(args: argparse.Namespace, cfg: Any) -> Any:
    """``cfg``, where it names a log to read: neither --logs nor a vendor's files source with a
    path is a usage error saying what to give, not the configuration's own words."""
    if getattr(args, "logs", None) or cfg.source.kind != "files" or cfg.source.path:
        return cfg
    from licanom.config import default_conf_dir, vendor_file

    if args.vendor is None:
        raise ValueError("no log to read: give --logs FILE (a CSV, Parquet or NDJSON file, a glob or a folder), "
                         f"or --vendor V whose {default_conf_dir() / 'vendors' / 'V.yaml'} names its source")
    raise ValueError(f"vendor {args.vendor}'s source.path is not set ({vendor_file(args.vendor)}): set it, "
                     "or give --logs FILE")


@contextlib.contextmanager
def _quarantine_kept(path: Path) -> Iterator[None]:
    """A log refused for too many bad rows still leaves its quarantine at ``path`` (each row with
    its reason), and the refusal says where."""
    from licanom.data.validate import ValidationError, refusal_kept

    try:
        yield
    except ValidationError as err:
        if err.result is None:
            raise
        raise refusal_kept(err, path) from None


def _file_arguments(p: argparse.ArgumentParser, logs: str = "--logs") -> None:
    """The options of how the log files are written (``logs``: the files they apply to)."""
    p.add_argument("--encoding", default=None,
                   help=f"text encoding of CSV/NDJSON {logs}, e.g. cp1252 (default: source.encoding, strict UTF-8)")
    p.add_argument("--separator", type=separator, default=None,
                   help=f"CSV separator of {logs}, e.g. ';' or '\\t' for a tab, in quotes (an unquoted \\t reaches "
                        "licanom as t; a letter or digit is refused) (default: source.separator, detected from the "
                        "header line)")
    p.add_argument("--time-format", default=None, metavar="CODES",
                   help=f"the layout of Time in {logs} when not ISO 8601 or Unix seconds, in strftime codes, e.g. "
                        "'%%d.%%m.%%Y %%H:%%M:%%S' (default: source.time_format)")
    p.add_argument("--timezone", default=None, metavar="ZONE",
                   help=f"the time zone of the times in {logs} written without an offset, e.g. Europe/Berlin "
                        "(default: source.timezone, UTC)")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from licanom.data.pipeline import extract, prepare, write_prepared

    cfg = _load_cfg(args)
    t0 = time.perf_counter()
    files = _files_of(cfg.source)
    raw = extract(cfg.source)
    out = Path(args.out)
    with _quarantine_kept(out / "quarantine.parquet"):
        prepared = prepare(raw, cfg)
    del raw
    write_prepared(prepared, out)
    print_prepared(prepared, time.perf_counter() - t0, out / "quarantine.parquet", files=files)
    return EXIT_OK


def _file_options(args: argparse.Namespace) -> dict[str, str]:
    """--encoding, --separator, --time-format and --timezone as source settings (only those given)."""
    given = (("encoding", getattr(args, "encoding", None)), ("separator", getattr(args, "separator", None)),
             ("time_format", getattr(args, "time_format", None)), ("timezone", getattr(args, "timezone", None)))
    return {k: v for k, v in given if v is not None}


def _source_overrides(args: argparse.Namespace) -> dict[str, str]:
    """--logs as a files source with the file options; the file options alone apply to the vendor's
    own files (--vendor without --logs)."""
    if getattr(args, "logs", None):
        return {"kind": "files", "path": str(args.logs), **_file_options(args)}
    return _file_options(args)


def _detect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration the options of `licanom detect` change (an option left out changes nothing)."""
    source = _source_overrides(args)
    overrides: dict[str, Any] = {"source": source} if source else {}
    if args.model is not None:
        overrides["train"] = {"models": args.model if args.model in ("all", "sequence", "auto") else args.model.split(",")}
    if args.epochs is not None:
        overrides.setdefault("train", {})["epochs"] = args.epochs
    if args.threshold is not None:  # the decision of the autoencoders and of the context models
        overrides["detect"] = {"threshold": args.threshold}
        overrides["context"] = {"threshold": args.threshold}
    if args.no_m1:
        overrides.setdefault("detect", {})["m1"] = False
    sequence = {k: v for k, v in (("mode", args.sequences), ("solver", args.solver),
                                   ("period_hours", args.period_hours), ("contamination", args.contamination))
                if v is not None}
    if sequence:
        overrides["sequence"] = sequence
    return overrides


def _earlier_outputs(out: Path) -> list[Path]:
    """The files an earlier ``licanom detect`` left in ``out`` (its own names only, a refused run's
    quarantine too): replaced by a new run's, so that no result of the earlier one (a results.csv of
    more models, another log's chunks, a model not trained now) sits beside the new ones; kept aside
    until the new run succeeds (licanom.ops.earlier_run)."""
    from licanom.data.context_vector import KeyHistory
    from licanom.ops.earlier_run import REFUSED_PREFIX
    from licanom.report.store import CONTEXT_FILE, ENTITIES_FILE, INCIDENTS_FILE, ROWS_FILE, RUN_FILE

    quarantines = ("quarantine.parquet", "train-quarantine.parquet")
    names = ("chunks.parquet", "sequences.parquet", "results.csv", *quarantines,
             *(REFUSED_PREFIX + q for q in quarantines), "vocabulary.json", "report.html", "anomalies.csv", RUN_FILE,
             ROWS_FILE, CONTEXT_FILE, ENTITIES_FILE, INCIDENTS_FILE, *KeyHistory.file_names())
    found = [out / n for n in names if (out / n).is_file()]
    models = out / "models"
    return found + (sorted(models.glob("*.pt")) if models.is_dir() else [])


def _cmd_detect(args: argparse.Namespace) -> int:
    """`licanom detect`: an earlier run's outputs in --out are set aside, not removed, until this run
    has succeeded, and put back when it fails in any way (licanom.ops.earlier_run)."""
    from licanom.config import load_config
    from licanom.ops.earlier_run import EarlierRunKept

    cfg = _with_a_log(args, load_config(args.vendor, overrides=_detect_overrides(args)))
    labels = read_labels(Path(args.labels)) if args.labels else None
    out = Path(args.out)
    with EarlierRunKept(out, _earlier_outputs) as earlier:
        code = _detect(args, cfg, labels, out, earlier)
        if code == EXIT_OK:
            earlier.succeeded()
    return code


def _detect(args: argparse.Namespace, cfg: Any, labels: Any, out: Path, earlier: EarlierRunKept) -> int:
    """The run of `licanom detect` into ``out``, the earlier run's outputs set aside (``earlier``:
    where a refusal keeps its quarantine)."""
    from licanom.ops.detect import (
        detect,
        format_results,
        labels_unlearnt,
        night_rule_flags,
        refuse_labels_unlearnt,
        resolved_train,
        unmatched_labels,
    )
    from licanom.data.pipeline import extract, prepare

    train_source = cfg.source
    if args.train_logs:  # train on one log, score another (the --logs, or the vendor's source)
        train_source = cfg.source.model_copy(update={"kind": "files", "path": str(args.train_logs)})
    t0 = time.perf_counter()
    train_quarantine = out / ("train-quarantine.parquet" if args.train_logs else "quarantine.parquet")
    with _quarantine_kept(earlier.refused(train_quarantine)):
        files = _files_of(train_source)
        raw = extract(train_source)
        prepared = prepare(raw, cfg)
        del raw  # not held while the models train
    if args.train_logs:
        print(f"training log     {args.train_logs}")
    print_prepared(prepared, time.perf_counter() - t0, train_quarantine, files=files, warn_few=False)
    if labels is not None:  # labels of no row or chunk: a warning naming them; of none at all, refused before training
        refuse_labels_unlearnt(resolved_train(prepared, cfg.train).models)  # first: labels no model would learn
        unmatched = unmatched_labels(labels, prepared.encoded.frame, f"labels file {args.labels}",
                                     pseudonymised=cfg.privacy.pseudonymise,
                                     tail_rows=prepared.chunks.tail_rows if cfg.sequence.mode == "chunks" else 0)
        if unmatched:
            print(f"warning: {unmatched}")
    few = few_training_chunks(prepared)  # said after training, with the model's caution (one line, not two)
    out.mkdir(parents=True, exist_ok=True)
    prepared.validation.quarantine.write_parquet(train_quarantine)
    prepared.encoded.vocabulary.save(out / "vocabulary.json")

    def progress(outcome: Any) -> None:
        row = outcome.row
        loss = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
        print(f"trained {row['model']:<14} in {row['train_seconds']:>7.1f} s; "
              f"loss {'-' if loss is None else format(loss, '.4f')}; "
              f"the thesis's M3 would flag {row['M3']} of {row['test_chunks']} test items")
        if row.get("converged") is False:
            print(f"  {row['model']} did NOT converge: {row['convergence']}")
        outcome.detector.save(out / "models" / f"{row['model']}.pt")

    detection = detect(prepared, cfg.train, cfg.detect, on_model=progress, sequence=cfg.sequence, context=cfg.context,
                       encode=cfg.encode, labels=labels, split=cfg.split)
    det = detection.primary.detector
    trained = [o.detector.model for o in detection.outcomes]
    if labels is not None and (unlearnt := labels_unlearnt(trained)):  # with none of the others: refused before
        learnt = [m for m in trained if m not in unlearnt]
        print(f"note: --labels: learnt by {', '.join(learnt)} only; {', '.join(unlearnt)} learnt without them")
    chunks, sequences, rows = detection.chunks, detection.sequences, prepared.validation.valid
    scored_rows = None  # derived rows of the scored log when it is another one
    if args.train_logs:
        from licanom.ops.transfer import score_other_log

        t1 = time.perf_counter()
        with _quarantine_kept(earlier.refused(out / "quarantine.parquet")):
            parts = _files_of(cfg.source)
            other = extract(cfg.source)
            scored = score_other_log(det, prepared, other, cfg)
            del other  # the raw rows are not needed past validation
        v = scored.validation
        read = f" ({len(parts)} files)" if parts else ""
        print(f"\nscored log       {cfg.source.path}{read}: {v.n_in:,} rows read, {v.valid.height:,} valid, "
              f"{v.quarantine.height:,} quarantined ({out / 'quarantine.parquet'}) -> {scored.items.height:,} items "
              f"scored by {det.model} "
              f"trained on the training log ({time.perf_counter() - t1:.1f} s)")
        if scored.unseen_product_rows:
            shown = ", ".join(map(str, scored.unseen_products[:5])) + (", ..." if len(scored.unseen_products) > 5 else "")
            print(f"note: {scored.unseen_product_rows:,} of its valid rows are of product(s) the training log does not "
                  f"hold ({shown}): scored all the same, their values read as unseen")
        v.quarantine.write_parquet(out / "quarantine.parquet")
        chunks, sequences, rows = scored.chunks, scored.sequences, v.valid
        scored_rows = derived_rows(v.valid, cfg)
    if chunks is not None:
        chunks.write_parquet(out / "chunks.parquet")
    if sequences is not None:
        sequences.write_parquet(out / "sequences.parquet")
    entities = write_entities(prepared, detection, scored_rows, out)
    if len(detection.outcomes) > 1:
        detection.results.write_csv(out / "results.csv")
    print("\nthe thesis's thresholds and clustering on the test chunks, for comparison (the decision is below):")
    print(format_results(detection.results))
    from licanom.report import decision_name, decision_note

    note = decision_note(det)
    decision = decision_name(det) + (f"; {note}" if note else "")
    if sequences is not None:
        flagged = sequences.filter("is_anomaly")
        print(f"\n{flagged.height} of {sequences.height} {cfg.sequence.mode} sequences flagged by "
              f"{det.model} ({decision}, threshold {det.threshold_:.5f}) -> {out / 'sequences.parquet'}")
        for r in flagged.sort("score", descending=True).head(5).iter_rows(named=True):
            print(f"  {r['key']}  {r['start_time']:%Y-%m-%d %H:%M} - {r['end_time']:%H:%M}  "
                  f"{r['requests']} requests, {r['ips']} IPs, score {r['score']:.4f}")
        if few:
            print(few_warning(few))
        return EXIT_OK
    assert chunks is not None
    report = write_detect_report(cfg.vendor, det, chunks, rows, out, entities, _counted_levels(det, prepared, cfg))
    import polars as pl

    flagged = chunks.filter("is_anomaly")
    test = chunks.filter(pl.col("split") == "test") if "split" in chunks.columns else chunks
    held = (f" ({int(test['is_anomaly'].sum())} of the {test.height} held-out test chunks)"
            if 0 < test.height < chunks.height else "")
    by_night = night_rule_flags(chunks)
    night = f", {by_night} of them by the night rule" if by_night else ""
    print(f"\n{flagged.height} of {chunks.height} chunks flagged by {det.model}{held}{night} -> {out / 'chunks.parquet'}")
    print(f"decision: {decision_name(det)} (a score of {det.threshold_:.5g} on {det.model}'s own scale)"
          + (f"; {note}" if note else ""))
    caution = det.calibration_caution()
    if caution:  # and the log's few training chunks, said once with it
        log = "the training log" if args.train_logs else "the log"
        print(f"caution: {det.model}: {caution}" + (f" ({log} holds only {few[0]} training chunk(s), {few[1]:,} requests: "
                                                     "judge flags with care, or give a longer log)" if few else ""))
    elif few:
        print(few_warning(few))
    print(f"report: {report.html}  (anomalies as CSV: {report.csv})")
    return EXIT_OK


def derived_rows(valid: Any, cfg: Any) -> Any:
    """Valid raw rows derived (success, action, country) and pseudonymised where the vendor asks,
    as the training rows were."""
    from licanom.data.derive import derive
    from licanom.data.pipeline import pseudonym_secret
    from licanom.data.privacy import pseudonymise

    rows = derive(valid)
    secret = pseudonym_secret(cfg)
    return pseudonymise(rows, secret) if secret is not None else rows


def write_entities(prepared: Any, detection: Any, scored_rows: Any, out: Path) -> Any:
    """entities.parquet beside the chunks (licanom.ops.detect.entity_results), and the most severe;
    a log too small for entity scoring says why and writes none."""
    from licanom.ops.detect import entity_results

    items = detection.chunks if detection.chunks is not None else detection.sequences
    try:
        entities = entity_results(prepared.encoded.frame, items, scored_rows)
    except ValueError as err:
        print(f"\nentities: none written ({one_line(err)})")
        return None
    entities.write_parquet(out / "entities.parquet")
    flagged = entities.filter("is_anomaly")
    from licanom.detectors.entities import ENTITY_KINDS
    from licanom.report.analysis import shown_severity

    present = set(entities["entity_kind"].unique().to_list())
    kinds = ", ".join(f"{k}s" for k in ENTITY_KINDS if k in present)
    none = ", ".join(f"{k}s" for k in ENTITY_KINDS if k not in present)  # too few in training, or in the log
    print(f"\n{flagged.height} of {entities.height} entities flagged ({kinds}{f'; no {none}' if none else ''}) "
          f"-> {out / 'entities.parquet'}")
    for r in flagged.head(5).iter_rows(named=True):
        print(f"  severity {shown_severity(r['severity']):>3}  {r['reasons']}")  # as the reports show it: 95.6 reads 95
    return entities


def read_labels(path: Path) -> Any:
    """A labels file (CSV or Parquet): ``Id`` or ``Key`` (with both, ``Id``), and ``label`` (+1
    normal, -1 anomaly, 0 unknown). A row without its Id (or Key), of an Id that is no whole number,
    of a label that is none of these, or an Id (Key) labelled twice and not alike is refused, in one
    line naming the row: counted from 0, a CSV's header not counted, as licanom counts a log's rows
    (docs/cli.md)."""
    import polars as pl

    if not path.exists():
        raise ValueError(f"labels file {path} does not exist")
    parquet = path.suffix == ".parquet"
    frame = pl.read_parquet(path) if parquet else pl.read_csv(path, infer_schema=False)  # each value as written
    keyed = [c for c in ("Id", "Key") if c in frame.columns]
    if not keyed or "label" not in frame.columns:
        raise ValueError(f"{path}: a labels file needs a column Id or Key, and a column label; it has {frame.columns}")
    key = keyed[0]
    counted = "rows counted from 0" + ("" if parquet else ", the header not counted")

    def refuse(rows: Any, what: Callable[[dict[str, Any]], str], named: bool = True) -> NoReturn:
        """The first of ``rows`` refused: its row, its Id (Key) where it has one, and what is wrong."""
        first = rows.row(0, named=True)
        own = f"{key} {first[key]}; " if named else ""
        more = f" ({rows.height:,} rows in all)" if rows.height > 1 else ""
        raise ValueError(f"{path}: row {first['row']} ({own}{counted}): {what(first)}{more}")

    kind = frame.schema["label"]
    if not (kind == pl.String or kind.is_integer() or kind.is_float()):  # a Boolean's True would read as +1
        raise ValueError(f"{path}: label must be +1, -1 or 0; its column holds {kind} values")
    value = (pl.col("label").str.strip_chars() if kind == pl.String else pl.col("label")).cast(pl.Float64, strict=False)
    text = pl.col(key).cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)  # an Id written 1001.0 (a float column, a spreadsheet's export)
    whole = pl.when(number.is_finite() & (number == number.round(0)) & (number.abs() < 2.0**53)).then(number)
    ident = pl.coalesce(text.cast(pl.Int64, strict=False), whole.cast(pl.Int64)) if key == "Id" else pl.col(key).cast(pl.String)
    rows = frame.with_row_index("row").with_columns(value.alias("value"), ident.alias("ident"))
    missing = rows.filter(pl.col(key).cast(pl.String).str.strip_chars().fill_null("") == "")
    if missing.height:
        refuse(missing, lambda r: f"no {key}", named=False)
    if (bad := rows.filter(pl.col("ident").is_null())).height:
        refuse(bad, lambda r: "the Id is not a whole number")
    if (bad := rows.filter(~pl.col("value").is_in([-1.0, 0.0, 1.0]).fill_null(False))).height:
        refuse(bad, lambda r: "label must be +1, -1 or 0, not " + ("empty" if r["label"] is None else repr(r["label"])))
    if (twice := rows.filter(pl.col("value").n_unique().over("ident") > 1)).height:
        def other(r: dict[str, Any]) -> int:
            return int(twice.filter((pl.col("ident") == r["ident"]) & (pl.col("value") != r["value"]))["row"][0])
        refuse(twice.head(1),
               lambda r: f"labelled {r['label']}, and row {other(r)} labels it otherwise: keep one label")
    return rows.select(pl.col("ident").alias(key), pl.col("value").cast(pl.Int8).alias("label"))


def _counted_levels(detector: Any, prepared: Any, cfg: Any) -> Any:
    """The levels a context model's counts were taken above in a detect run, named by the real
    values (None for a model that reads no context vector): learned from the training log's rows,
    as the context of that log learns them and as a scored other log is counted against them."""
    if getattr(detector, "reads", None) != "context":
        return None
    from licanom.data.context_vector import entity_levels
    from licanom.data.pipeline import pseudonym_secret
    from licanom.data.privacy import reveal

    frame = prepared.encoded.frame
    levels = entity_levels(frame)
    return reveal(levels, frame, prepared.validation.valid) if pseudonym_secret(cfg) is not None else levels


def write_detect_report(vendor: str, detector: Any, chunks: Any, rows: Any, out: Path, entities: Any = None,
                        levels: Any = None) -> Any:
    """The vendor report of a detect run (its primary model), and what rebuilds it later.
    ``rows``: the valid rows the chunks were cut from, real values even when pseudonymised;
    ``entities``: the run's entity results (entities.parquet), which the report leads with;
    ``levels``: the entities' own levels, usual days and hours that a context model counted with
    (:func:`_counted_levels`), so that its incidents (incidents.parquet) name whom the model
    counted; None: the incidents are grouped from the plain counts."""
    from licanom.ops.nightly import night_incidents
    from licanom.report import Computed, detector_report_input, save_run, write_report
    from licanom.report.store import INCIDENTS_FILE

    incidents = None
    if levels is not None:
        incidents = night_incidents(chunks, rows, levels)
        incidents.write_parquet(out / INCIDENTS_FILE)
    caution = detector.calibration_caution()  # a model of a few training chunks: under the page's header
    inp = detector_report_input(detector, vendor=vendor, run_id=f"detect {out.name}", model=detector.model,
                                chunks=chunks, rows=rows, trained_in_run=True,
                                computed=Computed(entities=entities, incidents=incidents),
                                notes=(f"caution: {detector.model}: {caution}",) if caution else ())
    save_run(inp, out)
    return write_report(inp, out)


# an MLflow run id: 32 hexadecimal digits (a uuid4's hex)
MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")


def _cmd_report(args: argparse.Namespace) -> int:
    from licanom.report import load_run, write_report

    run_dir = Path(args.run)
    if not run_dir.is_dir() and (run_dir.exists() or not MLFLOW_RUN_ID.fullmatch(args.run)):
        # a path, not a run id: said here, before MLflow's store is opened (and created where it is not)
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise ValueError(f"--run {args.run} {what}: give a run folder (licanom detect --out, or "
                         "out/<vendor>/nights/...) or a nightly MLflow run id")
    if not run_dir.is_dir():  # an MLflow run id of a nightly scoring: its night folder
        from licanom.ops.tracking import TrackingConfig, stored_run

        config = TrackingConfig.load()
        run = stored_run(args.run, config)
        if run is None:
            raise ValueError(f"--run {args.run}: no such run in the tracking store {config.shown_uri} "
                             "(mlflow.yaml, or MLFLOW_TRACKING_URI); give a run folder or a nightly run id of that store")
        folder = run.data.params.get("out_dir")
        if not folder:
            raise ValueError(f"MLflow run {args.run} records no night folder (param out_dir)")
        run_dir = Path(folder)
    out = Path(args.out) if args.out else run_dir
    paths = write_report(load_run(run_dir, out=out), out)
    print(f"report: {paths.html}  (anomalies as CSV: {paths.csv})")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from licanom.evaluation.cli import run

    return run(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    # The orchestration layer lives in flows/; the library does not import Prefect.
    cmd = [sys.executable, "-m", "flows.serve"]
    for vendor in args.vendor or ():
        cmd += ["--vendor", vendor]
    os.execv(sys.executable, cmd)
    return EXIT_OK  # not reached


def _files_of(source: Any) -> list[str]:
    """The files a files source reads when it names several (a folder or a glob), each relative to
    the folder given or, for a glob, to the folder they share (two months' "log.csv" stay apart);
    empty for one file or another kind of source. Listed without the warning the extraction gives."""
    from licanom.data.extract.files import ExtractFileError, log_files

    if source.kind != "files" or not source.path:
        return []
    try:
        files = log_files(source.path, warn=False)
    except (ExtractFileError, OSError):  # the extraction that follows says what is wrong with the path
        return []
    if len(files) < 2:
        return []
    given = Path(source.path)
    base = given if given.is_dir() else Path(os.path.commonpath(files))
    return [str(f.relative_to(base)) for f in files]


def print_prepared(prepared: Any, seconds: float, quarantine: Path | None = None, files: list[str] | None = None,
                   warn_few: bool = True) -> None:
    """A short account of what the data path made (``quarantine``: the file its quarantined rows are
    written to; ``files``: those a log of several was read from; ``warn_few``: the warning of too few
    training chunks here, which `licanom detect` gives after training instead, with its model's caution)."""
    v = prepared.validation
    c = prepared.chunks
    if files:
        from licanom.data.extract.files import listed

        print(f"log files        {len(files):>12,}  ({listed(files)})")
    print(f"rows read        {v.n_in:>12,}")
    print(f"rows valid       {v.valid.height:>12,}")
    print(f"rows quarantined {v.quarantine.height:>12,}" + (f"  -> {quarantine}" if quarantine else ""))
    from licanom.data.validate import reasons_shown

    reasons = v.reason_counts()
    shown = reasons_shown(reasons.height, 5)
    for reason, n in reasons.head(shown).iter_rows():
        print(f"    {n:>8,}  {reason}")
    if reasons.height > shown:  # the rest are in the quarantine, each row with its reasons
        print(f"    and {reasons.height - shown} more reasons, on {int(reasons['len'][shown:].sum()):,} rows in all")
    print(f"chunks           {c.n_chunks:>12,}  ({c.size} requests, stride {c.stride}; "
          f"train {int((~prepared.test_mask).sum()):,}, test {int(prepared.test_mask.sum()):,})")
    few = few_training_chunks(prepared)
    if warn_few and few:
        print(few_warning(few))
    print(f"tail rows        {c.tail_rows:>12,}  (after the last full chunk: a night carries them to the next, "
          "a one-off run leaves them out)")
    from licanom.data.validate import ids_out_of_order

    back = ids_out_of_order(prepared.encoded.frame)  # the rows are in time order here
    if back:
        print(f"warning: {back:,} row(s) have a smaller Id than the row before them in time: the Ids do not follow "
              f"time order, so a chunk's first_id..last_id (chunks.parquet, the incidents) is not the range of its rows")
    vocab = prepared.encoded.vocabulary
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in vocab.values.items())
    print(f"vocabulary       {sizes}")
    print(f"took             {seconds:>12.2f} s")


# Below this many training chunks a context model cannot calibrate its severity on scores it did not
# fit (licanom.detectors.context.ContextDetector: four blocks of at least four chunks).
FEW_TRAINING_CHUNKS = 16


def few_training_chunks(prepared: Any) -> tuple[int, int] | None:
    """The training chunks and their requests where the log gives fewer than FEW_TRAINING_CHUNKS, else None."""
    n_train = int((~prepared.test_mask).sum())
    return None if n_train >= FEW_TRAINING_CHUNKS else (n_train, n_train * prepared.chunks.size)


def few_warning(few: tuple[int, int]) -> str:
    """The warning of a log of few training chunks (:func:`few_training_chunks`), as one line."""
    return (f"warning: only {few[0]} training chunk(s) ({few[1]:,} requests): what is normal, and so every severity, "
            "is guessed from too little; judge flags with care, or give a longer log")


LOGS_HELP = "CSV/Parquet/NDJSON file, glob or folder (default: the vendor's source.path)"
VENDOR_HELP = "vendor with a file conf/vendors/<vendor>.yaml (or .yml), whose settings apply (default: conf/defaults.yaml only)"


def build_parser(command: str | None = "evaluate") -> argparse.ArgumentParser:
    """The command line; the evaluation's options (which load every detector) only when ``command``
    is evaluate (or not given)."""
    from licanom.config import sequence_models
    from licanom.detectors.catalog import AUTOENCODERS  # the catalog's names: no torch imported

    parser = Parser(prog="licanom", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"licanom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)  # subcommand usage: "licanom <command> ..."

    p = sub.add_parser("simulate", help="generate a vendor's licensing log with labelled anomalies",
                       description="Generate a vendor's licensing log with labelled anomalies.")
    p.add_argument("--profile", default="floating", choices=PROFILES, help="the vendor's licensing model")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="random seed (the same seed, the same log)")
    p.add_argument("--days", type=POSITIVE, default=30, help="days of log")
    p.add_argument("--out", required=True, help="folder for the log, its labels and events.csv")
    p.add_argument("--format", default="parquet", choices=SIM_FORMATS,
                   help="parquet: log.parquet and labels.parquet (Id, event, kind); csv: log.csv as a vendor's "
                        "export and labels.csv for detect --labels (Id, label: -1 anomaly, +1 normal); both: all four")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("prepare", help="extract, validate, encode and chunk a log",
                       description="Extract, validate, encode and chunk a log.")
    p.add_argument("--logs", help=LOGS_HELP)
    p.add_argument("--vendor", type=vendor_name, default=None, help=VENDOR_HELP)
    p.add_argument("--chunk-size", type=whole(2), default=None, help="requests per chunk (default: chunk.size, 100)")
    p.add_argument("--stride", type=POSITIVE, default=None,
                   help="requests between chunk starts (default: chunk.stride, or --chunk-size when given)")
    p.add_argument("--out", required=True, help="folder for chunks.npy, chunk_meta.parquet, quarantine, vocabulary")
    _file_arguments(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("detect", help="train detectors on a log and flag its anomalous chunks (or another log's)",
                       description="Train detectors on a log and flag anomalous chunks or per-key sequences; "
                                   "with --train-logs, train on that log and score --logs.")
    p.add_argument("--logs", help="the log to score, and to train on unless --train-logs is given; " + LOGS_HELP)
    _file_arguments(p, "--logs and --train-logs alike")
    p.add_argument("--train-logs", default=None,
                   help="train on this log (CSV/Parquet/NDJSON file, glob or folder) and score --logs with the "
                        "trained model, its vocabulary and threshold (default: train and score the same log)")
    p.add_argument("--vendor", type=vendor_name, default=None, help=VENDOR_HELP)
    p.add_argument("--model", type=model_names, default=None,
                   help=f"a model name, several separated by commas, 'all' (the {len(AUTOENCODERS)} autoencoders), "
                        f"'sequence' (the {len(sequence_models())} sequence models: {', '.join(sequence_models())}) "
                        "or 'auto'; Tail_context, IForest_context and LOF_context read each chunk's context "
                        "(default: train.models, auto)")
    p.add_argument("--threshold", default=None, choices=list(DECISIONS),
                   help="the decision of the autoencoders (detect.threshold) and context models "
                        "(context.threshold): severity (calibrated, 0-100) or one of the thesis's thresholds; "
                        "its settings are the configuration's threshold_params (default: as configured, "
                        "severity for both)")
    p.add_argument("--epochs", type=POSITIVE, default=None, help="training epochs (default: train.epochs, 10)")
    p.add_argument("--no-m1", action="store_true",
                   help="skip M1 (it retrains the model several times); the results table then says off")
    p.add_argument("--sequences", choices=["chunks", "key", "key-machine"], default=None,
                   help="what the sequence models read: fixed chunks or each key's (and machine's) requests "
                        "per period (default: sequence.mode, chunks)")
    p.add_argument("--period-hours", type=number(0), default=None,
                   help="per-key sequences: hours of a key's requests in one sequence (default: "
                        "sequence.period_hours, 24)")
    p.add_argument("--contamination", type=number(0, 1), default=None,
                   help="sequence models: the share of training items above the threshold, between 0 and 1 "
                        "(default: sequence.contamination, 0.01)")
    p.add_argument("--solver", choices=["gradient", "qp"], default=None,
                   help="training of the sequence models (default: sequence.solver, gradient)")
    p.add_argument("--labels", default=None,
                   help="CSV/Parquet with Id or Key and label (+1 normal, -1 anomaly, 0 unknown), of the log "
                        "trained on: the sequence models learn from their training items' labels (semi-supervised); "
                        "the other models learn without them, and labels for a run of none of the sequence models "
                        "are refused; a bad row is named counting from 0, the header not counted; labels of no row "
                        "of the log, or of its tail rows after the last full chunk (in no chunk), are counted and "
                        "named in a warning, a file of none in a chunk refused "
                        "(default: none, unsupervised)")
    p.add_argument("--out", required=True,
                   help="folder for chunks.parquet (or sequences.parquet), entities.parquet, results.csv, models/, the report")
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("report", help="write the HTML report of a scored run",
                       description="Write the HTML report of a scored run again.")
    p.add_argument("--run", required=True,
                   help="a run folder (licanom detect --out, or out/<vendor>/nights/...) or a nightly MLflow run id")
    p.add_argument("--out", default=None, help="folder for report.html and anomalies.csv (default: the run folder)")
    p.set_defaults(func=_cmd_report)

    sub.add_parser("run", add_help=False, help="run one flow now: score | train | nightly (licanom run --help)")

    p = sub.add_parser("evaluate", help="measure every detector on simulated vendors with planted anomalies",
                       description="Measure every detector and decision on simulated vendors with planted "
                                   "anomalies (the blocked protocol: make eval-blocked; the held-out nightly evaluation is make eval).")
    if command in (None, "evaluate"):
        from licanom.evaluation.cli import add_arguments

        add_arguments(p, positive=POSITIVE, non_negative=NON_NEGATIVE)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("serve", help="serve the per-vendor nightly and training deployments (Prefect)",
                       description="Serve the per-vendor nightly scoring and weekly training deployments.")
    p.add_argument("--vendor", type=vendor_name, action="append",
                   help="only this vendor, repeatable (default: every vendor in conf/vendors)")
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:  # the orchestration layer lives in flows/; the library does not import Prefect
        os.execv(sys.executable, [sys.executable, "-m", "flows.run", *argv[1:]])
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    from pydantic import ValidationError as ConfigError
    from yaml import YAMLError

    from licanom.data.chunk import NotEnoughDataError
    from licanom.config import ConfigFileError, describe_error
    from licanom.data.extract.files import ExtractFileError
    from licanom.data.validate import ValidationError

    out = getattr(args, "out", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        print(f"licanom: --out {out} is a file; give a folder (it is created when missing)", file=sys.stderr)
        return EXIT_USAGE
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = ReaderMayGo(stdout)  # type: ignore[assignment]
    # and standard error, which the flows' logs go to: a log pipe that closes would otherwise stop a
    # night half way (rich, which Prefect's console handler writes with, exits on a broken pipe)
    sys.stderr = ReaderMayGo(stderr)  # type: ignore[assignment]
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away is met here, not at the interpreter's exit
        return code
    except ConfigError as err:  # a setting's value: say which files the settings came from
        from licanom.config import VENDOR_SUFFIXES, default_conf_dir, vendor_file

        conf = default_conf_dir()
        vendor = getattr(args, "vendor", None)
        try:
            files = [str(vendor_file(vendor, conf))] if vendor else []
        except ConfigFileError:  # a second file (.yaml and .yml) written since the settings were read
            files = [" or ".join(str(conf / "vendors" / f"{vendor}{suffix}") for suffix in VENDOR_SUFFIXES)]
        where = " over ".join([*files, str(conf / "defaults.yaml")])
        print(f"licanom: configuration error: {describe_error(err)} (settings from the command line over {where})",
              file=sys.stderr)
        return EXIT_USAGE
    except (ConfigFileError, YAMLError) as err:
        print(f"licanom: configuration error: {describe_error(err)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValidationError, NotEnoughDataError) as err:
        print(f"licanom: the log cannot be used: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ExtractFileError as err:
        print(f"licanom: {one_line(err)}", file=sys.stderr)
        return EXIT_SOURCE
    except ValueError as err:
        print(f"licanom: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as err:  # ExtractError from the HTTP source
        print(f"licanom: {one_line(err)}", file=sys.stderr)
        return EXIT_SOURCE
    except KeyboardInterrupt:
        print("licanom: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug or the machine (disk full): one line, not a traceback
        print(f"licanom: unexpected error: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def failure_exit(err: object) -> tuple[int, str] | None:
    """The exit code and line of a flow run that failed on its input, its source or its settings,
    from the error it ended with (the table of this module's docstring, as the commands here give
    them): 3 the log cannot be used, 4 the log source failed (a file, the HTTP API) or the MLflow
    tracking server cannot be reached, 2 a setting, a missing secret or a vendor without a champion;
    for a nightly run whose vendors failed, theirs (licanom.config.VendorsFailedError). None for any
    other failure (1)."""
    from licanom.config import VendorConfigError, VendorsFailedError
    from licanom.data.chunk import NotEnoughDataError
    from licanom.data.extract.cryptolens import ExtractError
    from licanom.data.extract.files import ExtractFileError
    from licanom.data.privacy import MissingSecretError
    from licanom.data.validate import ValidationError
    from licanom.ops.tracking import NoChampionError, TrackingUnavailableError

    if isinstance(err, VendorsFailedError):
        return (err.exit_code, str(err).splitlines()[0]) if err.exit_code != EXIT_ERROR else None  # the count, named
    if isinstance(err, (ValidationError, NotEnoughDataError)):
        return EXIT_BAD_INPUT, f"the log cannot be used: {one_line(err)}"
    if isinstance(err, (ExtractFileError, ExtractError, TrackingUnavailableError)):  # the last names the server's URI
        return EXIT_SOURCE, one_line(err)
    if isinstance(err, (MissingSecretError, NoChampionError, VendorConfigError)):
        return EXIT_USAGE, one_line(err)
    return None


class ReaderMayGo:
    """Standard output that outlives its reader: when the pipe closes (``licanom detect ... | head``),
    the rest of the printing goes to the null device and the command runs to its end, its files
    written, instead of stopping at the first line nobody reads. Written by hand: the standard
    library's answer (SIGPIPE's default action) would kill the run half way."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _gone(self) -> None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()
            with contextlib.suppress(BrokenPipeError):
                self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def one_line(err: BaseException) -> str:
    """An error as one line: its first three non-empty lines joined (the type where it has no text)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines[:3]) + (" ..." if len(lines) > 3 else "") if lines else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
