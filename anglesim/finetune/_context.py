"""The fine-tuning strategy protocol that :func:`anglesim.training.train` drives.

A *strategy* is a small object that says which parameters train with which learning rates,
and may hook the training step. A Phase names one (``Phase.strategy``, default ``"full"``)
with its hyper-parameters (``Phase.strategy_params``); ``train`` builds it with
:func:`build_strategy` at the start of the phase and drives it:

1. ``param_groups(model, pool, ctx)`` — the optimiser's parameter groups (``{"params": [...],
   "lr": float}``) chosen from ``pool``, the parameters of the blocks the phase lets train
   (``Phase.trainable``; all blocks and heads by default), in block order. Parameters in no
   group are frozen (``requires_grad`` off, left out of the optimiser: bit-for-bit unchanged).
   A strategy may add new parameters to the model here (LoRA's adapters).
2. hooks, each a no-op unless overridden: ``on_phase_start()``, ``on_epoch_start()``,
   ``penalty()`` (an extra loss term added before ``backward``; the history's ``train_loss``
   stays the data loss), ``before_step()`` (gradients are ready; e.g. set learning rates),
   ``after_step()`` (e.g. project the weights), ``on_epoch_end(record)`` and
   ``on_phase_end()`` (after the best checkpoint is restored; e.g. merge adapters).
3. ``diagnostics()`` — an ``xarray.Dataset`` of what the strategy did.

This module is the training side of the contract: the :class:`StrategyContext`, the
:class:`Strategy` base class and the registry. The strategies themselves live in
:mod:`anglesim.finetune`, which imports this module and registers them; the flow is one way
(training never imports :mod:`anglesim.finetune` at import time: :func:`build_strategy` loads
the built-in strategies on first use).
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import numbers
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
import xarray as xr
from torch import nn

from .. import seeding
from .. import validation as check
from ..data import FiniteDataset
from ..models import AngleNet

if TYPE_CHECKING:  # pragma: no cover - annotations only (phase.py imports this module)
    from .phase import Phase

__all__ = ["Batch", "NamedParam", "STRATEGIES", "Strategy", "StrategyContext",
           "build_strategy", "make_context", "named_pool", "register_strategy",
           "strategy_generator", "strategy_names"]

# --------------------------------------------------------------------------------------------
# parameters, context and the registry


class NamedParam(NamedTuple):
    """One parameter tensor of the pool: its block (or extra head) name, its full name in
    ``model.named_parameters()`` (e.g. ``"blocks.conv1.0.weight"``) and the tensor."""

    block: str
    name: str
    param: nn.Parameter


def named_pool(model: AngleNet, params: Sequence[nn.Parameter]) -> list[NamedParam]:
    """Name the parameters ``params`` of ``model`` by block, in block order (blocks, then
    extra heads; within a module, ``named_parameters`` order)."""
    wanted = {id(p) for p in params}
    out: list[NamedParam] = []
    for prefix, modules in (("blocks", model.blocks), ("heads", model.heads)):
        for block, module in modules.items():
            for pname, p in module.named_parameters():
                if id(p) in wanted:
                    out.append(NamedParam(block, f"{prefix}.{block}.{pname}", p))
    if len(out) != len(wanted):
        raise ValueError("params holds tensors that are not parameters of the model's blocks")
    return out


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
"""(images [N, C, P, P], angles [N], {varied property: values [N]}) — the values dict is empty
unless the phase varies stimulus properties (``Phase.vary``)."""


@dataclass
class StrategyContext:
    """What a strategy may use besides the model and the optimiser.

    ``loss(images, theta, values)`` is the phase's (task-weighted) loss of the model as it is
    now; ``train_batch(n)`` draws a training :data:`Batch` of n images (default the phase's
    batch size): fresh images from the phase's prior and spec, or a random subset of the
    finite training split; ``validation_set(n)`` is a held-out Batch: the finite dataset's
    validation split, or else n images drawn once per phase from the phase's prior and spec.
    All draws use ``generator``, the strategy's own. ``current_batch()`` is the training
    Batch of the step in progress (the one the data loss was computed on; None outside a
    step), for penalties on the same images (LDIFS).
    """

    phase: Phase
    lr: float
    generator: torch.Generator
    loss: Callable[..., torch.Tensor]
    train_batch: Callable[..., Batch]
    validation_set: Callable[[int], Batch]
    current_batch: Callable[[], Batch | None] = field(default=lambda: None)


def make_context(
    phase: Phase,
    loss: Callable[..., torch.Tensor],
    generator: torch.Generator,
    draw_fresh: Callable[[int], Batch],
    finite: Sequence[FiniteDataset] | None = None,
    current_batch: Callable[[], Batch | None] | None = None,
) -> StrategyContext:
    """The :class:`StrategyContext` of a phase.

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


def _subset(batch: Batch, idx: torch.Tensor) -> Batch:
    images, theta, values = batch
    return images[idx], theta[idx], {k: v[idx] for k, v in values.items()}


STRATEGIES: dict[str, type[Strategy]] = {}
"""Registered strategy classes by name (the built-in ones once :mod:`anglesim.finetune` is
imported; :func:`build_strategy` and :func:`strategy_names` import it on first use)."""


def _load_builtins() -> None:
    """Import :mod:`anglesim.finetune` (at call time, not import time) so its strategies are
    registered."""
    importlib.import_module("anglesim.finetune")


def register_strategy(name: str, replace: bool = False) -> Callable[[type], type]:
    """Class decorator registering a :class:`Strategy` subclass under ``name``.

    Registering an existing name raises ValueError unless ``replace=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in STRATEGIES and not replace:
        raise ValueError(
            f"strategy {name!r} is already registered; pass replace=True to override it"
        )

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise ValueError(f"a strategy must be a subclass of Strategy, got {cls!r}")
        if "name" not in cls.__dict__:
            cls.name = name
        STRATEGIES[name] = cls
        return cls

    return decorator


def strategy_names() -> list[str]:
    """Names of the registered strategies, sorted."""
    _load_builtins()
    return sorted(STRATEGIES)


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """A fresh strategy ``name`` with hyper-parameters ``params`` (validated).

    Raises ValueError for an unknown name (listing the known ones), a parameter the strategy
    does not take, or a bad value (naming the parameter and the value).
    """
    _load_builtins()
    if not isinstance(name, str) or name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {strategy_names()}, got {name!r}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(f"strategy_params must be a dict, got {params!r}")
    return STRATEGIES[name](**dict(params))


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


# --------------------------------------------------------------------------------------------
# the base class


class Strategy:
    """Base class of fine-tuning strategies; see the module docstring for the protocol.

    Subclasses declare their hyper-parameters and defaults in ``defaults`` (a parameter not
    listed there raises ValueError), validate them in :meth:`check` (``self.params`` holds the
    merged values), choose parameter groups in :meth:`param_groups` and override the hooks
    they need. The default :meth:`param_groups` trains the whole pool at the phase's rate.
    """

    name: ClassVar[str] = "strategy"
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"strategy {self.name!r} takes no parameter(s) {unknown}; its parameters "
                f"are {sorted(self.defaults)}"
            )
        # numpy scalars (np.int64(3), np.float32(0.5), np.bool_) are taken as Python ones
        given = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
        self.params: dict[str, Any] = {**copy.deepcopy(dict(self.defaults)), **given}
        self.check()
        self.model: AngleNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.ctx: StrategyContext | None = None
        self.step = 0
        self.epoch = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.params!r})"

    # ---- to override ---------------------------------------------------------------------

    def check(self) -> None:
        """Validate ``self.params``; raise ValueError naming a bad parameter and value."""

    def param_groups(
        self, model: AngleNet, pool: list[NamedParam], ctx: StrategyContext
    ) -> list[dict]:
        """Optimiser parameter groups ``[{"params": [...], "lr": float}, ...]`` from ``pool``."""
        return [{"params": [q.param for q in pool], "lr": ctx.lr}]

    def on_phase_start(self) -> None:
        """Called once the optimiser exists (``self.optimizer``), before the first epoch."""

    def on_epoch_start(self) -> None:
        """Called at the start of every epoch (``self.epoch``), the model in train mode."""

    def penalty(self) -> torch.Tensor | None:
        """An extra loss term for this step (added to the data loss before backward)."""
        return None

    def before_step(self) -> None:
        """Called after ``backward`` and before ``optimizer.step()``."""

    def after_step(self) -> None:
        """Called after ``optimizer.step()`` (``self.step`` counts it already)."""

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        """Called after each epoch with its history record (train_loss, val_loss, …)."""

    def on_phase_end(self) -> None:
        """Called at the end of the phase, after the best checkpoint (if any) is restored."""

    def diagnostics(self) -> xr.Dataset:
        """What the strategy did, for a study to store (empty unless overridden)."""
        return self._dataset({})

    # ---- driven by training.train ----------------------------------------------------------

    def setup(
        self, model: AngleNet, pool: list[NamedParam], ctx: StrategyContext
    ) -> list[dict]:
        """Choose the parameter groups, switch ``requires_grad`` to match, return the groups."""
        self.model, self.ctx, self.step, self.epoch = model, ctx, 0, 0
        before = {id(p) for p in model.parameters()}
        groups = self.param_groups(model, pool, ctx)
        allowed = {id(q.param) for q in pool} | (
            {id(p) for p in model.parameters()} - before
        )
        if not isinstance(groups, list) or not groups:
            raise ValueError(f"strategy {self.name!r} returned no parameter groups: {groups!r}")
        seen: set[int] = set()
        for group in groups:
            params = group.get("params") if isinstance(group, dict) else None
            lr = group.get("lr") if isinstance(group, dict) else None
            if not isinstance(params, list) or not params or not _is_number(lr) or lr < 0:
                raise ValueError(
                    f"strategy {self.name!r}: each group needs a non-empty 'params' list and "
                    f"a finite 'lr' >= 0, got {group!r}"
                )
            for p in params:
                if id(p) not in allowed:
                    raise ValueError(
                        f"strategy {self.name!r} chose a parameter outside the phase's "
                        f"trainable blocks (shape {tuple(p.shape)})"
                    )
                if id(p) in seen:
                    raise ValueError(
                        f"strategy {self.name!r} put a parameter in two groups "
                        f"(shape {tuple(p.shape)})"
                    )
                seen.add(id(p))
        for p in model.parameters():
            p.requires_grad_(id(p) in seen)
        return groups

    def start(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.on_phase_start()

    def epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        self.on_epoch_start()

    def pre_step(self) -> None:
        self.before_step()

    def post_step(self) -> None:
        self.step += 1
        self.after_step()

    def epoch_end(self, record: Mapping[str, Any]) -> None:
        self.on_epoch_end(record)

    def finish(self) -> None:
        self.on_phase_end()

    # ---- helpers ---------------------------------------------------------------------------

    def _require_setup(self) -> None:
        if self.model is None:
            raise RuntimeError(
                f"strategy {self.name!r} has not been set up by training yet: diagnostics() "
                "describes a strategy that ran (see train(..., on_strategy_end=...))"
            )

    def _dataset(self, data: Mapping[str, Any], coords: Mapping[str, Any] | None = None
                 ) -> xr.Dataset:
        ds = xr.Dataset(dict(data), coords=dict(coords or {}))
        ds.attrs = {"strategy": self.name,
                    "strategy_params": json.dumps(self.params, sort_keys=True, default=str)}
        return ds


