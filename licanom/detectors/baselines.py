"""scikit-learn's IsolationForest and LocalOutlierFactor as detectors: the classical baselines.

``X`` is ``(n, d)`` (the summary vectors) or ``(n, size, n_features)`` (flattened). Scores are
``-score_samples(X)``, higher = more anomalous. Training scores: IsolationForest's on the
training rows; LOF's ``-negative_outlier_factor_`` (each training point without itself as a
neighbour). ``own_threshold_`` is ``-offset_``, scikit-learn's own decision (contamination
"auto"); ``threshold_`` is the configured decision's (severity by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from licanom.detectors.base import BaseDetector
from licanom.detectors.decision import DECISIONS, decide
from licanom.detectors.saved import load_pickle, save_pickle

SAVE_FORMAT = 1


@dataclass
class SklearnDetector(BaseDetector):
    """IsolationForest (``kind="iforest"``) or LocalOutlierFactor(novelty=True) (``"lof"``);
    ``scale`` standardises the columns first (LOF on counts of different ranges)."""

    family: ClassVar[str] = "classical"

    model: str = "IForest_summary"
    kind: Literal["iforest", "lof"] = "iforest"
    n_estimators: int = 100
    n_neighbors: int = 20
    scale: bool = False
    seed: int = 0
    threshold: str = "severity"
    threshold_params: tuple[tuple[str, Any], ...] = ()

    estimator_: Any = field(default=None, init=False, repr=False)
    decision_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    threshold_: float | None = field(default=None, init=False)
    threshold_method_: str | None = field(default=None, init=False)
    own_threshold_: float | None = field(default=None, init=False)
    labels_: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def reads(self) -> str:  # type: ignore[override]
        return "flat" if self.model.endswith("_flat") else "summary"

    def fit(self, X: np.ndarray, y: None = None) -> SklearnDetector:
        from sklearn.ensemble import IsolationForest
        from sklearn.neighbors import LocalOutlierFactor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X2 = _as_2d(X)
        if len(X2) < 2:
            raise ValueError("a baseline needs at least 2 training rows")
        if self.threshold not in DECISIONS:
            raise ValueError(f"unknown decision {self.threshold!r}; valid: {', '.join(DECISIONS)}")
        if self.kind == "iforest":
            model: Any = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed)
        elif self.kind == "lof":
            model = LocalOutlierFactor(n_neighbors=min(self.n_neighbors, len(X2) - 1), novelty=True)
        else:
            raise ValueError(f"unknown baseline kind {self.kind!r}; expected 'iforest' or 'lof'")
        self.estimator_ = make_pipeline(StandardScaler(), model) if self.scale else make_pipeline(model)
        self.estimator_.fit(X2)
        last = self.estimator_[-1]
        if self.kind == "lof":
            self.decision_scores_ = -np.asarray(last.negative_outlier_factor_, dtype=np.float64)
        else:
            self.decision_scores_ = self.decision_function(X2)
        self.own_threshold_ = float(-last.offset_)
        self._set_calibration(None)

        def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            other = SklearnDetector(model=self.model, kind=self.kind, n_estimators=self.n_estimators,
                                    n_neighbors=self.n_neighbors, scale=self.scale, seed=self.seed, threshold="M2")
            return other.fit(train).decision_function(test)

        self.threshold_, self.threshold_method_ = decide(self.threshold, X2, self.decision_scores_, fit_score,
                                                         dict(self.threshold_params), calibration=self.calibration_,
                                                         seed=self.seed)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int8)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        if self.estimator_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit()")
        return -np.asarray(self.estimator_.score_samples(_as_2d(X)), dtype=np.float64)

    def predict_own(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's own decision (contamination "auto")."""
        if self.own_threshold_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit()")
        return (self.decision_function(X) > self.own_threshold_).astype(np.int8)

    def save(self, path: str | Path) -> Path:
        """One pickle, written atomically (load only files this project wrote)."""
        if self.estimator_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit()")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_pickle(path, {"format": SAVE_FORMAT, "detector": self})

    @classmethod
    def load(cls, path: str | Path) -> SklearnDetector:
        payload = load_pickle(path, "baseline detector", {SAVE_FORMAT})
        return payload["detector"]


def _as_2d(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(len(X), -1) if X.ndim != 2 else X
