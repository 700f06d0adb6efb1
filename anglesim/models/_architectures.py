"""The field's architectures by name: :class:`ArchitectureConfig`, the shared base
:class:`Architecture` (built by kind in :mod:`._build`).

Each architecture (:mod:`._resnet`, :mod:`._vgg`) has torchvision's module names, so at 3 input
channels, width 1 and 1000 classes its ``state_dict`` keys and shapes are torchvision's and a
saved torchvision/ImageNet ``state_dict`` loads unchanged. The parameters are initialised as
torchvision initialises them (He-normal convolutions with fan-out for ResNet and VGG, He et al.
2015, "Delving deep into rectifiers", ICCV; PyTorch's default uniform initialisation for
AlexNet), drawn from an explicit ``torch.Generator`` when one is given.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import validation as check
from ..readouts import ANGLE_READOUTS, decode, readout_size

__all__ = ["ARCHITECTURES", "Architecture", "ArchitectureConfig", "family", "scaled"]

ARCHITECTURES = ("resnet18", "resnet34", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "alexnet")
"""The architectures ``build_model`` builds by ``kind``."""

MIN_IMAGE_SIZE = {"resnet": 16, "vgg": 32, "alexnet": 16}
"""Smallest image side each family runs at (VGG: five 2 × 2 max-pools)."""


def family(kind: str) -> str:
    """"resnet", "vgg" or "alexnet" for an architecture name."""
    return "resnet" if kind.startswith("resnet") else "vgg" if kind.startswith("vgg") else kind


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at width multiplier ``width``: max(1, round(channels · width))."""
    return max(1, int(round(channels * width)))


CONSTRAINTS: dict[str, check.Constraint] = {
    "kind": check.Choice(ARCHITECTURES),
    "image_size": check.Integer(minimum=1),
    "in_channels": check.Integer(minimum=1),
    "num_classes": check.Optional(check.Integer(minimum=1)),
    "width": check.Real(minimum=0.0, min_open=True),
    "readout": check.Optional(check.Choice(ANGLE_READOUTS)),
    "n_bins": check.Integer(minimum=2),
    "dropout": check.Real(minimum=0.0, maximum=1.0, max_open=True),
}


@dataclass(frozen=True)
class ArchitectureConfig:
    """One of the field's architectures, by name, at a given size.

    Attributes:
        kind: one of :data:`ARCHITECTURES` ("resnet18", "resnet34", "vgg11", "vgg11_bn",
            "vgg16", "vgg16_bn", "alexnet").
        image_size: P, the side of the images it is built for (ResNet and AlexNet from 16 px,
            VGG from 32 px; AlexNet below 63 px pads its three max-pools by one pixel, which
            changes no parameter, since torchvision's AlexNet cannot run there).
        in_channels: 1 (grey) or 3 (RGB), or any other count; only ``conv1`` / ``features.0``
            changes shape.
        num_classes: output units; default 1000 (ImageNet), or the readout's size.
        width: multiplier of every layer's channels and hidden units, round(c · width) (at
            least 1): 0.25 makes a network that trains on a CPU; 1 is torchvision's.
        readout: None (a classifier: ``num_classes`` logits) or an angle readout ("angle",
            "cossin", "bins"): the output is read as an orientation, the model has a
            ``decode(output)`` method like :class:`~anglesim.models.AngleNet`, and
            ``num_classes`` is the readout's size.
        n_bins: bins of the "bins" readout.
        dropout: p of the dropout layers of VGG's and AlexNet's classifiers (torchvision: 0.5).
    """

    kind: str
    image_size: int = 224
    in_channels: int = 3
    num_classes: int | None = None
    width: float = 1.0
    readout: str | None = None
    n_bins: int = 36
    dropout: float = 0.5

    def __post_init__(self) -> None:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in check.validate(fields, CONSTRAINTS).items():
            object.__setattr__(self, name, value)
        least = MIN_IMAGE_SIZE[family(self.kind)]
        if self.image_size < least:
            raise check.fail("image_size", f"at least {least} for {self.kind}", self.image_size)
        if self.readout is not None:
            need = readout_size(self.readout, self.n_bins)
            if self.num_classes not in (None, need):
                raise check.fail("num_classes", f"None or {need} (the size of readout "
                                 f"{self.readout!r})", self.num_classes)
            object.__setattr__(self, "num_classes", need)
        elif self.num_classes is None:
            object.__setattr__(self, "num_classes", 1000)

    def to_config(self) -> dict[str, Any]:
        """JSON-able dict ``{"kind": …, <fields>}``; :meth:`from_config` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ArchitectureConfig:
        """The config of a dict of fields (``kind`` required); unknown keys raise."""
        if not isinstance(cfg, Mapping) or "kind" not in cfg:
            raise check.fail("config", "a mapping with a 'kind' key", cfg)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown {cfg['kind']} config key(s) {unknown}; known: "
                             f"{sorted(names)}")
        return cls(**cfg)


class Architecture(nn.Module):
    """Base of the field's architectures: ``config`` (a JSON-able dict, as
    :attr:`AngleNet.config <anglesim.models.AngleNet.config>`), ``readout`` and, when the
    config has an angle readout, ``decode(output)`` → θ̂ [N] in [0, π). A classifier
    (``readout=None``) has no ``decode``, so the Fisher estimators' "output" is its logits.

    Subclasses create their layers in ``__init__`` inside :meth:`layers_on_meta` and then call
    :meth:`finish`, which allocates them once and initialises every parameter and buffer.
    """

    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.arch = check.instance("config", config, ArchitectureConfig, "an ArchitectureConfig")
        self.readout = config.readout
        self.n_bins = config.n_bins
        if config.readout is not None:
            # an instance attribute, so that only models with an angle readout have one
            self.decode = functools.partial(decode, readout=config.readout,
                                            n_bins=config.n_bins if config.readout == "bins"
                                            else None)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able description (a fresh copy); ``build_model(model.config)`` rebuilds it."""
        return self.arch.to_config()

    @staticmethod
    def layers_on_meta() -> Any:
        """Context in which layers are created without memory or random draws."""
        return torch.device("meta")

    def finish(self, generator: torch.Generator | None, device: Any) -> None:
        """Allocate the layers (on the CPU), initialise them (:meth:`initialise`, drawing from
        ``generator`` or torch's global generator) and move them to ``device``; on the
        ``"meta"`` device nothing is allocated or drawn."""
        generator = check.generator("generator", generator)
        device = check.device("device", device)
        if device is not None and device.type == "meta":
            return
        self.to_empty(device="cpu")
        with torch.no_grad():
            self.initialise(generator)
        if device is not None:
            self.to(device)

    def initialise(self, generator: torch.Generator | None) -> None:
        """Initialise every parameter and buffer; each family says how."""
        raise NotImplementedError  # pragma: no cover - every family overrides it

    def extra_repr(self) -> str:
        return f"kind={self.arch.kind!r}, width={self.arch.width:g}, readout={self.readout!r}"


def he_normal_fan_out(weight: torch.Tensor, generator: torch.Generator | None) -> None:
    """w ~ N(0, 2 / fan_out), fan_out = out_channels · k_h · k_w (He et al. 2015, ICCV, with
    the ReLU gain; torchvision's initialisation of ResNet and VGG convolutions)."""
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)


def uniform_fan_in(tensor: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> None:
    """w ~ U(−1/√fan_in, 1/√fan_in): PyTorch's default for Linear and Conv2d weights and
    biases (its kaiming_uniform_ with a = √5 gives the same bound)."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound, generator=generator)


def reset_batch_norm(module: nn.BatchNorm2d) -> None:
    """γ = 1, β = 0, running mean 0, running variance 1, no batches tracked."""
    module.reset_parameters()

