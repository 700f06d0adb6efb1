"""Building any of anglesim's networks from a config: :func:`build_model`,
:func:`model_from_config`, :func:`count_parameters`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .. import seeding
from .. import validation as check
from ._anglenet import KINDS, AngleNet, CNNConfig, build_cnn
from ._architectures import ARCHITECTURES, Architecture, ArchitectureConfig, family
from ._mlp import reference_mlp
from ._resnet import ResNet
from ._vgg import VGG, AlexNet

__all__ = ["build_model", "count_parameters", "model_from_config"]

MLP_KEYS = {"kind", "image_size", "in_channels", "readout", "n_bins", "hidden", "heads"}


def build_model(config: CNNConfig | ArchitectureConfig | Mapping[str, Any],
                generator: torch.Generator | None = None,
                device: Any = None) -> AngleNet | Architecture:
    """Build a network from a config: an :class:`~anglesim.models.AngleNet` from a
    :class:`CNNConfig`, a dict of CNNConfig fields or an ``AngleNet.config`` / ``to_config()``
    dict of either kind ("cnn" or "mlp"); one of the field's architectures from an
    :class:`ArchitectureConfig` or a dict whose ``kind`` is in :data:`ARCHITECTURES`, e.g.
    ``{"kind": "resnet18", "image_size": 64, "in_channels": 1, "width": 0.25,
    "num_classes": 2}``.

    Extra heads listed under ``heads`` are added (in order) after the main network, so a
    model and its config-rebuilt copy share parameter names and shapes. ``generator`` (a CPU
    ``torch.Generator``) draws the initial weights; without it torch's global generator does
    (for anglesim's own networks a generator seeded with s gives the weights
    ``torch.manual_seed(s)`` would). ``device``: where the network is put once initialised
    (the draws are made on the CPU, so the weights do not depend on it); ``"meta"`` builds an
    architecture's shapes without memory.
    """
    device = check.device("device", device)
    if isinstance(config, ArchitectureConfig) or (
            isinstance(config, Mapping) and config.get("kind") in ARCHITECTURES):
        return build_architecture(config, generator=generator, device=device)
    if device is not None:
        return build_model(config, generator).to(device)
    if generator is not None:
        with seeding.drawing_from(generator):
            return build_model(config)
    if isinstance(config, CNNConfig):
        return build_cnn(config)
    if not isinstance(config, Mapping):
        raise ValueError(
            f"config must be a CNNConfig, an ArchitectureConfig or a mapping, got "
            f"{type(config).__name__}"
        )
    kind = config.get("kind", "cnn")
    check.choice("kind", kind, KINDS + ARCHITECTURES)
    if kind == "cnn":
        model = build_cnn(CNNConfig.from_config(config))
    else:
        unknown = sorted(set(config) - MLP_KEYS)
        if unknown:
            raise ValueError(f"unknown mlp config key(s) {unknown}; known: {sorted(MLP_KEYS)}")
        if config.get("in_channels", 1) != 1:
            raise ValueError(
                f"in_channels must be 1 for the reference mlp, got {config['in_channels']!r}"
            )
        hidden = config.get("hidden")
        model = reference_mlp(
            image_size=config.get("image_size", 101),
            readout=config.get("readout", "cossin"),
            hidden=tuple(hidden) if isinstance(hidden, list) else hidden,
            n_bins=config.get("n_bins", 36),
        )
    heads = config.get("heads") or {}
    if not isinstance(heads, Mapping):
        raise ValueError(f"heads must be a mapping name -> {{readout, n_bins}}, got {heads!r}")
    for name, spec in heads.items():
        if not isinstance(spec, Mapping) or "readout" not in spec:
            raise ValueError(f"heads[{name!r}] must be a mapping with 'readout', got {spec!r}")
        model.add_head(name, spec["readout"], spec.get("n_bins", 36))
    return model


def model_from_config(cfg: Mapping[str, Any]) -> AngleNet | Architecture:
    """Rebuild a freshly initialised network from its ``config`` (``AngleNet.config`` of
    either kind, or an architecture's ``config``).

    Load the weights with ``load_state_dict`` afterwards, e.g. to reload a checkpoint in
    another process. Unlike :func:`build_model`, ``cfg`` must say its ``kind``.
    """
    if not isinstance(cfg, Mapping) or "kind" not in cfg:
        raise ValueError(f"cfg must be a model's config mapping with a 'kind' key, got {cfg!r}")
    return build_model(cfg)


def count_parameters(model: nn.Module) -> int:
    """Total number of parameter elements of ``model`` (shared parameters counted once)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


def build_architecture(config: ArchitectureConfig | Mapping[str, Any],
                       generator: torch.Generator | None = None,
                       device: Any = None) -> Architecture:
    """The architecture of ``config`` (an :class:`ArchitectureConfig` or a dict of its fields,
    e.g. ``{"kind": "resnet18", "image_size": 64, "in_channels": 1, "width": 0.25,
    "num_classes": 2}``), initialised from ``generator`` (torch's global one when None), on
    ``device`` (CPU by default; ``"meta"`` builds the shapes only)."""
    if not isinstance(config, ArchitectureConfig):
        config = ArchitectureConfig.from_config(config)
    cls = {"resnet": ResNet, "vgg": VGG, "alexnet": AlexNet}[family(config.kind)]
    return cls(config, generator=generator, device=device)
