"""Train a vendor's variants with MLflow tracking, then compare and register them."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from licanom.ops.bundle import ModelBundle, absent_fields
from licanom.config import Config
from licanom.data.context_vector import KeyHistory
from licanom.ops.detect import (
    ModelOutcome, evaluate_model, format_results, is_context_model, is_sequence_model, make_detector, model_inputs,
    require_training_chunks, results_frame,
)
from licanom.data.pipeline import Prepared
from licanom.data.privacy import secret_env_name
from licanom.ops.tracking import RegisteredVersion, Tracker


@dataclass(frozen=True)
class VariantResult:
    """One trained variant: its MLflow run, its saved bundle and its results-table row."""

    model: str
    run_id: str
    bundle_dir: Path
    row: pl.DataFrame  # one row, RESULT_COLUMNS
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    description: str = ""  # the registered version's description
    decision: str = ""     # the detector's decision (its threshold_method_: "severity >= 55, ...")
    threshold: float | None = None  # that decision's threshold on the detector's own score
    caution: str | None = None  # BaseDetector.calibration_caution: severity calibrated on too few chunks

    @property
    def final_val_loss(self) -> float | None:
        return self.val_loss[-1] if self.val_loss else None


@dataclass(frozen=True)
class TrainingSummary:
    vendor: str
    parent_run_id: str
    results: pl.DataFrame
    versions: tuple[RegisteredVersion, ...]
    champion: RegisteredVersion


def data_hash(prepared: Prepared) -> str:
    """A short hash of the chunks and the split: identical data gives identical hashes."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(prepared.chunks.X).tobytes())
    h.update(prepared.test_mask.tobytes())
    return h.hexdigest()[:16]


def checkpoint_dir(cfg: Config, prepared: Prepared, model: str) -> Path:
    """Where a variant's training keeps its checkpoints: the same data and settings give the
    same folder, so a training killed part-way resumes from its last epoch when rerun."""
    settings = hashlib.sha256(
        json.dumps([cfg.train.model_dump(mode="json", exclude={"models", "threads", "parallel"}), cfg.chunk.model_dump(mode="json")], sort_keys=True).encode()
    ).hexdigest()[:8]
    return Path(cfg.output_dir) / cfg.vendor / "checkpoints" / f"{data_hash(prepared)}-{settings}" / model


# Told each finished epoch of an autoencoder: (model, epoch from 1, epochs planned, {"train/loss", "val/loss"})
EpochCallback = Callable[[str, int, int, dict[str, float]], None]


def dataset_source(cfg: Config) -> str | None:
    """Where the training rows came from, for MLflow's dataset input: a path, a URL or None."""
    if cfg.source.kind == "files":
        return cfg.source.path
    if cfg.source.kind == "cryptolens":
        return f"{cfg.source.base_url.rstrip('/')}/api/ai/GetWebAPILog"
    return None


def input_example(cfg: Config, prepared: Prepared) -> pl.DataFrame:
    """The registered model's input example: the first training rows, one chunk of them (the model
    answers fewer with no chunk). For a pseudonymised vendor their keys, addresses and machine codes
    are made-up stand-ins (``EXAMPLE-KEY-<n>``, documentation addresses 192.0.2.<n>, ``example-machine-<n>``):
    the real ones never reach MLflow, and pseudonyms would not do, since the model pseudonymises
    the real rows it is given and refuses a pseudonym as an address."""
    from licanom.data.pipeline import pseudonym_secret
    from licanom.data.columns import REQUIRED_RAW

    rows = prepared.validation.valid.head(cfg.chunk.size).select(REQUIRED_RAW)
    if pseudonym_secret(cfg) is None:
        return rows
    stand_in = {column: pl.col(column).rank("dense").cast(pl.Int64) for column in ("Key", "IP", "MachineCode")}
    return rows.with_columns(
        pl.format("EXAMPLE-KEY-{}", stand_in["Key"]).alias("Key"),
        pl.when(pl.col("IP").fill_null("") == "").then(pl.col("IP"))
        .otherwise(pl.format("192.0.2.{}", (stand_in["IP"] - 1) % 254 + 1)).alias("IP"),
        pl.when(pl.col("MachineCode").fill_null("") == "").then(pl.col("MachineCode"))
        .otherwise(pl.format("example-machine-{}", stand_in["MachineCode"])).alias("MachineCode"))


def _log_training_data(tracker: Tracker, run_id: str, cfg: Config, prepared: Prepared) -> None:
    tracker.log_dataset(run_id, prepared.validation.valid, f"{cfg.vendor}-training", dataset_source(cfg))


def last_chunked_id(prepared: Prepared) -> int | None:
    """The last Id of the log's chunks: where the vendor's first night starts (the rows after it,
    read but cut into no chunk, are its first rows) and what a model trained on them records."""
    last = prepared.chunks.meta["last_id"].max()
    return None if last is None else int(last)  # type: ignore[arg-type]


def for_vendor_size(cfg: Config, prepared: Prepared) -> Config:
    """The configuration with ``train.models: auto`` resolved by the vendor's training chunks.
    A log of fewer than 2 training chunks is refused here, before any run or model
    (:class:`licanom.data.chunk.NotEnoughDataError`, as ``licanom detect`` refuses it)."""
    require_training_chunks(prepared)
    return cfg.for_size(int((~prepared.test_mask).sum()))


def start_training(tracker: Tracker, cfg: Config, prepared: Prepared) -> str:
    """The parent MLflow run of a training flow; returns its run id. A log of fewer than 2
    training chunks is refused before the run starts (:func:`for_vendor_size` refuses it first)."""
    require_training_chunks(prepared)
    run_id = tracker.start_run(cfg.vendor, f"train {cfg.vendor}", "training")
    try:
        _log_training_start(tracker, run_id, cfg, prepared)
    except BaseException as err:  # the run started: it ends FAILED, not RUNNING for good
        fail_training(tracker, run_id, err)
        raise
    return run_id


def _log_training_start(tracker: Tracker, run_id: str, cfg: Config, prepared: Prepared) -> None:
    tracker.log_params(run_id, {
        "models": ",".join(cfg.train.models), "chunk_size": cfg.chunk.size, "stride": cfg.chunk.stride,
        "encoder": cfg.encode.encoder, "split": cfg.split.method, "data_hash": data_hash(prepared),
        "threshold": cfg.detect.threshold,
    })
    v = prepared.validation
    tracker.log_metrics(run_id, {
        "rows_read": v.n_in, "rows_valid": v.valid.height, "rows_quarantined": v.quarantine.height,
        "chunks_train": int((~prepared.test_mask).sum()), "chunks_test": int(prepared.test_mask.sum()),
    })
    tracker.log_text(run_id, prepared.encoded.vocabulary.to_json(), "vocabulary.json")
    _log_training_data(tracker, run_id, cfg, prepared)
    if v.quarantine.height:
        tracked = tracked_quarantine(cfg, v.quarantine)
        if tracked is not v.quarantine:  # the real values stay on the vendor's own disk
            own = training_quarantine_path(cfg, run_id)
            own.parent.mkdir(parents=True, exist_ok=True)
            v.quarantine.write_parquet(own)
        tracker.log_frame(run_id, tracked, "quarantine.parquet")


def fail_training(tracker: Tracker, run_id: str, error: BaseException) -> bool:
    """End a training's parent run FAILED after ``error`` (an exception, or the training stopped:
    KeyboardInterrupt, SystemExit), as a night's run ends (:mod:`licanom.ops.nightly`); tag
    ``licanom.outcome`` says why, in one line. A run no longer RUNNING (finished before the error)
    is left as it is. Never raises an Exception of its own, so that ``error`` is the one the caller
    sees (a store that cannot be reached is a warning); True where the run was ended."""
    import logging

    interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
    first = (str(error).strip().splitlines() or [""])[0][:300]
    why = f"{'stopped' if interrupted else 'failed'}: {type(error).__name__}" + (f": {first}" if first else "")
    try:
        if tracker.client.get_run(run_id).info.status != "RUNNING":
            return False
        tracker.set_tags(run_id, {"licanom.outcome": why})
        tracker.end_run(run_id, "FAILED")
        return True
    except Exception as err:  # noqa: BLE001 - never in the way of the training's own error
        logging.getLogger(__name__).warning("training run %s was not marked FAILED (%s: %s)",
                                            run_id, type(err).__name__, err)
        return False


# A RUNNING training run whose owner (OWNER_HOST_TAG, OWNER_PID_TAG) is on another host, or not
# recorded (a run from before owners were), is marked KILLED only once it started this long ago: its
# process cannot be asked from here, and a vendor's training takes hours, not days.
OTHER_HOST_LIMIT = timedelta(hours=48)


def end_killed_trainings(tracker: Tracker, vendor: str, other_host_limit: timedelta = OTHER_HOST_LIMIT,
                         now: float | None = None) -> list[str]:
    """Mark KILLED the vendor's training runs (parents and variants) that a killed training left
    RUNNING: those whose owner process on this host is gone (killed with SIGKILL, or a later
    process under its pid), and those owned by another host or by no recorded process that
    started more than ``other_host_limit`` ago (``now``: the time, seconds since the epoch). A run
    of a training still running, on this host or recently on another, is left as it is. Tag
    ``licanom.outcome`` says why; one line per run ended, for the caller to log (the training flow
    before it starts its own run, a night's recovery). Safe to repeat; an unreachable server is
    :class:`licanom.ops.tracking.TrackingUnavailableError`."""
    import socket

    from mlflow.exceptions import MlflowException

    from licanom.ops.tracking import OWNER_HOST_TAG, OWNER_PID_TAG, OWNER_SPACE_TAG, _reaching, owner_space

    here, space = socket.gethostname(), owner_space()
    now = time.time() if now is None else now
    with _reaching(tracker.config.tracking_uri):
        exp = tracker.client.get_experiment_by_name(tracker.experiment_name(vendor))
        if exp is None:
            return []
        runs, token = [], None
        while True:
            page = tracker.client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'",
                                              max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                break
    lines = []
    for run in runs:
        host, pid = run.data.tags.get(OWNER_HOST_TAG), run.data.tags.get(OWNER_PID_TAG)
        started = (run.info.start_time or 0) / 1000
        age = timedelta(seconds=max(0.0, now - started))
        # this host's process only where its pid means the same here: the same boot and pid namespace (a
        # container that shares the host's name and not its processes, or one restarted, is another host)
        if host == here and pid is not None and pid.isdigit() and space and run.data.tags.get(OWNER_SPACE_TAG) == space:
            if not process_gone(int(pid), started):
                continue
            why = f"its process {pid} on {host} is gone"
        elif age > other_host_limit:
            owner = f"process {pid} on host {host}" if host else "no process recorded"
            if host == here and host:
                owner += " (another boot or container)"
            why = (f"owned by {owner}, which cannot be asked from {here}, and started {_hours(age)} ago "
                   f"(more than {_hours(other_host_limit)})")
        else:
            continue
        try:
            with _reaching(tracker.config.tracking_uri):
                tracker.set_tags(run.info.run_id, {"licanom.outcome": f"killed: {why}"})
                tracker.end_run(run.info.run_id, "KILLED")
        except MlflowException as err:  # deleted meanwhile, say: the others are still ended
            lines.append(f"MLflow run {run.info.run_id} of vendor {vendor} left RUNNING ({why}): "
                         f"{(str(err).splitlines() or [type(err).__name__])[0]}")
            continue
        name = run.info.run_name or run.data.tags.get("licanom.kind", "training")
        lines.append(f"MLflow run {run.info.run_id} ({name}) of vendor {vendor} marked KILLED: {why}")
    return lines


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.0f} hours" if hours >= 2 else f"{span.total_seconds() / 60:.0f} minutes"


def process_gone(pid: int, since: float) -> bool:
    """Whether process ``pid`` of this host, which owned a run started at ``since`` (seconds since
    the epoch), is gone: no such process, a zombie (killed, not yet reaped), or one started after
    the run did (its pid given again). This process is gone only where it started after the run did
    (a container restarted, its process given the same pid)."""
    import os

    if pid == os.getpid():
        stat = _proc_stat(pid)
        return stat is not None and stat[1] is not None and stat[1] > since + 1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        pass
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (not Linux): alive is all that is known
        return False
    state, started = stat
    return state == "Z" or (started is not None and started > since + 1)


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """A Linux process's state letter and start time (seconds since the epoch), from /proc."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def training_quarantine_path(cfg: Config, run_id: str) -> Path:
    """Where a pseudonymised vendor's training quarantine keeps its real values (MLflow gets the
    pseudonymised copy): ``<output_dir>/<vendor>/training/<run id>-quarantine.parquet``."""
    return Path(cfg.output_dir) / cfg.vendor / "training" / f"{run_id}-quarantine.parquet"


def kept_training_quarantine(cfg: Config, run_id: str) -> Path | None:
    """The local copy of the training run's quarantine with its real values, where one was
    written (a pseudonymised vendor's); None otherwise."""
    path = training_quarantine_path(cfg, run_id)
    return path if path.exists() else None


def tracked_quarantine(cfg: Config, quarantine: pl.DataFrame) -> pl.DataFrame:
    """The training quarantine as MLflow gets it: for a pseudonymised vendor only the log's own
    columns and the quarantine's (an export's other columns, e.g. an e-mail address, are left out),
    with Key, IP, MachineCode and FriendlyName as pseudonyms and each export named by its file name,
    without its folders (:func:`training_quarantine_path` keeps the real copy); for the others,
    ``quarantine`` itself."""
    from licanom.data.columns import OPTIONAL_RAW, REQUIRED_RAW
    from licanom.data.pipeline import pseudonym_secret
    from licanom.data.privacy import pseudonymise
    from licanom.data.schema import SOURCE_FILE, SOURCE_ROW
    from licanom.data.validate import FOLDERS_OF_A_LINE, REASON, ROW

    secret = pseudonym_secret(cfg)
    if secret is None:
        return quarantine
    known = (ROW, *REQUIRED_RAW, *OPTIONAL_RAW, SOURCE_FILE, SOURCE_ROW, REASON)
    tracked = pseudonymise(quarantine.select(c for c in quarantine.columns if c in known), secret)
    # the export's file by its name alone: a local path ("/srv/exports/<customer>/...") is the vendor's
    return tracked.with_columns(
        *([pl.col(REASON).str.replace(FOLDERS_OF_A_LINE, "${1}")] if REASON in tracked.columns else []),
        *([pl.col(SOURCE_FILE).str.replace(r"^.*[/\\]", "")] if SOURCE_FILE in tracked.columns else []))


_ENTITY_MODELS: dict[str, object] = {}


def entity_model(prepared: Prepared) -> object:
    """The per-entity results' model of these training rows (fitted once per training data, then
    kept in every variant's bundle)."""
    from licanom.ops.bundle import fit_entities

    key = data_hash(prepared)
    if key not in _ENTITY_MODELS:
        _ENTITY_MODELS.clear()
        _ENTITY_MODELS[key] = fit_entities(prepared.encoded.frame)
    return _ENTITY_MODELS[key]


def _fit_arguments(cfg: Config, prepared: Prepared, model: str) -> tuple[Any, ...]:
    """:func:`licanom.ops.side_by_side.fit`'s arguments for ``model``: one place for the fit here and the
    fits side by side (:func:`fit_side_by_side`), so that both read the same inputs, chunks' days and all."""
    return (cfg, model, model_inputs(model, prepared), prepared.test_mask, str(checkpoint_dir(cfg, prepared, model)),
            prepared.chunks.days())


def _fit(cfg: Config, prepared: Prepared, model: str) -> ModelOutcome:
    """Fit ``model`` as :func:`train_variant` does (its checkpoints, its settings) and score the chunks."""
    from licanom.ops import side_by_side

    return side_by_side.fit(*_fit_arguments(cfg, prepared, model))


def fit_side_by_side(cfg: Config, prepared: Prepared) -> dict[str, ModelOutcome]:
    """The variants of ``cfg.train.models`` fitted ``train.parallel`` at a time, each in its own
    process on one torch thread; empty when ``train.parallel`` is 1 (or one variant), where
    :func:`train_variant` fits each in turn. Pass each outcome to :func:`train_variant` as
    ``fitted``. Every fit seeds its own weights and shuffling, so the models are those that
    training one after another with ``train.threads: 1`` gives (tested).

    Processes, not threads: torch's random generator is global to a process, so variants fitted
    in threads would draw from it in turn. They are started fresh (``spawn``), not forked from a
    process whose torch thread pool may be running.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    models = cfg.train.models
    workers = min(cfg.train.parallel, len(models))
    if workers <= 1:
        return {}
    one = cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": 1})})
    from licanom.ops import side_by_side

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=side_by_side.one_thread) as pool:
        futures = {model: pool.submit(side_by_side.fit, *_fit_arguments(one, prepared, model)) for model in models}
        return {model: future.result() for model, future in futures.items()}


def train_variant(tracker: Tracker, cfg: Config, prepared: Prepared, model: str, parent_run_id: str,
                  work_dir: Path, on_epoch: EpochCallback | None = None,
                  fitted: ModelOutcome | None = None) -> VariantResult:
    """Train one variant in a nested run: params, per-epoch curves, thresholds, counts, plots.

    An autoencoder's losses reach MLflow as each epoch ends (step = epoch), and ``on_epoch``
    hears of each epoch too (the flow's log). With ``fitted`` (:func:`fit_side_by_side`) the
    variant was fitted already: its run records it, its curves logged at the end."""
    from licanom.report import plots
    from licanom.report.analysis import score_wording
    from licanom.detectors.autoencoders.epochs import epoch_listener

    sequence_model = is_sequence_model(model)
    if sequence_model and cfg.sequence.mode != "chunks":
        raise ValueError(
            f"the training flow trains {model} on chunks; per-key sequences (sequence.mode "
            f"{cfg.sequence.mode!r}) run from `licanom detect --sequences` for now"
        )
    checkpoints = checkpoint_dir(cfg, prepared, model)
    detector = (fitted.detector if fitted is not None else
                make_detector(model, cfg.train, cfg.detect, cfg.sequence, cfg.context, cfg.encode,
                              checkpoint_dir=str(checkpoints)))
    with tracker.run(cfg.vendor, model, "variant", parent_run_id, tags={"model": model}) as run_id:
        _log_training_data(tracker, run_id, cfg, prepared)
        live: dict[str, Any] = {"module": None, "epochs": set()}

        def epoch_done(module: object, epoch: int, losses: dict[str, float]) -> None:
            if live["module"] is None:
                live["module"] = module
            if module is not live["module"]:  # a retraining inside M1's threshold search: not this run's curve
                return
            tracker.log_epoch(run_id, epoch, losses)
            live["epochs"].add(epoch)
            if on_epoch is not None:
                on_epoch(model, epoch, cfg.train.epochs, losses)

        if fitted is not None:
            outcome = fitted
        else:
            with epoch_listener(epoch_done):
                outcome = evaluate_model(detector, model_inputs(model, prepared), prepared.test_mask, cfg.detect,
                                         days=prepared.chunks.days())
        row = outcome.row
        common = {
            "architecture": model, "bottleneck": row["bottleneck"], "depth": row["depth"],
            "chunk_size": cfg.chunk.size, "stride": cfg.chunk.stride, "epochs": cfg.train.epochs,
            "batch_size": cfg.train.batch_size, "seed": cfg.train.seed, "data_hash": data_hash(prepared),
        }
        if is_context_model(model):
            train_loss, val_loss = (), ()
            tracker.log_params(run_id, {**common, "family": "context", "n_estimators": detector.n_estimators,
                                        "n_neighbors": detector.n_neighbors, "tail_quantile": detector.tail_quantile,
                                        "threshold_method": detector.threshold_method_})
        elif sequence_model:
            history = detector.history_
            train_loss, val_loss = tuple(history.objective), ()
            tracker.log_params(run_id, {**common, "family": model.split("_")[0], "solver": cfg.sequence.solver,
                                        "hidden": cfg.sequence.hidden, "lam": cfg.sequence.lam,
                                        "tau": cfg.sequence.tau, "lr": cfg.sequence.lr,
                                        "threshold_method": "own boundary"})
        else:
            net, report = detector.net_, detector.report_
            assert net is not None and report is not None
            train_loss, val_loss = report.train_loss, report.val_loss
            tracker.log_params(run_id, {**common, "family": net.family, "lr": cfg.train.lr,
                                        "threshold_method": detector.threshold_method_,
                                        "device": report.device})
        # epochs not logged live: a sequence model's objective, or those before a resumed checkpoint
        for epoch in range(1, max(len(train_loss), len(val_loss)) + 1):
            if epoch not in live["epochs"]:
                tracker.log_epoch(run_id, epoch, {
                    "train/loss": train_loss[epoch - 1] if epoch <= len(train_loss) else None,
                    "val/loss": val_loss[epoch - 1] if epoch <= len(val_loss) else None,
                })
        convergence = getattr(detector, "convergence_", None)
        if convergence is not None:  # a sequence model's solver: did it converge, and why (not)
            tracker.log_metrics(run_id, {f"convergence/{k}": v for k, v in convergence.as_metrics().items()})
            tracker.set_tags(run_id, {"converged": {True: "true", False: "false", None: "no claim"}[convergence.converged],
                                      "convergence": convergence.reason})
        tracker.log_metrics(run_id, {
            "train_seconds": row["train_seconds"], "threshold": detector.threshold_,
            **{f"threshold_{k}": row[f"threshold_{k}"] for k in ("M1", "M2", "M3")},
            **{f"anomalies_{k}": row[k] for k in ("M1", "M2", "M3", "quantile", "pot", "GMM", "KMeans")},
        })
        train_err, test_err = outcome.scores[~prepared.test_mask], outcome.scores[prepared.test_mask]
        png = plots.error_histograms(train_err, test_err, {
            "M1": row["threshold_M1"], "M2": row["threshold_M2"], "M3": row["threshold_M3"],
        }, title=f"{cfg.vendor}: {model}", xlabel=score_wording(model).score)
        tracker.log_bytes(run_id, png, "error_histogram.png")
        bundle_dir = ModelBundle(
            vendor=cfg.vendor, detector=detector, vocabulary=prepared.encoded.vocabulary,
            chunk=cfg.chunk, encode=cfg.encode,
            product_ids=tuple(sorted(prepared.validation.valid["ProductId"].unique().to_list())),
            pseudonym_env=secret_env_name(cfg.vendor, cfg.privacy.secret_env) if cfg.privacy.pseudonymise else None,
            key_history=KeyHistory.from_rows(prepared.encoded.frame, levels=True) if is_context_model(model) else None,
            entity_model=entity_model(prepared),
            train_last_id=last_chunked_id(prepared),
            absent_fields=absent_fields(prepared.validation.valid),
        ).save(work_dir / model)
    shutil.rmtree(checkpoints, ignore_errors=True)  # trained and saved: nothing left to resume
    return VariantResult(
        model=model, run_id=run_id, bundle_dir=bundle_dir,
        row=results_frame([row]),
        train_loss=tuple(train_loss), val_loss=tuple(val_loss),
        description=version_description(cfg, prepared, model, detector, row),
        decision=getattr(detector, "threshold_method_", None) or "its own boundary",
        threshold=None if detector.threshold_ is None else float(detector.threshold_),
        caution=detector.calibration_caution(),
    )


def version_description(cfg: Config, prepared: Prepared, model: str, detector: Any, row: dict[str, Any]) -> str:
    """What a registered version is, in a few lines for the MLflow model registry."""
    valid = prepared.validation.valid
    span = (f"{valid['Time'].min():%Y-%m-%d %H:%M} to {valid['Time'].max():%Y-%m-%d %H:%M} UTC"
            if valid.height else "no rows")
    loss = row.get("val_loss") if row.get("val_loss") is not None else row.get("train_loss")
    lines = [
        f"{model} for vendor {cfg.vendor}, trained on {int((~prepared.test_mask).sum()):,} chunks of "
        f"{cfg.chunk.size} requests ({valid.height:,} rows, {span}).",
        f"Decision: {getattr(detector, 'threshold_method_', None) or 'its own boundary'}, threshold "
        f"{float(detector.threshold_):.6g}." + ("" if loss is None else f" Final loss {float(loss):.6g}."),
        f"Data hash {data_hash(prepared)}. Input: raw Web API Log rows; output: one row per chunk "
        "(licanom detect's chunks.parquet columns).",
    ]
    return "\n".join(lines)


def finish_training(tracker: Tracker, cfg: Config, parent_run_id: str,
                    variants: list[VariantResult], prepared: Prepared | None = None) -> TrainingSummary:
    """Results table and loss curves on the parent run; register every variant; move champion."""
    from licanom.report import plots

    results = pl.concat([v.row for v in variants])
    tracker.log_frame(parent_run_id, results, "results.csv")
    tracker.log_text(parent_run_id, format_results(results), "results.txt")
    png = plots.loss_curves({v.model: (v.train_loss, v.val_loss) for v in variants}, title=cfg.vendor)
    tracker.log_bytes(parent_run_id, png, "loss_curves.png")
    example = input_example(cfg, prepared) if prepared is not None else None
    versions = [
        tracker.register_bundle(cfg.vendor, v.run_id, v.bundle_dir, v.model, v.final_val_loss,
                                input_example=example, description=v.description or None)
        for v in variants
    ]
    champion = tracker.promote(cfg.vendor, versions, default_model=cfg.train.models[0])
    tracker.log_params(parent_run_id, {"champion_version": champion.version, "champion_model": champion.model})
    tracker.end_run(parent_run_id)
    warm_champion_cache(tracker, cfg)
    return TrainingSummary(cfg.vendor, parent_run_id, results, tuple(versions), champion)


def warm_champion_cache(tracker: Tracker, cfg: Config) -> None:
    """Fetch the champion's files into the vendor's cache now (licanom.ops.nightly.champion_cache),
    so that the first night after a training asks the tracking server only for the alias, as
    every later night does. A failure here costs that night a download, nothing else: it is
    logged, not raised."""
    import logging

    from licanom.ops.nightly import champion_cache

    try:
        tracker.load_champion(cfg.vendor, champion_cache(Path(cfg.output_dir), cfg.vendor))
    except Exception as err:  # noqa: BLE001 - the night downloads the model itself
        logging.getLogger(__name__).warning("vendor %s: the champion's files were not cached (%s: %s); "
                                            "the next night downloads them", cfg.vendor, type(err).__name__, err)


def work_dir() -> Path:
    """A fresh folder for the bundles of one training run (removed by :func:`discard_work_dir`)."""
    return Path(tempfile.mkdtemp(prefix="licanom-train-"))


def discard_work_dir(path: Path) -> None:
    """Remove a training run's bundle folder: registering a bundle copies it into MLflow's
    artifacts, and a run that failed left nothing worth resuming there (checkpoints live under
    the output folder, :func:`checkpoint_dir`). Without this, every weekly training of every
    vendor would leave its bundles in the temporary folder."""
    shutil.rmtree(path, ignore_errors=True)


# The encode-and-chunk step's cached results (the training flow's task keeps them so that a rerun
# of a failed training reuses the chunks): their file names start with this.
CHUNK_CACHE_PREFIX = "encode-chunk-"


def prune_chunk_cache(folder: Path, older_than: timedelta, now: float | None = None) -> list[Path]:
    """Remove the cached chunks in ``folder`` written more than ``older_than`` ago; the removed
    paths. The cache's expiry only stops a file from being read: nothing deletes it, and one
    file is tens of megabytes per vendor and training."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cut = (time.time() if now is None else now) - older_than.total_seconds()
    removed = []
    for path in folder.glob(CHUNK_CACHE_PREFIX + "*"):
        try:
            if path.is_file() and path.stat().st_mtime < cut:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another training pruned it first
            pass
    return removed
