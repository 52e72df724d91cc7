"""Linear-kernel OC-SVM and SVDD on pooled features: the smooth hinge and an SMO solver of the duals.

Both duals are solved in one form (LIBSVM's, Fan, Chen & Lin 2005)::

    min_α  ½ αᵀQα + pᵀα   s.t.  Σ_i y_i α_i = 1,  0 ≤ α_i ≤ C_i

with ``H`` the features ``(n, m)``, ``K = H Hᵀ`` (linear kernel, never formed: ``Kα = H (Hᵀα)``)
and ``y_i = +1`` for unlabelled and labelled-normal samples, ``-1`` for labelled anomalies:

* OC-SVM: ``Q = (y yᵀ) ⊙ K``, ``p = 0``; ``w = Σ α_i y_i h_i`` and ``ρ`` is the multiplier of the
  equality constraint. Score (higher = more anomalous): ``ρ - wᵀh``.
* SVDD:   ``Q = 2 (y yᵀ) ⊙ K``, ``p_i = -y_i K_ii``; ``c = Σ α_i y_i h_i`` and
  ``R² = ‖c‖² - b`` with ``b`` the multiplier. Score: ``‖h - c‖² - R²``.

Unsupervised, ``C_i = 1/(nλ)`` for every sample (λ ∈ (0, 1] plays ν's part: at most a share λ
of the samples lies outside the boundary, at least a share λ are support vectors). Labelled
samples carry their own weight ``C_L``. With every ``y_i = +1`` this is exactly the dual of
the sheet's equations; scikit-learn's ``OneClassSVM(nu=λ)`` solves the same problem scaled by
``νn`` (its ``Σα = νn``, ``0 ≤ α ≤ 1``), so its decision values are ``νn (wᵀh - ρ)``.

Working sets are maximal violating pairs (WSS1); the solver stops when the KKT gap
``max_up(-y∇f) - min_low(-y∇f)`` falls below ``tol``. The offset is the average over free
support vectors, else the midpoint of its feasible interval (as LIBSVM does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

KINDS: tuple[str, ...] = ("ocsvm", "svdd")


@overload
def smooth_hinge(u: Tensor, tau: float) -> Tensor: ...
@overload
def smooth_hinge(u: np.ndarray | float, tau: float) -> np.ndarray: ...
def smooth_hinge(u: Tensor | np.ndarray | float, tau: float) -> Tensor | np.ndarray:
    """``S_τ(u) = log(1 + e^{τu}) / τ``, computed stably; ``0 ≤ S_τ(u) - max(0, u) ≤ log(2)/τ``.

    Torch tensors go through ``softplus`` (linear once ``τu > 40``, where the gap is below
    ``5e-18/τ``; ``e^{40}`` is far from float32's overflow), anything else as
    ``max(0, u) + log1p(e^{−τ|u|})/τ`` (the gap exactly, never negative). Never overflows.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if isinstance(u, Tensor):
        return F.softplus(u, beta=tau, threshold=40.0)
    u = np.asarray(u, dtype=np.float64)
    return np.maximum(u, 0.0) + np.log1p(np.exp(-tau * np.abs(u))) / tau


@dataclass(frozen=True)
class DualSolution:
    """The solved dual of an OC-SVM or SVDD on fixed features.

    alpha: ``(n,)`` dual variables (``Σ y_i α_i = 1``, ``0 ≤ α_i ≤ C_i``).
    coef: ``(m,)`` ``w`` (OC-SVM) or the centre ``c`` (SVDD), ``Σ α_i y_i h_i``.
    offset: ``ρ`` (OC-SVM) or ``R²`` (SVDD).
    objective: the dual objective ``½ αᵀQα + pᵀα`` (its negative is the primal optimum).
    gap: the final KKT violation; converged: ``gap < tol`` within ``max_iter``.
    """

    kind: str
    alpha: np.ndarray
    coef: np.ndarray
    offset: float
    objective: float
    iterations: int
    gap: float
    converged: bool

    def score(self, H: np.ndarray) -> np.ndarray:
        """Anomaly score of features ``H`` ``(n, m)``, higher = more anomalous (0 on the boundary)."""
        return svm_score(self.kind, H, self.coef, self.offset)


def svm_score(kind: str, H: np.ndarray, coef: np.ndarray, offset: float) -> np.ndarray:
    """OC-SVM ``ρ - wᵀh``; SVDD ``‖h - c‖² - R²``. ``H`` ``(n, m)`` -> ``(n,)``."""
    H = np.asarray(H, dtype=np.float64)
    if kind == "ocsvm":
        return offset - H @ coef
    return ((H - coef) ** 2).sum(axis=1) - offset


def primal_objective(
    kind: str, H: np.ndarray, coef: np.ndarray, offset: float, y: np.ndarray, C: np.ndarray,
) -> float:
    """The primal objective with the exact hinge: OC-SVM ``½‖w‖² - ρ + Σ C_i max(0, y_i s_i)``,
    SVDD ``R² + Σ C_i max(0, y_i s_i)``, with ``s`` the score. Equals ``-objective`` at the optimum."""
    slack = np.maximum(0.0, y * svm_score(kind, H, coef, offset))
    reg = 0.5 * float(coef @ coef) - offset if kind == "ocsvm" else offset
    return float(reg + (C * slack).sum())


def feasible_start(y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """A feasible ``α``: fill the ``y = +1`` boxes in order until ``Σ y α = 1`` (anomalies at 0).

    Raises ValueError when ``Σ_{y=+1} C_i < 1``: then the primal is unbounded (ρ or -R² can
    grow for free), which happens when λ is too large or the labelled weight too small.
    """
    total = float(C[y > 0].sum())
    if total < 1.0 - 1e-9:
        raise ValueError(
            f"the SVM is infeasible: the normal-side weights sum to {total:.4g} < 1 "
            "(lower lam, or raise labeled_weight when many samples are labelled)"
        )
    alpha = np.zeros_like(C)
    left = 1.0
    for i in np.flatnonzero(y > 0):
        alpha[i] = min(C[i], left)
        left -= alpha[i]
        if left <= 0.0:
            break
    return alpha


def solve_dual(
    kind: str,
    H: np.ndarray,
    C: float | np.ndarray,
    y: np.ndarray | None = None,
    alpha0: np.ndarray | None = None,
    tol: float = 1e-7,
    max_iter: int | None = None,
) -> DualSolution:
    """SMO on the OC-SVM (``kind="ocsvm"``) or SVDD (``"svdd"``) dual with a linear kernel.

    H: features ``(n, m)``; C: the box (scalar ``1/(nλ)`` or per-sample ``(n,)``); y: ``±1`` per
    sample (None: all +1, the unsupervised case); alpha0: a feasible warm start (e.g. the
    previous solution when only the features moved). Each step moves one pair
    ``(α_i, α_j)`` along ``y_i e_i - y_j e_j`` to the clipped 1-D optimum (the sheet's SMO update).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    H = np.ascontiguousarray(H, dtype=np.float64)
    if H.ndim != 2 or len(H) == 0:
        raise ValueError(f"H must have shape (n, m) with n >= 1, got {H.shape}")
    n = len(H)
    y = np.ones(n) if y is None else np.asarray(y, dtype=np.float64)
    if y.shape != (n,) or not np.isin(y, (-1.0, 1.0)).all():
        raise ValueError("y must hold +1 or -1 for each row of H")
    C = np.broadcast_to(np.asarray(C, dtype=np.float64), (n,)).copy()
    if (C <= 0).any():
        raise ValueError("C must be > 0")
    if alpha0 is None:
        alpha = feasible_start(y, C)
    else:
        alpha = np.clip(np.asarray(alpha0, dtype=np.float64), 0.0, C)
        if abs(float(y @ alpha) - 1.0) > 1e-8:
            alpha = feasible_start(y, C)
    s = 1.0 if kind == "ocsvm" else 2.0
    kdiag = np.einsum("ij,ij->i", H, H)
    p = np.zeros(n) if kind == "ocsvm" else -y * kdiag
    max_iter = max_iter if max_iter is not None else max(100_000, 100 * n)

    def gradient(v: np.ndarray) -> np.ndarray:
        return s * y * (H @ v) + p

    v = H.T @ (alpha * y)
    grad = gradient(v)
    pos = y > 0
    gap = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        if it % 1000 == 0:  # refresh the incrementally updated gradient (round-off drift)
            v = H.T @ (alpha * y)
            grad = gradient(v)
        below, above = alpha < C, alpha > 0
        up = np.where(pos, below, above)
        low = np.where(pos, above, below)
        yg = -y * grad
        i = int(np.argmax(np.where(up, yg, -np.inf)))
        j = int(np.argmin(np.where(low, yg, np.inf)))
        gap = float(yg[i] - yg[j])
        if not up[i] or not low[j] or gap < tol:
            break
        d = H[i] - H[j]
        curvature = max(s * float(d @ d), 1e-12)  # identical points: step to the box edge
        bound_i = C[i] - alpha[i] if pos[i] else alpha[i]
        bound_j = alpha[j] if pos[j] else C[j] - alpha[j]
        t = min(gap / curvature, bound_i, bound_j)
        alpha[i] += t * y[i]
        alpha[j] -= t * y[j]
        if t == bound_i:  # land exactly on the bound, not a round-off away from it
            alpha[i] = C[i] if pos[i] else 0.0
        if t == bound_j:
            alpha[j] = 0.0 if pos[j] else C[j]
        dv = t * d  # Δ(Σ α y h) = t y_i² h_i - t y_j² h_j
        v += dv
        grad += s * y * (H @ dv)
    else:
        it = max_iter
    alpha = np.clip(alpha, 0.0, C)
    v = H.T @ (alpha * y)
    grad = gradient(v)
    b = _offset_multiplier(alpha, C, y, grad)
    objective = 0.5 * s * float(v @ v) + float(p @ alpha)
    offset = b if kind == "ocsvm" else float(v @ v) - b
    return DualSolution(
        kind=kind, alpha=alpha, coef=v, offset=float(offset), objective=objective,
        iterations=it, gap=gap, converged=gap < tol,
    )


def _offset_multiplier(alpha: np.ndarray, C: np.ndarray, y: np.ndarray, grad: np.ndarray) -> float:
    """The multiplier ``b`` of ``Σ y α = 1``: mean of ``y∇f`` over free SVs, else the midpoint."""
    yg = y * grad
    eps = 1e-12 * np.maximum(C, 1.0)
    at_upper = alpha >= C - eps
    at_lower = alpha <= eps
    free = ~(at_upper | at_lower)
    if free.any():
        return float(yg[free].mean())
    pos = y > 0
    ub_mask = (at_upper & ~pos) | (at_lower & pos)
    lb_mask = (at_upper & pos) | (at_lower & ~pos)
    ub = float(yg[ub_mask].min()) if ub_mask.any() else np.inf
    lb = float(yg[lb_mask].max()) if lb_mask.any() else -np.inf
    if np.isinf(ub):
        return lb
    if np.isinf(lb):
        return ub
    return 0.5 * (ub + lb)
