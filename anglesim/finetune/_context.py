"""What a strategy sees besides the model and its pool of parameters: its context.

:func:`anglesim.training.train` builds the phase's :class:`StrategyContext` with
:func:`make_context` and draws the strategy's own random numbers from
:func:`strategy_generator`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import seeding
from .. import validation as check
from ..data import FiniteDataset

__all__ = ["Batch", "StrategyContext", "make_context", "strategy_generator", "subset_batch"]


def strategy_generator(
    seed: int, phase_name: str, device: torch.device | str | None = None
) -> torch.Generator:
    """The strategy's own generator for a phase: the named stream
    ``seeding.torch_generator(seed, "strategy", crc32(phase name))``, independent of the
    training ("data") and evaluation ("eval") streams, so a strategy's extra draws do not
    change the training batches, and phases with different names draw differently."""
    check.text("phase_name", phase_name)
    return seeding.torch_generator(seed, "strategy", zlib.crc32(phase_name.encode()),
                                   device="cpu" if device is None else device)


Batch = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]
"""(images [N, C, P, P], angles [N], {name: values [N]}), what a phase draws. Gratings: their
orientations θ and the varied stimulus properties (``Phase.vary``; the dict is empty unless
the phase varies some); natural patches (``Phase.source``): their rotations φ (no task trains
on them) and ``{"photograph": source photograph indices}``."""


def subset_batch(batch: Batch, idx: torch.Tensor) -> Batch:
    """The images, angles and varied values of ``batch`` at indices ``idx``."""
    images, theta, values = batch
    return images[idx], theta[idx], {k: v[idx] for k, v in values.items()}


@dataclass
class StrategyContext:
    """What a strategy may use besides the model and the optimiser.

    ``phase`` is the training :class:`~anglesim.training.Phase`, ``lr`` its learning rate.
    ``loss(images, theta, values)`` is the phase's (task-weighted) loss of the model as it is
    now; ``train_batch(n)`` draws a training :data:`Batch` of n images (default the phase's
    batch size): fresh images from the phase's prior and spec, or a random subset of the
    finite training split; ``validation_set(n)`` is a held-out Batch: the finite dataset's
    validation split, or else n images drawn once per phase from the phase's prior and spec.
    All draws use ``generator``, the strategy's own. ``current_batch()`` is the training
    Batch of the step in progress (the one the data loss was computed on; None outside a
    step), for penalties on the same images (LDIFS).
    """

    phase: Any
    lr: float
    generator: torch.Generator
    loss: Callable[..., torch.Tensor]
    train_batch: Callable[..., Batch]
    validation_set: Callable[[int], Batch]
    current_batch: Callable[[], Batch | None] = field(default=lambda: None)


def make_context(
    phase: Any,
    loss: Callable[..., torch.Tensor],
    generator: torch.Generator,
    draw_fresh: Callable[[int], Batch],
    finite: Sequence[FiniteDataset] | None = None,
    current_batch: Callable[[], Batch | None] | None = None,
) -> StrategyContext:
    """The :class:`StrategyContext` of a training ``phase``.

    ``loss(images, theta, values)`` is the phase loss, ``draw_fresh(n)`` draws n fresh images
    of the phase (prior, spec, varied properties) with ``generator``, ``finite`` is the
    phase's train/validation/test split when it trains on a finite dataset, and
    ``current_batch()`` returns the batch of the step in progress (default: always None).
    """
    cache: dict[int, Batch] = {}

    def train_batch(n: int | None = None) -> Batch:
        n = phase.batch_size if n is None else n
        if finite is None:
            return draw_fresh(n)
        data = finite[0]
        order = torch.randperm(len(data), generator=generator, device=generator.device)
        idx = order[: min(n, len(data))].to(data.angles.device)
        return data.images[idx], data.angles[idx], {}

    def validation_set(n: int) -> Batch:
        if finite is not None:
            return finite[1].images, finite[1].angles, {}
        if n not in cache:
            cache[n] = draw_fresh(n)
        return cache[n]

    return StrategyContext(phase, float(phase.lr), generator, loss, train_batch, validation_set,
                           current_batch if current_batch is not None else (lambda: None))
