"""The files detectors pickle: written atomically, and read back, including those written before
the package reorganisation.

Models registered in MLflow outlive a release: a vendor's champion pickled when the library's
modules were flat (``licanom.context``, ``licanom.models.nets``, ...) must still load after they
moved into packages, or every vendor would need retraining after an upgrade. The unpickler
below maps a class's old module to its new one; anything it cannot find is a clear error
naming the file, not a stack trace.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Collection
from pathlib import Path
from typing import Any

# old module -> new module, for classes pickled before the packages (one name moved on its own)
_MOVED_MODULES = {
    "licanom.context": "licanom.detectors.context",
    "licanom.models.detector": "licanom.detectors.autoencoders.detector",
    "licanom.models.nets": "licanom.detectors.autoencoders.nets",
    "licanom.models.module": "licanom.detectors.autoencoders.module",
    "licanom.sequence.detector": "licanom.detectors.sequence.detector",
    "licanom.sequence.nets": "licanom.detectors.sequence.nets",
    "licanom.sequence.deeplog": "licanom.detectors.sequence.deeplog",
    "licanom.sequence.decide": "licanom.detectors.sequence.decide",
    "licanom.sequence.svm": "licanom.detectors.sequence.svm",
    "licanom.thresholds": "licanom.detectors.thresholds",
    "licanom.clustering": "licanom.detectors.clustering",
    "licanom.encode": "licanom.data.encode",
    "licanom.chunk": "licanom.data.chunk",
    "licanom.columns": "licanom.data.columns",
    "licanom.bundle": "licanom.ops.bundle",
}
_MOVED_NAMES = {("licanom.context", "KeyHistory"): "licanom.data.context_vector"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = _MOVED_NAMES.get((module, name)) or _MOVED_MODULES.get(module, module)
        return super().find_class(module, name)


def load_pickle(path: str | Path, what: str, formats: Collection[int]) -> dict[str, Any]:
    """The payload (a dict with its ``format``) pickled in ``path`` by this project, from any
    release whose format is among ``formats``; ValueError naming the file when it cannot be read
    or is of another format."""
    try:
        with Path(path).open("rb") as f:
            payload = _Unpickler(f).load()  # noqa: S301 - a file this project wrote
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError) as e:
        raise ValueError(f"{path}: not a readable {what} file ({type(e).__name__}); retrain the vendor's models") from None
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise ValueError(f"{path}: unsupported {what} file (format {found!r}, this version reads "
                         f"{', '.join(map(str, sorted(formats)))}); retrain the vendor's models")
    return payload


def save_pickle(path: Path, payload: dict[str, Any]) -> Path:
    """Pickle ``payload`` (a dict with its ``format``) to ``path`` atomically: a reader sees the
    old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return path
