"""Grating rendering: geometry, period π, derivatives, noise statistics, reference preset."""

import json
import math
import re

import numpy as np
import pytest
import torch
from torch.func import jvp, vmap

from anglesim.stimuli import GratingSpec, render, render_clean
from anglesim.stimuli._grating import pixel_grid

SMALL = GratingSpec(size=16, frequency=3.0, aperture=0.9, aperture_edge=0.2)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_clean_image_matches_formula_in_numpy():
    spec = GratingSpec(size=12, frequency=2.5, phase=0.7, contrast=0.8, aperture=None,
                       extent=2.0)
    theta = np.array([0.0, 0.4, 1.3, 2.9])
    x = np.linspace(-2.0, 2.0, 12)
    xx, yy = np.meshgrid(x, x, indexing="xy")
    k = math.pi * 2.5 / 2.0
    expected = 0.8 * np.cos(k * (yy[None] * np.cos(theta)[:, None, None]
                                 + xx[None] * np.sin(theta)[:, None, None]) + 0.7)
    img = render_clean(torch.tensor(theta), spec)
    assert img.shape == (4, 1, 12, 12) and img.dtype == torch.float64
    np.testing.assert_allclose(img[:, 0].numpy(), expected, atol=1e-12)
    # float32 by default for float32 / list input
    assert render_clean([0.1], spec).dtype == torch.float32
    assert render_clean(torch.tensor([0.1]), spec).dtype == torch.float32
    # reference geometry: frequency 5 with extent π is cos(5 (Y cos θ + X sin θ))
    assert GratingSpec(frequency=5.0).wavenumber == pytest.approx(5.0)


def test_theta_and_theta_plus_pi_render_identically_for_every_phase():
    theta = torch.tensor([0.1, 0.9, 1.7, 2.5], dtype=torch.float64)
    for phase in (0.0, 0.5, math.pi / 2, 2.0, math.pi, 5.0):
        spec = SMALL.replace(phase=phase)
        a = render_clean(theta, spec)
        for k in (1, -1, 3):
            b = render_clean(theta + k * math.pi, spec)
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    # with a nonzero phase the naive formula would differ at θ + π: the test above has teeth
    spec = SMALL.replace(phase=0.5, aperture=None)
    xx, yy = pixel_grid(spec.size, spec.extent, "cpu", torch.float64)
    t = 0.9 + math.pi
    naive = torch.cos(spec.wavenumber * (yy * math.cos(t) + xx * math.sin(t)) + 0.5)
    ours = render_clean(torch.tensor([t], dtype=torch.float64), spec)[0, 0]
    assert (naive - ours).abs().max() > 0.5


def test_orthogonal_orientations_differ_and_orientation_rotates_stripes():
    spec = SMALL.replace(aperture=None)
    img = render_clean(torch.tensor([0.0, math.pi / 2], dtype=torch.float64), spec)[:, 0]
    # θ = 0: the image varies along Y only (constant along rows); θ = π/2: along X only
    assert torch.allclose(img[0], img[0][:, :1].expand(-1, 16))
    assert torch.allclose(img[1], img[1][:1, :].expand(16, -1))
    assert not torch.allclose(img[0], img[1])


@pytest.mark.parametrize("phase", [0.0, 1.1])
def test_autograd_derivative_matches_finite_difference(phase):
    spec = SMALL.replace(phase=phase)
    theta = torch.tensor([0.2, 1.0, 2.2, 3.0], dtype=torch.float64, requires_grad=True)
    img = render_clean(theta, spec)
    w = torch.randn(img.shape, generator=gen(0), dtype=torch.float64)
    (grad,) = torch.autograd.grad((img * w).sum(), theta)
    h = 1e-6
    with torch.no_grad():
        fd = ((render_clean(theta + h, spec) - render_clean(theta - h, spec)) * w).sum((1, 2, 3))
    torch.testing.assert_close(grad, fd / (2 * h), rtol=1e-6, atol=1e-6)
    # float32 path: same derivative within float32 accuracy
    t32 = theta.detach().float().requires_grad_(True)
    (g32,) = torch.autograd.grad((render_clean(t32, spec) * w.float()).sum(), t32)
    torch.testing.assert_close(g32.double(), grad, rtol=1e-4, atol=1e-3)


def test_jvp_and_vmap_work_through_render_clean():
    spec = SMALL.replace(phase=0.3)
    theta = torch.tensor([0.4, 1.5, 2.8], dtype=torch.float64)
    x, xdot = jvp(lambda a: render_clean(a, spec), (theta,), (torch.ones_like(theta),))
    t = theta.clone().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda a: render_clean(a, spec).sum(0), t)
    torch.testing.assert_close(x, render_clean(theta, spec))
    # image i depends only on θ_i, so the summed Jacobian column i is ∂x_i/∂θ_i
    torch.testing.assert_close(xdot[:, 0], jac[0].permute(2, 0, 1))
    per = vmap(lambda a: render_clean(a, spec))(theta)  # a is 0-d inside vmap
    torch.testing.assert_close(per[:, 0], x)
    # jvp through the noisy render too (additive noise does not change the tangent)
    spec_n = spec.replace(noise_std=0.5)
    _, xdot_n = jvp(lambda a: render(a, spec_n, gen(1)), (theta,), (torch.ones_like(theta),))
    torch.testing.assert_close(xdot_n, xdot)


def test_gaussian_noise_statistics():
    spec = GratingSpec(size=16, frequency=2.0, noise_std=0.7, noise_prob=0.6, aperture=None)
    theta = torch.full((2000,), 0.8)
    noisy = render(theta, spec, gen(2))
    clean = render_clean(theta, spec)
    diff = (noisy - clean).double()
    assert float(diff.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(diff.var()) == pytest.approx(0.49 * 0.6, rel=0.02)
    assert float((diff == 0).double().mean()) == pytest.approx(0.4, abs=0.01)
    torch.testing.assert_close(noisy.mean(0), clean[0], atol=0.06, rtol=0)
    vmap_ = spec.noise_variance_map()
    assert vmap_.shape == (16, 16)
    torch.testing.assert_close(vmap_, torch.full((16, 16), 0.49 * 0.6))
    assert not spec.gaussian_noise_only
    assert spec.replace(noise_prob=1.0).gaussian_noise_only


def test_shot_noise_fraction_and_values():
    spec = GratingSpec(size=16, frequency=2.0, contrast=0.5, shot_prob=0.3, aperture=None)
    theta = torch.full((500,), 0.3)
    noisy = render(theta, spec, gen(3))
    clean = render_clean(theta, spec)
    changed = noisy != clean
    assert float(changed.double().mean()) == pytest.approx(0.3, abs=0.006)
    hit = noisy[changed]
    assert torch.all((hit == 0.5) | (hit == -0.5))
    assert float((hit > 0).double().mean()) == pytest.approx(0.5, abs=0.02)
    assert not spec.gaussian_noise_only


def test_aperture_order_and_variance_map_with_mask_after_noise():
    base = GratingSpec(size=16, noise_std=1.0, aperture=0.8, aperture_edge=0.3)
    mask = base.aperture_mask()
    assert float(mask.min()) == 0.0 and float(mask.max()) == 1.0
    assert torch.all((mask >= 0) & (mask <= 1))
    theta = torch.full((300,), 1.0)
    # noise added everywhere, including outside the aperture
    before = render(theta, base, gen(4))
    outside = mask == 0
    assert float(before[:, 0][:, outside].std()) == pytest.approx(1.0, rel=0.05)
    # aperture multiplies the noisy image: zero outside, variance σ² mask² inside
    after = base.replace(mask_after_noise=True)
    x = render(theta, after, gen(4))
    assert torch.all(x[:, 0][:, outside] == 0)
    var = (x - render_clean(theta, after)).var(0)[0]
    vm = after.noise_variance_map()
    torch.testing.assert_close(vm, mask**2)
    inside = mask > 0.5
    np.testing.assert_allclose(var[inside].numpy(), vm[inside].numpy(), rtol=0.25)
    # clean render is masked in both modes
    torch.testing.assert_close(render(theta[:2], after, noise=False),
                               render_clean(theta[:2], base))


def test_hard_aperture_keeps_pixels_strictly_inside_radius():
    spec = GratingSpec(size=20, aperture=0.5, aperture_edge=0.0, extent=2.0)
    xx, yy = pixel_grid(spec.size, spec.extent, "cpu", torch.float64)
    expected = (xx**2 + yy**2 < 1.0).float()
    torch.testing.assert_close(spec.aperture_mask(), expected)


def test_reference_preset():
    spec = GratingSpec.reference()
    assert (spec.size, spec.phase, spec.contrast, spec.clamp) == (101, 0.0, 1.0, (-1.0, 1.0))
    assert spec.noise_std**2 == pytest.approx(20.0) and spec.noise_prob == 0.8
    assert spec.mask_after_noise and spec.aperture_edge == 0.0
    theta = torch.tensor([0.0, 0.7, 1.9, 2.6] * 20)
    x = render(theta, spec, gen(5))
    assert x.shape == (80, 1, 101, 101) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    grid = np.linspace(-math.pi, math.pi, 101)
    xx, yy = np.meshgrid(grid, grid, indexing="xy")
    r2 = torch.tensor(xx**2 + yy**2)
    outside, inside = r2 >= 6, r2 < 6
    assert torch.all(x[:, 0][:, outside] == 0)
    # clean image: cos(5 (Y cos θ + X sin θ)) inside the aperture
    ref = np.cos(5 * (yy[None] * np.cos(theta.double().numpy())[:, None, None]
                      + xx[None] * np.sin(theta.double().numpy())[:, None, None]))
    clean = render_clean(theta, spec)[:, 0].double().numpy()
    np.testing.assert_allclose(clean, np.where(inside.numpy(), ref, 0.0), atol=2e-5)
    # uncorrupted fraction ≈ 0.2: a corrupted pixel equals the clean value only if the noise
    # is exactly 0 or both clamp to the same bound; count pixels where clamp cannot coincide
    noisy = x[:, 0].double().numpy()
    interior = np.abs(clean) < 0.999
    same = np.isclose(noisy, clean, atol=1e-6, rtol=0) & interior & inside.numpy()[None]
    frac = same.sum() / (interior & inside.numpy()[None]).sum()
    assert frac == pytest.approx(0.2, abs=0.01)


def test_seeded_determinism_and_seed_dependence():
    spec = SMALL.replace(phase=None, noise_std=0.3, noise_prob=0.5, shot_prob=0.1,
                         clamp=(-1.0, 1.0))
    theta = torch.tensor([0.1, 1.2, 2.3])
    a = render(theta, spec, gen(6))
    b = render(theta, spec, gen(6))
    c = render(theta, spec, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(0)
    d = render(theta, spec, gen(6))
    assert torch.equal(a, d)  # the global RNG plays no part


@pytest.mark.parametrize("spec", [
    GratingSpec.reference().replace(size=33),
    SMALL.replace(phase=None, noise_std=0.3, noise_prob=0.5, shot_prob=0.1, clamp=(-1.0, 1.0)),
    SMALL.replace(noise_std=1.0, mask_after_noise=True),
    SMALL.replace(aperture=None, noise_std=0.0),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_image", [False, True])
def test_inplace_render_is_bit_identical(spec, dtype, per_image):
    theta = torch.rand(37, generator=gen(1), dtype=dtype) * 4.0 - 0.5
    kw = {}
    if per_image:
        kw = {"contrasts": torch.rand(37, generator=gen(2)),
              "frequencies": 2.0 + torch.rand(37, generator=gen(3)),
              "phases": torch.rand(37, generator=gen(4)) * 6.0}
    a = render(theta, spec, gen(5), dtype=dtype, **kw)
    b = render(theta, spec, gen(5), dtype=dtype, inplace=True, **kw)
    assert torch.equal(a, b)
    c = render(theta, spec, gen(5), dtype=dtype, noise=False, **kw)
    d = render(theta, spec, gen(5), dtype=dtype, noise=False, inplace=True, **kw)
    assert torch.equal(c, d)


def test_inplace_render_refuses_differentiable_inputs():
    theta = torch.tensor([0.3, 1.0], requires_grad=True)
    with pytest.raises(ValueError, match="inplace=True renders are not differentiable"):
        render(theta, SMALL, gen(0), inplace=True)
    with pytest.raises(ValueError, match="inplace must be True or False, got 1"):
        render(theta.detach(), SMALL, gen(0), inplace=1)


def test_random_phase_differs_per_image_and_follows_generator():
    spec = SMALL.replace(phase=None, aperture=None)
    theta = torch.full((6,), 0.5)
    img = render(theta, spec, gen(8), noise=False)
    flat = img.reshape(6, -1)
    assert torch.cdist(flat, flat).add(torch.eye(6) * 1e3).min() > 0.1
    # the phases are uniform draws from the generator: reproduce them explicitly
    phases = 2 * math.pi * torch.rand(6, dtype=torch.float64, generator=gen(8))
    torch.testing.assert_close(img, render_clean(theta, spec, phases))
    # render_clean with phase None is deterministic (phase 0)
    torch.testing.assert_close(render_clean(theta, spec), render_clean(theta, spec, 0.0))


def test_phases_argument_overrides_spec_phase():
    spec = SMALL.replace(phase=0.0)
    theta = torch.tensor([0.5, 1.5])
    phases = torch.tensor([1.0, 2.0])
    img = render(theta, spec, phases=phases, noise=False)
    torch.testing.assert_close(img[1:], render_clean(theta[1:], spec.replace(phase=2.0)))
    with pytest.raises(ValueError, match="phases"):
        render(theta, spec, phases=torch.zeros(3))
    with pytest.raises(ValueError, match="phases must be finite, got nan"):
        render(theta, spec, phases=[0.0, float("nan")])


def test_batch_equals_single_renders():
    spec = SMALL.replace(phase=0.4)
    theta = torch.tensor([0.0, 0.5, 1.1, 2.0, 3.1])
    batch = render_clean(theta, spec)
    singles = torch.cat([render_clean(theta[i : i + 1], spec) for i in range(5)])
    torch.testing.assert_close(batch, singles, atol=0, rtol=0)
    # noisy: image i's noise does not depend on the other angles in the batch
    noisy_spec = SMALL.replace(noise_std=0.5)
    a = render(theta, noisy_spec, gen(9))
    b = render(theta.flip(0), noisy_spec, gen(9))
    torch.testing.assert_close(a - render_clean(theta, noisy_spec),
                               b - render_clean(theta.flip(0), noisy_spec))


def test_input_conversion():
    spec = SMALL
    for angles in (0.3, [0.3], np.array([0.3]), torch.tensor(0.3), torch.tensor([0.3])):
        out = render_clean(angles, spec)
        assert out.shape == (1, 1, 16, 16)
    torch.testing.assert_close(render_clean([0.3], spec), render_clean(torch.tensor([0.3]), spec))
    with pytest.raises(ValueError, match="angles"):
        render_clean(torch.zeros(2, 2), spec)
    with pytest.raises(ValueError, match="angles"):
        render_clean(["a"], spec)
    with pytest.raises(ValueError, match="spec"):
        render([0.1], {"size": 16})
    assert render(torch.zeros(0), spec).shape == (0, 1, 16, 16)


def test_config_round_trip_and_replace():
    for spec in (GratingSpec(), GratingSpec.reference(), GratingSpec.small(),
                 SMALL.replace(phase=None, clamp=(-2, 2), aperture=None)):
        cfg = json.loads(json.dumps(spec.to_config()))
        assert GratingSpec.from_config(cfg) == spec
    assert GratingSpec.small().size == 32
    assert SMALL.replace(contrast=2).contrast == 2.0
    assert SMALL.contrast == 1.0
    with pytest.raises(ValueError, match="colour"):
        SMALL.replace(colour=1)
    with pytest.raises(ValueError, match="colour"):
        GratingSpec.from_config({"colour": 1})
    with pytest.raises(ValueError, match="contrast"):
        SMALL.replace(contrast=-1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 7),
        ("size", 16.0),
        ("size", True),
        ("frequency", 0.0),
        ("frequency", float("inf")),
        ("phase", float("nan")),
        ("contrast", -0.5),
        ("aperture", 0.0),
        ("aperture_edge", -0.1),
        ("noise_std", -1.0),
        ("noise_prob", 1.5),
        ("shot_prob", -0.1),
        ("clamp", (1.0, -1.0)),
        ("clamp", (0.0,)),
        ("clamp", "ab"),
        ("mask_after_noise", "yes"),
        ("extent", -1.0),
        ("contrast", "1"),
    ],
)
def test_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError) as err:
        GratingSpec(**{field: value})
    msg = str(err.value)
    assert field in msg and repr(value) in msg


# ---- channels and colour ------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 16, 33])
def test_grey_channels_replicate_the_one_channel_image_bit_for_bit(size):
    one = GratingSpec(size=size, frequency=3.0, aperture=0.8, noise_std=0.0)
    theta = torch.linspace(0.0, math.pi, 6)
    for c in (2, 3, 5):
        spec = one.replace(channels=c)
        for dtype in (torch.float32, torch.float64):
            img = render_clean(theta.to(dtype), spec)
            base = render_clean(theta.to(dtype), one)
            assert img.shape == (6, c, size, size) and img.dtype == dtype
            assert torch.equal(img, base.expand(-1, c, -1, -1))
        assert spec.image_shape == (c, size, size)


def test_colour_weights_scale_each_channel_and_its_derivative():
    spec = SMALL.replace(channels=3, colour=(1.0, 0.6, 0.2))
    grey = SMALL.replace(channels=1)
    theta = torch.tensor([0.2, 1.1, 2.7], dtype=torch.float64)
    img = render_clean(theta, spec)
    base = render_clean(theta, grey)
    assert img.shape == (3, 3, 16, 16)
    for c, w in enumerate((1.0, 0.6, 0.2)):  # w·(x·mask) vs (w·x)·mask: last-bit rounding
        torch.testing.assert_close(img[:, c], base[:, 0] * w, rtol=1e-15, atol=1e-15)
    # ∂x_c/∂θ = w_c ∂x/∂θ through forward-mode autodiff (as the Fisher estimators take it)
    _, d_col = jvp(lambda t: render_clean(t, spec), (theta,), (torch.ones_like(theta),))
    _, d_grey = jvp(lambda t: render_clean(t, grey), (theta,), (torch.ones_like(theta),))
    torch.testing.assert_close(d_col, d_grey * torch.tensor([1.0, 0.6, 0.2],
                                                            dtype=torch.float64)[:, None, None],
                               rtol=1e-12, atol=1e-12)
    # one channel with a colour weight is that multiple of the grey image
    torch.testing.assert_close(render_clean(theta, SMALL.replace(colour=(0.5,))), base * 0.5,
                               rtol=1e-15, atol=1e-15)
    assert (img[:, 2] - base[:, 0]).abs().max() > 0.1  # the weights matter


@pytest.mark.parametrize(("n", "channels", "size"), [(64, 3, 16), (8, 2, 40), (400, 4, 8)])
def test_noise_is_independent_per_channel_and_the_colour_does_not_scale_it(n, channels, size):
    sigma = 0.7
    colour = tuple(np.linspace(1.0, 0.1, channels))
    spec = GratingSpec(size=size, frequency=2.0, aperture=None, noise_std=sigma,
                       channels=channels, colour=colour)
    theta = torch.full((n,), 0.4)
    resid = render(theta, spec, gen(1)) - render_clean(theta, spec)
    flat = resid.transpose(0, 1).reshape(channels, -1).double()  # [C, n·P·P]
    m = flat.shape[1]
    np.testing.assert_allclose(flat.std(1).numpy(), sigma, rtol=6 / math.sqrt(m))
    corr = torch.corrcoef(flat)
    off = corr[~torch.eye(channels, dtype=torch.bool)]
    assert off.abs().max() < 5 / math.sqrt(m)  # independent channels (≈ 0 correlation)
    # the same pixel in two channels does not carry the same draw
    assert not torch.equal(resid[:, 0], resid[:, 1])


def test_channels_in_place_and_out_of_place_agree_and_variance_map_broadcasts():
    spec = GratingSpec(size=16, frequency=3.0, noise_std=0.5, noise_prob=0.7, shot_prob=0.05,
                       clamp=(-1.0, 1.0), mask_after_noise=True, channels=3,
                       colour=(1.0, -0.5, 0.25))
    theta = torch.linspace(0.0, 3.0, 10)
    a = render(theta, spec, gen(4))
    b = render(theta, spec, gen(4), inplace=True)
    assert a.shape == (10, 3, 16, 16) and torch.equal(a, b)
    var = spec.noise_variance_map()
    assert var.shape == (3, 16, 16)
    one = spec.replace(channels=1, colour=None).noise_variance_map()
    assert one.shape == (16, 16) and torch.equal(var, one.expand(3, -1, -1))
    assert (a[0] * 0 + var).shape == (3, 16, 16) and (a[0] * 0 + one).shape == (3, 16, 16)


def test_one_channel_renders_as_the_base_commit_did():
    """channels=1 draws the same numbers as before channels existed (commit 1e9a2dc)."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "show", "1e9a2dc:anglesim/stimuli.py"], cwd=root,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the base commit's stimuli.py is not available from git here")
    name = "anglesim._stimuli_1e9a2dc"
    spec_ = importlib.util.spec_from_loader(name, loader=None)
    old = importlib.util.module_from_spec(spec_)
    old.__package__ = "anglesim"
    sys.modules[name] = old
    try:
        exec(compile(source, "stimuli_1e9a2dc.py", "exec"), old.__dict__)
        theta = torch.linspace(0.0, math.pi, 17)
        for fields in (dict(size=12, noise_std=0.8),
                       dict(size=16, phase=None, noise_std=0.5, noise_prob=0.6, shot_prob=0.1,
                            clamp=(-1.0, 1.0), mask_after_noise=True)):
            for inplace in (False, True):
                a = old.render(theta, old.GratingSpec(**fields), gen(3), inplace=inplace)
                b = render(theta, GratingSpec(**fields, channels=1), gen(3), inplace=inplace)
                assert torch.equal(a, b)
            assert old.GratingSpec(**fields).to_config() == GratingSpec(**fields).to_config()
    finally:
        del sys.modules[name]


def test_channels_and_colour_config_round_trip_and_validation():
    for spec in (GratingSpec(channels=3), GratingSpec(channels=3, colour=(1.0, 0.6, 0.2)),
                 GratingSpec(colour=(2.0,))):
        cfg = json.loads(json.dumps(spec.to_config()))
        assert GratingSpec.from_config(cfg) == spec
    assert "channels" not in GratingSpec().to_config()
    assert "colour" not in GratingSpec().to_config()
    assert GratingSpec(channels=np.int64(3)).channels == 3
    for fields, name in ((dict(channels=0), "channels"), (dict(channels=2.0), "channels"),
                         (dict(channels=3, colour=(1.0, 0.5)), "colour"),
                         (dict(colour=(1.0, 0.5)), "colour"),
                         (dict(channels=2, colour=(0.0, 0.0)), "colour"),
                         (dict(channels=2, colour=(1.0, float("nan"))), "colour[1]"),
                         (dict(channels=3, colour="rgb"), "colour")):
        with pytest.raises(ValueError, match=rf"^{re.escape(name)} must be"):
            GratingSpec(**fields)


# ---- bad input: angles and frequencies (issue 14) -----------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_finite_angles_are_refused_in_every_form(bad, dtype):
    for angles in (torch.tensor([0.1, bad], dtype=dtype), torch.tensor(bad, dtype=dtype),
                   [0.1, bad], np.array([bad]), bad):
        with pytest.raises(ValueError, match="^angles must be finite"):
            render(angles, SMALL)
        with pytest.raises(ValueError, match="^angles must be finite"):
            render_clean(angles, SMALL)
    # finite tensors still render under forward-mode autodiff and with autograd
    theta = torch.tensor([0.3], dtype=dtype, requires_grad=True)
    render_clean(theta, SMALL).sum().backward()
    assert torch.isfinite(theta.grad).all()


def test_frequency_is_bounded_by_the_nyquist_limit():
    assert GratingSpec(size=16, frequency=8.0).frequency == 8.0  # P/2 itself is allowed
    for size, freq in ((16, 8.01), (32, 1e308), (101, 51.0)):
        with pytest.raises(ValueError, match=r"^frequency must be <= size/2") as err:
            GratingSpec(size=size, frequency=freq)
        assert repr(freq) in str(err.value)
    # a spec shrunk below its frequency's Nyquist size is refused too
    with pytest.raises(ValueError, match="^frequency"):
        GratingSpec(size=32, frequency=10.0).replace(size=16)
    spec = GratingSpec(size=16, frequency=3.0)
    assert torch.isfinite(render([0.2, 0.4], spec, frequencies=[8.0, 2.0])).all()
    for freqs in ([3.0, 8.5], [1e308, 3.0]):
        with pytest.raises(ValueError, match=r"^frequencies must be finite and > 0 and <= 8"):
            render([0.2, 0.4], spec, frequencies=freqs)


def test_render_names_a_bad_generator_dtype_or_noise_flag():
    for bad in ("seed", 0, np.random.default_rng(0)):
        with pytest.raises(ValueError, match="^generator must be None or a torch.Generator"):
            render([0.1], SMALL, bad)
    for bad in ("float32", torch.int64, np.float64):
        with pytest.raises(ValueError, match="^dtype must be None or a floating torch dtype"):
            render([0.1], SMALL, dtype=bad)
        with pytest.raises(ValueError, match="^dtype must be"):
            render_clean([0.1], SMALL, dtype=bad)
    with pytest.raises(ValueError, match="^noise must be True or False"):
        render([0.1], SMALL, noise="no")
    with pytest.raises(ValueError, match="^spec must be a GratingSpec"):
        render_clean([0.1], "standard")


def test_standard_preset_is_the_studies_stimulus():
    spec = GratingSpec.standard()
    assert (spec.size, spec.frequency, spec.phase, spec.aperture, spec.noise_std) == \
        (32, 4.0, 0.0, 0.9, 1.0)
    assert spec.gaussian_noise_only and not spec.mask_after_noise
    assert spec.channels == 1 and spec.replace(channels=3).image_shape == (3, 32, 32)
    assert GratingSpec.from_config(spec.to_config()) == spec


@pytest.mark.parametrize("name, make", [
    ("size", lambda: GratingSpec(size=32.0)),
    ("frequency", lambda: GratingSpec(frequency=20)),
    ("phase", lambda: GratingSpec(phase="x")),
    ("aperture", lambda: GratingSpec(aperture=0)),
    ("noise_prob", lambda: GratingSpec(noise_prob=2)),
    ("clamp", lambda: GratingSpec(clamp=(1, 0))),
    ("mask_after_noise", lambda: GratingSpec(mask_after_noise="x")),
    ("colour", lambda: GratingSpec(colour=(1, 1))),
    ("cfg", lambda: GratingSpec.from_config(3)),
    ("angles", lambda: render("x", GratingSpec())),
    ("spec", lambda: render([0.1], "x")),
    ("inplace", lambda: render([0.1], GratingSpec(), inplace=1)),
    ("spec", lambda: render_clean([0.1], "x")),
])
def test_bad_stimulus_arguments_get_one_line_naming_them(name, make):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name} must be "), message
    assert ", got " in message


def test_unknown_fields_are_named_with_the_fields_there_are():
    with pytest.raises(ValueError, match=r"^GratingSpec.replace: unknown parameter\(s\) "
                                         r"\['sise'\]; the parameters are \['aperture'"):
        GratingSpec().replace(sise=3)
    with pytest.raises(ValueError, match=r"^GratingSpec.from_config: unknown parameter"):
        GratingSpec.from_config({"sise": 3})
