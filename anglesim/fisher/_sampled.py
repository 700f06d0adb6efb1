"""Fisher information of a network's layers from its responses to noisy gratings.

`sample_responses` and `paired_responses` draw the responses; `sampled_fisher` applies the
array estimators of :mod:`anglesim.fisher._arrays` per layer and angle; `estimator_fisher` is
the decoded angle's (∂E[θ̂]/∂θ)²/Var θ̂ with its bias and d′.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import angles as ang
from .. import validation as check
from ._arrays import (
    BOOTSTRAP_METHODS,
    DECODER_OPTIONS,
    active_units,
    bootstrap_fisher,
    decoder_fisher,
    linear_fisher_from_samples,
    linear_fisher_pca,
    linear_fisher_shrinkage,
    linear_fisher_variance,
)
from ._base import (
    ANGLES,
    DECODE,
    DEVICE,
    DTHETA,
    GENERATOR,
    LAYERS,
    LEVEL,
    MODEL,
    OUTPUT,
    ArrayLike,
    eval_mode,
    fisher_dataarray,
    model_on_device,
)
from ._intervals import linear_fisher_interval
from ._network import Network
from ._stimulus import STIMULUS, as_stimulus

__all__ = [
    "SAMPLED_ESTIMATORS",
    "estimator_fisher",
    "paired_responses",
    "sample_responses",
    "sampled_fisher",
]

SAMPLING = {"generator": GENERATOR, "batch_size": check.Integer(minimum=1), "decode": DECODE,
            "device": DEVICE}
"""The arguments every sampling estimator takes: random source, batch size, decode, device."""
RESPONSE_PARAMETERS = {"model": MODEL, "spec": STIMULUS, "angles": ANGLES, "layers": LAYERS,
                       **SAMPLING}
PAIRED_PARAMETERS = {"model": MODEL, "spec": STIMULUS, "theta": check.Real(),
                     "dtheta": DTHETA, "n_trials": check.Integer(minimum=2), "layers": LAYERS,
                     **SAMPLING}


def sample_responses(
    model: torch.nn.Module,
    spec: Any,
    angles: ArrayLike,
    layers: list[str] | tuple[str, ...] | str,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    *,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, np.ndarray]:
    """Responses of ``layers`` to one noisy image per entry of ``angles``: {layer: [n, N]}.

    Images come from the stimulus's noisy renderer (a spec's ``render(angles, spec,
    generator)`` — its own noise, and a random phase per image when ``spec.phase`` is None —
    or x(θ) + √V ⊙ ε for a callable, see `as_stimulus`) in batches of ``batch_size`` (the
    random numbers drawn depend on the batch size). Layer names: those of `list_layers`
    ("input" the pixels, flattened activations of the blocks or modules, "output" the decoded
    angle θ̂ in [0, π) when the model has a decode or ``decode`` is given, else the raw output
    vector). The model runs in eval mode without gradients on ``device`` (default its own) in
    its own dtype; results are float64 numpy arrays.
    """
    args = check.validate(locals(), RESPONSE_PARAMETERS)
    batch_size = args["batch_size"]
    stim = as_stimulus(spec)
    model, dev, dtype = model_on_device(model, device)
    net = Network(model, decode)
    layers = net.resolve(layers)
    theta = torch.as_tensor(args["angles"], dtype=torch.float64, device=dev)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with eval_mode(model), torch.no_grad():
        for start in range(0, theta.numel(), batch_size):
            x = stim.noisy(theta[start:start + batch_size], generator, dtype=dtype)
            for name, r in zip(layers, net.outputs(x, layers), strict=True):
                out[name].append(r.double().cpu())
    return {name: torch.cat(parts).numpy() for name, parts in out.items()}


SAMPLED_ESTIMATORS = ("bias_corrected", "naive", "shrinkage", "pca", "decoder")
ESTIMATOR_OPTIONS: dict[str, dict[str, check.Constraint]] = {
    "bias_corrected": {}, "naive": {}, "shrinkage": {},
    "pca": {"n_components": check.Optional(check.Integer(minimum=1))},
    "decoder": DECODER_OPTIONS,
}
"""The options (``**options``) of `sampled_fisher` per estimator."""
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
    spec: Any,
    theta: float,
    dtheta: float,
    n_trials: int,
    layers: list[str] | tuple[str, ...] | str,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    *,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (r_minus, r_plus)}: ``n_trials`` independent noisy responses at θ ∓ Δθ/2.

    The trials at θ − Δθ/2 are drawn first, then those at θ + Δθ/2 (`sample_responses`). The
    decoded angle ("output", when the model has a decode or ``decode`` is given) is returned
    unwrapped around the circular mean c of all 2T
    decoded angles, as c + difference(θ̂, c), so that its arithmetic means and variances are the
    wrapped statistics on the half-circle (valid while the spread is well below π/2).
    """
    args = check.validate(locals(), PAIRED_PARAMETERS)
    theta, dtheta, n_trials = args["theta"], args["dtheta"], args["n_trials"]
    angles = np.concatenate([np.full(n_trials, theta - dtheta / 2),
                             np.full(n_trials, theta + dtheta / 2)])
    resp = sample_responses(model, spec, angles, layers, generator, batch_size, decode=decode,
                            device=device)
    decoded = Network(model, decode).decoded
    out = {}
    for name, r in resp.items():
        if name == OUTPUT and decoded:
            centre = ang.circular_mean(r[:, 0])
            r = centre + ang.difference(r, centre)
        out[name] = (r[:n_trials], r[n_trials:])
    return out


def sampled_fisher(
    model: torch.nn.Module,
    spec: Any,
    angles: ArrayLike,
    layers: list[str] | tuple[str, ...] | str | None = None,
    estimator: str = "bias_corrected",
    dtheta: float = 0.05,
    n_trials: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    n_boot: int = 0,
    level: float = 0.95,
    *,
    ci_method: str = "auto",
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
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
    [last block, "output"]. ``n_boot`` > 0 adds a ``level`` confidence interval as
    coordinates ``ci_low``, ``ci_high``, by ``ci_method`` (`bootstrap_fisher`'s methods):
    "auto" is the exact noncentral-F interval (`linear_fisher_interval`, no resampling) for
    "bias_corrected" and "naive" — the percentile bootstrap it replaced covered 59% on a linear
    layer at N = 20, T = 100 — and a percentile bootstrap over trials (``n_boot`` resamples,
    seed = angle index) for the others; "shifted" and "percentile" ask for those. With
    random phases the result is the linear FI of the
    phase-marginal response distribution, a lower bound on its full (marginal) FI; with a
    fixed phase it is the linear FI at that phase. Finite differences of means make f′ exact
    to O(Δθ²): keep Δθ small against the curve's structure, but the estimator's variance grows
    as Δθ shrinks (the 2N/(TΔθ²) term).
    """
    args = check.validate(locals(), SAMPLED_PARAMETERS)
    estimator, dtheta, n_trials = args["estimator"], args["dtheta"], args["n_trials"]
    n_boot, level, ci_method = args["n_boot"], args["level"], args["ci_method"]
    options = check.validate(options, ESTIMATOR_OPTIONS[estimator],
                             owner=f"estimator {estimator!r}", partial=True)
    stim = as_stimulus(spec)
    net = Network(model, decode)
    names = net.resolve(layers, default=[net.default_layers[-2], OUTPUT])
    theta = args["angles"]
    linear = estimator in ("bias_corrected", "naive")
    if ci_method == "auto":
        ci_method = "exact" if linear else "percentile"
    if ci_method == "exact" and not linear:
        raise check.fail("ci_method", "'exact' only for estimator 'bias_corrected' or "
                         "'naive'", ci_method)
    values = np.full((len(names), theta.size), np.nan)
    stderr = np.full((len(names), theta.size), np.nan)
    ci = np.full((2, len(names), theta.size), np.nan)
    units = {}
    for k, th in enumerate(theta):
        pairs = paired_responses(model, stim, float(th), dtheta, n_trials, names, generator,
                                 batch_size, decode=decode, device=device)
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
            if n_boot and ci_method == "exact":
                ci[:, i, k] = (values[i, k],) * 2 if math.isinf(values[i, k]) or \
                    n_units == 0 else linear_fisher_interval(
                        values[i, k], n_trials, n_units, dtheta, level,
                        bias_corrected=estimator == "bias_corrected")
            elif n_boot:
                ci[:, i, k] = bootstrap_fisher(
                    rm, rp, dtheta, _sampled_estimator(estimator, options), n_boot, level,
                    seed=k, method=ci_method)[1:]
    da = fisher_dataarray(
        values, theta, names, f"sampled_{estimator}",
        quantity=_SAMPLED_QUANTITY[estimator] + (
            " over random phases: a lower bound on the phase-marginal Fisher information"
            if stim.random_phase else " at the stimulus's fixed phase"),
        dtheta=dtheta, n_trials=n_trials, noise_model=stim.describe(),
        **{f"option_{k}": v for k, v in options.items()},
    )
    da = da.assign_coords(n_units=("layer", [units[n] for n in names]))
    if n_boot:
        da = da.assign_coords(ci_low=(("layer", "angle"), ci[0]),
                              ci_high=(("layer", "angle"), ci[1]))
        da.attrs["ci"] = (
            f"{level:.0%} exact noncentral-F interval for Gaussian responses "
            "(linear_fisher_interval)" if ci_method == "exact" else
            f"{level:.0%} {ci_method} bootstrap over trials, {n_boot} resamples")
    if estimator == "bias_corrected":
        da = da.assign_coords(stderr=(("layer", "angle"), stderr))
        da["stderr"].attrs = {"units": "rad^-2", "long_name": "analytic standard error "
                              "(Kanitscheider et al. 2015) at the estimate"}
    return da


SAMPLED_PARAMETERS = {
    "model": MODEL, "spec": STIMULUS, "angles": ANGLES, "layers": LAYERS,
    "estimator": check.Choice(SAMPLED_ESTIMATORS), "dtheta": DTHETA,
    "n_trials": check.Integer(minimum=2), "n_boot": check.Integer(minimum=0), "level": LEVEL,
    "ci_method": check.Choice(BOOTSTRAP_METHODS), **SAMPLING,
    "options": check.Instance(dict, "keyword options"),
}


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


ESTIMATOR_PARAMETERS = {
    "model": MODEL, "spec": STIMULUS, "angles": ANGLES, "dtheta": DTHETA,
    "n_trials": check.Integer(minimum=3), "bias_corrected": check.Boolean(), **SAMPLING,
}


def estimator_fisher(
    model: torch.nn.Module,
    spec: Any,
    angles: ArrayLike,
    dtheta: float = 0.05,
    n_trials: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    bias_corrected: bool = True,
    *,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
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
    The model must decode an angle (a ``decode`` method, or ``decode=``).
    """
    args = check.validate(locals(), ESTIMATOR_PARAMETERS)
    dtheta, n_trials, bias_corrected = args["dtheta"], args["n_trials"], args["bias_corrected"]
    if not Network(model, decode).decoded:
        raise check.fail("decode", "a callable from the model's outputs to angles for a model "
                         "without a decode method", None)
    stim = as_stimulus(spec)
    theta = args["angles"]
    cols = {key: np.empty(theta.size) for key in
            ("fisher", "mean", "derivative", "variance", "d_prime", "stderr")}
    for k, th in enumerate(theta):
        rm, rp = paired_responses(model, stim, float(th), dtheta, n_trials, OUTPUT, generator,
                                  batch_size, decode=decode, device=device)[OUTPUT]
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
        dtheta=dtheta, n_trials=n_trials, noise_model=stim.describe(),
    )
    return da.assign_coords(
        mean_decoded=("angle", cols["mean"]),
        bias=("angle", ang.difference(cols["mean"], theta)),
        derivative=("angle", cols["derivative"]),
        variance=("angle", cols["variance"]),
        d_prime=("angle", cols["d_prime"]),
        stderr=("angle", cols["stderr"]),
    )
