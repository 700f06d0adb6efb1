"""Fine-tuning strategies, registered by name and chosen in a training Phase.

A *strategy* is a small object that says which parameters train with which learning rates,
and may hook the training step. A Phase names one (``Phase.strategy``, default ``"full"``)
with its hyper-parameters (``Phase.strategy_params``); :func:`anglesim.training.train` builds
it with :func:`build_strategy` at the start of the phase and drives it:

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
3. ``diagnostics()`` — an ``xarray.Dataset`` of what the strategy did (Auto-RGN's rates per
   update, TPGM's learned radii, …); :func:`~anglesim.training.train` hands each phase's
   strategy to its ``on_strategy_end(phase, strategy)`` callback so a study can store them.

Inside the hooks ``self.model``, ``self.optimizer``, ``self.ctx`` (a :class:`StrategyContext`:
the phase, its base learning rate, a generator of the strategy's own, the phase's loss, and
training / validation data), ``self.step`` (optimiser steps completed in the phase; in
``before_step`` the 0-based index of the step about to be taken) and ``self.epoch`` are set.
Extra data that strategies draw (Auto-RGN's minibatches, TPGM's validation set) come from the
strategy's own generator, so the training batches are those of a ``"full"`` run with the
same seed.

Registered strategies (parameters in brackets; every value is validated and a bad one raises
ValueError naming the parameter and the value):

* ``full`` [lr_scale] — every parameter trains.
* ``linear_probe`` [lr_scale] — only the heads train, on frozen features.
* ``lp_ft`` [probe_epochs, probe_tol, probe_lr_scale, ft_lr_scale] — linear probe, then full
  fine-tuning from that head (Kumar et al. 2022).
* ``surgical`` [blocks | start, stop, lr_scale] and ``freeze`` [blocks, lr_scale] — train only
  a named subset of blocks / everything but a named subset (Lee et al. 2023).
* ``auto_rgn`` [n_batches, batch_size, cadence] — per-tensor rates η·RGN/max RGN (Lee et al.
  2023).
* ``discriminative`` [decay, warmup_steps] — layer-wise rate decay with linear warm-up
  (Howard & Ruder 2018).
* ``l2_sp`` [alpha, beta, norm, anchor, new_blocks] — penalty towards the pretrained weights
  (Li et al. 2018), or plain L1/L2 decay towards zero for comparison.
* ``tpgm`` [update_every, radius_steps, radius_lr, val_size, val_batch_size, exclude] —
  projection onto learned balls around the pretrained weights (Tian et al. 2023).
* ``lora`` [rank, alpha, blocks, train_head, merge] — low-rank adapters (Hu et al. 2021).

A new strategy takes a few lines::

    @register_strategy("bias_only")
    class BiasOnly(Strategy):
        '''BitFit (Ben Zaken et al. 2022): only the bias terms train.'''

        defaults = {"lr_scale": 1.0}

        def param_groups(self, model, pool, ctx):
            biases = [q.param for q in pool if q.name.endswith(".bias")]
            return [{"params": biases, "lr": ctx.lr * self.params["lr_scale"]}]
"""

from __future__ import annotations

import copy
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from torch.func import functional_call

from .data import FiniteDataset
from .models import AngleNet

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only (training imports us)
    from .training import Phase

_TINY = 1e-12


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
    """The strategy's own generator for a phase, from (seed, phase name) via SeedSequence;
    independent of the training stream so extra draws do not change the training batches."""
    tag = zlib.crc32(str(phase_name).encode())
    state = np.random.SeedSequence([int(seed), 0x5354524154, tag]).generate_state(
        2, dtype=np.uint32
    )
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


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
    All draws use ``generator``, the strategy's own.
    """

    phase: Phase
    lr: float
    generator: torch.Generator
    loss: Callable[..., torch.Tensor]
    train_batch: Callable[..., Batch]
    validation_set: Callable[[int], Batch]


def make_context(
    phase: Phase,
    loss: Callable[..., torch.Tensor],
    generator: torch.Generator,
    draw_fresh: Callable[[int], Batch],
    finite: Sequence[FiniteDataset] | None = None,
) -> StrategyContext:
    """The :class:`StrategyContext` of a phase.

    ``loss(images, theta, values)`` is the phase loss, ``draw_fresh(n)`` draws n fresh images
    of the phase (prior, spec, varied properties) with ``generator``, and ``finite`` is the
    phase's train/validation/test split when it trains on a finite dataset.
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

    return StrategyContext(phase, float(phase.lr), generator, loss, train_batch, validation_set)


def _subset(batch: Batch, idx: torch.Tensor) -> Batch:
    images, theta, values = batch
    return images[idx], theta[idx], {k: v[idx] for k, v in values.items()}


STRATEGIES: dict[str, type[Strategy]] = {}
"""Registered strategy classes by name."""


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
    return sorted(STRATEGIES)


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """A fresh strategy ``name`` with hyper-parameters ``params`` (validated).

    Raises ValueError for an unknown name (listing the known ones), a parameter the strategy
    does not take, or a bad value (naming the parameter and the value).
    """
    if not isinstance(name, str) or name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {strategy_names()}, got {name!r}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(f"strategy_params must be a dict, got {params!r}")
    return STRATEGIES[name](**dict(params))


# --------------------------------------------------------------------------------------------
# validation helpers (errors name the strategy, the parameter and the value)


def _bad(strategy: str, name: str, need: str, value: Any) -> ValueError:
    return ValueError(f"strategy {strategy!r}: {name} must be {need}, got {value!r}")


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _positive(strategy: str, name: str, value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise _bad(strategy, name, "a finite number > 0", value)
    return float(value)


def _non_negative(strategy: str, name: str, value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise _bad(strategy, name, "a finite number >= 0", value)
    return float(value)


def _integer(strategy: str, name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(strategy, name, f"an integer >= {minimum}", value)
    return value


def _choice(strategy: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _bad(strategy, name, f"one of {list(choices)}", value)
    return value


def _names(strategy: str, name: str, value: Any, allow_empty: bool = False) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(
        isinstance(v, str) and v for v in value
    ) or (not value and not allow_empty):
        need = "a list of block names" if allow_empty else "a non-empty list of block names"
        raise _bad(strategy, name, need, value)
    return list(value)


def _all_blocks(model: AngleNet) -> list[str]:
    return model.block_names + list(model.heads)


def _check_known(strategy: str, name: str, blocks: Sequence[str], model: AngleNet) -> None:
    known = _all_blocks(model)
    unknown = [b for b in blocks if b not in known]
    if unknown:
        raise ValueError(
            f"strategy {strategy!r}: {name} names unknown block(s) {unknown}; "
            f"the model has {known}"
        )


def _check_in_pool(strategy: str, blocks: Sequence[str], pool: Sequence[NamedParam]) -> None:
    inside = {q.block for q in pool}
    outside = [b for b in blocks if b not in inside]
    if outside:
        raise ValueError(
            f"strategy {strategy!r}: block(s) {outside} are outside the phase's trainable "
            f"blocks {sorted(inside)}"
        )


def _is_head(model: AngleNet, block: str) -> bool:
    return block == "head" or block in model.heads


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
        self.params: dict[str, Any] = {**copy.deepcopy(dict(self.defaults)), **params}
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


def _lr_scale_check(self: Strategy) -> None:
    _positive(self.name, "lr_scale", self.params["lr_scale"])


# --------------------------------------------------------------------------------------------
# full, linear probe, LP-FT, surgical / freeze


@register_strategy("full")
class Full(Strategy):
    """Every parameter of the phase's trainable blocks trains, at ``lr_scale`` × the phase's
    learning rate (one group). With the defaults this is exactly anglesim's behaviour before
    strategies existed (the reference point of Kumar et al. 2022 and Lee et al. 2023).

    Parameters: ``lr_scale`` (> 0, default 1), e.g. 0.1 to fine-tune at a tenth of the rate
    the phase states.
    """

    defaults = {"lr_scale": 1.0}
    check = _lr_scale_check

    def param_groups(self, model, pool, ctx):
        return [{"params": [q.param for q in pool], "lr": ctx.lr * self.params["lr_scale"]}]


@register_strategy("linear_probe")
class LinearProbe(Strategy):
    """Linear probing: only the heads (``head`` and any extra heads) train, on frozen features
    (the baseline of Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution", ICLR).

    Parameters: ``lr_scale`` (> 0, default 1).
    """

    defaults = {"lr_scale": 1.0}
    check = _lr_scale_check

    def param_groups(self, model, pool, ctx):
        heads = [q.param for q in pool if _is_head(model, q.block)]
        if not heads:
            raise ValueError(
                f"strategy {self.name!r}: the phase's trainable blocks "
                f"{sorted({q.block for q in pool})} hold no head to probe"
            )
        return [{"params": heads, "lr": ctx.lr * self.params["lr_scale"]}]


@register_strategy("lp_ft")
class LPFT(Strategy):
    """LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
    Out-of-Distribution", ICLR): a linear probe trained to convergence, then full fine-tuning
    starting from that head, so the features are not distorted by a random head's gradients.

    Within one phase: the first epochs train only the heads (at ``probe_lr_scale`` × the
    phase's rate) until the probe converges — the epoch's loss (the validation loss for
    finite-data phases, else the training loss) improved on the previous epoch's by at most
    ``probe_tol`` relative — or ``probe_epochs`` epochs have passed; from the next epoch
    everything trains at ``ft_lr_scale`` × the phase's rate, the heads' optimiser state reset
    so fine-tuning starts afresh from the probe's head. ``diagnostics()`` gives
    ``lp_ft_switch_epoch``, the first fine-tuning epoch (within the phase).

    Parameters: ``probe_epochs`` (int >= 1, default 5; must be less than the phase's epochs),
    ``probe_tol`` (>= 0, default 1e-3), ``probe_lr_scale`` (> 0, default 1), ``ft_lr_scale``
    (> 0, default 1). Early stopping (finite data) can end the phase during the probe.
    """

    defaults = {"probe_epochs": 5, "probe_tol": 1e-3, "probe_lr_scale": 1.0, "ft_lr_scale": 1.0}

    def check(self) -> None:
        _integer(self.name, "probe_epochs", self.params["probe_epochs"], 1)
        _non_negative(self.name, "probe_tol", self.params["probe_tol"])
        _positive(self.name, "probe_lr_scale", self.params["probe_lr_scale"])
        _positive(self.name, "ft_lr_scale", self.params["ft_lr_scale"])

    def param_groups(self, model, pool, ctx):
        if self.params["probe_epochs"] >= ctx.phase.epochs:
            raise ValueError(
                f"strategy {self.name!r}: probe_epochs={self.params['probe_epochs']} leaves no "
                f"epoch for fine-tuning in a phase of {ctx.phase.epochs} epochs"
            )
        self._heads = [q.param for q in pool if _is_head(model, q.block)]
        self._trunk = [q.param for q in pool if not _is_head(model, q.block)]
        if not self._heads or not self._trunk:
            raise ValueError(
                f"strategy {self.name!r} needs both a head and trunk blocks among the phase's "
                f"trainable blocks, got {sorted({q.block for q in pool})}"
            )
        return [
            {"params": self._heads, "lr": ctx.lr * self.params["probe_lr_scale"]},
            {"params": self._trunk, "lr": ctx.lr * self.params["ft_lr_scale"]},
        ]

    def on_phase_start(self) -> None:
        for p in self._trunk:
            p.requires_grad_(False)  # probe first: the trunk gets no gradient, hence no update
        self.switch_epoch: int | None = None
        self._probe_losses: list[float] = []

    def on_epoch_end(self, record):
        if self.switch_epoch is not None:
            return
        val = record.get("val_loss", math.nan)
        value = float(val) if val is not None and math.isfinite(val) else float(
            record["train_loss"])
        self._probe_losses.append(value)
        done = len(self._probe_losses) >= self.params["probe_epochs"]
        if len(self._probe_losses) >= 2:
            prev = self._probe_losses[-2]
            done = done or (prev - value) <= self.params["probe_tol"] * abs(prev)
        if done:
            for p in self._trunk:
                p.requires_grad_(True)
            self.optimizer.param_groups[0]["lr"] = self.ctx.lr * self.params["ft_lr_scale"]
            for p in self._heads:
                self.optimizer.state.pop(p, None)
            self.switch_epoch = self.epoch + 1

    def diagnostics(self) -> xr.Dataset:
        switch = getattr(self, "switch_epoch", None)
        losses = getattr(self, "_probe_losses", [])
        ds = self._dataset(
            {
                "lp_ft_switch_epoch": ((), -1 if switch is None else switch),
                "lp_ft_probe_loss": (("probe_epoch",), np.asarray(losses, dtype=np.float64)),
            },
        )
        ds["lp_ft_switch_epoch"].attrs = {
            "long_name": "first full fine-tuning epoch within the phase (-1: never switched)"}
        return ds


@register_strategy("surgical")
class Surgical(Strategy):
    """Surgical fine-tuning (Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation to
    Distribution Shifts", ICLR): only a named subset of blocks trains, e.g. the first block
    only (input-level shifts) or from block k to block m; everything else stays bit-for-bit.

    Parameters: either ``blocks`` (a list of block / head names) or ``start`` and/or ``stop``
    (block names; the inclusive range in block order, defaulting to the first block and
    ``head``); ``lr_scale`` (> 0, default 1). Extra heads are addressed only through ``blocks``.
    """

    defaults = {"blocks": None, "start": None, "stop": None, "lr_scale": 1.0}

    def check(self) -> None:
        _lr_scale_check(self)
        blocks, start, stop = self.params["blocks"], self.params["start"], self.params["stop"]
        if blocks is not None:
            _names(self.name, "blocks", blocks)
            if start is not None or stop is not None:
                raise ValueError(
                    f"strategy {self.name!r}: give blocks or start/stop, not both; got "
                    f"blocks={blocks!r}, start={start!r}, stop={stop!r}"
                )
        elif start is None and stop is None:
            raise ValueError(
                f"strategy {self.name!r} needs blocks or start/stop, got blocks=None, "
                "start=None, stop=None"
            )
        for key in ("start", "stop"):
            value = self.params[key]
            if value is not None and (not isinstance(value, str) or not value):
                raise _bad(self.name, key, "a block name", value)

    def chosen_blocks(self, model: AngleNet) -> list[str]:
        """The block names this strategy trains on ``model``."""
        if self.params["blocks"] is not None:
            blocks = list(self.params["blocks"])
            _check_known(self.name, "blocks", blocks, model)
            return blocks
        names = model.block_names
        start = self.params["start"] or names[0]
        stop = self.params["stop"] or names[-1]
        for key, value in (("start", start), ("stop", stop)):
            if value not in names:
                raise ValueError(
                    f"strategy {self.name!r}: {key} must be one of {names}, got {value!r}")
        first, last = names.index(start), names.index(stop)
        if first > last:
            raise ValueError(
                f"strategy {self.name!r}: start={start!r} comes after stop={stop!r} in {names}")
        return names[first : last + 1]

    def param_groups(self, model, pool, ctx):
        blocks = self.chosen_blocks(model)
        _check_in_pool(self.name, blocks, pool)
        chosen = set(blocks)
        return [{"params": [q.param for q in pool if q.block in chosen],
                 "lr": ctx.lr * self.params["lr_scale"]}]


@register_strategy("freeze")
class Freeze(Strategy):
    """Freeze the named blocks; every other block of the phase's trainable set trains (the
    complement of ``surgical``; Lee et al. 2023). ``Phase.trainable`` still selects the pool.

    Parameters: ``blocks`` (non-empty list of block / head names to freeze), ``lr_scale``.
    """

    defaults = {"blocks": None, "lr_scale": 1.0}

    def check(self) -> None:
        _lr_scale_check(self)
        _names(self.name, "blocks", self.params["blocks"])

    def param_groups(self, model, pool, ctx):
        frozen = set(self.params["blocks"])
        _check_known(self.name, "blocks", sorted(frozen), model)
        params = [q.param for q in pool if q.block not in frozen]
        if not params:
            raise ValueError(
                f"strategy {self.name!r}: freezing {sorted(frozen)} leaves nothing to train")
        return [{"params": params, "lr": ctx.lr * self.params["lr_scale"]}]


# --------------------------------------------------------------------------------------------
# Auto-RGN and discriminative learning rates


def relative_gradient_norms(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """RGN_i = ‖g_i‖ / ‖w_i‖ per tensor (a missing gradient counts as 0; ‖w‖ floored at
    1e-12), as a float64 vector (Lee et al. 2023, §4)."""
    g = torch.stack([
        torch.zeros((), dtype=torch.float64) if gr is None
        else torch.linalg.vector_norm(gr.detach()).double().cpu()
        for gr in grads
    ])
    w = torch.stack([torch.linalg.vector_norm(p.detach()).double().cpu() for p in params])
    return g / w.clamp_min(_TINY)


@register_strategy("auto_rgn")
class AutoRGN(Strategy):
    """Auto-RGN (Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation to Distribution
    Shifts", ICLR, §4): every parameter tensor i gets its own rate η·RGN_i / max_j RGN_j with
    the relative gradient norm RGN_i = ‖g_i‖/‖w_i‖, so the layers whose gradients are large
    relative to their weights move most. η is the phase's learning rate.

    Cadence: ``"epoch"`` (default) recomputes the rates at the start of every epoch from the
    mean gradient over ``n_batches`` minibatches of ``batch_size`` (default: the phase's)
    training images drawn with the strategy's generator, the model in eval mode (no dropout);
    ``"step"`` recomputes them before every step from that step's gradient.

    ``diagnostics()``: ``rgn`` and ``rgn_weight`` (= RGN/max RGN, the rate over η) over
    (``rgn_update``, ``parameter``) with coordinates ``parameter_block``, ``rgn_epoch`` and
    ``rgn_step``, and ``rgn_weight_block`` (the mean weight of each block's tensors) over
    (``rgn_update``, ``block``).

    Parameters: ``n_batches`` (int >= 1, default 2), ``batch_size`` (int >= 1 or None),
    ``cadence`` ("epoch" or "step").
    """

    defaults = {"n_batches": 2, "batch_size": None, "cadence": "epoch"}

    def check(self) -> None:
        _integer(self.name, "n_batches", self.params["n_batches"], 1)
        if self.params["batch_size"] is not None:
            _integer(self.name, "batch_size", self.params["batch_size"], 1)
        _choice(self.name, "cadence", self.params["cadence"], ("epoch", "step"))

    def param_groups(self, model, pool, ctx):
        self._pool = list(pool)
        self._records: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        return [{"params": [q.param], "lr": ctx.lr} for q in pool]

    def _set_rates(self, grads: Sequence[torch.Tensor | None]) -> None:
        rgn = relative_gradient_norms([q.param for q in self._pool], grads)
        top = rgn.max()
        weight = rgn / top if top > 0 else torch.ones_like(rgn)
        for group, w in zip(self.optimizer.param_groups, weight.tolist(), strict=True):
            group["lr"] = self.ctx.lr * w
        self._records.append((self.epoch, self.step, rgn.numpy(), weight.numpy()))

    def on_epoch_start(self) -> None:
        if self.params["cadence"] != "epoch":
            return
        params = [q.param for q in self._pool]
        was_training = self.model.training
        self.model.eval()
        total: list[torch.Tensor | None] = [None] * len(params)
        n = self.params["n_batches"]
        for _ in range(n):
            images, theta, values = self.ctx.train_batch(self.params["batch_size"])
            loss = self.ctx.loss(images, theta, values) / n
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            total = [g if t is None else (t if g is None else t + g)
                     for t, g in zip(total, grads, strict=True)]
        self.model.train(was_training)
        self._set_rates(total)

    def before_step(self) -> None:
        if self.params["cadence"] == "step":
            self._set_rates([q.param.grad for q in self._pool])

    def diagnostics(self) -> xr.Dataset:
        self._require_setup()
        names = [q.name for q in self._pool]
        blocks = [q.block for q in self._pool]
        recs = self._records
        rgn = np.array([r[2] for r in recs]).reshape(len(recs), len(names))
        weight = np.array([r[3] for r in recs]).reshape(len(recs), len(names))
        order = list(dict.fromkeys(blocks))
        per_block = np.stack(
            [weight[:, [b == name for b in blocks]].mean(axis=1) for name in order], axis=1
        ) if recs else np.zeros((0, len(order)))
        ds = self._dataset(
            {
                "rgn": (("rgn_update", "parameter"), rgn),
                "rgn_weight": (("rgn_update", "parameter"), weight),
                "rgn_weight_block": (("rgn_update", "block"), per_block),
            },
            coords={
                "parameter": names,
                "parameter_block": ("parameter", blocks),
                "block": order,
                "rgn_epoch": ("rgn_update", np.array([r[0] for r in recs], dtype=np.int64)),
                "rgn_step": ("rgn_update", np.array([r[1] for r in recs], dtype=np.int64)),
            },
        )
        ds["rgn"].attrs = {"long_name": "relative gradient norm ‖g‖/‖w‖"}
        ds["rgn_weight"].attrs = {"long_name": "learning rate / phase learning rate"}
        return ds


@register_strategy("discriminative")
class Discriminative(Strategy):
    """Discriminative fine-tuning with warm-up (Howard & Ruder 2018, "Universal Language Model
    Fine-tuning for Text Classification", ACL): layer-wise learning-rate decay, each earlier
    block's rate ``decay`` times the next one's, ramped up linearly from 0.

    Depth: ``head`` and extra heads 0, the last trunk block 1, …, the first trunk block L (the
    number of trunk blocks). Block b's base rate is η_b = η·decay^depth(b) (η the phase's
    rate); at optimiser step s = 1, 2, … of the phase its rate is η_b·min(1, s/n) with
    n = ``warmup_steps`` (no warm-up when n = 0). ``diagnostics()``: ``lr`` over
    (``lr_step``, ``block``), the rates actually used at every step, and ``base_lr`` (η_b).

    Parameters: ``decay`` in (0, 1] (default 1/2.6, ULMFiT's), ``warmup_steps`` (int >= 0,
    default 0).
    """

    defaults = {"decay": 1 / 2.6, "warmup_steps": 0}

    def check(self) -> None:
        decay = self.params["decay"]
        if not _is_number(decay) or not 0 < decay <= 1:
            raise _bad(self.name, "decay", "a number in (0, 1]", decay)
        _integer(self.name, "warmup_steps", self.params["warmup_steps"], 0)

    def depth(self, model: AngleNet, block: str) -> int:
        """Distance of ``block`` from the output: heads 0, last trunk block 1, …"""
        if _is_head(model, block):
            return 0
        trunk = model.trunk_names
        return len(trunk) - trunk.index(block)

    def param_groups(self, model, pool, ctx):
        blocks = list(dict.fromkeys(q.block for q in pool))
        self._blocks = blocks
        self._base = [ctx.lr * self.params["decay"] ** self.depth(model, b) for b in blocks]
        self._lrs: list[list[float]] = []
        return [{"params": [q.param for q in pool if q.block == b], "lr": lr}
                for b, lr in zip(blocks, self._base, strict=True)]

    def rate(self, base: float, step: int) -> float:
        """The rate at optimiser step ``step`` (1-based) of a block with base rate ``base``."""
        n = self.params["warmup_steps"]
        return base if n == 0 else base * min(1.0, step / n)

    def before_step(self) -> None:
        s = self.step + 1
        lrs = [self.rate(base, s) for base in self._base]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._lrs.append(lrs)

    def diagnostics(self) -> xr.Dataset:
        self._require_setup()
        lrs = np.array(self._lrs, dtype=np.float64).reshape(len(self._lrs), len(self._blocks))
        return self._dataset(
            {"lr": (("lr_step", "block"), lrs),
             "base_lr": (("block",), np.array(self._base, dtype=np.float64))},
            coords={"lr_step": np.arange(1, len(self._lrs) + 1), "block": self._blocks},
        )


# --------------------------------------------------------------------------------------------
# L2-SP and TPGM


@register_strategy("l2_sp")
class L2SP(Strategy):
    """L2-SP (Li, Grandvalet & Davoine 2018, "Explicit Inductive Bias for Transfer Learning
    with Convolutional Networks", ICML): the penalty α·‖θ − θ₀‖² pulls every trainable
    parameter towards its value θ₀ at the start of the phase (the pretrained weights), plus
    β·‖θ‖² on blocks listed as new (the paper's freshly initialised layers). Li et al. write
    α/2 and β/2; here α and β multiply the squared norms directly.

    For comparison ``anchor="zero"`` makes it plain weight decay α‖θ‖², and ``norm="l1"``
    uses the L1 norm (α‖θ − θ₀‖₁, α‖θ‖₁). The penalty is added to the loss that is
    back-propagated; the history's ``train_loss`` stays the data loss. ``diagnostics()``:
    ``penalty`` (mean over each epoch's steps) over ``penalty_epoch``.

    Parameters: ``alpha`` (>= 0, default 0.01), ``beta`` (>= 0, default 0), ``norm`` ("l2" or
    "l1"), ``anchor`` ("pretrained" or "zero"), ``new_blocks`` (list of block names, default
    empty).
    """

    defaults = {"alpha": 0.01, "beta": 0.0, "norm": "l2", "anchor": "pretrained",
                "new_blocks": []}

    def check(self) -> None:
        _non_negative(self.name, "alpha", self.params["alpha"])
        _non_negative(self.name, "beta", self.params["beta"])
        _choice(self.name, "norm", self.params["norm"], ("l2", "l1"))
        _choice(self.name, "anchor", self.params["anchor"], ("pretrained", "zero"))
        _names(self.name, "new_blocks", self.params["new_blocks"], allow_empty=True)

    def param_groups(self, model, pool, ctx):
        new = set(self.params["new_blocks"])
        _check_known(self.name, "new_blocks", sorted(new), model)
        self._shared = [q.param for q in pool if q.block not in new]
        self._new = [q.param for q in pool if q.block in new]
        self._anchors = [p.detach().clone() for p in self._shared]
        self._epoch_sum, self._epoch_n, self._per_epoch = 0.0, 0, []
        return [{"params": [q.param for q in pool], "lr": ctx.lr}]

    def penalty(self) -> torch.Tensor | None:
        alpha, beta = self.params["alpha"], self.params["beta"]
        zero = self.params["anchor"] == "zero"
        p0 = next(iter(self._shared or self._new))
        total = p0.new_zeros(())
        if alpha > 0:
            for p, a in zip(self._shared, self._anchors, strict=True):
                d = p if zero else p - a
                total = total + (d.abs().sum() if self.params["norm"] == "l1" else (d * d).sum())
            total = alpha * total
        if beta > 0 and self._new:
            total = total + beta * sum((p * p).sum() for p in self._new)
        self._epoch_sum += float(total.detach())
        self._epoch_n += 1
        return total

    def on_epoch_end(self, record):
        self._per_epoch.append(self._epoch_sum / max(self._epoch_n, 1))
        self._epoch_sum, self._epoch_n = 0.0, 0

    def diagnostics(self) -> xr.Dataset:
        self._require_setup()
        per = np.asarray(self._per_epoch, dtype=np.float64)
        return self._dataset({"penalty": (("penalty_epoch",), per)},
                             coords={"penalty_epoch": np.arange(len(per))})


class _LossCall(nn.Module):
    """Wraps the phase loss so torch.func.functional_call can swap the model's parameters."""

    def __init__(self, model: AngleNet, loss: Callable) -> None:
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, images: torch.Tensor, theta: torch.Tensor,
                values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(images, theta, values)


@register_strategy("tpgm")
class TPGM(Strategy):
    """Trainable Projected Gradient Method (Tian, Liu, Kira & Kira 2023, "Trainable Projected
    Gradient Method for Robust Fine-tuning", CVPR): fine-tune every parameter, and keep each
    trunk parameter tensor i within a ball ‖θ_i − θ₀_i‖ ≤ γ_i around its pretrained value,
    with the radii γ learned on held-out validation data.

    Projection: Π(θ_i) = θ₀_i + min(1, γ_i/‖θ_i − θ₀_i‖)(θ_i − θ₀_i) (Frobenius norm; the paper
    also offers a per-row MARS norm, not implemented). Heads (``head`` and extra heads) and
    blocks in ``exclude`` are not projected.

    Cadence (alternating, as in the paper's Algorithm 1): after every ``update_every``-th
    optimiser step (steps T, 2T, … of the phase) a projection update learns the radii with the
    weights fixed: ``radius_steps`` Adam steps (rate ``radius_lr``) on log γ minimising the
    phase loss of the projected weights Π(θ) on minibatches (``val_batch_size``, default the
    phase's) of the validation set (the finite dataset's validation split, or ``val_size``
    images drawn once from the phase's prior and spec). Radii start, at the first update, at
    each tensor's current distance (the identity projection). After every step from the first
    update on the weights are projected with the current radii, so ‖θ − θ₀‖ ≤ γ holds after
    every later step. Learning log γ keeps radii positive and moves them by relative amounts.

    ``diagnostics()``: ``tpgm_radius`` (γ after each update) and ``tpgm_distance`` (‖θ − θ₀‖
    before that update's projection) over (``tpgm_update``, ``parameter``), coordinates
    ``parameter_block`` and ``tpgm_step``.

    Parameters: ``update_every`` (int >= 1, default 10), ``radius_steps`` (int >= 1, default
    5), ``radius_lr`` (> 0, default 0.1), ``val_size`` (int >= 1, default 256),
    ``val_batch_size`` (int >= 1 or None), ``exclude`` (list of block names, default empty).
    """

    defaults = {"update_every": 10, "radius_steps": 5, "radius_lr": 0.1, "val_size": 256,
                "val_batch_size": None, "exclude": []}

    def check(self) -> None:
        _integer(self.name, "update_every", self.params["update_every"], 1)
        _integer(self.name, "radius_steps", self.params["radius_steps"], 1)
        _positive(self.name, "radius_lr", self.params["radius_lr"])
        _integer(self.name, "val_size", self.params["val_size"], 1)
        if self.params["val_batch_size"] is not None:
            _integer(self.name, "val_batch_size", self.params["val_batch_size"], 1)
        _names(self.name, "exclude", self.params["exclude"], allow_empty=True)

    def param_groups(self, model, pool, ctx):
        exclude = set(self.params["exclude"])
        _check_known(self.name, "exclude", sorted(exclude), model)
        self._proj = [q for q in pool if not _is_head(model, q.block) and q.block not in exclude]
        if not self._proj:
            raise ValueError(
                f"strategy {self.name!r}: no trunk parameters to project among the phase's "
                f"trainable blocks {sorted({q.block for q in pool})} (exclude={sorted(exclude)})"
            )
        self._anchors = [q.param.detach().clone() for q in self._proj]
        self.log_radius: torch.Tensor | None = None
        self._radius_opt: torch.optim.Optimizer | None = None
        self._val_order: list[torch.Tensor] = []
        self._records: list[tuple[int, np.ndarray, np.ndarray]] = []
        return [{"params": [q.param for q in pool], "lr": ctx.lr}]

    @property
    def radii(self) -> torch.Tensor | None:
        """The current radii γ (one per projected tensor), or None before the first update."""
        return None if self.log_radius is None else self.log_radius.detach().exp()

    def distances(self) -> torch.Tensor:
        """‖θ_i − θ₀_i‖ for every projected tensor (float32 vector on the model's device)."""
        return torch.stack([torch.linalg.vector_norm(q.param.detach() - a)
                            for q, a in zip(self._proj, self._anchors, strict=True)])

    def _val_batch(self) -> Batch:
        data = self.ctx.validation_set(self.params["val_size"])
        size = self.params["val_batch_size"] or self.ctx.phase.batch_size
        if not self._val_order:
            g = self.ctx.generator
            order = torch.randperm(len(data[1]), generator=g, device=g.device).to(
                data[1].device)
            self._val_order = list(order.split(size))
        return _subset(data, self._val_order.pop(0))

    def learn_radii(self) -> None:
        """One projection update's radius learning: the weights stay fixed; only γ moves."""
        theta = [q.param.detach() for q in self._proj]
        diffs = [t - a for t, a in zip(theta, self._anchors, strict=True)]
        dist = torch.stack([torch.linalg.vector_norm(d) for d in diffs])
        log_dist = dist.clamp_min(_TINY).log()
        if self.log_radius is None:
            self.log_radius = log_dist.clone().requires_grad_(True)
            self._radius_opt = torch.optim.Adam([self.log_radius], lr=self.params["radius_lr"])
        call = _LossCall(self.model, self.ctx.loss)
        was_training = self.model.training
        self.model.eval()
        try:
            for _ in range(self.params["radius_steps"]):
                images, target, values = self._val_batch()
                # min(1, γ/d) in log space: exactly 1 at the initial γ = d, where the clamp
                # still passes the gradient, so the radii can shrink from the first update
                ratio = (self.log_radius - log_dist).clamp(max=0.0).exp()
                swapped = {f"model.{q.name}": a + r * d for q, a, r, d in
                           zip(self._proj, self._anchors, ratio, diffs, strict=True)}
                loss = functional_call(call, swapped, (images, target, values))
                (grad,) = torch.autograd.grad(loss, [self.log_radius])
                self._radius_opt.zero_grad(set_to_none=True)
                self.log_radius.grad = grad
                self._radius_opt.step()
        finally:
            self.model.train(was_training)
        self._records.append((self.step, self.radii.cpu().double().numpy(),
                              dist.cpu().double().numpy()))

    @torch.no_grad()
    def project(self) -> None:
        """Π: pull every projected tensor outside its ball back onto the ball's surface."""
        radius = self.radii
        for q, a, g in zip(self._proj, self._anchors, radius, strict=True):
            diff = q.param - a
            d = torch.linalg.vector_norm(diff)
            q.param.copy_(torch.where(d > g, a + (g / d.clamp_min(_TINY)) * diff, q.param))

    def after_step(self) -> None:
        if self.step % self.params["update_every"] == 0:
            self.learn_radii()
        if self.log_radius is not None:
            self.project()

    def diagnostics(self) -> xr.Dataset:
        self._require_setup()
        recs = self._records
        n = len(self._proj)
        return self._dataset(
            {
                "tpgm_radius": (("tpgm_update", "parameter"),
                                np.array([r[1] for r in recs]).reshape(len(recs), n)),
                "tpgm_distance": (("tpgm_update", "parameter"),
                                  np.array([r[2] for r in recs]).reshape(len(recs), n)),
            },
            coords={
                "parameter": [q.name for q in self._proj],
                "parameter_block": ("parameter", [q.block for q in self._proj]),
                "tpgm_step": ("tpgm_update", np.array([r[0] for r in recs], dtype=np.int64)),
            },
        )


# --------------------------------------------------------------------------------------------
# LoRA


class LoRALinear(nn.Module):
    """A Linear layer with a low-rank adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
    Large Language Models"): y = base(x) + (α/r)·B A x with A [r, in] ~ N(0, 1/in) and
    B [out, r] = 0 at the start, so the adapted layer starts as the base layer exactly and its
    update ΔW = (α/r)·BA has rank ≤ r. :meth:`merge` folds ΔW into the base weight.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        _integer("lora", "rank", rank, 1)
        _positive("lora", "alpha", alpha)
        w = base.weight
        self.base = base
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        a = torch.randn(rank, base.in_features, generator=generator, dtype=w.dtype)
        self.lora_a = nn.Parameter((a / math.sqrt(base.in_features)).to(w.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype,
                                               device=w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r)·B A, shaped like the base weight [out, in]."""
        return self.scale * (self.lora_b @ self.lora_a)

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """Fold ΔW into the base weight (in place, same Parameter), zero B, return the base."""
        self.base.weight.add_(self.delta_weight())
        self.lora_b.zero_()
        return self.base


class LoRAConv2d(nn.Module):
    """A Conv2d with a low-rank adapter (Hu et al. 2021): a k×k conv A from C_in down to r
    channels (same stride, padding, dilation; no bias) followed by a 1×1 conv B up to C_out,
    scaled by α/r. A ~ N(0, 1/(C_in k²)), B = 0 at the start. The update
    ΔW[o, i, :, :] = (α/r)·Σ_r B[o, r] A[r, i, :, :] is, as a [C_out, C_in·k·k] matrix,
    a product of [C_out, r] and [r, C_in·k·k]: rank ≤ r. :meth:`merge` folds it into the base.
    """

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Conv2d):
            raise ValueError(f"base must be an nn.Conv2d, got {type(base).__name__}")
        if base.groups != 1:
            raise ValueError(f"LoRA needs a conv with groups=1, got groups={base.groups}")
        if base.padding_mode != "zeros":
            raise ValueError(f"LoRA needs padding_mode='zeros', got {base.padding_mode!r}")
        _integer("lora", "rank", rank, 1)
        _positive("lora", "alpha", alpha)
        w = base.weight
        c_out, c_in, kh, kw = w.shape
        self.base = base
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        a = torch.randn(rank, c_in, kh, kw, generator=generator, dtype=w.dtype)
        self.lora_a = nn.Parameter((a / math.sqrt(c_in * kh * kw)).to(w.device))
        self.lora_b = nn.Parameter(torch.zeros(c_out, rank, 1, 1, dtype=w.dtype,
                                               device=w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        h = F.conv2d(x, self.lora_a, None, b.stride, b.padding, b.dilation)
        return b(x) + self.scale * F.conv2d(h, self.lora_b)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r)·Σ_r B[:, r] A[r], shaped like the base weight [C_out, C_in, k, k]."""
        return self.scale * torch.einsum("or,rikl->oikl", self.lora_b[:, :, 0, 0], self.lora_a)

    @torch.no_grad()
    def merge(self) -> nn.Conv2d:
        """Fold ΔW into the base weight (in place, same Parameter), zero B, return the base."""
        self.base.weight.add_(self.delta_weight())
        self.lora_b.zero_()
        return self.base


LORA_TYPES = (LoRALinear, LoRAConv2d)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear | LoRAConv2d]:
    """The LoRA-wrapped modules of ``model`` by their qualified names."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LORA_TYPES)}


def apply_lora(
    model: AngleNet,
    rank: int,
    alpha: float | None = None,
    blocks: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Wrap every Linear and Conv2d in the named blocks (default: the trunk) with a LoRA
    adapter of rank ``rank`` and scale ``alpha``/rank (``alpha`` default: ``rank``), in place,
    so block names, ``run_blocks`` and ``activations`` keep working. ``generator`` (CPU) draws
    the A matrices. Returns the qualified names of the wrapped modules.
    """
    _integer("lora", "rank", rank, 1)
    alpha = float(rank) if alpha is None else _positive("lora", "alpha", alpha)
    names = model.trunk_names if blocks is None else _names("lora", "blocks", blocks)
    _check_known("lora", "blocks", names, model)
    wrapped: list[str] = []

    def wrap(module: nn.Module, prefix: str) -> None:
        for child_name, child in list(module.named_children()):
            path = f"{prefix}.{child_name}"
            if isinstance(child, LORA_TYPES):
                raise ValueError(f"{path} already has a LoRA adapter; merge_lora(model) first")
            if isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha, generator))
            elif isinstance(child, nn.Conv2d):
                setattr(module, child_name, LoRAConv2d(child, rank, alpha, generator))
            else:
                wrap(child, path)
                continue
            wrapped.append(path)

    for block in names:
        holder, prefix = (model.heads, "heads") if block in model.heads else (
            model.blocks, "blocks")
        wrap(holder[block], f"{prefix}.{block}")
    if not wrapped:
        raise ValueError(f"blocks {names} hold no Linear or Conv2d layer to adapt")
    return wrapped


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter of ``model`` into its base weight and put the plain base module
    back in its place (same Parameter objects as before wrapping). Returns how many merged."""
    count = 0

    def unwrap(module: nn.Module) -> None:
        nonlocal count
        for child_name, child in list(module.named_children()):
            if isinstance(child, LORA_TYPES):
                setattr(module, child_name, child.merge())
                count += 1
            else:
                unwrap(child)

    unwrap(model)
    return count


@register_strategy("lora")
class LoRA(Strategy):
    """LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022):
    the base weights of the adapted blocks are frozen and low-rank adapters (rank r, scale
    α/r, B = 0 at the start) train on every Linear and Conv2d weight in them; a k×k conv gets a
    k×k conv down to r channels and a 1×1 conv up (:class:`LoRAConv2d`), so its update has
    rank ≤ r. The heads train fully when ``train_head`` (the new task's readout), else stay
    frozen. Adapter A matrices are drawn from the strategy's generator.

    At the end of the phase (after the best checkpoint is restored) the adapters are merged
    (``merge=True``, default) so the model leaves the phase a plain AngleNet with the same
    parameter names; with ``merge=False`` it keeps the adapters (:func:`merge_lora` later).
    ``diagnostics()``: ``lora_update_norm`` (‖ΔW‖_F) and ``lora_update_rank`` over
    ``lora_module`` (with coordinate ``lora_block``), measured before merging.

    Parameters: ``rank`` (int >= 1, default 4), ``alpha`` (> 0 or None = rank), ``blocks``
    (block names to adapt, default the trunk within the phase's trainable blocks),
    ``train_head`` (bool, default True), ``merge`` (bool, default True).
    """

    defaults = {"rank": 4, "alpha": None, "blocks": None, "train_head": True, "merge": True}

    def check(self) -> None:
        _integer(self.name, "rank", self.params["rank"], 1)
        if self.params["alpha"] is not None:
            _positive(self.name, "alpha", self.params["alpha"])
        if self.params["blocks"] is not None:
            _names(self.name, "blocks", self.params["blocks"])
        for key in ("train_head", "merge"):
            if not isinstance(self.params[key], bool):
                raise _bad(self.name, key, "True or False", self.params[key])

    def param_groups(self, model, pool, ctx):
        in_pool = list(dict.fromkeys(q.block for q in pool))
        blocks = self.params["blocks"]
        if blocks is None:
            blocks = [b for b in in_pool if not _is_head(model, b)]
        else:
            _check_known(self.name, "blocks", blocks, model)
            _check_in_pool(self.name, blocks, pool)
        heads = [q.param for q in pool if _is_head(model, q.block)]
        if self.params["train_head"] and any(_is_head(model, b) for b in blocks):
            raise ValueError(
                f"strategy {self.name!r}: blocks {blocks} adapt a head while train_head=True; "
                "set train_head=False to adapt it with LoRA instead"
            )
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator,
                                 device=ctx.generator.device).item())
        init = torch.Generator().manual_seed(seed)
        self.wrapped = apply_lora(model, self.params["rank"], self.params["alpha"], blocks,
                                  init)
        modules = lora_modules(model)
        adapters = [p for name in self.wrapped
                    for p in (modules[name].lora_a, modules[name].lora_b)]
        groups = [{"params": adapters, "lr": ctx.lr}]
        if self.params["train_head"] and heads:
            groups.append({"params": heads, "lr": ctx.lr})
        self._summary: tuple[list[float], list[int]] | None = None
        return groups

    def summarise(self) -> tuple[list[float], list[int]]:
        """‖ΔW‖_F and rank(ΔW) (as a matrix [out, in·k·k]) of each adapter, now."""
        modules = lora_modules(self.model)
        norms, ranks = [], []
        with torch.no_grad():
            for name in self.wrapped:
                delta = modules[name].delta_weight()
                norms.append(float(torch.linalg.vector_norm(delta)))
                ranks.append(int(torch.linalg.matrix_rank(delta.reshape(delta.shape[0], -1))))
        return norms, ranks

    def on_phase_end(self) -> None:
        self._summary = self.summarise()
        if self.params["merge"]:
            merge_lora(self.model)

    def diagnostics(self) -> xr.Dataset:
        self._require_setup()
        norms, ranks = self._summary if self._summary is not None else self.summarise()
        blocks = [name.split(".")[1] for name in self.wrapped]
        return self._dataset(
            {"lora_update_norm": (("lora_module",), np.asarray(norms, dtype=np.float64)),
             "lora_update_rank": (("lora_module",), np.asarray(ranks, dtype=np.int64))},
            coords={"lora_module": list(self.wrapped), "lora_block": ("lora_module", blocks)},
        )
