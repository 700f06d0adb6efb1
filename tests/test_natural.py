"""Natural-image patches (anglesim.stimuli.NaturalPatches) and their orientation energy:
the photographs come only from scikit-image's installed package, the split never shares a
photograph, draws are deterministic given the generator, rotations follow the gratings'
convention, and rotating the patches by φ moves the measured spectrum's cos 2θ and cos 4θ
phases by φ."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")

from anglesim.stimuli import (  # noqa: E402
    PHOTOGRAPHS,
    GratingSpec,
    NaturalPatches,
    load_photograph,
    orientation_energy,
    orientation_harmonic,
    photograph_directory,
    render,
    rotate,
)

ROOT = Path(__file__).resolve().parents[1]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def wrapped(x: float, period: float) -> float:
    """x in (−period/2, period/2]."""
    return (x + period / 2) % period - period / 2


# ---- the photographs -------------------------------------------------------------------------


def test_every_photograph_is_a_file_inside_the_installed_package():
    import skimage

    folder = photograph_directory()
    assert folder == Path(skimage.__file__).parent / "data"
    for name, file in PHOTOGRAPHS.items():
        assert (folder / file).is_file(), name
    camera = load_photograph("camera")
    assert camera.shape == (1, 512, 512) and camera.dtype == np.float32
    assert 0.0 <= camera.min() < camera.max() <= 1.0
    colour = load_photograph("chelsea", colour=True)
    assert colour.shape == (3, 300, 451)
    grey = load_photograph("chelsea")
    np.testing.assert_allclose(grey[0], np.tensordot([0.2125, 0.7154, 0.0721], colour, 1),
                               atol=1e-6)


def test_nothing_is_downloaded():
    """A fresh process where every network call and pooch fail still draws patches."""
    code = textwrap.dedent("""
        import socket, sys, urllib.request
        def refuse(*args, **kwargs):
            raise AssertionError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        urllib.request.urlopen = refuse
        sys.modules["pooch"] = None  # import pooch raises ImportError
        import torch
        from anglesim.stimuli import NaturalPatches
        batch = NaturalPatches(colour=True).draw(16, torch.Generator().manual_seed(0),
                                                 rotation=0.3)
        assert batch.images.shape == (16, 3, 32, 32)
        assert set(batch.labels.tolist()) <= set(range(11))
        print("ok")
    """)
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ---- drawing ---------------------------------------------------------------------------------


def test_patches_are_deterministic_given_the_generator():
    patches = NaturalPatches(size=24)
    state = torch.get_rng_state()
    a = patches.draw(32, gen(4), rotation=0.7)
    b = patches.draw(32, gen(4), rotation=0.7)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = patches.draw(32, gen(5), rotation=0.7)
    assert not torch.equal(a.images, c.images)
    # the same photographs and positions whatever the rotation
    d = patches.draw(32, gen(4), rotation=0.0)
    assert torch.equal(a.labels, d.labels) and not torch.equal(a.images, d.images)
    assert torch.equal(a.rotations, torch.full((32,), 0.7, dtype=torch.float64))
    # a fresh dataset of the same fields draws the same patches
    assert torch.equal(NaturalPatches(size=24).draw(32, gen(4), rotation=0.7).images, a.images)


def test_patches_are_standardised_behind_the_aperture():
    patches = NaturalPatches(size=32, aperture=0.9, aperture_edge=0.1)
    mask = patches.aperture_mask()
    images = patches.draw(64, gen(0), rotation=torch.linspace(0, 3, 64)).images
    assert images.shape == (64, 1, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images * (mask == 0), torch.zeros_like(images))
    # x = m·(p − μ)/σ with μ, σ weighted by the mask m: Σ m x = 0, Σ x² = Σ m (mask values ≤ 1
    # make Σ x² = Σ m² (p − μ)²/σ² ≤ Σ m; equal for a hard mask)
    assert images.sum(dim=(1, 2, 3)).abs().max() < 1e-3 * mask.sum()
    hard = NaturalPatches(size=32, aperture=0.9, aperture_edge=0.0)
    x = hard.draw(16, gen(1), rotation=0.4).images
    np.testing.assert_allclose((x * x).sum(dim=(1, 2, 3)).numpy(),
                               float(hard.aperture_mask().sum()), rtol=1e-4)


def test_grey_patches_are_the_luminance_of_colour_ones():
    kwargs = dict(size=20, standardise=False, aperture=None)
    grey = NaturalPatches(**kwargs).draw(12, gen(2), rotation=0.5)
    colour = NaturalPatches(colour=True, **kwargs).draw(12, gen(2), rotation=0.5)
    assert colour.images.shape == (12, 3, 20, 20)
    weights = torch.tensor([0.2125, 0.7154, 0.0721])[None, :, None, None]
    torch.testing.assert_close(grey.images, (colour.images * weights).sum(1, keepdim=True),
                               atol=1e-5, rtol=0)
    assert 0.0 <= float(grey.images.min()) and float(grey.images.max()) <= 1.0


def test_a_quarter_turn_is_rot90_and_no_turn_copies_pixels():
    patches = NaturalPatches(size=16, standardise=False, aperture=None)
    still = patches.draw(8, gen(3)).images
    quarter = patches.draw(8, gen(3), rotation=math.pi / 2).images
    # rotated patches are sampled at float32 positions in an atlas some 2500 pixels wide:
    # ~1e-4 pixel off, so pixel values in [0, 1] agree to ~1e-4
    torch.testing.assert_close(quarter, torch.rot90(still, 1, dims=(-2, -1)), atol=3e-4,
                               rtol=0)
    tiny = patches.draw(8, gen(3), rotation=torch.full((8,), 1e-9)).images
    torch.testing.assert_close(tiny, still, atol=3e-4, rtol=0)
    assert float((quarter - torch.rot90(still, 2, dims=(-2, -1))).abs().max()) > 0.1


def test_rotating_a_grating_gives_the_grating_at_the_sum_of_the_angles():
    spec = GratingSpec(size=48, frequency=3.0, aperture=None)
    inner = GratingSpec(size=48, aperture=0.7, aperture_edge=0.0).aperture_mask()
    for theta, phi in [(0.3, 0.5), (1.2, -0.9), (2.9, 2.0)]:
        turned = rotate(render(torch.tensor([theta]), spec), phi)
        expected = render(torch.tensor([theta + phi]), spec)
        assert float(((turned - expected) * inner).abs().max()) < 0.03


def test_split_never_shares_a_photograph():
    patches = NaturalPatches()
    for seed in range(5):
        train, test = patches.split(3, np.random.default_rng(seed))
        assert len(test.photographs) == 3 and not set(train.photographs) & set(test.photographs)
        assert set(train.photographs) | set(test.photographs) == set(patches.photographs)
        batch = test.draw(64, gen(seed))
        drawn = {test.photographs[i] for i in batch.labels.tolist()}
        assert drawn <= set(test.photographs)
    train, test = patches.split(["camera", "grass"])
    assert test.photographs == ("camera", "grass") and "camera" not in train.photographs
    one, other = patches.split(4, np.random.default_rng(0))
    again, _ = patches.split(4, np.random.default_rng(0))
    assert one == again and one.size == patches.size


@pytest.mark.parametrize("make, match", [
    (lambda: NaturalPatches(size=7), "size"),
    (lambda: NaturalPatches(size=400), "size"),
    (lambda: NaturalPatches(photographs=["camera", "nope"]), "photographs"),
    (lambda: NaturalPatches(photographs="camera"), "photographs"),
    (lambda: NaturalPatches(scale=0.0), "scale"),
    (lambda: NaturalPatches(scale=1.5), "scale"),
    (lambda: NaturalPatches(interpolation="nearest"), "interpolation"),
    (lambda: NaturalPatches(aperture=-1.0), "aperture"),
    (lambda: NaturalPatches(colour=1), "colour"),
    (lambda: NaturalPatches().draw(0), "n"),
    (lambda: NaturalPatches().draw(4, rotation=[0.1, 0.2]), "rotation"),
    (lambda: NaturalPatches().draw(4, rotation=math.nan), "rotation"),
    (lambda: NaturalPatches().draw(4, generator=3), "generator"),
    (lambda: NaturalPatches().split(11, np.random.default_rng(0)), "test"),
    (lambda: NaturalPatches().split(2), "generator"),
    (lambda: NaturalPatches(photographs=["camera", "moon"]).split(["grass"]), "test"),
    (lambda: orientation_energy(torch.zeros(2, 1, 8, 8), band=(0.3, 0.2)), "band"),
    (lambda: orientation_energy(torch.zeros(2, 1, 8, 8), band=(0.1, 0.6)), "band"),
    (lambda: orientation_energy(torch.zeros(2, 8, 8)), "images"),
    (lambda: orientation_harmonic(np.ones(36), 3), "order"),
])
def test_bad_inputs_name_the_parameter(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_config_round_trip_and_float64():
    patches = NaturalPatches(size=20, colour=True, scale=0.25, photographs=["moon", "coins"])
    assert NaturalPatches(**patches.to_config()) == patches
    batch = patches.draw(3, gen(0), dtype=torch.float64, device="cpu")
    assert batch.images.dtype == torch.float64 and batch.images.shape == (3, 3, 20, 20)


# ---- orientation energy ----------------------------------------------------------------------


def test_a_grating_has_its_energy_at_its_orientation():
    spec = GratingSpec(size=32, frequency=6.0, aperture=1.0)
    for theta in (0.0, 0.4, 1.2, 2.5):
        energy = orientation_energy(render(torch.tensor([theta]), spec), n_angles=24)
        assert energy.dims == ("angle",) and energy.sizes["angle"] == 24
        assert energy.attrs["units"] == "rad^-1" and energy.angle.attrs["units"] == "rad"
        assert float(energy.sum()) * math.pi / 24 == pytest.approx(1.0)
        amplitude, angle = orientation_harmonic(energy, 2)
        assert abs(wrapped(angle - theta, math.pi)) < 0.02 and amplitude > 1.5
    # a mask windows the image: the same peak
    masked = orientation_energy(render(torch.tensor([1.0]), spec.replace(aperture=None)),
                                mask=spec.aperture_mask())
    assert abs(wrapped(orientation_harmonic(masked, 2)[1] - 1.0, math.pi)) < 0.02


def test_natural_patches_have_cardinal_energy():
    """The cardinal excess of natural images' orientation energy (Switkes et al. 1978)."""
    energy = orientation_energy(NaturalPatches().draw(1000, gen(0)).images)
    amplitude, angle = orientation_harmonic(energy, 4)
    assert amplitude > 0.1 and abs(wrapped(angle, math.pi / 2)) < 0.1


@pytest.mark.parametrize("phi", [math.pi / 8, math.pi / 4, 1.0])
def test_rotating_the_patches_moves_the_spectrum_phases_by_the_rotation(phi):
    patches = NaturalPatches()
    still = orientation_energy(patches.draw(1000, gen(1)).images)
    turned = orientation_energy(patches.draw(1000, gen(1), rotation=phi).images)
    for order in (2, 4):
        a0, mu0 = orientation_harmonic(still, order)
        a1, mu1 = orientation_harmonic(turned, order)
        assert abs(wrapped(mu1 - mu0 - phi, 2 * math.pi / order)) < 0.03, order
        assert a1 == pytest.approx(a0, rel=0.25)
