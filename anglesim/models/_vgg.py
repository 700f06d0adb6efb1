"""VGG- (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image
recognition", ICLR) and AlexNet-shaped networks (Krizhevsky 2014, "One weird trick for
parallelizing convolutional neural networks", arXiv:1404.5997, the variant torchvision
ships) with torchvision's module names: ``features`` (a Sequential of convolutions, ReLUs and
max-pools, indexed as torchvision indexes it: ``features.0`` is the first convolution),
``avgpool`` (adaptive average pooling to 7 × 7 for VGG, 6 × 6 for AlexNet, which repeats a
smaller map's values, so 32 px images work) and ``classifier`` (three Linear layers with ReLU
and dropout between them).
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

__all__ = ["VGG", "AlexNet"]

LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
}
"""Convolution widths (3 × 3, padding 1) and 2 × 2 max-pools ("M"): VGG's configurations A
(11 weight layers) and D (16)."""

ALEXNET_SMALL = 63
"""Below this image side torchvision's AlexNet has no output (its third 3 × 3 max-pool sees
a map smaller than its window); there the max-pools pad by one pixel."""


class VGG(Architecture):
    """A VGG-11- or VGG-16-shaped network, with batch norm after each convolution for the
    ``_bn`` kinds.

    Initialised as torchvision does: convolutions He-normal with fan-out and zero bias, batch
    norm at γ = 1, β = 0, Linear weights N(0, 0.01²) with zero bias.
    """

    def __init__(self, config: ArchitectureConfig, generator: torch.Generator | None = None,
                 device: Any = None) -> None:
        super().__init__(config)
        w = config.width
        batch_norm = config.kind.endswith("_bn")
        with self.layers_on_meta():
            layers: list[nn.Module] = []
            c_in = config.in_channels
            for item in LAYOUTS[config.kind.removesuffix("_bn")]:
                if item == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                    continue
                c_out = scaled(int(item), w)
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU())
                c_in = c_out
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            hidden = scaled(4096, w)
            self.classifier = nn.Sequential(
                nn.Linear(c_in * 7 * 7, hidden), nn.ReLU(), nn.Dropout(config.dropout),
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(config.dropout),
                nn.Linear(hidden, config.num_classes))
        self.finish(generator, device)

    def initialise(self, generator: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                he_normal_fan_out(m.weight, generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                reset_batch_norm(m)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNet(Architecture):
    """An AlexNet-shaped network: convolutions 11 × 11 stride 4 (64), 5 × 5 (192), 3 × 3 (384,
    256, 256) with 3 × 3 stride-2 max-pools after the first, second and fifth; a classifier
    of dropout, 4096, dropout, 4096 and the output.

    Initialised as torchvision's (PyTorch's defaults): weights and biases of every convolution
    and Linear layer U(±1/√fan_in).
    """

    def __init__(self, config: ArchitectureConfig, generator: torch.Generator | None = None,
                 device: Any = None) -> None:
        super().__init__(config)
        w = config.width
        pad = 1 if config.image_size < ALEXNET_SMALL else 0
        c1, c2, c3, c4, c5 = (scaled(c, w) for c in (64, 192, 384, 256, 256))
        with self.layers_on_meta():
            self.features = nn.Sequential(
                nn.Conv2d(config.in_channels, c1, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2, pad),
                nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, pad),
                nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
                nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
                nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, pad))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            hidden = scaled(4096, w)
            self.classifier = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(c5 * 6 * 6, hidden), nn.ReLU(),
                nn.Dropout(config.dropout), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, config.num_classes))
        self.finish(generator, device)

    def initialise(self, generator: torch.Generator | None) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                uniform_fan_in(m.weight, fan_in, generator)
                uniform_fan_in(m.bias, fan_in, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
