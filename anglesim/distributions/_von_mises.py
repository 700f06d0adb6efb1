"""The von Mises prior on orientation and its sampler (exact, and a wrapped normal for very
large κ)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import i0e

from .. import angles as ang
from .. import validation as check
from ._base import PI, AnglePrior, rand64

VON_MISES_NORMAL_KAPPA = 1e5
"""κ from which von Mises draws come from the wrapped-normal approximation instead of Best &
Fisher's rejection sampler. Above about κ = 1e12 the rejection sampler's arccos of a number
within √κ⁻¹ of 1 resolves only a few thousand distinct angles, and from κ ≈ 1e154 its
√(1 + 4κ²) overflows and it never accepts (``VonMises(κ=1e200).sample`` did not return).
At κ ≥ 1e5 the approximation's error is far below what any sample can show: exp(κ cos x)
differs from a Gaussian by a factor 1 + κx⁴/24 + …, a relative error of order 1/(8κ) ≈ 1e-6
within a few standard deviations, and its variance is matched to second order."""


def _wrapped_normal_variance(kappa: float) -> float:
    """σ² = −2 ln A(κ) ≈ 1/κ + 1/(2κ²), A = I₁/I₀ (the first trigonometric moment of vM(κ)):
    the wrapped normal with this σ² has the same mean resultant length as vM(0, κ) to
    O(κ⁻³) (Mardia & Jupp 2000, §3.5.7, with A(κ) = 1 − 1/(2κ) − 1/(8κ²) − …)."""
    return 1.0 / kappa + 0.5 / (kappa * kappa)


def von_mises_full_circle(
    n: int, kappa: float, generator: torch.Generator | None
) -> torch.Tensor:
    """n draws from the von Mises vM(0, κ) on the full circle, in (−π, π], float64: exact for
    κ < ``VON_MISES_NORMAL_KAPPA``, else x = σ z wrapped to (−π, π], z ~ N(0, 1), σ² =
    ``_wrapped_normal_variance(κ)`` (see ``VON_MISES_NORMAL_KAPPA`` for the switch-over).

    Best & Fisher (1979), "Efficient simulation of the von Mises distribution", Appl. Statist.
    28:152–157: rejection from a wrapped-Cauchy envelope with
    τ = 1 + √(1 + 4κ²), ρ = (τ − √(2τ)) / (2κ), r = (1 + ρ²) / (2ρ);
    z = cos(πU₁), f = (1 + rz) / (r + z), c = κ(r − f); accept if c(2 − c) > U₂ or
    ln(c / U₂) + 1 − c ≥ 0; then θ = ±arccos f with a fair random sign.
    ρ is computed in the algebraically equal, cancellation-free form
    ρ = 2κτ / ((1 + √(1 + 4κ²)) (τ + √(2τ))), so small κ stays accurate.
    Vectorised: each round proposes a batch for all still-missing draws (acceptance ≥ 65 %).
    κ = 0 is the uniform distribution.
    """
    if kappa == 0.0:
        return (2.0 * rand64(n, generator) - 1.0) * math.pi
    if kappa >= VON_MISES_NORMAL_KAPPA:
        dev = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(n, dtype=torch.float64, generator=generator, device=dev)
        x = math.sqrt(_wrapped_normal_variance(kappa)) * z
        return math.pi - torch.remainder(math.pi - x, 2.0 * math.pi)  # wrap to (−π, π]
    s = math.sqrt(1.0 + 4.0 * kappa * kappa)
    tau = 1.0 + s
    rho = 2.0 * kappa * tau / ((1.0 + s) * (tau + math.sqrt(2.0 * tau)))
    r = (1.0 + rho * rho) / (2.0 * rho)
    accepted: list[torch.Tensor] = []
    have = 0
    while have < n:
        m = int(1.6 * (n - have)) + 16
        u = rand64(3 * m, generator).reshape(3, m)
        z = torch.cos(math.pi * u[0])
        f = ((1.0 + r * z) / (r + z)).clamp(-1.0, 1.0)
        c = kappa * (r - f)
        u2 = u[1]
        ok = (c * (2.0 - c) > u2) | (torch.log(c / u2) + 1.0 - c >= 0.0)
        theta = torch.where(u[2] < 0.5, -1.0, 1.0) * torch.arccos(f)
        theta = theta[ok]
        accepted.append(theta)
        have += theta.numel()
    return torch.cat(accepted)[:n]


class VonMises(AnglePrior):
    """Von Mises prior on orientation, concentrated around ``loc`` with concentration κ.

    ``convention="double"`` (default): a von Mises on the doubled angle 2θ,

        p(θ) = exp(κ cos 2(θ − loc)) / (π I₀(κ)),

    the standard orientation prior (e.g. Wei & Stocker 2015, Nat. Neurosci. 18:1509); the
    circular variance of 2θ is 1 − I₁(κ)/I₀(κ).

    ``convention="folded"``: a full-circle von Mises vm(x) = exp(κ cos(x − loc)) / (2π I₀(κ))
    folded onto [0, π) (the convention of the reference research, lrast/angleFinetuning, which drew
    x and kept x mod π):

        p(θ) = vm(θ) + vm(θ + π) = cosh(κ cos(θ − loc)) / (π I₀(κ)).

    The folded prior is flatter than the doubled one at the same κ. Both are π-periodic in θ and
    in ``loc``, so ``loc`` is stored wrapped to [0, π). κ = 0 is uniform. Densities use the
    exponentially scaled I₀ (``scipy.special.i0e``) so κ in the thousands does not overflow.
    Sampling is exact (Best & Fisher 1979) below κ = ``VON_MISES_NORMAL_KAPPA`` (1e5) and a
    wrapped normal above it, where the two cannot be told apart; any finite κ terminates.
    """

    CONVENTIONS = ("double", "folded")

    def __init__(self, loc: float, kappa: float, convention: str = "double") -> None:
        loc = check.real("loc", loc)
        kappa = check.real("kappa", kappa, minimum=0.0)
        convention = check.choice("convention", convention, self.CONVENTIONS)
        self.loc = float(ang.wrap(loc))
        self.kappa = kappa
        self.convention = convention

    @property
    def mode(self) -> float:
        """The most probable orientation, ``loc`` wrapped to [0, π) (both conventions)."""
        return self.loc

    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        k = self.kappa
        scale = math.pi * float(i0e(k))  # π I₀(κ) e^{−κ}
        if self.convention == "double":
            with np.errstate(over="ignore"):  # κ(cos − 1) → −inf for κ near the float max
                return np.exp(k * (np.cos(2.0 * (theta - self.loc)) - 1.0)) / scale
        c = np.abs(np.cos(theta - self.loc))
        # cosh(κc) e^{−κ} = (e^{κ(c−1)} + e^{−κ(c+1)}) / 2; κ(c − 1) may overflow to −inf → 0
        with np.errstate(over="ignore"):
            return 0.5 * (np.exp(k * (c - 1.0)) + np.exp(-k * (c + 1.0))) / scale

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        x = von_mises_full_circle(n, self.kappa, generator)
        if self.convention == "double":
            x = 0.5 * x  # 2(θ − loc) ~ vM(0, κ)
        return torch.remainder(x + self.loc, PI)

    def to_config(self) -> dict:
        return {
            "kind": "von_mises",
            "loc": self.loc,
            "kappa": self.kappa,
            "convention": self.convention,
        }

    def __repr__(self) -> str:
        return f"VonMises(loc={self.loc!r}, kappa={self.kappa!r}, convention={self.convention!r})"
