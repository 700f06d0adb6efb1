"""Angle priors on [0, π): normalisation, periodicity, exact sampling, configs, validation."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import i0

from anglesim.distributions import (
    AnglePrior,
    Empirical,
    Gridded,
    Mixture,
    Uniform,
    VonMises,
    prior_from_config,
)

PRIORS = {
    "uniform": Uniform(),
    "uniform_sub": Uniform(0.5, 2.0),
    "vm_double": VonMises(1.0, 4.0),
    "vm_folded": VonMises(2.5, 3.0, convention="folded"),
    "vm_double_k0": VonMises(0.3, 0.0),
    "vm_tiny_kappa": VonMises(0.3, 1e-7),
    "vm_double_k500": VonMises(3.0, 500.0),
    "vm_folded_k500": VonMises(0.1, 500.0, convention="folded"),
    "vm_wrapping": VonMises(0.05, 20.0),
    "mixture": Mixture([VonMises(0.4, 8.0), Uniform(1.0, 3.0), VonMises(2.0, 2.0, "folded")],
                       [0.5, 0.2, 0.3]),
    "gridded": Gridded(1.0 + np.sin(np.arange(12) * math.pi / 12) ** 2 * 3),
    "gridded_zeros": Gridded([0.0, 0.0, 2.0, 5.0, 0.0, 1.0, 0.0, 0.0]),
    "gridded_from_vm": Gridded.from_function(VonMises(2.0, 6.0).pdf, n=64),
}
PARAMS = sorted(PRIORS)


def _breakpoints(prior: AnglePrior) -> list[float]:
    """Points where the pdf has kinks or jumps, for quad and for concentrated priors."""
    if isinstance(prior, Uniform):
        return [prior.low, prior.high]
    if isinstance(prior, VonMises):
        return [prior.loc]
    if isinstance(prior, Gridded):
        return list(prior.grid[1:])
    if isinstance(prior, Mixture):
        return sorted({p for c in prior.components for p in _breakpoints(c)})
    return []


def _numeric_cdf(prior: AnglePrior, n: int = 400_001):
    """CDF on [0, π] by cumulative trapezoid of the pdf on a dense grid."""
    grid = np.linspace(0.0, math.pi, n)
    cum = integrate.cumulative_trapezoid(prior.pdf(grid), grid, initial=0.0)
    cum /= cum[-1]
    return lambda x: np.interp(x, grid, cum)


@pytest.mark.parametrize("name", PARAMS)
def test_pdf_integrates_to_one(name):
    prior = PRIORS[name]
    pts = [p for p in _breakpoints(prior) if 0 < p < math.pi]
    total, _ = integrate.quad(prior.pdf, 0.0, math.pi, points=pts or None, limit=500,
                              epsabs=1e-12, epsrel=1e-10)
    assert total == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("name", PARAMS)
def test_pdf_is_pi_periodic_and_non_negative(name):
    prior = PRIORS[name]
    theta = np.linspace(0.0, math.pi, 97, endpoint=False) + 1e-3
    p = prior.pdf(theta)
    assert np.all(p >= 0)
    for shift in (math.pi, -math.pi, 3 * math.pi, -7 * math.pi):
        np.testing.assert_allclose(prior.pdf(theta + shift), p, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", PARAMS)
def test_samples_follow_pdf(name):
    prior = PRIORS[name]
    s = prior.sample(20_000, generator=torch.Generator().manual_seed(1234))
    assert s.dtype == torch.float32 and s.shape == (20_000,)
    assert bool((s >= 0).all()) and bool((s < math.pi).all())
    x = s.double().numpy()
    assert np.all(x < math.pi)  # also strictly below π in float64 (float32(π) > π)
    res = stats.kstest(x, _numeric_cdf(prior))
    assert res.pvalue > 1e-3, res


def test_von_mises_formulas_match_definitions():
    theta = np.linspace(0, math.pi, 50, endpoint=False)
    loc, kappa = 0.7, 2.5
    double = np.exp(kappa * np.cos(2 * (theta - loc))) / (math.pi * i0(kappa))
    np.testing.assert_allclose(VonMises(loc, kappa).pdf(theta), double, rtol=1e-12)

    def vm(x):
        return np.exp(kappa * np.cos(x - loc)) / (2 * math.pi * i0(kappa))

    np.testing.assert_allclose(VonMises(loc, kappa, "folded").pdf(theta),
                               vm(theta) + vm(theta + math.pi), rtol=1e-12)
    # the folded prior is flatter than the doubled one at the same kappa
    assert VonMises(loc, kappa, "folded").pdf(loc) < VonMises(loc, kappa).pdf(loc)


def test_von_mises_large_kappa_finite_and_peaked():
    for conv in ("double", "folded"):
        prior = VonMises(1.2, 5000.0, conv)
        p = prior.pdf(np.array([1.2, 1.2 + math.pi / 2, 0.0]))
        assert np.all(np.isfinite(p))
        assert p[0] > 10 and p[1] == 0.0
        s = prior.sample(2000, generator=torch.Generator().manual_seed(0)).double()
        spread = torch.remainder(s - 1.2 + math.pi / 2, math.pi) - math.pi / 2
        sd = 1 / (2 * math.sqrt(5000.0)) if conv == "double" else 1 / math.sqrt(5000.0)
        assert float(spread.std()) == pytest.approx(sd, rel=0.1)


def test_mode_and_loc_wrapped():
    p = VonMises(math.pi + 0.25, 3.0)
    assert p.mode == pytest.approx(0.25) and p.loc == pytest.approx(0.25)
    grid = np.linspace(0, math.pi, 1000, endpoint=False)
    for conv in ("double", "folded"):
        q = VonMises(2.0, 3.0, conv)
        assert grid[np.argmax(q.pdf(grid))] == pytest.approx(q.mode, abs=math.pi / 1000)


def test_mixture_pdf_is_weighted_sum_and_default_equal_weights():
    a, b = VonMises(0.5, 3.0), Uniform(2.0, 3.0)
    theta = np.linspace(0, math.pi, 33, endpoint=False)
    np.testing.assert_allclose(Mixture([a, b], [3, 1]).pdf(theta),
                               0.75 * a.pdf(theta) + 0.25 * b.pdf(theta))
    np.testing.assert_allclose(Mixture([a, b]).pdf(theta), 0.5 * (a.pdf(theta) + b.pdf(theta)))
    assert Mixture([a, b], [0, 1]).sample(500, torch.Generator().manual_seed(0)).min() >= 2.0


def test_gridded_interpolates_nodes_and_is_linear_between():
    raw = np.array([1.0, 3.0, 2.0, 0.0])
    g = Gridded(raw)
    h = math.pi / 4
    scale = 1.0 / (h * raw.sum())
    np.testing.assert_allclose(g.pdf(np.arange(4) * h), raw * scale, rtol=1e-12)
    np.testing.assert_allclose(g.pdf(np.array([0.5 * h, 3.5 * h])),
                               np.array([2.0, 0.5]) * scale, rtol=1e-12)
    x = np.linspace(0, math.pi, 41)
    quad = np.array([integrate.quad(g.pdf, 0, xi, points=[h, 2 * h, 3 * h])[0] for xi in x])
    np.testing.assert_allclose(g.cdf(x), quad, atol=1e-12)
    assert Empirical is Gridded


def test_gridded_from_function_tracks_smooth_density():
    vm = VonMises(1.0, 3.0)
    g = Gridded.from_function(vm.pdf, n=512)
    theta = np.linspace(0, math.pi, 301, endpoint=False)
    np.testing.assert_allclose(g.pdf(theta), vm.pdf(theta), rtol=2e-4)
    assert Gridded.from_function(lambda t: 2.0, n=8).pdf(1.0) == pytest.approx(1 / math.pi)


def test_gridded_inverse_cdf_is_exact():
    g = PRIORS["gridded_zeros"]
    s = g.sample(5000, generator=torch.Generator().manual_seed(3)).double().numpy()
    # no samples where the interpolant is zero: [0, h) and [6h, π)
    h = math.pi / 8
    assert not np.any(s < h) and not np.any(s > 6 * h)
    # the CDF of the samples is uniform (probability integral transform)
    u = g.cdf(s)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_sampling_is_deterministic_and_seed_dependent():
    for prior in PRIORS.values():
        a = prior.sample(64, generator=torch.Generator().manual_seed(7))
        b = prior.sample(64, generator=torch.Generator().manual_seed(7))
        c = prior.sample(64, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_sample_uses_the_given_generator_only():
    prior = VonMises(1.0, 2.0)
    torch.manual_seed(0)
    a = prior.sample(32, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(99)
    b = prior.sample(32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    torch.manual_seed(11)
    c = prior.sample(32)
    torch.manual_seed(11)
    assert torch.equal(c, prior.sample(32))


def test_sample_sizes_and_device():
    prior = Uniform()
    assert prior.sample(0).shape == (0,)
    assert prior.sample(np.int64(3), device="cpu").device.type == "cpu"
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="n must be"):
            prior.sample(bad)


@pytest.mark.parametrize("name", PARAMS)
def test_config_round_trip(name):
    prior = PRIORS[name]
    cfg = prior.to_config()
    cfg2 = json.loads(json.dumps(cfg))
    back = prior_from_config(cfg2)
    assert type(back) is type(prior)
    assert back.to_config() == cfg
    assert back == prior
    theta = np.linspace(0, math.pi, 17, endpoint=False)
    np.testing.assert_array_equal(back.pdf(theta), prior.pdf(theta))
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert torch.equal(back.sample(50, g1), prior.sample(50, g2))
    assert repr(prior).startswith(type(prior).__name__ + "(")


def test_prior_from_config_rejects_unknown_kind():
    with pytest.raises(ValueError, match="banana"):
        prior_from_config({"kind": "banana"})
    with pytest.raises(ValueError, match="kind"):
        prior_from_config({"loc": 1.0})
    with pytest.raises(ValueError, match="von_mises"):
        prior_from_config({"kind": "von_mises", "loc": 1.0})


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: VonMises(0.0, -1.0), r"kappa.*-1\.0"),
        (lambda: VonMises(0.0, float("nan")), "kappa"),
        (lambda: VonMises(float("inf"), 1.0), "loc"),
        (lambda: VonMises(0.0, 1.0, convention="half"), "convention.*half"),
        (lambda: Uniform(-0.1, 1.0), r"low.*-0\.1"),
        (lambda: Uniform(1.0, 1.0), r"high.*1\.0"),
        (lambda: Uniform(0.0, 4.0), r"high.*4\.0"),
        (lambda: Mixture([]), "components"),
        (lambda: Mixture([Uniform()], [1.0, 2.0]), "weights"),
        (lambda: Mixture([Uniform(), Uniform()], [1.0, -2.0]), r"weights.*-2\.0"),
        (lambda: Mixture([Uniform(), Uniform()], [0.0, 0.0]), "weights"),
        (lambda: Mixture([Uniform(), "x"]), "components"),
        (lambda: Gridded([1.0]), "density"),
        (lambda: Gridded([1.0, -2.0, 1.0]), r"density.*-2\.0"),
        (lambda: Gridded([0.0, 0.0]), "density"),
        (lambda: Gridded([[1.0, 2.0]]), "density"),
        (lambda: Gridded([1.0, float("nan")]), "density"),
        (lambda: Gridded.from_function(np.cos, n=1), "n must"),
    ],
)
def test_validation(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_numpy_torch_and_float_inputs():
    prior = VonMises(1.0, 3.0)
    x = prior.pdf(0.5)
    assert isinstance(x, np.float64)
    arr = prior.pdf(np.array([[0.5, 1.0]]))
    assert arr.dtype == np.float64 and arr.shape == (1, 2)
    assert prior.pdf([0.5, 1.0]).shape == (2,)
    for dtype in (torch.float32, torch.float64):
        t = torch.tensor([[0.5], [1.0]], dtype=dtype, requires_grad=True)
        out = prior.pdf(t)
        assert isinstance(out, torch.Tensor)
        assert out.dtype == dtype and out.shape == (2, 1) and out.device == t.device
        np.testing.assert_allclose(out.detach().double().numpy()[:, 0], arr[0], rtol=1e-6)
    assert prior.pdf(torch.tensor([1])).dtype == torch.get_default_dtype()


# ---- very large κ and bad input (issue 14) ------------------------------------------------


def _ks_against_von_mises(x: np.ndarray, kappa: float) -> float:
    """Kolmogorov–Smirnov distance of draws x ≈ vM(0, κ) (|x| ≪ π) from the exact von Mises
    CDF, integrated numerically from exp(κ (cos u − 1)) on ±12 standard deviations."""
    sd = 1 / math.sqrt(kappa)
    grid = np.linspace(-12 * sd, 12 * sd, 200_001)
    dens = np.exp(kappa * (np.cos(grid) - 1.0))  # exact shape; normalised numerically
    cdf = integrate.cumulative_trapezoid(dens, grid, initial=0.0)
    cdf /= cdf[-1]
    xs = np.sort(x)
    f = np.interp(xs, grid, cdf)
    n = xs.size
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


@pytest.mark.parametrize("kappa", [3e4, 1e5, 4e5, 1e9])
def test_von_mises_sampling_is_correct_on_both_sides_of_the_normal_switch(kappa):
    from anglesim.distributions._von_mises import VON_MISES_NORMAL_KAPPA, von_mises_full_circle

    assert VON_MISES_NORMAL_KAPPA == 1e5  # the documented switch-over sits between the cases
    n = 100_000
    x = von_mises_full_circle(n, kappa, torch.Generator().manual_seed(7)).numpy()
    assert np.all(np.abs(x) <= math.pi)
    # KS distance against the exact CDF: critical value at p = 0.001 is 1.95 / √n
    assert _ks_against_von_mises(x, kappa) < 1.95 / math.sqrt(n)
    assert np.var(x) * kappa == pytest.approx(1.0, rel=0.03)
    # and through the priors: the doubled angle concentrates at 1/(2√κ), the folded at 1/√κ
    for conv, sd in (("double", 1 / (2 * math.sqrt(kappa))), ("folded", 1 / math.sqrt(kappa))):
        s = VonMises(1.0, kappa, conv).sample(20_000, torch.Generator().manual_seed(1))
        assert float((s.double() - 1.0).std()) == pytest.approx(sd, rel=0.05) or sd < 1e-7


def test_the_normal_branch_detects_a_wrong_variance():
    """The KS check above has teeth: draws with a 5% wider spread fail it."""
    z = np.random.default_rng(0).standard_normal(100_000)
    assert _ks_against_von_mises(1.05 * z / math.sqrt(2e5), 2e5) > 1.95 / math.sqrt(1e5)


@pytest.mark.parametrize("kappa", [1e12, 1e154, 1e200, 1.7e308])
def test_von_mises_sampling_terminates_for_any_finite_kappa(kappa):
    for conv in ("double", "folded"):
        prior = VonMises(0.7, kappa, conv)
        s = prior.sample(1000, torch.Generator().manual_seed(0))
        assert s.shape == (1000,) and torch.isfinite(s).all()
        assert float((s.double() - 0.7).abs().max()) < 1e-5
        assert np.isfinite(prior.pdf(np.array([0.7, 0.0]))).all()


@pytest.mark.parametrize("name", ["uniform", "vm_double", "mixture", "gridded"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_pdf_refuses_non_finite_angles_in_every_form(name, bad):
    prior = PRIORS[name]
    for theta in (bad, [0.3, bad], np.array([[bad]]), torch.tensor([0.1, bad]),
                  torch.tensor([bad], dtype=torch.float64)):
        with pytest.raises(ValueError, match="^theta must be finite"):
            prior.pdf(theta)
    for theta in ("0.5", ["a"], None):
        with pytest.raises(ValueError, match="^theta must be angles"):
            prior.pdf(theta)
    if isinstance(prior, Gridded):
        with pytest.raises(ValueError, match="^theta must be finite"):
            prior.cdf([0.2, bad])


def test_sample_refuses_a_generator_or_device_of_the_wrong_kind():
    prior = VonMises(1.0, 2.0)
    for bad in ("seed", 3, np.random.default_rng(0)):
        with pytest.raises(ValueError, match="^generator must be None or a torch.Generator"):
            prior.sample(4, generator=bad)
    for bad in ("bogus", 1.5, ["cpu"]):
        with pytest.raises(ValueError, match="^device must be"):
            prior.sample(4, device=bad)
    assert prior.sample(4, device=torch.device("cpu")).shape == (4,)


def test_as_prior_accepts_priors_and_configs_and_names_anything_else():
    from anglesim.distributions import as_prior

    vm = VonMises(1.0, 2.0)
    assert as_prior(vm) is vm
    assert as_prior(vm.to_config()) == vm
    for bad in ("uniform", None, 3.0, [Uniform()]):
        with pytest.raises(ValueError, match="^prior must be an AnglePrior"):
            as_prior(bad)
    with pytest.raises(ValueError, match="^finetune_prior must be"):
        as_prior("von_mises", name="finetune_prior")
    with pytest.raises(ValueError, match="convention"):
        VonMises(0.0, 1.0, convention=["double"])


def test_huge_gridded_values_give_the_same_prior_as_small_ones():
    """Only a density's ratios matter: values whose sum overflows (issue 21: an
    OverflowError before) give the uniform prior, as [1, 1] does."""
    from anglesim.distributions import Gridded

    big, small = Gridded([1e308, 1e308]), Gridded([1.0, 1.0])
    np.testing.assert_array_equal(big.density, small.density)
    assert big.to_config() == {"kind": "gridded", "density": [1e308, 1e308]}
    peaked = Gridded([1e308, 5e307, 1e307])
    np.testing.assert_allclose(peaked.density, Gridded([10.0, 5.0, 1.0]).density, rtol=1e-15)


@pytest.mark.parametrize("name, make", [
    ("components", lambda: Mixture(Uniform())),  # issue 21: said too little
    ("components", lambda: Mixture([])),
    ("components[1]", lambda: Mixture([Uniform(), "x"])),
    ("weights", lambda: Mixture([Uniform()], weights=[1, 2])),
    ("weights[0]", lambda: Mixture([Uniform()], weights=[-1])),
    ("weights", lambda: Mixture([Uniform()], weights=3)),
    ("density", lambda: Gridded([1.0])),
    ("density", lambda: Gridded([0.0, 0.0])),
    ("density", lambda: Gridded("ab")),
    ("density", lambda: Gridded([[1.0, 2.0]])),
    ("low", lambda: Uniform(-1)),
    ("high", lambda: Uniform(1.0, 0.5)),
    ("kappa", lambda: VonMises(0, -1)),
    ("convention", lambda: VonMises(0, 1, "x")),
    ("n", lambda: Uniform().sample(2.5)),
    ("device", lambda: Uniform().sample(3, device="xpu9")),
    ("n", lambda: Gridded.from_function(np.cos, n=1)),
    ("f", lambda: Gridded.from_function(3)),
    ("cfg", lambda: prior_from_config({"kind": "x"})),
    ("cfg", lambda: prior_from_config({"kind": "uniform", "bogus": 1})),
])
def test_bad_prior_arguments_get_one_line_naming_them(name, make):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name} must be "), message
    assert ", got " in message
