"""Recurrent feature extractors with orthonormal gate weights, the SVM heads, and Cayley steps.

Orthonormality (Wen & Yin 2013). ``nn.LSTM`` stacks its gates (i, f, g, o) in
``weight_ih_l0 (4m, p)`` and ``weight_hh_l0 (4m, m)``; ``nn.GRU`` stacks (r, z, n) as ``3m``
rows. Each gate block (``W_gate (m, p)``, ``R_gate (m, m)``) is kept orthonormal on its own.
``R_gate`` is square, so ``RᵀR = RRᵀ = I``. ``W_gate`` is ``m × p``: when ``m ≥ p`` its
columns are orthonormal (``WᵀW = I_p``, the sheet's convention); when ``m < p`` that is
impossible (rank ≤ m) and its rows are orthonormal instead (``WWᵀ = I_m``). In both cases the
block is handled as its tall orientation ``X`` (``k × r``, ``k ≥ r``, ``XᵀX = I_r``), and the
Cayley step ``X ← (I + μ/2 A)⁻¹ (I − μ/2 A) X`` with ``A = G Xᵀ − X Gᵀ`` (``k × k``,
skew-symmetric) multiplies ``X`` by an orthogonal matrix, so ``XᵀX = I`` is kept up to
round-off (computed in float64, with a Newton–Schulz polish against float32 drift: the error
stays ~1e-7 over thousands of steps).
Biases (PyTorch keeps two per gate; for the LSTM ``b_ih + b_hh`` is the sheet's ``b``) start at
zero, so an all-zero input maps to ``h̄ = 0``, the origin an OC-SVM separates the data from (with
random biases that point lands anywhere and a linear OC-SVM flags quiet sequences or not by
chance); they and the SVM parameters take plain gradient steps.

Pooling (POOLINGS), over the ``n_i`` real steps only: ``"mean"`` is the sheet's
``(1/n_i) Σ_j h_{i,j}``; ``"max"`` each hidden unit's largest value ``max_j h_{i,j,k}``;
``"last"`` the final state ``h_{i,n_i}``; ``"mean-max"`` (the default) and ``"max-min"`` put two
of them side by side (``2m`` features). A mean dilutes one odd step among many by ``1/n_i`` (an
event never seen in training moves a 20-step session's mean by a twentieth of its kick, below
the spread of normal sessions); the maximum keeps it whole, but cannot see an absence (a
stretch of silence leaves each unit's maximum where it was), which the mean does: the default
keeps both. With ``unit_norm`` (the default) the pooled vector is then scaled to length 1. The
OC-SVM's linear boundary through the origin needs it: on raw features its dual optimum
``-½‖w‖²`` falls without end as the features grow, so joint training grows them (every session
alike, anomalies too) instead of separating normal from not, and a half-space scores anything
far out along ``w`` as very normal. On the unit sphere the half-space ``wᵀh̄ ≥ ρ`` is a closed
cap around the normal directions (``K_ii = 1``, as with a Gaussian kernel), and the SVDD's
sphere cuts the same kind of cap.
A batch is padded after each sequence's end and runs densely through the (unidirectional)
cell: the outputs at steps ``j ≤ n_i`` cannot depend on later padding, and the pooling keeps
only those. This is exact, and on CPU about 8x faster than ``pack_padded_sequence`` (which steps
the batch one time step at a time); batching by similar length keeps the wasted padded steps few.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from licanom.detectors.sequence.svm import DualSolution, smooth_hinge

CELLS: dict[str, int] = {"LSTM": 4, "GRU": 3}  # gate blocks per weight matrix
HEADS: tuple[str, ...] = ("OCSVM", "SVDD")
POOLINGS: tuple[str, ...] = ("mean-max", "max", "mean", "last", "max-min")


def cayley_step(W: Tensor, G: Tensor, lr: float, polish: bool = True) -> Tensor:
    """One Cayley step of ``W`` against the Euclidean gradient ``G`` on the Stiefel manifold.

    ``W``, ``G``: ``(..., k, r)`` (batched over leading dims). A tall ``W`` (``k ≥ r``) is taken
    with orthonormal columns; a wide one with orthonormal rows (it is stepped as ``Wᵀ``).
    Returns ``(I + μ/2 A)⁻¹ (I − μ/2 A) W`` with ``A = G Wᵀ − W Gᵀ``, in ``W``'s dtype.

    The product is orthogonal, so it keeps whatever error ``XᵀX − I`` the stored (float32) ``W``
    carries, and storing adds a little each step: a random walk past 1e-5 after a few thousand
    steps. ``polish`` then applies one Newton–Schulz step ``X (3I − XᵀX) / 2`` (in float64),
    which is the identity on the manifold and squares the error, so it stays at round-off.
    """
    if W.shape != G.shape:
        raise ValueError(f"W and G differ in shape: {tuple(W.shape)} vs {tuple(G.shape)}")
    if W.shape[-2] < W.shape[-1]:
        return cayley_step(W.mT, G.mT, lr, polish).mT
    X, Gx = W.double(), G.double()
    A = Gx @ X.mT - X @ Gx.mT
    eye = torch.eye(X.shape[-2], dtype=X.dtype, device=X.device)
    half = 0.5 * lr * A
    X = torch.linalg.solve(eye + half, X - half @ X)
    if polish:
        X = 1.5 * X - 0.5 * X @ (X.mT @ X)
    return X.to(W.dtype)


def orthonormality_error(W: Tensor) -> float:
    """``‖XᵀX − I‖_F`` of the tall orientation ``X`` of ``W`` (max over leading batch dims)."""
    X = W.mT if W.shape[-2] < W.shape[-1] else W
    X = X.double()
    eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
    err = torch.linalg.matrix_norm(X.mT @ X - eye)
    return float(err.max())


def orthonormal_(W: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``W`` ``(k, r)`` in place with a random orthonormal matrix (columns if tall, else rows)."""
    with torch.no_grad():
        tall = W.shape[0] >= W.shape[1]
        k, r = (W.shape[0], W.shape[1]) if tall else (W.shape[1], W.shape[0])
        Z = torch.randn(k, r, generator=generator, dtype=torch.float64)
        Q, Rm = torch.linalg.qr(Z)
        Q = Q * torch.sign(torch.diagonal(Rm)).where(torch.diagonal(Rm) != 0, torch.ones(()))
        W.copy_(Q if tall else Q.T)
    return W


class SequenceEncoder(nn.Module):
    """One LSTM or GRU layer and pooling over the real steps (POOLINGS), optionally scaled to unit
    length: ``(b, T, p)`` padded + lengths ``(b,)`` -> ``(b, m)``."""

    def __init__(self, cell: str, n_features: int, hidden: int, pooling: str = "mean-max",
                 unit_norm: bool = True) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; valid: {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.cell, self.n_features, self.hidden = cell, n_features, hidden
        self.pooling, self.unit_norm = pooling, unit_norm
        rnn_cls = nn.LSTM if cell == "LSTM" else nn.GRU
        self.rnn = rnn_cls(n_features, hidden, num_layers=1, batch_first=True)
        self.reset_parameters()

    @property
    def out_features(self) -> int:
        """Size of the pooled features: ``hidden``, or twice that for a pair of poolings."""
        return 2 * self.hidden if "-" in self.pooling else self.hidden

    @property
    def gates(self) -> int:
        return CELLS[self.cell]

    def orthonormal_weights(self) -> tuple[nn.Parameter, nn.Parameter]:
        """``weight_ih_l0`` and ``weight_hh_l0``: each ``gates`` stacked blocks kept orthonormal."""
        return self.rnn.weight_ih_l0, self.rnn.weight_hh_l0

    def reset_parameters(self) -> None:
        m = self.hidden
        for weight in self.orthonormal_weights():
            for k in range(self.gates):
                orthonormal_(weight.data[k * m:(k + 1) * m])
        with torch.no_grad():  # zero input then gives h̄ = 0, the OC-SVM's origin (at the start)
            self.rnn.bias_ih_l0.zero_()
            self.rnn.bias_hh_l0.zero_()

    def orthonormality_error(self) -> float:
        """Largest ``‖XᵀX − I‖_F`` over the gate blocks of both weight matrices."""
        m = self.hidden
        return max(
            orthonormality_error(w.detach().view(self.gates, m, w.shape[1])) for w in self.orthonormal_weights()
        )

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The outputs pooled over each sequence's first ``lengths`` steps (``lengths`` ≥ 1)."""
        out, _ = self.rnn(x)
        pooled = pool(out, lengths.to(out.device), self.pooling)
        if self.unit_norm:
            pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return pooled


def pool(out: Tensor, lengths: Tensor, pooling: str) -> Tensor:
    """``out`` ``(b, T, m)`` pooled over the first ``lengths[i]`` steps of each row: max, mean or last."""
    if "-" in pooling:
        first, second = pooling.split("-")
        a = pool(out, lengths, first)
        if second == "min":
            return torch.cat([a, -pool(-out, lengths, "max")], dim=1)
        return torch.cat([a, pool(out, lengths, second)], dim=1)
    b, T = out.shape[0], out.shape[1]
    if pooling == "last":
        return out[torch.arange(b, device=out.device), lengths - 1]
    if bool((lengths == T).all()):
        return out.amax(dim=1) if pooling == "max" else out.mean(dim=1)
    real = (torch.arange(T, device=out.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)  # (b, T, 1)
    if pooling == "max":
        return torch.where(real, out, torch.full((), -torch.inf, dtype=out.dtype, device=out.device)).amax(dim=1)
    out = torch.where(real, out, torch.zeros((), dtype=out.dtype, device=out.device))
    return out.sum(dim=1) / lengths.to(out.dtype).unsqueeze(1)


class SVMHead(nn.Module):
    """OC-SVM (``coef = w``, ``offset = ρ``) or SVDD (``coef = c``, ``offset = R²``) on ``h̄``.

    ``score(h)`` is higher for more anomalous sequences and 0 on the boundary:
    OC-SVM ``ρ − wᵀh̄``, SVDD ``‖h̄ − c‖² − R²``. SVDD steps ``R²`` itself (linear in the
    objective, unlike ``R``, whose gradient vanishes at 0) and keeps it ≥ 0.
    """

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"unknown head {kind!r}; valid: {', '.join(HEADS)}")
        self.kind = kind
        self.coef = nn.Parameter(torch.zeros(hidden))
        self.offset = nn.Parameter(torch.zeros(()))

    @property
    def dual_kind(self) -> str:
        return self.kind.lower()

    def score(self, h: Tensor) -> Tensor:
        if self.kind == "OCSVM":
            return self.offset - h @ self.coef
        return ((h - self.coef) ** 2).sum(dim=1) - self.offset

    def regulariser(self) -> Tensor:
        """OC-SVM ``½‖w‖² − ρ``; SVDD ``R²``."""
        if self.kind == "OCSVM":
            return 0.5 * (self.coef @ self.coef) - self.offset
        return self.offset

    def objective(self, h: Tensor, y: Tensor, weight: Tensor, tau: float) -> Tensor:
        """The smoothed objective ``F_τ`` on a batch: regulariser + mean of ``weight·S_τ(y·score)``.

        ``weight`` is ``n·C_i`` (``1/λ`` for unlabelled samples), so the batch mean is an unbiased
        estimate of ``Σ_i C_i S_τ(·)`` over all ``n`` training sequences.
        """
        return self.regulariser() + (weight * smooth_hinge(y * self.score(h), tau)).mean()

    def project_(self) -> None:
        """Keep ``R² ≥ 0`` after a gradient step (SVDD)."""
        if self.kind == "SVDD":
            with torch.no_grad():
                self.offset.clamp_(min=0.0)

    def set_from(self, solution: DualSolution) -> None:
        with torch.no_grad():
            self.coef.copy_(torch.as_tensor(solution.coef, dtype=self.coef.dtype))
            self.offset.fill_(float(solution.offset))


class SequenceSVM(nn.Module):
    """Encoder and SVM head: ``(b, T, p)`` + lengths -> anomaly score ``(b,)``."""

    def __init__(self, model: str, n_features: int, hidden: int, pooling: str = "mean-max",
                 unit_norm: bool = True) -> None:
        super().__init__()
        cell, _, head = model.partition("_")
        self.model = model
        self.encoder = SequenceEncoder(cell, n_features, hidden, pooling, unit_norm)
        self.head = SVMHead(head, self.encoder.out_features)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.head.score(self.encoder(x, lengths))

    def param_groups(self, lr: float, train_head: bool = True) -> list[dict[str, Any]]:
        """Optimizer groups for :class:`StiefelSGD`: gate-blocked weights, biases, head."""
        ih, hh = self.encoder.orthonormal_weights()
        groups: list[dict[str, Any]] = [
            {"params": [ih, hh], "lr": lr, "gates": self.encoder.gates},
            {"params": [self.encoder.rnn.bias_ih_l0, self.encoder.rnn.bias_hh_l0], "lr": lr, "gates": 0},
        ]
        if train_head:
            groups.append({"params": list(self.head.parameters()), "lr": lr, "gates": 0})
        return groups


class StiefelSGD(torch.optim.Optimizer):
    """Plain SGD, except for groups with ``gates > 0``: their weights ``(gates·m, r)`` take one
    Cayley step per gate block (all blocks in one batched solve)."""

    def __init__(self, params: Iterable[dict[str, Any]], lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr, "gates": 0})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, gates = group["lr"], group["gates"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if gates:
                    shape = (gates, p.shape[0] // gates, p.shape[1])
                    p.copy_(cayley_step(p.reshape(shape), p.grad.reshape(shape), lr).reshape(p.shape))
                else:
                    p.add_(p.grad, alpha=-lr)
        return loss
