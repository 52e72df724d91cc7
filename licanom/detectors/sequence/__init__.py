"""Sequence models: joint LSTM/GRU + OC-SVM/SVDD detectors for variable-length sequences
(Ergen, Mirza & Kozat) and DeepLog's next-event LSTM (:mod:`.deeplog`).

Three layers, as for the autoencoders: plain nets with orthonormal gate weights and an SVM head
(:mod:`.nets`), a LightningModule for the gradient solver (:mod:`.module`), and the public
detector (:mod:`.detector`); the SMO dual solver and the smooth hinge live in :mod:`.svm`,
length-bucketed batching in :mod:`.data`.
"""

from licanom.detectors.sequence.deeplog import DeepLogDetector
from licanom.detectors.sequence.decide import Convergence, tie_safe_threshold
from licanom.detectors.sequence.detector import (
    ERGEN_MODELS,
    NEXT_EVENT_MODELS,
    SEQUENCE_MODELS,
    SOLVERS,
    SequenceDetector,
    TrainingHistory,
    build_detector,
    load_detector,
)
from licanom.detectors.sequence.nets import cayley_step, orthonormality_error
from licanom.detectors.sequence.svm import DualSolution, smooth_hinge, solve_dual

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
