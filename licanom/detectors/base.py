"""The detector protocol every family implements (PyOD's shape), with the shared decision code.

A detector is fitted on training inputs ``X`` without labels, scores inputs (higher = more
anomalous), turns scores into a calibrated severity (:mod:`licanom.detectors.decision`) and
flags by its decision. What ``X`` is depends on the family (``inputs``): the chunks
``(n, size, n_features)``, the chunks' context vectors ``(n, len(CONTEXT_COLUMNS))``, their
summary vectors, the flattened chunks, or per-entity sequences (``reads``). ``inputs_from(prepared)`` builds
them from a prepared log, so callers never branch on the family.

Fitted attributes (PyOD's names): ``decision_scores_`` (training scores), ``threshold_`` (on
the score scale), ``threshold_method_``, ``labels_``, ``calibration_``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from licanom.data.context_vector import CONTEXT_VERSION
from licanom.detectors.decision import RECENT_KEPT, SMALL_CALIBRATION, Calibration, SeverityDecision

if TYPE_CHECKING:
    import polars as pl

    from licanom.data.chunk import Chunks
    from licanom.data.context_vector import KeyHistory
    from licanom.data.pipeline import Prepared

__all__ = ["BaseDetector"]


class BaseDetector(ABC):
    """fit / decision_function / severity / predict / explain / save / load, and inputs_from.

    Subclasses set ``family`` and ``reads``, implement the abstract methods, and set their
    calibration (:meth:`_set_calibration`) in ``fit`` from the scores that calibrate severity
    (out-of-fold ones where a family can afford them); without one, severity is calibrated on the
    training scores (``decision_scores_``).
    """

    family: ClassVar[str] = ""
    reads: ClassVar[str] = "chunks"

    model: str
    decision_scores_: np.ndarray | None
    threshold_: float | None
    # the context vector's version the detector reads (licanom.data.context_vector.CONTEXT_VERSION),
    # for the families that read "context": a model fitted before version 2 keeps reading version 1
    context_version_: int = CONTEXT_VERSION

    # --- the protocol -------------------------------------------------------------------
    @abstractmethod
    def fit(self, X: Any, y: Any = None) -> BaseDetector:
        """Fit on training inputs; sets the fitted attributes."""

    def fit_with_days(self, X: Any, days: np.ndarray | None = None) -> BaseDetector:
        """:meth:`fit` on training chunks given with their times, in days (:meth:`licanom.data.chunk.Chunks.days`,
        None where unknown), for a family that reads them (the context models: a pattern that recurs
        day after day); the others fit on ``X`` alone."""
        return self.fit(X)

    @abstractmethod
    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per item ``(n,)``, higher = more anomalous."""

    def severity(self, X: Any) -> np.ndarray:
        """Calibrated severity per item in [0, 100] (:class:`Calibration`)."""
        return self.severity_of(self.decision_function(X))

    def severity_of(self, scores: np.ndarray) -> np.ndarray:
        """Severity of scores this detector gave (no rescoring)."""
        return self.calibration_.severity(scores)

    def predict(self, X: Any) -> np.ndarray:
        """1 where the score exceeds ``threshold_``, else 0 (int8)."""
        if self.threshold_ is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit() or load()")
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    def flags(self, scores: np.ndarray, nights: Any = None, severity: np.ndarray | None = None) -> np.ndarray:
        """The decision on one scoring pass's scores (bool): above ``threshold_``, and under the
        ``severity`` decision also the chunks that stand out from their night
        (:func:`licanom.detectors.decision.stands_out`; ``nights``: each chunk's night, e.g. its
        UTC day; None: the threshold alone, as :meth:`predict`). ``severity``: :meth:`severity_of`
        the scores, where the caller has it already."""
        if self.threshold_ is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit() or load()")
        scores = np.asarray(scores, dtype=np.float64)
        flagged = scores > self.threshold_
        rule = self.night_rule()
        if rule is not None and rule.stand_out_gap is not None and nights is not None and scores.size:
            sev = self.severity_of(scores) if severity is None else severity
            flagged |= rule.stands_out(sev, nights, self.calibration_.recent_severity())
        return flagged

    def calibration_caution(self) -> str | None:
        """One clause for the vendor where severity is calibrated on fewer than
        :data:`licanom.detectors.decision.SMALL_CALIBRATION` scores (a vendor of a few training
        chunks, whose ordinary chunks may reach the top severity), else None."""
        n = self.calibration_.n
        if n >= SMALL_CALIBRATION:
            return None
        return (f"its severity is calibrated on {n} training chunk{'' if n == 1 else 's'}, fewer than the "
                f"{SMALL_CALIBRATION} it needs to tell the vendor's normal range: ordinary chunks may reach high "
                "severities, and be flagged, until it is trained on more days")

    def night_rule(self) -> SeverityDecision | None:
        """The severity decision's settings where this detector decides by severity, else None."""
        if getattr(self, "threshold", None) != "severity":
            return None
        return SeverityDecision.from_params(dict(getattr(self, "threshold_params", ())))

    def explain(self, X: Any) -> np.ndarray:
        """How unusual each of :meth:`explain_columns` is per item ``(n, k)``, higher = more.
        A family that scores an item only as a whole has no columns: ``(n, 0)``."""
        return np.zeros((len(X), 0))

    def explain_columns(self) -> tuple[str, ...]:
        """The names of :meth:`explain`'s columns (empty when it explains nothing)."""
        return ()

    def top_columns(self, X: Any) -> np.ndarray | None:
        """The most unusual of :meth:`explain_columns` per item, or None when there are none."""
        names = self.explain_columns()
        if not names:
            return None
        return np.asarray(names)[np.asarray(self.explain(X)).argmax(axis=1)]

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to ``path`` (one file)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> BaseDetector:
        """Read a detector :meth:`save` wrote."""

    def inputs_from(self, prepared: Prepared, key_history: KeyHistory | None = None) -> Any:
        """This detector's inputs for every chunk of a prepared log (``key_history``: what is not
        new to a key, for the families that read the context)."""
        return inputs_of(self.reads, prepared.chunks, prepared.encoded.frame, key_history, self.context_version_)

    # --- shared decision state -------------------------------------------------------------
    @property
    def calibration_(self) -> Calibration:
        """The calibration of severity (built from the training scores on first use when a
        family's saved file predates it)."""
        cal = getattr(self, "_calibration", None)
        if cal is None:
            scores = self.decision_scores_
            if scores is None:
                raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit() or load()")
            cal = Calibration.fit(scores)
            self._calibration = cal
        elif not cal.recent:  # saved before a calibration kept its latest scores: they are the scores it was fitted on
            scores = self._calibrated_on()
            if scores is not None and len(scores) == cal.n:
                cal = replace(cal, recent=tuple(float(v) for v in np.asarray(scores)[-RECENT_KEPT:]))
                self._calibration = cal
        return cal

    def _calibrated_on(self) -> np.ndarray | None:
        """The scores (in time order) that :attr:`calibration_` was fitted on: the training scores,
        unless a family calibrates on others (out-of-fold scores)."""
        return self.decision_scores_

    def _set_calibration(self, calibration: Calibration | None) -> None:
        self._calibration = calibration


def inputs_of(kind: str, chunks: Chunks, frame: pl.DataFrame | None = None,
              key_history: KeyHistory | None = None, context_version: int = CONTEXT_VERSION) -> Any:
    """The inputs called ``kind`` for every window of ``chunks``, cut from the encoded rows
    ``frame`` (needed for ``context``: what each window's keys, machines and addresses did, in
    ``context_version``)."""
    if kind == "chunks":
        return chunks.X
    if kind == "flat":
        return chunks.X.reshape(len(chunks.X), -1)
    if kind == "summary":
        from licanom.data.columns import SUMMARY_COLUMNS

        return chunks.meta.select(SUMMARY_COLUMNS).to_numpy().astype(np.float64)
    if kind == "context":
        from licanom.data.context_vector import chunk_context

        if frame is None:
            raise ValueError("the context inputs need the encoded rows the windows were cut from")
        return chunk_context(frame, chunks.meta["start_row"].to_numpy(), chunks.size, key_history, chunks.codes,
                             version=context_version)
    raise ValueError(f"unknown inputs {kind!r}; expected chunks, flat, summary or context")
