"""Every detector by name, once: its family, what it reads, and how it is built from settings.

The names are the ones users write in ``conf/``, the command line and MLflow tags: the thesis's
eight autoencoders (``LSTM_AE`` ... ``TCN_AE_Small2``), the sequence models (``LSTM_OCSVM``,
``LSTM_SVDD``, ``GRU_OCSVM``, ``GRU_SVDD`` and any other the sequence package registers), the
context models (``Tail_context``, ``IForest_context``, ``LOF_context``) and the scikit-learn
baselines (``IForest_summary``, ``IForest_flat``, ``LOF_summary``, ``LOF_flat``). Callers ask the
registry (:func:`build`, :func:`spec`, :func:`names`) and never branch on a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from licanom.config import ContextConfig, DetectConfig, EncodeConfig, SequenceConfig, TrainConfig
    from licanom.detectors.base import BaseDetector

__all__ = ["DetectorSpec", "build", "families", "load", "names", "register", "spec"]


@dataclass(frozen=True)
class Settings:
    """What building a detector may read: the configuration's sections (typed)."""

    train: TrainConfig
    detect: DetectConfig
    sequence: SequenceConfig
    context: ContextConfig
    encode: EncodeConfig


@dataclass(frozen=True)
class DetectorSpec:
    """One registered detector: ``build(settings, **extra)`` returns it unfitted; ``cls`` loads it."""

    name: str
    family: str          # autoencoder | sequence | context | classical
    inputs: str          # chunks | flat | summary | context
    build: Callable[..., BaseDetector]
    cls: Callable[[], type[BaseDetector]]
    description: str = ""
    score: str = "anomaly score"  # what its score is, in words for a report's axis and text
    loss: str = ""       # what its per-epoch loss is ("": it fits in one pass, no epochs)


_REGISTRY: dict[str, DetectorSpec] = {}
_LOADED = False


def register(entry: DetectorSpec) -> None:
    """Add a detector under ``entry.name`` (a name registered twice is an error)."""
    if entry.name in _REGISTRY and _REGISTRY[entry.name] is not entry:
        raise ValueError(f"detector {entry.name!r} is registered already")
    _REGISTRY[entry.name] = entry


def _ensure() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from licanom.detectors.catalog import register_all

        register_all()


def names(family: str | None = None) -> tuple[str, ...]:
    """Registered names in registration order (of one family when given)."""
    _ensure()
    return tuple(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def families() -> tuple[str, ...]:
    _ensure()
    return tuple(dict.fromkeys(s.family for s in _REGISTRY.values()))


def spec(name: str) -> DetectorSpec:
    """The entry of ``name``; ValueError naming the valid ones otherwise."""
    _ensure()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; valid: {', '.join(_REGISTRY)}") from None


def build(name: str, train: TrainConfig | None = None, detect: DetectConfig | None = None,
          sequence: SequenceConfig | None = None, context: ContextConfig | None = None,
          encode: EncodeConfig | None = None, **extra: Any) -> BaseDetector:
    """The unfitted detector ``name`` with the configured settings (defaults where not given)."""
    from licanom.config import ContextConfig, DetectConfig, EncodeConfig, SequenceConfig, TrainConfig

    settings = Settings(train=train or TrainConfig(), detect=detect or DetectConfig(),
                        sequence=sequence or SequenceConfig(), context=context or ContextConfig().resolved(small=False),
                        encode=encode or EncodeConfig())
    return spec(name).build(name, settings, **extra)


def load(name: str, path: Any) -> BaseDetector:
    """Load the detector file ``path`` of the registered ``name``."""
    return spec(name).cls().load(path)
