"""Joint LSTM/GRU + OC-SVM/SVDD detectors for variable-length sequences (Ergen, Mirza & Kozat).

Three layers, as for the autoencoders: plain nets with orthonormal gate weights and an SVM head
(:mod:`.nets`), a LightningModule for the gradient solver (:mod:`.module`), and the public
detector (:mod:`.detector`); the SMO dual solver and the smooth hinge live in :mod:`.svm`,
length-bucketed batching in :mod:`.data`.
"""

from licanom.sequence.detector import SEQUENCE_MODELS, SOLVERS, SequenceDetector, TrainingHistory, build_detector
from licanom.sequence.nets import cayley_step, orthonormality_error
from licanom.sequence.svm import DualSolution, smooth_hinge, solve_dual

__all__ = [
    "SEQUENCE_MODELS",
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
