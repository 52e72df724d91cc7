"""Where the per-key sequence models draw their line, and whether their training converged.

Thresholds flag strictly above and always sit between two distinct training scores, never on
one. Many sequences are identical (a key's quiet heartbeat day, HDFS's repeated sessions), so
scores tie, and a threshold placed on a tied value flags either the whole group or none of it
by round-off. Values within ``rtol`` (relative, at least absolute ``rtol``) of each other count
as tied: the same sequence scored in a different batch can differ in the last float32 bits.

* With a ``contamination`` c, at most ``floor(c·n)`` training scores lie above the threshold;
  a tie group that straddles that point stays below it (fewer flagged, never the whole group).
* Without one, the model's own boundary ``boundary`` (0 for the SVM heads and DeepLog's top-g
  rule) is used, moved above any tie group that sits on it.
In both cases the threshold is the midpoint between the highest unflagged value and the next
distinct one above it (the highest training score when nothing lies above).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIE_RTOL = 1e-6


def tie_safe_threshold(scores: np.ndarray, contamination: float | None, boundary: float = 0.0,
                       rtol: float = TIE_RTOL) -> float:
    """The decision threshold from training ``scores`` (see the module docstring)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError("the training scores must be finite and not empty")
    if contamination is None:
        near = np.abs(s - boundary) <= rtol * max(1.0, abs(boundary))
        if not near.any():
            return float(boundary)
        return _above(s, float(s[near].max()), rtol)
    if not 0.0 < contamination < 1.0:
        raise ValueError(f"contamination must be in (0, 1), got {contamination}")
    k = int(np.floor(contamination * s.size + 1e-9))  # at most k flagged in training
    if k == 0:
        return _above(s, float(s[-1]), rtol)
    return _above(s, float(s[s.size - k - 1]), rtol)


def _above(s: np.ndarray, v: float, rtol: float) -> float:
    """Midpoint between the tie group of ``v`` and the next distinct value of sorted ``s``."""
    tol = rtol * max(1.0, abs(v))
    top = float(s[s <= v + tol].max())
    higher = s[s > v + tol]
    if higher.size == 0:
        return top
    return 0.5 * (top + float(higher[0]))


@dataclass(frozen=True)
class Convergence:
    """Whether a fitted model's solver converged, in fields a caller can log (e.g. to MLflow).

    converged: True / False, or None for a solver that runs a fixed number of epochs and makes
    no claim; reason: one line saying why; outer_iterations: θ steps (qp) or epochs taken;
    smo_unconverged: SMO solves that stopped on their iteration cap; last_change: the relative
    change of the objective over the last step.
    """

    converged: bool | None
    reason: str
    outer_iterations: int
    smo_unconverged: int = 0
    last_change: float | None = None

    def as_metrics(self) -> dict[str, float]:
        """Numbers for a metrics store: converged (1/0, -1 for no claim) and the counts."""
        out = {
            "converged": -1.0 if self.converged is None else float(self.converged),
            "outer_iterations": float(self.outer_iterations),
            "smo_unconverged": float(self.smo_unconverged),
        }
        if self.last_change is not None:
            out["last_change"] = float(self.last_change)
        return out
