"""One call for a study: several Fisher-information estimators on one network, one Dataset.

`measure_fisher` runs the requested estimators of :mod:`anglesim.fisher` on one network and
stimulus and returns an ``xarray.Dataset`` with dims (``estimator``, ``layer``, ``angle``):

* ``fisher`` — J in rad⁻² (NaN where a method does not measure a layer);
* ``fisher_error`` — the propagated Krylov solver's error estimate (0 for exact values, NaN
  for the other methods);
* ``stderr`` — the analytic standard error where the method has one, else NaN;
* ``threshold`` — the discrimination threshold d′/√J at d′ = 1 (radians; NaN where J ≤ 0);
* ``quantity`` (coordinate over ``estimator``) — what each method estimates, in words;
* ``prior_density`` (``angle``) — the prior's density, when a prior is given;
* ``decoded_bias``, ``d_prime`` (``angle``) — from the "estimator" method when it runs.

Select a method with ``ds.sel(estimator="propagated")`` (the dimension was called
``method`` before, which collided with ``Dataset.sel``'s own ``method=`` keyword).

Every method's own attrs (noise model, σ, ridge, …) are kept as a JSON string in
``attrs["method_attrs"]``; `method_result` gives one method back as the DataArray its
estimator returned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import validation as check
from .base import (
    INPUT,
    OUTPUT,
    ArrayLike,
    check_device,
    check_generator,
    fisher_dataarray,
    to_numpy,
)
from .network import Network
from .output_noise import output_noise_fisher
from .propagated import propagated_fisher
from .sampled import estimator_fisher, sampled_fisher
from .savgol import savgol_fisher
from .stimulus import Stimulus, as_stimulus

__all__ = ["METHODS", "measure_fisher", "method_result"]

METHODS: dict[str, str] = {
    "propagated": "propagated_fisher: linearised FI of additive Gaussian noise (pixels or "
                  "noise_at), phase-conditional",
    "output_gaussian": "output_noise_fisher(noise='gaussian'): |A xdot|^2 / output_sigma^2",
    "output_poisson": "output_noise_fisher(noise='poisson'): sum v_i^2 / f_i",
    "bias_corrected": "sampled_fisher(estimator='bias_corrected')",
    "naive": "sampled_fisher(estimator='naive')",
    "shrinkage": "sampled_fisher(estimator='shrinkage')",
    "pca": "sampled_fisher(estimator='pca')",
    "decoder": "sampled_fisher(estimator='decoder')",
    "estimator": "estimator_fisher: (dE[theta_hat]/dtheta)^2 / Var(theta_hat)",
    "savgol": "savgol_fisher (reference), interpolated from its dense grid",
}
"""The methods `measure_fisher` knows, and the function behind each."""

_SAMPLED = ("bias_corrected", "naive", "shrinkage", "pca", "decoder")


def measure_fisher(
    model: torch.nn.Module,
    spec: Any,
    prior: Any = None,
    methods: Sequence[str] = ("propagated",),
    layers: Sequence[str] | None = None,
    angles: ArrayLike | int = 48,
    *,
    sigma: float | None = None,
    eps: float = 1e-6,
    noise_at: str = INPUT,
    phases: ArrayLike | None = None,
    output_sigma: float = 1.0,
    poisson_gain: float = 1.0,
    poisson_baseline: float = 0.0,
    dtheta: float = 0.05,
    n_trials: int = 1000,
    generator: torch.Generator | None = None,
    sampled_options: Mapping[str, Any] | None = None,
    savgol_options: Mapping[str, Any] | None = None,
    batch_size: int = 1000,
    chunk_size: int = 4,
    device: torch.device | str | None = None,
    solver: str = "auto",
    rtol: float = 1e-3,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    force: bool = False,
) -> xr.Dataset:
    """Run several Fisher-information estimators on one network; one Dataset back.

    Args:
        model: any torch.nn.Module (layers as in `list_layers`).
        spec: a GratingSpec, Stimulus or callable stimulus (see `as_stimulus`); its noise
            is what the sampled methods see, and what "propagated" propagates (pixel noise
            of std ``sigma``, default the stimulus's own).
        prior: an angle prior with ``.pdf(theta)`` (anglesim.distributions); its density on
            the grid is stored as ``prior_density``. None stores nothing.
        methods: names from `METHODS` — "propagated", "output_gaussian", "output_poisson",
            the sampled "bias_corrected", "naive", "shrinkage", "pca", "decoder" (see
            `anglesim.fisher.sampled_fisher`), "estimator" (decoded angle) and "savgol".
        layers: layers to measure (names among "input", the blocks, "output"); each method
            measures the ones it can and leaves NaN elsewhere. Default: every layer for the
            propagated and output-noise methods, [last block, "output"] for the sampled ones,
            "output" for "estimator" and "savgol".
        angles: the angle grid (radians), or a number n for θ_k = kπ/n.
        sigma, eps, noise_at, phases: `propagated_fisher` options.
        output_sigma, poisson_gain, poisson_baseline: `output_noise_fisher` options.
        dtheta, n_trials, generator: sampled methods' Δθ, trials per side, and the random
            source (used by the sampled methods in the order given in ``methods``).
        sampled_options: extra keyword options of `sampled_fisher` (n_components, ridge,
            n_folds, n_boot, level).
        savgol_options: keyword options of `savgol_fisher` (n_dense, window, …).
        batch_size, chunk_size, device: memory and placement knobs.
        solver, rtol, force: `propagated_fisher`'s solver, tolerance and cost-guard override.
        decode: callable from the model's outputs to θ̂, for models without a decode.

    Returns:
        Dataset described in the module docstring; attrs hold the options as JSON
        (``config``) and each method's attrs (``method_attrs``).
    """
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct names from {list(METHODS)}, got "
                         f"{methods!r}")
    output_sigma = check.real("output_sigma", output_sigma, minimum=0.0, min_open=True)
    check_generator(generator)
    check_device(device)
    stim = as_stimulus(spec)
    grid = _grid(angles)
    net = Network(model, decode)
    order = net.layers
    if layers is not None:
        layers = net.resolve(layers)
    results: dict[str, xr.DataArray] = {}
    for method in methods:
        results[method] = _run(method, model, stim, grid, layers, net, locals_=dict(
            sigma=sigma, eps=eps, noise_at=noise_at, phases=phases, output_sigma=output_sigma,
            poisson_gain=poisson_gain, poisson_baseline=poisson_baseline, dtheta=dtheta,
            n_trials=n_trials, generator=generator, sampled_options=dict(sampled_options or {}),
            savgol_options=dict(savgol_options or {}), batch_size=batch_size,
            chunk_size=chunk_size, device=device, solver=solver, rtol=rtol, decode=decode,
            force=force))
    measured = {str(n) for r in results.values() for n in r["layer"].values}
    names = [n for n in order if n in measured] + sorted(measured - set(order))
    shape = (len(methods), len(names), grid.size)
    fisher = np.full(shape, np.nan)
    stderr = np.full(shape, np.nan)
    error = np.full(shape, np.nan)
    for i, method in enumerate(methods):
        res = results[method]
        for name in res["layer"].values:
            j = names.index(str(name))
            fisher[i, j] = res.sel(layer=name).values
            if "stderr" in res.coords:
                stderr[i, j] = res["stderr"].sel(layer=name).values
            if "fisher_error" in res.coords:
                error[i, j] = res["fisher_error"].sel(layer=name).values
    with np.errstate(divide="ignore", invalid="ignore"):
        threshold = np.where(fisher > 0, 1.0 / np.sqrt(np.where(fisher > 0, fisher, 1.0)),
                             np.nan)
    dims = ("estimator", "layer", "angle")
    ds = xr.Dataset(
        {
            "fisher": (dims, fisher, {"units": "rad^-2", "long_name": "Fisher information"}),
            "stderr": (dims, stderr, {"units": "rad^-2",
                                      "long_name": "standard error of the FI estimate"}),
            "fisher_error": (dims, error, {"units": "rad^-2", "long_name":
                                           "estimated error of the propagated solver"}),
            "threshold": (dims, threshold, {"units": "rad", "long_name":
                                            "discrimination threshold at d' = 1, 1/sqrt(J)"}),
        },
        coords={
            "estimator": np.array(methods, dtype=object),
            "layer": np.array(names, dtype=object),
            "angle": grid,
            "quantity": ("estimator", np.array([results[m].attrs.get("quantity", METHODS[m])
                                             for m in methods], dtype=object)),
        },
    )
    if prior is not None:
        ds["prior_density"] = ("angle", np.asarray(prior.pdf(grid), dtype=np.float64),
                               {"units": "1/rad", "long_name": "prior density"})
    if "estimator" in results:
        est = results["estimator"]
        ds["decoded_bias"] = ("angle", est["bias"].values,
                              {"units": "rad", "long_name": "bias of the decoded angle, "
                               "circular mean of theta_hat minus theta"})
        ds["d_prime"] = ("angle", est["d_prime"].values,
                         {"long_name": f"d' of theta -/+ {dtheta / 2:g} from theta_hat"})
    ds.attrs["method_attrs"] = json.dumps(
        {m: _jsonable(r.attrs) for m, r in results.items()}, sort_keys=True)
    ds.attrs["config"] = json.dumps(_jsonable(dict(
        spec=stim.to_config(), methods=methods, sigma=sigma, eps=eps, noise_at=noise_at,
        solver=solver, rtol=rtol,
        output_sigma=output_sigma, poisson_gain=poisson_gain,
        poisson_baseline=poisson_baseline, dtheta=dtheta, n_trials=n_trials,
        sampled_options=dict(sampled_options or {}),
        savgol_options=dict(savgol_options or {}))), sort_keys=True)
    return ds


def method_result(ds: xr.Dataset, method: str) -> xr.DataArray:
    """One method's FI from a `measure_fisher` Dataset, dims (layer, angle), with the attrs
    its estimator gave it; layers the method did not measure are dropped."""
    dim = "estimator" if "estimator" in ds["fisher"].dims else "method"  # older datasets
    if method not in ds[dim].values:
        raise ValueError(f"method must be one of {list(ds[dim].values)}, got {method!r}")
    da = ds["fisher"].sel({dim: method}, drop=True)
    da = da.dropna("layer", how="all").drop_vars("quantity", errors="ignore")
    da.attrs = dict(json.loads(ds.attrs["method_attrs"])[method])
    da.name = "fisher"
    return da


def _grid(angles: ArrayLike | int) -> np.ndarray:
    if isinstance(angles, int | np.integer) and not isinstance(angles, bool):
        if angles < 1:
            raise ValueError(f"angles must be >= 1 when a count, got {angles!r}")
        return np.arange(int(angles)) * (math.pi / int(angles))
    grid = to_numpy(angles, "angles")
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise ValueError(f"angles must be a count or a finite 1-D array, got {angles!r}")
    return grid


def _pick(layers: list[str] | None, allowed: list[str]) -> list[str] | None:
    """None (the estimator's default) or the requested layers the estimator can measure."""
    if layers is None:
        return None
    return [n for n in layers if n in set(allowed)]


def _run(method: str, model: torch.nn.Module, stim: Stimulus, grid: np.ndarray,
         layers: list[str] | None, net: Network, locals_: dict[str, Any]) -> xr.DataArray:
    """One method's DataArray over (layer, angle) (empty layer dim when it measures none)."""
    o = locals_
    order, blocks = net.layers, net.blocks
    common = dict(device=o["device"], decode=o["decode"])
    if method == "propagated":
        if o["noise_at"] not in order[:-1]:
            raise ValueError(f"noise_at must be 'input' or a layer name among {blocks}, got "
                             f"{o['noise_at']!r}")
        names = _pick(layers, order[order.index(o["noise_at"]):] if net.native else order)
        if names == []:
            return _empty(grid, method)
        return propagated_fisher(model, stim, grid, names, sigma=o["sigma"], eps=o["eps"],
                                 phases=o["phases"], chunk_size=o["chunk_size"],
                                 noise_at=o["noise_at"], solver=o["solver"], rtol=o["rtol"],
                                 force=o["force"], **common)
    if method in ("output_gaussian", "output_poisson"):
        noise = method.split("_")[1]
        allowed = blocks + ([OUTPUT] if noise == "gaussian" or not net.decoded else [])
        names = _pick(layers, allowed)
        if names == []:
            return _empty(grid, method)
        return output_noise_fisher(model, stim, grid, names, noise=noise,
                                   sigma=o["output_sigma"], gain=o["poisson_gain"],
                                   baseline=o["poisson_baseline"], phases=o["phases"],
                                   **common)
    if method in _SAMPLED:
        names = _pick(layers, order)
        if names == []:
            return _empty(grid, method)
        return sampled_fisher(model, stim, grid, names, estimator=method,
                              dtheta=o["dtheta"], n_trials=o["n_trials"],
                              generator=o["generator"], batch_size=o["batch_size"],
                              **common, **o["sampled_options"])
    if method == "estimator":
        if layers is not None and OUTPUT not in layers:
            return _empty(grid, method)
        res = estimator_fisher(model, stim, grid, dtheta=o["dtheta"], n_trials=o["n_trials"],
                               generator=o["generator"], batch_size=o["batch_size"], **common)
        out = res.expand_dims(layer=[OUTPUT])
        return out.assign_coords(stderr=(("layer", "angle"), res["stderr"].values[None]))
    # savgol: the decoded angle (or the raw output, the last block) on a dense grid,
    # interpolated periodically to ours
    opts = {"batch_size": o["batch_size"], **o["savgol_options"]}
    raw = opts.get("output", "decoded") != "decoded"
    name = blocks[-1] if raw and net.native else OUTPUT
    if layers is not None and name not in layers:
        return _empty(grid, method)
    dense = savgol_fisher(model, stim, generator=o["generator"], **common, **opts)
    values = np.interp(grid, dense["angle"].values, dense.values, period=math.pi)
    attrs = {k: v for k, v in dense.attrs.items() if k != "method"}
    return fisher_dataarray(values[None], grid, [name], "savgol", **attrs)


def _empty(grid: np.ndarray, method: str) -> xr.DataArray:
    return fisher_dataarray(np.empty((0, grid.size)), grid, [], method)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)
