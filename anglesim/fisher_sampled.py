"""Fisher information about orientation from sampled responses.

Estimators that need only responses — arrays of trials × units — and the model-level helpers
that draw those responses from a network for noisy gratings. All numbers are in rad⁻².

* **Linear FI** at θ from T trials at θ ∓ Δθ/2: `linear_fisher_from_samples` (naive and the
  bias-corrected estimator of Kanitscheider, Coen-Cagli, Kohn & Pouget 2015, PLoS Comput Biol
  11(6): e1004218) with `linear_fisher_variance`; for few trials `linear_fisher_shrinkage`
  (Ledoit & Wolf 2004 covariance) and `linear_fisher_pca`.
* **Decoder FI** `decoder_fisher`: a cross-validated linear discriminant, d′²/Δθ².
* **Smoothed-derivative FI** `savgol_fisher`: the reference research's estimator (one noisy
  sample per angle on a dense grid, a wrapped Savitzky–Golay derivative, the output covariance
  from repeated samples).

The public names are re-exported by :mod:`anglesim.fisher`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.signal import savgol_coeffs, savgol_filter

from . import angles as ang
from ._fisher_base import (
    INPUT,
    OUTPUT,
    ArrayLike,
    block_order,
    check_dtheta,
    check_positive_int,
    eval_mode,
    fisher_dataarray,
    model_on_device,
    to_numpy,
)
from .stimuli import GratingSpec, render

# --------------------------------------------------------------------------------------------
# Linear Fisher information from samples
# --------------------------------------------------------------------------------------------


def linear_fisher_from_samples(
    r_minus: ArrayLike, r_plus: ArrayLike, dtheta: float, bias_corrected: bool = True
) -> float:
    """Linear Fisher information from T trials of N units at θ − Δθ/2 and θ + Δθ/2.

    f' = (mean r_plus − mean r_minus)/Δθ, Σ̂ = (Σ̂₋ + Σ̂₊)/2 (unbiased covariances), naive
    I = f'ᵀ Σ̂⁻¹ f'. Its mean is (I + 2N/(TΔθ²)) (2T − 2)/(2T − N − 3) for Gaussian responses,
    so the bias-corrected estimator (Kanitscheider, Coen-Cagli, Kohn & Pouget 2015,
    PLoS Comput Biol 11(6): e1004218) is

        I_bc = I_naive (2T − N − 3)/(2T − 2) − 2N/(T Δθ²),

    unbiased for Gaussian responses. Both need 2T − N − 3 > 0 (otherwise the naive estimator's
    mean is infinite); use `linear_fisher_shrinkage` for fewer trials. The finite difference
    of means makes f' exact only to O(Δθ²).
    """
    rm, rp, n_trials, n_units, dtheta = _paired_samples(r_minus, r_plus, dtheta)
    if 2 * n_trials - n_units - 3 <= 0:
        raise ValueError(
            f"2T - N - 3 must be > 0 for the linear Fisher estimator, got T={n_trials} trials "
            f"and N={n_units} units; record more trials or use linear_fisher_shrinkage"
        )
    fprime = (rp.mean(0) - rm.mean(0)) / dtheta
    cov = (np.cov(rm, rowvar=False) + np.cov(rp, rowvar=False)) / 2
    naive = float(fprime @ np.linalg.solve(np.atleast_2d(cov), fprime))
    if not bias_corrected:
        return naive
    return naive * (2 * n_trials - n_units - 3) / (2 * n_trials - 2) - 2 * n_units / (
        n_trials * dtheta**2
    )


def linear_fisher_variance(
    I: float | np.ndarray, T: int, N: int, dtheta: float
) -> float | np.ndarray:
    """Variance of the bias-corrected linear FI estimator for Gaussian responses.

    Kanitscheider et al. 2015 (PLoS Comput Biol 11(6): e1004218):

        Var(I_bc) = 2 I² / (2T − N − 5) · [1 + 4(2T − 3)/(T I Δθ²) + 4N(2T − 3)/(T² I² Δθ⁴)].

    Derivation (implemented in the equivalent form without 1/I): with d the difference of
    means and W = (2T − 2) Σ̂ ~ Wishart(Σ, 2T − 2) independent of d, dᵀΣ⁻¹d = (2/T)·χ'²_N(λ),
    λ = TΔθ²I/2, and dᵀΣ⁻¹d / dᵀW⁻¹d ~ χ²_m, m = 2T − N − 1, independent of d; the moments
    E[1/χ²_m] = 1/(m − 2), E[1/χ²_m²] = 1/((m − 2)(m − 4)) and those of the noncentral χ²
    give the expression above. Needs 2T − N − 5 > 0. ``I`` is the true (or estimated) FI.
    """
    for name, val in (("T", T), ("N", N)):
        if not isinstance(val, int | np.integer) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    check_dtheta(dtheta)
    m4 = 2 * T - N - 5
    if m4 <= 0:
        raise ValueError(f"2T - N - 5 must be > 0 for a finite variance, got T={T}, N={N}")
    info = np.asarray(I, dtype=np.float64)
    if np.isnan(info).any() or (info < 0).any():
        raise ValueError(f"I must be >= 0, got {I!r}")
    a = 2.0 / (T * dtheta**2)
    var = 2.0 / m4 * (info**2 + 2 * a * info * (2 * T - 3) + a**2 * N * (2 * T - 3))
    return float(var) if var.ndim == 0 else var


def ledoit_wolf_covariance(x: ArrayLike, centered: bool = False) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf shrinkage covariance of samples x [n, p]; returns (Σ*, shrinkage δ).

    Ledoit & Wolf 2004 (J Multivar Anal 88: 365), with ‖M‖² = tr(MMᵀ)/p:
    S = XᵀX/n (X centred), m = tr(S)/p, d² = ‖S − mI‖², b̄² = (1/n²) Σ_k ‖x_k x_kᵀ − S‖²,
    b² = min(b̄², d²), and Σ* = (b²/d²) m I + (1 − b²/d²) S, so δ = b²/d² ∈ [0, 1].
    ``centered=True`` takes x as residuals already centred (e.g. around per-class means).
    """
    xs = to_numpy(x, "x")
    if xs.ndim != 2 or xs.shape[0] < 2:
        raise ValueError(f"x must be [n >= 2, p], got shape {xs.shape}")
    n, p = xs.shape
    if not centered:
        xs = xs - xs.mean(0)
    s = xs.T @ xs / n
    mu = np.trace(s) / p
    d2 = float(((s - mu * np.eye(p)) ** 2).sum() / p)
    if d2 <= 0:
        return s, 0.0  # S is already a multiple of the identity
    sq = (xs**2).sum(1)
    # Σ_k ‖x_k x_kᵀ − S‖_F² = Σ_k (|x_k|⁴ − 2 x_kᵀ S x_k) + n ‖S‖_F²
    quad = np.einsum("ki,ij,kj->k", xs, s, xs)
    b2_bar = float(((sq**2 - 2 * quad).sum() + n * (s**2).sum()) / (p * n**2))
    delta = min(b2_bar, d2) / d2
    return delta * mu * np.eye(p) + (1 - delta) * s, delta


def linear_fisher_shrinkage(r_minus: ArrayLike, r_plus: ArrayLike, dtheta: float) -> float:
    """Linear FI f'ᵀ Σ*⁻¹ f' with a Ledoit–Wolf (2004) shrinkage covariance Σ*.

    f' = (mean r_plus − mean r_minus)/Δθ; Σ* is `ledoit_wolf_covariance` of the residuals of
    both conditions around their own means. BIASED (no correction exists for the shrunk
    covariance: shrinkage pulls it down, the noise in f' pushes it up) but finite and usable
    when T is small relative to N, where `linear_fisher_from_samples` is undefined.
    """
    rm, rp, _, _, dtheta = _paired_samples(r_minus, r_plus, dtheta)
    fprime = (rp.mean(0) - rm.mean(0)) / dtheta
    resid = np.concatenate([rm - rm.mean(0), rp - rp.mean(0)])
    cov, _ = ledoit_wolf_covariance(resid, centered=True)
    return float(fprime @ np.linalg.solve(cov, fprime))


def decoder_fisher(
    r_minus: ArrayLike,
    r_plus: ArrayLike,
    dtheta: float,
    ridge: float = 1e-3,
    n_folds: int = 5,
    seed: int = 0,
) -> float:
    """Fisher information from a cross-validated linear discriminant: d'²/Δθ².

    For each of ``n_folds`` folds (trials of each condition shuffled with
    ``numpy.random.default_rng(seed)`` and split), Fisher's linear discriminant
    w = (Σ̂ + ridge · tr(Σ̂)/N · I)⁻¹ (μ̂₊ − μ̂₋) is fitted on the training folds (Σ̂ the pooled
    unbiased covariance, the ridge relative to its mean eigenvalue) and applied to the held-out
    trials: d'_k = (mean wᵀr₊ − mean wᵀr₋) / √((var wᵀr₊ + var wᵀr₋)/2). The estimate is
    max(mean_k d'_k, 0)² / Δθ² (d'² = I Δθ² for linear FI I).

    Biased LOW: a discriminant fitted to finite data is suboptimal on new trials (and the
    ridge shrinks it further), so it is a lower bound in expectation rather than an unbiased
    estimate — typically within 10–20% of I for T ≫ N (e.g. Kanitscheider et al. 2015).
    """
    rm, rp, _, n_units, dtheta = _paired_samples(r_minus, r_plus, dtheta, same_trials=False)
    if not (isinstance(ridge, int | float) and math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    if not isinstance(n_folds, int) or isinstance(n_folds, bool) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if min(len(rm), len(rp)) < 2 * n_folds:
        raise ValueError(
            f"need at least 2 * n_folds = {2 * n_folds} trials per condition, got "
            f"{len(rm)} and {len(rp)}"
        )
    rng = np.random.default_rng(seed)
    folds_m = np.array_split(rng.permutation(len(rm)), n_folds)
    folds_p = np.array_split(rng.permutation(len(rp)), n_folds)
    dprimes = []
    for k in range(n_folds):
        test_m, test_p = rm[folds_m[k]], rp[folds_p[k]]
        train_m = np.delete(rm, folds_m[k], axis=0)
        train_p = np.delete(rp, folds_p[k], axis=0)
        cov = (np.cov(train_m, rowvar=False) + np.cov(train_p, rowvar=False)) / 2
        cov = np.atleast_2d(cov)
        cov = cov + ridge * np.trace(cov) / n_units * np.eye(n_units)
        w = np.linalg.solve(cov, train_p.mean(0) - train_m.mean(0))
        proj_m, proj_p = test_m @ w, test_p @ w
        sd = math.sqrt((proj_m.var(ddof=1) + proj_p.var(ddof=1)) / 2)
        dprimes.append((proj_p.mean() - proj_m.mean()) / sd if sd > 0 else 0.0)
    return max(float(np.mean(dprimes)), 0.0) ** 2 / dtheta**2



def _paired_samples(
    r_minus: ArrayLike, r_plus: ArrayLike, dtheta: float, same_trials: bool = True
) -> tuple[np.ndarray, np.ndarray, int, int, float]:
    """Validate [T, N] responses at θ ∓ Δθ/2; return them as float64 with T, N, Δθ."""
    rm = to_numpy(r_minus, "r_minus")
    rp = to_numpy(r_plus, "r_plus")
    for name, r in (("r_minus", rm), ("r_plus", rp)):
        if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 1:
            raise ValueError(f"{name} must be [T >= 2 trials, N >= 1 units], got {r.shape}")
        if not np.isfinite(r).all():
            raise ValueError(f"{name} must be finite")
    if (same_trials and rm.shape != rp.shape) or rm.shape[1] != rp.shape[1]:
        raise ValueError(
            f"r_minus and r_plus must have the same shape [T, N], got {rm.shape} and {rp.shape}"
        )
    return rm, rp, rm.shape[0], rm.shape[1], check_dtheta(dtheta)


# --------------------------------------------------------------------------------------------
# Responses of a network to noisy gratings
# --------------------------------------------------------------------------------------------


def sample_responses(
    model: torch.nn.Module,
    spec: GratingSpec,
    angles: ArrayLike,
    layers: list[str] | tuple[str, ...] | str,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> dict[str, np.ndarray]:
    """Responses of ``layers`` to one noisy grating per entry of ``angles``: {layer: [n, N]}.

    Images come from ``render(angles, spec, generator)`` — the spec's own noise, and a random
    phase per image when ``spec.phase`` is None — in batches of ``batch_size`` (the random
    numbers drawn depend on the batch size). Layer names: "input" (the pixels), the model's
    blocks (flattened activations; "head" is the raw network output) and "output" (the
    decoded angle θ̂ in [0, π), one column). The model runs in eval mode without gradients on
    its own device and dtype; results are float64 numpy arrays.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(layers, str):
        layers = [layers]
    order = block_order(model)
    unknown = [n for n in layers if n not in order]
    if unknown or len(layers) == 0:
        raise ValueError(f"layers {list(layers)!r} must be a non-empty subset of {order}")
    model, dev, dtype = model_on_device(model, None)
    theta = torch.as_tensor(to_numpy(angles, "angles"), dtype=torch.float64, device=dev)
    if theta.ndim != 1 or not torch.isfinite(theta).all():
        raise ValueError(f"angles must be a finite 1-D array, got shape {tuple(theta.shape)}")
    blocks = list(model.block_names)
    wanted = set(layers)
    needed = [b for b in blocks if b in wanted]
    last = len(blocks) if OUTPUT in wanted else (blocks.index(needed[-1]) + 1 if needed else 0)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with eval_mode(model), torch.no_grad():
        for start in range(0, theta.numel(), batch_size):
            x = render(theta[start:start + batch_size], spec, generator, dtype=dtype)
            n = x.shape[0]
            if INPUT in wanted:
                out[INPUT].append(x.reshape(n, -1).double().cpu())
            h = x
            for name in blocks[:last]:
                h = model.blocks[name](h)
                if name in wanted:
                    out[name].append(h.reshape(n, -1).double().cpu())
            if OUTPUT in wanted:
                out[OUTPUT].append(model.decode(h).reshape(n, 1).double().cpu())
    return {name: torch.cat(parts).numpy() for name, parts in out.items()}


# --------------------------------------------------------------------------------------------
# The reference research's smoothed-derivative estimator
# --------------------------------------------------------------------------------------------


SAVGOL_OUTPUTS = ("decoded", "raw")


def savgol_fisher(
    model: torch.nn.Module,
    spec: GratingSpec,
    n_dense: int = 10_000,
    n_cov_angles: int = 500,
    n_cov_samples: int = 500,
    window: int = 501,
    polyorder: int = 3,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    *,
    output: str = "decoded",
    bias_corrected: bool = False,
) -> xr.DataArray:
    """FI from a Savitzky–Golay derivative of single noisy samples on a dense angle grid.

    The estimator of the research anglesim grows from, for comparison with the others:

    1. one noisy image (the spec's own noise) at each of ``n_dense`` angles
       θ_k = kπ/n_dense, run through the network;
    2. the mean response's derivative f′(θ_k) by a Savitzky–Golay filter (Savitzky & Golay
       1964, Anal Chem 36: 1627) of order ``polyorder`` over ``window`` neighbouring angles
       (odd), with ``mode="wrap"``: the responses are periodic in θ with period π, so the
       filter wraps around from π back to 0 instead of padding;
    3. the response covariance Σ(φ_j) from ``n_cov_samples`` noisy images at each of
       ``n_cov_angles`` angles φ_j = jπ/n_cov_angles, linearly interpolated (periodically)
       to the dense grid — a convex combination of covariance matrices, so it stays positive
       semi-definite;
    4. J(θ_k) = f′ᵀ Σ⁻¹ f′.

    ``output`` says which response:

    * ``"decoded"`` (default): the decoded angle θ̂ = model.decode(...). Its single-sample
      error e = θ̂ − θ, wrapped to [−π/2, π/2), is periodic, so f′ = 1 + e′ with e′ the wrapped
      SG derivative, and Σ is the variance of θ̂ around its circular mean (deviations wrapped
      to [−π/2, π/2)). J = (∂E[θ̂]/∂θ)² / Var(θ̂) is then the output (estimator) FI of
      Cramér–Rao with bias, the quantity a discrimination threshold reflects.
    * ``"raw"``: the network's whole raw output vector (the reference applies the filter to
      its two (cos 2θ, sin 2θ) units) and its D × D covariance: the linear FI of the output
      vector, which is ≥ that of θ̂ for a locally linear decode (data processing). Raw
      outputs are periodic in θ because the images are; an "angle" readout's raw output has a
      jump at its wrap point, which the filter smears, so prefer "decoded" there.

    Biases: single samples make f′ noisy, and E[f̂′ᵀΣ⁻¹f̂′] = J + D Σ_k c_k² for independent
    samples with locally constant covariance (c the filter's derivative coefficients, D the
    response dimension); that excess is stored as attrs["derivative_noise_bias"] and subtracted
    when ``bias_corrected=True`` (the reference does not subtract it). A window wide against the
    curve's structure flattens f′ (smoothing bias); a narrow one raises the noise term. Random
    phases (``spec.phase`` None) make every quantity phase-marginal.

    Returns a DataArray "fisher" over the ``n_dense`` angles (dims ("angle",)), with
    coordinates ``derivative`` and ``variance`` (decoded output only) and attrs method
    "savgol", quantity, window, polyorder, the counts, output and derivative_noise_bias.
    """
    n_dense = check_positive_int("n_dense", n_dense, 3)
    n_cov_angles = check_positive_int("n_cov_angles", n_cov_angles, 1)
    n_cov_samples = check_positive_int("n_cov_samples", n_cov_samples, 2)
    window = check_positive_int("window", window, 3)
    polyorder = check_positive_int("polyorder", polyorder, 1)
    if window % 2 == 0 or window > n_dense:
        raise ValueError(f"window must be odd and <= n_dense={n_dense}, got {window}")
    if polyorder >= window:
        raise ValueError(f"polyorder must be < window={window}, got {polyorder}")
    if output not in SAVGOL_OUTPUTS:
        raise ValueError(f"output must be one of {list(SAVGOL_OUTPUTS)}, got {output!r}")
    layer = OUTPUT if output == "decoded" else model.block_names[-1]
    step = math.pi / n_dense
    dense = np.arange(n_dense) * step
    single = sample_responses(model, spec, dense, layer, generator, batch_size)[layer]
    phi = np.arange(n_cov_angles) * (math.pi / n_cov_angles)
    repeated = sample_responses(model, spec, np.repeat(phi, n_cov_samples), layer, generator,
                                batch_size)[layer].reshape(n_cov_angles, n_cov_samples, -1)
    filt = dict(window_length=window, polyorder=polyorder, deriv=1, delta=step, mode="wrap")
    coeff_sq = float((savgol_coeffs(window, polyorder, deriv=1, delta=step) ** 2).sum())
    coords: dict[str, Any] = {}
    if output == "decoded":
        err = ang.difference(single[:, 0], dense)
        deriv = 1.0 + savgol_filter(err, axis=0, **filt)
        samples = repeated[..., 0]
        centre = ang.circular_mean(samples, axis=1)
        dev = ang.difference(samples, centre[:, None])
        var = (dev**2).sum(1) / (n_cov_samples - 1)
        var_dense = np.interp(dense, phi, var, period=math.pi)
        if (var_dense <= 0).any():
            raise ValueError("the decoded angle does not vary over noise samples somewhere: "
                             "its Fisher information is undefined (noise-free spec?)")
        fisher = deriv**2 / var_dense
        n_dims = 1
        coords = {"derivative": ("angle", deriv), "variance": ("angle", var_dense)}
    else:
        deriv = savgol_filter(single, axis=0, **filt)  # [n_dense, D]
        n_dims = single.shape[1]
        centred = repeated - repeated.mean(1, keepdims=True)
        cov = np.einsum("asi,asj->aij", centred, centred) / (n_cov_samples - 1)
        flat = cov.reshape(n_cov_angles, -1)
        cov_dense = np.stack([np.interp(dense, phi, flat[:, c], period=math.pi)
                              for c in range(flat.shape[1])], axis=1)
        cov_dense = cov_dense.reshape(n_dense, n_dims, n_dims)
        try:
            sol = np.linalg.solve(cov_dense, deriv[..., None])[..., 0]
        except np.linalg.LinAlgError as err:
            raise ValueError("the output covariance is singular at some angle: its linear "
                             "Fisher information is undefined (use output='decoded')") from err
        fisher = (deriv * sol).sum(1)
    bias = n_dims * coeff_sq
    if bias_corrected:
        fisher = fisher - bias
    da = fisher_dataarray(
        fisher, dense, None, "savgol",
        quantity=(
            ("output (estimator) Fisher information of the decoded angle, "
             "(dE[theta_hat]/dtheta)^2 / Var(theta_hat)" if output == "decoded" else
             "linear Fisher information of the raw network output vector, f'^T Sigma^-1 f'")
            + ", with f' a wrapped Savitzky-Golay derivative of single noisy samples on a "
            "dense grid and the covariance from repeated samples, interpolated periodically"
        ),
        output=output, window=window, polyorder=polyorder, n_dense=n_dense,
        n_cov_angles=n_cov_angles, n_cov_samples=n_cov_samples,
        derivative_noise_bias=bias, bias_corrected=int(bias_corrected),
        noise_model=_noise_description(spec),
    )
    return da.assign_coords(coords)


def _noise_description(spec: GratingSpec) -> str:
    """How the spec's images are noisy, for attrs."""
    parts = []
    if spec.noise_std > 0 and spec.noise_prob > 0:
        gate = "" if spec.noise_prob == 1 else f" with probability {spec.noise_prob:g} per pixel"
        parts.append(f"Gaussian pixel noise sigma={spec.noise_std:g}{gate}")
    if spec.shot_prob > 0:
        parts.append(f"shot noise p={spec.shot_prob:g}")
    if spec.clamp is not None:
        parts.append(f"clamped to [{spec.clamp[0]:g}, {spec.clamp[1]:g}]")
    if spec.phase is None:
        parts.append("random phase")
    return "the spec's own noise: " + (", ".join(parts) if parts else "none")
