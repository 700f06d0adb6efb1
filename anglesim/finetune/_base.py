"""The strategy protocol and the registry: :class:`Strategy`, :func:`register_strategy`,
:func:`validate_strategy`, :func:`build_strategy`, and the block checks strategies share.

A *strategy* is a small object that says which parameters train with which learning rates,
and may hook the training step. :func:`anglesim.training.train` builds the one a Phase names
and drives it:

1. ``param_groups(model, pool, ctx)`` — the optimiser's parameter groups (``{"params": [...],
   "lr": float}``) chosen from ``pool``, the parameters the phase lets train
   (``Phase.trainable``; every block and head by default), in block order; the model's parts
   are named by :class:`~anglesim.finetune.Parts` (``Parts(model)``: blocks, heads, module
   paths and glob patterns over them, in forward order). Parameters in no
   group are frozen (``requires_grad`` off, left out of the optimiser: bit-for-bit unchanged).
   A strategy may add new parameters to the model here (LoRA's adapters).
2. hooks, each a no-op unless overridden: ``on_phase_start()``, ``on_epoch_start()``,
   ``penalty()`` (an extra loss term added before ``backward``; the history's ``train_loss``
   stays the data loss), ``before_step()`` (gradients are ready; e.g. set learning rates),
   ``after_step()`` (e.g. project the weights), ``on_epoch_end(record)`` and
   ``on_phase_end()`` (after the best checkpoint is restored; e.g. merge adapters).
3. ``diagnostics()`` — an ``xarray.Dataset`` of what the strategy did.

Inside the hooks ``self.model``, ``self.optimizer``, ``self.ctx`` (a
:class:`~anglesim.finetune.StrategyContext`), ``self.step`` (optimiser steps completed in the
phase; in ``before_step`` the 0-based index of the step about to be taken) and ``self.epoch``
are set.

Parameters are declared as data: ``parameters`` maps each name to a constraint of
:mod:`anglesim.validation` and ``defaults`` gives the optional ones their values; a parameter
without a default must be given. :meth:`Strategy.check_params` validates a set against them in
one place (and :meth:`Strategy.check_together` for the rare rule between parameters), so a
Phase validates a strategy's parameters without building it (:func:`validate_strategy`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr
from torch import nn

from .. import validation as check
from ._context import StrategyContext
from ._parts import NamedParam

__all__ = ["STRATEGIES", "TINY", "Strategy", "build_strategy", "register_strategy",
           "strategy_names", "validate_strategy"]

TINY = 1e-12
"""The floor under norms that divide (‖w‖ in RGN, distances in TPGM's projection)."""


class Strategy:
    """Base class of fine-tuning strategies; see the module docstring for the protocol.

    Subclasses declare ``parameters`` (name → :class:`anglesim.validation.Constraint`) and
    ``defaults``, choose parameter groups in :meth:`param_groups` and override the hooks they
    need. The default :meth:`param_groups` trains the whole pool at the phase's rate.
    ``self.params`` holds the given values merged over the defaults (numpy scalars as Python
    ones; otherwise as given, so a study's stored configuration keeps its form).
    """

    name: ClassVar[str] = "strategy"
    parameters: ClassVar[Mapping[str, check.Constraint]] = {}
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = self.check_params(params)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.ctx: StrategyContext | None = None
        self.step = 0
        self.epoch = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.params!r})"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` merged over the defaults, validated against ``parameters``.

        Raises ValueError for a parameter the strategy does not take (listing those it takes),
        one without a default that is missing, or a bad value: ``"strategy 'NAME': <param>
        must be …, got <value>"``.
        """
        owner = f"strategy {cls.name!r}"
        given = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
        merged = {**copy.deepcopy(dict(cls.defaults)), **given}
        check.validate(merged, cls.parameters, owner=owner)
        cls.check_together(merged)
        return merged

    @classmethod
    def check_together(cls, params: Mapping[str, Any]) -> None:
        """Rules between parameters that no single constraint expresses (e.g. "blocks or
        start/stop, not both"); ``params`` are already checked one by one. None by default."""

    # ---- to override ---------------------------------------------------------------------

    def param_groups(
        self, model: nn.Module, pool: list[NamedParam], ctx: StrategyContext
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
        return self.dataset({})

    # ---- driven by training.train ----------------------------------------------------------

    def setup(
        self, model: nn.Module, pool: list[NamedParam], ctx: StrategyContext
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
            if not isinstance(params, list) or not params or not _is_rate(lr):
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
        """The phase's optimiser exists: keep it and call :meth:`on_phase_start`."""
        self.optimizer = optimizer
        self.on_phase_start()

    def epoch_start(self, epoch: int) -> None:
        """Epoch ``epoch`` of the phase begins: :meth:`on_epoch_start`."""
        self.epoch = epoch
        self.on_epoch_start()

    def pre_step(self) -> None:
        """Gradients are ready: :meth:`before_step`."""
        self.before_step()

    def post_step(self) -> None:
        """The optimiser stepped: count it, then :meth:`after_step`."""
        self.step += 1
        self.after_step()

    def epoch_end(self, record: Mapping[str, Any]) -> None:
        """The epoch's history ``record`` is written: :meth:`on_epoch_end`."""
        self.on_epoch_end(record)

    def finish(self) -> None:
        """The phase is over (best checkpoint restored): :meth:`on_phase_end`."""
        self.on_phase_end()

    # ---- helpers for subclasses ------------------------------------------------------------

    def require_setup(self) -> None:
        """RuntimeError unless training has set the strategy up (for ``diagnostics``)."""
        if self.model is None:
            raise RuntimeError(
                f"strategy {self.name!r} has not been set up by training yet: diagnostics() "
                "describes a strategy that ran (see train(..., on_strategy_end=...))"
            )

    def dataset(self, data: Mapping[str, Any], coords: Mapping[str, Any] | None = None
                ) -> xr.Dataset:
        """An ``xarray.Dataset`` of ``data`` with the strategy's name and parameters as attrs."""
        ds = xr.Dataset(dict(data), coords=dict(coords or {}))
        ds.attrs = {"strategy": self.name,
                    "strategy_params": json.dumps(self.params, sort_keys=True, default=str)}
        return ds


def _is_rate(lr: Any) -> bool:
    try:
        check.real("lr", lr, minimum=0)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# the registry


STRATEGIES: dict[str, type[Strategy]] = {}
"""Registered strategy classes by name (each strategy module registers its own on import)."""


def register_strategy(name: str, replace: bool = False) -> Callable[[type], type]:
    """Class decorator registering a :class:`Strategy` subclass under ``name``.

    Registering an existing name raises ValueError unless ``replace=True``; so does a class
    whose ``defaults`` name a parameter it does not declare in ``parameters``.
    """
    name = check.text("name", name)
    if name in STRATEGIES and not replace:
        raise ValueError(
            f"strategy {name!r} is already registered; pass replace=True to override it"
        )

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise check.fail("a strategy", "a subclass of Strategy", cls)
        bad = [k for k, c in cls.parameters.items() if not isinstance(c, check.Constraint)]
        if bad:
            raise ValueError(f"strategy {name!r}: parameters {bad} need a constraint of "
                             "anglesim.validation (e.g. Real(minimum=0))")
        undeclared = sorted(set(cls.defaults) - set(cls.parameters))
        if undeclared:
            raise ValueError(
                f"strategy {name!r} gives defaults for undeclared parameter(s) {undeclared}; "
                "declare each in `parameters` with its constraint (anglesim.validation)"
            )
        if "name" not in cls.__dict__:
            cls.name = name
        STRATEGIES[name] = cls
        return cls

    return decorator


def strategy_names() -> list[str]:
    """Names of the registered strategies, sorted."""
    return sorted(STRATEGIES)


def _strategy_class(name: Any) -> type[Strategy]:
    if not isinstance(name, str) or name not in STRATEGIES:
        raise check.fail("strategy", "one of " + ", ".join(map(repr, strategy_names())), name)
    return STRATEGIES[name]


def _given(params: Any) -> Mapping[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise check.fail("strategy_params", "a dict", params)
    return params


def validate_strategy(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check a strategy's name and parameters without building it; return the parameters
    merged over its defaults. ValueError for an unknown name (listing the registered ones), a
    parameter the strategy does not take, or a bad value (naming the parameter and value)."""
    return _strategy_class(name).check_params(_given(params))


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """A fresh strategy ``name`` with hyper-parameters ``params`` (validated as by
    :func:`validate_strategy`)."""
    return _strategy_class(name)(**_given(params))
