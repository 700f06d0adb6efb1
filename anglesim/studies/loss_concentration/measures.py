"""Loss and concentration: the losses, the measures derived from each network's FI curve (the
exponent fits, J at the uniform density, the fixed-budget prediction) and their attributes."""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from anglesim.distributions import VonMises
from anglesim.stats import welch_ci
from anglesim.theory import budget_scale, fit_exponents, loss_exponent

from .._recipes import describe_variables

__all__ = ["ALPHA_MARGIN", "ATTRS", "BUDGET_LOSSES", "DENSITY_WINDOW", "ERROR_LIMIT_DEG",
           "KAPPA_HIGH", "KAPPA_LOW", "LOCAL_MARGIN", "LOSSES", "LP_ORDER", "N_BINS",
           "PRIOR_LOC", "add_fits", "budget_adjusted_level", "locality"]

PRIOR_LOC = math.pi / 2
N_BINS = 36
ERROR_LIMIT_DEG = 5.0
"""The α fits use the angles whose mean absolute decoding error is below this (degrees; the
quick size's untrained networks use every angle)."""
ALPHA_MARGIN = 0.25
"""Equivalence margin of α against 2/(p+1)."""
LOCAL_MARGIN = 1.5
"""Equivalence margin (a fold) of J at p = 1/π between κ = 4 and κ = 1."""
DENSITY_WINDOW = 1.3
"""J "at p = 1/π" is the geometric mean over the angles whose density is within this factor
of 1/π (and whose error is below the fits' limit)."""
KAPPA_LOW, KAPPA_HIGH = 1.0, 4.0
"""The priors the locality contrasts compare."""

# label: (registered loss name, loss parameters, readout)
LOSSES: dict[str, tuple[str, dict, str]] = {
    "L0.5": ("lp", {"p": 0.5}, "cossin"),
    "L1": ("lp", {"p": 1.0}, "cossin"),
    "L2": ("lp", {"p": 2.0}, "cossin"),
    "L4": ("lp", {"p": 4.0}, "cossin"),
    "cosine": ("cosine", {}, "cossin"),
    "vonmises_nll": ("vonmises_nll", {}, "cossin"),
    "cross_entropy": ("cross_entropy", {}, "bins"),
}
LP_ORDER = ["L0.5", "L1", "L2", "L4"]
"""The Lp losses by power: the predicted α falls along this list."""
BUDGET_LOSSES = [label for label, (loss, params, _) in LOSSES.items()
                 if loss_exponent(loss, params)[0] < 2]
"""Losses whose predicted α < 2: only for them does a fixed budget predict a change with κ."""


def budget_adjusted_level(ds: xr.Dataset) -> xr.DataArray:
    """J of θ̂ at p = 1/π over the rise from κ = 1 a fixed budget of ∫√J forces: constant in κ
    where the budget rules, falling with κ where J follows the local density."""
    out = ds["fisher_at_uniform_density"].sel(layer="output") / ds["budget_ratio_predicted"]
    out.attrs = {"units": "rad^-2"}
    return out


ATTRS = {
    "alpha": {"units": "1", "long_name": "fitted exponent α of J ∝ p^α over the angles with "
                                         "decoding error below 5°"},
    "alpha_r2": {"units": "1", "long_name": "r² of ln J against ln p over those angles"},
    "alpha_all_angles": {"units": "1", "long_name": "fitted exponent α of J ∝ p^α over every "
                                                    "angle (no error limit)"},
    "error_limit": {"units": "rad", "long_name": "the α fits use the angles whose mean "
                                                "absolute decoding error is below this"},
    "fit_share": {"units": "1", "long_name": "share of the angle grid with decoding error "
                                             "below 5° (the α fit's angles)"},
    "fisher_at_uniform_density": {"units": "rad^-2",
                                  "long_name": "geometric mean J over the angles where p(θ) is "
                                               "within ×1.3 of 1/π and the error below 5°"},
    "fisher_at_uniform_level": {"units": "rad^-2",
                                "long_name": "fitted J where p(θ) = 1/π (exp(c + α ln(1/π)))"},
    "budget_ratio_predicted": {"units": "1", "long_name": "J at p = 1/π relative to kappa = 1 "
                                                          "under a fixed budget of ∫√J with "
                                                          "alpha = alpha_predicted"},
    "alpha_predicted": {"units": "1", "long_name": "efficient-coding exponent 2/(p+1) (Wang, "
                                                   "Stocker & Lee 2016)"},
    "loss": {"units": "1", "long_name": "training loss"},
    "kappa": {"units": "1", "long_name": "concentration κ of the von Mises training prior "
                                         "(on 2θ, centred at 90°)"},
}


def add_fits(ds: xr.Dataset) -> xr.Dataset:
    """Add the fitted exponent α of J ∝ p^α per layer, loss, κ and replicate, over the angles
    whose decoding error is below ``error_limit`` (5°), and the predictions.

    ``alpha``/``alpha_r2``: least squares of ln J on ln p over those angles
    (:func:`anglesim.theory.fit_exponents`; NaN with fewer than 3); ``alpha_all_angles``: the
    same over every angle; ``fisher_at_uniform_density``: the geometric mean of J over the
    angles with error below the limit and density within ×:data:`DENSITY_WINDOW` of 1/π;
    ``fisher_at_uniform_level``: exp(c + α ln(1/π)) of the restricted fit;
    ``budget_ratio_predicted``: c_κ/c_κ₁ with c = (∫p^{α/2} dθ)^{−2}
    (:func:`anglesim.theory.budget_scale`) at α = 2/(p + 1)
    (:func:`anglesim.theory.loss_exponent`).
    """
    used = ds["abs_error"] < float(ds["error_limit"].max())
    fits = fit_exponents(ds["fisher"].where(used), ds["prior_density"])
    every = fit_exponents(ds["fisher"], ds["prior_density"])
    predicted = [loss_exponent(LOSSES[str(label)][0], LOSSES[str(label)][1])
                 for label in ds["loss"].values]
    out = ds.assign(alpha=fits["alpha"], alpha_r2=fits["r2"], alpha_all_angles=every["alpha"])
    out["fit_share"] = used.mean("angle").where(np.isfinite(ds["abs_error"]).all("angle"))
    out["fisher_at_uniform_level"] = np.exp(fits["intercept"]
                                            + fits["alpha"] * math.log(1 / math.pi))
    angle = ds["angle"].values
    density = xr.concat([xr.DataArray(VonMises(PRIOR_LOC, float(k)).pdf(angle), dims="angle",
                                      coords={"angle": angle}) for k in ds["kappa"].values],
                        dim=ds["kappa"])
    window = np.abs(np.log(density * math.pi)) < math.log(DENSITY_WINDOW)
    out["fisher_at_uniform_density"] = np.exp(np.log(ds["fisher"].where(used & window))
                                              .mean("angle"))
    scales = xr.concat([budget_scale(density, a) for a, _ in predicted], dim=ds["loss"])
    out["budget_ratio_predicted"] = scales / scales.isel(kappa=0)
    out["alpha_predicted"] = xr.DataArray([a for a, _ in predicted], dims="loss",
                                          coords={"loss": ds["loss"]})
    out = describe_variables(out, ATTRS)
    out["alpha_predicted"].attrs["approximation"] = json.dumps(
        {str(k): why for k, (_, why) in zip(ds["loss"].values, predicted, strict=True)})
    return out


def locality(ds: xr.Dataset, kappa: float) -> tuple[xr.DataArray, xr.DataArray]:
    """log₂ of J_θ̂ at p = 1/π, κ over the first κ: the difference of the mean log₂ J over
    independent networks and its Welch 95% half-width, per loss."""
    level = np.log2(ds["fisher_at_uniform_density"].sel(layer="output"))
    return welch_ci(level.sel(kappa=kappa), level.isel(kappa=0))
