"""Training: phases (pretrain, fine-tune, multitask) run in order on one model.

A :class:`Phase` says what the network sees (a prior over angles and a grating spec, on the fly
or as a finite dataset, or natural patches at a rotation, ``Phase.source``), what it learns
(one or several :class:`Task`\\ s: a head, a loss, a weight, a target such as θ or a patch's
photograph), how (optimiser, rate, epochs, batch size, a fine-tuning strategy of
:mod:`anglesim.finetune`) and which blocks may change. :func:`train` runs the phases in order
and returns the per-epoch history. The conventions (freezing, finite data and early stopping,
targets other than θ, devices, seed streams) are in the user guide
(``docs/user_guide/training.rst``).

Main names: :class:`Phase`, :class:`Task`, :func:`train`; :func:`keep_probability` and
:func:`kept_fraction` describe a task's label noise (``Task.informative_prior``); the measurements
:func:`~anglesim.evaluate.evaluate_error`, :func:`~anglesim.evaluate.evaluate_target_error` and
:func:`~anglesim.evaluate.standardise` are importable from here too.
"""

from ..data import draw_varied
from ..evaluate import evaluate_error, evaluate_target_error, standardise
from ._labels import keep_probability, kept_fraction
from ._loop import train
from ._phase import OPTIMIZERS, TARGETS, Phase, Task

__all__ = ["OPTIMIZERS", "TARGETS", "Phase", "Task", "draw_varied", "evaluate_error",
           "evaluate_target_error", "keep_probability", "kept_fraction", "standardise", "train"]
