"""Fisher-information estimators against closed forms and simulated populations.

Propagated FI: a linear layer has a closed form, an overcomplete one keeps all the pixels'
information, every layer of a nonlinear network obeys the data-processing inequality, and the
decoded output matches an explicit autograd computation. Sampled FI: von Mises populations with
known noise (independent, information-limiting, Poisson) and the bias and variance formulas of
Kanitscheider et al. 2015.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.special import ive
from torch import nn

from anglesim.fisher import (
    bootstrap_fisher,
    decoder_fisher,
    discrimination_threshold,
    gaussian_fisher,
    linear_fisher_from_samples,
    linear_fisher_pca,
    linear_fisher_shrinkage,
    linear_fisher_variance,
    output_noise_fisher,
    poisson_fisher,
    propagated_fisher,
    savgol_fisher,
)
from anglesim.fisher._arrays import ledoit_wolf_covariance
from anglesim.fisher._base import fisher_dataarray
from anglesim.models import AngleNet, CNNConfig, build_model
from anglesim.stimuli import GratingSpec, render_clean

ANGLES = torch.tensor([0.1, 0.7, 1.3, 2.0, 2.9], dtype=torch.float64)


def seeded(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter from an explicit generator: U(−1/√fan_in, 1/√fan_in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            bound = 1 / math.sqrt(p[0].numel()) if p.ndim > 1 else 0.1
            p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return model


def linear_net(weight: torch.Tensor) -> AngleNet:
    """An AngleNet whose block "fc" is r = W x (flattened pixels), then a (cos 2θ, sin 2θ) head."""
    n_units, n_pix = weight.shape
    blocks = {"fc": nn.Sequential(nn.Flatten(), nn.Linear(n_pix, n_units, bias=False)),
              "head": nn.Sequential(nn.Linear(n_units, 2))}
    net = seeded(AngleNet(blocks, "cossin", 36, {"kind": "mlp"}), n_units).to(weight.dtype)
    with torch.no_grad():
        net.blocks["fc"][1].weight.copy_(weight)
    return net


def small_spec(**kw) -> GratingSpec:
    base = dict(size=8, frequency=1.5, phase=0.3, contrast=1.0, aperture=0.9,
                aperture_edge=0.2, noise_std=0.5)
    base.update(kw)
    return GratingSpec(**base)


def xdot_fd(angles: torch.Tensor, spec: GratingSpec, h: float = 1e-5) -> torch.Tensor:
    """∂x/∂θ by central finite differences in float64, [A, P²]."""
    plus = render_clean(angles + h, spec).reshape(len(angles), -1).double()
    minus = render_clean(angles - h, spec).reshape(len(angles), -1).double()
    return (plus - minus) / (2 * h)


# ------------------------------------------------------------------------------------------
# Propagated Fisher information
# ------------------------------------------------------------------------------------------


def test_linear_layer_matches_closed_form():
    spec = small_spec()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(20, 64, generator=g, dtype=torch.float64)
    sigma = 0.5
    xd = xdot_fd(ANGLES, spec)
    for eps in (1e-6, 0.05):  # a large ridge checks its exact definition ε·diag(σ²WWᵀ)
        fi = propagated_fisher(linear_net(w), spec, ANGLES, layers=["fc"], eps=eps)
        cov = sigma**2 * w @ w.T
        cov = cov + eps * torch.diag(torch.diagonal(cov))
        expected = [float(w @ v @ torch.linalg.solve(cov, w @ v)) for v in xd]
        assert fi.dims == ("layer", "angle")
        assert list(fi["layer"].values) == ["fc"]
        np.testing.assert_allclose(fi.sel(layer="fc").values, expected, rtol=1e-4)
    # a 20-unit code of 64 pixels loses information
    assert (fi.sel(layer="fc").values < (xd**2).sum(1).numpy() / sigma**2 * 0.9).all()


def test_overcomplete_linear_layer_keeps_all_pixel_information():
    spec = small_spec()
    g = torch.Generator().manual_seed(1)
    w = torch.randn(150, 64, generator=g, dtype=torch.float64)  # N = 150 > P² = 64
    fi = propagated_fisher(linear_net(w), spec, ANGLES, layers=["input", "fc"])
    pixels = (xdot_fd(ANGLES, spec) ** 2).sum(1).numpy() / spec.noise_std**2
    np.testing.assert_allclose(fi.sel(layer="input").values, pixels, rtol=1e-6)
    np.testing.assert_allclose(fi.sel(layer="fc").values, pixels, rtol=1e-4)


def test_sigma_scales_information_as_inverse_variance():
    spec = small_spec()
    w = torch.randn(30, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    net = linear_net(w)
    a = propagated_fisher(net, spec, ANGLES, sigma=0.5)
    b = propagated_fisher(net, spec, ANGLES, sigma=1.0)
    np.testing.assert_allclose(a.values, 4 * b.values, rtol=1e-6)
    assert a.attrs["sigma"] == 0.5 and b.attrs["sigma"] == 1.0


def conv_net(seed: int, **config) -> AngleNet:
    """A small random CNN on 8 × 8 images (float64)."""
    base = dict(image_size=8, channels=(4, 6), kernel_size=3, fc_units=12, readout="cossin")
    base.update(config)
    return seeded(build_model(CNNConfig(**base)), seed).double()


def test_data_processing_inequality_in_a_nonlinear_network():
    spec = small_spec()
    angles = torch.linspace(0, math.pi, 9, dtype=torch.float64)[:-1]
    nets = [
        conv_net(0),  # conv1: 64 units = P² (reverse-mode Jacobian), ReLU zeros
        conv_net(1, pool="none", nonlinearity="tanh", readout="bins", n_bins=12),  # 256 > P²
        conv_net(2, channels=(3,), fc_units=0, readout="angle"),
    ]
    for net in nets:
        fi = propagated_fisher(net, spec, angles, chunk_size=3)
        assert list(fi["layer"].values) == ["input", *net.block_names, "output"]
        vals = fi.values
        assert np.isfinite(vals).all() and (vals >= 0).all()
        assert (vals[1:] > 0).any(axis=1).all()  # every layer carries some information
        assert (vals <= vals[0] * (1 + 1e-6)).all()  # no layer beats the pixels
        # each layer is a function of the one before it, so J can only decrease along the net
        # (up to the ridge: a 1-unit head has J_output / (1 + eps))
        assert (np.diff(vals, axis=0) <= vals[:-1] * 1e-5).all()


def test_output_layer_matches_explicit_autograd():
    spec = small_spec()
    net = conv_net(3)
    fi = propagated_fisher(net, spec, ANGLES, layers=["output"], sigma=0.7)
    xd = xdot_fd(ANGLES, spec)
    expected = []
    for k, theta in enumerate(ANGLES):
        x = render_clean(theta.reshape(1), spec).double().requires_grad_(True)
        theta_hat = net.decode(net(x))[0]
        (grad,) = torch.autograd.grad(theta_hat, x)
        grad = grad.reshape(-1)
        expected.append(float((grad @ xd[k]) ** 2 / (0.7**2 * grad @ grad)))
    np.testing.assert_allclose(fi.sel(layer="output").values, expected, rtol=1e-5)


def test_random_phase_is_the_average_of_fixed_phases():
    spec = small_spec(phase=None)
    net = conv_net(4)
    fi = propagated_fisher(net, spec, ANGLES[:3], layers=["input", "fc", "output"])
    assert fi.dims == ("layer", "angle") and fi.shape == (3, 3)
    assert "averaged over 8" in fi.attrs["phase_average"] and fi.attrs["n_phases"] == 8
    fixed = [
        propagated_fisher(net, spec.replace(phase=float(p)), ANGLES[:3],
                          layers=["input", "fc", "output"]).values
        for p in np.arange(8) * 2 * math.pi / 8
    ]
    np.testing.assert_allclose(fi.values, np.mean(fixed, axis=0), rtol=1e-6)
    # explicit phases with a fixed-phase spec are averaged as well
    two = propagated_fisher(net, small_spec(), ANGLES[:3], layers=["fc"], phases=[0.0, 1.0])
    assert two.attrs["n_phases"] == 2


def test_thousand_units_on_a_64px_image_with_small_chunks():
    spec = GratingSpec(size=64, frequency=4.0, noise_std=1.0)
    w = torch.randn(1000, 64 * 64, generator=torch.Generator().manual_seed(5)) / 64
    angles = torch.arange(16) * math.pi / 16
    fi = propagated_fisher(linear_net(w), spec, angles, layers=["input", "fc"], chunk_size=2,
                           precision="model")  # the model's float32: memory, not rounding
    assert fi.shape == (2, 16) and np.isfinite(fi.values).all()
    assert (fi.sel(layer="fc") > 0).all()
    assert (fi.sel(layer="fc") <= fi.sel(layer="input") * (1 + 1e-4)).all()


_PEAK_PROBE = """
import math, resource, sys, torch
sys.path.insert(0, {tests!r})
from test_fisher import linear_net
from anglesim.fisher import propagated_fisher
from anglesim.stimuli import GratingSpec
n = int(sys.argv[1])
w = torch.randn(1000, 64 * 64, generator=torch.Generator().manual_seed(5)) / 64
net = linear_net(w)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
propagated_fisher(net, GratingSpec(size=64, frequency=4.0, noise_std=1.0),
                  torch.arange(n) * math.pi / n, layers=["input", "fc"], chunk_size=2,
                  precision="model")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_peak_memory_does_not_grow_with_the_number_of_angles():
    """One 1000 × 4096 float64 Jacobian is 33 MB: holding every angle's would add 330 MB going
    from 2 to 12 angles. Each count runs in a fresh process, whose peak RSS growth is read."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("resource")  # POSIX only
    code = _PEAK_PROBE.format(tests=str(Path(__file__).parent))

    def growth(n: int) -> int:
        out = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    few, many = growth(2), growth(12)
    assert many < few + 100 * 2**20, (few, many)


def test_noise_variance_map_is_used_per_pixel():
    spec = small_spec(mask_after_noise=True)
    var = spec.noise_variance_map().double().reshape(-1)
    assert var.max() > var[var > 0].min() * 1.01  # the map is not constant
    xd = xdot_fd(ANGLES, spec)
    keep = var > 0
    expected = (xd[:, keep] ** 2 / var[keep]).sum(1).numpy()
    identity = linear_net(torch.eye(64, dtype=torch.float64))
    fi = propagated_fisher(identity, spec, ANGLES)
    np.testing.assert_allclose(fi.sel(layer="input").values, expected, rtol=1e-6)
    np.testing.assert_allclose(fi.sel(layer="fc").values, expected, rtol=1e-4)
    assert "per-pixel variance map" in fi.attrs["noise_model"]
    # a 20-unit linear layer: (Wẋ)ᵀ(Σ_r + ε diag Σ_r)⁻¹(Wẋ), Σ_r = W diag(V) Wᵀ
    w = torch.randn(20, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    lin = propagated_fisher(linear_net(w), spec, ANGLES, layers=["fc"]).sel(layer="fc")
    cov = w @ torch.diag(var) @ w.T
    cov = cov + 1e-6 * torch.diag(torch.diagonal(cov))
    closed = [float(w @ v @ torch.linalg.solve(cov, w @ v)) for v in xd]
    np.testing.assert_allclose(lin.values, closed, rtol=1e-4)
    # decoded output: (∂θ̂/∂x · ẋ)² / (∂θ̂/∂x diag(V) ∂θ̂/∂xᵀ)
    x = render_clean(ANGLES, spec).double().requires_grad_(True)
    (grad,) = torch.autograd.grad(identity.decode(identity(x)).sum(), x)
    grad = grad.reshape(len(ANGLES), -1)[:, keep]
    out = ((grad * xd[:, keep]).sum(1) ** 2 / (grad**2 * var[keep]).sum(1)).numpy()
    np.testing.assert_allclose(fi.sel(layer="output").values, out, rtol=1e-5)


def test_propagated_fisher_validates_and_annotates():
    net = linear_net(torch.randn(10, 64, generator=torch.Generator().manual_seed(7),
                                 dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma"):
        propagated_fisher(net, small_spec(noise_std=0.0), ANGLES)
    with pytest.raises(ValueError, match="layers"):
        propagated_fisher(net, small_spec(), ANGLES, layers=["conv9"])
    with pytest.raises(ValueError, match="eps"):
        propagated_fisher(net, small_spec(), ANGLES, eps=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        propagated_fisher(net, small_spec(), ANGLES, chunk_size=0)
    net.train()
    fi = propagated_fisher(net, small_spec(noise_std=0.0), ANGLES,
                           layers=["output", "fc", "input"], sigma=0.3)
    assert net.training  # mode restored
    # measured in eval mode: dropout is off, so a model in train mode gives the eval numbers
    drop = conv_net(8, dropout=0.5).train()
    in_train = propagated_fisher(drop, small_spec(), ANGLES[:2]).values
    np.testing.assert_array_equal(in_train, propagated_fisher(drop.eval(), small_spec(),
                                                              ANGLES[:2]).values)
    assert list(fi["layer"].values) == ["input", "fc", "output"]
    assert fi.attrs["method"] == "propagated" and fi.attrs["units"] == "rad^-2"
    assert fi.attrs["sigma"] == 0.3 and fi.attrs["eps"] == 1e-6
    assert "noise_model_note" not in fi.attrs and "phase_average" not in fi.attrs
    np.testing.assert_allclose(fi["angle"].values, ANGLES.numpy())
    noisy = small_spec(noise_prob=0.1)
    assert not noisy.gaussian_noise_only
    with pytest.warns(UserWarning, match="sampled estimator"):
        note = propagated_fisher(net, noisy, ANGLES, layers=["fc"]).attrs["noise_model_note"]
    assert "Gaussian" in note and "sampled" in note
    with pytest.warns(UserWarning, match="not \\(only\\) additive Gaussian"):
        propagated_fisher(net, GratingSpec.reference().replace(size=8, frequency=4.0), ANGLES[:1],
                          layers=["input"])


def test_fisher_dataarray_checks_shapes():
    da = fisher_dataarray(np.ones((2, 3)), [0.0, 1.0, 2.0], ["a", "b"], "test", sigma=1.0)
    assert da.dims == ("layer", "angle") and da.name == "fisher"
    assert da.attrs == {"method": "test", "units": "rad^-2", "long_name": "Fisher information",
                        "sigma": 1.0}
    assert fisher_dataarray(np.ones(3), [0.0, 1.0, 2.0], None, "test").dims == ("angle",)
    with pytest.raises(ValueError, match="values"):
        fisher_dataarray(np.ones((3, 2)), [0.0, 1.0, 2.0], ["a", "b"], "test")


# ------------------------------------------------------------------------------------------
# Sampled linear Fisher information
# ------------------------------------------------------------------------------------------


def von_mises_population(n: int, amplitude=10.0, kappa=2.0, baseline=2.0):
    """Tuning f_i(θ) = b + a exp(κ(cos 2(θ − θ_i) − 1)) and its exact derivative."""
    pref = np.arange(n) * math.pi / n

    def f(theta):
        return baseline + amplitude * np.exp(kappa * (np.cos(2 * (theta - pref)) - 1))

    def f_prime(theta):
        bump = amplitude * np.exp(kappa * (np.cos(2 * (theta - pref)) - 1))
        return -2 * kappa * bump * np.sin(2 * (theta - pref))

    return f, f_prime


def test_independent_gaussian_population_is_recovered():
    n, trials, theta, dtheta = 50, 2000, 0.6, 0.05
    f, f_prime = von_mises_population(n)
    rng = np.random.default_rng(0)
    sd = rng.uniform(1.0, 3.0, n)
    true = float(np.sum(f_prime(theta) ** 2 / sd**2))
    r_minus = f(theta - dtheta / 2) + sd * rng.standard_normal((trials, n))
    r_plus = f(theta + dtheta / 2) + sd * rng.standard_normal((trials, n))
    bc = linear_fisher_from_samples(r_minus, r_plus, dtheta)
    assert abs(bc - true) < 0.1 * true
    assert abs(bc - true) < 3 * math.sqrt(linear_fisher_variance(true, trials, n, dtheta))
    naive = linear_fisher_from_samples(r_minus, r_plus, dtheta, bias_corrected=False)
    assert bc == pytest.approx(naive * (2 * trials - n - 3) / (2 * trials - 2)
                               - 2 * n / (trials * dtheta**2), rel=1e-12)
    # torch input gives the same number
    assert linear_fisher_from_samples(torch.as_tensor(r_minus), torch.as_tensor(r_plus),
                                      dtheta) == pytest.approx(bc, rel=1e-12)
    # the cross-validated decoder is biased low but close with T >> N
    dec = decoder_fisher(r_minus, r_plus, dtheta)
    assert 0.8 * true < dec < 1.05 * true
    shrunk = linear_fisher_shrinkage(r_minus, r_plus, dtheta)
    assert abs(shrunk - true) < 0.15 * true


def simulate_linear_population(rng, fprime, dtheta, trials, repeats):
    """Unit-variance independent noise around means ∓ (Δθ/2) f'; naive and corrected FI."""
    n = len(fprime)
    naive = np.empty(repeats)
    corrected = np.empty(repeats)
    for k in range(repeats):
        r_minus = -dtheta / 2 * fprime + rng.standard_normal((trials, n))
        r_plus = dtheta / 2 * fprime + rng.standard_normal((trials, n))
        naive[k] = linear_fisher_from_samples(r_minus, r_plus, dtheta, bias_corrected=False)
        corrected[k] = linear_fisher_from_samples(r_minus, r_plus, dtheta)
    return naive, corrected


def test_naive_bias_and_corrected_variance_match_the_formulas():
    n, trials, dtheta, info = 20, 60, 0.3, 20.0
    rng = np.random.default_rng(1)
    fprime = rng.standard_normal(n)
    fprime *= math.sqrt(info / np.sum(fprime**2))  # I = |f'|² with unit variances
    naive, corrected = simulate_linear_population(rng, fprime, dtheta, trials, 1000)
    predicted_naive = (info + 2 * n / (trials * dtheta**2)) * (2 * trials - 2) / (
        2 * trials - n - 3)
    assert predicted_naive > 1.5 * info  # the bias is large here
    se = naive.std(ddof=1) / math.sqrt(len(naive))
    assert abs(naive.mean() - predicted_naive) < 3 * se
    assert abs(corrected.mean() - info) < 3 * corrected.std(ddof=1) / math.sqrt(len(naive))
    predicted_var = linear_fisher_variance(info, trials, n, dtheta)
    assert corrected.var(ddof=1) == pytest.approx(predicted_var, rel=0.15)
    # the published form 2I²/(2T−N−5)·[1 + 4(2T−3)/(TIΔθ²) + 4N(2T−3)/(T²I²Δθ⁴)]
    published = 2 * info**2 / (2 * trials - n - 5) * (
        1 + 4 * (2 * trials - 3) / (trials * info * dtheta**2)
        + 4 * n * (2 * trials - 3) / (trials**2 * info**2 * dtheta**4))
    assert predicted_var == pytest.approx(published, rel=1e-12)


def test_decoder_is_biased_low_when_trials_are_few():
    n, trials, dtheta, info = 40, 200, 0.1, 400.0
    rng = np.random.default_rng(2)
    fprime = rng.standard_normal(n)
    fprime *= math.sqrt(info / np.sum(fprime**2))
    dec, bc = [], []
    for seed in range(8):
        r_minus = -dtheta / 2 * fprime + rng.standard_normal((trials, n))
        r_plus = dtheta / 2 * fprime + rng.standard_normal((trials, n))
        dec.append(decoder_fisher(r_minus, r_plus, dtheta, seed=seed))
        bc.append(linear_fisher_from_samples(r_minus, r_plus, dtheta))
    assert np.mean(dec) < 0.92 * info
    assert abs(np.mean(bc) - info) < 0.08 * info


def test_information_limiting_correlations():
    n, trials, theta, dtheta = 50, 2000, 0.6, 0.1
    f, f_prime = von_mises_population(n)
    fp = f_prime(theta)
    rng = np.random.default_rng(3)
    sd = rng.uniform(1.0, 3.0, n)
    info0 = float(np.sum(fp**2 / sd**2))
    eps = 1.0 / info0  # halves the information
    cov = np.diag(sd**2) + eps * np.outer(fp, fp)
    true = info0 / (1 + eps * info0)
    chol = np.linalg.cholesky(cov)
    mean = f(theta)
    r_minus = mean - dtheta / 2 * fp + rng.standard_normal((trials, n)) @ chol.T
    r_plus = mean + dtheta / 2 * fp + rng.standard_normal((trials, n)) @ chol.T
    bc = linear_fisher_from_samples(r_minus, r_plus, dtheta)
    assert true == pytest.approx(info0 / 2)
    assert abs(bc - true) < 0.1 * true
    assert abs(bc - true) < 3 * math.sqrt(linear_fisher_variance(true, trials, n, dtheta))


def test_sampled_estimators_validate_input():
    rng = np.random.default_rng(4)
    few = rng.standard_normal((20, 40))  # 2T − N − 3 = −3
    with pytest.raises(ValueError, match=r"T=20.*N=40.*shrinkage"):
        linear_fisher_from_samples(few, few + 1, 0.1)
    ok = rng.standard_normal((50, 5))
    with pytest.raises(ValueError, match="^r_plus must be r_minus's shape"):
        linear_fisher_from_samples(ok, ok[:40], 0.1)
    with pytest.raises(ValueError, match="dtheta"):
        linear_fisher_from_samples(ok, ok + 1, 0.0)
    with pytest.raises(ValueError, match=r"^T must be > \(N \+ 5\)/2"):
        linear_fisher_variance(10.0, 20, 35, 0.1)
    with pytest.raises(ValueError, match="n_folds"):
        decoder_fisher(ok, ok + 1, 0.1, n_folds=1)
    # shrinkage works where the bias-corrected estimator cannot
    assert 0 < linear_fisher_shrinkage(few, few + 0.1, 0.1) < np.inf


def test_ledoit_wolf_matches_its_definition():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 6)) @ np.diag([3.0, 2.0, 1.0, 1.0, 0.5, 0.2])
    cov, delta = ledoit_wolf_covariance(x)
    n, p = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    m = np.trace(s) / p
    d2 = np.sum((s - m * np.eye(p)) ** 2) / p
    b2 = sum(np.sum((np.outer(v, v) - s) ** 2) / p for v in xc) / n**2
    expected = min(b2, d2) / d2
    assert delta == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(cov, expected * m * np.eye(p) + (1 - expected) * s, rtol=1e-10)
    # isotropic data are shrunk almost fully, strongly anisotropic data with many samples barely
    _, iso = ledoit_wolf_covariance(rng.standard_normal((40, 30)))
    _, aniso = ledoit_wolf_covariance(rng.standard_normal((4000, 5)) * [10, 5, 1, 0.5, 0.1])
    assert iso > 0.8 and aniso < 0.01


def test_poisson_population_closed_form():
    n, r_max, kappa, theta = 360, 20.0, 1.7, 0.4
    pref = np.arange(n) * math.pi / n
    f = r_max * np.exp(kappa * (np.cos(2 * (theta - pref)) - 1))
    f_prime = -2 * kappa * f * np.sin(2 * (theta - pref))
    closed = 4 * n * kappa * r_max * ive(1, kappa)  # 4Nκ r_max e^{−κ} I₁(κ)
    assert poisson_fisher(f, f_prime) == pytest.approx(closed, rel=1e-10)
    batched = poisson_fisher(np.stack([f, 2 * f]), np.stack([f_prime, 2 * f_prime]))
    np.testing.assert_allclose(batched, [closed, 2 * closed], rtol=1e-10)
    with pytest.raises(ValueError, match="f must"):
        poisson_fisher(f - r_max, f_prime)


def test_discrimination_threshold():
    assert discrimination_threshold(4.0) == pytest.approx(0.5)
    assert discrimination_threshold(4.0, d_prime=2.0) == pytest.approx(1.0)
    np.testing.assert_allclose(discrimination_threshold(np.array([1.0, 100.0, 0.0])),
                               [1.0, 0.1, np.inf])
    da = xr.DataArray([1.0, 4.0], dims=("angle",))
    assert isinstance(discrimination_threshold(da), xr.DataArray)
    with pytest.raises(ValueError, match="J"):
        discrimination_threshold(-1.0)
    with pytest.raises(ValueError, match="d_prime"):
        discrimination_threshold(1.0, d_prime=0)


# ------------------------------------------------------------------------------------------
# The reference's smoothed-derivative estimator
# ------------------------------------------------------------------------------------------


def fitted_linear_decoder(spec: GratingSpec) -> AngleNet:
    """Identity "fc" on the 64 pixels, then a head fitted by least squares to (cos 2θ, sin 2θ)
    on clean images: a linear network whose decoded angle tracks θ everywhere."""
    net = linear_net(torch.eye(64, dtype=torch.float64))
    grid = torch.arange(360, dtype=torch.float64) * math.pi / 360
    x = render_clean(grid, spec).reshape(360, -1).double().numpy()
    target = np.stack([np.cos(2 * grid.numpy()), np.sin(2 * grid.numpy())], 1)
    design = np.concatenate([x, np.ones((360, 1))], 1)  # rank-deficient: the aperture's zeros
    sol = torch.as_tensor(np.linalg.lstsq(design, target, rcond=None)[0])
    with torch.no_grad():
        net.blocks["head"][0].weight.copy_(sol[:64].T)
        net.blocks["head"][0].bias.copy_(sol[64])
    return net


@pytest.mark.parametrize("output, layer", [("raw", "head"), ("decoded", "output")])
def test_savgol_matches_the_propagated_fisher_of_a_linear_network(output, layer):
    # phase 0: the image is smooth across θ = 0 ≡ π, so the wrapped filter sees no jump
    spec = small_spec(noise_std=0.05, phase=0.0)
    net = fitted_linear_decoder(spec)
    sg = savgol_fisher(net, spec, n_dense=2000, n_cov_angles=40, n_cov_samples=400,
                       window=201, polyorder=3, generator=torch.Generator().manual_seed(1),
                       output=output)
    assert sg.dims == ("angle",) and sg.sizes["angle"] == 2000
    np.testing.assert_allclose(sg["angle"].values, np.arange(2000) * math.pi / 2000)
    assert sg.attrs["method"] == "savgol" and sg.attrs["output"] == output
    idx = np.arange(0, 2000, 50)
    # the head is linear in Gaussian pixels: its linear FI is exactly the propagated one; the
    # decoded angle's FI equals the linearised one when its noise is small (here ~0.01 rad)
    exact = propagated_fisher(net, spec, sg["angle"].values[idx], layers=[layer]).values[0]
    ratio = sg.values[idx] / exact
    assert abs(sg.values[idx].sum() / exact.sum() - 1) < 0.05
    assert abs(np.median(ratio) - 1) < 0.05
    assert (ratio > 0.7).all() and (ratio < 1.4).all()
    # the derivative-noise term is the filter's Σc² per response dimension
    dims = 2 if output == "raw" else 1
    step = math.pi / 2000
    coeff = np.polyfit(np.arange(-100, 101) * step, np.eye(201), 3)[-2]  # slope of the fit
    assert sg.attrs["derivative_noise_bias"] == pytest.approx(dims * (coeff**2).sum(),
                                                               rel=1e-8)
    if output == "decoded":
        assert (sg["variance"] > 0).all() and np.isfinite(sg["derivative"]).all()


def test_savgol_validates_its_parameters():
    spec = small_spec(noise_std=0.05, phase=0.0)
    net = fitted_linear_decoder(spec)
    for kwargs, name in [(dict(window=200), "window"), (dict(window=5000), "window"),
                         (dict(polyorder=300, window=201), "polyorder"),
                         (dict(n_cov_samples=1), "n_cov_samples"),
                         (dict(output="logits"), "output")]:
        with pytest.raises(ValueError, match=name):
            savgol_fisher(net, spec, **{"n_dense": 2000, "n_cov_angles": 4,
                                        "n_cov_samples": 10, **kwargs})
    corrected = savgol_fisher(net, spec, n_dense=500, n_cov_angles=4, n_cov_samples=20,
                              window=51, generator=torch.Generator().manual_seed(0),
                              bias_corrected=True)
    plain = savgol_fisher(net, spec, n_dense=500, n_cov_angles=4, n_cov_samples=20,
                          window=51, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(plain - corrected, plain.attrs["derivative_noise_bias"])


# ------------------------------------------------------------------------------------------
# Noise injected at a block; output-noise models
# ------------------------------------------------------------------------------------------


def test_noise_injected_at_a_block_matches_closed_forms():
    spec = small_spec()
    net = conv_net(9)
    sigma = 0.3
    fi = propagated_fisher(net, spec, ANGLES, noise_at="conv2", sigma=sigma)
    assert list(fi["layer"].values) == ["conv2", "fc", "head", "output"]
    assert fi.attrs["noise_at"] == "conv2" and "layer 'conv2'" in fi.attrs["noise_model"]
    h = 1e-6

    def conv2(theta):
        return net.run_blocks(render_clean(theta, spec), stop="conv2").reshape(len(theta), -1)

    hdot = (conv2(ANGLES + h) - conv2(ANGLES - h)).detach() / (2 * h)
    np.testing.assert_allclose(fi.sel(layer="conv2").values,
                               (hdot**2).sum(1).numpy() / sigma**2, rtol=1e-5)
    for k, theta in enumerate(ANGLES):
        site = conv2(theta.reshape(1)).detach()
        jac = torch.autograd.functional.jacobian(
            lambda z: net.run_blocks(z, start="fc", stop="fc")[0], site)[:, 0]
        jac = jac[(jac != 0).any(1)]  # silent ReLUs (D_i = 0) are left out
        g = jac @ hdot[k]
        cov = sigma**2 * jac @ jac.T
        cov = cov + 1e-6 * torch.diag(torch.diagonal(cov))
        assert fi.sel(layer="fc").values[k] == pytest.approx(
            float(g @ torch.linalg.solve(cov, g)), rel=1e-4)
    # downstream of the noise, information can only be lost
    assert (fi.values <= fi.sel(layer="conv2").values * (1 + 1e-6)).all()
    with pytest.raises(ValueError, match="noise_at"):
        propagated_fisher(net, spec, ANGLES, noise_at="conv7", sigma=1.0)
    with pytest.raises(ValueError, match="sigma"):
        propagated_fisher(net, spec, ANGLES, noise_at="conv2")
    with pytest.raises(ValueError, match="layers"):
        propagated_fisher(net, spec, ANGLES, noise_at="conv2", sigma=1.0, layers=["conv1"])


class Tuning(nn.Module):
    """Von Mises tuning curves on the doubled angle ψ of a linear read-out of the image,
    f_i = r_max exp(κ(cos 2(ψ − θ_i) − 1)), times a fixed matrix ``mix`` (f ↦ mix f)."""

    def __init__(self, readout, pref, r_max, kappa, mix):
        super().__init__()
        self.register_buffer("readout", readout)
        self.register_buffer("pref", pref)
        self.register_buffer("mix", mix)
        self.r_max, self.kappa = r_max, kappa

    def tuning(self, psi):
        return self.r_max * torch.exp(self.kappa * (torch.cos(2 * (psi[:, None] - self.pref))
                                                    - 1))

    def psi(self, x):
        cs = x.flatten(1) @ self.readout.T
        return torch.atan2(cs[:, 1], cs[:, 0]) / 2

    def forward(self, x):
        return self.tuning(self.psi(x)) @ self.mix.T


def tuning_net(spec, n, r_max, kappa, mix=None, population=None):
    """AngleNet "tuning" (Tuning) → "population" (linear, weight ``population``) → head; the
    read-out is fitted so that ψ(θ) ≈ θ on clean gratings."""
    grid = np.arange(360) * math.pi / 360
    x = render_clean(torch.as_tensor(grid), spec).reshape(360, -1).double().numpy()
    target = np.stack([np.cos(2 * grid), np.sin(2 * grid)], 1)
    readout = torch.as_tensor(np.linalg.lstsq(x, target, rcond=None)[0].T)
    pref = torch.arange(n, dtype=torch.float64) * math.pi / n
    eye = torch.eye(n, dtype=torch.float64)
    blocks = {"tuning": Tuning(readout, pref, r_max, kappa, eye if mix is None else mix),
              "population": nn.Linear(n, n, bias=False), "head": nn.Linear(n, 2)}
    net = seeded(AngleNet(blocks, "cossin", 36, {"kind": "mlp"}), 0).double()
    with torch.no_grad():
        net.blocks["population"].weight.copy_(eye if population is None else population)
    return net


def psi_derivative(net, spec, theta, h=1e-5):
    """dψ/dθ of the tuning block's read-out, by central differences."""
    t = torch.as_tensor(theta, dtype=torch.float64)
    tune = net.blocks["tuning"]
    return ((tune.psi(render_clean(t + h, spec)) - tune.psi(render_clean(t - h, spec)))
            / (2 * h)).numpy()


@pytest.mark.parametrize("limiting", [False, True])
def test_von_mises_population_is_recovered_by_all_three_estimators(limiting):
    """r = f(ψ(θ)) + L n with n ~ N(0, I) injected at the tuning block of a network whose
    next block is L: FI = f′ᵀ(LLᵀ)⁻¹f′ in closed form."""
    spec = small_spec(phase=0.0)
    n, r_max, kappa, theta0, trials, dtheta = 50, 10.0, 2.0, 0.6, 2000, 0.1
    rng = np.random.default_rng(10)
    sd = rng.uniform(1.0, 3.0, n)
    plain = tuning_net(spec, n, r_max, kappa)
    psi0 = plain.blocks["tuning"].psi(render_clean([theta0], spec).double())
    bump = plain.blocks["tuning"].tuning(psi0)[0].numpy()
    pref = np.arange(n) * math.pi / n
    fprime = (-2 * kappa * bump * np.sin(2 * (psi0.numpy() - pref))
              * psi_derivative(plain, spec, [theta0]))
    cov = np.diag(sd**2)
    info0 = float(fprime @ np.linalg.solve(cov, fprime))
    if limiting:  # information-limiting correlations ε f′f′ᵀ halve the information
        cov = cov + np.outer(fprime, fprime) / info0
    closed = float(fprime @ np.linalg.solve(cov, fprime))
    if limiting:
        assert closed == pytest.approx(info0 / 2, rel=1e-9)
    chol = torch.as_tensor(np.linalg.cholesky(cov))
    net = tuning_net(spec, n, r_max, kappa, mix=torch.linalg.inv(chol), population=chol)
    # 1: propagated, noise N(0, I) at "tuning", read at "population" (exact: linear after it)
    prop = propagated_fisher(net, spec, [theta0], layers=["tuning", "population"],
                             noise_at="tuning", sigma=1.0)
    assert prop.sel(layer="population").item() == pytest.approx(closed, rel=1e-4)
    # 2 and 3: responses sampled through the same network
    g = torch.Generator().manual_seed(11)

    def responses(theta):
        z = net.blocks["tuning"](render_clean(torch.full((trials,), theta,
                                                         dtype=torch.float64), spec))
        z = z + torch.randn(z.shape, generator=g, dtype=torch.float64)
        return net.blocks["population"](z).detach().numpy()

    r_minus, r_plus = responses(theta0 - dtheta / 2), responses(theta0 + dtheta / 2)
    bc = linear_fisher_from_samples(r_minus, r_plus, dtheta)
    se = math.sqrt(linear_fisher_variance(closed, trials, n, dtheta))
    assert abs(bc - closed) < 0.1 * closed and abs(bc - closed) < 3 * se
    naive = linear_fisher_from_samples(r_minus, r_plus, dtheta, bias_corrected=False)
    expected_naive = (closed + 2 * n / (trials * dtheta**2)) * (2 * trials - 2) / (
        2 * trials - n - 3)
    assert naive > closed and abs(naive - expected_naive) < 3 * se * 1.1
    dec = decoder_fisher(r_minus, r_plus, dtheta)
    assert 0.85 * closed < dec < 1.05 * closed


def test_output_noise_models_match_closed_forms():
    spec = small_spec(phase=0.0)
    n, r_max, kappa = 50, 20.0, 1.7
    net = tuning_net(spec, n, r_max, kappa)
    theta = np.array([0.2, 0.9, 1.7, 2.8])
    dpsi = psi_derivative(net, spec, theta)
    # Poisson, uniformly spaced von Mises tuning on 2ψ: 4Nκ r_max e^{−κ} I₁(κ) (dψ/dθ)²
    fi = output_noise_fisher(net, spec, theta, layers=["tuning"], noise="poisson")
    closed = 4 * n * kappa * r_max * ive(1, kappa) * dpsi**2
    np.testing.assert_allclose(fi.sel(layer="tuning").values, closed, rtol=1e-6)
    assert fi.attrs["method"] == "output_poisson"
    gain = output_noise_fisher(net, spec, theta, layers=["tuning"], noise="poisson", gain=2.0)
    np.testing.assert_allclose(gain.values, fi.values / 2, rtol=1e-12)
    # Gaussian: |v|²/σ², and the same as noise injected at that block, read there
    gauss = output_noise_fisher(net, spec, theta, noise="gaussian", sigma=0.5)
    assert list(gauss["layer"].values) == ["tuning", "population", "head", "output"]
    at_block = propagated_fisher(net, spec, theta, layers=["tuning"], noise_at="tuning",
                                 sigma=0.5)
    np.testing.assert_allclose(gauss.sel(layer="tuning").values, at_block.values[0],
                               rtol=1e-8)
    pref = np.arange(n) * math.pi / n
    psi = net.blocks["tuning"].psi(render_clean(torch.as_tensor(theta), spec)).numpy()
    f = r_max * np.exp(kappa * (np.cos(2 * (psi[:, None] - pref)) - 1))
    v = -2 * kappa * f * np.sin(2 * (psi[:, None] - pref)) * dpsi[:, None]
    np.testing.assert_allclose(gauss.sel(layer="tuning").values, (v**2).sum(1) / 0.25,
                               rtol=1e-6)
    # a linear head can go negative: no Poisson rates there without a baseline
    with pytest.raises(ValueError, match="baseline"):
        output_noise_fisher(conv_net(0), small_spec(), theta, layers=["head"], noise="poisson")
    with pytest.raises(ValueError, match="noise"):
        output_noise_fisher(net, spec, theta, noise="laplace")
    with pytest.raises(ValueError, match="layers"):
        output_noise_fisher(net, spec, theta, layers=["output"], noise="poisson")


def test_full_gaussian_fisher_matches_the_score_variance():
    """J = f′ᵀΣ⁻¹f′ + ½tr(Σ⁻¹Σ′Σ⁻¹Σ′) against E[(∂ log p/∂θ)²] by Monte Carlo."""
    from scipy.stats import multivariate_normal

    def mean(t):
        return np.array([np.cos(2 * t), np.sin(2 * t), 0.5 * np.cos(4 * t)]) * 0.5

    def cov(t):
        a = np.array([[1.0, 0.3 * np.sin(2 * t), 0.0], [0.0, 1.0 + 0.5 * np.cos(2 * t), 0.2],
                      [0.1, 0.0, 0.8]])
        return a @ a.T

    theta, h = 0.7, 1e-5
    fp = (mean(theta + h) - mean(theta - h)) / (2 * h)
    cp = (cov(theta + h) - cov(theta - h)) / (2 * h)
    full = gaussian_fisher(fp, cov(theta), cp)
    linear = gaussian_fisher(fp, cov(theta))
    assert linear == pytest.approx(float(fp @ np.linalg.solve(cov(theta), fp)), rel=1e-12)
    assert full > linear * 1.5  # the covariance carries information here
    r = np.random.default_rng(12).multivariate_normal(mean(theta), cov(theta), 40000)
    score = (multivariate_normal(mean(theta + h), cov(theta + h)).logpdf(r)
             - multivariate_normal(mean(theta - h), cov(theta - h)).logpdf(r)) / (2 * h)
    assert full == pytest.approx(np.mean(score**2), rel=0.03)
    # variance equal to the mean (Poisson-like Gaussian): Σ f′²/f + ½ Σ (f′/f)²
    f, fprime = np.array([2.0, 5.0, 1.0]), np.array([1.0, -3.0, 0.5])
    assert gaussian_fisher(fprime, np.diag(f), np.diag(fprime)) == pytest.approx(
        np.sum(fprime**2 / f) + 0.5 * np.sum((fprime / f) ** 2), rel=1e-12)
    assert gaussian_fisher(fprime, np.diag(f)) == pytest.approx(poisson_fisher(f, fprime))
    with pytest.raises(ValueError, match="cov"):
        gaussian_fisher(fprime, np.eye(2))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_fisher(fprime, -np.eye(3))


# ------------------------------------------------------------------------------------------
# Few trials, many units
# ------------------------------------------------------------------------------------------


def test_shrinkage_and_decoder_work_in_the_dual_for_many_units():
    rng = np.random.default_rng(13)
    n, trials, dtheta = 300, 60, 0.1  # N > 2T: the Gram-matrix paths
    fprime = rng.standard_normal(n) * 0.5
    r_minus = -dtheta / 2 * fprime + rng.standard_normal((trials, n))
    r_plus = dtheta / 2 * fprime + rng.standard_normal((trials, n))
    resid = np.concatenate([r_minus - r_minus.mean(0), r_plus - r_plus.mean(0)])
    cov, delta = ledoit_wolf_covariance(resid, centered=True)
    assert 0 < delta < 1
    # the primal formula, written out: Σ* = δ m I + (1 − δ) S
    s = resid.T @ resid / len(resid)
    m = np.trace(s) / n
    d2 = np.sum((s - m * np.eye(n)) ** 2) / n
    b2 = sum(np.sum((np.outer(v, v) - s) ** 2) / n for v in resid) / len(resid) ** 2
    assert delta == pytest.approx(min(b2, d2) / d2, rel=1e-8)
    fp_hat = (r_plus.mean(0) - r_minus.mean(0)) / dtheta
    assert linear_fisher_shrinkage(r_minus, r_plus, dtheta) == pytest.approx(
        float(fp_hat @ np.linalg.solve(cov, fp_hat)), rel=1e-8)
    # the decoder's dual solve equals the explicit ridge discriminant of a fold
    dec = decoder_fisher(r_minus, r_plus, dtheta, ridge=0.5, n_folds=2, seed=3)
    order = np.random.default_rng(3)
    fm = np.array_split(order.permutation(trials), 2)
    fpl = np.array_split(order.permutation(trials), 2)
    dps = []
    for k in range(2):
        tm, tp = np.delete(r_minus, fm[k], 0), np.delete(r_plus, fpl[k], 0)
        c = (np.cov(tm, rowvar=False) + np.cov(tp, rowvar=False)) / 2
        w = np.linalg.solve(c + 0.5 * np.trace(c) / n * np.eye(n), tp.mean(0) - tm.mean(0))
        pm, pp = r_minus[fm[k]] @ w, r_plus[fpl[k]] @ w
        dps.append((pp.mean() - pm.mean()) / math.sqrt((pm.var(ddof=1) + pp.var(ddof=1)) / 2))
    assert dec == pytest.approx(max(np.mean(dps), 0) ** 2 / dtheta**2, rel=1e-8)
    with pytest.raises(ValueError, match="ridge"):
        decoder_fisher(r_minus, r_plus, dtheta, ridge=0.0)


def test_pca_variant_for_few_trials():
    rng = np.random.default_rng(14)
    n, trials, dtheta, info = 40, 400, 0.5, 100.0
    # noise concentrated in 10 dimensions that hold the signal, weak elsewhere
    basis = np.linalg.qr(rng.standard_normal((n, n)))[0]
    scales = np.r_[np.full(10, 3.0), np.full(n - 10, 0.1)]
    fprime = basis[:, :10] @ rng.standard_normal(10)
    fprime *= math.sqrt(info / float(fprime @ basis @ np.diag(scales**-2) @ basis.T @ fprime))

    def draw(sign):
        noise = rng.standard_normal((trials, n)) * scales @ basis.T
        return sign * dtheta / 2 * fprime + noise

    r_minus, r_plus = draw(-1), draw(1)
    full = linear_fisher_from_samples(r_minus, r_plus, dtheta)
    top = linear_fisher_pca(r_minus, r_plus, dtheta, n_components=10)
    assert abs(full - info) < 0.15 * info and abs(top - info) < 0.15 * info
    assert linear_fisher_pca(r_minus, r_plus, dtheta, n_components=3) < 0.8 * info  # lost
    few_m, few_p = r_minus[:15], r_plus[:15]  # 2T − N − 3 < 0: only the variants work
    with pytest.raises(ValueError, match="pca"):
        linear_fisher_from_samples(few_m, few_p, dtheta)
    assert np.isfinite(linear_fisher_pca(few_m, few_p, dtheta))
    with pytest.raises(ValueError, match="n_components"):
        linear_fisher_pca(few_m, few_p, dtheta, n_components=29)


def test_constant_units_are_left_out():
    rng = np.random.default_rng(15)
    r_minus = rng.standard_normal((100, 5))
    r_plus = rng.standard_normal((100, 5)) + 0.3
    base = linear_fisher_from_samples(r_minus, r_plus, 0.1)
    dead = np.zeros((100, 3))
    assert linear_fisher_from_samples(np.hstack([r_minus, dead]), np.hstack([r_plus, dead]),
                                      0.1) == base
    assert linear_fisher_from_samples(np.hstack([r_minus, dead]),
                                      np.hstack([r_plus, dead + 1]), 0.1) == math.inf


def test_bootstrap_over_trials_is_as_wide_as_the_analytic_error():
    n, trials, dtheta, info = 10, 400, 0.2, 50.0
    rng = np.random.default_rng(16)
    fprime = rng.standard_normal(n)
    fprime *= math.sqrt(info / np.sum(fprime**2))
    r_minus = -dtheta / 2 * fprime + rng.standard_normal((trials, n))
    r_plus = dtheta / 2 * fprime + rng.standard_normal((trials, n))
    est, low, high = bootstrap_fisher(r_minus, r_plus, dtheta, n_boot=300, seed=1)
    assert est == linear_fisher_from_samples(r_minus, r_plus, dtheta)
    assert low < est < high and low < info < high
    se = math.sqrt(linear_fisher_variance(info, trials, n, dtheta))
    assert 0.7 < (high - low) / (2 * 1.96 * se) < 1.5
    _, dl, dh = bootstrap_fisher(r_minus, r_plus, dtheta, decoder_fisher, n_boot=50)
    assert dl < dh
    with pytest.raises(ValueError, match="level"):
        bootstrap_fisher(r_minus, r_plus, dtheta, level=1.5)
