"""Everything MLflow: configuration, training and nightly runs, artifacts, the model registry.

Nothing here runs at import time; :func:`configure` reads ``mlflow.yaml`` and returns a
:class:`Tracker` bound to that store. Runs are written through ``MlflowClient`` with explicit
run ids, so that flows running in threads of one process (the nightly fan-out) never log to
each other's run.

Champion rule (no labels needed): among a vendor's versions, the champion is the newest
version of the configured default variant (the first of ``train.models``); when the newest
training run registered several variants, the default variant wins, and a non-default
variant becomes champion only when the default is missing, by lowest validation loss.
Every new version gets the alias ``challenger``.

Experiments: training runs go to ``<prefix><vendor>`` and nightly scoring runs to
``<prefix><vendor>/nightly``, so a night does not bury the variants to compare; both are marked
as model-training experiments (the tag ``mlflow.experimentKind``), so the MLflow UI opens them
on their runs and charts, not on the GenAI traces view.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import mlflow
import mlflow.exceptions
import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import yaml

from licanom.spelling import did_you_mean

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "mlflow.yaml"
MODEL_CODE = Path(__file__).resolve().parent / "pyfunc_model.py"  # what a registered model runs when loaded
CHAMPION, CHALLENGER = "champion", "challenger"
# MLflow's experiment type tag and the value of its "Machine learning" (model training) type; the UI
# infers "GenAI" for an experiment without it, and shows traces instead of runs (MLflow 3.17)
EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
NIGHTLY = "nightly"  # the run kind whose runs go to the vendor's own nightly experiment
# the process that owns a run, in its tags: a run left RUNNING by a process that is gone (kill -9, the
# machine lost) is told from one still running (licanom.ops.training.end_killed_trainings)
OWNER_HOST_TAG, OWNER_PID_TAG = "licanom.owner.host", "licanom.owner.pid"
# where the owner's process id means something: the machine's boot and the process-id namespace (Linux);
# two containers may share a host name (host networking, a fixed hostname) and not their processes
OWNER_SPACE_TAG = "licanom.owner.space"


def owner_space() -> str:
    """This process's boot id and process-id namespace (``/proc``; empty where there is none): two
    processes whose pids can be compared share it."""
    parts = []
    for read in (lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                 lambda: os.readlink("/proc/self/ns/pid")):
        try:
            parts.append(read())
        except OSError:
            return ""
    return " ".join(parts)


def owner_tags() -> dict[str, str]:
    """The tags naming this process as a run's owner: its host's name, its process id, and where that
    id is this process's (:func:`owner_space`)."""
    return {OWNER_HOST_TAG: socket.gethostname(), OWNER_PID_TAG: str(os.getpid()), OWNER_SPACE_TAG: owner_space()}
# The raw Web API Log columns a registered model takes (its input signature). Time is "any":
# MLflow's datetime type takes only naive times, and a log's are UTC-aware (or Unix seconds)
INPUT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Id", "long"), ("ProductId", "long"), ("Key", "string"), ("IP", "string"),
    ("Time", "any"), ("State", "long"), ("MachineCode", "string"),
)
# Optional input columns the models read where a log has them: the data objects' Id and value
# (the usage signal, key_usage_hour). "any": integers with nulls arrive as floats from pandas;
# the log's validation checks them. MLflow drops every column its signature does not name.
OPTIONAL_INPUT_COLUMNS: tuple[tuple[str, str], ...] = (("DOId", "any"), ("DOIntValue", "any"))


# MLflow's error codes for a registered model that does not exist, and for an alias it does not hold
NO_CHAMPION_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class NoChampionError(LookupError):
    """A vendor without a champion model to score with: never trained, or its alias moved away (the
    message says which and what to do); ``licanom run score`` ends with 2, as for a missing secret."""


class TrackingUnavailableError(RuntimeError):
    """The tracking server could not be reached (after MLflow's own retries with back-off)."""


def _unreachable(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}"
    return any(s in text for s in (
        "Max retries exceeded", "Connection refused", "ConnectionError", "NewConnectionError",
        "Failed to establish", "timed out", "Name or service not known", "RemoteDisconnected",
    ))


@contextmanager
def _reaching(uri: str) -> Iterator[None]:
    """Turn a connection failure into one clear error naming the server (not its credentials)."""
    try:
        yield
    except TrackingUnavailableError:
        raise
    except Exception as err:
        if _unreachable(err):
            raise TrackingUnavailableError(
                f"MLflow tracking server {_redact(uri)} is unreachable (retried with back-off; "
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set how long): "
                f"{type(err).__name__}"
            ) from err
        raise


def _redact(uri: str) -> str:
    """A URI without its user:password part."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


# the settings of mlflow.yaml, each a text (or null)
TRACKING_SETTINGS = ("tracking_uri", "registry_uri", "artifact_location", "experiment_prefix", "registered_model_prefix")


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str
    registry_uri: str
    artifact_location: str | None  # None: the tracking server's default artifact root
    experiment_prefix: str = "licanom/"
    registered_model_prefix: str = "licanom-"

    @property
    def shown_uri(self) -> str:
        """The tracking URI as a message may show it (without a user:password part)."""
        return _redact(self.tracking_uri)

    @classmethod
    def load(cls, path: Path | None = None) -> TrackingConfig:
        """``mlflow.yaml`` (LICANOM_MLFLOW_CONFIG, else ``path``), read as the vendors' files are
        (:func:`licanom.config.read_yaml`); a setting that YAML reads as no text (``on``, ``no``,
        ``1e3``), or one it does not have (``tracking_url``: the runs would go to the default store
        without a word), is a :class:`licanom.config.ConfigFileError` naming the file and the
        setting. A setting left out or null is its default (``registry_uri: null``: the tracking
        store; ``experiment_prefix: null``: ``licanom/``)."""
        from licanom.config import ConfigFileError, read_yaml

        path = Path(os.environ.get("LICANOM_MLFLOW_CONFIG", path or DEFAULT_CONFIG))
        data = read_yaml(path) if path.exists() else {}
        if unknown := [key for key in data if key not in TRACKING_SETTINGS]:
            raise ConfigFileError(f"{path}: {_unknown_settings(unknown)}; its settings are {', '.join(TRACKING_SETTINGS)}")
        for key in TRACKING_SETTINGS:
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ConfigFileError(f"{path}: {key} must be text, got {data[key]!r} (write it in quotes)")
        data = {key: value for key, value in data.items() if value is not None}  # null: the default
        base = path.resolve().parent
        tracking = os.environ.get("MLFLOW_TRACKING_URI") or _resolve_uri(data.get("tracking_uri") or "sqlite:///mlflow.db", base)
        registry = os.environ.get("MLFLOW_REGISTRY_URI") or (
            _resolve_uri(data["registry_uri"], base) if data.get("registry_uri") else tracking
        )
        artifacts = data.get("artifact_location")
        if tracking.startswith(("http://", "https://")) and not _has_scheme(artifacts or ""):
            artifacts = None  # a tracking server decides (and serves) where artifacts go, not a local path
        elif not _has_scheme(artifacts or "mlartifacts"):
            artifacts = (base / (artifacts or "mlartifacts")).resolve().as_uri()
        return cls(
            tracking_uri=tracking,
            registry_uri=registry,
            artifact_location=artifacts,
            experiment_prefix=data.get("experiment_prefix", "licanom/"),
            registered_model_prefix=data.get("registered_model_prefix", "licanom-"),
        )


def _unknown_settings(keys: list[Any]) -> str:
    """``unknown setting 'tracking_url' (did you mean 'tracking_uri'?)``: each key of mlflow.yaml
    that is none of :data:`TRACKING_SETTINGS`, with the one it is closest to, where one is close."""
    def said(key: Any) -> str:
        return f"{key!r}{did_you_mean([str(key)], TRACKING_SETTINGS)}"

    return f"unknown setting{'s' if len(keys) > 1 else ''} {', '.join(said(key) for key in keys)}"


def _has_scheme(uri: str) -> bool:
    """file:///x, s3://b/x, mlflow-artifacts:/x, ... (not a relative or absolute path)."""
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:", uri) is not None


def _resolve_uri(uri: str, base: Path) -> str:
    """sqlite:///relative.db -> sqlite:///<base>/relative.db; other URIs unchanged."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((base / uri[len("sqlite:///"):]).resolve())
    return uri


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model: str
    aliases: tuple[str, ...]


class Tracker:
    """MLflow for one store: experiments per vendor, runs, artifacts and the registry."""

    def __init__(self, config: TrackingConfig) -> None:
        from mlflow import MlflowClient

        self.config = config
        self.client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)

    # --- names --------------------------------------------------------------------------
    def experiment_name(self, vendor: str) -> str:
        return f"{self.config.experiment_prefix}{vendor}"

    def model_name(self, vendor: str) -> str:
        return f"{self.config.registered_model_prefix}{vendor}"

    def nightly_experiment_name(self, vendor: str) -> str:
        return f"{self.experiment_name(vendor)}/{NIGHTLY}"

    def experiment_id(self, vendor: str, kind: str | None = None) -> str:
        """The vendor's training experiment, or (``kind`` "nightly") its nightly experiment;
        created on first use as a model-training experiment."""
        nightly = kind == NIGHTLY
        name = self.nightly_experiment_name(vendor) if nightly else self.experiment_name(vendor)
        with _reaching(self.config.tracking_uri):
            exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:  # made by an older licanom
                self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
            return exp.experiment_id
        what = (f"Nightly scoring of vendor {vendor}: rows read, quarantined, chunks scored, anomalies, "
                "the night's report." if nightly else
                f"Training of vendor {vendor}: one parent run per training, one nested run per variant "
                "(tick the variants, Compare, val/loss against step = epoch).")
        folder = f"{vendor}/{NIGHTLY}" if nightly else vendor
        try:
            return self.client.create_experiment(
                name, tags={"vendor": vendor, EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND, "mlflow.note.content": what},
                artifact_location=f"{self.config.artifact_location}/{folder}" if self.config.artifact_location else None,
            )
        except Exception:  # created meanwhile by a parallel run
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # --- runs ---------------------------------------------------------------------------
    def start_run(self, vendor: str, name: str, kind: str, parent_run_id: str | None = None,
                  tags: Mapping[str, str] | None = None) -> str:
        all_tags = {"vendor": vendor, "licanom.kind": kind, **owner_tags(), **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(vendor, kind), run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    @contextmanager
    def run(self, vendor: str, name: str, kind: str, parent_run_id: str | None = None,
            tags: Mapping[str, str] | None = None) -> Iterator[str]:
        run_id = self.start_run(vendor, name, kind, parent_run_id, tags)
        try:
            yield run_id
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()], synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float | int | None], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and np.isfinite(float(v))]
        if items:
            self.client.log_batch(run_id, metrics=items, synchronous=True)

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float | None]) -> None:
        """One epoch's losses as it ends (step = epoch, from 1), so a training in progress shows
        its curve in the MLflow UI, each point with the time it was reached."""
        self.log_metrics(run_id, metrics, step=epoch)

    def log_dataset(self, run_id: str, rows: pl.DataFrame, name: str, source: str | None,
                    context: str = "training") -> None:
        """``rows`` as the run's dataset input (name, digest, schema and row count; not the rows).

        ``source``: a file path, an http(s) URL, or None (the rows were generated by licanom)."""
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        if source and source.startswith(("http://", "https://")):
            src: Any = HTTPDatasetSource(source)
        elif source:
            from mlflow.data.sources import LocalArtifactDatasetSource

            src = LocalArtifactDatasetSource(str(Path(source).resolve()))
        else:
            src = CodeDatasetSource({"generator": "licanom"})
        dataset = mlflow.data.from_polars(rows, source=src, name=name)
        self.client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                                     [InputTag("mlflow.data.context", context)])])

    def log_curve(self, run_id: str, key: str, values: tuple[float, ...] | list[float]) -> None:
        """One metric per epoch (step = epoch, from 1), so MLflow plots it against epochs."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, i + 1) for i, v in enumerate(values)]
        for start in range(0, len(metrics), 900):
            self.client.log_batch(run_id, metrics=metrics[start:start + 900], synchronous=True)

    def log_artifact_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_frame(self, run_id: str, frame: pl.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            frame.write_csv(path) if name.endswith(".csv") else frame.write_parquet(path)
            self.client.log_artifact(run_id, str(path))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def log_bytes(self, run_id: str, data: bytes, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path))

    # --- registry -----------------------------------------------------------------------
    def register_bundle(self, vendor: str, run_id: str, bundle_dir: Path, model: str,
                        val_loss: float | None, input_example: pl.DataFrame | None = None,
                        description: str | None = None) -> RegisteredVersion:
        """Log the bundle as a pyfunc model in ``run_id`` and register it as a new version, with
        its signature (raw Web API Log rows in, the per-chunk results out), ``input_example``
        (one chunk of rows; made-up stand-ins for a pseudonymised vendor's) and ``description``."""
        mlflow.set_tracking_uri(self.config.tracking_uri)
        mlflow.set_registry_uri(self.config.registry_uri)
        name = self.model_name(vendor)
        example = None if input_example is None else input_example.select(
            [c for c, _ in INPUT_COLUMNS] + [c for c, _ in OPTIONAL_INPUT_COLUMNS if c in input_example.columns]).to_pandas()
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),  # models-from-code: no pickled Python object
                artifacts={"bundle": str(bundle_dir)},
                pip_requirements=[],
                signature=model_signature(),
                input_example=example,
            )
        try:
            self.client.create_registered_model(
                name, tags={"vendor": vendor},
                description=f"licanom's anomaly detector for vendor {vendor}: raw Web API Log rows in, "
                            "one row per chunk of requests out (score, threshold, is_anomaly, the most unusual "
                            "column). Alias champion: the model the nightly scoring uses.")
        except Exception:
            pass  # exists
        mv = self.client.create_model_version(
            name, info.model_uri, run_id=run_id, model_id=info.model_id,
            tags={"vendor": vendor, "model": model, "val_loss": "" if val_loss is None else f"{val_loss:.8g}"},
            description=description or f"{model} for vendor {vendor}",
        )
        self.client.set_registered_model_alias(name, CHALLENGER, mv.version)
        return RegisteredVersion(name, mv.version, run_id, model, (CHALLENGER,))

    def promote(self, vendor: str, candidates: list[RegisteredVersion], default_model: str) -> RegisteredVersion:
        """Move ``champion`` by the documented rule (see the module docstring)."""
        if not candidates:
            raise ValueError("no registered versions to promote")
        preferred = [c for c in candidates if c.model == default_model]
        if preferred:
            chosen = preferred[-1]
        else:
            def loss(c: RegisteredVersion) -> float:
                tag = self.client.get_model_version(c.name, c.version).tags.get("val_loss", "")
                return float(tag) if tag else float("inf")
            chosen = min(candidates, key=loss)
        self.client.set_registered_model_alias(chosen.name, CHAMPION, chosen.version)
        self.client.set_registered_model_alias(chosen.name, CHALLENGER, candidates[-1].version)
        return chosen

    def champion_uri(self, vendor: str) -> str:
        return f"models:/{self.model_name(vendor)}@{CHAMPION}"

    def load_champion(self, vendor: str, cache: Path | None = None) -> tuple[Any, str]:
        """The champion's :class:`licanom.ops.bundle.ModelBundle` and its version number.

        Only the alias is asked every time. With ``cache`` (a folder of this vendor's), the version's
        files are downloaded once and kept there (:func:`cached_version`): a registered version's
        files never change, and a night otherwise fetched the whole model again, about 16 requests
        to the tracking server per vendor. Without it they go to a temporary folder, removed after."""
        name = self.model_name(vendor)
        try:
            with _reaching(self.config.registry_uri):
                mv = self.client.get_model_version_by_alias(name, CHAMPION)
        except TrackingUnavailableError:
            raise
        except mlflow.exceptions.MlflowException as err:
            if err.error_code not in NO_CHAMPION_CODES:  # the registry failed (refused, an error of its own)
                raise
            try:  # versions without the alias: the champion was moved away (a rollback half done), not never trained
                versions = sorted(int(v.version) for v in self.client.search_model_versions(f"name = '{name}'"))
            except Exception:  # noqa: BLE001 - no registered model at all: the message below
                versions = []
            if versions:
                raise NoChampionError(
                    f"vendor {vendor!r} has no champion: its registered model {name} has version(s) "
                    f"{', '.join(map(str, versions))} but none holds the alias '{CHAMPION}'; set it on the version to "
                    f"score with (MLflow UI, or MlflowClient().set_registered_model_alias({name!r}, {CHAMPION!r}, "
                    f"'{versions[-1]}')), or train again: licanom run train --vendor {vendor}") from err
            raise NoChampionError(f"vendor {vendor!r} has no champion model yet: train it first: licanom run train --vendor {vendor}") from err
        mlflow.set_tracking_uri(self.config.tracking_uri)
        mlflow.set_registry_uri(self.config.registry_uri)
        uri = f"models:/{name}/{mv.version}"
        if cache is None:
            with tempfile.TemporaryDirectory(prefix="licanom-champion-") as tmp:
                return _bundle_in(Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))), mv.version
        key = f"{self.config.registry_uri}\n{name}\n{mv.version}\n{mv.source}\n{mv.run_id}"
        return cached_version(cache, f"v{mv.version}", key, lambda dst: mlflow.artifacts.download_artifacts(uri, dst_path=dst),
                              _bundle_in), mv.version


T = TypeVar("T")
CACHED_VERSIONS = 2  # a vendor's champion cache keeps this many versions (the alias moved back: no download)


def cached_version(cache: Path, label: str, key: str, download: Callable[[str], str | Path],
                   load: Callable[[Path], T]) -> T:
    """``load(folder)`` of a model version's files, downloaded once into ``cache``.

    ``key`` names the version for good (store, model name, version, source, run): its folder is
    ``<label>-<hash of key>``. ``download(dst)`` fetches the files into a fresh folder under
    ``cache`` and returns where they are; they are loaded *before* the folder is renamed into
    place, so a damaged download never enters the cache, and a rename is atomic, so a process
    killed mid-download leaves only a ``.download-*`` folder (removed by a later call). A cached
    copy that fails to load is removed and fetched again once; two processes filling the same
    entry at once both load, the second rename finds it in place and drops its copy. Only the
    newest :data:`CACHED_VERSIONS` entries are kept."""
    entry = cache / f"{label}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if entry.is_dir():
        try:
            value = load(entry)
        except Exception:  # noqa: BLE001 - a damaged copy (a disk fault, a hand edit): fetch it again
            shutil.rmtree(entry, ignore_errors=True)
        else:
            os.utime(entry)  # the newest in use, for the pruning below
            return value
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(".download-*"):  # a process killed while downloading, over an hour ago
        if time.time() - _mtime(stale) > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        local = Path(download(str(tmp)))
        value = load(local)
        try:
            os.replace(local, entry)
            os.utime(entry)
        except OSError:  # filled by another process meanwhile: its copy is the same version's
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    entries = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=_mtime, reverse=True)
    for old in entries[CACHED_VERSIONS:]:
        if old != entry:
            shutil.rmtree(old, ignore_errors=True)
    return value


def _mtime(path: Path) -> float:
    """A path's modification time; 0 for one another process removed meanwhile."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _bundle_in(local: Path) -> Any:
    """The bundle of a downloaded model version's folder (the pyfunc's artifact, read by this
    version's code, not by the model code stored with the version: a champion registered by an
    earlier release, whose stored code may import modules since moved, keeps scoring after an
    upgrade)."""
    from licanom.ops.bundle import ModelBundle

    meta = yaml.safe_load((local / "MLmodel").read_text())
    bundle_path = meta["flavors"]["python_function"]["artifacts"]["bundle"]["path"]
    return ModelBundle.load(local / bundle_path)


def configure(path: Path | None = None) -> Tracker:
    """The tracker for the store that ``mlflow.yaml`` (or the environment) names: one per store
    and process, so that the vendors of a night share one MLflow client."""
    return _tracker(TrackingConfig.load(path))


@functools.lru_cache(maxsize=8)
def _tracker(config: TrackingConfig) -> Tracker:
    return Tracker(config)


def stored_run(run_id: str, config: TrackingConfig) -> Any | None:
    """The MLflow run of this id in the store ``config`` names, or None where the store holds none.
    A local SQLite store that does not exist holds none and is not opened (MLflow would create it)."""
    uri = config.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].split("?", 1)[0]).exists():
        return None
    with _reaching(uri):
        try:
            return _tracker(config).client.get_run(run_id)
        except mlflow.exceptions.MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise


def params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def model_signature() -> Any:
    """The registered models' signature: raw Web API Log rows in, per-chunk results out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from licanom.ops.detect import CHUNK_COLUMNS

    def out_type(column: str) -> str:
        if column in ("chunk", "first_id", "last_id"):
            return "long"
        if column in ("start_time", "end_time"):
            return "datetime"
        if column in ("split", "model", "top_feature", "flagged_by"):
            return "string"
        if column == "is_anomaly":
            return "boolean"
        return "integer" if column.startswith("distinct_") else "double"

    inputs = Schema([ColSpec(AnyType() if t == "any" else t, c) for c, t in INPUT_COLUMNS]
                    + [ColSpec(AnyType() if t == "any" else t, c, required=False) for c, t in OPTIONAL_INPUT_COLUMNS])
    outputs = Schema([ColSpec(out_type(c), c, required=not c.startswith(("error_", "top_", "flagged_"))) for c in CHUNK_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=outputs)


if TYPE_CHECKING:
    from licanom.data.validate import ValidationResult

log = logging.getLogger(__name__)


def screen_scored_rows(vendor: str, validation: ValidationResult, max_bad_fraction: float | None = None,
                       private: bool = False) -> None:
    """The registered model's answer to rows that failed validation, as the command line's and the
    nightly flow's: more of them than ``validate.max_bad_fraction`` allows (the project's default,
    :class:`licanom.config.ValidateConfig`: a registered model carries no vendor configuration)
    raise :class:`licanom.data.validate.ValidationError` worded by
    :func:`licanom.data.validate.check_bad_fraction` (``result``: the validation, each quarantined
    row with its reason); fewer are logged as a warning with their count and reasons, and the other
    rows are scored. Rows only of a product the model was not trained on do not count as bad (as in
    the nightly flow: they ask for a retraining), but the warning counts them. ``private``: the
    model pseudonymises, and the refusal's examples show none of the keys, addresses and machine codes."""
    from licanom.config import ValidateConfig
    from licanom.data.validate import REASON, ValidationError, apart_from_unknown_products, check_bad_fraction

    if max_bad_fraction is None:
        max_bad_fraction = ValidateConfig().max_bad_fraction
    q = validation.quarantine
    if validation.n_in == 0 or q.height == 0:
        return
    bad, foreign = apart_from_unknown_products(validation)
    if bad.n_in:
        try:
            check_bad_fraction(bad, max_bad_fraction, private=private)
        except ValidationError as err:
            times = any(r.startswith("Time:") for r in bad.reason_counts()[REASON].to_list())
            hint = (" (those settings are the command line's and the flows'; a registered model applies "
                    "neither source.time_format nor source.timezone: parse Time into datetimes before "
                    "predict, docs/running.md)") if times else ""
            raise ValidationError(f"rows refused by the model of vendor {vendor!r}, nothing scored: "
                                  f"{str(err).rstrip('.')}{hint}", validation) from None
    retrain = (f"; rows of a product the model was not trained on ask for a retraining (licanom run train "
               f"--vendor {vendor})") if foreign else ""
    log.warning("the model of vendor %r: %s of %s rows failed validation and were left out, not scored: "
                "%s; the chunks are cut from the other rows%s",
                vendor, f"{q.height:,}", f"{validation.n_in:,}", validation.reasons(), retrain)


class LicanomPyfunc(mlflow.pyfunc.PythonModel):
    """An MLflow pyfunc model over a :class:`licanom.ops.bundle.ModelBundle`.

    ``predict(raw_log_rows)`` takes Web API Log rows (a pandas or polars frame) and returns
    the per-chunk results of the ``licanom detect`` contract (a pandas frame), exactly what
    :func:`licanom.ops.bundle.score_log` returns for the same rows. Rows that fail validation
    are answered as the command line answers them (:func:`screen_scored_rows`): too many raise
    :class:`licanom.data.validate.ValidationError`, a few are left out with a logged warning. A
    field the model's training rows never held (``ModelBundle.absent_fields``) is emptied before
    scoring, as it was trained, and a warning says so where the rows hold it.
    """

    def load_context(self, context: Any) -> None:
        from licanom.ops.bundle import ModelBundle

        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    # pandas in and out: MLflow checks the rows against the registered signature and infers no
    # other schema from these hints (its data validation skips pandas frames)
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from licanom.ops.bundle import FIELD_WORDS, present_fields, score_log

        raw = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        scored = score_log(self.bundle, raw)
        # checked after scoring, so that the chunks stay exactly score_log's and an accepted input
        # is validated once; a refused input's valid rows were then scored for nothing (an error path)
        screen_scored_rows(self.bundle.vendor, scored.validation, private=self.bundle.pseudonym_env is not None)
        held = present_fields(self.bundle.absent_fields, scored.validation.valid)
        if held:  # emptied by score_log, as the model was trained (the nightly flow says so in the night's message)
            log.warning("the model of vendor %r: the rows hold %s, which it was trained without: emptied before "
                        "scoring, the rows judged without them until the vendor is trained again (licanom run train "
                        "--vendor %s)", self.bundle.vendor, " and ".join(FIELD_WORDS.get(f, f) for f in held),
                        self.bundle.vendor)
        valid, size = scored.validation.valid.height, self.bundle.chunk.size
        if scored.chunks.height == 0 and valid:
            log.warning("the model of vendor %r: %s valid row(s), fewer than one chunk of %s: nothing scored (the "
                        "frame returned is empty); pass at least %s rows", self.bundle.vendor, f"{valid:,}", size, size)
        return scored.chunks.to_pandas()
