"""The training loop: :func:`train` runs phases in order and returns the per-epoch history.

Each phase: freeze what ``Phase.trainable`` leaves out, let the phase's strategy choose the
parameter groups and hook the step (:mod:`anglesim.finetune`), draw batches (gratings or
natural patches, :meth:`Phase.draw`) on the fly or from a finite split with early stopping, and
record the loss and decoding error per epoch.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from .. import angles as ang
from .. import seeding
from .. import validation as check
from ..data import FiniteDataset, draw_varied, reference_split, resolve_device
from ..evaluate import evaluate_error, standardise
from ..finetune import (
    NamedParam,
    Parts,
    ReadoutNet,
    Strategy,
    build_strategy,
    make_context,
    strategy_generator,
)
from ..losses import TARGET_READOUTS, get_loss
from ..models import AngleNet
from ._labels import kept_fraction, relabel
from ._phase import OPTIMIZERS, Phase, Task

__all__ = ["train"]


def _trainable(parts: Parts, trainable: Sequence[str] | None) -> list[NamedParam]:
    """The pool of a phase: the parameters of every block (all when ``trainable`` is None)
    inside the modules ``trainable`` names, in block order; unknown names raise."""
    pool = parts.pool()
    if trainable is not None:
        chosen = parts.param_names(trainable, "trainable")
        pool = [q for q in pool if q.name in chosen]
    if not pool:
        raise ValueError(f"trainable={trainable!r} selects no parameters")
    return pool


def _set_trainable(model: torch.nn.Module, pool: list[NamedParam]) -> list[NamedParam]:
    """Switch requires_grad on for the parameters of ``pool`` and off for all others."""
    chosen = {id(q.param) for q in pool}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return pool


def _make_optimizer(
    phase: Phase, params: list, previous: torch.optim.Optimizer | None
) -> torch.optim.Optimizer:
    """The phase's optimiser over ``params`` (tensors or parameter groups)."""
    opt = OPTIMIZERS[phase.optimizer](params, lr=phase.lr, weight_decay=phase.weight_decay)
    if not phase.reset_optimizer and previous is not None:
        if type(previous) is not type(opt):
            raise ValueError(
                f"phase {phase.name!r} keeps optimiser state but changes optimiser to "
                f"{phase.optimizer!r}; set reset_optimizer=True"
            )
        for p in (p for group in opt.param_groups for p in group["params"]):
            if p in previous.state:
                opt.state[p] = previous.state[p]
    return opt


def _batch_loss(
    parts: Parts,
    tasks: list[Task],
    losses: list[Callable],
    images: torch.Tensor,
    theta: torch.Tensor,
    phase: Phase,
    generator: torch.Generator,
    values: dict[str, torch.Tensor] | None = None,
    labels: torch.Generator | None = None,
) -> torch.Tensor:
    """Weighted sum of the tasks' losses; ``values`` holds the phase images' varied
    properties (``Phase.vary``) or their photographs (natural patches), the targets of
    non-angle tasks. The tasks on the phase's images share one forward pass. ``labels`` draws
    the label noise of tasks with an ``informative_prior`` (the phase's "labels" stream)."""
    total = images.new_zeros(())
    shared = None
    for task, loss_fn in zip(tasks, losses, strict=True):
        if task.prior is None and task.spec is None:
            if shared is None:
                shared = parts.features(images, [t.head for t in tasks
                                                 if t.prior is None and t.spec is None])
            features, target, own = shared, theta, values
        else:
            x, target, own = draw_varied(task.prior or phase.prior, task.spec or phase.spec,
                                         phase.batch_size, phase.vary, generator,
                                         images.device)
            features = parts.features(x, [task.head])
        if task.informative_prior is not None:
            images_prior = task.prior or phase.prior
            target = relabel(target, images_prior, task.informative_prior,
                             kept_fraction(images_prior, task.informative_prior), labels)
        if task.target == "photograph":
            target = own["photograph"]
        elif task.target != "angle":
            target = standardise(own[task.target], *phase.vary[task.target])
        elif task.target_offset != 0:
            target = ang.wrap(target + task.target_offset)
        total = total + task.weight * loss_fn(parts.head_output(task.head, features), target)
    return total


def train(
    model: AngleNet | ReadoutNet,
    phases: Sequence[Phase],
    seed: int,
    generator: torch.Generator | None = None,
    on_epoch: Callable[[dict, torch.nn.Module], None] | None = None,
    on_phase_end: Callable[[Phase, torch.nn.Module], None] | None = None,
    on_strategy_end: Callable[[Phase, Strategy], None] | None = None,
    device: torch.device | str | None = None,
) -> xr.Dataset:
    """Train ``model`` through ``phases`` in order; return the per-epoch history.

    ``model`` is one of anglesim's networks (an AngleNet: ``build_model``,
    ``reference_mlp``) or any ``torch.nn.Module`` with its readout, a
    :class:`~anglesim.finetune.ReadoutNet` (a head at a named layer, or the module's own output
    read or decoded). ``Phase.trainable``, the strategies' block parameters and task heads name
    its parts as :class:`~anglesim.finetune.Parts` does: blocks, module paths, glob patterns.

    The history has one entry per epoch over all phases (dim ``epoch``) with coordinates
    ``epoch_phase`` (the phase's name; not ``phase``, so the history merges with measurements
    that have a ``phase`` dimension) and ``epoch_in_phase``, and variables ``train_loss``,
    ``val_loss`` (NaN for on-the-fly phases) and ``eval_error`` (mean absolute angular error on
    the phase's spec over a fixed angle grid; chance is π/4; NaN for a phase on natural patches
    without a spec).

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``; default: where the
    model's parameters are) moves the model there in place (``model.to(device)``; it stays
    there afterwards) and every image, angle and random draw of training is made there, with
    generators on that device. A ``generator`` given must be on the same device type. The
    same seed gives the same numbers on the same device; CPU and GPU streams differ.

    ``on_epoch(record, model)`` is called after each epoch with that epoch's history entry, and
    ``on_phase_end(phase, model)`` after each phase (model in eval mode), e.g. to measure Fisher
    information between phases. ``on_strategy_end(phase, strategy)`` gets each phase's
    fine-tuning strategy (:mod:`anglesim.finetune`) once the phase ends, before
    ``on_phase_end``; ``strategy.diagnostics()`` says what it did. A non-finite loss raises
    FloatingPointError naming the phase and epoch, so a replicate manager records the failure
    instead of keeping garbage.

    Every argument is checked before anything trains, and so is every phase against the model
    (heads, readouts, losses, trainable blocks, optimiser state kept across phases), so a bad
    plan fails at once, not after the earlier phases have run.
    """
    parts = Parts(model)  # ValueError unless an AngleNet or a ReadoutNet
    if isinstance(phases, str | Phase) or not isinstance(phases, Sequence):
        raise check.fail("phases", "a list of Phase", phases)
    if len(phases) == 0:
        raise ValueError("phases must hold at least one Phase, got none")
    for i, phase in enumerate(phases):
        if not isinstance(phase, Phase):
            raise check.fail(f"phases[{i}]", "a Phase", phase)
    seed = check.integer("seed", seed, minimum=0)
    for name, hook in (("on_epoch", on_epoch), ("on_phase_end", on_phase_end),
                       ("on_strategy_end", on_strategy_end)):
        check.function(name, hook, allow_none=True)
    device = next(model.parameters()).device if device is None else resolve_device(device)
    check.generator("generator", generator)
    if generator is not None and generator.device.type != device.type:
        raise check.fail("generator", f"a generator on the training device {str(device)!r}",
                         f"a generator on {str(generator.device)!r}")
    _check_plan(parts, phases)
    model.to(device)
    # one named stream per use (anglesim.seeding): "data" for the training batches and finite
    # splits, "eval" for the per-epoch evaluation images, "strategy" (per phase) for what
    # a strategy draws
    gen = generator if generator is not None else seeding.torch_generator(seed, "data",
                                                                          device=device)
    records: list[dict] = []
    optimizer: torch.optim.Optimizer | None = None
    try:
        for phase in phases:
            optimizer, strategy = _run_phase(model, phase, gen, optimizer, seed, records,
                                             on_epoch)
            if on_strategy_end is not None:
                on_strategy_end(phase, strategy)
            if on_phase_end is not None:
                model.eval()
                with torch.enable_grad():
                    on_phase_end(phase, model)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
    return _history(records)


def _check_plan(parts: Parts, phases: Sequence[Phase]) -> None:
    """Check every phase against the model before training: ValueError at the first fault."""
    previous: str | None = None
    for phase in phases:
        _task_losses(parts, phase)
        _trainable(parts, phase.trainable)
        if not phase.reset_optimizer and previous is not None and phase.optimizer != previous:
            raise ValueError(
                f"phase {phase.name!r} keeps optimiser state but changes optimiser from "
                f"{previous!r} to {phase.optimizer!r}; set reset_optimizer=True"
            )
        previous = phase.optimizer


def _task_losses(parts: Parts, phase: Phase) -> list[Callable]:
    """The loss function of each of the phase's tasks on the model (checking heads/readouts)."""
    model = parts.model
    losses = []
    for task in phase.task_list():
        if not parts.is_head(task.head):
            raise ValueError(
                f"task head {task.head!r} of phase {phase.name!r} is not a head of the model; "
                f"its heads are {parts.heads}"
            )
        wanted = TARGET_READOUTS.get(task.target, ("scalar",))
        if task.target != "angle" and model.readout_of(task.head) not in wanted:
            raise ValueError(
                f"task target {task.target!r} needs a {wanted[0]!r} head; head {task.head!r} "
                f"has readout {model.readout_of(task.head)!r}"
            )
        if task.target == "photograph" and \
                model.n_bins_of(task.head) != len(phase.source.photographs):
            raise ValueError(
                f"head {task.head!r} of phase {phase.name!r} has {model.n_bins_of(task.head)} "
                f"classes; the phase's source has {len(phase.source.photographs)} photographs "
                f"{list(phase.source.photographs)} (add_head(..., readout='classes', "
                f"n_bins={len(phase.source.photographs)}))"
            )
        losses.append(get_loss(task.loss, model.readout_of(task.head),
                               n_bins=model.n_bins_of(task.head), **task.loss_params))
    return losses


def _run_phase(model, phase, gen, previous_opt, seed, records, on_epoch):
    device = next(model.parameters()).device
    parts = Parts(model)
    tasks = phase.task_list()
    losses = _task_losses(parts, phase)
    # the per-epoch error of the "head" readout is measured against what it is trained on
    eval_offset = next((t.target_offset for t in tasks
                        if t.head == "head" and t.target == "angle"), 0.0)
    pool = _set_trainable(model, _trainable(parts, phase.trainable))
    finite: tuple[FiniteDataset, FiniteDataset, FiniteDataset] | None = None
    if phase.dataset_size is not None:
        finite = reference_split(phase.prior, phase.spec, phase.dataset_size, gen, device)
    # The strategy draws any extra data from its own generator, not from the training stream.
    sgen = strategy_generator(seed, phase.name, device)
    # label noise (Task.informative_prior) draws from a stream of its own, so the images are
    # those the same seed gives without it
    lgen = seeding.torch_generator(seed, "labels", zlib.crc32(phase.name.encode()),
                                   device=device)
    step_batch: list = [None]  # the batch of the step in progress, for ctx.current_batch()
    ctx = make_context(
        phase,
        lambda x, t, v=None: _batch_loss(parts, tasks, losses, x, t, phase, sgen, v, sgen),
        sgen,
        lambda n: phase.draw(n, sgen, device),
        finite,
        lambda: step_batch[0],
    )
    strategy = build_strategy(phase.strategy, phase.strategy_params)
    opt = _make_optimizer(phase, strategy.setup(model, pool, ctx), previous_opt)
    strategy.start(opt)
    best_val, best_state, since_best = math.inf, None, 0

    for epoch in range(phase.epochs):
        model.train()
        strategy.epoch_start(epoch)
        _hold_frozen_statistics(model)
        if finite is None:
            batches = (phase.draw(phase.batch_size, gen, device)
                       for _ in range(phase.steps_per_epoch))
        else:
            batches = ((x, t, {}) for x, t in finite[0].batches(phase.batch_size, gen))
        total, count = 0.0, 0
        for images, theta, values in batches:
            step_batch[0] = (images, theta, values)
            loss = _batch_loss(parts, tasks, losses, images, theta, phase, gen, values, lgen)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} in phase {phase.name!r}, epoch {epoch}"
                )
            opt.zero_grad(set_to_none=True)
            penalty = strategy.penalty()
            (loss if penalty is None else loss + penalty).backward()
            strategy.pre_step()
            opt.step()
            strategy.post_step()
            step_batch[0] = None
            total += loss.item() * len(theta)
            count += len(theta)
        val_loss = math.nan
        if finite is not None:
            val_loss = _dataset_loss(parts, tasks, losses, finite[1], phase, gen)
            if val_loss < best_val:
                best_val, since_best = val_loss, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
        # The same evaluation images every epoch of the phase, so epochs are comparable.
        error = math.nan  # a phase on natural patches without a spec has no gratings to read
        if phase.spec is not None:
            error = float(evaluate_error(model, phase.spec, phase.eval_angles,
                                         phase.eval_repeats,
                                         seeding.torch_generator(seed, "eval", device=device),
                                         target_offset=eval_offset).mean())
        record = {
            "phase": phase.name,
            "epoch_in_phase": epoch,
            "train_loss": total / count,
            "val_loss": val_loss,
            "eval_error": error,
        }
        records.append(record)
        strategy.epoch_end(record)
        if on_epoch is not None:
            on_epoch(record, model)
        if finite is not None and since_best >= phase.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    strategy.finish()
    return opt, strategy


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _hold_frozen_statistics(model: nn.Module) -> None:
    """Put every batch-norm layer whose parameters are all frozen (``requires_grad`` off:
    outside ``Phase.trainable`` or left out by the strategy) in eval mode for the epoch, so it
    normalises with, and keeps, the running statistics it had: a frozen part of the network
    stays as it was, buffers included, and computes the same function. (In train mode it would
    normalise by each batch's statistics and move its running ones towards the new images.)
    Layers without parameters (``affine=False``) follow the model's mode."""
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


@torch.no_grad()
def _dataset_loss(parts, tasks, losses, dataset, phase, gen) -> float:
    parts.model.eval()
    total, count = 0.0, 0
    for images, theta in dataset.batches(256, shuffle=False):
        total += _batch_loss(parts, tasks, losses, images, theta, phase, gen).item() * len(theta)
        count += len(theta)
    parts.model.train()
    return total / count


def _history(records: list[dict]) -> xr.Dataset:
    n = len(records)
    ds = xr.Dataset(
        {
            "train_loss": ("epoch", np.array([r["train_loss"] for r in records])),
            "val_loss": ("epoch", np.array([r["val_loss"] for r in records])),
            "eval_error": ("epoch", np.array([r["eval_error"] for r in records])),
        },
        coords={
            "epoch": np.arange(n),
            "epoch_phase": ("epoch", np.array([r["phase"] for r in records], dtype=str)),
            "epoch_in_phase": ("epoch", np.array([r["epoch_in_phase"] for r in records])),
        },
    )
    ds["eval_error"].attrs = {"units": "rad", "long_name": "mean absolute angular error"}
    ds["train_loss"].attrs = {"long_name": "training loss (weighted sum over tasks)"}
    ds["val_loss"].attrs = {"long_name": "validation loss (finite-dataset phases only)"}
    return ds
