"""Efficient-coding predictions and the exponent fit."""

import math

import numpy as np
import pytest
import xarray as xr

from anglesim.distributions import VonMises
from anglesim.theory import (
    fit_exponent,
    fit_exponents,
    ganguli_simoncelli_exponent,
    loss_exponent,
    lp_exponent,
    predicted_fisher,
)

ANGLES = np.arange(64) * math.pi / 64


def density(kappa=2.0):
    return xr.DataArray(VonMises(math.pi / 2, kappa).pdf(ANGLES), dims="angle",
                        coords={"angle": ANGLES})


def test_exponent_table():
    assert lp_exponent(2) == pytest.approx(2 / 3)
    assert lp_exponent(0) == pytest.approx(2.0)  # infomax limit
    assert lp_exponent(1) == pytest.approx(1.0)
    assert ganguli_simoncelli_exponent(1) == pytest.approx(0.5)
    assert ganguli_simoncelli_exponent(0) == pytest.approx(2.0)
    assert loss_exponent("lp", {"p": 4.0})[0] == pytest.approx(0.4)
    assert loss_exponent("cosine")[0] == pytest.approx(2 / 3)
    assert loss_exponent("cross_entropy")[0] == pytest.approx(2.0)


BUILTIN_LOSSES = ("wrapped_mse", "cosine", "vector_mse", "lp", "vonmises_nll", "cross_entropy",
                  "mse")


def test_every_builtin_loss_has_a_prediction():
    for name in BUILTIN_LOSSES:
        alpha, why = loss_exponent(name)
        assert 0 < alpha <= 2 and why


@pytest.mark.parametrize("call, name", [
    (lambda: lp_exponent(-1), "p"),
    (lambda: ganguli_simoncelli_exponent(-0.5), "beta"),
    (lambda: loss_exponent("hinge"), "hinge"),
    (lambda: loss_exponent("lp", {"p": float("nan")}), "p"),
])
def test_bad_input_is_named(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_prediction_has_the_measured_total_sqrt_fisher():
    p = density()
    measured = xr.DataArray(np.random.default_rng(0).uniform(50, 150, (3, ANGLES.size)),
                            dims=("replicate", "angle"), coords={"angle": ANGLES})
    pred = predicted_fisher(p, 2 / 3, normalise_to=measured)
    # uniform grid: the periodic trapezoid is the plain sum times the spacing
    step = math.pi / ANGLES.size
    np.testing.assert_allclose((np.sqrt(pred) * step).sum("angle"),
                               (np.sqrt(measured) * step).sum("angle"), rtol=1e-12)
    ratio = pred.isel(replicate=0) / p**(2 / 3)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # the shape is p^α


def test_fit_recovers_a_planted_exponent_and_its_interval_covers_it():
    p = density(4.0).values
    rng = np.random.default_rng(1)
    alpha = 0.8
    covered = 0
    for _ in range(200):
        j = 100 * p**alpha * np.exp(rng.normal(0, 0.3, p.size))
        fit = fit_exponent(j, p)
        covered += fit.ci_low <= alpha <= fit.ci_high
    assert 0.90 <= covered / 200 <= 0.99  # nominal 95%
    fit = fit_exponent(100 * p**alpha, p)
    assert fit.alpha == pytest.approx(alpha, abs=1e-10) and fit.r2 == pytest.approx(1.0)


def test_fit_errors_name_the_problem():
    with pytest.raises(ValueError, match="constant"):
        fit_exponent(np.ones(10), np.full(10, 1 / math.pi))
    with pytest.raises(ValueError, match="at least 3"):
        fit_exponent([1.0, 0.0, -1.0], [0.1, 0.2, 0.3])


def test_fit_exponents_broadcasts_over_replicates():
    p = density(2.0)
    planted = xr.DataArray([0.5, 1.0, 2.0], dims="replicate")
    fisher = 10 * p**planted
    out = fit_exponents(fisher, p)
    np.testing.assert_allclose(out["alpha"], planted, atol=1e-10)
