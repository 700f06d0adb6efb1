"""Fisher information about orientation from sampled responses.

Estimators that need only responses — arrays of trials × units — and the model-level helpers
that draw those responses from a network for noisy gratings. All numbers are in rad⁻².

* **Linear FI** at θ from T trials at θ ∓ Δθ/2: `linear_fisher_from_samples` (naive and the
  bias-corrected estimator of Kanitscheider, Coen-Cagli, Kohn & Pouget 2015, PLoS Comput Biol
  11(6): e1004218) with `linear_fisher_variance`; for few trials `linear_fisher_shrinkage`
  (Ledoit & Wolf 2004 covariance) and `linear_fisher_pca`, which work from the trials' Gram
  matrix when units outnumber trials.
* **Decoder FI** `decoder_fisher`: a cross-validated linear discriminant, d′²/Δθ².
* **On a network**: `sampled_fisher` (any of the above, per layer, from noisy gratings) and
  `estimator_fisher` (the decoded angle's (∂E[θ̂]/∂θ)²/Var θ̂, with its bias and d′);
  `bootstrap_fisher` gives percentile intervals over trials.
* **Smoothed-derivative FI** `savgol_fisher`: the reference research's estimator (one noisy
  sample per angle on a dense grid, a wrapped Savitzky–Golay derivative, the output covariance
  from repeated samples).

The public names are re-exported by :mod:`anglesim.fisher`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    mean is infinite); use `linear_fisher_shrinkage` or `linear_fisher_pca` for fewer trials.
    The finite difference of means makes f' exact only to O(Δθ²).

    Units constant over all 2T trials (silent ReLUs) are no random variables: they are left
    out and N counts the others (`active_units`). A unit constant within each condition but
    different between them makes the two stimuli perfectly discriminable: +inf. A covariance
    singular for another reason (units that are exact linear combinations of others) is a
    ValueError.
    """
    rm, rp, n_trials, _, dtheta = _paired_samples(r_minus, r_plus, dtheta)
    rm, rp, perfect = active_units(rm, rp)
    n_units = rm.shape[1]
    if perfect:
        return math.inf
    if 2 * n_trials - n_units - 3 <= 0:
        raise ValueError(
            f"2T - N - 3 must be > 0 for the linear Fisher estimator, got T={n_trials} trials "
            f"and N={n_units} units; record more trials or use linear_fisher_shrinkage or "
            f"linear_fisher_pca"
        )
    if n_units == 0:
        return 0.0
    fprime = (rp.mean(0) - rm.mean(0)) / dtheta
    cov = (np.cov(rm, rowvar=False) + np.cov(rp, rowvar=False)) / 2
    try:
        naive = float(fprime @ np.linalg.solve(np.atleast_2d(cov), fprime))
    except np.linalg.LinAlgError as err:
        raise ValueError(f"the sample covariance of the N={n_units} varying units is "
                         "singular (linearly dependent units): use linear_fisher_pca or "
                         "linear_fisher_shrinkage") from err
    if not bias_corrected:
        return naive
    return naive * (2 * n_trials - n_units - 3) / (2 * n_trials - 2) - 2 * n_units / (
        n_trials * dtheta**2
    )


def active_units(r_minus: np.ndarray, r_plus: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(r_minus, r_plus) without the units constant over all their trials, and whether some
    unit is constant within each condition but differs between them (perfect information)."""
    still_m = np.ptp(r_minus, axis=0) == 0
    still_p = np.ptp(r_plus, axis=0) == 0
    both = still_m & still_p
    perfect = bool((both & (r_minus[0] != r_plus[0])).any())
    keep = ~(both & (r_minus[0] == r_plus[0]))
    return r_minus[:, keep], r_plus[:, keep], perfect


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
    xs = _samples_matrix(x, centered)
    n, p = xs.shape
    delta, mu = _ledoit_wolf_shrinkage(xs)
    s = xs.T @ xs / n
    return delta * mu * np.eye(p) + (1 - delta) * s, delta


def _samples_matrix(x: ArrayLike, centered: bool) -> np.ndarray:
    xs = to_numpy(x, "x")
    if xs.ndim != 2 or xs.shape[0] < 2:
        raise ValueError(f"x must be [n >= 2, p], got shape {xs.shape}")
    return xs if centered else xs - xs.mean(0)


def _ledoit_wolf_shrinkage(xs: np.ndarray) -> tuple[float, float]:
    """(δ, m) of `ledoit_wolf_covariance` for centred x [n, p], never forming a p × p matrix
    when p > n: every term is a function of the n × n Gram matrix G = XXᵀ —
    ‖S‖_F² = ‖G‖_F²/n², x_kᵀ S x_k = Σ_j G_kj²/n, |x_k|² = G_kk."""
    n, p = xs.shape
    if p <= n:
        s = xs.T @ xs / n
        s_fro2 = float((s**2).sum())
        quad = np.einsum("ki,ij,kj->k", xs, s, xs)
        sq = (xs**2).sum(1)
    else:
        g = xs @ xs.T
        s_fro2 = float((g**2).sum()) / n**2
        quad = (g**2).sum(1) / n
        sq = np.diagonal(g).copy()
    mu = float(sq.sum()) / (n * p)
    d2 = (s_fro2 - mu**2 * p) / p  # ‖S − mI‖² with tr S = m p
    if d2 <= 1e-15 * max(mu**2, 1e-300):
        return 0.0, mu  # S is already a multiple of the identity
    # Σ_k ‖x_k x_kᵀ − S‖_F² = Σ_k (|x_k|⁴ − 2 x_kᵀ S x_k) + n ‖S‖_F²
    b2_bar = float(((sq**2 - 2 * quad).sum() + n * s_fro2) / (p * n**2))
    return min(b2_bar, d2) / d2, mu


def _solve_shifted_gram(xt: np.ndarray, shift: float, rhs: np.ndarray, what: str) -> np.ndarray:
    """w solving (shift·I + xtᵀxt) w = rhs for xt [n, N]: the N × N system when N ≤ n, else
    the n × n one by the Woodbury identity, w = (rhs − xtᵀ(shift·I + xt xtᵀ)⁻¹ xt rhs)/shift."""
    n, n_units = xt.shape
    if n_units <= n:
        mat = xt.T @ xt + shift * np.eye(n_units)
        try:
            return np.linalg.solve(mat, rhs)
        except np.linalg.LinAlgError as err:
            raise ValueError(f"the {what} covariance is singular; use a ridge > 0") from err
    if shift <= 0:
        raise ValueError(f"the {what} covariance of {n_units} units from {n} trials is "
                         "singular: use a ridge > 0")
    inner = np.linalg.solve(shift * np.eye(n) + xt @ xt.T, xt @ rhs)
    return (rhs - xt.T @ inner) / shift


def linear_fisher_shrinkage(r_minus: ArrayLike, r_plus: ArrayLike, dtheta: float) -> float:
    """Linear FI f'ᵀ Σ*⁻¹ f' with a Ledoit–Wolf (2004) shrinkage covariance Σ*.

    f' = (mean r_plus − mean r_minus)/Δθ; Σ* is `ledoit_wolf_covariance` of the residuals of
    both conditions around their own means. BIASED (no correction exists for the shrunk
    covariance: shrinkage pulls it down, the noise in f' pushes it up) but finite and usable
    when T is small relative to N, where `linear_fisher_from_samples` is undefined. With more
    units than residuals (N > 2T) it works from the 2T × 2T Gram matrix, never forming Σ*.
    """
    rm, rp, _, _, dtheta = _paired_samples(r_minus, r_plus, dtheta)
    fprime = (rp.mean(0) - rm.mean(0)) / dtheta
    resid = np.concatenate([rm - rm.mean(0), rp - rp.mean(0)])
    delta, mu = _ledoit_wolf_shrinkage(resid)
    xt = resid * math.sqrt((1 - delta) / len(resid))  # Σ* = δ m I + xtᵀ xt
    w = _solve_shifted_gram(xt, delta * mu, fprime, "shrinkage")
    return float(fprime @ w)


def linear_fisher_pca(
    r_minus: ArrayLike,
    r_plus: ArrayLike,
    dtheta: float,
    n_components: int | None = None,
    bias_corrected: bool = True,
) -> float:
    """Linear FI in the first k principal components of the noise, for few trials.

    The residuals of both conditions around their own means are decomposed (SVD); the
    responses are projected onto the k leading principal axes and `linear_fisher_from_samples`
    (bias-corrected by default) is applied to the k-dimensional projections. k defaults to
    min(rank of the residuals, T // 2), so that 2T − k − 3 > 0 always.

    What it estimates: the linear FI of the projected population, a LOWER bound on the full
    population's (information along discarded axes is lost), and further biased low because
    the leading sample eigenvalues overestimate the noise along the axes they pick. For
    Gaussian responses the residuals are independent of the means, so the projection does not
    look at the signal. Use it, like `linear_fisher_shrinkage`, when 2T − N − 3 ≤ 0.
    """
    rm, rp, n_trials, n_units, dtheta = _paired_samples(r_minus, r_plus, dtheta)
    resid = np.concatenate([rm - rm.mean(0), rp - rp.mean(0)])
    _, sv, vt = np.linalg.svd(resid, full_matrices=False)
    rank = int((sv > sv[0] * max(resid.shape) * np.finfo(float).eps).sum()) if sv[0] > 0 else 0
    if rank == 0:
        raise ValueError("the responses do not vary over trials: no noise to decompose")
    k = min(rank, n_trials // 2) if n_components is None else n_components
    k = check_positive_int("n_components", k)
    if k > min(rank, 2 * n_trials - 4):
        raise ValueError(f"n_components must be <= min(rank of the noise, 2T - 4) = "
                         f"{min(rank, 2 * n_trials - 4)} (T={n_trials}, N={n_units}), got {k}")
    axes = vt[:k].T
    return linear_fisher_from_samples(rm @ axes, rp @ axes, dtheta, bias_corrected)


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
    max(mean_k d'_k, 0)² / Δθ² (d'² = I Δθ² for linear FI I). With more units than training
    trials the discriminant is solved in the dual (Woodbury), never forming Σ̂.

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
        # pooled Σ̂ = (cov₋ + cov₊)/2 = xtᵀxt with rows scaled by 1/√(2(n± − 1))
        xt = np.concatenate([
            (train_m - train_m.mean(0)) / math.sqrt(2 * (len(train_m) - 1)),
            (train_p - train_p.mean(0)) / math.sqrt(2 * (len(train_p) - 1)),
        ])
        shift = ridge * float((xt**2).sum()) / n_units
        w = _solve_shifted_gram(xt, shift, train_p.mean(0) - train_m.mean(0), "decoder")
        proj_m, proj_p = test_m @ w, test_p @ w
        sd = math.sqrt((proj_m.var(ddof=1) + proj_p.var(ddof=1)) / 2)
        dprimes.append((proj_p.mean() - proj_m.mean()) / sd if sd > 0 else 0.0)
    return max(float(np.mean(dprimes)), 0.0) ** 2 / dtheta**2


def bootstrap_fisher(
    r_minus: ArrayLike,
    r_plus: ArrayLike,
    dtheta: float,
    estimator: Callable[..., float] | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): a percentile bootstrap interval over trials.

    Trials of each condition are resampled with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``) and ``estimator(r_minus*, r_plus*, dtheta)``
    (default: the bias-corrected `linear_fisher_from_samples`) recomputed; the interval is the
    (1 ∓ level)/2 quantiles (Efron & Tibshirani 1993, An Introduction to the Bootstrap, §13).
    A resample repeats trials, so its covariance has fewer distinct trials than T: the
    interval is approximate, and for the bias-corrected estimator somewhat wide; compare it
    with the analytic `linear_fisher_variance` where that applies.
    """
    rm, rp, _, _, dtheta = _paired_samples(r_minus, r_plus, dtheta, same_trials=False)
    n_boot = check_positive_int("n_boot", n_boot, 2)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    est = linear_fisher_from_samples if estimator is None else estimator
    rng = np.random.default_rng(seed)
    values = np.array([
        est(rm[rng.integers(0, len(rm), len(rm))], rp[rng.integers(0, len(rp), len(rp))],
            dtheta)
        for _ in range(n_boot)
    ])
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(est(rm, rp, dtheta)), float(low), float(high)


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
    theta = torch.as_tensor(to_numpy(angles, "angles").copy(), dtype=torch.float64, device=dev)
    if theta.ndim != 1 or not torch.isfinite(theta).all():
        raise ValueError(f"angles must be a finite 1-D array, got shape {tuple(theta.shape)}")
    blocks = list(model.block_names)
    wanted = set(layers)
    needed = [b for b in blocks if b in wanted]
    last = len(blocks) if OUTPUT in wanted else (blocks.index(needed[-1]) + 1 if needed else 0)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with eval_mode(model), torch.no_grad():
        for start in range(0, theta.numel(), batch_size):
            x = render(theta[start:start + batch_size], spec, generator, dtype=dtype,
                       inplace=True)
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
# Sampled estimators on a network
# --------------------------------------------------------------------------------------------


SAMPLED_ESTIMATORS = ("bias_corrected", "naive", "shrinkage", "pca", "decoder")
_SAMPLED_QUANTITY = {
    "bias_corrected": "bias-corrected linear Fisher information (Kanitscheider et al. 2015), "
                      "I_bc = I_naive (2T - N - 3)/(2T - 2) - 2N/(T dtheta^2)",
    "naive": "naive linear Fisher information f'^T Sigma_hat^-1 f' (biased up)",
    "shrinkage": "linear Fisher information with a Ledoit-Wolf shrinkage covariance "
                 "(biased; for few trials)",
    "pca": "bias-corrected linear Fisher information in the leading principal components of "
           "the noise (a lower bound; for few trials)",
    "decoder": "cross-validated linear discriminant d'^2 / dtheta^2 (biased low)",
}


def paired_responses(
    model: torch.nn.Module,
    spec: GratingSpec,
    theta: float,
    dtheta: float,
    n_trials: int,
    layers: list[str] | tuple[str, ...] | str,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (r_minus, r_plus)}: ``n_trials`` independent noisy responses at θ ∓ Δθ/2.

    The trials at θ − Δθ/2 are drawn first, then those at θ + Δθ/2 (`sample_responses`). The
    decoded angle ("output") is returned unwrapped around the circular mean c of all 2T
    decoded angles, as c + difference(θ̂, c), so that its arithmetic means and variances are the
    wrapped statistics on the half-circle (valid while the spread is well below π/2).
    """
    dtheta = check_dtheta(dtheta)
    n_trials = check_positive_int("n_trials", n_trials, 2)
    angles = np.concatenate([np.full(n_trials, theta - dtheta / 2),
                             np.full(n_trials, theta + dtheta / 2)])
    resp = sample_responses(model, spec, angles, layers, generator, batch_size)
    out = {}
    for name, r in resp.items():
        if name == OUTPUT:
            centre = ang.circular_mean(r[:, 0])
            r = centre + ang.difference(r, centre)
        out[name] = (r[:n_trials], r[n_trials:])
    return out


def sampled_fisher(
    model: torch.nn.Module,
    spec: GratingSpec,
    angles: ArrayLike,
    layers: list[str] | tuple[str, ...] | str | None = None,
    estimator: str = "bias_corrected",
    dtheta: float = 0.05,
    n_trials: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    n_boot: int = 0,
    level: float = 0.95,
    **options: Any,
) -> xr.DataArray:
    """Fisher information of each layer from the network's responses to noisy gratings.

    At each θ, ``n_trials`` images at θ − Δθ/2 and at θ + Δθ/2 carry the spec's own noise
    (any noise model: gated Bernoulli–Gaussian, shot noise, clamping, and random phase when
    ``spec.phase`` is None); the flattened activations of each layer go to ``estimator``:

    * "bias_corrected" (default) / "naive": `linear_fisher_from_samples`, with the standard
      error √`linear_fisher_variance` (at the estimate floored at 0) as coordinate ``stderr``;
      needs 2T − N − 3 > 0, else a ValueError names the layer, T and N;
    * "shrinkage": `linear_fisher_shrinkage`; "pca": `linear_fisher_pca` (``n_components``
      option); both for layers with many units (N ≳ 2T);
    * "decoder": `decoder_fisher` (``ridge``, ``n_folds`` options).

    Layers: "input" (pixels), blocks ("head" is the raw output vector) and "output" (the
    decoded angle θ̂ with wrapped statistics, see `paired_responses`); default
    [last block, "output"]. ``n_boot`` > 0 adds a percentile bootstrap interval over trials
    (`bootstrap_fisher`, seed = angle index) as coordinates ``ci_low``, ``ci_high``. With
    random phases the result is the linear FI of the
    phase-marginal response distribution, a lower bound on its full (marginal) FI; with a
    fixed phase it is the linear FI at that phase. Finite differences of means make f′ exact
    to O(Δθ²): keep Δθ small against the curve's structure, but the estimator's variance grows
    as Δθ shrinks (the 2N/(TΔθ²) term).
    """
    if estimator not in SAMPLED_ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(SAMPLED_ESTIMATORS)}, got "
                         f"{estimator!r}")
    dtheta = check_dtheta(dtheta)
    n_trials = check_positive_int("n_trials", n_trials, 2)
    names = [model.block_names[-1], OUTPUT] if layers is None else (
        [layers] if isinstance(layers, str) else list(layers))
    order = block_order(model)
    bad = [n for n in names if n not in order]
    if bad or not names:
        raise ValueError(f"layers {names!r} must be a non-empty subset of {order}")
    names = [n for n in order if n in set(names)]
    theta = to_numpy(angles, "angles")
    if theta.ndim != 1 or theta.size == 0 or not np.isfinite(theta).all():
        raise ValueError(f"angles must be a non-empty finite 1-D array, got {angles!r}")
    allowed = {"bias_corrected": (), "naive": (), "shrinkage": (), "pca": ("n_components",),
               "decoder": ("ridge", "n_folds", "seed")}[estimator]
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise ValueError(f"options {extra} do not apply to estimator {estimator!r} "
                         f"(allowed: {list(allowed)})")
    n_boot = check_positive_int("n_boot", n_boot, 0)
    values = np.full((len(names), theta.size), np.nan)
    stderr = np.full((len(names), theta.size), np.nan)
    ci = np.full((2, len(names), theta.size), np.nan)
    units = {}
    for k, th in enumerate(theta):
        pairs = paired_responses(model, spec, float(th), dtheta, n_trials, names, generator,
                                 batch_size)
        for i, name in enumerate(names):
            rm, rp = pairs[name]
            units[name] = rm.shape[1]
            n_units = active_units(rm, rp)[0].shape[1]  # what the linear estimator uses
            if estimator in ("bias_corrected", "naive"):
                if 2 * n_trials - n_units - 3 <= 0:
                    raise ValueError(
                        f"layer {name!r} has N={n_units} varying units but n_trials "
                        f"T={n_trials}: "
                        f"the linear estimator needs 2T - N - 3 > 0; use estimator='pca' or "
                        f"'shrinkage', or more trials")
                values[i, k] = linear_fisher_from_samples(
                    rm, rp, dtheta, bias_corrected=estimator == "bias_corrected")
                if estimator == "bias_corrected" and 2 * n_trials - n_units - 5 > 0:
                    stderr[i, k] = math.sqrt(linear_fisher_variance(
                        max(values[i, k], 0.0), n_trials, n_units, dtheta))
            elif estimator == "shrinkage":
                values[i, k] = linear_fisher_shrinkage(rm, rp, dtheta)
            elif estimator == "pca":
                values[i, k] = linear_fisher_pca(rm, rp, dtheta, **options)
            else:
                values[i, k] = decoder_fisher(rm, rp, dtheta, **options)
            if n_boot:
                ci[:, i, k] = bootstrap_fisher(
                    rm, rp, dtheta, _sampled_estimator(estimator, options), n_boot, level,
                    seed=k)[1:]
    da = fisher_dataarray(
        values, theta, names, f"sampled_{estimator}",
        quantity=_SAMPLED_QUANTITY[estimator] + (
            " over random phases: a lower bound on the phase-marginal Fisher information"
            if spec.phase is None else " at the spec's fixed phase"),
        dtheta=dtheta, n_trials=n_trials, noise_model=_noise_description(spec),
        **{f"option_{k}": v for k, v in options.items()},
    )
    da = da.assign_coords(n_units=("layer", [units[n] for n in names]))
    if n_boot:
        da = da.assign_coords(ci_low=(("layer", "angle"), ci[0]),
                              ci_high=(("layer", "angle"), ci[1]))
        da.attrs["ci"] = f"{level:.0%} percentile bootstrap over trials, {n_boot} resamples"
    if estimator == "bias_corrected":
        da = da.assign_coords(stderr=(("layer", "angle"), stderr))
        da["stderr"].attrs = {"units": "rad^-2", "long_name": "analytic standard error "
                              "(Kanitscheider et al. 2015) at the estimate"}
    return da


def _sampled_estimator(estimator: str, options: dict[str, Any]) -> Callable[..., float]:
    """The array-level estimator behind ``sampled_fisher(estimator=...)``."""
    if estimator in ("bias_corrected", "naive"):
        corrected = estimator == "bias_corrected"
        return lambda rm, rp, d: linear_fisher_from_samples(rm, rp, d, corrected)
    if estimator == "shrinkage":
        return linear_fisher_shrinkage
    if estimator == "pca":
        return lambda rm, rp, d: linear_fisher_pca(rm, rp, d, **options)
    return lambda rm, rp, d: decoder_fisher(rm, rp, d, **options)


def estimator_fisher(
    model: torch.nn.Module,
    spec: GratingSpec,
    angles: ArrayLike,
    dtheta: float = 0.05,
    n_trials: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    bias_corrected: bool = True,
) -> xr.DataArray:
    """Output (estimator) Fisher information of the decoded angle θ̂, with its bias and d′.

    The Cramér–Rao bound with bias: Var(θ̂) ≥ (∂E[θ̂]/∂θ)² / J, so
    J_out(θ) = (∂E[θ̂]/∂θ)² / Var(θ̂) is the information the estimator θ̂ itself carries
    (≤ the FI of the image; Kay 1993, Fundamentals of Statistical Signal Processing I, §3.4).
    ``n_trials`` noisy images at θ ∓ Δθ/2 are decoded; statistics are wrapped on the
    half-circle (`paired_responses`: deviations from the circular mean wrapped to
    [−π/2, π/2)). ∂E[θ̂]/∂θ = (mean θ̂₊ − mean θ̂₋)/Δθ and Var(θ̂) the pooled variance, so J is
    the one-unit case of `linear_fisher_from_samples`: bias-corrected (Kanitscheider et al.
    2015, N = 1) by default, else the naive ratio.

    Returns a DataArray "fisher" over ``angle`` (method "estimator") with coordinates
    ``mean_decoded`` (circular mean of θ̂ at θ, from both sides), ``bias`` (mean_decoded − θ,
    wrapped), ``derivative`` (∂E[θ̂]/∂θ), ``variance`` (Var θ̂), ``d_prime`` (the
    discriminability of θ ∓ Δθ/2 from θ̂, (mean θ̂₊ − mean θ̂₋)/√Var) and ``stderr``.
    """
    dtheta = check_dtheta(dtheta)
    n_trials = check_positive_int("n_trials", n_trials, 3)
    theta = to_numpy(angles, "angles")
    if theta.ndim != 1 or theta.size == 0 or not np.isfinite(theta).all():
        raise ValueError(f"angles must be a non-empty finite 1-D array, got {angles!r}")
    cols = {key: np.empty(theta.size) for key in
            ("fisher", "mean", "derivative", "variance", "d_prime", "stderr")}
    for k, th in enumerate(theta):
        rm, rp = paired_responses(model, spec, float(th), dtheta, n_trials, OUTPUT, generator,
                                  batch_size)[OUTPUT]
        diff = float(rp.mean() - rm.mean())
        var = float((rm.var(ddof=1) + rp.var(ddof=1)) / 2)
        cols["mean"][k] = ang.wrap(float(np.concatenate([rm, rp]).mean()))
        cols["derivative"][k] = diff / dtheta
        cols["variance"][k] = var
        cols["d_prime"][k] = diff / math.sqrt(var) if var > 0 else np.inf
        if var > 0:
            j = linear_fisher_from_samples(rm, rp, dtheta, bias_corrected)
            se = math.sqrt(linear_fisher_variance(max(j, 0.0), n_trials, 1, dtheta)) \
                if bias_corrected and 2 * n_trials > 6 else np.nan
        else:
            j, se = np.inf, np.nan
        cols["fisher"][k], cols["stderr"][k] = j, se
    da = fisher_dataarray(
        cols["fisher"], theta, None, "estimator",
        quantity=("output (estimator) Fisher information of the decoded angle, "
                  "(dE[theta_hat]/dtheta)^2 / Var(theta_hat) (Cramer-Rao with bias), wrapped "
                  "statistics on the half-circle" + (", bias-corrected" if bias_corrected
                                                     else ", naive")),
        dtheta=dtheta, n_trials=n_trials, noise_model=_noise_description(spec),
    )
    return da.assign_coords(
        mean_decoded=("angle", cols["mean"]),
        bias=("angle", ang.difference(cols["mean"], theta)),
        derivative=("angle", cols["derivative"]),
        variance=("angle", cols["variance"]),
        d_prime=("angle", cols["d_prime"]),
        stderr=("angle", cols["stderr"]),
    )


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
