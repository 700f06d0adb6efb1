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
say which loss its network behaved like — for FI estimated from samples through a
quasi-likelihood fit with the estimator's error model (`sampled_error_model`), whose interval
covers where the log-scale least-squares one did not.

Testing trained networks against these predictions follows Benjamin et al. 2022 (Nat Commun
13:7972), who measured FI across orientation in trained networks and related its cardinal
bias to the statistics of natural images; anglesim sets the prior itself and fits α.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from . import validation as check
from .validation import real

__all__ = [
    "EXPONENT_METHODS",
    "ExponentFit",
    "budget_scale",
    "fit_exponent",
    "fit_exponents",
    "ganguli_simoncelli_exponent",
    "loss_exponent",
    "lp_exponent",
    "predicted_fisher",
    "sampled_error_model",
    "sqrt_total",
]


def lp_exponent(p: float) -> float:
    """α = 2/(p + 1) for the expected Lp error under ∫√J dθ = const (Wang et al. 2016)."""
    p = real("p", p, minimum=0.0)
    return 2.0 / (p + 1.0)


def ganguli_simoncelli_exponent(beta: float) -> float:
    """α = 2/(1 + 3β) for cost E[J^{−β}] with fixed cells and spikes (Ganguli & Simoncelli 2014)."""
    beta = real("beta", beta, minimum=0.0)
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
    check.choice("loss", loss, sorted([*_LOSS_POWERS, "lp"]))
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


def angle_curve(name: str, value: Any) -> xr.DataArray:
    """``value`` if it is a DataArray with an ``angle`` dim."""
    if not isinstance(value, xr.DataArray) or "angle" not in value.dims:
        raise check.fail(name, "a DataArray with an 'angle' dim",
                         value if not isinstance(value, xr.DataArray) else
                         f"a DataArray with dims {value.dims}")
    return value


def sqrt_total(fisher: xr.DataArray) -> xr.DataArray:
    """The resource ∫√J dθ over [0, π) of FI curves (dim ``angle``; periodic trapezoid)."""
    angle_curve("fisher", fisher)
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
    angle_curve("density", density)
    if (density < 0).any():
        raise check.fail("density", ">= 0 everywhere", f"min {float(density.min()):g}")
    if normalise_to is not None:
        angle_curve("normalise_to", normalise_to)
    curve = density**exponent
    if normalise_to is not None:
        curve = curve * (sqrt_total(normalise_to) / sqrt_total(curve)) ** 2
    curve.name = "fisher_predicted"
    curve.attrs = {"units": "rad^-2", "exponent": exponent, "source": source,
                   "long_name": "efficient-coding prediction J = c p^alpha"}
    return curve


EXPONENT_METHODS = ("auto", "ols", "robust", "quasi")


@dataclass(frozen=True)
class ExponentFit:
    """A fit of J = e^c p^α: α with its ``level`` interval, c, r², points used, and how.

    ``r2`` is that of least squares of log J on log p (points with J > 0) for every method;
    ``stderr`` is the standard error the interval was built from.
    """

    alpha: float
    ci_low: float
    ci_high: float
    intercept: float
    r2: float
    n: int
    method: str = "ols"
    stderr: float = math.nan


def sampled_error_model(n_trials: int, n_units: int, dtheta: float) -> Callable[[Any], Any]:
    """Var(Ĵ) as a function of the true J for the bias-corrected linear FI estimator.

    The error model of `fit_exponent` for curves from ``sampled_fisher(estimator=
    "bias_corrected")`` with T = ``n_trials`` trials per side, N = ``n_units`` varying units
    and step Δθ: `anglesim.fisher.linear_fisher_variance` (Kanitscheider et al. 2015),
    2(J² + 2aJ(2T − 3) + a²N(2T − 3))/(2T − N − 5) with a = 2/(TΔθ²).
    """
    from .fisher import linear_fisher_variance

    n_trials = check.integer("n_trials", n_trials, minimum=2)
    n_units = check.integer("n_units", n_units, minimum=1)
    if 2 * n_trials - n_units - 5 <= 0:
        raise check.fail("n_trials", f"> (n_units + 5)/2 = {(n_units + 5) / 2:g} for a finite "
                         "variance", n_trials)
    linear_fisher_variance(1.0, n_trials, n_units, dtheta)  # checks dtheta now

    def variance(j: Any) -> Any:
        return linear_fisher_variance(np.maximum(j, 0.0), n_trials, n_units, dtheta)

    return variance


def fit_exponent(
    fisher: Any,
    density: Any,
    level: float = 0.95,
    *,
    error_model: Callable[[Any], Any] | None = None,
    method: str = "auto",
) -> ExponentFit:
    """Fit α in J = e^c p^α over an angle grid, with a ``level`` confidence interval for α.

    ``method`` ("auto": "quasi" when an ``error_model`` is given, else "ols" as before):

    * "quasi" — for FI **estimated from samples**. A quasi-likelihood fit (Wedderburn 1974,
      Biometrika 61: 439; McCullagh & Nelder 1989, Generalized Linear Models, ch. 9) of the
      estimates Ĵ_i themselves, not their logs: E[Ĵ_i] = μ_i = exp(c + α ln p_i), Var Ĵ_i =
      V(μ_i) with V = ``error_model`` (e.g. `sampled_error_model`), by Fisher scoring
      (iteratively reweighted least squares, weights μ²/V(μ), working response
      η + (Ĵ − μ)/μ). Every finite estimate is used, zero and negative bias-corrected ones
      too, so nothing is dropped where J is small against the estimator's noise and there is
      no log bias. SE(α) from the inverse Fisher information, scaled by
      φ = max(1, Pearson χ²/(n − 2)) (misfit or extra noise only widen it); α ± t_{n−2}·SE.
      Coverage by simulation (FI drawn from the bias-corrected estimator's distribution,
      64 angles, 1500 repetitions): 95.7–96.8% for planted α = 2 and 2/3, where the log-scale
      OLS interval covered 0.5–91% and its point estimate was biased for α = 2.
    * "robust" — least squares of ln J on ln p (points with J > 0 and p > 0) with the
      heteroscedasticity-consistent HC3 standard error (MacKinnon & White 1985, J Econom 29:
      305) and t_{n−2}: for independent errors whose size varies over angles (93–94% for
      α = 2/3 from samples), but a log fit of noisy estimates is biased where Ĵ's relative
      error is large (α̂ = 1.38 for a planted 2 at T = 200, N = 20): use "quasi" there.
    * "ols" — the same fit with the classical SE (homoscedastic, independent errors): 0.5%,
      70% coverage for α = 2 from samples, 90–91% for α = 2/3. Neither log fit suits smoothed
      curves, whose residuals are correlated over angles.

    The angles are treated as independent, true of sampled FI at separate angles, not of
    smoothed curves. A study's claim about networks should rest on the replicates: fit each
    replicate (`fit_exponents`) and take the t interval of α over them
    (:func:`anglesim.stats.interval`), which also carries network-to-network variation.
    """
    method = check.choice("method", method, EXPONENT_METHODS)
    level = real("level", level, minimum=0, maximum=1, min_open=True, max_open=True)
    j = np.asarray(fisher, dtype=float).ravel()
    p = np.asarray(density, dtype=float).ravel()
    if j.shape != p.shape:
        raise ValueError(f"fisher and density must have the same size, got {j.size} and {p.size}")
    if method == "auto":
        method = "ols" if error_model is None else "quasi"
    if method == "quasi" and error_model is None:
        raise check.fail("error_model", "a callable J -> Var(J_hat) for method='quasi'",
                         error_model)
    if error_model is not None and not callable(error_model):
        raise check.fail("error_model", "a callable J -> Var(J_hat)", error_model)
    positive = np.isfinite(j) & np.isfinite(p) & (j > 0) & (p > 0)
    if method == "quasi":
        ok = np.isfinite(j) & np.isfinite(p) & (p > 0)
    else:
        ok = positive
    n = int(ok.sum())
    if n < 3:
        raise ValueError(f"need at least 3 points with J > 0 and p > 0, got {n}")
    x = np.log(p[ok])
    if np.ptp(x) == 0:
        raise ValueError("density is constant on the grid: the exponent is not identifiable")
    r2 = _log_r2(np.log(p[positive]), np.log(j[positive]))
    if method == "quasi":
        coef, se = _quasi_power_fit(x, j[ok][None, :], error_model)
        if not np.isfinite(se[0]):
            raise ValueError("the quasi-likelihood exponent fit did not converge (check the "
                             "error model)")
        intercept, alpha, se = float(coef[0, 0]), float(coef[0, 1]), float(se[0])
    else:
        res = stats.linregress(x, np.log(j[ok]))
        alpha, intercept = float(res.slope), float(res.intercept)
        se = float(res.stderr) if method == "ols" else _hc3_slope_se(x, np.log(j[ok]))
    half = stats.t.ppf(0.5 + level / 2, n - 2) * se
    return ExponentFit(alpha=alpha, ci_low=alpha - half, ci_high=alpha + half,
                       intercept=intercept, r2=r2, n=n, method=method, stderr=se)


def _log_r2(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0:
        return math.nan
    return float(stats.linregress(x, y).rvalue ** 2)


def _masked_log_r2(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise r² of ln y on x over the entries in mask (NaN with fewer than 3)."""
    w = mask.astype(float)
    n = w.sum(1)
    ly = np.log(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w * x).sum(1) / n, (w * ly).sum(1) / n
        dx, dy = x - mx[:, None], ly - my[:, None]
        sxy, sxx, syy = (w * dx * dy).sum(1), (w * dx * dx).sum(1), (w * dy * dy).sum(1)
        r2 = sxy**2 / (sxx * syy)
    return np.where(n >= 3, r2, np.nan)


def _hc3_slope_se(x: np.ndarray, y: np.ndarray) -> float:
    """HC3 standard error of the least-squares slope: (XᵀX)⁻¹ Xᵀ diag(e²/(1 − h)²) X (XᵀX)⁻¹."""
    design = np.column_stack([np.ones_like(x), x])
    bread = np.linalg.inv(design.T @ design)
    resid = y - design @ (bread @ design.T @ y)
    lever = np.einsum("ij,jk,ik->i", design, bread, design)
    meat = design.T @ (design * (resid**2 / (1 - lever) ** 2)[:, None])
    return float(math.sqrt((bread @ meat @ bread)[1, 1]))


def _quasi_power_fit(
    x: np.ndarray, y: np.ndarray, variance: Callable[[Any], Any], max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Fisher scoring of E[y] = exp(b₀ + b₁x), Var y = variance(μ), for rows y [B, n] at once.

    Returns (coef [B, 2], SE of b₁ [B]) with the dispersion φ = max(1, χ²_Pearson/(n − 2)).
    Entries of y that are NaN are left out of their row. Starts from least squares of ln y on
    x over the positive entries; a row that does not converge within ``max_iter`` is NaN.
    """
    valid = np.isfinite(y)
    yv = np.where(valid, y, 0.0)
    pos = valid & (yv > 0)
    logy = np.log(np.where(pos, yv, 1.0))
    coef = _weighted_line(x, logy, pos.astype(float))[0]
    bad = ~np.isfinite(coef).all(1)
    if bad.any():  # fewer than 2 positive points: start flat at the mean
        mean = np.where(valid, yv, 0).sum(1) / np.maximum(valid.sum(1), 1)
        coef[bad] = np.column_stack([np.log(np.maximum(mean[bad], 1e-300)), 0 * mean[bad]])
    for _ in range(max_iter):
        eta = np.clip(coef[:, :1] + coef[:, 1:] * x, -700, 700)
        mu = np.exp(eta)
        var = np.asarray(variance(mu), dtype=float)
        w = np.where(valid, mu**2 / var, 0.0)
        z = eta + (yv - mu) / mu
        new, _ = _weighted_line(x, z, w)
        step = np.abs(new - coef).max(1)
        coef = new
        done = ~(step > 1e-10 * (1 + np.abs(coef).max(1)))  # NaN rows count as done
        if done.all():
            break
    mu = np.exp(np.clip(coef[:, :1] + coef[:, 1:] * x, -700, 700))
    var = np.asarray(variance(mu), dtype=float)
    w = np.where(valid, mu**2 / var, 0.0)
    _, inv11 = _weighted_line(x, np.zeros_like(yv), w)
    n = valid.sum(1)
    chi2 = np.where(valid, (yv - mu) ** 2 / var, 0.0).sum(1)
    phi = np.maximum(1.0, chi2 / np.maximum(n - 2, 1))
    se = np.sqrt(phi * inv11)
    coef[~done] = np.nan
    se[~done] = np.nan
    return coef, se


def _weighted_line(x: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise weighted least squares of z [B, n] on (1, x) with weights w [B, n]:
    (coef [B, 2], the (1, 1) entry of (XᵀWX)⁻¹ [B]); NaN where a row has no spread in x."""
    s0, s1, s2 = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
    t0, t1 = (w * z).sum(1), (w * x * z).sum(1)
    det = s0 * s2 - s1 * s1
    with np.errstate(invalid="ignore", divide="ignore"):
        b1 = (s0 * t1 - s1 * t0) / det
        b0 = (t0 - s1 * b1) / s0
        inv11 = s0 / det
    ok = det > 1e-12 * np.maximum(s0 * s2, 1e-300)
    return (np.where(ok[:, None], np.column_stack([b0, b1]), np.nan),
            np.where(ok, inv11, np.nan))


def fit_exponents(
    fisher: xr.DataArray,
    density: xr.DataArray,
    level: float = 0.95,
    *,
    error_model: Callable[[Any], Any] | None = None,
    method: str = "auto",
) -> xr.Dataset:
    """:func:`fit_exponent` along ``angle`` for every other index (e.g. each replicate).

    Returns a Dataset with ``alpha``, its interval ``alpha_low``/``alpha_high``,
    ``intercept`` (c in ln J = α ln p + c, natural logs) and ``r2``; cells where the fit is
    impossible (fewer than 3 usable points) get NaN. The exponent over replicates and its
    interval: ``anglesim.stats.interval(out["alpha"], "replicate")``.
    """

    def _one(j, p):
        try:
            f = fit_exponent(j, p, level, error_model=error_model, method=method)
        except ValueError:
            return np.nan, np.nan, np.nan, np.nan, np.nan
        return f.alpha, f.ci_low, f.ci_high, f.intercept, f.r2

    method = check.choice("method", method, EXPONENT_METHODS)
    level = real("level", level, minimum=0, maximum=1, min_open=True, max_open=True)
    core = dict(input_core_dims=[["angle"], ["angle"]], output_core_dims=[[], [], [], [], []])
    if method == "quasi" or (method == "auto" and error_model is not None):
        if not callable(error_model):
            raise check.fail("error_model", "a callable J -> Var(J_hat) for method='quasi'",
                             error_model)
        alpha, low, high, intercept, r2 = xr.apply_ufunc(
            lambda j, p: _quasi_rows(j, p, level, error_model), fisher, density, **core)
    else:
        alpha, low, high, intercept, r2 = xr.apply_ufunc(_one, fisher, density, **core,
                                                         vectorize=True)
    alpha.attrs = {"long_name": "fitted exponent alpha of J ∝ p^alpha"}
    low.attrs = {"long_name": f"lower end of the {level:.0%} interval of alpha (one fit)"}
    high.attrs = {"long_name": f"upper end of the {level:.0%} interval of alpha (one fit)"}
    intercept.attrs = {"long_name": "fitted c in ln J = alpha ln p + c"}
    r2.attrs = {"long_name": "r² of log J against log p"}
    return xr.Dataset({"alpha": alpha, "alpha_low": low, "alpha_high": high,
                       "intercept": intercept, "r2": r2})


def _quasi_rows(j: np.ndarray, p: np.ndarray, level: float, variance: Callable[[Any], Any]):
    """`fit_exponent(method="quasi")` for every row of j, p [..., angle] in one batch."""
    shape = np.broadcast_shapes(j.shape, p.shape)
    jj = np.broadcast_to(j, shape).reshape(-1, shape[-1]).astype(float)
    pp = np.broadcast_to(p, shape).reshape(-1, shape[-1]).astype(float)
    ok = np.isfinite(pp) & (pp > 0)  # NaN estimates are left out inside the fit
    out = np.full((5, jj.shape[0]), np.nan)
    # rows sharing one density grid (the usual case) are fitted together
    groups: dict[bytes, list[int]] = {}
    for i in range(jj.shape[0]):
        groups.setdefault(np.where(ok[i], pp[i], np.nan).tobytes(), []).append(i)
    for rows in groups.values():
        idx = np.array(rows)
        x_all = np.log(np.where(ok[idx[0]], pp[idx[0]], 1.0))
        use = ok[idx[0]]
        x, y = x_all[use], jj[idx][:, use]
        y = np.where(np.isfinite(y), y, np.nan)  # ±inf estimates count as missing too
        n = np.isfinite(y).sum(1)
        if x.size < 3 or np.ptp(x) == 0:
            continue
        coef, se = _quasi_power_fit(x, y, variance)
        half = stats.t.ppf(0.5 + level / 2, np.maximum(n - 2, 1)) * se
        fine = n >= 3
        out[0, idx] = np.where(fine, coef[:, 1], np.nan)
        out[1, idx] = np.where(fine, coef[:, 1] - half, np.nan)
        out[2, idx] = np.where(fine, coef[:, 1] + half, np.nan)
        out[3, idx] = np.where(fine, coef[:, 0], np.nan)
        pos = np.isfinite(y) & (np.nan_to_num(y) > 0)
        out[4, idx] = np.where(fine, _masked_log_r2(x, np.where(pos, y, 1.0), pos), np.nan)
    return tuple(o.reshape(shape[:-1]) for o in out)


def budget_scale(density: xr.DataArray, exponent: float) -> xr.DataArray:
    """The scale c of J = c·p^α when the total ∫√J dθ is held at 1: c = (∫p^{α/2} dθ)^{−2}.

    Under a fixed global budget, J at a given density level changes with the density
    elsewhere through c; comparing c between priors (e.g. c_κ/c_κ′) gives the change a
    fixed-budget efficient code predicts, against which a local code (J a function of p(θ)
    alone, c unchanged) can be tested.
    """
    exponent = real("exponent", exponent)
    return sqrt_total(density**exponent) ** -2.0
