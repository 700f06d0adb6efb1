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
(rounding in the products aside: the caller runs them in float64 where float32 rounding could
exceed rtol), and iteration stops when it is ≤ rtol · lo. The bounds
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
left out. D̂ also serves as the Jacobi preconditioner. What D̂'s error moves J by,
−ε Σ_i z_i²(D_i/D̂_i − 1) to first order (z = (B̃B̃ᵀ + εI)⁻¹g̃), is estimated by the jackknife
over the probes (each left out in turn, no further products), and `RIDGE_SIGMAS` of its
standard errors are reported with the bracket: the bracket bounds the solve of the solver's own
ridge εD̂; this statistical term covers the step to the exact solvers' εD.

Every image of a chunk runs its own bidiagonalisation in lock step (the products are batched
over images, which the network must treat independently); converged images stop updating.

**Warm start** (``start`` = x₀, e.g. the previous layer's pixel-space solution): with
M = B̃ᵀB̃ + εI and r₀ = u − Mx₀ (one JVP and one VJP), uᵀM⁻¹u = c₀ + r₀ᵀM⁻¹r₀ with
c₀ = 2uᵀx₀ − x₀ᵀMx₀ exactly, and likewise in unit space J = c₀ᵤ + s₀ᵀ(B̃B̃ᵀ + εI)⁻¹s₀ with
s₀ = B̃r₀, w₀ = B̃x₀ and c₀ᵤ = 2uᵀB̃ᵀw₀ − ‖B̃ᵀw₀‖² − ε‖w₀‖²; the bidiagonalisation then starts
from r₀, and both brackets, shifted by the offsets, stay rigorous. x₀ is first scaled by its
best multiple in M's norm (γ = uᵀx₀/x₀ᵀMx₀, so c₀ = (uᵀx₀)²/x₀ᵀMx₀ ≥ 0 and r₀ᵀM⁻¹r₀ ≤ uᵀM⁻¹u:
the pixel-space form never starts worse than cold). c₀ᵤ may be negative, often hugely: a
previous layer's solution carries large components (up to 1/ε) in directions that layer loses,
and where this layer keeps more of them, Mx₀ is large there and so is s₀. That costs little,
since those components lie at M's large eigenvalues, which the bidiagonalisation resolves in a
few steps, while the small-eigenvalue part that takes the long iteration is what the start
already holds. The bound c₀ᵤ + ‖s₀‖²·(Gauss) then cancels terms of up to |c₀ᵤ|; `START_ROUNDING`
of the largest is added to ``fisher_error``, and a start whose terms exceed J's upper bound
‖u‖² − εc₀ more than `START_CANCELLATION`-fold is not taken. Measured on the bench's
ResNet-shaped network (width 64, float64 products, one angle), layer1 started from the stem's
solution: 1,006–1,184 iterations against 1,262–1,376 cold at 32 px (four angles), 1,066
against 1,662 at 48 px; the strided stages after it take 3–5% more iterations warm, which is
why the caller (:mod:`._solve`) starts a layer warm only when it has at least as many units as
the layer the start comes from (fewer units: it is lossy relative to that layer). The
pixel-space solution x_k = x₀ + V_k(T_k + εI)⁻¹β₁e₁ is kept with two vectors (the
conjugate-gradient iterate of the same Krylov space, from the LDLᵀ pivots the Gauss bound
already has) and returned, for the next layer's start and for dJ/d log ε = −ε‖B̃x‖² (one more
JVP, when asked).

**Reorthogonalisation** (``reorthogonalize`` steps): the first vectors of both sides are kept
and every new one is orthogonalised against them twice (classical Gram–Schmidt, twice), which
restores the exact-arithmetic convergence that rounding slows (Golub & Van Loan, Matrix
Computations, §10.3); the caller sizes the number of steps kept to its memory and the cost of a
product.

**Estimate mode** (``certify=False``): instead of the certified bracket, iteration stops when
the change of the better-converging form over the last quarter of the steps (at least
`DELAY`; an estimate of its error, Strakoš & Tichý 2002, ETNA 13: 56) is ≤ rtol · J and
the certified bracket is within `SLACK` · rtol, and that form's value and that estimate are
returned: faster, but an estimate (bounded only by `SLACK` · rtol), not a bound.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp, linearize, vmap

from ..seeding import stream_seed
from ._quadrature import GaussRadau, safe

__all__ = ["DELAY", "LINEARIZE_AFTER", "MAXITER", "N_PROBES", "SLACK", "KrylovResult",
           "krylov_fisher", "probes", "pushforward"]

MAXITER = 20000
"""Default cap on the iterations of one solve: the deepest solves measured, the bench's
ResNet-shaped network's layer2 and layer3 at 224 px (untrained), took 5,079 and 3,677."""

N_PROBES = 16
"""Rademacher probes for the per-unit variance estimate D̂."""

LINEARIZE_AFTER = 256
"""Steps after which the JVPs switch to the function ``torch.func.linearize`` returns: tracing
costs about 0.1–1 s a layer (more through replayed gates) and saves about half of each JVP, so
it pays only for long solves."""

RIDGE_SIGMAS = 3.0
"""Jackknife standard errors of the probe estimate D̂'s effect on J added to ``fisher_error``
(`KrylovResult.ridge_error`): the exact solvers use D itself."""

START_CANCELLATION = 1e6
"""A warm start is taken only where the terms of its unit-space offset c₀ᵤ are at most this
many times J's upper bound ‖u‖² − εc₀ (beyond, the shifted bound would lose that many digits)."""

START_ROUNDING = 64 * 2.0**-52
"""What float64 rounding can cost the warm start's shifted bounds, relative to the largest term
of its offset c₀ᵤ (the bound c₀ᵤ + ‖s₀‖²·(Gauss) cancels terms of that size): added to
``fisher_error``."""

SLACK = 10.0
"""Estimate mode stops only once the certified bracket is within ``SLACK`` · rtol as well, so
that its error, an estimate, is at least bounded by ten times the tolerance."""

DELAY = 4
"""Fewest steps over which estimate mode (``certify=False``) measures the change of an
estimate (a quarter of the steps so far, when more: plateaus of the convergence are long)."""


def probes(n_img: int, n_pix: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The fixed Rademacher probes [N_PROBES, n_img, n_pix] (stream "fisher" of seed 0)."""
    gen = torch.Generator().manual_seed(stream_seed(0, "fisher"))
    signs = torch.randint(0, 2, (N_PROBES, n_pix), generator=gen).to(dtype) * 2 - 1
    return signs.to(device)[:, None, :].expand(N_PROBES, n_img, n_pix)


@dataclass
class KrylovResult:
    """One layer's solve for a chunk of C images (every tensor [C], or [C, P])."""

    fisher: torch.Tensor
    error: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    solution: torch.Tensor  # x ≈ (B̃ᵀB̃ + εI)⁻¹u, float64 [C, P]
    dlog_eps: torch.Tensor | None  # dJ/d log ε = −ε‖B̃x‖² (when asked), else None
    scale: torch.Tensor  # D̂^{-1/2} [C, N], 0 for units that do not respond
    ridge_error: torch.Tensor  # RIDGE_SIGMAS jackknife standard errors of D̂'s effect on J
    started: torch.Tensor  # bool [C]: the warm start was taken


def krylov_fisher(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    xdot: torch.Tensor,
    std: torch.Tensor,
    eps: float,
    rtol: float,
    maxiter: int,
    *,
    start: torch.Tensor | None = None,
    certify: bool = True,
    reorthogonalize: int = 0,
    sensitivity: bool = False,
    diag: torch.Tensor | None = None,
) -> KrylovResult:
    """One layer r = fn(x) [C, N]: J, its bound (or estimate), iterations, and the pixel-space
    solution, for every image of the chunk (see the module docstring).

    ``x`` [C, ...] where the noise enters, ``xdot`` its θ-derivative (same shape), ``std``
    [numel per image] the noise standard deviation √V per element (0 where V = 0: those
    elements are left out). Products in x's dtype; the bidiagonalisation and its bounds in
    float64. ``start`` [C, P]: a warm start x₀; ``reorthogonalize``: how many vectors of each
    side to keep and reorthogonalise against; ``sensitivity``: also dJ/d log ε; ``diag``
    [C, N]: D itself (diag(BBᵀ), when the caller has it cheaply) instead of the probes' D̂.
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

    squares = None
    if diag is None:
        signs = probes(n_img, s.numel(), x.dtype, x.device)
        bw = vmap(forward)(signs).double()  # [K, C, N]
        squares = (bw * bw).float()  # kept for the ridge's jackknife
        del bw
        diag = squares.double().mean(0)
    diag = diag.double()
    alive = diag > 0
    scale = torch.where(alive, diag.clamp_min(1e-300).rsqrt(), 0.0)  # D̂^{-1/2}, 0 if dead
    sd = scale.to(out.dtype)

    def unit(w: torch.Tensor) -> torch.Tensor:  # B̃ w
        return forward(w.to(out.dtype)).double() * scale

    def pixel(p: torch.Tensor) -> torch.Tensor:  # B̃ᵀ p
        return backward(p.to(out.dtype) * sd).double()

    u = torch.where(std > 0, xdot.reshape(n_img, -1).double() / torch.where(
        std > 0, std, 1.0), 0.0)  # Σ_x^{-1/2} ẋ, 0 where V = 0
    norm_u2 = (u * u).sum(1)
    if start is None:
        x0 = torch.zeros_like(u)
        r0 = u
        c0 = c0u = torch.zeros_like(norm_u2)
        start_rounding = torch.zeros_like(norm_u2)
        started = torch.zeros_like(norm_u2, dtype=torch.bool)
    else:  # q = c₀ + r₀ᵀM⁻¹r₀ and J = c₀ᵤ + s₀ᵀ(B̃B̃ᵀ + εI)⁻¹s₀, s₀ = B̃r₀
        x0 = start.double() * (std > 0)
        w0 = unit(x0)
        y0 = pixel(w0)
        # x₀ scaled by γ = uᵀx₀/x₀ᵀMx₀, the best multiple in M's norm: c₀ = (uᵀx₀)²/x₀ᵀMx₀ ≥ 0
        a_p = (u * x0).sum(1)
        b_p = (w0 * w0).sum(1) + eps * (x0 * x0).sum(1)
        gamma = torch.where(b_p > 0, a_p / safe(b_p), 0.0)
        c0 = gamma * a_p
        a_u = (u * y0).sum(1)
        b_u = (y0 * y0).sum(1) + eps * (w0 * w0).sum(1)
        c0u = 2 * gamma * a_u - gamma**2 * b_u  # may be < 0: the bound stays rigorous
        # what rounding can cost the shifted bounds (a few ulps of their largest terms); a
        # start whose terms exceed J's upper bound ‖u‖² − εc₀ more than START_CANCELLATION-fold
        # would lose that many digits and is not taken (cold start)
        big = torch.maximum((2 * gamma * a_u).abs(), gamma**2 * b_u)
        ok = (c0 > 0) & (big <= START_CANCELLATION * (norm_u2 - eps * c0))
        start_rounding = torch.where(ok, START_ROUNDING * big, 0.0)
        gamma = torch.where(ok, gamma, 0.0)
        r0 = u - gamma[:, None] * (y0 + eps * x0)
        x0 = gamma[:, None] * x0
        c0, c0u = torch.where(ok, c0, 0.0), torch.where(ok, c0u, 0.0)
        started = ok
    beta1 = r0.norm(dim=1)
    v = r0 / safe(beta1)[:, None]
    q = unit(v)
    alpha = q.norm(dim=1)
    p = q / safe(alpha)[:, None]
    g2 = beta1**2 * alpha**2  # ‖s₀‖²
    pix = GaussRadau(alpha * alpha, eps)  # T_1 = α₁²
    # the pixel-space solution x_k = x₀ + Σ ζ_i d_i (conjugate gradients from T's pivots)
    y_cg = beta1.clone()
    d_cg = v.clone()
    x_acc = x0 + (y_cg / pix.delta)[:, None] * d_cg
    keep = max(0, int(reorthogonalize))
    v_basis = torch.empty((keep, *v.shape), dtype=v.dtype, device=v.device) if keep else None
    p_basis = torch.empty((keep, *p.shape), dtype=p.dtype, device=p.device) if keep else None
    kept = 0
    if keep:
        v_basis[0], p_basis[0] = v, p
        kept = 1
    f0 = alpha * alpha  # the unshifted pivots of S_k are β²_{k+1} + f0_k
    units: GaussRadau | None = None
    b_unit = torch.zeros_like(norm_u2)
    iters = torch.zeros(n_img, dtype=torch.long, device=x.device)
    active = g2 > 0  # else s₀ = B̃r₀ = 0: J = c₀ᵤ exactly (0 without a start)
    lo = torch.where(active, c0u.clamp_min(0.0), c0u)
    hi = torch.where(active, norm_u2, c0u)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    est_value = torch.zeros_like(norm_u2)
    est_error = torch.full_like(norm_u2, float("inf"))
    for step in range(maxiter):
        if not active.any():
            break
        if step == LINEARIZE_AFTER:
            push[0] = pushforward(fn, x)
        w = pixel(p) - alpha[:, None] * v  # VJP: β_{k+1}, v_{k+1}
        if kept:
            w = _orthogonalise(w, v_basis[:kept])
        beta = w.norm(dim=1)
        v = w / safe(beta)[:, None]
        b_pix = alpha * beta  # T's next off-diagonal
        pix_upper = pix.upper(b_pix)
        d0 = beta * beta + f0  # S_k's last unshifted pivot
        units = GaussRadau(d0, eps) if units is None else units.next(b_unit, d0, active)
        q = unit(v) - beta[:, None] * p  # JVP: α_{k+1}, p_{k+1}
        if kept:
            q = _orthogonalise(q, p_basis[:kept])
        alpha_new = q.norm(dim=1)
        p = torch.where(active[:, None], q / safe(alpha_new)[:, None], p)
        if kept and kept < keep:
            v_basis[kept], p_basis[kept] = v, p
            kept += 1
        b_unit = beta * alpha_new  # S's next off-diagonal
        unit_upper = units.upper(b_unit)
        unit_lower = units.gauss
        ell = b_pix / pix.delta  # L's multiplier before T grows by a row
        pix = pix.next(b_pix, alpha_new * alpha_new, active)
        y_cg = torch.where(active, -ell * y_cg, y_cg)
        d_cg = torch.where(active[:, None], v - ell[:, None] * d_cg, d_cg)
        x_acc = torch.where(active[:, None], x_acc + (y_cg / pix.delta)[:, None] * d_cg, x_acc)
        f0 = torch.where(active, alpha_new * alpha_new * f0 / safe(d0), f0)
        alpha = torch.where(active, alpha_new, alpha)
        iters = iters + active.long()
        unit_lo, unit_hi = c0u + g2 * unit_lower, c0u + g2 * unit_upper
        pix_lo = norm_u2 - eps * (c0 + beta1**2 * pix_upper)
        pix_hi = norm_u2 - eps * (c0 + beta1**2 * pix.gauss)
        lo = torch.where(active, torch.maximum(lo, torch.maximum(unit_lo, pix_lo)), lo)
        hi = torch.where(active, torch.minimum(hi, torch.minimum(unit_hi, pix_hi)), hi)
        if certify:
            active = active & (hi - lo > 2 * rtol * lo)
            continue
        history.append((unit_lo, pix_hi))
        delay = max(DELAY, len(history) // 4)  # long plateaus need a long look back
        estimated = torch.zeros_like(active)
        if len(history) > delay:
            old_lo, old_hi = history[-1 - delay]
            e_unit, e_pix = (unit_lo - old_lo).abs(), (old_hi - pix_hi).abs()
            use_unit = e_unit <= e_pix
            est_value = torch.where(active, torch.where(use_unit, unit_lo, pix_hi), est_value)
            est_error = torch.where(active, torch.where(use_unit, e_unit, e_pix), est_error)
            estimated = (est_error <= rtol * est_value.abs()) & (hi - lo <= 2 * SLACK * rtol * lo)
        bounded = hi - lo <= 2 * rtol * lo  # certified first: the bracket is returned
        est_value = torch.where(active & bounded, (lo + hi) / 2, est_value)
        est_error = torch.where(active & bounded, (hi - lo) / 2, est_error)
        active = active & ~(estimated | bounded)
    if certify:
        j = (lo + hi) / 2
        err = ((hi - lo) / 2).clamp_min(0.0) + start_rounding
        converged = err <= rtol * j
    else:  # rows without an estimate (stopped at once, or at maxiter early): the bracket
        none = ~torch.isfinite(est_error)
        j = torch.where(none, (lo + hi) / 2, est_value)
        err = torch.where(none, ((hi - lo) / 2).clamp_min(0.0), est_error) + start_rounding
        converged = err <= rtol * j.abs()
    z = unit(x_acc)  # ≈ (B̃B̃ᵀ + εI)⁻¹g̃
    dlog = -eps * (z * z).sum(1) if sensitivity else None
    # the ridge εD̂ of K probes instead of εD: J moves by −ε Σ_i z_i²(D_i/D̂_i − 1) to first
    # order; leaving probe k out moves it by ΔJ_k = −ε/(K − 1) Σ_i z_i²(1 − y²_ik/D̂_i)
    spread = torch.zeros_like(j)
    if squares is not None:
        k = squares.shape[0]
        ratio = torch.where(alive, squares.double() / torch.where(alive, diag, 1.0), 1.0)
        shifts = -eps / (k - 1) * ((z * z)[None] * (1.0 - ratio)).sum(-1)  # [K, C]
        spread = ((k - 1) / k * ((shifts - shifts.mean(0)) ** 2).sum(0)).sqrt()
    return KrylovResult(j, err, iters, converged, x_acc, dlog, scale, RIDGE_SIGMAS * spread,
                        started)


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """w [C, n] without its components along the kept vectors basis [k, C, n] (classical
    Gram–Schmidt, twice)."""
    for _ in range(2):
        w = w - torch.einsum("kc,kcn->cn", torch.einsum("kcn,cn->kc", basis, w), basis)
    return w


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
