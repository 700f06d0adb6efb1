"""A prior given by its density on a grid: periodic piecewise-linear, sampled by exact inverse
CDF."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import validation as check
from ._base import PI, AnglePrior, rand64, theta_array


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
        if isinstance(density, str | bytes):
            raise check.fail("density", "a 1-D array of K >= 2 values >= 0", density)
        raw = np.array(check.finite_array("density", density, ndim=1))
        if raw.shape[0] < 2 or (raw < 0).any() or not (raw > 0).any():
            raise check.fail("density", "a 1-D array of K >= 2 values >= 0, not all 0", density)
        k = raw.shape[0]
        h = PI / k
        try:
            total = h * math.fsum(raw)
        except OverflowError:
            total = math.inf
        if math.isfinite(total):
            density = raw / total
        else:  # values near the float maximum: only their ratios matter
            top = raw.max()
            density = (raw / top) / (h * math.fsum(raw / top))
        self._raw = raw
        self.h = h
        self.density = density
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
        n = check.integer("n", n, minimum=2)
        check.function("f", f)
        theta = np.arange(n) * (PI / n)
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
        """F(θ) = ∫₀^θ p for θ ∈ [0, π] (clipped outside), exact for the interpolant; NaN,
        ±inf and non-numbers raise ValueError naming ``theta``."""
        x = np.clip(theta_array(theta), 0.0, PI)
        d = self.density
        k, frac = self._cell(x)
        a, b = d[k], d[(k + 1) % d.shape[0]]
        s = frac * self.h
        out = self._cdf_nodes[k] + a * s + (b - a) * s * s / (2.0 * self.h)
        return np.where(x >= PI, 1.0, out)

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        u = rand64(n, generator)
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
"""Name used in the design notes (docs/design.rst) for the gridded (tabulated) prior."""
