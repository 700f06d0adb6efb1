"""Networks that read an orientation out of an image.

anglesim's own networks are :class:`AngleNet` s (an ordered stack of named blocks ending in
``head``): the configurable CNN (:class:`CNNConfig`, ``CNNConfig.standard()``) and the reference
MLP of the research anglesim grows from (:func:`reference_mlp`). The field's architectures —
ResNet-18/34, VGG-11/16 (with or without batch norm) and AlexNet — are built by name
(:class:`ArchitectureConfig`, :data:`ARCHITECTURES`) with torchvision's module names, so saved
torchvision weights load unchanged. :func:`build_model` builds either from a config, with its
initial weights drawn from a given generator; the readouts ("angle", "cossin", "bins",
"scalar") of :mod:`anglesim.readouts` are re-exported here.
"""

from ..readouts import (
    ANGLE_READOUTS,
    READOUTS,
    angle_targets,
    bin_centres,
    check_output,
    decode,
    readout_size,
)
from ._anglenet import KINDS, NONLINEARITIES, POOLS, AngleNet, CNNConfig
from ._architectures import ARCHITECTURES, Architecture, ArchitectureConfig
from ._build import build_model, count_parameters, model_from_config
from ._mlp import reference_mlp
from ._resnet import BasicBlock, ResNet
from ._vgg import VGG, AlexNet

__all__ = ["ANGLE_READOUTS", "ARCHITECTURES", "KINDS", "NONLINEARITIES", "POOLS", "READOUTS",
           "AlexNet", "AngleNet", "Architecture", "ArchitectureConfig", "BasicBlock",
           "CNNConfig", "ResNet", "VGG", "angle_targets", "bin_centres", "build_model",
           "check_output", "count_parameters", "decode", "model_from_config", "readout_size",
           "reference_mlp"]
