"""Linear read-outs of a representation: the ridge probe the studies use.

A ridge probe asks how much of a quantity a block's features carry linearly: features are
standardised on the fitting set (mean μ, standard deviation s, floored at 10⁻⁸), z = (x − μ)/s,
and the read-out is ŷ = ȳ + z β with

    β = (ZᵀZ + λ n I)⁻¹ Zᵀ (y − ȳ),

λ per standardised feature and per fitting sample (so the penalty does not fade as n grows),
n the number of fitting samples and ȳ their mean target (the intercept). Computed in float64.
"""

from __future__ import annotations

import torch

from . import validation as check

__all__ = ["ridge_readout"]


def ridge_readout(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                  ridge: float = 1e-3) -> torch.Tensor:
    """Fit a ridge read-out of ``train_y`` (n,) or (n, k) from features ``train_x`` (n, d) and
    return its predictions for ``test_x`` (m, d), shape (m,) or (m, k), in float64.

    Raises:
        ValueError: for mismatched shapes, fewer than 2 fitting samples or a negative ridge.
    """
    ridge = check.real("ridge", ridge, minimum=0.0)
    for name, value in (("train_x", train_x), ("train_y", train_y), ("test_x", test_x)):
        check.instance(name, value, torch.Tensor, "a torch tensor")
    if train_x.ndim != 2 or train_x.shape[0] < 2:
        raise check.fail("train_x", "(n, d) features of n >= 2 samples",
                         f"shape {tuple(train_x.shape)}")
    if test_x.ndim != 2 or test_x.shape[1] != train_x.shape[1]:
        raise check.fail("test_x", f"(m, {train_x.shape[1]}) features like train_x",
                         f"shape {tuple(test_x.shape)}")
    if train_y.ndim not in (1, 2) or train_y.shape[0] != train_x.shape[0]:
        raise check.fail("train_y", f"({train_x.shape[0]},) or ({train_x.shape[0]}, k)",
                         f"shape {tuple(train_y.shape)}")
    n = train_x.shape[0]
    x_tr, x_te, y = train_x.double(), test_x.double(), train_y.double()
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-8)
    z_tr, z_te = (x_tr - mu) / sd, (x_te - mu) / sd
    gram = z_tr.T @ z_tr + ridge * n * torch.eye(z_tr.shape[1], dtype=torch.float64)
    y_mean = y.mean(0)
    beta = torch.linalg.solve(gram, z_tr.T @ (y - y_mean))
    return y_mean + z_te @ beta
