"""The bias–discriminability law: estimation bias is repulsive from where FI is high.

For an observer whose encoding is efficient (J ∝ p², sensitivity allocated by the prior p)
and whose decoder is Bayesian under squared error, Wei & Stocker (2017, PNAS 114:10244)
derived

    b(θ) = E[θ̂ | θ] − θ  ≈  c · d/dθ [ 1 / J(θ) ],      c > 0,

so the bias points away from where Fisher information peaks (repulsion) and is largest where
J changes fastest; Hahn & Wei (2024, Nat Neurosci) extended it to other losses, where the
constant changes but (for L_p losses with p ≥ 1) keeps its sign.

Which decoder obeys it, and with which c. For any regular encoding with Fisher information
J(θ) and the posterior-mean decoder under a prior π, to first order in 1/J (small noise),

    b(θ) = d/dθ[1/J(θ)] + (ln π)′(θ) / J(θ):

the maximum-likelihood estimate has bias (κ₁₂ + κ₃/2)/J² (Cox & Snell 1968, JRSS B 30:248;
κ₃ = E[ℓ‴], κ₁₂ = E[ℓ″ℓ′] of the log-likelihood ℓ), the posterior mean lies (ln π)′/J + κ₃/(2J²)
beyond it (the mode moves by the prior's slope over the curvature, the mean from the mode by
the skew; Laplace's expansion), and differentiating J = −E[ℓ″] gives J′ = −(κ₃ + κ₁₂). Hence:

* a **flat prior**: b = d/dθ[1/J], c = 1 for every encoding — the decoder known to obey the
  law, used as the positive control (:func:`anglesim.laws.posterior_mean_decode`);
* the **training prior** p with J ∝ p^α: (ln p)′/J = −(1/α)·d/dθ[1/J], so c = 1 − 1/α: ½ for
  efficient coding (α = 2, Wei & Stocker's case), 0 for α = 1, negative (attraction towards
  the prior's peak) for α < 1; for J not a power of p the bias is not proportional to
  d/dθ[1/J] at all;
* the maximum-likelihood decoder of a Gaussian encoding with a fixed covariance: κ₃ = −3 f″ᵀΣ⁻¹f′,
  κ₁₂ = f″ᵀΣ⁻¹f′, J′ = 2 f″ᵀΣ⁻¹f′, so c = ¼.

A trained network is none of these; this module measures the two sides and fits the constant:

* :func:`decoded_bias` — a network's decoded-angle bias, the circular mean of θ̂ − θ over
  noisy trials at each angle (wrapped at π), through :func:`bias_from_decoded`;
* :func:`inverse_fisher_slope` — d/dθ [1/J(θ)] on the period-π grid from a K-harmonic
  Fourier fit of 1/J (or of log J), differentiated analytically;
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

__all__ = ["SLOPE_FITS", "bias_from_decoded", "decoded_bias", "fit_bias_law",
           "inverse_fisher_slope", "law_agreement"]


@torch.no_grad()
def decoded_bias(
    model: torch.nn.Module,
    spec: GratingSpec,
    angles: np.ndarray | torch.Tensor,
    n_trials: int = 200,
    generator: torch.Generator | None = None,
    batch_size: int = 2048,
) -> xr.Dataset:
    """Bias of a network's decoded angle at each θ: :func:`bias_from_decoded` of θ̂.

    ``n_trials`` noisy images (``render(θ, spec, generator)``) per angle are decoded with
    ``model.predict`` (in eval mode, on the model's device, ``batch_size`` images at a time).

    Returns a Dataset over ``angle`` (radians): ``bias``, ``bias_stderr``, ``abs_error``,
    ``squared_error``.
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
    return bias_from_decoded(decoded.double().cpu().reshape(theta.numel(), n_trials),
                             theta.double().numpy())


def bias_from_decoded(decoded: np.ndarray | torch.Tensor,
                      angles: np.ndarray | torch.Tensor) -> xr.Dataset:
    """The bias, its standard error and the errors of decoded angles θ̂ [angle, trial].

    With Δ = θ̂ − θ wrapped to [−π/2, π/2) (period π), the bias is the circular mean on the
    half-circle, b = arg(Σ e^{2iΔ})/2 (:func:`anglesim.angles.circular_mean`), so the wrap at
    0/π never biases it; ``bias_stderr`` is the standard deviation of the wrapped deviations
    from b over √T; ``abs_error`` mean |Δ| and ``squared_error`` mean Δ² (the mean squared
    error, bias included: the quantity the Cramér–Rao bound (1 + b′)²/J + b² bounds).

    Returns a Dataset over ``angle`` (radians; ``n_trials`` in attrs).
    """
    theta = torch.as_tensor(check.finite_array("angles", angles, ndim=1), dtype=torch.float64)
    values = torch.as_tensor(check.finite_array("decoded", decoded, ndim=2),
                             dtype=torch.float64)
    if values.shape[0] != theta.numel() or values.shape[1] < 2:
        raise check.fail("decoded", f"an array [{theta.numel()} angles, >= 2 trials]",
                         tuple(values.shape))
    n_trials = values.shape[1]
    diff = ang.difference(values, theta[:, None])
    bias = ang.difference(ang.circular_mean(diff, axis=1), torch.zeros((), dtype=diff.dtype))
    spread = ang.difference(diff, bias[:, None])
    sem = spread.std(dim=1, correction=1) / math.sqrt(n_trials)
    coords = {"angle": theta.numpy()}
    return xr.Dataset(
        {
            "bias": ("angle", bias.numpy(), {
                "units": "rad", "long_name": "decoded-angle bias, circular mean of "
                "theta_hat - theta wrapped to [-pi/2, pi/2)"}),
            "bias_stderr": ("angle", sem.numpy(), {
                "units": "rad", "long_name": "standard error of the bias over trials"}),
            "abs_error": ("angle", diff.abs().mean(1).numpy(), {
                "units": "rad", "long_name": "mean |theta_hat - theta| (wrapped)"}),
            "squared_error": ("angle", (diff**2).mean(1).numpy(), {
                "units": "rad^2", "long_name": "mean (theta_hat - theta)^2 (wrapped), bias "
                "included"}),
        },
        coords=coords,
        attrs={"n_trials": n_trials},
    )


SLOPE_FITS = ("inverse", "log")
"""How :func:`inverse_fisher_slope` smooths J: a Fourier fit of 1/J itself, or of log J."""


def inverse_fisher_slope(fisher: xr.DataArray, n_harmonics: int = 3,
                         dim: str = "angle", fit: str = "inverse") -> xr.DataArray:
    """d/dθ [1/J(θ)] (rad) from a K-harmonic Fourier fit on the period-π grid along ``dim``.

    With the design of :func:`anglesim.fisher.smooth_periodic` (a₀ + Σ_{k≤K} a_k cos 2kθ +
    b_k sin 2kθ, least squares, K = ``n_harmonics``; 2K + 1 angles needed, J > 0):

    * ``fit="inverse"`` fits h(θ) ≈ 1/J and returns h′(θ) = Σ 2k (b_k cos 2kθ − a_k sin 2kθ).
      On an evenly spaced grid this is the K-harmonic projection of d/dθ[1/J] itself
      (differentiation commutes with the projection), so a bias b = c·d/dθ[1/J] projects onto
      it with the same c however rough J is between the harmonics: the fit for the law.
    * ``fit="log"`` fits g(θ) ≈ log J and returns −g′ e^{−g}: positive by construction, for a
      J that spans decades (an output FI near 0 at rare angles), but for a rough J the
      smoothed log and the smoothed inverse differ (Jensen), and so does the slope.
    """
    if not isinstance(fisher, xr.DataArray) or dim not in fisher.dims:
        raise check.fail("fisher", f"a DataArray with a {dim!r} dim",
                         getattr(fisher, "dims", type(fisher).__name__))
    n_harmonics = check.integer("n_harmonics", n_harmonics, minimum=1)
    fit = check.choice("fit", fit, SLOPE_FITS)
    theta = check.finite_array(dim, fisher[dim].values, ndim=1)
    if theta.size < 2 * n_harmonics + 1:
        raise check.fail("n_harmonics", f"at most {(theta.size - 1) // 2} for "
                         f"{theta.size} angles", n_harmonics)
    moved = fisher.transpose(..., dim)
    y = check.finite_array("fisher", moved.values)
    if (y <= 0).any():
        raise check.fail("fisher", f"> 0 everywhere ({'1/J' if fit == 'inverse' else 'log J'}"
                         " is fitted)", float(y.min()))
    target = (1 / y if fit == "inverse" else np.log(y)).reshape(-1, theta.size).T
    design = fourier_design(theta, n_harmonics)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)  # [2K + 1, curves]
    k = np.arange(1, n_harmonics + 1)
    arg = 2 * theta[:, None] * k[None, :]  # [angle, K]
    deriv = np.zeros((theta.size, 2 * n_harmonics + 1))
    deriv[:, 1::2], deriv[:, 2::2] = -2 * k * np.sin(arg), 2 * k * np.cos(arg)  # d/dθ
    if fit == "inverse":
        slope = deriv @ coef
    else:
        slope = -(deriv @ coef) * np.exp(-(design @ coef))
    out = xr.DataArray(slope.T.reshape(y.shape), dims=moved.dims, coords=moved.coords,
                       name="inverse_fisher_slope",
                       attrs={"units": "rad", "long_name": "d/dtheta of 1/J, from a "
                              f"{n_harmonics}-harmonic Fourier fit of "
                              f"{'1/J' if fit == 'inverse' else 'log J'}"})
    return out.transpose(*fisher.dims)


def fit_bias_law(bias: xr.DataArray, slope: xr.DataArray, dim: str = "angle",
                 where: xr.DataArray | None = None,
                 stderr: xr.DataArray | None = None) -> xr.Dataset:
    """Fit b(θ) = c · d/dθ[1/J(θ)] along ``dim``, independently for every other index.

    With g = ``slope``: ĉ = Σ b g / Σ g² (least squares through the origin; dimensionless,
    both in rad), ``correlation`` the Pearson r of b and g over angles, and
    ``explained`` = 1 − Σ (b − ĉ g)² / Σ b², the share of the bias's power the law accounts
    for (≤ 1; 0 or below when it accounts for nothing). The law predicts c > 0 and r near 1.
    ``where`` (boolean, broadcast against ``bias``) restricts every sum to those angles, e.g.
    to where FI is high enough for the law's small-noise derivation; ``law_n_angles`` counts
    them. ``stderr`` (the bias's standard error at each angle, independent between angles)
    adds ``law_constant_stderr`` = √(Σ g² s²) / Σ g², the part of ĉ's uncertainty that comes
    from the trials (not from differences between networks).
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
    extra = {}
    if stderr is not None:
        if not isinstance(stderr, xr.DataArray) or dim not in stderr.dims:
            raise check.fail("stderr", f"a DataArray with a {dim!r} dim",
                             getattr(stderr, "dims", type(stderr).__name__))
        s = xr.align(stderr, b, join="exact")[0].where(g.notnull())
        extra["law_constant_stderr"] = (np.sqrt((g * g * s * s).sum(dim)) / gg.where(gg > 0)
                                        ).assign_attrs(units="1", long_name="standard error "
                                                       "of c from the bias's trial noise")
    return xr.Dataset({
        "law_constant": c.assign_attrs(units="1", long_name="c in b = c d/dtheta(1/J), least "
                                       "squares through the origin (the law predicts c > 0)"),
        "law_correlation": r.assign_attrs(units="1", long_name="Pearson r of the bias and "
                                          "d/dtheta(1/J) over angles"),
        "law_explained": explained.assign_attrs(units="1", long_name="1 - sum (b - c g)^2 / "
                                                "sum b^2"),
        "law_n_angles": (b.notnull() & g.notnull()).sum(dim).assign_attrs(
            units="1", long_name="angles entering the fit"),
        **extra,
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
