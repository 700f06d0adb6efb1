"""The bias–discriminability law's pieces on planted data with known answers."""

import math

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim import angles as ang
from anglesim.laws import (
    bias_from_decoded,
    decoded_bias,
    fit_bias_law,
    inverse_fisher_slope,
    law_agreement,
)
from anglesim.stimuli import GratingSpec, render


def _grid(n):
    return np.arange(n) * math.pi / n


@pytest.mark.parametrize("n, k", [(16, 1), (64, 3), (9, 4)])
def test_inverse_fisher_slope_is_exact_for_a_log_fourier_fisher(n, k):
    theta = _grid(n)
    a, mu = 1.3, 0.4
    fisher = np.exp(2.0 + a * np.cos(2 * (theta - mu)))
    da = xr.DataArray(fisher, dims="angle", coords={"angle": theta})
    expected = 2 * a * np.sin(2 * (theta - mu)) * np.exp(-2.0 - a * np.cos(2 * (theta - mu)))
    np.testing.assert_allclose(inverse_fisher_slope(da, k, fit="log").values, expected,
                               atol=1e-12)


def test_inverse_fisher_slope_second_harmonic_irregular_grid_and_extra_dims():
    rng = np.random.default_rng(3)
    theta = np.sort(rng.uniform(0, math.pi, 40))
    g = 0.5 * np.sin(4 * theta) - 0.2 * np.cos(2 * theta)
    gp = 2.0 * np.cos(4 * theta) + 0.4 * np.sin(2 * theta)
    scale = np.array([1.0, 10.0])
    da = xr.DataArray(scale[:, None] * np.exp(g)[None], dims=("replicate", "angle"),
                      coords={"angle": theta})
    out = inverse_fisher_slope(da.transpose("angle", "replicate"), 2, fit="log")
    assert out.dims == ("angle", "replicate")
    np.testing.assert_allclose(out.transpose("replicate", "angle").values,
                               -gp[None] * np.exp(-g)[None] / scale[:, None], rtol=1e-9)


def test_inverse_fisher_slope_refuses_bad_input():
    da = xr.DataArray(np.ones(5), dims="angle", coords={"angle": _grid(5)})
    with pytest.raises(ValueError, match="n_harmonics"):
        inverse_fisher_slope(da, 3)
    with pytest.raises(ValueError, match="fisher must be > 0"):
        inverse_fisher_slope(da - 2, 1)
    with pytest.raises(ValueError, match="fisher must be a DataArray"):
        inverse_fisher_slope(np.ones(5))
    with pytest.raises(ValueError, match="fit must be one of 'inverse', 'log', got 'sqrt'"):
        inverse_fisher_slope(da, 1, fit="sqrt")


@pytest.mark.parametrize("n, k", [(16, 2), (48, 5), (11, 3)])
def test_inverse_fit_is_exact_for_a_fourier_inverse_fisher(n, k):
    theta = _grid(n)
    inv = 0.01 * (2.0 + 0.6 * np.cos(2 * (theta - 0.3)) - 0.3 * np.sin(4 * theta))
    da = xr.DataArray(1 / inv, dims="angle", coords={"angle": theta})
    expected = 0.01 * (-1.2 * np.sin(2 * (theta - 0.3)) - 1.2 * np.cos(4 * theta))
    np.testing.assert_allclose(inverse_fisher_slope(da, k).values, expected, atol=1e-14)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_a_law_bias_on_a_rough_fisher_projects_onto_the_inverse_fit_with_its_constant(k):
    """b = c·d/dθ[1/J] with 1/J rough beyond K harmonics: on an evenly spaced grid the fit
    against the K-harmonic slope of 1/J returns c exactly (the projection commutes with
    d/dθ); the slope of the smoothed log J does not."""
    n, c = 96, 0.7
    theta = _grid(n)
    amps = {1: 0.5, 2: 0.3, 5: 0.2, 11: 0.15, 17: 0.1}  # harmonics of 2θ, the rough ones > k
    inv = 1e-3 * (3 + sum(a * np.cos(2 * h * theta + h) for h, a in amps.items()))
    dinv = 1e-3 * sum(-2 * h * a * np.sin(2 * h * theta + h) for h, a in amps.items())
    fisher = xr.DataArray(1 / inv, dims="angle", coords={"angle": theta})
    bias = xr.DataArray(c * dinv, dims="angle", coords={"angle": theta})
    exact = fit_bias_law(bias, inverse_fisher_slope(fisher, k))
    assert float(exact["law_constant"]) == pytest.approx(c, rel=1e-10)
    logged = fit_bias_law(bias, inverse_fisher_slope(fisher, k, fit="log"))
    assert abs(float(logged["law_constant"]) - c) > 1e-3


def _planted(c, n_rep, n_angles, noise, seed, kind="law"):
    """Replicate curves whose bias obeys b = c d/dθ(1/J) (kind "law") or does not."""
    rng = np.random.default_rng(seed)
    theta = _grid(n_angles)
    mu = math.pi / 2
    amp = rng.uniform(0.8, 1.5, n_rep)[:, None]
    fisher = 50 * np.exp(amp * np.cos(2 * (theta - mu)))
    slope = 2 * amp * np.sin(2 * (theta - mu)) / fisher
    if kind == "law":
        bias = c * slope
    elif kind == "orthogonal":  # a bias the law says nothing about: sin 4θ, orthogonal to g
        bias = 0.02 * np.cos(4 * (theta - mu)) * np.ones_like(slope)
    bias = bias + rng.normal(0, noise, bias.shape)
    dims, coords = ("replicate", "angle"), {"angle": theta}
    return (xr.DataArray(fisher, dims=dims, coords=coords),
            xr.DataArray(bias, dims=dims, coords=coords))


@pytest.mark.parametrize("c, n_rep, n_angles, noise", [(0.8, 4, 24, 1e-4), (3.0, 12, 48, 1e-3),
                                                      (-2.0, 6, 16, 2e-4)])
def test_fit_recovers_a_planted_constant_within_its_interval(c, n_rep, n_angles, noise):
    from anglesim.stats import mean_ci

    fisher, bias = _planted(c, n_rep, n_angles, noise, seed=n_rep)
    fit = fit_bias_law(bias, inverse_fisher_slope(fisher, 2, fit="log"))
    assert fit["law_constant"].dims == ("replicate",)
    mean, half = mean_ci(fit["law_constant"])
    assert abs(float(mean) - c) < max(float(half), 1e-3) * 3
    assert abs(float(mean) - c) < 0.1 * abs(c)
    assert (np.sign(fit["law_correlation"]) == np.sign(c)).all()
    assert (fit["law_explained"] > 0.8).all()
    slope = inverse_fisher_slope(fisher, 2, fit="log")
    agreement = law_agreement(bias, slope)
    # where the slope is large the sign is resolved: +1 for a repulsive (c > 0) bias, else -1
    big = np.abs(slope.mean("replicate")) > 0.5 * float(np.abs(slope).max())
    assert (agreement.where(big, drop=True) == np.sign(c)).all()


def test_fit_of_a_bias_the_law_does_not_explain():
    fisher, bias = _planted(1.0, 8, 48, 1e-3, seed=5, kind="orthogonal")
    fit = fit_bias_law(bias, inverse_fisher_slope(fisher, 2, fit="log"))
    assert (np.abs(fit["law_correlation"]) < 0.3).all()
    assert (fit["law_explained"] < 0.1).all()
    from anglesim.stats import mean_ci

    mean, half = mean_ci(fit["law_constant"])
    assert abs(float(mean)) < float(half) or abs(float(mean)) < 0.05


class TemplateDecoder(torch.nn.Module):
    """A real decoder of noiseless gratings: the best-matching template on a 0.05° grid,
    then a planted bias δ(θ) added before wrapping."""

    def __init__(self, spec, delta):
        super().__init__()
        self.grid = torch.arange(3600, dtype=torch.float64) * math.pi / 3600
        self.templates = render(self.grid, spec, noise=False).flatten(1)
        self.delta = delta
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def predict(self, images):
        dist = torch.cdist(images.double().flatten(1), self.templates)  # nearest template
        theta = self.grid[dist.argmin(1)]
        return ang.wrap(theta + self.delta(theta))


@pytest.mark.parametrize("n_angles", [6, 20])
def test_decoded_bias_recovers_a_planted_bias_across_the_wrap(n_angles):
    spec = GratingSpec(size=16, frequency=3.0, phase=0.0, noise_std=0.0)
    delta = lambda t: -0.05 + 0.1 * torch.sin(2 * t)  # noqa: E731  (negative at θ = 0: wraps)
    model = TemplateDecoder(spec, delta)
    theta = _grid(n_angles)
    out = decoded_bias(model, spec, theta, n_trials=3, generator=torch.Generator().manual_seed(0))
    expected = -0.05 + 0.1 * np.sin(2 * theta)
    np.testing.assert_allclose(out["bias"].values, expected, atol=math.radians(0.06))
    assert np.all(out["bias_stderr"].values < 1e-6)  # noiseless: every trial decodes the same
    np.testing.assert_allclose(out["abs_error"].values, np.abs(expected), atol=math.radians(0.06))


def test_decoded_bias_with_noise_has_an_honest_standard_error():
    spec = GratingSpec(size=16, frequency=3.0, phase=0.0, noise_std=1.5)
    model = TemplateDecoder(spec.replace(noise_std=0.0), lambda t: 0.0 * t)
    theta = _grid(4)
    gen = torch.Generator().manual_seed(1)
    a = decoded_bias(model, spec, theta, n_trials=400, generator=gen)
    assert (a["bias_stderr"] > 0).all()
    # an unbiased template matcher: |bias| within 4 standard errors at every angle
    assert (np.abs(a["bias"]) < 4 * a["bias_stderr"] + 1e-3).all()
    with pytest.raises(ValueError, match="n_trials"):
        decoded_bias(model, spec, theta, n_trials=1)


def test_fit_restricted_to_where_fisher_is_high():
    fisher, bias = _planted(1.5, 6, 48, 1e-4, seed=9)
    low = fisher < 50  # away from the peak at 90°: replace the bias there by something else
    junk = xr.where(low, 0.05 * np.cos(6 * bias["angle"]), bias)
    slope = inverse_fisher_slope(fisher, 2, fit="log")
    everywhere = fit_bias_law(junk, slope)
    high = fit_bias_law(junk, slope, where=~low)
    assert (np.abs(high["law_constant"] - 1.5) < 0.05).all()
    assert (np.abs(everywhere["law_constant"] - 1.5) > 0.1).any()
    np.testing.assert_array_equal(high["law_n_angles"].values, (~low).sum("angle").values)
    assert (everywhere["law_n_angles"] == 48).all()


def test_the_trial_standard_error_of_c_matches_its_spread_over_draws():
    """law_constant_stderr = √(Σ g² s²)/Σ g²: the SD of ĉ over repeated trial noise."""
    theta = _grid(32)
    fisher = xr.DataArray(100 * np.exp(0.8 * np.cos(2 * theta)), dims="angle",
                          coords={"angle": theta})
    slope = inverse_fisher_slope(fisher, 3)
    rng = np.random.default_rng(7)
    se = xr.DataArray(rng.uniform(0.5e-3, 2e-3, 32), dims="angle", coords={"angle": theta})
    draws = 4000
    bias = xr.DataArray(1.2 * slope.values + rng.normal(0, 1, (draws, 32)) * se.values,
                        dims=("draw", "angle"), coords={"angle": theta})
    where = xr.DataArray(np.arange(32) % 4 != 0, dims="angle", coords={"angle": theta})
    fit = fit_bias_law(bias, slope, where=where, stderr=se)
    spread = float(fit["law_constant"].std())
    assert float(fit["law_constant_stderr"][0]) == pytest.approx(spread, rel=0.05)
    assert float(fit["law_constant"].mean()) == pytest.approx(1.2, abs=3 * spread / 60)
    assert (fit["law_n_angles"] == 24).all()
    with pytest.raises(ValueError, match="stderr must be a DataArray"):
        fit_bias_law(bias, slope, stderr=se.values)


def test_bias_from_decoded_wraps_and_reports_the_mean_squared_error():
    theta = np.array([0.0, 1.0, 3.1])
    offsets = np.array([[-0.02, 0.04], [0.1, -0.1], [0.05, 0.07]])
    decoded = ang.wrap(theta[:, None] + offsets)  # 0 − 0.02 wraps to π − 0.02
    out = bias_from_decoded(decoded, theta)
    np.testing.assert_allclose(out["bias"].values, [0.01, 0.0, 0.06], atol=1e-4)
    np.testing.assert_allclose(out["squared_error"].values, (offsets**2).mean(1), rtol=1e-12)
    np.testing.assert_allclose(out["abs_error"].values, np.abs(offsets).mean(1), rtol=1e-12)
    assert out.attrs["n_trials"] == 2 and out["squared_error"].attrs["units"] == "rad^2"
    with pytest.raises(ValueError, match=r"decoded must be an array \[3 angles, >= 2 trials\]"):
        bias_from_decoded(decoded[:, :1], theta)
    with pytest.raises(ValueError, match=r"decoded must be an array \[3 angles"):
        bias_from_decoded(decoded[:2], theta)
