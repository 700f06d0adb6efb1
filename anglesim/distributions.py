"""Priors over grating orientation on the half-circle [0, π), period π.

Every prior has a density ``pdf(θ)`` with respect to dθ that integrates to 1 over [0, π)
(θ is wrapped mod π first), an exact sampler ``sample(n, generator)`` that draws only from the
``torch.Generator`` it is given, and a JSON-able ``to_config()`` that ``prior_from_config``
turns back into an equal prior.

Classes:

* ``Uniform(low, high)`` — flat on a sub-range [low, high) ⊆ [0, π].
* ``VonMises(loc, kappa, convention)`` — concentrated around ``loc``; two conventions
  (von Mises on the doubled angle, or a full-circle von Mises folded onto [0, π)).
* ``Mixture(components, weights)`` — a weighted sum of priors.
* ``Gridded(density)`` (alias ``Empirical``) — a periodic piecewise-linear density given by
  its values on a regular grid; sampled by exact inverse CDF.

Sampling is done in float64 on the generator's device and only the result is cast to float32,
kept strictly below the upper end of the support (π, or ``high`` for ``Uniform``), because
float32(π) > π.
"""

from __future__ import annotations

import abc
import json
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import i0e

from . import angles as ang
from . import validation as check
from .validation import real as _real

PI = ang.PERIOD

__all__ = [
    "AnglePrior",
    "Empirical",
    "Gridded",
    "Mixture",
    "Uniform",
    "VonMises",
    "as_prior",
    "prior_from_config",
]


# --------------------------------------------------------------------------------------------
# validation and random-number helpers
# --------------------------------------------------------------------------------------------


def _count(n: Any) -> int:
    """A sample count: a non-negative int (numpy integers accepted, bools refused)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


def _generator(generator: Any) -> torch.Generator | None:
    """``generator`` if it is None or a ``torch.Generator``, else a ValueError naming it."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise check.fail("generator", "None or a torch.Generator", generator)
    return generator


def _device(device: Any) -> Any:
    """``device`` if torch can parse it (None, a torch.device, "cpu", "cuda:0", …)."""
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, str | int) or isinstance(device, bool):
        raise check.fail("device", "None, a torch.device or a device string", device)
    try:
        return torch.device(device)
    except RuntimeError:
        raise check.fail("device", "a torch device such as 'cpu' or 'cuda:0'", device) from None


def _angles(theta: Any) -> np.ndarray:
    """Angles as a float64 numpy array, every entry finite (ValueError naming ``theta``)."""
    if theta is None or isinstance(theta, str | bytes):
        raise check.fail("theta", "angles in radians (numbers)", theta)
    try:
        arr = np.asarray(theta, dtype=np.float64)
    except (TypeError, ValueError):
        raise check.fail("theta", "angles in radians (numbers)", theta) from None
    if not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        raise ValueError(f"theta must be finite, got {float(arr[bad].ravel()[0])!r} "
                         f"({int(bad.sum())} of {arr.size} values non-finite)")
    return arr


def _rand64(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n uniform draws on [0, 1) in float64, on the generator's device (CPU for the default)."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, dtype=torch.float64, generator=generator, device=dev)


def _f32_inside(lo: float, hi: float) -> tuple[float, float]:
    """The smallest float32 >= lo and the largest float32 < hi."""
    lo32 = np.float32(lo)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    hi32 = np.float32(hi)
    if float(hi32) >= hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return float(lo32), float(hi32)


def _to_float32(x: torch.Tensor, lo: float, hi: float, device: Any) -> torch.Tensor:
    """Cast float64 samples in [lo, hi) to float32 that stay in [lo, hi), then move them."""
    lo32, hi32 = _f32_inside(lo, hi)
    out = x.to(torch.float32).clamp(lo32, hi32)
    return out.to("cpu" if device is None else device)


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------


class AnglePrior(abc.ABC):
    """A probability density over orientation θ ∈ [0, π) with period π.

    Subclasses implement ``_pdf`` (numpy float64, θ already wrapped to [0, π)),
    ``_sample64`` (float64 torch samples on the generator's device) and ``to_config``.
    """

    #: support of the samples, [low, high) ⊆ [0, π]; subclasses with a smaller one override
    _support: tuple[float, float] = (0.0, PI)

    @abc.abstractmethod
    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        """Density at θ ∈ [0, π) (float64 numpy in, float64 numpy out, same shape)."""

    @abc.abstractmethod
    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n >= 1 exact draws, float64, on the generator's device (CPU for None)."""

    @abc.abstractmethod
    def to_config(self) -> dict:
        """A JSON-serialisable dict with a ``"kind"`` key; ``prior_from_config`` inverts it."""

    def pdf(self, theta: Any) -> Any:
        """Density p(θ) w.r.t. dθ on [0, π), ∫₀^π p(θ) dθ = 1; θ is wrapped mod π first.

        A float or numpy array gives numpy float64 (a 0-d ``np.float64`` for a scalar); a torch
        tensor gives a tensor of the same shape, floating dtype and device. The tensor result is
        computed in float64 numpy and carries no autograd graph. NaN, ±inf and non-numbers
        raise ValueError naming ``theta`` (a density at an undefined angle has no value).
        """
        if isinstance(theta, torch.Tensor):
            x = ang.wrap(_angles(theta.detach().to("cpu", torch.float64).numpy()))
            out = self._pdf(np.asarray(x, dtype=np.float64))
            dtype = theta.dtype if theta.is_floating_point() else torch.get_default_dtype()
            return torch.as_tensor(out, dtype=torch.float64).to(device=theta.device, dtype=dtype)
        x = np.asarray(ang.wrap(_angles(theta)), dtype=np.float64)
        out = np.asarray(self._pdf(x), dtype=np.float64)
        return out[()] if out.ndim == 0 else out

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: Any = None
    ) -> torch.Tensor:
        """Draw n orientations: float32 tensor [n] in [0, π) (in [low, high) for ``Uniform``).

        All randomness comes from ``generator`` (torch's default CPU generator when None); the
        draws are made on the generator's device and the result is moved to ``device``
        (CPU when None), so a seeded generator gives the same angles on every device.
        A ``generator`` that is not a ``torch.Generator`` or a ``device`` torch cannot parse
        raises ValueError naming it.
        """
        n = _count(n)
        generator = _generator(generator)
        device = _device(device)
        lo, hi = self._support
        if n == 0:
            return torch.empty(0, dtype=torch.float32, device="cpu" if device is None else device)
        return _to_float32(self._sample64(n, generator), lo, hi, device)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnglePrior):
            return NotImplemented
        return self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_config(), sort_keys=True))


# --------------------------------------------------------------------------------------------
# Uniform
# --------------------------------------------------------------------------------------------


class Uniform(AnglePrior):
    """Flat prior on [low, high) ⊆ [0, π]: p(θ) = 1 / (high − low) there, 0 elsewhere."""

    def __init__(self, low: float = 0.0, high: float = PI) -> None:
        low = _real("low", low)
        high = _real("high", high)
        if not 0.0 <= low < PI:
            raise ValueError(f"low must satisfy 0 <= low < pi, got {low!r}")
        if not low < high <= PI:
            raise ValueError(f"high must satisfy low < high <= pi (low={low!r}), got {high!r}")
        self.low = low
        self.high = high
        self._support = (low, high)

    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        inside = (theta >= self.low) & (theta < self.high)
        return np.where(inside, 1.0 / (self.high - self.low), 0.0)

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.low + (self.high - self.low) * _rand64(n, generator)

    def to_config(self) -> dict:
        return {"kind": "uniform", "low": self.low, "high": self.high}

    def __repr__(self) -> str:
        return f"Uniform(low={self.low!r}, high={self.high!r})"


# --------------------------------------------------------------------------------------------
# von Mises
# --------------------------------------------------------------------------------------------


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


def _von_mises_full_circle(
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
        return (2.0 * _rand64(n, generator) - 1.0) * math.pi
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
        u = _rand64(3 * m, generator).reshape(3, m)
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
    folded onto [0, π) (the convention of the reference research, which drew x and kept x mod π):

        p(θ) = vm(θ) + vm(θ + π) = cosh(κ cos(θ − loc)) / (π I₀(κ)).

    The folded prior is flatter than the doubled one at the same κ. Both are π-periodic in θ and
    in ``loc``, so ``loc`` is stored wrapped to [0, π). κ = 0 is uniform. Densities use the
    exponentially scaled I₀ (``scipy.special.i0e``) so κ in the thousands does not overflow.
    Sampling is exact (Best & Fisher 1979) below κ = ``VON_MISES_NORMAL_KAPPA`` (1e5) and a
    wrapped normal above it, where the two cannot be told apart; any finite κ terminates.
    """

    CONVENTIONS = ("double", "folded")

    def __init__(self, loc: float, kappa: float, convention: str = "double") -> None:
        loc = _real("loc", loc)
        kappa = _real("kappa", kappa)
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa!r}")
        if not isinstance(convention, str) or convention not in self.CONVENTIONS:
            raise ValueError(
                f"convention must be one of {self.CONVENTIONS}, got {convention!r}"
            )
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
        x = _von_mises_full_circle(n, self.kappa, generator)
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


# --------------------------------------------------------------------------------------------
# Mixture
# --------------------------------------------------------------------------------------------


class Mixture(AnglePrior):
    """Weighted mixture p(θ) = Σᵢ wᵢ pᵢ(θ), weights normalised to sum to 1 (default equal).

    Sampling draws each component label from the weights, then the draws of every component
    in one vectorised call per component.
    """

    def __init__(
        self, components: Sequence[AnglePrior], weights: Sequence[float] | None = None
    ) -> None:
        components = list(components)
        if not components:
            raise ValueError(f"components must be a non-empty sequence, got {components!r}")
        for i, c in enumerate(components):
            if not isinstance(c, AnglePrior):
                raise ValueError(f"components[{i}] must be an AnglePrior, got {c!r}")
        if weights is None:
            w = [1.0] * len(components)
        else:
            w = [_real(f"weights[{i}]", x) for i, x in enumerate(weights)]
            if len(w) != len(components):
                raise ValueError(
                    f"weights must have one entry per component ({len(components)}), "
                    f"got {list(weights)!r}"
                )
            bad = [x for x in w if x < 0]
            if bad:
                raise ValueError(f"weights must be >= 0, got {list(weights)!r}")
            if sum(w) <= 0:
                raise ValueError(f"weights must have a positive sum, got {list(weights)!r}")
        total = math.fsum(w)
        self.components = tuple(components)
        self.weights = tuple(x / total for x in w)

    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        out = np.zeros_like(theta)
        for w, c in zip(self.weights, self.components, strict=True):
            out = out + w * c._pdf(theta)
        return out

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        u = _rand64(n, generator)
        edges = torch.tensor(np.cumsum(self.weights)[:-1], dtype=torch.float64, device=u.device)
        label = torch.searchsorted(edges, u, right=True)
        out = torch.empty(n, dtype=torch.float64, device=u.device)
        for i, c in enumerate(self.components):
            where = label == i
            m = int(where.sum())
            if m:
                out[where] = c._sample64(m, generator).to(u.device)
        return out

    def to_config(self) -> dict:
        return {
            "kind": "mixture",
            "components": [c.to_config() for c in self.components],
            "weights": list(self.weights),
        }

    def __repr__(self) -> str:
        return f"Mixture(components={list(self.components)!r}, weights={list(self.weights)!r})"


# --------------------------------------------------------------------------------------------
# Gridded (piecewise-linear) density
# --------------------------------------------------------------------------------------------


class Gridded(AnglePrior):
    """Periodic piecewise-linear density through K values on the grid θ_k = kπ/K, k = 0…K−1.

    Between θ_k and θ_{k+1} (with θ_K = π and value d_K = d_0) the density is linear, so its
    integral is the periodic trapezoid sum h Σ_k d_k with h = π/K; the values are divided by it,
    so the interpolant integrates to exactly 1 over [0, π).

    The CDF is piecewise quadratic: in cell k, with a = d_k, b = d_{k+1}, s ∈ [0, h],
    F = C_k + a s + (b − a) s² / (2h). Sampling inverts it exactly: u ~ U(0, 1), k from the
    node CDF values C_k, and with residual q = u − C_k the root
    s = 2q / (a + √(a² + 2(b − a) q / h)), the cancellation-free form of the quadratic formula.

    ``to_config`` stores the values as given (before normalisation) so a config round trip is
    exact. ``Empirical`` is an alias.
    """

    def __init__(self, density: Any) -> None:
        try:
            raw = np.array(density, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"density must be a 1-D array of numbers, got {density!r}") from None
        if raw.ndim != 1 or raw.shape[0] < 2:
            raise ValueError(f"density must be 1-D with K >= 2 values, got shape {raw.shape}")
        if not np.all(np.isfinite(raw)):
            raise ValueError(f"density must be finite, got {density!r}")
        if np.any(raw < 0):
            raise ValueError(f"density must be >= 0, got min {raw.min()!r}")
        k = raw.shape[0]
        h = PI / k
        total = h * math.fsum(raw)
        if total <= 0:
            raise ValueError(f"density must have a positive integral, got {density!r}")
        self._raw = raw
        self.h = h
        self.density = raw / total
        self.density.setflags(write=False)
        d = self.density
        cell = 0.5 * h * (d + np.roll(d, -1))  # mass of each cell [θ_k, θ_{k+1})
        self._cdf_nodes = np.concatenate([[0.0], np.cumsum(cell)])
        self._cdf_nodes[-1] = 1.0

    @property
    def grid(self) -> np.ndarray:
        """The nodes θ_k = kπ/K."""
        return np.arange(self.density.shape[0]) * self.h

    @classmethod
    def from_function(cls, f: Callable[[np.ndarray], Any], n: int = 256) -> Gridded:
        """Tabulate a non-negative function on θ_k = kπ/n (float64 numpy in) and normalise."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
            raise ValueError(f"n must be an int >= 2, got {n!r}")
        theta = np.arange(int(n)) * (PI / int(n))
        values = np.broadcast_to(np.asarray(f(theta), dtype=np.float64), theta.shape)
        return cls(values.copy())

    def _cell(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k_count = self.density.shape[0]
        t = theta / self.h
        k = np.clip(np.floor(t).astype(np.int64), 0, k_count - 1)
        return k, np.clip(t - k, 0.0, 1.0)

    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        d = self.density
        k, frac = self._cell(theta)
        return d[k] * (1.0 - frac) + d[(k + 1) % d.shape[0]] * frac

    def cdf(self, theta: Any) -> np.ndarray:
        """F(θ) = ∫₀^θ p for θ ∈ [0, π] (clipped outside), exact for the interpolant."""
        x = np.clip(np.asarray(theta, dtype=np.float64), 0.0, PI)
        d = self.density
        k, frac = self._cell(x)
        a, b = d[k], d[(k + 1) % d.shape[0]]
        s = frac * self.h
        out = self._cdf_nodes[k] + a * s + (b - a) * s * s / (2.0 * self.h)
        return np.where(x >= PI, 1.0, out)

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        u = _rand64(n, generator)
        dev = u.device
        d = torch.tensor(self.density, dtype=torch.float64, device=dev)
        nodes = torch.tensor(self._cdf_nodes, dtype=torch.float64, device=dev)
        k_count = d.shape[0]
        k = (torch.searchsorted(nodes, u, right=True) - 1).clamp(0, k_count - 1)
        a = d[k]
        b = d[(k + 1) % k_count]
        q = (u - nodes[k]).clamp_min(0.0)
        disc = (a * a + 2.0 * (b - a) * q / self.h).clamp_min(0.0)
        denom = a + torch.sqrt(disc)
        s = torch.where(denom > 0, 2.0 * q / torch.where(denom > 0, denom, 1.0), 0.0)
        s = s.clamp(0.0, self.h)
        return torch.remainder(k * self.h + s, PI)

    def to_config(self) -> dict:
        return {"kind": "gridded", "density": self._raw.tolist()}

    def __repr__(self) -> str:
        peak = float(self.grid[self.density.argmax()])
        return f"Gridded(<{self.density.shape[0]} values, peak at {peak:.4g}>)"


Empirical = Gridded
"""Name used in DESIGN.md for the gridded (tabulated) prior."""


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------


def as_prior(value: Any, name: str = "prior") -> AnglePrior:
    """``value`` as a prior: an ``AnglePrior`` as is, a ``to_config()`` dict rebuilt by
    :func:`prior_from_config`; anything else (a string such as ``"uniform"``, None, a number)
    raises a one-line ValueError naming ``name`` and the value. For constructors that take a
    prior (``Phase``, ``draw``, …) to validate it on entry."""
    if isinstance(value, AnglePrior):
        return value
    if isinstance(value, dict):
        return prior_from_config(value)
    raise check.fail(name, "an AnglePrior (Uniform(), VonMises(loc, kappa), …) or a prior "
                     "config dict", value)


def prior_from_config(cfg: dict) -> AnglePrior:
    """Rebuild a prior from ``to_config()`` output (kinds: uniform, von_mises, mixture,
    gridded / empirical). An unknown kind or a malformed config raises ValueError."""
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ValueError(f"cfg must be a dict with a 'kind' key, got {cfg!r}")
    kind = cfg["kind"]
    args = {k: v for k, v in cfg.items() if k != "kind"}
    try:
        if kind == "uniform":
            return Uniform(**args)
        if kind == "von_mises":
            return VonMises(**args)
        if kind == "mixture":
            comps = [prior_from_config(c) for c in args.pop("components")]
            return Mixture(comps, **args)
        if kind in ("gridded", "empirical"):
            return Gridded(**args)
    except (TypeError, KeyError) as err:
        raise ValueError(f"malformed {kind!r} prior config {cfg!r}: {err}") from None
    raise ValueError(f"unknown prior kind {kind!r}")
