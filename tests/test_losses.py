"""anglesim.losses: minima at the truth, period-π invariance, wrap continuity, exact values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from anglesim.losses import LOSS_READOUTS, LOSSES, get_loss, loss_names, register_loss
from anglesim.models import angle_targets, bin_centres

K = 36  # bins
DT = torch.float64

# (loss, readout, params) for every compatible pair of the built-in angle losses
COMBOS = [
    ("wrapped_mse", "angle", {}),
    ("wrapped_mse", "cossin", {}),
    ("wrapped_mse", "bins", {}),
    ("cosine", "angle", {}),
    ("cosine", "cossin", {}),
    ("cosine", "bins", {}),
    ("lp", "angle", {}),
    ("lp", "cossin", {"p": 1.0}),
    ("lp", "bins", {"p": 0.5}),
    ("lp", "angle", {"p": 0.5}),
    ("lp", "cossin", {"p": 3.0}),
    ("vector_mse", "cossin", {}),
    ("vonmises_nll", "cossin", {}),
    ("cross_entropy", "bins", {}),
    ("cross_entropy", "bins", {"label_smoothing": 0.1}),
]
IDS = [f"{name}-{readout}-{params}" for name, readout, params in COMBOS]


def make(name, readout, params):
    return get_loss(name, readout, n_bins=K if readout == "bins" else None, **params)


def ideal(phi, readout: str) -> torch.Tensor:
    """The output a perfect network would give for orientation(s) phi."""
    phi = torch.as_tensor(phi, dtype=DT).reshape(-1)
    if readout == "angle":
        return phi[:, None].clone()
    if readout == "cossin":
        return angle_targets(phi, "cossin")
    centres = bin_centres(K, dtype=DT)
    return 4.0 * torch.cos(2 * (centres[None, :] - phi[:, None]))  # peaked at phi


def value(fn, theta: float, phi: float, readout: str) -> float:
    return float(fn(ideal(phi, readout), torch.tensor([theta], dtype=DT)))


def test_builtin_losses_are_registered():
    assert {"wrapped_mse", "cosine", "vector_mse", "lp", "vonmises_nll", "cross_entropy",
            "mse"} <= set(loss_names())
    assert loss_names() == sorted(loss_names())


@pytest.mark.parametrize("name, readout, params", COMBOS, ids=IDS)
def test_ideal_output_is_the_minimum(name, readout, params):
    fn = make(name, readout, params)
    # bins readout: test at bin centres, where the class target and the decoded angle agree
    thetas = bin_centres(K)[[0, 17, 35]].tolist() if readout == "bins" else [0.003, 1.0,
                                                                              math.pi - 0.003]
    for theta in thetas:
        best = value(fn, theta, theta, readout)
        for delta in (-1.0, -0.3, -0.05, 0.05, 0.3, 1.0, math.pi / 2):
            worse = value(fn, theta, theta + delta, readout)
            assert best < worse, (theta, delta, best, worse)


@pytest.mark.parametrize("name, readout, params", COMBOS, ids=IDS)
def test_invariant_under_theta_plus_pi(name, readout, params):
    fn = make(name, readout, params)
    gen = torch.Generator().manual_seed(0)
    width = {"angle": 1, "cossin": 2, "bins": K}[readout]
    output = torch.randn(64, width, generator=gen, dtype=DT)
    theta = torch.rand(64, generator=gen, dtype=DT) * math.pi
    base = fn(output, theta)
    for shift in (math.pi, -math.pi, 3 * math.pi):
        assert torch.allclose(fn(output, theta + shift), base, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, readout, params", COMBOS, ids=IDS)
def test_continuous_across_the_wrap(name, readout, params):
    fn = make(name, readout, params)
    for theta, phi in ((0.01, math.pi - 0.01), (math.pi - 0.01, 0.01)):
        at_min = value(fn, theta, theta, readout)
        across = value(fn, theta, phi, readout)  # 0.02 away, through the wrap
        far = value(fn, theta, theta + math.pi / 2, readout)  # the farthest orientation
        assert across - at_min < 0.1 * (far - at_min), (across, at_min, far)
        if name != "cross_entropy":  # symmetric in the error: same as 0.02 away, no wrap
            inside = value(fn, theta, theta + math.copysign(0.02, math.pi / 2 - theta), readout)
            assert across == pytest.approx(inside, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name, readout, params", COMBOS, ids=IDS)
def test_gradients_are_finite(name, readout, params):
    fn = make(name, readout, params)
    gen = torch.Generator().manual_seed(1)
    theta = torch.rand(16, generator=gen, dtype=DT) * math.pi
    width = {"angle": 1, "cossin": 2, "bins": K}[readout]
    for output in (torch.randn(16, width, generator=gen, dtype=DT), ideal(theta, readout)):
        output = output.clone().requires_grad_(True)
        loss = fn(output, theta)
        assert loss.ndim == 0 and torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, output)
        assert torch.isfinite(grad).all()


def test_float32_outputs_with_float64_theta():
    fn = get_loss("wrapped_mse", "cossin")
    out = ideal([0.4, 1.2], "cossin").float()
    loss = fn(out, torch.tensor([0.4, 1.2], dtype=DT))
    assert loss.dtype == torch.float32 and float(loss) < 1e-10


# ---- exact values ----------------------------------------------------------------------------


def test_wrapped_mse_values():
    fn = get_loss("wrapped_mse", "angle")
    theta = torch.tensor([0.5, 0.05, 3.0], dtype=DT)
    out = torch.tensor([[0.7], [math.pi - 0.05], [0.1]], dtype=DT)
    expected = np.mean([0.2**2, 0.1**2, (math.pi - 2.9) ** 2])
    assert float(fn(out, theta)) == pytest.approx(expected, rel=1e-12)


def test_cosine_for_cossin_is_scale_free_and_matches_decoded_form():
    theta = torch.tensor([0.2, 1.1, 2.8], dtype=DT)
    phi = torch.tensor([0.9, 1.0, 0.1], dtype=DT)
    out = angle_targets(phi, "cossin") * torch.tensor([[0.1], [3.0], [40.0]], dtype=DT)
    expected = (1 - torch.cos(2 * (phi - theta))).mean()
    assert torch.allclose(get_loss("cosine", "cossin")(out, theta), expected)
    assert torch.allclose(get_loss("cosine", "angle")(phi[:, None], theta), expected)


def test_vector_mse_values():
    fn = get_loss("vector_mse", "cossin")
    theta = torch.tensor([0.3, 1.7], dtype=DT)
    assert float(fn(torch.zeros(2, 2, dtype=DT), theta)) == pytest.approx(1.0)
    # the norm matters: twice the ideal vector is off by a unit vector
    assert float(fn(2 * angle_targets(theta, "cossin"), theta)) == pytest.approx(1.0)


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 3.0])
def test_lp_values(p):
    fn = get_loss("lp", "angle", p=p)
    theta = torch.tensor([1.0, 0.02], dtype=DT)
    out = torch.tensor([[1.3], [math.pi - 0.08]], dtype=DT)  # errors 0.3 and −0.1
    exact = (0.3**p + 0.1**p) / 2
    tol = 1e-3**p if p < 1 else 1e-12  # the smoothing moves the value by at most eps^p
    assert float(fn(out, theta)) == pytest.approx(exact, abs=tol)


def test_lp_small_p_is_smoothed_at_zero_error():
    fn = get_loss("lp", "angle", p=0.5, eps=1e-3)
    theta = torch.tensor([0.4, 2.0], dtype=DT)
    out = theta[:, None].clone().requires_grad_(True)
    loss = fn(out, theta)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, out)
    assert torch.equal(grad, torch.zeros_like(grad))
    # and the gradient is bounded close to 0 (unsmoothed |Δ|^0.5 would blow up)
    out = (theta[:, None] + 1e-9).requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(out, theta), out)
    assert grad.abs().max() < 1.0


def test_vonmises_nll_decreases_with_concentration_at_the_true_mean():
    fn = get_loss("vonmises_nll", "cossin")
    theta = torch.tensor([0.7], dtype=DT)
    unit = angle_targets(theta, "cossin")
    values = [float(fn(kappa * unit, theta)) for kappa in (0.0, 0.5, 1.0, 4.0, 20.0, 200.0)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    # at κ = 0 the density is uniform on [0, π): NLL = log π
    assert values[0] == pytest.approx(math.log(math.pi))


@pytest.mark.parametrize("kappa, mu", [(0.3, 0.1), (2.0, 1.4), (15.0, 3.0), (600.0, 0.5)])
def test_vonmises_nll_matches_scipy(kappa, mu):
    # p(θ) on [0, π) is the von Mises density of φ = 2θ times the Jacobian dφ/dθ = 2
    fn = get_loss("vonmises_nll", "cossin")
    theta = np.array([0.0, 0.4, mu + 0.01, 2.0, 3.1])
    out = kappa * angle_targets(torch.full((5,), mu, dtype=DT), "cossin")
    per_item = [float(fn(out[i : i + 1], torch.tensor([t], dtype=DT))) for i, t in
                enumerate(theta)]
    pdf = stats.vonmises.pdf(2 * theta, kappa, loc=2 * mu)
    seen = pdf > 0  # at large κ the far tail underflows to 0 in the pdf
    np.testing.assert_allclose(np.array(per_item)[seen], -np.log(2 * pdf[seen]), rtol=1e-9)
    expected_log = -(math.log(2) + stats.vonmises.logpdf(2 * theta, kappa, loc=2 * mu))
    np.testing.assert_allclose(per_item, expected_log, rtol=1e-9, atol=1e-9)


def test_vonmises_density_integrates_to_one_on_the_half_circle():
    fn = get_loss("vonmises_nll", "cossin")
    grid = torch.linspace(0, math.pi, 4001, dtype=DT)
    out = 3.0 * angle_targets(torch.full_like(grid, 1.2), "cossin")
    nll = torch.stack([fn(out[i : i + 1], grid[i : i + 1]) for i in range(len(grid))])
    assert float(torch.trapezoid(torch.exp(-nll), grid)) == pytest.approx(1.0, rel=1e-7)


def test_vonmises_gradient_at_zero_output_is_finite():
    fn = get_loss("vonmises_nll", "cossin")
    theta = torch.tensor([0.5], dtype=DT)
    out = torch.zeros(1, 2, dtype=DT, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(out, theta), out)
    assert torch.allclose(grad, -angle_targets(theta, "cossin"))


def test_cross_entropy_matches_torch_and_smoothing():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 12, generator=gen, dtype=DT)
    theta = torch.rand(8, generator=gen, dtype=DT) * math.pi
    target = angle_targets(theta, "bins", 12)
    plain = get_loss("cross_entropy", "bins", n_bins=12)(logits, theta)
    assert torch.allclose(plain, F.cross_entropy(logits, target))
    smooth = get_loss("cross_entropy", "bins", n_bins=12, label_smoothing=0.2)(logits, theta)
    assert torch.allclose(smooth, F.cross_entropy(logits, target, label_smoothing=0.2))
    assert not torch.allclose(smooth, plain)
    # without n_bins the width of the output sets K
    assert torch.allclose(get_loss("cross_entropy", "bins")(logits, theta), plain)


def test_mse_for_scalar_readout():
    fn = get_loss("mse", "scalar")
    out = torch.tensor([[0.5], [2.0]], dtype=DT)
    target = torch.tensor([1.0, 2.0 + math.pi], dtype=DT)  # not an angle: no wrapping
    assert float(fn(out, target)) == pytest.approx((0.25 + math.pi**2) / 2)
    assert float(fn(out, target[:, None])) == pytest.approx((0.25 + math.pi**2) / 2)


# ---- validation and registry -----------------------------------------------------------------


def test_unknown_loss_name_lists_known_names():
    with pytest.raises(ValueError, match="'hinge'") as err:
        get_loss("hinge", "cossin")
    assert "wrapped_mse" in str(err.value) and "vonmises_nll" in str(err.value)


@pytest.mark.parametrize(
    "name, readout",
    [("vector_mse", "bins"), ("vonmises_nll", "angle"), ("cross_entropy", "cossin"),
     ("mse", "angle"), ("wrapped_mse", "scalar"), ("cosine", "scalar")],
)
def test_incompatible_readout_names_both(name, readout):
    with pytest.raises(ValueError) as err:
        get_loss(name, readout, n_bins=K)
    assert repr(name) in str(err.value) and repr(readout) in str(err.value)


@pytest.mark.parametrize("p", [0.0, -1.0, float("nan"), float("inf"), "2"])
def test_lp_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p must be"):
        get_loss("lp", "angle", p=p)


def test_parameter_validation():
    with pytest.raises(ValueError, match="eps"):
        get_loss("lp", "angle", p=0.5, eps=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        get_loss("cross_entropy", "bins", label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"\['q'\]"):
        get_loss("lp", "angle", q=2)
    with pytest.raises(ValueError, match="'polar'"):
        get_loss("cosine", "polar")
    with pytest.raises(ValueError, match="n_bins"):
        get_loss("cross_entropy", "bins", n_bins=1)


def test_shape_validation_at_call_time():
    fn = get_loss("cross_entropy", "bins", n_bins=K)
    with pytest.raises(ValueError, match="n_bins=36"):
        fn(torch.zeros(4, 10), torch.zeros(4))
    fn = get_loss("wrapped_mse", "cossin")
    with pytest.raises(ValueError, match="theta"):
        fn(torch.ones(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="width 1"):
        fn(torch.ones(4, 1), torch.zeros(4))


@pytest.fixture
def scratch_registry():
    before, readouts = dict(LOSSES), dict(LOSS_READOUTS)
    yield
    LOSSES.clear()
    LOSSES.update(before)
    LOSS_READOUTS.clear()
    LOSS_READOUTS.update(readouts)


def test_register_custom_loss(scratch_registry):
    @register_loss("half_cosine_for_test", readouts=("cossin",))
    def half_cosine(readout, n_bins=None, scale=0.5):
        base = get_loss("cosine", readout)
        return lambda output, theta: scale * base(output, theta)

    assert "half_cosine_for_test" in loss_names()
    theta = torch.tensor([0.3], dtype=DT)
    out = ideal(1.0, "cossin")
    full = get_loss("cosine", "cossin")(out, theta)
    assert torch.allclose(get_loss("half_cosine_for_test", "cossin")(out, theta), full / 2)
    assert torch.allclose(get_loss("half_cosine_for_test", "cossin", scale=1.0)(out, theta), full)
    with pytest.raises(ValueError, match="bins"):
        get_loss("half_cosine_for_test", "bins")
    with pytest.raises(ValueError, match="already registered"):
        register_loss("half_cosine_for_test")
    register_loss("half_cosine_for_test", replace=True)(half_cosine)  # explicit override works
    with pytest.raises(ValueError, match="readouts"):
        register_loss("other_for_test", readouts=("polar",))
