"""Detectors: one protocol, one registry by name, one place for severity and decisions.

Owns: the protocol (:mod:`.base`), the registry (:mod:`.registry`, its entries in :mod:`.catalog`), severity
and decisions (:mod:`.decision`), the thesis's thresholds (:mod:`.thresholds`) and latent clustering
(:mod:`.clustering`), the families (:mod:`.autoencoders`, :mod:`.sequence`, :mod:`.context`,
:mod:`.baselines`), entity results (:mod:`.entities`) and incident grouping (:mod:`.incidents`). May import the data layer and the family packages (``licanom.detectors.autoencoders``,
``licanom.detectors.sequence``, ``licanom.detectors.context``); never Prefect, MLflow or the report.
"""

from licanom.detectors.base import BaseDetector, inputs_of
from licanom.detectors.decision import DECISIONS, DEFAULT_MIN_SEVERITY, Calibration, decide
from licanom.detectors.registry import DetectorSpec, build, families, load, names, spec

__all__ = [
    "DECISIONS", "DEFAULT_MIN_SEVERITY", "BaseDetector", "Calibration", "DetectorSpec", "build", "decide",
    "families", "inputs_of", "load", "names", "spec",
]
