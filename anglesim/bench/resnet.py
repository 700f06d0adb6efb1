"""The ResNet-18-shaped network the benchmark's ``resnet`` section measures (:mod:`._resnet_rows`).

The network people measure (Benjamin et al. 2022 measured torchvision ResNets) is larger than
anglesim's CNNs; this is :class:`anglesim.models.ResNet` with torchvision's layer names: a
stride-2 7×7 stem convolution with batch norm, ReLU and a 3×3 stride-2 max-pool; four stages of
two BasicBlocks each (He et al. 2016, "Deep residual learning for image recognition", CVPR: two
3×3 convolutions with batch norm, the input added back, through a 1×1 stride-2 projection where
the shape changes) with 64, 128, 256 and 512 channels; global average pooling and a 2-unit
readout of (cos 2θ, sin 2θ). Untrained, its weights initialised deterministically from the
named seed stream ``"init"`` (He-normal convolutions, fan-out, as torchvision does; batch norm
at identity in eval mode), on 3-channel grey gratings.
"""

from __future__ import annotations

from torch import nn

from ..models import build_model
from ..seeding import torch_generator

STAGES = ("layer1", "layer2", "layer3", "layer4")
LAYERS = ("maxpool", *STAGES, "output")
"""The layers timed: the stem (its last module, ``maxpool``), the four stages and the decoded
output."""


def resnet_model(width: int, seed: int = 0) -> nn.Module:
    """The ResNet-18-shaped network of :mod:`anglesim.models` with ``width`` channels in its
    first stage (64 is ResNet-18's), 3 input channels and the (cos 2θ, sin 2θ) readout,
    initialised from the named stream ``"init"`` of ``seed``, in eval mode."""
    config = {"kind": "resnet18", "in_channels": 3, "width": width / 64, "readout": "cossin"}
    return build_model(config, generator=torch_generator(seed, "init")).eval()
