"""Networks that read an orientation out of an image.

anglesim's own networks are :class:`AngleNet` s (an ordered stack of named blocks ending in
``head``): the configurable CNN (:class:`CNNConfig`, ``CNNConfig.standard()``) and the reference
MLP of the research anglesim grows from (:func:`reference_mlp`). :func:`build_model` builds
either from a config, with its initial weights drawn from a given generator; the readouts
("angle", "cossin", "bins", "scalar") of :mod:`anglesim.readouts` are re-exported here.
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
from ._build import build_model, count_parameters, model_from_config
from ._mlp import reference_mlp

__all__ = ["ANGLE_READOUTS", "KINDS", "NONLINEARITIES", "POOLS", "READOUTS", "AngleNet",
           "CNNConfig", "angle_targets", "bin_centres", "build_model", "check_output",
           "count_parameters", "decode", "model_from_config", "readout_size", "reference_mlp"]
