"""Matrix-free propagated Fisher information: conjugate gradients on JVP/VJP products.

For one layer with Jacobian A = ∂r/∂x at the noiseless image, pixel covariance Σ_x and
B = A Σ_x^{1/2} (N units × P pixels), u = Σ_x^{-1/2} ẋ, g = B u = A ẋ, the propagated
estimator is

    J = gᵀ (B Bᵀ + ε D)⁻¹ g,   D = diag(B Bᵀ) = diag(A Σ_x Aᵀ),

the per-unit relative ridge of :mod:`anglesim.fisher.propagated`. With B̃ = D^{-1/2} B (each
unit scaled to unit variance) and g̃ = D^{-1/2} g this is J = g̃ᵀ (B̃B̃ᵀ + εI)⁻¹ g̃: the damped
least-squares problem z = argmin ‖B̃ᵀz − u‖² + ε‖z‖² has normal equations
(B̃B̃ᵀ + εI) z = B̃u = g̃, and J = g̃ᵀz. Conjugate gradients (Hestenes & Stiefel 1952, J Res
Natl Bur Stand 49: 409) on this N × N system needs one product M p = B̃(B̃ᵀp) + εp per
iteration: one VJP (B̃ᵀp = Σ_x^{1/2} Aᵀ D^{-1/2} p) and one JVP (A Σ_x^{1/2} w), nothing of size
N × P. From z₀ = 0, the k-th iterate gives J_k = g̃ᵀz_k = Σ_{j<k} α_j ‖r_j‖², increasing
monotonically to J (J − J_k is the squared M-norm of the error); the error of J_k is
estimated by the next d = 4 terms, Σ_{j=k}^{k+d−1} α_j ‖r_j‖² (Strakoš & Tichý 2002, Electron
Trans Numer Anal 13: 56), and iteration stops when that estimate is ≤ rtol · J_k. The
estimate is stored beside each value (``fisher_error``) with the iteration count; it is an
estimate, not a bound.

D is not available without the Jacobian, so it is estimated from K = 16 Rademacher probes
w_k ∈ {±1}^P (Hutchinson 1989; Bekas, Kokiopoulou & Saad 2007, Appl Numer Math 57: 1214):
D̂ = mean_k (B w_k)², K JVPs batched into one. The probes are fixed (stream "fisher" of seed
0), so results are deterministic, and rescaling one unit by c rescales its row of B w_k by c
and D̂_i by c², so J stays exactly invariant to rescaling units, as with the exact D; the ridge
differs from the exact solver's by the estimate's error (about √(2/K) ≈ 35% per unit at most,
typically less), which moves J only by O(ε). Units with D̂_i = 0 do not respond and are
left out. D̂ also serves as the Jacobi preconditioner.

Every image of a chunk runs its own CG in lock step (the products are batched over images,
which the network must treat independently); converged images stop updating.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vjp, vmap

from ..seeding import stream_seed

__all__ = ["N_PROBES", "krylov_fisher"]

N_PROBES = 16
"""Rademacher probes for the per-unit variance estimate D̂."""

DELAY = 4
"""Terms of the error estimate (the delay d of Strakoš & Tichý)."""


def _probes(n_img: int, n_pix: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(stream_seed(0, "fisher"))
    signs = torch.randint(0, 2, (N_PROBES, n_pix), generator=gen).to(dtype) * 2 - 1
    return signs.to(device)[:, None, :].expand(N_PROBES, n_img, n_pix)


def krylov_fisher(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    xdot: torch.Tensor,
    std: torch.Tensor,
    eps: float,
    rtol: float,
    maxiter: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(J, error estimate, iterations, converged) [C] for one layer r = fn(x) [C, N].

    ``x`` [C, ...] where the noise enters, ``xdot`` its θ-derivative (same shape), ``std``
    [numel per image] the noise standard deviation √V per element (0 where V = 0: those
    elements are left out). Products in x's dtype, CG scalars in float64.
    """
    n_img = x.shape[0]
    shape = x.shape[1:]
    s = std.to(x.dtype)
    keep = (std > 0).to(x.dtype)
    out, pullback = vjp(fn, x)

    def forward(w: torch.Tensor) -> torch.Tensor:  # B w for w [C, P]
        tangent = (w * s).reshape(n_img, *shape)
        return jvp(fn, (x,), (tangent,))[1]

    def backward(p: torch.Tensor) -> torch.Tensor:  # Bᵀ p for p [C, N]
        return pullback(p.to(out.dtype))[0].reshape(n_img, -1) * s

    probes = _probes(n_img, s.numel(), x.dtype, x.device)
    bw = vmap(forward)(probes).double()  # [K, C, N]
    diag = (bw * bw).mean(0)
    del bw
    alive = diag > 0
    scale = torch.where(alive, diag.clamp_min(1e-300).rsqrt(), 0.0)  # D̂^{-1/2}, 0 if dead
    g = jvp(fn, (x,), ((xdot * keep.reshape(shape)).to(x.dtype),))[1].double() * scale

    def matvec(p: torch.Tensor) -> torch.Tensor:
        return forward(backward(p * scale)).double() * scale + eps * p

    z = torch.zeros_like(g)
    r = g.clone()
    p = r.clone()
    rr = (r * r).sum(1)
    j = torch.zeros(n_img, dtype=torch.float64, device=x.device)
    terms: list[torch.Tensor] = []
    iters = torch.zeros(n_img, dtype=torch.long, device=x.device)
    active = rr > 0
    err = torch.zeros_like(j)
    for k in range(maxiter):
        if not active.any():
            break
        q = matvec(p)
        pq = (p * q).sum(1)
        alpha = torch.where(active & (pq > 0), rr / torch.where(pq > 0, pq, 1.0), 0.0)
        z = z + alpha[:, None] * p
        term = alpha * rr
        j = j + term
        terms.append(term)
        r = r - alpha[:, None] * q
        rr_new = (r * r).sum(1)
        beta = torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, 1.0), 0.0)
        p = r + beta[:, None] * p
        rr = rr_new
        iters = iters + active.long()
        if k + 1 >= DELAY:
            # the last d terms estimate the error of J_{k+1-d}, an upper estimate for J_{k+1}
            err = torch.where(active, torch.stack(terms[-DELAY:]).sum(0), err)
            active = active & (err > rtol * j) & (rr > 0)
        else:
            err = torch.where(active, term, err)
            active = active & (rr > 0)
    converged = ~active | (err <= rtol * j)
    return j, err, iters, converged
