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
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import polars as pl
import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "mlflow.yaml"
CHAMPION, CHALLENGER = "champion", "challenger"


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


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str
    registry_uri: str
    artifact_location: str | None  # None: the tracking server's default artifact root
    experiment_prefix: str = "licanom/"
    registered_model_prefix: str = "licanom-"

    @classmethod
    def load(cls, path: Path | None = None) -> TrackingConfig:
        path = Path(os.environ.get("LICANOM_MLFLOW_CONFIG", path or DEFAULT_CONFIG))
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
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

        os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
        self.config = config
        self.client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)

    # --- names --------------------------------------------------------------------------
    def experiment_name(self, vendor: str) -> str:
        return f"{self.config.experiment_prefix}{vendor}"

    def model_name(self, vendor: str) -> str:
        return f"{self.config.registered_model_prefix}{vendor}"

    def experiment_id(self, vendor: str) -> str:
        name = self.experiment_name(vendor)
        with _reaching(self.config.tracking_uri):
            exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(
                name, tags={"vendor": vendor},
                artifact_location=f"{self.config.artifact_location}/{vendor}" if self.config.artifact_location else None,
            )
        except Exception:  # created meanwhile by a parallel run
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # --- runs ---------------------------------------------------------------------------
    def start_run(self, vendor: str, name: str, kind: str, parent_run_id: str | None = None,
                  tags: Mapping[str, str] | None = None) -> str:
        all_tags = {"vendor": vendor, "licanom.kind": kind, **(tags or {})}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(vendor), run_name=name, tags=all_tags)
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

    def log_metrics(self, run_id: str, metrics: Mapping[str, float | int | None], step: int = 0) -> None:
        from mlflow.entities import Metric

        import time as _time

        now = int(_time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and np.isfinite(float(v))]
        if items:
            self.client.log_batch(run_id, metrics=items, synchronous=True)

    def log_curve(self, run_id: str, key: str, values: tuple[float, ...] | list[float]) -> None:
        """One metric per epoch (step = epoch, from 1), so MLflow plots it against epochs."""
        from mlflow.entities import Metric

        import time as _time

        now = int(_time.time() * 1000)
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
                        val_loss: float | None) -> RegisteredVersion:
        """Log the bundle as a pyfunc model in ``run_id`` and register it as a new version."""
        mlflow.set_tracking_uri(self.config.tracking_uri)
        mlflow.set_registry_uri(self.config.registry_uri)
        name = self.model_name(vendor)
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=LicanomPyfunc(),
                artifacts={"bundle": str(bundle_dir)},
                pip_requirements=[],
            )
        try:
            self.client.create_registered_model(name, tags={"vendor": vendor})
        except Exception:
            pass  # exists
        mv = self.client.create_model_version(
            name, info.model_uri, run_id=run_id, model_id=info.model_id,
            tags={"vendor": vendor, "model": model, "val_loss": "" if val_loss is None else f"{val_loss:.8g}"},
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

    def load_champion(self, vendor: str) -> tuple[Any, str]:
        """The champion's :class:`licanom.bundle.ModelBundle` and its version number."""
        name = self.model_name(vendor)
        try:
            with _reaching(self.config.registry_uri):
                mv = self.client.get_model_version_by_alias(name, CHAMPION)
        except TrackingUnavailableError:
            raise
        except Exception as err:
            raise LookupError(f"vendor {vendor!r} has no champion model yet: run the training flow first") from err
        mlflow.set_tracking_uri(self.config.tracking_uri)
        mlflow.set_registry_uri(self.config.registry_uri)
        model = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
        return model.unwrap_python_model().bundle, mv.version


def configure(path: Path | None = None) -> Tracker:
    """A tracker for the store that ``mlflow.yaml`` (or the environment) names."""
    return Tracker(TrackingConfig.load(path))


def params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


class LicanomPyfunc(mlflow.pyfunc.PythonModel):
    """An MLflow pyfunc model over a :class:`licanom.bundle.ModelBundle`.

    ``predict(raw_log_rows)`` takes Web API Log rows (a pandas or polars frame) and returns
    the per-chunk results of the ``licanom detect`` contract (a pandas frame), exactly what
    :func:`licanom.bundle.score_log` returns for the same rows.
    """

    def load_context(self, context: Any) -> None:
        from licanom.bundle import ModelBundle

        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # (no type hints: MLflow would read them as an input schema)
        from licanom.bundle import score_log

        raw = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        return score_log(self.bundle, raw).chunks.to_pandas()
