"""The `licanom` command line: simulate logs, run the data path, detect anomalies.

Exit codes: 0 success; 1 an unexpected error (named in one line, no traceback); 2 wrong usage
or configuration; 3 the input cannot be used (a missing column, too many bad rows, fewer rows
than one chunk); 4 the log source failed (a missing or unreadable file, the HTTP API).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from licanom.thresholds import THRESHOLDS

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_SOURCE = 0, 1, 2, 3, 4


def _cmd_simulate(args: argparse.Namespace) -> int:
    from licanom.simulate import simulate

    t0 = time.perf_counter()
    sim = simulate(args.profile, seed=args.seed, days=args.days)
    sim.write(Path(args.out))
    kinds = sim.events.group_by("kind").len().sort("kind")
    print(f"simulated {sim.log.height:,} rows, {sim.events.height} anomalous events "
          f"({sim.labels.height:,} labelled rows) in {time.perf_counter() - t0:.1f} s -> {args.out}")
    for kind, n in kinds.iter_rows():
        print(f"  {kind:<18} {n} events")
    return EXIT_OK


def _load_cfg(args: argparse.Namespace) -> Any:
    from licanom.config import load_config

    overrides: dict[str, Any] = {}
    if getattr(args, "logs", None):
        overrides["source"] = {"kind": "files", "path": str(args.logs)}
    if getattr(args, "chunk_size", None):
        overrides.setdefault("chunk", {})["size"] = args.chunk_size
        overrides["chunk"]["stride"] = args.stride or args.chunk_size
    return load_config(args.vendor, overrides=overrides)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from licanom.pipeline import extract, prepare, write_prepared

    cfg = _load_cfg(args)
    t0 = time.perf_counter()
    raw = extract(cfg.source)
    prepared = prepare(raw, cfg)
    out = Path(args.out)
    write_prepared(prepared, out)
    print_prepared(prepared, time.perf_counter() - t0, out)
    return EXIT_OK


def _cmd_detect(args: argparse.Namespace) -> int:
    from licanom.config import load_config
    from licanom.detect import detect, format_results
    from licanom.pipeline import extract, prepare

    overrides: dict[str, Any] = {"source": {"kind": "files", "path": str(args.logs)}} if args.logs else {}
    if args.model:
        overrides["train"] = {"models": args.model if args.model in ("all", "sequence") else args.model.split(",")}
    if args.epochs:
        overrides.setdefault("train", {})["epochs"] = args.epochs
    if args.threshold:  # the decision of the autoencoders and of the context models
        overrides["detect"] = {"threshold": args.threshold}
        overrides["context"] = {"threshold": args.threshold}
    if args.no_m1:
        overrides.setdefault("detect", {})["m1"] = False
    if args.sequences:
        overrides.setdefault("sequence", {})["mode"] = args.sequences
    if args.solver:
        overrides.setdefault("sequence", {})["solver"] = args.solver
    cfg = load_config(args.vendor, overrides=overrides)
    labels = read_labels(Path(args.labels)) if args.labels else None
    out = Path(args.out)
    t0 = time.perf_counter()
    prepared = prepare(extract(cfg.source), cfg)
    print_prepared(prepared, time.perf_counter() - t0)
    out.mkdir(parents=True, exist_ok=True)
    prepared.validation.quarantine.write_parquet(out / "quarantine.parquet")
    prepared.encoded.vocabulary.save(out / "vocabulary.json")

    def progress(outcome: Any) -> None:
        row = outcome.row
        loss = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
        print(f"trained {row['model']:<14} in {row['train_seconds']:>7.1f} s; "
              f"loss {'-' if loss is None else format(loss, '.4f')}; "
              f"M3 flags {row['M3']} of {row['test_chunks']} test items")
        outcome.detector.save(out / "models" / f"{row['model']}.pt")

    detection = detect(prepared, cfg.train, cfg.detect, on_model=progress, sequence=cfg.sequence, context=cfg.context,
                       labels=labels, split=cfg.split)
    detection.write(out)
    print()
    print(format_results(detection.results))
    det = detection.primary.detector
    from licanom.report import decision_name

    decision = decision_name(det)
    if detection.sequences is not None:
        flagged = detection.sequences.filter("is_anomaly")
        print(f"\n{flagged.height} of {detection.sequences.height} {cfg.sequence.mode} sequences flagged by "
              f"{det.model} ({decision}, threshold {det.threshold_:.5f}) -> {out / 'sequences.parquet'}")
        for r in flagged.sort("score", descending=True).head(5).iter_rows(named=True):
            print(f"  {r['key']}  {r['start_time']:%Y-%m-%d %H:%M} - {r['end_time']:%H:%M}  "
                  f"{r['requests']} requests, {r['ips']} IPs, score {r['score']:.4f}")
        return EXIT_OK
    report = write_detect_report(cfg.vendor, detection, prepared, out)
    flagged = detection.chunks.filter("is_anomaly")
    print(f"\n{flagged.height} of {detection.chunks.height} chunks flagged by {det.model} "
          f"({decision}, threshold {det.threshold_:.5f}) -> {out / 'chunks.parquet'}")
    print(f"report: {report.html}  (anomalies as CSV: {report.csv})")
    return EXIT_OK


def read_labels(path: Path) -> Any:
    """A labels file (CSV or Parquet): ``Id`` or ``Key``, and ``label`` (+1 normal, -1 anomaly, 0 unknown)."""
    import polars as pl

    if not path.exists():
        raise ValueError(f"labels file {path} does not exist")
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=None)
    keyed = [c for c in ("Id", "Key") if c in frame.columns]
    if not keyed or "label" not in frame.columns:
        raise ValueError(f"{path}: a labels file needs a column Id or Key, and a column label; it has {frame.columns}")
    labels = frame.select(keyed[0], pl.col("label").cast(pl.Int8, strict=False))
    bad = labels.with_row_index("row").filter(pl.col("label").is_null() | ~pl.col("label").is_in([-1, 0, 1]))
    if bad.height:
        raise ValueError(f"{path}: label must be +1, -1 or 0; row {int(bad['row'][0]) + 2} is not")
    return labels


def write_detect_report(vendor: str, detection: Any, prepared: Any, out: Path) -> Any:
    """The vendor report of a detect run (its primary model), and what rebuilds it later."""
    from licanom.report import detector_report_input, save_run, write_report

    inp = detector_report_input(
        detection.primary.detector, vendor=vendor, run_id=f"detect {out.name}",
        model=detection.primary.detector.model, chunks=detection.chunks,
        rows=prepared.validation.valid,  # real values, even when pseudonymised
    )
    save_run(inp, out)
    return write_report(inp, out)


def _cmd_report(args: argparse.Namespace) -> int:
    from licanom.report import load_run, write_report

    run_dir = Path(args.run)
    if not run_dir.is_dir():  # an MLflow run id of a nightly scoring: its night folder
        from licanom.tracking import configure

        try:
            run = configure().client.get_run(args.run)
        except Exception as err:  # noqa: BLE001 - MLflow raises its own types for unknown ids
            raise ValueError(f"{args.run} is neither a run folder nor an MLflow run id ({type(err).__name__})") from err
        folder = run.data.params.get("out_dir")
        if not folder:
            raise ValueError(f"MLflow run {args.run} records no night folder (param out_dir)")
        run_dir = Path(folder)
    paths = write_report(load_run(run_dir), Path(args.out) if args.out else run_dir)
    print(f"report: {paths.html}  (anomalies as CSV: {paths.csv})")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    # The evaluation's command line lives with the benchmarks (benchmarks/eval_detectors.py).
    from benchmarks.eval_detectors import main as evaluate_main

    return int(evaluate_main(list(args.rest)))


def _cmd_serve(args: argparse.Namespace) -> int:
    # The orchestration layer lives in flows/; the library does not import Prefect.
    import os

    cmd = [sys.executable, "-m", "flows.serve"]
    for vendor in args.vendor or ():
        cmd += ["--vendor", vendor]
    os.execv(sys.executable, cmd)
    return EXIT_OK  # not reached


def print_prepared(prepared: Any, seconds: float, out: Path | None = None) -> None:
    """A short account of what the data path made."""
    v = prepared.validation
    c = prepared.chunks
    print(f"rows read        {v.n_in:>12,}")
    print(f"rows valid       {v.valid.height:>12,}")
    print(f"rows quarantined {v.quarantine.height:>12,}" + (f"  -> {out / 'quarantine.parquet'}" if out else ""))
    for reason, n in v.reason_counts().head(5).iter_rows():
        print(f"    {n:>8,}  {reason}")
    print(f"chunks           {c.n_chunks:>12,}  ({c.size} requests, stride {c.stride}; "
          f"train {int((~prepared.test_mask).sum()):,}, test {int(prepared.test_mask.sum()):,})")
    print(f"tail rows        {c.tail_rows:>12,}  (after the last full chunk, not scored yet)")
    vocab = prepared.encoded.vocabulary
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in vocab.values.items())
    print(f"vocabulary       {sizes}")
    print(f"took             {seconds:>12.2f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="licanom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="generate a vendor's licensing log with labelled anomalies")
    p.add_argument("--profile", default="floating", help="node-locked | usage-based | floating | mixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--out", required=True, help="folder for log.parquet, labels.parquet, events.csv")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("prepare", help="extract, validate, encode and chunk a log")
    p.add_argument("--logs", help="CSV/Parquet/NDJSON file, glob or folder (default: the vendor's source)")
    p.add_argument("--vendor", default=None, help="vendor name: reads conf/vendors/<vendor>.yaml")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("detect", help="train autoencoders on a log and flag anomalous chunks")
    p.add_argument("--logs", help="CSV/Parquet/NDJSON file, glob or folder (default: the vendor's source)")
    p.add_argument("--vendor", default=None, help="vendor name: reads conf/vendors/<vendor>.yaml")
    p.add_argument("--model", default=None,
                   help="a model name, several separated by commas, 'all' (the eight autoencoders) or 'sequence'; "
                        "Tail_context, IForest_context and LOF_context read each chunk's context (licanom.context)")
    p.add_argument("--threshold", default=None, choices=list(THRESHOLDS),
                   help="the decision of the autoencoders (detect.threshold) and context models (context.threshold)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--no-m1", action="store_true", help="skip M1 (it retrains the model several times)")
    p.add_argument("--sequences", choices=["chunks", "key", "key-machine"], default=None,
                   help="what the sequence models read: fixed chunks (default) or each key's (and machine's) "
                        "requests per period")
    p.add_argument("--solver", choices=["gradient", "qp"], default=None, help="training of the sequence models")
    p.add_argument("--labels", default=None,
                   help="CSV/Parquet with Id or Key and label (+1 normal, -1 anomaly, 0 unknown): semi-supervised")
    p.add_argument("--out", required=True, help="folder for chunks.parquet, results.csv, models/")
    p.set_defaults(func=_cmd_detect)
    p = sub.add_parser("report", help="write the HTML report of a scored run")
    p.add_argument("--run", required=True,
                   help="a run folder (licanom detect --out, or out/<vendor>/nights/...) or a nightly MLflow run id")
    p.add_argument("--out", default=None, help="folder for report.html and anomalies.csv (default: the run folder)")
    p.set_defaults(func=_cmd_report)
    sub.add_parser("run", add_help=False, help="run one flow now: score | train | nightly (run --help)")
    sub.add_parser("evaluate", add_help=False,
                   help="measure every detector on simulated vendors with planted anomalies (evaluate --help)")
    p = sub.add_parser("serve", help="serve the per-vendor nightly and training deployments (Prefect)")
    p.add_argument("--vendor", action="append", help="only these vendors (default: all in conf/vendors)")
    p.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"]:  # its options are the evaluation script's own
        return _cmd_evaluate(argparse.Namespace(rest=argv[1:]))
    if argv[:1] == ["run"]:  # the orchestration layer lives in flows/; the library does not import Prefect
        os.execv(sys.executable, [sys.executable, "-m", "flows.run", *argv[1:]])
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError as ConfigError

    from licanom.chunk import NotEnoughDataError
    from licanom.extract.files import ExtractFileError
    from licanom.validate import ValidationError

    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"licanom: configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ValidationError, NotEnoughDataError) as err:
        print(f"licanom: the log cannot be used: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ExtractFileError as err:
        print(f"licanom: {err}", file=sys.stderr)
        return EXIT_SOURCE
    except ValueError as err:
        print(f"licanom: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as err:  # ExtractError from the HTTP source
        print(f"licanom: {err}", file=sys.stderr)
        return EXIT_SOURCE
    except Exception as err:  # a bug or the machine (disk full): one line, not a traceback
        print(f"licanom: unexpected error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
