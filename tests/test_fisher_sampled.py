"""Sampled estimators on networks, the estimator (output) FI, measure_fisher, smoothing.

The sampled estimators see the spec's own noise through the network; where that noise is
additive Gaussian and the network linear they must agree with the propagated estimator, on a
trained nonlinear CNN they must agree in shape, and over random phases the sampled linear FI
(marginal) falls far below the propagated phase-conditional one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.stats import spearmanr
from test_fisher import fitted_linear_decoder, linear_net, small_spec

from anglesim.distributions import VonMises
from anglesim.fisher import (
    bootstrap_replicates,
    estimator_fisher,
    linear_fisher_from_samples,
    measure_fisher,
    method_result,
    propagated_fisher,
    sampled_fisher,
    smooth_periodic,
)
from anglesim.io import load_dataset, save_dataset
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec
from anglesim.theory import fit_exponent, predicted_fisher
from anglesim.training import Phase, train


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks on a shared 2-core machine run far faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ANGLES = np.array([0.3, 1.2, 2.4])


def test_sampled_fisher_of_a_linear_network_matches_the_propagated_one():
    spec = small_spec(noise_std=0.25)  # additive Gaussian pixel noise, fixed phase
    w = torch.randn(20, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = linear_net(w)
    exact = propagated_fisher(net, spec, ANGLES, layers=["fc", "head"])
    g = torch.Generator().manual_seed(1)
    bc = sampled_fisher(net, spec, ANGLES, layers=["fc", "head"], n_trials=2000, dtheta=0.1,
                        generator=g)
    assert bc.dims == ("layer", "angle") and bc.attrs["method"] == "sampled_bias_corrected"
    assert "fixed phase" in bc.attrs["quantity"] and "Gaussian pixel noise" in \
        bc.attrs["noise_model"]
    assert list(bc["n_units"].values) == [20, 2]
    err = np.abs(bc - exact)
    assert (err.sel(layer="fc") < 0.1 * exact.sel(layer="fc")).all()
    assert (err < 4 * bc["stderr"]).all()  # the 2-unit head has J ≈ 20 ± 3
    dec = sampled_fisher(net, spec, ANGLES, layers=["fc"], estimator="decoder", n_trials=2000,
                         dtheta=0.1, generator=g)
    ratio = (dec / exact.sel(layer=["fc"])).values
    assert (ratio > 0.8).all() and (ratio < 1.05).all()
    shrunk = sampled_fisher(net, spec, ANGLES, layers=["fc"], estimator="shrinkage",
                            n_trials=2000, dtheta=0.1, generator=g)
    assert (np.abs(shrunk / exact.sel(layer=["fc"]) - 1) < 0.15).all()
    boot = sampled_fisher(net, spec, ANGLES[:1], layers=["head"], n_trials=500, dtheta=0.05,
                          generator=g, n_boot=100)
    assert (boot["ci_low"] < boot).all() and (boot < boot["ci_high"]).all()


def test_sampled_fisher_validates():
    spec = small_spec()
    net = linear_net(torch.eye(64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"layer 'input'.*N=\d+.*T=20.*pca"):
        sampled_fisher(net, spec, ANGLES[:1], layers=["input"], n_trials=20)
    with pytest.raises(ValueError, match="estimator"):
        sampled_fisher(net, spec, ANGLES, estimator="fancy")
    with pytest.raises(ValueError, match="n_components"):
        sampled_fisher(net, spec, ANGLES, estimator="decoder", n_components=3)
    with pytest.raises(ValueError, match="layers"):
        sampled_fisher(net, spec, ANGLES, layers=["conv1"])
    # with few trials the PCA variant still gives a number for the 64 pixels
    few = sampled_fisher(net, spec, ANGLES[:1], layers=["input"], estimator="pca",
                         n_trials=20, generator=torch.Generator().manual_seed(0))
    assert np.isfinite(few).all() and "principal components" in few.attrs["quantity"]


def test_random_phase_marginal_linear_fisher_is_far_below_the_phase_conditional():
    """Averaged over a uniform phase the mean image barely depends on θ, so a linear layer's
    linear FI (the sampled estimator's, a lower bound on the marginal FI) nearly vanishes,
    while the phase-conditional FI (propagated, averaged over phases) is an upper bound."""
    spec = small_spec(phase=None)
    w = torch.randn(20, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    net = linear_net(w)
    upper = propagated_fisher(net, spec, ANGLES, layers=["fc"])
    lower = sampled_fisher(net, spec, ANGLES, layers=["fc"], n_trials=2000, dtheta=0.1,
                           generator=torch.Generator().manual_seed(3))
    assert "upper bound" in upper.attrs["phase_average"]
    assert "lower bound" in lower.attrs["quantity"] and "random phase" in \
        lower.attrs["noise_model"]
    assert (lower < 0.1 * upper).all()


def test_estimator_fisher_of_a_linear_decoder():
    spec = small_spec(noise_std=0.05, phase=0.0)
    net = fitted_linear_decoder(spec)
    angles = np.array([0.0, 0.8, 1.6, math.pi - 0.01])  # two straddle the wrap at 0 ≡ π
    est = estimator_fisher(net, spec, angles, n_trials=2000, dtheta=0.05,
                           generator=torch.Generator().manual_seed(4))
    exact = propagated_fisher(net, spec, angles, layers=["output"]).values[0]
    assert est.attrs["method"] == "estimator"
    assert (np.abs(est.values / exact - 1) < 0.1).all()
    assert (np.abs(est.values - exact) < 4 * est["stderr"].values).all()
    assert (np.abs(est["bias"]) < 0.02).all()
    assert (est["mean_decoded"] >= 0).all() and (est["mean_decoded"] < math.pi).all()
    np.testing.assert_allclose(est["d_prime"], np.sqrt(est["derivative"] ** 2
                                                       / est["variance"]) * 0.05, rtol=1e-12)
    np.testing.assert_allclose(est["derivative"], 1.0, atol=0.1)
    naive = estimator_fisher(net, spec, angles, n_trials=2000, dtheta=0.05,
                             generator=torch.Generator().manual_seed(4), bias_corrected=False)
    np.testing.assert_allclose(naive, est["derivative"] ** 2 / est["variance"], rtol=1e-12)


def trained_cnn(nonlinearity: str, pool: str, spec: GratingSpec):
    torch.manual_seed(0)
    net = build_model(CNNConfig(image_size=16, channels=(4, 8), kernel_size=3, fc_units=16,
                                readout="cossin", nonlinearity=nonlinearity, pool=pool))
    train(net, [Phase("train", VonMises(math.pi / 2, 2.0), spec, loss="cosine", lr=5e-3,
                      epochs=3, steps_per_epoch=40, batch_size=32, eval_angles=8)], seed=0)
    return net


@pytest.mark.parametrize("nonlinearity, pool", [
    ("tanh", "avg"),
    pytest.param("relu", "max", marks=pytest.mark.slow),
])
def test_estimators_agree_in_shape_on_a_trained_cnn(nonlinearity, pool):
    """Same noise (additive Gaussian pixels, fixed phase): propagated, sampled linear (bias
    corrected), decoder and estimator FI rank the angles alike. With smooth units they also
    agree in size; with ReLU and max pooling the linearisation misses the units and pool
    winners that noise switches, and the sampled FI is larger (by up to ~2× at σ = 0.3)."""
    spec = GratingSpec(size=16, frequency=2.0, phase=0.0, noise_std=0.3)
    net = trained_cnn(nonlinearity, pool, spec)
    angles = np.arange(12) * math.pi / 12
    g = torch.Generator().manual_seed(1)
    prop = propagated_fisher(net, spec, angles, layers=["fc", "output"])
    lin = sampled_fisher(net, spec, angles, layers=["fc", "output"], n_trials=1000,
                         dtheta=0.1, generator=g)
    dec = sampled_fisher(net, spec, angles, layers=["fc", "head"], estimator="decoder",
                         n_trials=1000, dtheta=0.1, generator=g)
    out = estimator_fisher(net, spec, angles, n_trials=1000, dtheta=0.1, generator=g)
    p_fc, p_out = prop.sel(layer="fc").values, prop.sel(layer="output").values
    for other in (lin.sel(layer="fc"), dec.sel(layer="fc")):
        assert spearmanr(p_fc, other.values)[0] >= 0.8
    for other in (lin.sel(layer="output"), dec.sel(layer="head"), out):
        assert spearmanr(p_out, other.values)[0] >= 0.8
    ratio = (lin / prop).values
    if nonlinearity == "tanh":
        assert (np.abs(ratio - 1) < 0.2).all()
    else:
        assert np.median(ratio) > 1.1


# ------------------------------------------------------------------------------------------
# measure_fisher
# ------------------------------------------------------------------------------------------


def test_measure_fisher_collects_methods_in_one_dataset(tmp_path):
    spec = small_spec(noise_std=0.05, phase=0.0)
    net = fitted_linear_decoder(spec)
    prior = VonMises(1.0, 2.0)
    ds = measure_fisher(
        net, spec, prior,
        methods=["propagated", "output_gaussian", "bias_corrected", "decoder", "estimator",
                 "savgol"],
        angles=6, n_trials=300, dtheta=0.05, generator=torch.Generator().manual_seed(5),
        savgol_options=dict(n_dense=600, n_cov_angles=12, n_cov_samples=400, window=61))
    assert ds["fisher"].dims == ("estimator", "layer", "angle")
    assert list(ds["layer"].values) == ["input", "fc", "head", "output"]
    grid = ds["angle"].values
    np.testing.assert_allclose(grid, np.arange(6) * math.pi / 6, rtol=1e-15)
    np.testing.assert_allclose(ds["prior_density"], prior.pdf(grid))
    fi = ds["fisher"]
    # the propagated numbers are exactly those of a direct call, attrs included
    direct = propagated_fisher(net, spec, grid)
    prop = method_result(ds, "propagated")
    np.testing.assert_array_equal(prop.values, direct.values)
    assert prop.attrs == {k: (v.item() if isinstance(v, np.generic) else v)
                          for k, v in direct.attrs.items()}
    # each method fills the layers it measures
    assert np.isnan(fi.sel({"estimator": "bias_corrected", "layer": ["input", "fc"]})).all()
    assert np.isfinite(fi.sel({"estimator": "bias_corrected", "layer": ["head", "output"]})).all()
    assert np.isnan(fi.sel({"estimator": "estimator", "layer": ["input", "fc", "head"]})).all()
    assert np.isfinite(fi.sel({"estimator": ["estimator", "savgol"], "layer": "output"})).all()
    assert np.isfinite(ds["stderr"].sel({"estimator": "bias_corrected", "layer": "head"})).all()
    assert np.isnan(ds["stderr"].sel({"estimator": "propagated"})).all()
    # the methods agree at the decoded output of this near-linear network
    out = fi.sel(layer="output")
    for method in ("bias_corrected", "estimator", "savgol"):
        ratio = out.sel({"estimator": method}) / out.sel({"estimator": "propagated"})
        assert (np.abs(ratio - 1) < 0.35).all(), (method, ratio.values)
    thr = ds["threshold"].sel({"estimator": "propagated", "layer": "output"})
    np.testing.assert_allclose(thr, 1 / np.sqrt(out.sel({"estimator": "propagated"})))
    assert "lower bound" not in str(ds["quantity"].sel({"estimator": "bias_corrected"}).item())
    assert np.isfinite(ds["decoded_bias"]).all() and np.isfinite(ds["d_prime"]).all()
    # netCDF round trip
    path = save_dataset(ds, tmp_path / "fisher.nc")
    back = load_dataset(path)
    np.testing.assert_array_equal(back["fisher"].values, ds["fisher"].values)
    np.testing.assert_array_equal(method_result(back, "propagated").values, direct.values)


def test_measure_fisher_validates():
    spec = small_spec()
    net = linear_net(torch.eye(64, dtype=torch.float64))
    with pytest.raises(ValueError, match="methods"):
        measure_fisher(net, spec, methods=["magic"])
    with pytest.raises(ValueError, match="methods"):
        measure_fisher(net, spec, methods=["propagated", "propagated"])
    with pytest.raises(ValueError, match="layers"):
        measure_fisher(net, spec, layers=["conv3"])
    with pytest.raises(ValueError, match="angles"):
        measure_fisher(net, spec, angles=0)
    ds = measure_fisher(net, spec, methods=["propagated"], layers=["fc"], angles=[0.1, 0.2])
    assert "prior_density" not in ds and list(ds["layer"].values) == ["fc"]


# ------------------------------------------------------------------------------------------
# Smoothing and replicate bands
# ------------------------------------------------------------------------------------------


def test_periodic_smoother_recovers_a_fourier_curve():
    theta = np.arange(64) * math.pi / 64
    truth = np.exp(4 + 0.6 * np.cos(2 * theta) + 0.3 * np.sin(4 * theta))
    rng = np.random.default_rng(6)
    noisy = truth * np.exp(rng.normal(0, 0.2, (3, 64)))
    da = xr.DataArray(noisy, dims=("replicate", "angle"), coords={"angle": theta},
                      name="fisher", attrs={"units": "rad^-2"})
    smooth = smooth_periodic(da, n_harmonics=2)
    assert smooth.dims == da.dims and smooth.attrs["units"] == "rad^-2"
    assert "2 harmonics" in smooth.attrs["smoothing"]
    assert np.abs(np.log(smooth / truth)).max() < 0.15
    assert np.abs(np.log(smooth / truth)).mean() < np.abs(np.log(da / truth)).mean() / 2
    fine = np.linspace(0, math.pi, 200, endpoint=False)
    at = smooth_periodic(da, n_harmonics=2, at=fine)
    assert at.sizes["angle"] == 200
    np.testing.assert_allclose(at.isel(angle=slice(0, 200, 25)).values,
                               smooth_periodic(da, 2, at=fine[::25]).values, rtol=1e-12)
    exact = smooth_periodic(xr.DataArray(truth, dims="angle", coords={"angle": theta}), 2)
    np.testing.assert_allclose(exact, truth, rtol=1e-10)  # in the model class: unchanged
    with pytest.raises(ValueError, match="log=False"):
        smooth_periodic(da - da.max(), 2)
    assert np.isfinite(smooth_periodic(da - da.mean(), 2, log=False)).all()
    with pytest.raises(ValueError, match="n_harmonics"):
        smooth_periodic(da.isel(angle=slice(0, 4)), 2)


def test_bootstrap_band_over_replicates_covers_the_mean():
    theta = np.arange(8) * math.pi / 8
    truth = 100 * (1.5 + np.cos(2 * theta))
    rng = np.random.default_rng(7)
    covered = 0
    sims = 200
    for k in range(sims):
        reps = truth * np.exp(rng.normal(0, 0.3, (12, 8)))
        da = xr.DataArray(reps, dims=("replicate", "angle"), coords={"angle": theta})
        band = bootstrap_replicates(da, n_boot=400, seed=k)
        covered += bool(band.sel(bound="low")[0] <= truth[0] <= band.sel(bound="high")[0])
    assert band.dims == ("bound", "angle")
    np.testing.assert_allclose(band.sel(bound="estimate"), np.exp(np.log(reps).mean(0)))
    assert (band.sel(bound="low") < band.sel(bound="estimate")).all()
    assert 0.85 <= covered / sims <= 0.99  # nominal 95%; percentile intervals run a bit narrow
    with pytest.raises(ValueError, match="replicate"):
        bootstrap_replicates(da.isel(replicate=[0]))


def test_theory_recovers_a_planted_exponent_through_noisy_smoothed_curves():
    theta = np.arange(48) * math.pi / 48
    density = xr.DataArray(VonMises(math.pi / 2, 3.0).pdf(theta), dims="angle",
                           coords={"angle": theta})
    rng = np.random.default_rng(8)
    planted = 2 / 3
    base = predicted_fisher(density, planted, normalise_to=xr.full_like(density, 400.0))
    noisy = base * np.exp(rng.normal(0, 0.15, theta.size))
    fit = fit_exponent(smooth_periodic(noisy, n_harmonics=4), density)
    assert fit.ci_low <= planted <= fit.ci_high and abs(fit.alpha - planted) < 0.1


def test_sampled_output_fisher_is_wrapped_on_the_half_circle():
    """The decoded angle near the wrap point 0 ≡ π: samples on both sides of it must be
    unwrapped around their circular mean, or the variance would be of order π²."""
    spec = small_spec(noise_std=0.05, phase=0.0)
    net = fitted_linear_decoder(spec)
    angles = [0.0, 0.01, 1.0, math.pi - 0.01]
    fi = sampled_fisher(net, spec, angles, layers=["output"], n_trials=1000, dtheta=0.05,
                        generator=torch.Generator().manual_seed(9))
    exact = propagated_fisher(net, spec, angles, layers=["output"])
    assert (np.abs(fi / exact - 1) < 0.2).all()
    assert linear_fisher_from_samples(np.zeros((5, 1)), np.ones((5, 1)), 0.1) == math.inf
