"""Intervals for linear Fisher information from sampled trials: coverage by simulation.

Each repetition draws T Gaussian trials of N correlated units at θ ∓ Δθ/2 (means linear in θ,
a random covariance), runs the real estimator `linear_fisher_from_samples` on them and asks
whether the interval holds the true I = f′ᵀΣ⁻¹f′. At nominal 95% the binomial SE of a coverage
from R repetitions is √(0.95·0.05/R): 0.49% at R = 2000, so ±3% is 6 SEs. The percentile
bootstrap these replace covered 66%, and the normal band I_bc ± 1.96√Var 93%, at N = 20,
T = 100 (I = 200, Δθ = 0.05; 300 and 2000 repetitions).
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from anglesim.fisher import (
    bootstrap_fisher,
    gaussian_fisher,
    linear_fisher_from_samples,
    linear_fisher_interval,
    paired_responses,
    poisson_fisher,
    sampled_fisher,
)
from anglesim.fisher._arrays import ledoit_wolf_covariance
from anglesim.fisher._intervals import noncentral_f_scale
from anglesim.models import AngleNet
from anglesim.stimuli import GratingSpec


def linear_net(n_units, n_pix):
    """An AngleNet whose block "fc" is r = W x: Gaussian pixel noise gives Gaussian trials."""
    blocks = {"fc": nn.Sequential(nn.Flatten(), nn.Linear(n_pix, n_units, bias=False)),
              "head": nn.Sequential(nn.Linear(n_units, 2))}
    net = AngleNet(blocks, "cossin", 36, {"kind": "mlp"}).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def population(n_units, info, rng):
    """(f′, A) with Σ = AAᵀ a random covariance and f′ᵀΣ⁻¹f′ = info."""
    a = rng.normal(size=(n_units, n_units)) / math.sqrt(n_units) + np.eye(n_units)
    f = rng.normal(size=n_units)
    f *= math.sqrt(info / (f @ np.linalg.solve(a @ a.T, f)))
    return f, a


def estimates(n_units, n_trials, info, reps, seed, dtheta=0.05):
    rng = np.random.default_rng(seed)
    f, a = population(n_units, info, rng)
    mu = rng.normal(size=n_units)
    out = np.empty(reps)
    for r in range(reps):
        z = rng.normal(size=(2, n_trials, n_units)) @ a.T
        out[r] = linear_fisher_from_samples(mu - f * dtheta / 2 + z[0],
                                            mu + f * dtheta / 2 + z[1], dtheta)
    return out


@pytest.mark.parametrize("n_units, n_trials, info", [
    (20, 100, 200.0),   # the regime where the percentile bootstrap covered 66-69%
    (10, 400, 200.0),   # the old test's regime
    (50, 200, 200.0),   # many units
    (20, 100, 20.0),    # FI small against the bias term 2N/(TΔθ²) = 160
    (5, 30, 2000.0),    # few trials, large FI
])
def test_exact_interval_covers_at_nominal_level(n_units, n_trials, info):
    reps = 2000
    est = estimates(n_units, n_trials, info, reps, seed=n_units + n_trials)
    low, high = linear_fisher_interval(est, n_trials, n_units, 0.05)
    covered = float(((low <= info) & (info <= high)).mean())
    assert abs(covered - 0.95) < 0.03, covered
    assert (low >= 0).all() and (low <= high).all()


def test_interval_ends_are_the_noncentral_f_quantiles():
    n_units, n_trials, dtheta = 12, 60, 0.1
    c, m = noncentral_f_scale(n_trials, n_units, dtheta)
    assert m == 2 * n_trials - n_units - 1
    naive = 900.0
    est = naive * (2 * n_trials - n_units - 3) / (2 * n_trials - 2) \
        - 2 * n_units / (n_trials * dtheta**2)
    low, high = linear_fisher_interval(est, n_trials, n_units, dtheta, level=0.9)
    to_lam = n_trials * dtheta**2 / 2
    for end, target in ((low, 0.95), (high, 0.05)):
        assert stats.ncf.cdf(naive / c, n_units, m, end * to_lam) == pytest.approx(target,
                                                                                  abs=1e-8)
    same = linear_fisher_interval(naive, n_trials, n_units, dtheta, 0.9, bias_corrected=False)
    assert same == pytest.approx((low, high), rel=1e-9)
    lows, highs = linear_fisher_interval(np.array([est, 0.0]), n_trials, n_units, dtheta, 0.9)
    assert (lows[0], highs[0]) == pytest.approx((low, high), rel=1e-9)  # bisection to 1e-10


def test_interval_touches_zero_when_the_data_allow_no_information():
    n_units, n_trials, dtheta = 20, 100, 0.05
    bias = 2 * n_units / (n_trials * dtheta**2)
    low, high = linear_fisher_interval(0.0, n_trials, n_units, dtheta)
    assert low == 0.0 and high > 0
    assert linear_fisher_interval(-bias * 0.999, n_trials, n_units, dtheta) == (0.0, 0.0)
    wider = linear_fisher_interval(0.0, n_trials, n_units, dtheta, level=0.99)
    assert wider[1] > high


@pytest.mark.parametrize("call, name", [
    (lambda: linear_fisher_interval(10.0, 10, 20, 0.05), "T"),
    (lambda: linear_fisher_interval(float("nan"), 100, 20, 0.05), "estimate"),
    (lambda: linear_fisher_interval(10.0, 100, 20, 0.05, level=1.0), "level"),
    (lambda: linear_fisher_interval(10.0, 100, 0, 0.05), "N"),
    (lambda: linear_fisher_interval(10.0, 100.0, 5, 0.05), "T"),
])
def test_interval_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


def test_bootstrap_fisher_methods():
    rng = np.random.default_rng(3)
    f, a = population(8, 100.0, rng)
    rm = -f * 0.05 + rng.normal(size=(200, 8)) @ a.T
    rp = f * 0.05 + rng.normal(size=(200, 8)) @ a.T
    est, low, high = bootstrap_fisher(rm, rp, 0.1)
    assert (low, high) == pytest.approx(linear_fisher_interval(est, 200, 8, 0.1))
    _, pl, ph = bootstrap_fisher(rm, rp, 0.1, method="percentile", n_boot=200, seed=4)
    _, sl, sh = bootstrap_fisher(rm, rp, 0.1, method="shifted", n_boot=200, seed=4)
    assert sh - sl == pytest.approx(ph - pl)  # the same band, moved
    assert sl < pl  # resampling inflates the bias-corrected estimate: the shift is down
    with pytest.raises(ValueError, match="^method"):
        bootstrap_fisher(rm, rp, 0.1, linear_fisher_from_samples, method="exact")
    with pytest.raises(ValueError, match="^r_plus"):
        bootstrap_fisher(rm, rp[:150], 0.1)
    with pytest.raises(ValueError, match="^method"):
        bootstrap_fisher(rm, rp, 0.1, method="bca")


def test_sampled_fisher_band_is_the_exact_interval_of_the_same_trials():
    spec = GratingSpec(size=8, frequency=1.5, phase=0.3, contrast=1.0, aperture=0.9,
                       aperture_edge=0.2, noise_std=0.25)
    net = linear_net(20, 64)
    da = sampled_fisher(net, spec, [0.7], layers=["fc"], n_trials=100, dtheta=0.05,
                        generator=torch.Generator().manual_seed(5), n_boot=1)
    rm, rp = paired_responses(net, spec, 0.7, 0.05, 100, ["fc"],
                              torch.Generator().manual_seed(5))["fc"]
    est = linear_fisher_from_samples(rm, rp, 0.05)
    assert float(da.squeeze()) == pytest.approx(est, rel=1e-12)
    low, high = linear_fisher_interval(est, 100, 20, 0.05)
    assert float(da["ci_low"].squeeze()) == pytest.approx(low, rel=1e-12)
    assert float(da["ci_high"].squeeze()) == pytest.approx(high, rel=1e-12)
    assert "noncentral-F" in da.attrs["ci"]
    boot = sampled_fisher(net, spec, [0.7], layers=["fc"], n_trials=100, dtheta=0.05,
                          generator=torch.Generator().manual_seed(5), n_boot=20,
                          ci_method="percentile")
    assert "percentile bootstrap" in boot.attrs["ci"]
    with pytest.raises(ValueError, match="^ci_method"):
        sampled_fisher(net, spec, [0.7], layers=["fc"], estimator="shrinkage", n_boot=5,
                       ci_method="exact")


# -------------------------------------------------------------------------------------------
# Validation of the array and closed-form estimators (issue 14's list)
# -------------------------------------------------------------------------------------------


def test_non_finite_input_is_named():
    x = np.random.default_rng(0).normal(size=(10, 3))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="^x must be finite"):
        ledoit_wolf_covariance(bad)
    with pytest.raises(ValueError, match="^f_prime must be finite"):
        poisson_fisher([1.0, 2.0], [0.5, np.inf])
    cov = np.cov(x, rowvar=False)
    with pytest.raises(ValueError, match="^f_prime must be finite"):
        gaussian_fisher([1.0, np.nan, 0.0], cov)
    with pytest.raises(ValueError, match="^cov must be finite"):
        gaussian_fisher([1.0, 0.0, 0.0], np.where(np.eye(3) > 0, np.inf, cov))
    with pytest.raises(ValueError, match="^cov_prime must be finite"):
        gaussian_fisher([1.0, 0.0, 0.0], cov, np.full((3, 3), np.nan))


def test_gaussian_fisher_refuses_a_non_symmetric_covariance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    cov = np.cov(x, rowvar=False)
    f = rng.normal(size=4)
    base = gaussian_fisher(f, cov)
    assert base == pytest.approx(f @ np.linalg.solve(cov, f), rel=1e-12)
    upper = cov.copy()
    upper[0, 3] += 0.5  # Cholesky would read only the lower triangle and return base
    with pytest.raises(ValueError, match="^cov must be symmetric, got an asymmetry of 0.5"):
        gaussian_fisher(f, upper)
    cp = rng.normal(size=(4, 4))
    with pytest.raises(ValueError, match="^cov_prime must be symmetric"):
        gaussian_fisher(f, cov, cp)
    assert gaussian_fisher(f, cov, cp + cp.T) > base  # the covariance term adds information
    # rounding-level asymmetry of a computed covariance passes
    assert gaussian_fisher(f, cov + 1e-14 * rng.normal(size=(4, 4))) == pytest.approx(base)


@pytest.mark.parametrize("dtheta", [math.pi / 4, 1.0, math.pi, -0.1, 0.0, math.nan, True, "0.1"])
def test_finite_difference_step_is_below_a_quarter_period(dtheta):
    rm = np.random.default_rng(2).normal(size=(20, 3))
    with pytest.raises(ValueError,
                       match=r"^dtheta must be a real number > 0 and < pi/4 \(0.785\), got "):
        linear_fisher_from_samples(rm, rm + 1, dtheta)


def test_finite_difference_step_accepts_numpy_scalars():
    rm = np.random.default_rng(3).normal(size=(20, 3))
    a = linear_fisher_from_samples(rm, rm + 0.1, np.float32(0.5))
    assert a == pytest.approx(linear_fisher_from_samples(rm, rm + 0.1, 0.5), rel=1e-6)
    assert linear_fisher_from_samples(rm, rm + 0.1, math.pi / 4 - 1e-9, bias_corrected=False) > 0
