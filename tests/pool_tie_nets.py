"""The toy network and stimulus the pool-tie tests share (tests/test_fisher_ties.py,
tests/test_stats_pool_ties.py)."""

import torch
from torch import nn

from anglesim.models import AngleNet
from anglesim.stimuli import GratingSpec


def toy(bias, channels=2, size=16, seed=0):
    """conv 3×3 (constant bias) → ReLU → 2×2 max-pool → linear head, float64."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(1, channels, 3, padding=1)
    blocks = {"conv": nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2)),
              "head": nn.Sequential(nn.Flatten(), nn.Linear(channels * (size // 2) ** 2, 2))}
    net = AngleNet(blocks, "cossin", 36, {"kind": "cnn"}).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        conv.bias.fill_(bias)
    return net


def spec(**kw):
    base = dict(size=16, frequency=2.0, aperture=0.7, aperture_edge=0.1, noise_std=1e-3)
    base.update(kw)
    return GratingSpec(**base)
