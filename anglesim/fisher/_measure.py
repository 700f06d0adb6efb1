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

Select a method with ``ds.sel(estimator="propagated")``.

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
from ..distributions import as_prior
from ._base import (
    DTHETA,
    GENERATOR,
    INPUT,
    LAYERS,
    MODEL,
    OUTPUT,
    ArrayLike,
    angle_array,
    fisher_dataarray,
)
from ._network import Network
from ._output_noise import output_noise_fisher
from ._propagated import PARAMETERS as PROPAGATED
from ._propagated import propagated_fisher
from ._sampled import (
    ESTIMATOR_OPTIONS,
    SAMPLED_ESTIMATORS,
    SAMPLED_PARAMETERS,
    estimator_fisher,
    sampled_fisher,
)
from ._savgol import OPTIONS as SAVGOL_OPTIONS
from ._savgol import savgol_fisher
from ._stimulus import STIMULUS, Stimulus, as_stimulus

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
    pool_ties: str = "warn",
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
        pool_ties: "warn" or "record": what "propagated" does about tied max-pool windows
            that receive noise (`propagated_fisher`); the counts are kept either way.

    Returns:
        Dataset described in the module docstring; attrs hold the options as JSON
        (``config``), each method's attrs (``method_attrs``) and, when "propagated" runs,
        its counts of tied max-pool windows (``pool_ties_*``).
    """
    args = check.validate(locals(), PARAMETERS)
    methods, prior, grid = args["methods"], args["prior"], args["angles"]
    _check_options(args)
    stim = as_stimulus(spec)
    net = Network(model, decode)
    order = net.layers
    if layers is not None:
        layers = net.resolve(layers)
    results: dict[str, xr.DataArray] = {}
    for method in methods:
        results[method] = _run(method, model, stim, grid, layers, net, args)
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
                         {"long_name": f"d' of theta -/+ {args['dtheta'] / 2:g} from "
                          "theta_hat"})
    if "propagated" in results:  # tied max-pool windows (issue 15), from propagated_fisher
        ds.attrs.update({k: v for k, v in results["propagated"].attrs.items()
                         if k.startswith("pool_ties_")})
    ds.attrs["method_attrs"] = json.dumps(
        {m: _jsonable(r.attrs) for m, r in results.items()}, sort_keys=True)
    ds.attrs["config"] = json.dumps(_jsonable(dict(
        spec=stim.to_config(), methods=methods,
        **{k: args[k] for k in ("sigma", "eps", "noise_at", "solver", "rtol", "output_sigma",
                                "poisson_gain", "poisson_baseline", "dtheta", "n_trials")},
        sampled_options=args["sampled_options"], savgol_options=args["savgol_options"])),
        sort_keys=True)
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


def angle_grid(name: str, value: Any) -> np.ndarray:
    """The angle grid: a count n (θ_k = kπ/n) or a non-empty finite 1-D array of radians."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        n = check.integer(name, value, minimum=1)
        return np.arange(n) * (math.pi / n)
    try:
        return angle_array(name, value)
    except ValueError:
        raise check.fail(name, "a count >= 1 or a non-empty finite 1-D array of angles "
                         "(radians)", value) from None


def method_names(name: str, value: Any) -> list[str]:
    """``value`` (one name or a sequence) as a list of distinct names from `METHODS`."""
    names = check.name_list(name, [value] if isinstance(value, str) else value,
                            allow_empty=False)
    if any(m not in METHODS for m in names) or len(set(names)) != len(names):
        raise check.fail(name, f"distinct names from {list(METHODS)}", value)
    return names


def options(name: str, value: Any) -> dict[str, Any]:
    """``value`` (None or a mapping of keyword options) as a dict; the options themselves are
    checked against the estimator they go to (`_check_options`)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise check.fail(name, "None or a dict of keyword options", value)
    return dict(value)


PARAMETERS = {
    "model": MODEL,
    "spec": STIMULUS,
    "prior": check.Optional(check.Check(lambda name, value: as_prior(value, name),
                                        "an AnglePrior (Uniform(), VonMises(loc, "
                                        "kappa), …)")),
    "methods": check.Check(method_names, f"names from {list(METHODS)}"),
    "layers": LAYERS,
    "angles": check.Check(angle_grid, "a count or a 1-D array of angles"),
    **{k: PROPAGATED[k] for k in ("sigma", "eps", "noise_at", "phases", "chunk_size", "device",
                                  "solver", "rtol", "decode", "force", "pool_ties")},
    "output_sigma": check.Real(minimum=0.0, min_open=True),
    "poisson_gain": check.Real(minimum=0.0, min_open=True),
    "poisson_baseline": check.Real(),
    "dtheta": DTHETA,
    "n_trials": check.Integer(minimum=2),
    "generator": GENERATOR,
    "sampled_options": check.Check(options, "None or a dict of sampled_fisher options"),
    "savgol_options": check.Check(options, "None or a dict of savgol_fisher options"),
    "batch_size": check.Integer(minimum=1),
}
"""`measure_fisher`'s parameters, declared; the estimators' own options are the same
constraints as theirs (`propagated_fisher`'s, `sampled_fisher`'s, `savgol_fisher`'s)."""


def _check_options(args: dict[str, Any]) -> None:
    """The options every requested method will get, checked before any method runs."""
    methods = args["methods"]
    for method in methods:
        if method in SAMPLED_ESTIMATORS:
            check.validate(args["sampled_options"], {**ESTIMATOR_OPTIONS[method], **{
                k: SAMPLED_PARAMETERS[k] for k in ("n_boot", "level", "ci_method")}},
                owner=f"sampled_options for method {method!r}", partial=True)
    if "estimator" in methods and args["n_trials"] < 3:
        raise check.fail("n_trials", "an integer >= 3 with method 'estimator'",
                         args["n_trials"])
    if "savgol" in methods:
        check.validate(args["savgol_options"], SAVGOL_OPTIONS, owner="savgol_options",
                       partial=True)


def _pick(layers: list[str] | None, allowed: list[str]) -> list[str] | None:
    """None (the estimator's default) or the requested layers the estimator can measure."""
    if layers is None:
        return None
    return [n for n in layers if n in set(allowed)]


def _run(method: str, model: torch.nn.Module, stim: Stimulus, grid: np.ndarray,
         layers: list[str] | None, net: Network, o: dict[str, Any]) -> xr.DataArray:
    """One method's DataArray over (layer, angle) (empty layer dim when it measures none),
    with the checked arguments ``o`` of `measure_fisher`."""
    order, blocks = net.layers, net.blocks
    common = dict(device=o["device"], decode=o["decode"])
    if method == "propagated":
        if o["noise_at"] not in order[:-1]:
            raise check.fail("noise_at", f"'input' or a layer name among {blocks}",
                             o["noise_at"])
        names = _pick(layers, order[order.index(o["noise_at"]):] if net.native else order)
        if names == []:
            return _empty(grid, method)
        return propagated_fisher(model, stim, grid, names, sigma=o["sigma"], eps=o["eps"],
                                 phases=o["phases"], chunk_size=o["chunk_size"],
                                 noise_at=o["noise_at"], solver=o["solver"], rtol=o["rtol"],
                                 force=o["force"], pool_ties=o["pool_ties"], **common)
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
    if method in SAMPLED_ESTIMATORS:
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
