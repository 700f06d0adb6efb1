"""Tied max-pool windows: exact counts on designed inputs, and toy networks with and without
ties under the spec's noise."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from pool_tie_nets import spec, toy
from torch import nn

from anglesim.models import CNNConfig, build_model
from anglesim.pool_ties import (
    PoolTieWarning,
    TieCount,
    count_pool_ties,
    pool_windows,
    ties_attrs,
    warn_pool_ties,
)
from anglesim.stimuli import GratingSpec

GENERIC = (0.3, 1.1, 1.9, 2.7)  # no symmetry of the square pixel grid


def test_counts_on_a_designed_input():
    x = torch.tensor([[1., 1., 0., 0.],
                      [0., 0., 0., 0.],
                      [1., 2., 5., 5.],
                      [3., 4., 5., 1.]]).reshape(1, 1, 4, 4)
    counts = count_pool_ties(nn.Sequential(nn.MaxPool2d(2)), x)
    assert counts == {"0": TieCount(windows=4, tied=3, tied_nonzero=2, tied_noisy=None)}
    near = x.clone()
    near[0, 0, 0, 1] = 1 - 1e-4
    assert count_pool_ties(nn.Sequential(nn.MaxPool2d(2)), near)["0"].tied == 2
    assert count_pool_ties(nn.Sequential(nn.MaxPool2d(2)), near, atol=1e-3)["0"].tied == 3
    # noise on a tied element counts, noise on an element below the maximum does not
    noisy = x.clone()
    noisy[0, 0, 3, 3] += 0.1  # window (5, 5 | 5, 1): the 1 moves, the tie does not
    assert count_pool_ties(nn.Sequential(nn.MaxPool2d(2)), x, noisy)["0"].tied_noisy == 0
    noisy[0, 0, 0, 0] += 0.1  # window (1, 1 | 0, 0): a tied element moves
    assert count_pool_ties(nn.Sequential(nn.MaxPool2d(2)), x, noisy)["0"].tied_noisy == 1


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(2), nn.MaxPool2d(3, 1, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    nn.MaxPool2d((2, 3), (2, 1)), nn.MaxPool2d(2, dilation=2),
])
def test_windows_are_the_pool_windows(pool):
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    cols = pool_windows(pool, x)
    out = pool(x)
    assert cols.shape[:2] == (2, 3) and cols.shape[-1] == out.shape[-2] * out.shape[-1]
    torch.testing.assert_close(cols.amax(2), out.reshape(2, 3, -1), rtol=0, atol=0)


def test_toy_network_with_ties_under_the_default_noise_warns():
    net = toy(bias=0.5)  # ReLU(0.5 + 0) outside the aperture: four equal non-zero units
    with pytest.warns(PoolTieWarning, match=r"blocks\.conv\.2.*mask_after_noise=True"):
        counts = warn_pool_ties(net, spec(), GENERIC)
    c = counts["blocks.conv.2"]
    assert c.windows == 4 * 2 * 8 * 8
    assert 0 < c.tied_nonzero == c.tied_noisy <= c.tied
    attrs = ties_attrs(counts)
    assert attrs["pool_ties_noisy"] == c.tied_noisy
    assert attrs["pool_ties_blocks_conv_2"].startswith(f"{c.tied}/{c.windows} tied")


def test_masking_the_noise_with_the_aperture_removes_the_ties_that_matter():
    net = toy(bias=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolTieWarning)
        c = warn_pool_ties(net, spec(mask_after_noise=True), GENERIC)["blocks.conv.2"]
    assert c.tied_nonzero > 0 and c.tied_noisy == 0  # still tied, but no noise reaches them


def test_no_ties_at_non_zero_values_without_a_positive_bias():
    net = toy(bias=-0.5)  # outside the aperture every unit is ReLU(−0.5) = 0: tied at zero
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolTieWarning)
        c = warn_pool_ties(net, spec(), GENERIC)["blocks.conv.2"]
    assert c.tied > 0 and c.tied_nonzero == 0 and c.tied_noisy == 0
    no_aperture = warn_pool_ties(net, spec(aperture=None), GENERIC)["blocks.conv.2"]
    assert no_aperture.tied_nonzero == 0


def test_default_cnn_counts_and_models_without_pools():
    torch.manual_seed(0)  # build_model draws its initial weights from the global generator
    net = build_model(CNNConfig(image_size=16, channels=(4,), fc_units=8))
    with pytest.warns(PoolTieWarning):
        counts = warn_pool_ties(net, GratingSpec(size=16, noise_std=0.5), [0.3])
    assert list(counts) == ["blocks.conv1.2"] and counts["blocks.conv1.2"].windows == 4 * 64
    flat = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    assert count_pool_ties(flat, torch.zeros(1, 1, 4, 4)) == {}


@pytest.mark.parametrize("call, name", [
    (lambda: count_pool_ties(nn.Sequential(), torch.zeros(4, 4)), "images"),
    (lambda: count_pool_ties(nn.Sequential(), torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4)),
     "noisy"),
    (lambda: count_pool_ties(nn.Sequential(), torch.zeros(1, 1, 4, 4), atol=-1), "atol"),
    (lambda: count_pool_ties("cnn", torch.zeros(1, 1, 4, 4)), "model"),
    (lambda: warn_pool_ties(toy(0.5), spec(), [math.nan]), "angles"),
])
def test_bad_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


def test_windows_shape_matches_functional_pool():
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    pool = nn.MaxPool2d(2)
    assert pool_windows(pool, x).shape == (1, 2, 4, 9)
    assert torch.equal(pool_windows(pool, x).amax(2).reshape(1, 2, 3, 3), F.max_pool2d(x, 2))
