"""One call for a study: several Fisher-information estimators on one network, one Dataset.

`measure_fisher` runs the requested estimators of :mod:`anglesim.fisher` on one network and
stimulus and returns an ``xarray.Dataset`` with dims (``method``, ``layer``, ``angle``):

* ``fisher`` — J in rad⁻² (NaN where a method does not measure a layer);
* ``stderr`` — the analytic standard error where the method has one, else NaN;
* ``threshold`` — the discrimination threshold d′/√J at d′ = 1 (radians; NaN where J ≤ 0);
* ``quantity`` (coordinate over ``method``) — what each method estimates, in words;
* ``prior_density`` (``angle``) — the prior's density, when a prior is given;
* ``decoded_bias``, ``d_prime`` (``angle``) — from the "estimator" method when it runs.

Select a method with a dict, ``ds.sel({"method": "propagated"})``: ``method=`` is a keyword
of ``sel`` itself (the inexact-match mode), so ``ds.sel(method="propagated")`` does not select.

Every method's own attrs (noise model, σ, ridge, …) are kept as a JSON string in
``attrs["method_attrs"]``; `method_result` gives one method back as the DataArray its
estimator returned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..stimuli import GratingSpec
from .base import INPUT, OUTPUT, ArrayLike, block_order, fisher_dataarray, to_numpy
from .output_noise import output_noise_fisher
from .propagated import propagated_fisher
from .sampled import estimator_fisher, sampled_fisher
from .savgol import savgol_fisher

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
    spec: GratingSpec,
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
) -> xr.Dataset:
    """Run several Fisher-information estimators on one network; one Dataset back.

    Args:
        model: an AngleNet.
        spec: the stimulus; its noise is what the sampled methods see, and what
            "propagated" propagates (pixel noise of std ``sigma``, default spec.noise_std).
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

    Returns:
        Dataset described in the module docstring; attrs hold the options as JSON
        (``config``) and each method's attrs (``method_attrs``).
    """
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods {methods!r} must be distinct names from {list(METHODS)}")
    grid = _grid(angles)
    order = block_order(model)
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in layers if n not in order]
        if bad or not layers:
            raise ValueError(f"layers {layers!r} must be a non-empty subset of {order}")
    blocks = list(model.block_names)
    results: dict[str, xr.DataArray] = {}
    for method in methods:
        results[method] = _run(method, model, spec, grid, layers, blocks, locals_=dict(
            sigma=sigma, eps=eps, noise_at=noise_at, phases=phases, output_sigma=output_sigma,
            poisson_gain=poisson_gain, poisson_baseline=poisson_baseline, dtheta=dtheta,
            n_trials=n_trials, generator=generator, sampled_options=dict(sampled_options or {}),
            savgol_options=dict(savgol_options or {}), batch_size=batch_size,
            chunk_size=chunk_size, device=device))
    measured = {str(n) for r in results.values() for n in r["layer"].values}
    names = [n for n in order if n in measured]
    shape = (len(methods), len(names), grid.size)
    fisher = np.full(shape, np.nan)
    stderr = np.full(shape, np.nan)
    for i, method in enumerate(methods):
        res = results[method]
        for name in res["layer"].values:
            j = names.index(str(name))
            fisher[i, j] = res.sel(layer=name).values
            if "stderr" in res.coords:
                stderr[i, j] = res["stderr"].sel(layer=name).values
    with np.errstate(divide="ignore", invalid="ignore"):
        threshold = np.where(fisher > 0, 1.0 / np.sqrt(np.where(fisher > 0, fisher, 1.0)),
                             np.nan)
    dims = ("method", "layer", "angle")
    ds = xr.Dataset(
        {
            "fisher": (dims, fisher, {"units": "rad^-2", "long_name": "Fisher information"}),
            "stderr": (dims, stderr, {"units": "rad^-2",
                                      "long_name": "standard error of the FI estimate"}),
            "threshold": (dims, threshold, {"units": "rad", "long_name":
                                            "discrimination threshold at d' = 1, 1/sqrt(J)"}),
        },
        coords={
            "method": np.array(methods, dtype=object),
            "layer": np.array(names, dtype=object),
            "angle": grid,
            "quantity": ("method", np.array([results[m].attrs.get("quantity", METHODS[m])
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
        spec=spec.to_config(), methods=methods, sigma=sigma, eps=eps, noise_at=noise_at,
        output_sigma=output_sigma, poisson_gain=poisson_gain,
        poisson_baseline=poisson_baseline, dtheta=dtheta, n_trials=n_trials,
        sampled_options=dict(sampled_options or {}),
        savgol_options=dict(savgol_options or {}))), sort_keys=True)
    return ds


def method_result(ds: xr.Dataset, method: str) -> xr.DataArray:
    """One method's FI from a `measure_fisher` Dataset, dims (layer, angle), with the attrs
    its estimator gave it; layers the method did not measure are dropped."""
    if method not in ds["method"].values:
        raise ValueError(f"method must be one of {list(ds['method'].values)}, got {method!r}")
    da = ds["fisher"].sel({"method": method}, drop=True)  # sel(method=...) is sel's own
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


def _pick(layers: list[str] | None, allowed: list[str], default: list[str]) -> list[str]:
    if layers is None:
        return default
    return [n for n in allowed if n in set(layers)]


def _run(method: str, model: torch.nn.Module, spec: GratingSpec, grid: np.ndarray,
         layers: list[str] | None, blocks: list[str], locals_: dict[str, Any]) -> xr.DataArray:
    """One method's DataArray over (layer, angle) (empty layer dim when it measures none)."""
    o = locals_
    if method == "propagated":
        order = [INPUT, *blocks, OUTPUT]
        allowed = order[order.index(o["noise_at"]):]
        names = _pick(layers, allowed, allowed)
        if not names:
            return _empty(grid, method)
        return propagated_fisher(model, spec, grid, names, sigma=o["sigma"], eps=o["eps"],
                                   phases=o["phases"], chunk_size=o["chunk_size"],
                                   device=o["device"], noise_at=o["noise_at"])
    if method in ("output_gaussian", "output_poisson"):
        noise = method.split("_")[1]
        allowed = blocks + ([OUTPUT] if noise == "gaussian" else [])
        names = _pick(layers, allowed, allowed)
        if not names:
            return _empty(grid, method)
        return output_noise_fisher(model, spec, grid, names, noise=noise,
                                     sigma=o["output_sigma"], gain=o["poisson_gain"],
                                     baseline=o["poisson_baseline"], phases=o["phases"],
                                     device=o["device"])
    if method in _SAMPLED:
        names = _pick(layers, [INPUT, *blocks, OUTPUT], [blocks[-1], OUTPUT])
        if not names:
            return _empty(grid, method)
        return sampled_fisher(model, spec, grid, names, estimator=method,
                                dtheta=o["dtheta"], n_trials=o["n_trials"],
                                generator=o["generator"], batch_size=o["batch_size"],
                                **o["sampled_options"])
    if method == "estimator":
        if layers is not None and OUTPUT not in layers:
            return _empty(grid, method)
        res = estimator_fisher(model, spec, grid, dtheta=o["dtheta"], n_trials=o["n_trials"],
                                 generator=o["generator"], batch_size=o["batch_size"])
        out = res.expand_dims(layer=[OUTPUT])
        return out.assign_coords(stderr=(("layer", "angle"), res["stderr"].values[None]))
    # savgol: the decoded angle (or the raw output, the last block) on a dense grid,
    # interpolated periodically to ours
    opts = {"batch_size": o["batch_size"], **o["savgol_options"]}
    name = OUTPUT if opts.get("output", "decoded") == "decoded" else blocks[-1]
    if layers is not None and name not in layers:
        return _empty(grid, method)
    dense = savgol_fisher(model, spec, generator=o["generator"], **opts)
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
