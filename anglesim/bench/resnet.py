"""A ResNet-18-shaped network for the benchmark's ``resnet`` section (:mod:`._resnet_rows`).

The network people measure (Benjamin et al. 2022 measured torchvision ResNets) is larger than
anglesim's CNNs; it has that shape: a stride-2 7×7 stem convolution with batch norm, ReLU
and a 3×3 stride-2 max-pool; four stages of two BasicBlocks each (He et al. 2016, "Deep residual
learning for image recognition", CVPR: two 3×3 convolutions with batch norm, the input added
back, through a 1×1 stride-2 projection where the shape changes) with 64, 128, 256 and 512
channels; global average pooling and a 2-unit readout of (cos 2θ, sin 2θ). Untrained, its
weights initialised deterministically from the named seed stream ``"init"`` (He-normal
convolutions, fan-out, as torchvision does; batch norm at identity in eval mode), on 3-channel
grey gratings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import decode
from ..seeding import torch_generator

STAGES = ("layer1", "layer2", "layer3", "layer4")


class BasicBlock(nn.Module):
    """y = relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x)); the shortcut is the
    identity, or a 1×1 convolution with batch norm where stride or width change."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + skip)


class ResNet18Shaped(nn.Module):
    """A ResNet-18-shaped network ([2, 2, 2, 2] BasicBlocks) with a (cos 2θ, sin 2θ) readout.

    Children ``stem``, ``layer1`` … ``layer4`` and ``head`` (pool and linear readout), so their
    ``named_modules()`` paths are the block names; it also has the block protocol anglesim's
    estimators use (``block_names``, ``run_blocks``, ``decode``). Purely functional (no in-place
    ops), so it works under torch.func.
    """

    readout = "cossin"

    def __init__(self, in_channels: int = 3, width: int = 64, seed: int = 0) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths = (w, 2 * w, 4 * w, 8 * w)
        c_in = w
        for k, (name, c_out) in enumerate(zip(STAGES, widths, strict=True)):
            stride = 1 if k == 0 else 2
            setattr(self, name, nn.Sequential(BasicBlock(c_in, c_out, stride),
                                              BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 2))
        self.block_names = ("stem", *STAGES, "head")
        gen = torch_generator(seed, "init")
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu",
                                            generator=gen)
                elif isinstance(m, nn.Linear):
                    bound = 1 / math.sqrt(m.in_features)
                    nn.init.uniform_(m.weight, -bound, bound, generator=gen)
                    nn.init.zeros_(m.bias)
        self.eval()

    @property
    def blocks(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.block_names}

    def run_blocks(self, h: torch.Tensor, start: str | None = None,
                   stop: str | None = None) -> torch.Tensor:
        """Apply blocks ``start`` … ``stop`` (inclusive; defaults: first and last) to ``h``."""
        names = list(self.block_names)
        first = 0 if start is None else names.index(start)
        last = len(names) - 1 if stop is None else names.index(stop)
        for name in names[first:last + 1]:
            h = getattr(self, name)(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(x)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """θ̂ = atan2(s, c)/2 mod π from the (c, s) readout."""
        return decode(output, "cossin")
