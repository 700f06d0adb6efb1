"""Matrix-free propagated Fisher information: conjugate gradients on JVP/VJP products.

For one layer with Jacobian A = ∂r/∂x at the noiseless image, pixel covariance Σ_x and
B = A Σ_x^{1/2} (N units × P pixels), u = Σ_x^{-1/2} ẋ, g = B u = A ẋ, the propagated
estimator is

    J = gᵀ (B Bᵀ + ε D)⁻¹ g,   D = diag(B Bᵀ) = diag(A Σ_x Aᵀ),

the per-unit relative ridge of :mod:`anglesim.fisher.propagated`. With B̃ = D^{-1/2} B (each
unit scaled to unit variance) and g̃ = D^{-1/2} g = B̃u this is J = g̃ᵀ (B̃B̃ᵀ + εI)⁻¹ g̃: the
damped least-squares problem z = argmin ‖B̃ᵀz − u‖² + ε‖z‖² has normal equations
(B̃B̃ᵀ + εI) z = g̃, and J = g̃ᵀz = (D^{-1/2} A ẋ)ᵀ z. By the push-through identity also
J = uᵀ B̃ᵀB̃ (B̃ᵀB̃ + εI)⁻¹ u = ‖u‖² − ε uᵀ(B̃ᵀB̃ + εI)⁻¹u, a P × P system.

Two conjugate-gradient solves (Hestenes & Stiefel 1952, J Res Natl Bur Stand 49: 409) run in
lock step, each needing one JVP (B w = A Σ_x^{1/2} w) and one VJP (Bᵀp = Σ_x^{1/2} Aᵀ p) per
iteration and nothing of size N × P: CG in unit space on (B̃B̃ᵀ + εI) z = g̃ and CG in pixel
space on (B̃ᵀB̃ + εI) w = u. For a quadratic form bᵀM⁻¹b, CG from 0 gives at step k the Gauss
quadrature lower bound Σ_{j<k} α_j ‖r_j‖² and, with μ ≤ λ_min(M), the Gauss–Radau upper bound
(Golub & Meurant 1994; in CG form Meurant & Tichý 2013, Numer Algorithms 62: 163); here μ = ε
exactly. The unit-space solve brackets J directly; the pixel-space one brackets
uᵀ(B̃ᵀB̃ + εI)⁻¹u and so J from the other side. The two brackets intersect in [lo, hi]; the
value returned is (lo + hi)/2 and ``fisher_error`` the half-width (hi − lo)/2, a bound in exact
arithmetic (rounding in the products aside), and iteration stops when it is ≤ rtol · lo.
Nearly lossless layers (early convolutions) close from above within a few pixel-space steps;
lossy ones (deep layers) from below in unit space; whichever is slower sets the iterations.

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
    """(J, error bound, iterations, converged) [C] for one layer r = fn(x) [C, N].

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

    u = torch.where(std > 0, xdot.reshape(n_img, -1).double() / torch.where(
        std > 0, std, 1.0), 0.0)  # Σ_x^{-1/2} ẋ, 0 where V = 0
    pixels = (u * u).sum(1)
    sd = scale.to(out.dtype)

    def unit_matvec(p: torch.Tensor) -> torch.Tensor:  # (B̃B̃ᵀ + εI) p
        return forward(backward(p * sd)).double() * scale + eps * p

    def pixel_matvec(w: torch.Tensor) -> torch.Tensor:  # (B̃ᵀB̃ + εI) w
        return backward(forward(w.to(out.dtype)) * sd * sd).double() + eps * w

    unit, pixel = _CG(g, eps), _CG(u, eps)
    iters = torch.zeros(n_img, dtype=torch.long, device=x.device)
    active = (g * g).sum(1) > 0
    lo = torch.zeros_like(pixels)
    hi = torch.where(active, pixels, 0.0)
    for _ in range(maxiter):
        if not active.any():
            break
        unit.step(unit_matvec, active)
        pixel.step(pixel_matvec, active)
        iters = iters + active.long()
        lo = torch.where(active, torch.maximum(unit.lower, pixels - eps * pixel.upper), lo)
        hi = torch.where(active, torch.minimum(unit.upper, pixels - eps * pixel.lower), hi)
        active = active & (hi - lo > 2 * rtol * lo)
    j = (lo + hi) / 2
    err = ((hi - lo) / 2).clamp_min(0.0)
    return j, err, iters, err <= rtol * j


class _CG:
    """Conjugate gradients for (K + εI) y = b from y₀ = 0, batched over rows, with the
    quadratic form bᵀ(K + εI)⁻¹b bracketed at every step: the Gauss lower bound
    Σ_j α_j‖r_j‖² and the Gauss–Radau upper bound, that sum plus ‖r_k‖² α̃_k with
    α̃_0 = 1/μ, α̃_{k+1} = (α̃_k − α_k)/(μ(α̃_k − α_k) + β_{k+1}) for μ = ε ≤ λ_min
    (Golub & Meurant 1994; the CG form of Meurant & Tichý 2013, Numer Algorithms 62: 163)."""

    def __init__(self, b: torch.Tensor, mu: float) -> None:
        self.r = b.clone()
        self.p = b.clone()
        self.rr = (b * b).sum(1)
        self.mu = mu
        self.lower = torch.zeros_like(self.rr)
        self.radau = torch.full_like(self.rr, 1.0 / mu)

    @property
    def upper(self) -> torch.Tensor:
        return self.lower + self.rr * self.radau

    def step(self, matvec: Callable[[torch.Tensor], torch.Tensor], active: torch.Tensor) -> None:
        q = matvec(self.p)
        pq = (self.p * q).sum(1)
        ok = active & (pq > 0) & (self.rr > 0)
        alpha = torch.where(ok, self.rr / torch.where(ok, pq, 1.0), 0.0)
        self.lower = self.lower + alpha * self.rr
        self.r = self.r - alpha[:, None] * q
        rr_new = (self.r * self.r).sum(1)
        beta = torch.where(ok, rr_new / torch.where(ok, self.rr, 1.0), 0.0)
        gap = self.radau - alpha
        self.radau = torch.where(ok, gap / (self.mu * gap + beta).clamp_min(1e-300),
                                 self.radau)
        self.p = torch.where(ok[:, None], self.r + beta[:, None] * self.p, self.p)
        self.rr = torch.where(ok, rr_new, self.rr)
