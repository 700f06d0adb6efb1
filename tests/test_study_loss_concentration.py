"""loss_concentration's measures and claims on Datasets whose answer is known: planted power
laws, a local code and a fixed-budget code, decoders that fail at some angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.distributions import VonMises
from anglesim.studies import loss_concentration as lc
from anglesim.studies.loss_concentration.measures import (
    BUDGET_LOSSES,
    PRIOR_LOC,
    add_fits,
    budget_adjusted_level,
)
from anglesim.theory import budget_scale, loss_exponent

ANGLES = np.arange(64) * math.pi / 64


def density(kappa: float) -> np.ndarray:
    return VonMises(PRIOR_LOC, kappa).pdf(ANGLES)


def dataset(alpha, scale, *, losses=("L2", "L4"), kappas=(1.0, 4.0), n=6, noise=0.0,
            bad=None, seed=0) -> xr.Dataset:
    """A loss_concentration-shaped Dataset with J = scale(loss, κ) · p^alpha(loss, κ) at both
    layers; with ``noise`` each network's scale is off by a factor e^{noise·z} and its exponent
    by noise·z′/2 (z, z′ standard normal); error 1° except where ``bad(p)`` holds (error 20°
    and J there replaced by a floor of 1e-3: a decoder that failed)."""
    rng = np.random.default_rng(seed)
    shape = (len(losses), len(kappas), n)
    fisher = np.empty(shape + (2, ANGLES.size))
    error = np.full(shape + (ANGLES.size,), math.radians(1.0))
    prior = np.empty(shape + (ANGLES.size,))
    for i, loss in enumerate(losses):
        for j, kappa in enumerate(kappas):
            p = density(kappa)
            prior[i, j] = p
            for r in range(n):
                exponent = alpha(loss, kappa) + 0.5 * noise * rng.normal()
                curve = scale(loss, kappa) * p ** exponent * math.exp(noise * rng.normal())
                if bad is not None:
                    failed = bad(p)
                    curve = np.where(failed, 1e-3, curve)
                    error[i, j, r, failed] = math.radians(20.0)
                fisher[i, j, r] = curve
    ds = xr.Dataset(
        {
            "fisher": (("loss", "kappa", "replicate", "layer", "angle"), fisher),
            "abs_error": (("loss", "kappa", "replicate", "angle"), error),
            "prior_density": (("loss", "kappa", "replicate", "angle"), prior),
            "error_limit": (("loss", "kappa", "replicate"), np.full(shape, math.radians(5))),
            "failed": (("loss", "kappa", "replicate"), np.zeros(shape, bool)),
        },
        coords={"loss": list(losses), "kappa": list(kappas), "replicate": np.arange(n),
                "layer": ["fc", "output"], "angle": ANGLES},
    )
    return add_fits(ds)


def predicted(loss: str, kappa: float) -> float:
    name, params, _ = lc.LOSSES[loss]
    return loss_exponent(name, params)[0]


def test_the_fit_recovers_a_planted_exponent_over_the_angles_the_decoder_resolves():
    # the decoder fails where p < 0.05 (only at κ = 4): there J of θ̂ is a floor, not the code
    ds = dataset(lambda loss, k: 0.5 if loss == "L2" else 1.5, lambda loss, k: 100.0,
                 bad=lambda p: p < 0.05)
    alpha = ds["alpha"].sel(layer="output")
    assert np.allclose(alpha.sel(loss="L2"), 0.5) and np.allclose(alpha.sel(loss="L4"), 1.5)
    assert np.allclose(ds["alpha_r2"], 1.0)
    # the unrestricted fit is dragged by the floor (κ = 4 has many such angles)
    assert not np.allclose(ds["alpha_all_angles"].sel(layer="output", kappa=4.0), alpha.sel(
        kappa=4.0), atol=0.1)
    share = ds["fit_share"].sel(kappa=4.0)
    assert np.allclose(share, (density(4.0) >= 0.05).mean()) and (share < 0.8).all()
    assert np.allclose(ds["fit_share"].sel(kappa=1.0), 1.0)  # p > 0.09 everywhere at κ = 1


def test_a_network_that_fails_everywhere_gets_no_exponent():
    ds = dataset(lambda loss, k: 1.0, lambda loss, k: 1.0, bad=lambda p: p > -1)
    assert ds["alpha"].isnull().all() and (ds["fit_share"] == 0).all()
    assert ds["fisher_at_uniform_density"].isnull().all()


def test_j_at_the_uniform_density_is_the_curve_there_and_the_budget_prediction_is_theorys():
    alpha = 0.7
    ds = dataset(lambda loss, k: alpha, lambda loss, k: 50.0)
    # J = 50 p^0.7 over the window |ln(pπ)| < ln 1.3: geometric mean close to 50 π^−0.7
    level = ds["fisher_at_uniform_density"].sel(layer="output")
    assert np.allclose(level, 50 * math.pi ** -alpha, rtol=0.05)
    assert np.allclose(ds["fisher_at_uniform_level"].sel(layer="output"),
                       50 * math.pi ** -alpha)  # from the fit: exact
    for loss in ("L2", "L4"):
        a = predicted(loss, 0.0)
        c = [float(budget_scale(xr.DataArray(density(k), dims="angle",
                                             coords={"angle": ANGLES}), a)) for k in (1.0, 4.0)]
        assert float(ds["budget_ratio_predicted"].sel(loss=loss, kappa=4.0)) == pytest.approx(
            c[1] / c[0])
    assert np.allclose(ds["budget_ratio_predicted"].sel(kappa=1.0), 1.0)
    assert (ds["budget_ratio_predicted"].sel(kappa=4.0) > 1.5).all()  # α < 2: J must rise


def budget_code(loss: str, kappa: float) -> float:
    """The scale of J = c p^α that holds ∫√J dθ at 1, α = 2/(p + 1)."""
    grid = xr.DataArray(density(kappa), dims="angle", coords={"angle": ANGLES})
    return float(budget_scale(grid, predicted(loss, kappa))) * 1e4


def claim(records, name):
    return [r for r in records if r.name.startswith(name)]


def test_a_local_code_at_its_predicted_exponents_supports_every_claim():
    ds = dataset(predicted, lambda loss, k: 1e4, losses=("L0.5", "L1", "L2", "L4"), n=10,
                 noise=0.05, kappas=(1.0, 2.0, 4.0))
    records = evaluate_claims(ds, lc.CLAIMS, missing="unresolved")
    for r in claim(records, "alpha_law") + claim(records, "alpha_order"):
        assert r.verdict == "supported", r
    for r in claim(records, "below_budget[") + claim(records, "local_code["):
        if "loss=L" in r.name:
            assert r.verdict == "supported", r
    # the losses this Dataset lacks are reported, not tested
    assert all(r.verdict == "unresolved" for r in records if "cosine" in r.name
               or "vonmises" in r.name or "cross_entropy" in r.name)


def test_a_fixed_budget_code_and_exponents_off_the_law_are_not_supported():
    flat = dict.fromkeys(("L0.5", "L1", "L2", "L4"), 0.5)  # every loss the same, α = 0.5
    ds = dataset(lambda loss, k: flat[loss], budget_code, losses=tuple(flat), n=10,
                 noise=0.02, kappas=(1.0, 4.0))
    records = evaluate_claims(ds, lc.CLAIMS, missing="unresolved")
    verdicts = {r.name: r.verdict for r in records}
    # α = 0.5 is 0.83 and 0.5 below the law for L0.5 and L1: shown beyond the margin
    assert verdicts["alpha_law[loss=L0.5, kappa=1.0]"] == "contradicted"
    assert verdicts["alpha_law[loss=L1, kappa=4.0]"] == "contradicted"
    assert verdicts["alpha_law[loss=L2, kappa=1.0]"] == "supported"  # 0.5 vs 0.67
    # no order between equal exponents
    assert all(r.verdict != "supported" for r in claim(records, "alpha_order"))
    # a fixed budget: J at p = 1/π rises as the budget forces, so neither locality claim holds
    for r in claim(records, "below_budget["):
        assert r.verdict != "supported", r
        assert r.estimate == pytest.approx(1.0, rel=0.1)
    for r in claim(records, "local_code["):
        assert r.verdict == "contradicted", r


def test_the_budget_adjusted_measure_is_flat_under_a_fixed_budget():
    ds = dataset(predicted, budget_code, losses=tuple(BUDGET_LOSSES[:2]), n=3)
    adjusted = budget_adjusted_level(ds)
    assert adjusted.attrs["units"] == "rad^-2"
    # under the budget only the grid's sampling of the density window moves it: the ratio is
    # that of the geometric means of p^α over each κ's window, nothing of the budget left
    for loss in BUDGET_LOSSES[:2]:
        window = [np.log(density(k))[np.abs(np.log(density(k) * math.pi)) < math.log(1.3)]
                  for k in (1.0, 4.0)]
        expected = math.exp(predicted(loss, 0.0) * (window[1].mean() - window[0].mean()))
        ratio = adjusted.sel(loss=loss, kappa=4.0) / adjusted.sel(loss=loss, kappa=1.0)
        assert np.allclose(ratio, expected), loss
        assert abs(math.log(expected)) < 0.1


def test_every_derived_variable_is_described():
    ds = dataset(lambda loss, k: 1.0, lambda loss, k: 1.0)
    for name in lc.measures.ATTRS:
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds["failed"].attrs["units"] == "1"  # the runner's variables get their units too
    assert ds["alpha"].attrs["units"] == "1" and ds["kappa"].attrs["units"] == "1"
