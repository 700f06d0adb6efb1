"""The signal/noise split of linear FI against closed forms and the propagated estimator."""

import copy
import math

import numpy as np
import pytest
import torch

from anglesim.fisher import propagated_fisher
from anglesim.laws import layer_moments, linear_fisher, signal_noise_split, split_terms
from anglesim.models import reference_mlp
from anglesim.stimuli import GratingSpec, render_clean


def _random_cov(n, rank, seed):
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(n, rank, generator=g, dtype=torch.float64)
    return b @ b.T


@pytest.mark.parametrize("n, rank", [(5, 5), (40, 10)])
def test_linear_fisher_matches_the_explicit_ridge_formula(n, rank):
    s = _random_cov(n, rank, n)
    f = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-3
    reg = s + eps * torch.trace(s) / n * torch.eye(n, dtype=torch.float64)
    expected = f @ torch.linalg.inv(reg) @ f
    assert float(linear_fisher(f, s, eps)) == pytest.approx(float(expected), rel=1e-8)


def test_linear_fisher_batches_and_falls_back_for_an_indefinite_covariance():
    diag = torch.tensor([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    f = torch.tensor([[1.0, 1.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    out = linear_fisher(f, torch.diag_embed(diag), eps=1e-9)
    np.testing.assert_allclose(out.numpy(), [1 + 0.5 + 1, 9.0], rtol=1e-7)
    # eigenvalue -1 is clipped at 0, leaving only the ridge (eps tr/N = 1e-1 * 4/3) there
    s = torch.diag(torch.tensor([5.0, -1.0, 0.0], dtype=torch.float64))
    f = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert float(linear_fisher(f, s, 0.1)) == pytest.approx(1 / (0.1 * 4 / 3))
    with pytest.raises(ValueError, match="cov must be shape"):
        linear_fisher(torch.ones(3), torch.eye(2))
    with pytest.raises(ValueError, match="eps"):
        linear_fisher(torch.ones(2), torch.eye(2), eps=0)


@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_split_terms_closed_forms(scale):
    s = _random_cov(6, 6, 2)
    f = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    j = float(linear_fisher(f, s))
    # only the noise shrinks by `scale`: J_noise = J_ft = J / scale, J_signal = J
    t = split_terms(f, s, f, s * scale)
    np.testing.assert_allclose(t.numpy(), [j, j / scale, j, j / scale], rtol=1e-9)
    # only the tuning grows by `scale`: J_signal = J_ft = scale² J
    t = split_terms(f, s, f * scale, s)
    np.testing.assert_allclose(t.numpy(), [j, j * scale**2, j * scale**2, j], rtol=1e-9)


def _mlp(hidden, seed):
    torch.manual_seed(seed)
    return reference_mlp(image_size=8, hidden=(hidden, 6)).double()


SPEC = GratingSpec(size=8, frequency=1.5, phase=0.3, aperture=None, noise_std=0.7)


@pytest.mark.parametrize("hidden", [12, 100])  # fewer and more units than the 64 pixels
@pytest.mark.parametrize("layer", ["fc1", "fc2"])
def test_moments_give_the_propagated_fisher(hidden, layer):
    net = _mlp(hidden, hidden)
    theta = np.array([0.2, 1.1, 2.9])
    prop = propagated_fisher(net, SPEC, theta, [layer], eps=1e-6).sel(layer=layer).values
    ours = [float(linear_fisher(*layer_moments(net, SPEC, t, layer), eps=1e-6)) for t in theta]
    np.testing.assert_allclose(ours, prop, rtol=1e-5)  # its solver: to ~1e-6


def test_moments_are_the_mean_derivative_and_propagated_covariance():
    net = _mlp(12, 0)
    theta, h = 0.7, 1e-6
    f, s = layer_moments(net, SPEC, theta, "fc1", sigma=2.0)
    t = torch.tensor([theta - h, theta + h], dtype=torch.float64)
    with torch.no_grad():
        r = net.run_blocks(render_clean(t, SPEC), stop="fc1")
    np.testing.assert_allclose(f.numpy(), ((r[1] - r[0]) / (2 * h)).numpy(), rtol=1e-5,
                               atol=1e-8)
    w = net.blocks["fc1"][1].weight.detach()
    pre = net.blocks["fc1"][1](render_clean(torch.tensor([theta], dtype=torch.float64),
                                            SPEC).flatten(1))[0].detach()
    a = (pre > 0).double()[:, None] * w  # ReLU gates times the weights
    np.testing.assert_allclose(s.numpy(), (4.0 * a @ a.T).numpy(), rtol=1e-10, atol=1e-12)


def _orthonormal_to(vectors, seed, n):
    """n unit vectors orthogonal to ``vectors`` and to each other (Gram–Schmidt)."""
    g = torch.Generator().manual_seed(seed)
    basis = [v / v.norm() for v in vectors]
    out = []
    while len(out) < n:
        v = torch.randn(basis[0].numel(), generator=g, dtype=torch.float64)
        for b in basis + out:
            v = v - (v @ b) * b
        out.append(v / v.norm())
    return out


@pytest.mark.parametrize("hidden", [12, 100])
def test_a_change_of_only_the_covariance_or_only_the_tuning(hidden):
    """First layer W of a ReLU MLP, at θ₀, with x = x(θ₀) and ẋ its derivative:

    * W' = W + u vᵀ with v ⟂ x, ẋ keeps every pre-activation and f′ = D W ẋ, and changes
      Σ = D W Wᵀ D σ²: J(f′_ft, Σ_pre) = J_pre exactly and J(f′_pre, Σ_ft) = J_ft;
    * W' = W Q with Q a rotation in a plane ⟂ x (holding the part of ẋ ⟂ x and a v ⟂ x, ẋ)
      keeps the pre-activations and Σ (Q Qᵀ = I) and changes f′ only.
    """
    pre = _mlp(hidden, 7)
    theta0 = 0.9
    t = torch.tensor([theta0], dtype=torch.float64)
    x = render_clean(t, SPEC).flatten()
    xdot = torch.autograd.functional.jacobian(lambda a: render_clean(a, SPEC).flatten(), t)[:, 0]
    lin = lambda net: net.blocks["fc1"][1]  # noqa: E731

    noise_only = copy.deepcopy(pre)
    (v,) = _orthonormal_to([x, xdot - (xdot @ x) / (x @ x) * x], 11, 1)
    u = torch.randn(hidden, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        lin(noise_only).weight += 3.0 * torch.outer(u, v)
    split = signal_noise_split(pre, noise_only, SPEC, [theta0], ["fc1"], eps=1e-9)
    terms = split["fisher_terms"].sel(layer="fc1", angle=theta0)
    assert float(terms.sel(term="signal_only")) == pytest.approx(
        float(terms.sel(term="pretrained")), rel=1e-6)
    assert float(terms.sel(term="noise_only")) == pytest.approx(
        float(terms.sel(term="finetuned")), rel=1e-6)
    assert abs(float(split["delta_total"].sel(layer="fc1", angle=theta0))) > 1e-3

    signal_only = copy.deepcopy(pre)
    p = xdot - (xdot @ x) / (x @ x) * x
    p = p / p.norm()
    (v,) = _orthonormal_to([x, p], 12, 1)
    c, s = math.cos(0.6), math.sin(0.6)
    q = (torch.eye(64, dtype=torch.float64) + (c - 1) * (torch.outer(p, p) + torch.outer(v, v))
         + s * (torch.outer(v, p) - torch.outer(p, v)))
    with torch.no_grad():
        lin(signal_only).weight.copy_(lin(pre).weight @ q)
    split = signal_noise_split(pre, signal_only, SPEC, [theta0], ["fc1"], eps=1e-9)
    terms = split["fisher_terms"].sel(layer="fc1", angle=theta0)
    assert float(terms.sel(term="noise_only")) == pytest.approx(
        float(terms.sel(term="pretrained")), rel=1e-6)
    assert float(terms.sel(term="signal_only")) == pytest.approx(
        float(terms.sel(term="finetuned")), rel=1e-6)
    assert abs(float(split["delta_total"].sel(layer="fc1", angle=theta0))) > 1e-3
    assert abs(float(split["delta_interaction"].sel(layer="fc1", angle=theta0))) < 1e-6


def test_split_of_an_unchanged_network_is_zero_and_bad_layers_are_named():
    net = _mlp(12, 1)
    split = signal_noise_split(net, copy.deepcopy(net), SPEC, [0.1, 1.0], ["fc1", "head"])
    for name in ("delta_total", "delta_signal", "delta_noise", "delta_interaction"):
        np.testing.assert_allclose(split[name].values, 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="layer must be one of"):
        layer_moments(net, SPEC, 0.1, "conv9")


def test_a_mapping_of_finetuned_networks_gives_each_its_own_split():
    pre = _mlp(12, 2)
    others = {"a": _mlp(12, 3), "b": _mlp(12, 4)}
    both = signal_noise_split(pre, others, SPEC, [0.4, 2.0], ["fc2"], eps=1e-4, dim="strategy")
    assert both["delta_total"].dims == ("strategy", "layer", "angle")
    for name, net in others.items():
        one = signal_noise_split(pre, net, SPEC, [0.4, 2.0], ["fc2"], eps=1e-4)
        np.testing.assert_allclose(both["fisher_terms"].sel(strategy=name).values,
                                   one["fisher_terms"].values, rtol=1e-12)
    with pytest.raises(ValueError, match="finetuned must be"):
        signal_noise_split(pre, {}, SPEC, [0.4], ["fc2"])
