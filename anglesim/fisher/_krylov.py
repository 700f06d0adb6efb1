"""Matrix-free propagated Fisher information: conjugate gradients on JVP/VJP products.

For one layer with Jacobian A = ∂r/∂x at the noiseless image, pixel covariance Σ_x and
B = A Σ_x^{1/2} (N units × P pixels), u = Σ_x^{-1/2} ẋ, g = B u = A ẋ, the propagated
estimator is

    J = gᵀ (B Bᵀ + ε D)⁻¹ g,   D = diag(B Bᵀ) = diag(A Σ_x Aᵀ),

the per-unit relative ridge of :mod:`anglesim.fisher._propagated`. With B̃ = D^{-1/2} B (each
unit scaled to unit variance) and g̃ = D^{-1/2} g = B̃u this is J = g̃ᵀ (B̃B̃ᵀ + εI)⁻¹ g̃: the
damped least-squares problem z = argmin ‖B̃ᵀz − u‖² + ε‖z‖² has normal equations
(B̃B̃ᵀ + εI) z = g̃, and J = g̃ᵀz = (D^{-1/2} A ẋ)ᵀ z. By the push-through identity also
J = uᵀ B̃ᵀB̃ (B̃ᵀB̃ + εI)⁻¹ u = ‖u‖² − ε uᵀ(B̃ᵀB̃ + εI)⁻¹u, a P × P system.

One Golub–Kahan bidiagonalisation of B̃ started from u (Golub & Kahan 1965, SIAM J Numer
Anal B 2: 205; as in LSQR, Paige & Saunders 1982, ACM TOMS 8: 43) needs one JVP (B w =
A Σ_x^{1/2} w) and one VJP (Bᵀp = Σ_x^{1/2} Aᵀ p) per iteration and nothing of size N × P:

    β₁v₁ = u,   α₁p₁ = B̃v₁,
    β_{k+1}v_{k+1} = B̃ᵀp_k − α_k v_k,   α_{k+1}p_{k+1} = B̃v_{k+1} − β_{k+1}p_k.

With R_k the upper bidiagonal matrix (α₁…α_k on the diagonal, β₂…β_k above it), the Lanczos
tridiagonal of B̃ᵀB̃ from u is T_k = R_kᵀR_k (next off-diagonal α_kβ_{k+1}) and that of B̃B̃ᵀ
from g = β₁α₁p₁ is S_k = R_kR_kᵀ + β²_{k+1}e_ke_kᵀ (next off-diagonal β_{k+1}α_{k+1}): the
same products serve the unit-space form J = ‖g‖² e₁ᵀ(S + εI)⁻¹e₁ and the pixel-space form
q = uᵀ(B̃ᵀB̃ + εI)⁻¹u = β₁² e₁ᵀ(T + εI)⁻¹e₁, J = ‖u‖² − εq. For each, Gauss quadrature
on the k × k tridiagonal gives a lower bound and Gauss–Radau with the node μ = ε ≤ λ_min
an upper bound (Golub & Meurant 1994, Matrices, moments and quadrature; 2010 book §6); the
two forms bracket J from both sides, the brackets intersect in [lo, hi], the value returned
is (lo + hi)/2 and ``fisher_error`` the half-width (hi − lo)/2, a bound in exact arithmetic
(rounding in the products aside), and iteration stops when it is ≤ rtol · lo. The bounds
come from LDLᵀ recurrences of the tridiagonals written in positive terms only (the pivots of
the unshifted T_k are α_i², those of S_k follow from a positive recurrence, and the shifted
pivots are the unshifted ones plus a positive excess), O(1) per step. The unit-space and
pixel-space conjugate-gradient solves of the earlier version spanned the same Krylov spaces
and so gave the same brackets, at two JVPs and two VJPs per iteration instead of one each.
Nearly lossless layers (early convolutions) close from above within a few steps through the
pixel-space form; lossy ones (deep layers) from below through the unit-space form.

D is not available without the Jacobian, so it is estimated from K = 16 Rademacher probes
w_k ∈ {±1}^P (Hutchinson 1989; Bekas, Kokiopoulou & Saad 2007, Appl Numer Math 57: 1214):
D̂ = mean_k (B w_k)², K JVPs batched into one. The probes are fixed (stream "fisher" of seed
0), so results are deterministic, and rescaling one unit by c rescales its row of B w_k by c
and D̂_i by c², so J stays exactly invariant to rescaling units, as with the exact D; the ridge
differs from the exact solver's by the estimate's error (about √(2/K) ≈ 35% per unit at most,
typically less), which moves J only by O(ε). Units with D̂_i = 0 do not respond and are
left out. D̂ also serves as the Jacobi preconditioner.

Every image of a chunk runs its own bidiagonalisation in lock step (the products are batched
over images, which the network must treat independently); converged images stop updating.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.func import jvp, linearize, vmap

from ..seeding import stream_seed

__all__ = ["LINEARIZE_AFTER", "N_PROBES", "GaussRadau", "krylov_fisher", "probes", "pushforward"]

N_PROBES = 16
"""Rademacher probes for the per-unit variance estimate D̂."""

LINEARIZE_AFTER = 64
"""Steps after which the JVPs switch to the function ``torch.func.linearize`` returns: tracing costs
about 0.1–0.2 s a layer and saves about half of each JVP, so it pays only for long solves."""



def probes(n_img: int, n_pix: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
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
    elements are left out). Products in x's dtype; the bidiagonalisation and its bounds in
    float64.
    """
    n_img = x.shape[0]
    shape = x.shape[1:]
    s = std.to(x.dtype)
    leaf = x.detach().requires_grad_(True)
    out = fn(leaf.clone())  # the graph every VJP reuses (clone: fn may write in place)
    push = [lambda w: jvp(fn, (x,), (w,))[1]]  # plain JVPs until LINEARIZE_AFTER steps

    def forward(w: torch.Tensor) -> torch.Tensor:  # B w for w [C, P]
        return push[0]((w * s).reshape(n_img, *shape)).detach()  # detach: no graph across steps

    def backward(p: torch.Tensor) -> torch.Tensor:  # Bᵀ p for p [C, N]
        grad = torch.autograd.grad(out, leaf, p.to(out.dtype), retain_graph=True)[0]
        return grad.detach().reshape(n_img, -1) * s

    signs = probes(n_img, s.numel(), x.dtype, x.device)
    bw = vmap(forward)(signs).double()  # [K, C, N]
    diag = (bw * bw).mean(0)
    del bw
    alive = diag > 0
    scale = torch.where(alive, diag.clamp_min(1e-300).rsqrt(), 0.0)  # D̂^{-1/2}, 0 if dead
    sd = scale.to(out.dtype)

    def unit(w: torch.Tensor) -> torch.Tensor:  # B̃ w
        return forward(w.to(out.dtype)).double() * scale

    def pixel(p: torch.Tensor) -> torch.Tensor:  # B̃ᵀ p
        return backward(p.to(out.dtype) * sd).double()

    u = torch.where(std > 0, xdot.reshape(n_img, -1).double() / torch.where(
        std > 0, std, 1.0), 0.0)  # Σ_x^{-1/2} ẋ, 0 where V = 0
    pixels = (u * u).sum(1)
    beta1 = pixels.sqrt()
    v = u / _safe(beta1)[:, None]
    q = unit(v)
    alpha = q.norm(dim=1)
    p = q / _safe(alpha)[:, None]
    g2 = pixels * alpha * alpha  # ‖g‖² = ‖B̃u‖²
    pix = GaussRadau(alpha * alpha, eps)  # T_1 = α₁²
    f0 = alpha * alpha  # the unshifted pivots of S_k are β²_{k+1} + f0_k
    units: GaussRadau | None = None
    b_unit = torch.zeros_like(pixels)
    iters = torch.zeros(n_img, dtype=torch.long, device=x.device)
    active = g2 > 0
    lo = torch.zeros_like(pixels)
    hi = torch.where(active, pixels, 0.0)
    for step in range(maxiter):
        if not active.any():
            break
        if step == LINEARIZE_AFTER:
            push[0] = pushforward(fn, x)
        w = pixel(p) - alpha[:, None] * v  # VJP: β_{k+1}, v_{k+1}
        beta = w.norm(dim=1)
        v = w / _safe(beta)[:, None]
        b_pix = alpha * beta  # T's next off-diagonal
        pix_upper = pix.upper(b_pix)
        d0 = beta * beta + f0  # S_k's last unshifted pivot
        units = GaussRadau(d0, eps) if units is None else units.next(b_unit, d0, active)
        q = unit(v) - beta[:, None] * p  # JVP: α_{k+1}, p_{k+1}
        alpha_new = q.norm(dim=1)
        p = torch.where(active[:, None], q / _safe(alpha_new)[:, None], p)
        b_unit = beta * alpha_new  # S's next off-diagonal
        unit_upper = units.upper(b_unit)
        unit_lower = units.gauss
        pix = pix.next(b_pix, alpha_new * alpha_new, active)
        f0 = torch.where(active, alpha_new * alpha_new * f0 / _safe(d0), f0)
        alpha = torch.where(active, alpha_new, alpha)
        iters = iters + active.long()
        lo_k = torch.maximum(g2 * unit_lower, pixels - eps * pixels * pix_upper)
        hi_k = torch.minimum(g2 * unit_upper, pixels - eps * pixels * pix.gauss)
        lo = torch.where(active, torch.maximum(lo, lo_k), lo)
        hi = torch.where(active, torch.minimum(hi, hi_k), hi)
        active = active & (hi - lo > 2 * rtol * lo)
    j = (lo + hi) / 2
    err = ((hi - lo) / 2).clamp_min(0.0)
    return j, err, iters, err <= rtol * j


def pushforward(fn: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """w ↦ (∂fn/∂x) w at x: `torch.func.linearize` (the primal is computed once, not at
    every product) where it traces fn and agrees with `torch.func.jvp` on one tangent, else
    a fresh `torch.func.jvp` per product (modules that write in place on traced tensors,
    data-dependent control flow and the like)."""
    def plain(w: torch.Tensor) -> torch.Tensor:
        return jvp(fn, (x,), (w,))[1]

    try:
        with warnings.catch_warnings():  # const_fold's notice about its own get_attr nodes
            warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
            _, lin = linearize(fn, x)
        w = torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)
        got, want = lin(w).detach(), plain(w).detach()
        tol = 1e-4 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
        if got.shape == want.shape and torch.allclose(got, want, rtol=tol,
                                                      atol=tol * float(want.abs().max())):
            return lin
    except Exception:  # noqa: BLE001 - any failure to trace or run: plain JVPs
        pass
    return plain


def _safe(d: torch.Tensor) -> torch.Tensor:
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
        h = self.eps + b * b * self.h / (_safe(self.d0) * self.delta)
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
