"""The bias–discriminability law: estimation bias is repulsive from where FI is high.

For an observer whose encoding is efficient (J ∝ p², or more generally sensitivity allocated
by the prior) and whose decoder is Bayesian under squared error, Wei & Stocker (2017, PNAS
114:10244) derived

    b(θ) = E[θ̂ | θ] − θ  ≈  c · d/dθ [ 1 / J(θ) ],      c > 0,

so the bias points away from where Fisher information peaks (repulsion) and is largest where
J changes fastest; Hahn & Wei (2024, Nat Neurosci) extended it to other losses, where the
constant changes but (for L_p losses with p ≥ 1) keeps its sign. A trained network is not
guaranteed to obey it: this module measures the two sides and fits the constant.

* :func:`decoded_bias` — a network's decoded-angle bias, the circular mean of θ̂ − θ over
  noisy trials at each angle (wrapped at π);
* :func:`inverse_fisher_slope` — d/dθ [1/J(θ)] on the period-π grid, from a K-harmonic
  Fourier fit of log J (:func:`anglesim.fisher._smoothing.fourier_design`), differentiated
  analytically: with log J ≈ g(θ), d/dθ (1/J) = −g′(θ) e^{−g(θ)};
* :func:`fit_bias_law` — per replicate, the least-squares constant through the origin
  ĉ = Σ b g / Σ g² (g the slope above), the correlation of b with g, and the share of the
  bias's variance the law explains;
* :func:`law_agreement` — at each angle, whether the bias (interval over replicates) has the
  law's sign ("holds", +1), the opposite sign ("flips", −1), or cannot be told from 0 (0).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from .. import angles as ang
from .. import validation as check
from ..fisher._smoothing import fourier_design
from ..stats import mean_ci
from ..stimuli import GratingSpec, render

__all__ = ["decoded_bias", "fit_bias_law", "inverse_fisher_slope", "law_agreement"]


@torch.no_grad()
def decoded_bias(
    model: torch.nn.Module,
    spec: GratingSpec,
    angles: np.ndarray | torch.Tensor,
    n_trials: int = 200,
    generator: torch.Generator | None = None,
    batch_size: int = 2048,
) -> xr.Dataset:
    """Bias of the decoded angle at each θ: b(θ) = circular mean of (θ̂ − θ), in [−π/2, π/2).

    ``n_trials`` noisy images (``render(θ, spec, generator)``) per angle are decoded with
    ``model.predict``; the differences θ̂ − θ are averaged on the half-circle,
    b = arg(Σ e^{2i(θ̂−θ)})/2 wrapped to [−π/2, π/2) (:func:`anglesim.angles.circular_mean`),
    so the wrap at 0/π never biases it. Also returned: ``bias_stderr``, the standard deviation
    of the wrapped deviations from b over √n_trials, and ``abs_error``, mean |θ̂ − θ|.

    Returns a Dataset over ``angle`` (radians).
    """
    theta = torch.as_tensor(check.finite_array("angles", angles, ndim=1), dtype=torch.float32)
    n_trials = check.integer("n_trials", n_trials, minimum=2)
    batch_size = check.integer("batch_size", batch_size, minimum=1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    flat = theta.to(device).repeat_interleave(n_trials)
    decoded = torch.cat([
        model.predict(render(flat[i:i + batch_size], spec, generator, inplace=True))
        for i in range(0, flat.numel(), batch_size)])
    model.train(was_training)
    diff = ang.difference(decoded.double(), flat.double()).reshape(theta.numel(), n_trials)
    bias = ang.difference(ang.circular_mean(diff, axis=1), torch.zeros((), dtype=diff.dtype))
    spread = ang.difference(diff, bias[:, None])
    sem = spread.std(dim=1, correction=1) / math.sqrt(n_trials)
    coords = {"angle": theta.double().numpy()}
    return xr.Dataset(
        {
            "bias": ("angle", bias.cpu().numpy(), {
                "units": "rad", "long_name": "decoded-angle bias, circular mean of "
                "theta_hat - theta wrapped to [-pi/2, pi/2)"}),
            "bias_stderr": ("angle", sem.cpu().numpy(), {
                "units": "rad", "long_name": "standard error of the bias over trials"}),
            "abs_error": ("angle", diff.abs().mean(1).cpu().numpy(), {
                "units": "rad", "long_name": "mean |theta_hat - theta| (wrapped)"}),
        },
        coords=coords,
        attrs={"n_trials": n_trials},
    )


def inverse_fisher_slope(fisher: xr.DataArray, n_harmonics: int = 3,
                         dim: str = "angle") -> xr.DataArray:
    """d/dθ [1/J(θ)] (rad) from a Fourier fit of log J on the period-π grid along ``dim``.

    log J(θ) ≈ g(θ) = a₀ + Σ_{k≤K} a_k cos 2kθ + b_k sin 2kθ (least squares, K =
    ``n_harmonics``, as :func:`anglesim.fisher.smooth_periodic`), then analytically
    g′(θ) = Σ 2k (b_k cos 2kθ − a_k sin 2kθ) and d(1/J)/dθ = −g′ e^{−g}. The fit smooths
    sampling noise of J and keeps the slope periodic; K harmonics need 2K + 1 angles and J > 0.
    """
    if not isinstance(fisher, xr.DataArray) or dim not in fisher.dims:
        raise check.fail("fisher", f"a DataArray with a {dim!r} dim",
                         getattr(fisher, "dims", type(fisher).__name__))
    n_harmonics = check.integer("n_harmonics", n_harmonics, minimum=1)
    theta = check.finite_array(dim, fisher[dim].values, ndim=1)
    if theta.size < 2 * n_harmonics + 1:
        raise check.fail("n_harmonics", f"at most {(theta.size - 1) // 2} for "
                         f"{theta.size} angles", n_harmonics)
    moved = fisher.transpose(..., dim)
    y = check.finite_array("fisher", moved.values)
    if (y <= 0).any():
        raise check.fail("fisher", "> 0 everywhere (log J is fitted)", float(y.min()))
    flat = np.log(y).reshape(-1, theta.size).T  # [angle, curves]
    coef, *_ = np.linalg.lstsq(fourier_design(theta, n_harmonics), flat, rcond=None)
    g = fourier_design(theta, n_harmonics) @ coef
    k = np.arange(1, n_harmonics + 1)
    arg = 2 * theta[:, None] * k[None, :]  # [angle, K]
    d_cos, d_sin = -2 * k * np.sin(arg), 2 * k * np.cos(arg)  # d/dθ of cos 2kθ, sin 2kθ
    deriv = np.zeros((theta.size, 2 * n_harmonics + 1))
    deriv[:, 1::2], deriv[:, 2::2] = d_cos, d_sin
    slope = (-(deriv @ coef) * np.exp(-g)).T.reshape(y.shape)
    out = xr.DataArray(slope, dims=moved.dims, coords=moved.coords, name="inverse_fisher_slope",
                       attrs={"units": "rad", "long_name": "d/dtheta of 1/J, from a "
                              f"{n_harmonics}-harmonic Fourier fit of log J"})
    return out.transpose(*fisher.dims)


def fit_bias_law(bias: xr.DataArray, slope: xr.DataArray, dim: str = "angle",
                 where: xr.DataArray | None = None) -> xr.Dataset:
    """Fit b(θ) = c · d/dθ[1/J(θ)] along ``dim``, independently for every other index.

    With g = ``slope``: ĉ = Σ b g / Σ g² (least squares through the origin; dimensionless,
    both in rad), ``correlation`` the Pearson r of b and g over angles, and
    ``explained`` = 1 − Σ (b − ĉ g)² / Σ b², the share of the bias's power the law accounts
    for (≤ 1; 0 or below when it accounts for nothing). The law predicts c > 0 and r near 1.
    ``where`` (boolean, broadcast against ``bias``) restricts every sum to those angles, e.g.
    to where FI is high enough for the law's small-noise derivation; ``law_n_angles`` counts
    them.
    """
    for name, da in (("bias", bias), ("slope", slope)):
        if not isinstance(da, xr.DataArray) or dim not in da.dims:
            raise check.fail(name, f"a DataArray with a {dim!r} dim",
                             getattr(da, "dims", type(da).__name__))
    b, g = xr.align(bias, slope, join="exact")
    if where is not None:
        b, g = b.where(where), g.where(where & b.notnull())
    gg = (g * g).sum(dim)
    c = (b * g).sum(dim) / gg.where(gg > 0)
    bc, gc = b - b.mean(dim), g - g.mean(dim)
    r = (bc * gc).sum(dim) / np.sqrt((bc * bc).sum(dim) * (gc * gc).sum(dim))
    explained = 1 - ((b - c * g) ** 2).sum(dim) / (b * b).sum(dim)
    return xr.Dataset({
        "law_constant": c.assign_attrs(units="1", long_name="c in b = c d/dtheta(1/J), least "
                                       "squares through the origin (the law predicts c > 0)"),
        "law_correlation": r.assign_attrs(units="1", long_name="Pearson r of the bias and "
                                          "d/dtheta(1/J) over angles"),
        "law_explained": explained.assign_attrs(units="1", long_name="1 - sum (b - c g)^2 / "
                                                "sum b^2"),
        "law_n_angles": (b.notnull() & g.notnull()).sum(dim).assign_attrs(
            units="1", long_name="angles entering the fit"),
    })


def law_agreement(bias: xr.DataArray, slope: xr.DataArray, dim: str = "replicate",
                  level: float = 0.95) -> xr.DataArray:
    """Where the law holds (+1), flips sign (−1) or cannot be told (0), angle by angle.

    At each angle the bias's mean over ``dim`` and its Student-t interval
    (:func:`anglesim.stats.mean_ci`) are compared with 0: if the interval excludes 0, the
    sign of the mean bias against the sign of the mean slope d/dθ[1/J] (the law's prediction
    with c > 0) gives +1 (same sign: repulsion as predicted) or −1 (opposite: attraction
    where the law predicts repulsion); an interval containing 0, or a slope of exactly 0,
    gives 0.
    """
    level = check.real("level", level, minimum=0, maximum=1, min_open=True, max_open=True)
    mean, half = mean_ci(bias, dim, level)
    resolved = (np.abs(mean) > half) & (half > 0)
    sign = np.sign(mean) * np.sign(slope.mean(dim))
    out = xr.where(resolved, sign, 0.0)
    return out.assign_attrs(units="1", long_name="+1 bias has the law's sign (interval "
                            "excludes 0), -1 the opposite sign, 0 unresolved")
