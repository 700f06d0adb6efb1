"""The bias law's positive control: the posterior-mean decoder of a Gaussian encoding, on
encodings with known Fisher information and on a network's layer."""

import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim.distributions import VonMises
from anglesim.fisher import propagated_fisher
from anglesim.laws import (
    GaussianEncoding,
    bias_from_decoded,
    fit_bias_law,
    inverse_fisher_slope,
    layer_encoding,
    layer_moments,
    posterior_mean_decode,
)
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec


def ellipse(scale, a, b, extra_units=0):
    """f(θ) = scale·(a cos 2θ, b sin 2θ[, 0 …]) with identity noise:
    J = 4 scale² (a² sin² 2θ + b² cos² 2θ)."""
    def mean(t):
        cols = [scale * a * torch.cos(2 * t), scale * b * torch.sin(2 * t)]
        return torch.stack(cols + [torch.zeros_like(t)] * extra_units, 1)

    cov = np.zeros((2 + extra_units,) * 2)
    cov[0, 0] = cov[1, 1] = 1.0
    return GaussianEncoding(mean, cov, ridge=1e-12)


def ellipse_fisher(theta, scale, a, b):
    j = 4 * scale**2 * (a**2 * np.sin(2 * theta) ** 2 + b**2 * np.cos(2 * theta) ** 2)
    dj = 8 * scale**2 * (a**2 - b**2) * np.sin(4 * theta)
    return j, -dj / j**2  # J and d/dθ[1/J]


@pytest.mark.parametrize("scale, a, b", [(40.0, 1.0, 0.5), (25.0, 0.6, 1.0), (60.0, 1.0, 0.8)])
def test_fisher_of_a_known_encoding_and_units_without_noise_left_out(scale, a, b):
    enc = ellipse(scale, a, b, extra_units=2)
    assert list(enc.units) == [0, 1]  # the two constant, noiseless units are not part of it
    theta = np.linspace(0, math.pi, 13, endpoint=False)
    np.testing.assert_allclose(enc.fisher(theta), ellipse_fisher(theta, scale, a, b)[0],
                               rtol=1e-5)
    means = enc.mean(theta)
    np.testing.assert_allclose(means[:, 0], scale * a * np.cos(2 * theta), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("scale, a, b, seed", [(40.0, 1.0, 0.5, 0), (30.0, 0.6, 1.0, 1)])
def test_the_flat_prior_posterior_mean_obeys_the_law_with_c_1(scale, a, b, seed):
    enc = ellipse(scale, a, b)
    theta = np.arange(24) * math.pi / 24
    decoded = posterior_mean_decode(enc, theta, 6000, np.random.default_rng(seed),
                                    n_grid=1024)
    assert decoded.shape == (24, 6000) and (decoded >= 0).all() and (decoded < math.pi).all()
    out = bias_from_decoded(decoded, theta)
    j, slope = ellipse_fisher(theta, scale, a, b)
    # angle by angle: the bias is d/dθ[1/J] within its trial noise (small-noise law, c = 1)
    z = (out["bias"].values - slope) / out["bias_stderr"].values
    assert np.abs(z).max() < 4.5
    # the MSE is the Cramér–Rao bound 1/J to first order
    np.testing.assert_allclose(out["squared_error"].values * j, 1.0, atol=0.12)
    fisher = xr.DataArray(enc.fisher(theta), dims="angle", coords={"angle": theta})
    fit = fit_bias_law(out["bias"], inverse_fisher_slope(fisher, 6), stderr=out["bias_stderr"])
    c, se = float(fit["law_constant"]), float(fit["law_constant_stderr"])
    assert abs(c - 1) < 4 * se and se < 0.1
    assert float(fit["law_correlation"]) > 0.9


def warped_circle(scale, eps):
    """f(θ) = scale·(cos φ, sin φ), φ = 2θ − ε cos 2θ, identity noise: J = scale² φ′² with
    φ′ = 2(1 + ε sin 2θ), one peak per period, at 45°."""
    def mean(t):
        phi = 2 * t - eps * torch.cos(2 * t)
        return scale * torch.stack([torch.cos(phi), torch.sin(phi)], 1)

    return GaussianEncoding(mean, np.eye(2), ridge=1e-12)


def test_a_prior_adds_its_attraction_and_a_sharp_one_flips_the_law():
    """With a prior π the posterior mean's bias is d/dθ[1/J] + (ln π)′/J; a prior at J's
    peak and much sharper than J (J ∝ π^α, α ≪ 1) gives c = 1 − 1/α < 0: the law fails."""
    scale, eps, kappa = 20.0, 0.3, 4.0
    enc = warped_circle(scale, eps)
    prior = VonMises(math.pi / 4, kappa)
    theta = np.arange(24) * math.pi / 24
    j = 4 * scale**2 * (1 + eps * np.sin(2 * theta)) ** 2
    dj = 16 * scale**2 * eps * np.cos(2 * theta) * (1 + eps * np.sin(2 * theta))
    np.testing.assert_allclose(enc.fisher(theta), j, rtol=1e-5)
    decoded = posterior_mean_decode(enc, theta, 6000, np.random.default_rng(3), n_grid=1024,
                                    prior=prior)
    out = bias_from_decoded(decoded, theta)
    predicted = -dj / j**2 - 2 * kappa * np.sin(2 * (theta - math.pi / 4)) / j
    z = (out["bias"].values - predicted) / out["bias_stderr"].values
    assert np.abs(z).max() < 5
    fisher = xr.DataArray(j, dims="angle", coords={"angle": theta})
    fit = fit_bias_law(out["bias"], inverse_fisher_slope(fisher, 6), stderr=out["bias_stderr"])
    assert float(fit["law_constant"]) < -1 - 4 * float(fit["law_constant_stderr"])
    flat = bias_from_decoded(posterior_mean_decode(enc, theta, 6000, np.random.default_rng(4),
                                                   n_grid=1024), theta)
    fit = fit_bias_law(flat["bias"], inverse_fisher_slope(fisher, 6), stderr=flat["bias_stderr"])
    assert abs(float(fit["law_constant"]) - 1) < 4 * float(fit["law_constant_stderr"])


def test_the_grid_resolves_the_posterior():
    enc = ellipse(40.0, 1.0, 0.5)
    theta = np.array([0.2, 1.3])
    coarse = posterior_mean_decode(enc, theta, 200, np.random.default_rng(5), n_grid=512)
    fine = posterior_mean_decode(enc, theta, 200, np.random.default_rng(5), n_grid=4096,
                                 chunk_size=4096 * 7)
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-7)  # 3.4 grid points per s.d.


def test_bad_inputs_are_refused_in_one_line():
    enc = ellipse(10.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="generator must be a numpy.random.Generator"):
        posterior_mean_decode(enc, [0.1], 4, torch.Generator())
    with pytest.raises(ValueError, match="n_grid must be"):
        posterior_mean_decode(enc, [0.1], 4, np.random.default_rng(), n_grid=4)
    with pytest.raises(ValueError, match="encoding must be a GaussianEncoding"):
        posterior_mean_decode(object(), [0.1], 4, np.random.default_rng())
    with pytest.raises(ValueError, match="prior must be an AnglePrior or None"):
        posterior_mean_decode(enc, [0.1], 4, np.random.default_rng(), prior="flat")
    with pytest.raises(ValueError, match="covariance must be a symmetric"):
        GaussianEncoding(lambda t: t[:, None], np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="covariance must be a matrix with some positive"):
        GaussianEncoding(lambda t: t[:, None], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="covariance must be positive semi-definite"):
        GaussianEncoding(lambda t: t[:, None], np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="ridge must be"):
        GaussianEncoding(lambda t: t[:, None], np.eye(1), ridge=0.0)


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)  # a fixture's network, not a study's
    return build_model(CNNConfig(image_size=16, channels=(4, 6), fc_units=12,
                                 readout="cossin")).eval()


def test_a_layer_encoding_is_the_layer_mean_and_its_averaged_propagated_covariance(small_net):
    spec = GratingSpec(size=16, frequency=3.0, phase=0.0, noise_std=1.0)
    moments = np.array([0.1, 0.9, 2.0])
    enc = layer_encoding(small_net, spec, "fc", moments)
    pairs = [layer_moments(small_net, spec, float(t), "fc") for t in moments]
    cov = np.mean([s.numpy() for _, s in pairs], axis=0)
    kept = np.flatnonzero(np.diag(cov) > 0)
    sub = cov[np.ix_(kept, kept)]
    np.testing.assert_allclose(enc.covariance, sub + 1e-6 * np.diag(np.diag(sub)), rtol=1e-12)
    # J = f′ᵀ Σ⁻¹ f′ with f′ from the layer's own moments (forward mode both ways)
    for (fprime, _), t in zip(pairs, moments, strict=True):
        f = fprime.numpy()[kept]
        expected = f @ np.linalg.solve(enc.covariance, f)
        assert float(enc.fisher([t])[0]) == pytest.approx(expected, rel=1e-4)


def test_with_one_moment_angle_the_encoding_fisher_is_the_propagated_fisher(small_net):
    """Σ̄ from the angle itself: the same linear FI f′ᵀ(Σ + ε diag Σ)⁻¹f′ that the
    propagated estimator computes, by an independent route."""
    spec = GratingSpec(size=16, frequency=3.0, phase=0.0, noise_std=1.0)
    for t in (0.3, 1.7):
        enc = layer_encoding(small_net, spec, "fc", [t])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prop = propagated_fisher(small_net, spec, [t], layers=["fc"], solver="exact")
        assert float(enc.fisher([t])[0]) == pytest.approx(float(prop.sel(layer="fc").squeeze()),
                                                          rel=1e-3)
    assert small_net.training is False
