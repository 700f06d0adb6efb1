"""Representation measures: linear and debiased CKA, weight drift, PCA projections."""

import copy
import itertools

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim import representation as rep
from anglesim.finetune import apply_lora
from anglesim.models import CNNConfig, build_model
from anglesim.plotting import plot_activation_projection
from anglesim.stimuli import GratingSpec, render

CONFIG = CNNConfig(image_size=16, channels=(4, 6), kernel_size=3, fc_units=12, readout="cossin")
SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)


def rng(seed=0):
    return np.random.default_rng(seed)


def orthogonal(p, seed):
    q, r = np.linalg.qr(rng(seed).standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def reference_cka(x, y):
    """CKA from its definition with the centring matrix H (Kornblith et al. 2019, eq. 4):
    HSIC(K, L) ∝ tr(KHLH), CKA = HSIC(K, L)/√(HSIC(K, K) HSIC(L, L))."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def brute_force_unbiased_hsic(k, l):
    """The unbiased HSIC as the U-statistic over ordered 4-tuples of distinct indices
    (Song et al. 2012): mean of k_ij l_ij + k_ij l_qr − 2 k_ij l_iq."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        count += 1
    return total / count


def debiased_reference(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    return brute_force_unbiased_hsic(k, l) / np.sqrt(
        brute_force_unbiased_hsic(k, k) * brute_force_unbiased_hsic(l, l))


# --------------------------------------------------------------------------------------------
# linear CKA


@pytest.mark.parametrize("p", [5, 80])  # feature form (p <= n) and Gram form (p > n)
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(p, debiased):
    x = rng(1).standard_normal((40, p))
    assert rep.linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("p", [6, 70])
def test_cka_matches_its_definition_with_the_centring_matrix(p):
    x = rng(2).standard_normal((30, p))
    y = x[:, :3] @ rng(3).standard_normal((3, 9)) + 0.5 * rng(4).standard_normal((30, 9))
    assert rep.linear_cka(x, y) == pytest.approx(reference_cka(x, y), rel=1e-10)
    assert rep.linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y)) == pytest.approx(
        reference_cka(x, y), rel=1e-5)  # torch input, float32 allowed


def test_debiased_cka_matches_the_u_statistic():
    x = rng(5).standard_normal((7, 3))
    y = x @ rng(6).standard_normal((3, 4)) + rng(7).standard_normal((7, 4))
    assert rep.linear_cka(x, y, debiased=True) == pytest.approx(debiased_reference(x, y),
                                                                rel=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("p", [8, 60])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(debiased, p):
    x = rng(8).standard_normal((50, p))
    y = np.tanh(x @ rng(9).standard_normal((p, 10))) + 0.3 * rng(10).standard_normal((50, 10))
    base = rep.linear_cka(x, y, debiased=debiased)
    assert 0.05 < abs(base) < 0.99  # an informative value, not a trivial 0 or 1
    q_x, q_y = orthogonal(p, 11), orthogonal(10, 12)
    for xx, yy in [(x @ q_x, y), (x, y @ q_y), (7.5 * x, y), (x, 0.01 * y),
                   (3.0 * x @ q_x, 2.0 * y @ q_y)]:
        assert rep.linear_cka(xx, yy, debiased=debiased) == pytest.approx(base, rel=1e-9)
    # …but not to anisotropic scaling, which the test would notice
    scale = np.linspace(0.1, 10.0, p)
    assert abs(rep.linear_cka(x * scale, y, debiased=debiased) - base) > 1e-3


def test_debiased_cka_of_independent_noise_is_near_zero_where_plain_cka_is_biased():
    x = rng(13).standard_normal((100, 400))
    y = rng(14).standard_normal((100, 400))
    plain = rep.linear_cka(x, y)
    debiased = rep.linear_cka(x, y, debiased=True)
    assert plain > 0.4  # high-dimensional noise looks similar to plain CKA
    assert abs(debiased) < 0.02, debiased


def test_cka_flattens_conv_activations_and_rejects_bad_input():
    x = rng(15).standard_normal((12, 2, 3, 3))
    assert rep.linear_cka(x, x.reshape(12, -1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="^Y must be 12 rows"):
        rep.linear_cka(x, x[:10])
    with pytest.raises(ValueError, match="n_features"):
        rep.linear_cka(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="^X must be finite everywhere"):
        rep.linear_cka(np.full((5, 2), np.nan), np.ones((5, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        rep.linear_cka(x[:3], x[:3], debiased=True)
    assert np.isnan(rep.linear_cka(np.ones((6, 3)), x[:6]))  # no variance: undefined


# --------------------------------------------------------------------------------------------
# models: CKA between blocks, drift, weight distance


def model_and_images(seed=0, n=40):
    torch.manual_seed(seed)
    model = build_model(CONFIG)
    theta = torch.linspace(0, np.pi, n + 1)[:-1]
    images = render(theta, SPEC, generator=torch.Generator().manual_seed(seed))
    return model, images, theta


def test_cka_drift_is_one_below_a_changed_block_and_lower_from_it_on():
    model, images, _ = model_and_images()
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.blocks["conv2"][0].weight.add_(0.5 * torch.randn_like(
            changed.blocks["conv2"][0].weight))
    drift = rep.cka_drift(model, changed, images)
    assert isinstance(drift, xr.DataArray) and drift.dims == ("layer",)
    assert list(drift["layer"].values) == ["conv1", "conv2", "fc", "head"]
    assert float(drift.sel(layer="conv1")) == pytest.approx(1.0, abs=1e-12)
    assert float(drift.sel(layer="conv2")) < 0.99
    same = rep.cka_drift(model, copy.deepcopy(model), images, debiased=True)
    np.testing.assert_allclose(same.values, 1.0, atol=1e-12)


def test_cka_matrix_and_block_cka_agree():
    a, images, _ = model_and_images(0)
    b, _, _ = model_and_images(1)
    matrix = rep.cka_matrix(a, b, images, layers_a=["conv1", "fc"])
    assert matrix.dims == ("layer_a", "layer_b") and matrix.shape == (2, 4)
    assert float(matrix.sel(layer_a="fc", layer_b="conv2")) == pytest.approx(
        rep.block_cka(a, b, images, "fc", "conv2"))
    assert rep.block_cka(a, a, images, "fc") == pytest.approx(1.0)


def test_weight_distance_per_block():
    model, _, _ = model_and_images()
    reference = copy.deepcopy(model.state_dict())
    delta = torch.zeros_like(model.blocks["fc"][1].weight)
    delta[0, :3] = torch.tensor([3.0, 0.0, 4.0])
    with torch.no_grad():
        model.blocks["fc"][1].weight.add_(delta)
    for ref in (reference, build_reference(reference)):
        ds = rep.weight_distance(model, ref)
        assert list(ds["layer"].values) == ["conv1", "conv2", "fc", "head"]
        assert float(ds["distance"].sel(layer="fc")) == pytest.approx(5.0, rel=1e-6)
        assert float(ds["distance"].sel(layer=["conv1", "conv2", "head"]).max()) == 0.0
        fc_norm = float(np.sqrt(sum(float((reference[k].double() ** 2).sum())
                                    for k in reference if k.startswith("blocks.fc"))))
        assert float(ds["relative_change"].sel(layer="fc")) == pytest.approx(5.0 / fc_norm,
                                                                              rel=1e-6)
    wrapped = copy.deepcopy(model)
    apply_lora(wrapped, rank=1)
    with pytest.raises(ValueError, match="merge LoRA"):
        rep.weight_distance(wrapped, reference)


def build_reference(state):
    model = build_model(CONFIG)
    model.load_state_dict(state)
    return model


def test_drift_table_joins_cka_and_weight_change():
    model, images, _ = model_and_images()
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.blocks["head"][0].bias.add_(1.0)
    table = rep.drift_table(model, changed, images)
    assert set(table.data_vars) == {"cka", "cka_debiased", "distance", "relative_change"}
    assert table["cka"].dims == ("layer",)
    assert float(table["distance"].sel(layer="head")) == pytest.approx(np.sqrt(2.0), rel=1e-6)
    np.testing.assert_allclose(table["cka"].sel(layer=["conv1", "conv2", "fc"]).values, 1.0)


# --------------------------------------------------------------------------------------------
# PCA projections


def test_pca_recovers_the_top_components():
    r = rng(20)
    basis = orthogonal(6, 21)[:, :2]
    latent = r.standard_normal((200, 2)) * np.array([5.0, 2.0])
    x = latent @ basis.T + 0.01 * r.standard_normal((200, 6)) + 3.0
    coords, ratio = rep.pca(x, 2)
    assert coords.shape == (200, 2)
    cov = np.cov(x.T)
    top = np.sort(np.linalg.eigvalsh(cov))[::-1][:2]
    np.testing.assert_allclose(coords.var(0, ddof=1), top, rtol=1e-8)
    np.testing.assert_allclose(ratio, top / np.trace(cov), rtol=1e-8)
    assert abs(np.corrcoef(coords.T)[0, 1]) < 1e-8
    coords_again, _ = rep.pca(x.copy(), 2)
    np.testing.assert_array_equal(coords_again, coords)
    with pytest.raises(ValueError, match="n_components"):
        rep.pca(x, 7)


def test_pca_sign_convention_makes_the_largest_loading_positive():
    x = rng(22).standard_normal((50, 4)) * np.array([4.0, 1.0, 0.5, 0.2])
    coords, _ = rep.pca(x, 1)
    flipped, _ = rep.pca(-x, 1)
    # negating the data negates the loadings; the convention flips them back, so the
    # coordinates negate too (projection of −x on the same axis)
    np.testing.assert_allclose(flipped, -coords, atol=1e-12)
    assert np.corrcoef(coords[:, 0], x[:, 0])[0, 1] > 0.9  # axis 0 has the largest loading


def test_activation_projection_and_its_figure():
    model, images, theta = model_and_images(n=24)
    proj = rep.activation_projection(model, images, theta, "fc")
    assert proj.dims == ("stimulus", "component") and proj.shape == (24, 2)
    np.testing.assert_allclose(proj["theta"].values, theta.double().numpy())
    assert proj.attrs["layer"] == "fc" and len(proj.attrs["explained_variance_ratio"]) == 2
    fig = plot_activation_projection(proj)
    assert len(fig.axes) == 2  # scatter + colour bar
    with pytest.raises(ValueError, match="one angle per image"):
        rep.activation_projection(model, images, theta[:5], "fc")
    with pytest.raises(ValueError, match="theta coordinate"):
        plot_activation_projection(proj.drop_vars("theta"))


def test_pca_and_cka_accept_numpy_scalars_and_name_bad_ones():
    x = np.random.default_rng(0).normal(size=(6, 3))
    coords, ratio = rep.pca(x, np.int64(2))
    assert coords.shape == (6, 2)
    assert np.isfinite(rep.linear_cka(x, x, debiased=np.bool_(True)))
    with pytest.raises(ValueError, match=r"^n_components must be an integer >= 1 and <= 3, "
                                         r"got 4"):
        rep.pca(x, 4)
    with pytest.raises(ValueError, match=r"^n_components must be an integer.*got 2.0"):
        rep.pca(x, 2.0)
    with pytest.raises(ValueError, match=r"^debiased must be True or False, got 1"):
        rep.linear_cka(x, x, debiased=1)


def test_bad_activation_matrices_get_one_line_naming_them():
    ok = np.ones((5, 2))
    for name, call in [("X", lambda: rep.linear_cka("x", ok)),
                       ("X", lambda: rep.linear_cka(np.full((5, 2), np.nan), ok)),
                       ("Y", lambda: rep.linear_cka(ok, np.ones((4, 2))))]:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(f"{name} must be "), str(info.value)
