"""Sequence models: joint LSTM/GRU + OC-SVM/SVDD detectors for variable-length sequences
(Ergen, Mirza & Kozat) and DeepLog's next-event LSTM (:mod:`.deeplog`).

Three layers, as for the autoencoders: plain nets with orthonormal gate weights and an SVM head
(:mod:`.nets`), a LightningModule for the gradient solver (:mod:`.module`), and the public
detector (:mod:`.detector`); the SMO dual solver and the smooth hinge live in :mod:`.svm`,
length-bucketed batching in :mod:`.data`.
"""

from importlib import import_module
from typing import Any

# Public names and the module each lives in, imported on first use (PEP 562): reading per-key
# sessions (:mod:`.sessions`) must not pay for torch and Lightning.
_HOME = {
    "DeepLogDetector": "deeplog", "Convergence": "decide", "tie_safe_threshold": "decide",
    **dict.fromkeys(("ERGEN_MODELS", "NEXT_EVENT_MODELS", "SEQUENCE_MODELS", "SOLVERS", "SequenceDetector",
                     "TrainingHistory", "build_detector", "load_detector"), "detector"),
    "cayley_step": "nets", "orthonormality_error": "nets",
    "DualSolution": "svm", "smooth_hinge": "svm", "solve_dual": "svm",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "ERGEN_MODELS",
    "NEXT_EVENT_MODELS",
    "SEQUENCE_MODELS",
    "Convergence",
    "DeepLogDetector",
    "load_detector",
    "tie_safe_threshold",
    "SOLVERS",
    "DualSolution",
    "SequenceDetector",
    "TrainingHistory",
    "build_detector",
    "cayley_step",
    "orthonormality_error",
    "smooth_hinge",
    "solve_dual",
]
