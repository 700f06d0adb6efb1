"""Input-level corruptions: exact where the spec has the parameter, closed forms for the blur."""

import math

import numpy as np
import pytest
import torch
from torch.func import jvp

from anglesim.corruptions import CorruptedSpec, corrupt, gaussian_blur, gaussian_kernel
from anglesim.fisher import propagated_fisher
from anglesim.models import reference_mlp
from anglesim.stimuli import GratingSpec, render, render_clean

SPEC = GratingSpec(size=32, frequency=4.0, phase=0.0, noise_std=1.0)
THETA = torch.tensor([0.0, 0.4, 1.3, 2.8])


def test_contrast_noise_and_invert_are_the_specs_own_fields():
    assert corrupt(SPEC, "contrast", 0.5) == SPEC.replace(contrast=0.5)
    assert corrupt(SPEC, "noise", 2.0) == SPEC.replace(noise_std=2.0)
    inv = corrupt(SPEC, "invert")
    assert type(inv) is GratingSpec and inv.phase == pytest.approx(math.pi)
    torch.testing.assert_close(render_clean(THETA, inv), -render_clean(THETA, SPEC),
                               atol=1e-5, rtol=0)
    # with noise the same generator gives the negated clean image plus the same noise
    a = render(THETA, inv, torch.Generator().manual_seed(0))
    b = render(THETA, SPEC, torch.Generator().manual_seed(0))
    noise = b - render_clean(THETA, SPEC)
    torch.testing.assert_close(a, -render_clean(THETA, SPEC) + noise, atol=1e-5, rtol=0)


def test_invert_with_random_phase_negates_the_clean_image():
    spec = SPEC.replace(phase=None)
    inv = corrupt(spec, "invert")
    assert isinstance(inv, CorruptedSpec) and inv.invert
    a = render(THETA, inv, torch.Generator().manual_seed(3), noise=False)
    b = render(THETA, spec, torch.Generator().manual_seed(3), noise=False)
    torch.testing.assert_close(a, -b)
    assert not corrupt(inv, "invert").invert  # twice is the identity


@pytest.mark.parametrize("sigma", [0.5, 1.5, 3.0])
def test_kernel_is_normalised_and_the_blur_keeps_constants(sigma):
    k = gaussian_kernel(sigma, torch.float64)
    assert k.shape[-1] == 2 * max(1, math.ceil(3 * sigma)) + 1
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-12)
    img = torch.ones(2, 1, 24, 24, dtype=torch.float64)
    r = k.shape[-1] // 2
    torch.testing.assert_close(gaussian_blur(img, sigma)[..., r:-r, r:-r],
                               img[..., r:-r, r:-r])


@pytest.mark.parametrize("sigma, frequency", [(1.0, 4.0), (1.5, 4.0), (1.0, 8.0)])
def test_blur_attenuates_a_grating_by_the_closed_form(sigma, frequency):
    """Away from the border a grating of wavelength λ px keeps exp(−2π²σ²/λ²) of its amplitude
    (the continuous Gaussian's transfer, to the small aliasing of the sampled kernel)."""
    size = 64
    spec = GratingSpec(size=size, frequency=frequency, phase=0.0, aperture=None)
    blurred = corrupt(spec, "blur", sigma)
    img, out = render_clean(THETA, spec).double(), render_clean(THETA, blurred).double()
    r = math.ceil(3 * sigma)
    inner = (slice(None), slice(None), slice(r, -r), slice(r, -r))
    ratio = (out[inner] * img[inner]).sum() / (img[inner] ** 2).sum()
    wavelength = (size - 1) / frequency  # pixel spacing 2·extent/(P − 1)
    assert float(ratio) == pytest.approx(math.exp(-2 * math.pi**2 * sigma**2 / wavelength**2),
                                         rel=2e-3)


def test_blurred_spec_renders_noise_after_the_blur_and_is_differentiable():
    blurred = corrupt(SPEC, "blur", 1.2)
    noisy = render(THETA, blurred, torch.Generator().manual_seed(5))
    clean = render(THETA, blurred, noise=False)
    ref = render(THETA, SPEC, torch.Generator().manual_seed(5)) - render(THETA, SPEC, noise=False)
    torch.testing.assert_close(noisy - clean, ref, atol=1e-5, rtol=0)  # white noise, same draws
    inplace = render(THETA, blurred, torch.Generator().manual_seed(5), inplace=True)
    torch.testing.assert_close(inplace, noisy)
    t = THETA.double()
    _, xdot = jvp(lambda a: render_clean(a, blurred), (t,), (torch.ones_like(t),))
    h = 1e-6
    fd = (render_clean(t + h, blurred) - render_clean(t - h, blurred)) / (2 * h)
    torch.testing.assert_close(xdot, fd, atol=1e-6, rtol=1e-6)


def test_blur_and_contrast_lower_the_propagated_input_fisher():
    torch.manual_seed(0)
    net = reference_mlp(image_size=32, hidden=(16, 8))
    theta = np.array([0.3, 1.2])
    base = propagated_fisher(net, SPEC, theta, ["input"]).values
    for spec, expected in ((corrupt(SPEC, "contrast", 0.5), 0.25), (corrupt(SPEC, "noise", 2.0),
                                                                   0.25)):
        np.testing.assert_allclose(propagated_fisher(net, spec, theta, ["input"]).values,
                                   expected * base, rtol=1e-5)
    blurred = propagated_fisher(net, corrupt(SPEC, "blur", 1.5), theta, ["input"]).values
    assert (blurred < 0.6 * base).all() and (blurred > 0).all()


def test_bad_corruptions_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        corrupt(SPEC, "fog", 1.0)
    with pytest.raises(ValueError, match="level must be"):
        corrupt(SPEC, "blur", 0.0)
    with pytest.raises(ValueError, match="level must be None"):
        corrupt(SPEC, "invert", 2.0)
    with pytest.raises(ValueError, match="blur must be"):
        CorruptedSpec(blur=-1.0)
    with pytest.raises(ValueError, match="spec must be a GratingSpec"):
        corrupt("spec", "blur", 1.0)
