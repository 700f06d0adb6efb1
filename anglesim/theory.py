"""Efficient-coding predictions: Fisher information as a power of the prior density.

Two optimal-coding results give J(θ) ∝ p(θ)^α for a prior p on [0, π):

* **Lp error under a total-sensitivity budget** (Wang, Stocker & Lee 2016, Neural Comput 28(2):
  305–326): minimising the expected Lp error E|θ̂ − θ|^p of an efficient decoder subject to
  ∫√J dθ = const gives √J ∝ p^{1/(p+1)}, so α = 2/(p + 1) — α = 2/3 for squared error, and
  α → 2 (J ∝ p², the infomax / Fisher-information-matching solution) as p → 0.
* **Fixed cell count and spike budget** (Ganguli & Simoncelli 2014, Neural Comput 26(10):
  2103–2134): a population with a fixed number of neurons and mean rate, optimised for the cost
  E[J^{−β}] (β > 0; β = 1 is the Cramér–Rao bound on the squared error), allocates
  J ∝ p^{2/(1 + 3β)}; with β → 0 (the log cost, infomax) α → 2.

`loss_exponent` maps anglesim's registered losses to the first result where it applies;
`predicted_fisher` scales c·p^α to a measured curve's total √J (the quantity both results hold
fixed); `fit_exponent` fits α in log J = α log p + c with a confidence interval, so a study can
say which loss its network behaved like.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from .validation import real

__all__ = [
    "ExponentFit",
    "budget_scale",
    "fit_exponent",
    "fit_exponents",
    "ganguli_simoncelli_exponent",
    "loss_exponent",
    "lp_exponent",
    "predicted_fisher",
    "sqrt_total",
]


def lp_exponent(p: float) -> float:
    """α = 2/(p + 1) for the expected Lp error under ∫√J dθ = const (Wang et al. 2016)."""
    p = real("p", p)
    if p < 0:
        raise ValueError(f"p must be >= 0, got {p!r}")
    return 2.0 / (p + 1.0)


def ganguli_simoncelli_exponent(beta: float) -> float:
    """α = 2/(1 + 3β) for cost E[J^{−β}] with fixed cells and spikes (Ganguli & Simoncelli 2014)."""
    beta = real("beta", beta)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    return 2.0 / (1.0 + 3.0 * beta)


# loss name -> (Lp power the loss behaves like near the optimum, why)
_LOSS_POWERS: dict[str, tuple[float | None, str]] = {
    "wrapped_mse": (2.0, "squared wrapped error: p = 2"),
    "mse": (2.0, "squared error: p = 2"),
    "cosine": (2.0, "1 − cos 2Δ ≈ 2Δ² for small errors: p = 2"),
    "vector_mse": (2.0, "‖v − (cos 2θ, sin 2θ)‖² ≈ 4Δ² for a unit-norm output: p = 2"),
    "vonmises_nll": (0.0, "a negative log-likelihood: the infomax limit p → 0"),
    "cross_entropy": (0.0, "a negative log-likelihood over bins: the infomax limit p → 0"),
}


def loss_exponent(loss: str, params: Mapping[str, Any] | None = None) -> tuple[float, str]:
    """The predicted α of J ∝ p^α for an anglesim loss, and the approximation it rests on.

    ``lp`` takes its ``p`` from ``params``. Raises ValueError for a loss with no prediction.
    """
    params = dict(params or {})
    if loss == "lp":
        p = real("p", params.get("p", 2.0))
        return lp_exponent(p), f"Lp error with p = {p:g}"
    if loss not in _LOSS_POWERS:
        raise ValueError(
            f"loss {loss!r} has no efficient-coding prediction; known: "
            f"{sorted([*_LOSS_POWERS, 'lp'])}"
        )
    p, why = _LOSS_POWERS[loss]
    return lp_exponent(p), why


def _periodic_integral(values: np.ndarray, angles: np.ndarray, axis: int = -1) -> np.ndarray:
    """∫ over [0, π) of samples on a sorted grid, trapezoid closed across the wrap."""
    order = np.argsort(angles)
    a = angles[order]
    v = np.take(values, order, axis=axis)
    widths = np.diff(np.append(a, a[0] + math.pi))  # each point to the next, wrapping at π
    nxt = np.roll(v, -1, axis=axis)
    shape = [1] * v.ndim
    shape[axis] = -1
    return np.sum(0.5 * (v + nxt) * widths.reshape(shape), axis=axis)


def sqrt_total(fisher: xr.DataArray) -> xr.DataArray:
    """The resource ∫√J dθ over [0, π) of FI curves (dim ``angle``; periodic trapezoid)."""
    if "angle" not in fisher.dims:
        raise ValueError(f"fisher must have an 'angle' dim, got dims {fisher.dims}")
    return xr.apply_ufunc(_periodic_integral, np.sqrt(fisher),
                          kwargs={"angles": fisher["angle"].values},
                          input_core_dims=[["angle"]])


def predicted_fisher(
    density: xr.DataArray,
    exponent: float,
    normalise_to: xr.DataArray | None = None,
    source: str = "",
) -> xr.DataArray:
    """The predicted curve J = c·p^α over ``angle``.

    ``density`` holds p(θ) on an angle grid (dim ``angle``). With ``normalise_to`` (a measured
    FI curve on the same grid, other dims broadcast) c is chosen so that ∫√J dθ equals the
    measured curve's — the resource both optimal-coding results hold fixed; otherwise c = 1.
    """
    exponent = real("exponent", exponent)
    if "angle" not in density.dims:
        raise ValueError(f"density must have an 'angle' dim, got dims {density.dims}")
    if (density < 0).any():
        raise ValueError("density must be >= 0 everywhere")
    curve = density**exponent
    if normalise_to is not None:
        curve = curve * (sqrt_total(normalise_to) / sqrt_total(curve)) ** 2
    curve.name = "fisher_predicted"
    curve.attrs = {"units": "rad^-2", "exponent": exponent, "source": source,
                   "long_name": "efficient-coding prediction J = c p^alpha"}
    return curve


@dataclass(frozen=True)
class ExponentFit:
    """Least-squares fit of log J = α log p + c."""

    alpha: float
    ci_low: float
    ci_high: float
    intercept: float
    r2: float
    n: int


def fit_exponent(fisher: Any, density: Any, level: float = 0.95) -> ExponentFit:
    """Fit α in log J = α log p + c by least squares, with a t confidence interval for α.

    Points where J or p is not positive and finite are left out. The interval is the usual
    regression interval α ± t_{n−2} · s.e.(α); it treats the angles as independent, which FI
    curves (smooth in θ) are not quite, so compare replicates' α (a replicate dim, mean and its
    t interval over replicates) for a study's claims.
    """
    j = np.asarray(fisher, dtype=float).ravel()
    p = np.asarray(density, dtype=float).ravel()
    if j.shape != p.shape:
        raise ValueError(f"fisher and density must have the same size, got {j.size} and {p.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    ok = np.isfinite(j) & np.isfinite(p) & (j > 0) & (p > 0)
    n = int(ok.sum())
    if n < 3:
        raise ValueError(f"need at least 3 points with J > 0 and p > 0, got {n}")
    x, y = np.log(p[ok]), np.log(j[ok])
    if np.ptp(x) == 0:
        raise ValueError("density is constant on the grid: the exponent is not identifiable")
    res = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + level / 2, n - 2) * res.stderr if n > 2 else math.inf
    return ExponentFit(alpha=float(res.slope), ci_low=float(res.slope - half),
                       ci_high=float(res.slope + half), intercept=float(res.intercept),
                       r2=float(res.rvalue**2), n=n)


def fit_exponents(fisher: xr.DataArray, density: xr.DataArray) -> xr.Dataset:
    """:func:`fit_exponent` along ``angle`` for every other index.

    Returns a Dataset with ``alpha``, ``intercept`` (c in log J = α log p + c, natural logs)
    and ``r2``; cells where the fit is impossible (fewer than 3 usable points) get NaN.
    """

    def _one(j, p):
        try:
            f = fit_exponent(j, p)
        except ValueError:
            return np.nan, np.nan, np.nan
        return f.alpha, f.intercept, f.r2

    alpha, intercept, r2 = xr.apply_ufunc(
        _one, fisher, density, input_core_dims=[["angle"], ["angle"]],
        output_core_dims=[[], [], []], vectorize=True)
    alpha.attrs = {"long_name": "fitted exponent alpha of J ∝ p^alpha"}
    intercept.attrs = {"long_name": "fitted c in ln J = alpha ln p + c"}
    r2.attrs = {"long_name": "r² of log J against log p"}
    return xr.Dataset({"alpha": alpha, "intercept": intercept, "r2": r2})


def budget_scale(density: xr.DataArray, exponent: float) -> xr.DataArray:
    """The scale c of J = c·p^α when the total ∫√J dθ is held at 1: c = (∫p^{α/2} dθ)^{−2}.

    Under a fixed global budget, J at a given density level changes with the density
    elsewhere through c; comparing c between priors (e.g. c_κ/c_κ′) gives the change a
    fixed-budget efficient code predicts, against which a local code (J a function of p(θ)
    alone, c unchanged) can be tested.
    """
    exponent = real("exponent", exponent)
    return sqrt_total(density**exponent) ** -2.0
