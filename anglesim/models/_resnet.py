"""ResNet-18- and ResNet-34-shaped networks (He et al. 2016, "Deep residual learning for image
recognition", CVPR) with torchvision's module names.

``conv1`` (7 × 7, stride 2, no bias), ``bn1``, ``relu``, ``maxpool`` (3 × 3, stride 2, padding
1); stages ``layer1`` … ``layer4`` of BasicBlocks ([2, 2, 2, 2] for ResNet-18, [3, 4, 6, 3] for
ResNet-34) with 64, 128, 256 and 512 channels (times ``width``), the first block of stages 2–4
with stride 2; ``avgpool`` (global average, so any image size from 16 px works) and ``fc``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._architectures import (
    Architecture,
    ArchitectureConfig,
    he_normal_fan_out,
    reset_batch_norm,
    scaled,
    uniform_fan_in,
)

__all__ = ["BasicBlock", "ResNet"]

BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
"""BasicBlocks per stage."""


class BasicBlock(nn.Module):
    """y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) with 3 × 3 convolutions; the
    shortcut is the identity, or ``downsample`` (a 1 × 1 convolution and batch norm) where the
    stride or the width changes. One ``relu`` module is applied twice, as in torchvision (a
    hook on it sees the block's output last). Nothing is modified in place, so the block runs
    under ``torch.func``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(y + skip)


class ResNet(Architecture):
    """A ResNet-18- or -34-shaped network (``config.kind`` "resnet18" or "resnet34").

    Initialised as torchvision does: convolutions He-normal with fan-out, batch norm at
    γ = 1, β = 0; ``fc`` weights U(±1/√fan_in) (PyTorch's default) with a zero bias.
    """

    def __init__(self, config: ArchitectureConfig, generator: torch.Generator | None = None,
                 device: Any = None) -> None:
        super().__init__(config)
        w = config.width
        with self.layers_on_meta():
            c = scaled(64, w)
            self.conv1 = nn.Conv2d(config.in_channels, c, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            c_in = c
            for k, n_blocks in enumerate(BLOCKS[config.kind]):
                c_out = scaled(64 * 2**k, w)
                blocks = [BasicBlock(c_in, c_out, 1 if k == 0 else 2)]
                blocks += [BasicBlock(c_out, c_out, 1) for _ in range(n_blocks - 1)]
                setattr(self, f"layer{k + 1}", nn.Sequential(*blocks))
                c_in = c_out
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(c_in, config.num_classes)
        self.finish(generator, device)

    def initialise(self, generator: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                he_normal_fan_out(m.weight, generator)
            elif isinstance(m, nn.BatchNorm2d):
                reset_batch_norm(m)
            elif isinstance(m, nn.Linear):
                uniform_fan_in(m.weight, m.in_features, generator)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
