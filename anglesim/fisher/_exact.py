"""The exact propagated solver: each layer's Jacobian, then a Cholesky solve.

J = g̃ᵀ(B̃B̃ᵀ + εI)⁻¹g̃ with B̃ = D^{-1/2} A Σ_x^{1/2}, D = diag(A Σ_x Aᵀ) and g̃ = B̃u (see
:func:`anglesim.fisher.propagated_fisher`); the reference the matrix-free solver of
:mod:`anglesim.fisher._krylov` is checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import jvp, vjp, vmap

__all__ = ["JACOBIAN_BUDGET", "jacobian", "ridge_fisher"]

# Elements one vmapped chunk of Jacobian rows/columns may hold, over all images of a chunk:
# bounds the memory of the Jacobian computation whatever the number of units or pixels.
# 2**22 rather than 2**24 (with 4 images per chunk rather than 8) halved the peak memory of
# the quickstart's Fisher step (1.6 to 0.76 GB per process) at the same speed.
JACOBIAN_BUDGET = 2**22


def jacobian(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n_out: int, n_in: int,
    act: int,
) -> torch.Tensor:
    """Per-image Jacobian [C, n_out, n_in] of fn: [C, ...] -> [C, n_out] at x.

    Images must not interact inside fn, so one one-hot (co)tangent repeated over the batch
    yields every image's row (reverse mode) or column (forward mode) at once. ``act`` (units
    the computation passes through, per image) sizes the vmap chunks. Reverse mode is used
    only when it needs at most half as many passes as forward mode: on CPU a reverse pass
    through convolutions and max-pooling costs about twice a forward-mode one, so a layer with
    as many units as pixels (the default CNN's conv2) is faster in forward mode (the whole
    propagated FI of that CNN went from 0.39 to 0.31 s per angle).
    """
    n_img = x.shape[0]
    chunk = max(1, JACOBIAN_BUDGET // (n_img * max(n_in, act)))
    if 2 * n_out <= n_in:
        out, pullback = vjp(fn, x)

        def row(i: torch.Tensor) -> torch.Tensor:
            e = (torch.arange(n_out, device=x.device) == i).to(out.dtype)
            return pullback(e.expand(n_img, n_out))[0].reshape(n_img, n_in)

        rows = vmap(row, chunk_size=min(chunk, n_out))(torch.arange(n_out, device=x.device))
        return rows.permute(1, 0, 2)

    def col(j: torch.Tensor) -> torch.Tensor:
        e = (torch.arange(n_in, device=x.device) == j).to(x.dtype).reshape(x.shape[1:])
        return jvp(fn, (x,), (e.expand_as(x),))[1]

    cols = vmap(col, chunk_size=min(chunk, n_in))(torch.arange(n_in, device=x.device))
    return cols.permute(1, 2, 0)


# Below this fraction of non-zero entries a Jacobian's Gram matrix is formed as a sparse ×
# dense product: a convolution unit sees only a patch of pixels (the default CNN's conv1 and
# conv2 Jacobians are about 1% and 7% non-zero), and the sparse product then beats the dense
# one (break-even near 15%); the default CNN's propagated FI went from 0.50 to 0.36 s per angle.
_SPARSE_GRAM_DENSITY = 0.1


def _gram(b: torch.Tensor, rows: bool) -> torch.Tensor:
    """BBᵀ (``rows``) or BᵀB for each image of b [C, N, P] (sparse × dense when B is sparse)."""
    if b.device.type != "cpu" or int(torch.count_nonzero(b)) > _SPARSE_GRAM_DENSITY * b.numel():
        return b @ b.transpose(1, 2) if rows else b.transpose(1, 2) @ b
    factors = b if rows else b.transpose(1, 2)  # gram = M Mᵀ per image
    return torch.stack([torch.sparse.mm(m.to_sparse(), m.T.contiguous()) for m in factors])


def ridge_fisher(b: torch.Tensor, u: torch.Tensor, eps: float,
                 solutions: bool = False) -> Any:
    """J = g̃ᵀ(B̃B̃ᵀ + εI)⁻¹g̃ for b [C, N, P] (= A Σ_x^{1/2}), u [C, P] (= Σ_x^{-1/2} ẋ).

    B̃ = D^{-1/2}B with D = diag(BBᵀ) (rows of dead units, D_i = 0, stay 0 and add nothing),
    g̃ = B̃u. Formed in place on ``b`` (which then holds B̃). The smaller Gram matrix is used:
    N ≤ P the N × N B̃B̃ᵀ; N > P the P × P B̃ᵀB̃ with J = uᵀ(B̃ᵀB̃ + εI)⁻¹B̃ᵀB̃u (push-through
    identity). With ``solutions`` also the unit-space solution z = (B̃B̃ᵀ + εI)⁻¹g̃ [C, N] and
    the pixel-space one x = (B̃ᵀB̃ + εI)⁻¹u [C, P] (z = B̃x), from the same factorisation:
    (J, z, x).
    """
    n_units, n_pix = b.shape[1], b.shape[2]
    norms = (b * b).sum(2)
    b.mul_(torch.where(norms > 0, norms.clamp_min(1e-300).rsqrt(), 0.0)[..., None])
    g = torch.einsum("cnp,cp->cn", b, u)  # D^{-1/2} A ẋ
    if n_units <= n_pix:
        gram = _gram(b, rows=True)
        left = right = g
    else:
        gram = _gram(b, rows=False)
        left, right = u, torch.einsum("cnp,cn->cp", b, g)  # u and B̃ᵀB̃ u
    dead = ~(norms > 0).any(1)  # no unit responds to the image: A = 0, J = 0
    ridge = torch.full_like(norms[:, 0], float(eps))
    j, left_solved = _quadratic(gram, ridge, left, right)
    j = torch.where(dead, 0.0, j)
    if not solutions:
        return j
    if n_units <= n_pix:  # left = g̃: z = (B̃B̃ᵀ + εI)⁻¹g̃, x = (u − B̃ᵀz)/ε
        z = left_solved
        x = (u - torch.einsum("cnp,cn->cp", b, z)) / eps
    else:  # left = u: x = (B̃ᵀB̃ + εI)⁻¹u, z = B̃x
        x = left_solved
        z = torch.einsum("cnp,cp->cn", b, x)
    return j, z, x


def _quadratic(
    gram: torch.Tensor, ridge: torch.Tensor, left: torch.Tensor, right: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """leftᵀ (gram + ridge I)⁻¹ right and (gram + ridge I)⁻¹ left, batched; Cholesky, eigh
    fallback for failures."""
    n = gram.shape[-1]
    eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
    shifted = gram + ridge[:, None, None] * eye
    chol, info = torch.linalg.cholesky_ex(shifted)
    wl = torch.linalg.solve_triangular(chol, left[..., None], upper=False)
    wr = torch.linalg.solve_triangular(chol, right[..., None], upper=False)
    result = (wl * wr).sum((-2, -1))
    solved = torch.linalg.solve_triangular(chol.transpose(-2, -1), wl, upper=True)[..., 0]
    bad = info != 0
    if bad.any():
        evals, evecs = torch.linalg.eigh(gram[bad])
        evals = evals.clamp_min(0) + ridge[bad, None]
        pl = (evecs.transpose(1, 2) @ left[bad][..., None])[..., 0]
        pr = (evecs.transpose(1, 2) @ right[bad][..., None])[..., 0]
        result[bad] = (pl * pr / evals).sum(-1)
        solved[bad] = (evecs @ (pl / evals)[..., None])[..., 0]
    return result, solved
