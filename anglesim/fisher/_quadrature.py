"""Gauss and Gauss–Radau bounds on e₁ᵀ(T + εI)⁻¹e₁ for a Lanczos tridiagonal T, row by row.

The Krylov solver (:mod:`._krylov`) bounds both forms of the propagated FI with them; the
pivots of T + εI it keeps here also give the solver's pixel-space solution (the conjugate-
gradient iterate of the same Krylov space, used as the next layer's warm start).
"""

from __future__ import annotations

import torch

__all__ = ["GaussRadau", "safe"]


def safe(d: torch.Tensor) -> torch.Tensor:
    """d where d > 0, else 1 (a zero norm means an invariant Krylov space: the bounds are
    then exact and the row stops)."""
    return torch.where(d > 0, d, torch.ones_like(d))


class GaussRadau:
    """Gauss and Gauss–Radau bounds on e₁ᵀ(T_k + εI)⁻¹e₁ for a symmetric tridiagonal T_k ⪰ 0
    built one row at a time, batched over images.

    Written with the unshifted pivots δ⁰_i of T_k (given by the caller, who knows them in a
    positive form) and the shifted ones δ_i = δ⁰_i + h_i, whose excess obeys h₁ = ε,
    h_{i+1} = ε + b_i² h_i/(δ⁰_i δ_i) > 0 for off-diagonals b_i. With y₁² = 1 and
    y²_{i+1} = (b_i/δ_i)² y_i², Gauss is Σ_{i≤k} y_i²/δ_i (a lower bound); Gauss–Radau adds
    the row that makes ε an eigenvalue of the extended matrix, whose last pivot is h_{k+1}:
    upper = Gauss + y²_{k+1}/h_{k+1} (Golub & Meurant 1994).
    """

    def __init__(self, d0: torch.Tensor, eps: float) -> None:
        self.eps = eps
        self.d0 = d0
        self.h = torch.full_like(d0, eps)
        self.delta = d0 + eps
        self.y2 = torch.ones_like(d0)
        self.gauss = self.y2 / self.delta

    def _step(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y2 = (b / self.delta) ** 2 * self.y2
        h = self.eps + b * b * self.h / (safe(self.d0) * self.delta)
        return y2, h

    def upper(self, b: torch.Tensor) -> torch.Tensor:
        """The Gauss–Radau upper bound of T_k extended by the off-diagonal b."""
        y2, h = self._step(b)
        return self.gauss + y2 / h

    def next(self, b: torch.Tensor, d0: torch.Tensor, active: torch.Tensor) -> GaussRadau:
        """Append the row with off-diagonal b and unshifted pivot d0 (rows not ``active``
        keep their bounds)."""
        y2, h = self._step(b)
        delta = d0 + h
        gauss = self.gauss + y2 / delta
        self.y2 = torch.where(active, y2, self.y2)
        self.h = torch.where(active, h, self.h)
        self.d0 = torch.where(active, d0, self.d0)
        self.delta = torch.where(active, delta, self.delta)
        self.gauss = torch.where(active, gauss, self.gauss)
        return self
