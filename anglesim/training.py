"""Training phases: pretrain, fine-tune, multitask — run in order on one model.

A `Phase` says what the network sees (a prior over angles and a grating spec, drawn on the fly
or as a fixed finite dataset), what it is trained to do (one or several `Task`s: a head, a loss
and a weight), how (optimiser, learning rate, epochs, batch size), and which named blocks may
change. `train(model, phases, seed)` runs the phases in order and returns a per-epoch history.

Conventions:

* Blocks outside ``Phase.trainable`` have ``requires_grad`` switched off and are left out of
  the optimiser, so they stay bit-for-bit unchanged (weight decay cannot touch them either).
* ``Phase.strategy`` (with ``strategy_params``) names a fine-tuning strategy from
  :mod:`anglesim.finetune` that chooses, among the ``trainable`` blocks, which parameters train
  at which rates and may hook the step (penalty, rate schedule, projection, adapters); the
  default ``"full"`` trains them all at ``lr``.
* ``Phase.reset_optimizer=False`` carries the optimiser's per-parameter state (Adam's moment
  estimates and step counts) over from the previous phase; ``True`` starts it afresh.
* With ``dataset_size=D`` the phase trains on a fixed set of 8D images with validation (2D)
  and test (2D) sets, stops early when the validation loss has not improved for ``patience``
  epochs, and restores the best checkpoint — the reference research's protocol (Adam, lr 1e−3,
  batch 32). Without it, every batch is fresh (``steps_per_epoch`` batches an epoch).
* Targets other than θ: ``Phase.vary={"contrast": (lo, hi)}`` (or ``"frequency"``) draws that
  stimulus property per image uniformly on [lo, hi] (on-the-fly phases only), and
  ``Task(head=..., target="contrast", loss="mse")`` trains a ``"scalar"`` head (see
  ``AngleNet.add_head``) to predict it, standardised to zero mean and unit variance under that
  uniform distribution (:func:`standardise`), so predicting the mean costs exactly 1.
  :func:`evaluate_target_error` measures such a head's error. Fisher information about θ is
  still measured at one fixed stimulus (a ``GratingSpec``), not over the varied property.
* Output-level shifts: ``Task(target_offset=δ)`` trains an angle head on y = (θ + δ) mod π
  instead of θ (the image, and so the information about θ, is unchanged; only the function
  the head must compute moves). :func:`evaluate_error` takes the same ``target_offset``, and a
  phase's per-epoch ``eval_error`` uses the offset of its task on ``head``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from . import angles as ang
from .data import FiniteDataset, draw, evaluation_grid, reference_split
from .distributions import AnglePrior
from .finetune import Strategy, build_strategy, make_context, named_pool, strategy_generator
from .losses import get_loss
from .models import AngleNet
from .stimuli import GratingSpec, render

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

TARGETS = ("angle", "contrast", "frequency")
"""What a Task predicts: the orientation θ, or a stimulus property varied per image."""

_RENDER_ARG = {"contrast": "contrasts", "frequency": "frequencies"}
"""The ``render`` keyword that sets each varied property per image."""


def _offset(value: object) -> float:
    """A target offset in radians: any finite real number (ValueError otherwise)."""
    if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value)):
        raise ValueError(f"target_offset must be a finite number (radians), got {value!r}")
    return float(value)


@dataclass
class Task:
    """One objective in a phase: train ``head`` with ``loss``, weighted by ``weight``.

    ``prior``/``spec`` of None share the phase's images; a task with its own prior or spec
    draws its own batch each step (e.g. a second angle distribution on a second head).
    ``target`` is what the head predicts: "angle" (θ, the default) or a stimulus property the
    phase varies per image ("contrast", "frequency"; see ``Phase.vary``), which needs a
    "scalar" head and a loss for it (e.g. "mse") and is standardised by :func:`standardise`.
    ``target_offset`` δ (radians, angle targets only) makes the head learn y = (θ + δ) mod π,
    a different function of θ (an output-level shift); 0 (the default) trains θ itself.
    """

    head: str = "head"
    loss: str = "cosine"
    loss_params: dict = field(default_factory=dict)
    weight: float = 1.0
    prior: AnglePrior | None = None
    spec: GratingSpec | None = None
    target: str = "angle"
    target_offset: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or self.target not in TARGETS:
            raise ValueError(f"target must be one of {list(TARGETS)}, got {self.target!r}")
        self.target_offset = _offset(self.target_offset)
        if self.target_offset != 0 and self.target != "angle":
            raise ValueError(
                f"target_offset applies to angle targets only; got "
                f"target_offset={self.target_offset!r} with target={self.target!r}"
            )
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight)):
            raise ValueError(f"weight must be a finite number, got {self.weight!r}")
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight!r}")


@dataclass
class Phase:
    """One stage of training (see the module docstring for the conventions)."""

    name: str
    prior: AnglePrior
    spec: GratingSpec
    loss: str = "cosine"
    loss_params: dict = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 10
    steps_per_epoch: int = 50
    batch_size: int = 32
    dataset_size: int | None = None
    patience: int = 5
    trainable: Sequence[str] | None = None
    reset_optimizer: bool = True
    tasks: Sequence[Task] | None = None
    eval_angles: int = 32
    eval_repeats: int = 4
    vary: dict[str, tuple[float, float]] | None = None
    """Stimulus properties drawn per image uniformly on [lo, hi], e.g. {"contrast": (0.5, 1.5)}
    (keys among "contrast", "frequency"; they override the spec's value); None: none."""
    strategy: str = "full"
    """Fine-tuning strategy by name (:mod:`anglesim.finetune`); "full" trains every parameter
    of the ``trainable`` blocks at ``lr``, as before strategies existed."""
    strategy_params: dict = field(default_factory=dict)
    """The strategy's hyper-parameters, validated when the Phase is made."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("epochs", "steps_per_epoch", "batch_size", "patience", "eval_angles",
                     "eval_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dataset_size is not None:
            if not isinstance(self.dataset_size, int) or self.dataset_size < 1:
                raise ValueError(
                    f"dataset_size must be a positive integer or None, got {self.dataset_size!r}"
                )
            if self.tasks is not None and any(
                t.prior is not None or t.spec is not None for t in self.tasks
            ):
                raise ValueError(
                    "tasks with their own prior or spec need on-the-fly data; "
                    f"got dataset_size={self.dataset_size!r}"
                )
        if self.tasks is not None and len(self.tasks) == 0:
            raise ValueError("tasks must be None or a non-empty sequence, got []")
        self._check_vary()
        build_strategy(self.strategy, self.strategy_params)  # ValueError for bad name/params

    def _check_vary(self) -> None:
        """Validate ``vary`` (normalised to {name: (lo, hi)}) and the tasks' targets."""
        if self.vary is not None:
            if not isinstance(self.vary, dict) or not self.vary:
                raise ValueError(f"vary must be None or a non-empty dict, got {self.vary!r}")
            clean = {}
            for name, bounds in self.vary.items():
                if name not in _RENDER_ARG:
                    raise ValueError(
                        f"vary keys must be among {list(_RENDER_ARG)}, got {name!r}"
                    )
                try:
                    lo, hi = (float(b) for b in bounds)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"vary[{name!r}] must be a pair (lo, hi), got {bounds!r}"
                    ) from None
                low_ok = lo >= 0 if name == "contrast" else lo > 0
                if not (math.isfinite(lo) and math.isfinite(hi) and low_ok and lo < hi):
                    bound = ">= 0" if name == "contrast" else "> 0"
                    raise ValueError(
                        f"vary[{name!r}] must be finite with {bound} lo < hi, got {bounds!r}"
                    )
                clean[name] = (lo, hi)
            self.vary = {name: clean[name] for name in _RENDER_ARG if name in clean}
            if self.dataset_size is not None:
                raise ValueError(
                    f"vary needs on-the-fly data; got dataset_size={self.dataset_size!r}"
                )
        for task in self.task_list():
            if task.target != "angle" and task.target not in (self.vary or {}):
                raise ValueError(
                    f"a task with target {task.target!r} needs the phase to vary it "
                    f"(vary={{{task.target!r}: (lo, hi)}}), got vary={self.vary!r}"
                )

    def task_list(self) -> list[Task]:
        """The phase's tasks; a single-task phase trains ``head`` with the phase's loss."""
        if self.tasks is not None:
            return list(self.tasks)
        return [Task(head="head", loss=self.loss, loss_params=dict(self.loss_params))]

    def to_config(self) -> dict:
        """A JSON-able description (priors and specs by their own configs)."""
        return {
            "name": self.name,
            "prior": self.prior.to_config(),
            "spec": self.spec.to_config(),
            "loss": self.loss,
            "loss_params": dict(self.loss_params),
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "batch_size": self.batch_size,
            "dataset_size": self.dataset_size,
            "patience": self.patience,
            "trainable": None if self.trainable is None else list(self.trainable),
            "reset_optimizer": self.reset_optimizer,
            "tasks": None
            if self.tasks is None
            else [
                {
                    "head": t.head,
                    "loss": t.loss,
                    "loss_params": dict(t.loss_params),
                    "weight": t.weight,
                    "prior": None if t.prior is None else t.prior.to_config(),
                    "spec": None if t.spec is None else t.spec.to_config(),
                    # only when not θ, so configs (and cache hashes) of θ-only runs keep
                    # their earlier form
                    **({} if t.target == "angle" else {"target": t.target}),
                    **({} if t.target_offset == 0 else {"target_offset": t.target_offset}),
                }
                for t in self.tasks
            ],
            **({} if self.vary is None else {"vary": {k: list(v) for k, v in self.vary.items()}}),
            # only when not the default, so earlier configs (and cache hashes) keep their form
            **({} if self.strategy == "full" and not self.strategy_params else
               {"strategy": self.strategy, "strategy_params": dict(self.strategy_params)}),
        }


def make_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A torch.Generator seeded from an integer seed via numpy's SeedSequence."""
    state = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


@torch.no_grad()
def evaluate_error(
    model: AngleNet,
    spec: GratingSpec,
    n_angles: int = 32,
    repeats: int = 4,
    generator: torch.Generator | None = None,
    head: str = "head",
    target_offset: float = 0.0,
) -> xr.DataArray:
    """Mean absolute angular error |θ̂ − y| (wrapped, radians) at each angle θ of the grid,
    with y = θ, or y = (θ + ``target_offset``) mod π for a head trained on an offset target
    (``Task.target_offset``); the ``angle`` coordinate is θ, the stimulus.

    Each angle is rendered ``repeats`` times with fresh noise; chance is π/4.
    """
    target_offset = _offset(target_offset)
    device = next(model.parameters()).device
    grid = evaluation_grid(n_angles, device=device)
    theta = grid.repeat(repeats)
    was_training = model.training
    model.eval()
    images = render(theta, spec, generator=generator, inplace=True)
    output = model(images, head=head)
    theta_hat = model.decode(output, model.readout_of(head))
    model.train(was_training)
    truth = theta if target_offset == 0 else ang.wrap(theta + target_offset)
    err = ang.difference(theta_hat, truth).abs().reshape(repeats, n_angles).mean(0)
    return xr.DataArray(
        err.cpu().numpy().astype(np.float64),
        dims=("angle",),
        coords={"angle": grid.cpu().numpy().astype(np.float64)},
        name="abs_error",
        attrs={"units": "rad", "long_name": "mean absolute angular error"},
    )


def standardise(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(y − μ)/s with μ = (lo + hi)/2 and s = (hi − lo)/√12, the mean and standard deviation
    of the uniform distribution on [lo, hi] (``Phase.vary``): the regression target of a
    non-angle task, so that always predicting μ gives a mean squared error of 1."""
    return (values - 0.5 * (low + high)) / ((high - low) / math.sqrt(12.0))


def draw_varied(
    prior: AnglePrior,
    spec: GratingSpec,
    n: int,
    vary: dict[str, tuple[float, float]] | None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Draw n angles, the varied properties, and render: (images, angles, {name: values [n]}).

    With ``vary`` None this is :func:`anglesim.data.draw` (same random numbers) and the dict
    is empty. Otherwise, after the angles, each property (in the order contrast, frequency) is
    drawn uniformly on its [lo, hi] in float64 from ``generator``, then the images are rendered
    with those values.
    """
    if not vary:
        images, angles = draw(prior, spec, n, generator, device)
        return images, angles, {}
    angles = prior.sample(n, generator=generator, device=device)
    draw_device = generator.device if generator is not None else angles.device
    values = {}
    for name, (lo, hi) in vary.items():
        u = torch.rand(n, dtype=torch.float64, generator=generator, device=draw_device)
        values[name] = (lo + (hi - lo) * u).to(device=angles.device, dtype=angles.dtype)
    kwargs = {_RENDER_ARG[name]: v for name, v in values.items()}
    return render(angles, spec, generator=generator, inplace=True, **kwargs), angles, values


@torch.no_grad()
def evaluate_target_error(
    model: AngleNet,
    spec: GratingSpec,
    head: str,
    target: str,
    low: float,
    high: float,
    n_angles: int = 32,
    repeats: int = 8,
    generator: torch.Generator | None = None,
) -> xr.DataArray:
    """Root-mean-square error of a scalar head's estimate of ``target`` at each grid angle.

    At each angle of :func:`evaluation_grid` the property takes ``repeats`` evenly spaced
    values lo + (k + ½)(hi − lo)/repeats (so every angle sees the whole range) with fresh
    noise; the head's standardised output is mapped back, ŷ = μ + s·output (see
    :func:`standardise`). In the property's units; ``attrs["chance"]`` is s = (hi − lo)/√12,
    the error of always predicting the mean.
    """
    if target not in _RENDER_ARG:
        raise ValueError(f"target must be one of {list(_RENDER_ARG)}, got {target!r}")
    if model.readout_of(head) != "scalar":
        raise ValueError(
            f"head {head!r} has readout {model.readout_of(head)!r}; a {target} estimate "
            "needs a 'scalar' head"
        )
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"low < high must be finite, got low={low!r}, high={high!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    device = next(model.parameters()).device
    grid = evaluation_grid(n_angles, device=device)
    theta = grid.repeat(repeats)
    levels = low + (torch.arange(repeats, dtype=torch.float64) + 0.5) * ((high - low) / repeats)
    values = levels.to(device=device, dtype=theta.dtype).repeat_interleave(n_angles)
    was_training = model.training
    model.eval()
    images = render(theta, spec, generator=generator, inplace=True,
                    **{_RENDER_ARG[target]: values})
    output = model(images, head=head)[:, 0]
    model.train(was_training)
    scale = (high - low) / math.sqrt(12.0)
    estimate = 0.5 * (low + high) + scale * output
    rmse = ((estimate - values) ** 2).reshape(repeats, n_angles).mean(0).sqrt()
    return xr.DataArray(
        rmse.cpu().numpy().astype(np.float64),
        dims=("angle",),
        coords={"angle": grid.cpu().numpy().astype(np.float64)},
        name=f"{target}_error",
        attrs={"long_name": f"root-mean-square error of the {target} estimate",
               "chance": scale, "low": low, "high": high},
    )


def _set_trainable(model: AngleNet, trainable: Sequence[str] | None) -> list[torch.nn.Parameter]:
    """Switch requires_grad per named block and head; return the parameters that train."""
    names = set(model.block_names) | set(model.heads.keys())
    if trainable is None:
        chosen = names
    else:
        chosen = set(trainable)
        unknown = chosen - names
        if unknown:
            raise ValueError(
                f"trainable names unknown blocks {sorted(unknown)}; the model has {sorted(names)}"
            )
    params = []
    for name, module in list(model.blocks.items()) + list(model.heads.items()):
        flag = name in chosen
        for p in module.parameters():
            p.requires_grad_(flag)
            if flag:
                params.append(p)
    if not params:
        raise ValueError(f"trainable={trainable!r} selects no parameters")
    return params


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
    model: AngleNet,
    tasks: list[Task],
    losses: list[Callable],
    images: torch.Tensor,
    theta: torch.Tensor,
    phase: Phase,
    generator: torch.Generator,
    values: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Weighted sum of the tasks' losses; ``values`` holds the phase images' varied
    properties (``Phase.vary``), the targets of non-angle tasks."""
    total = images.new_zeros(())
    trunk = None
    for task, loss_fn in zip(tasks, losses, strict=True):
        if task.prior is None and task.spec is None:
            if trunk is None:
                trunk = model.run_blocks(images, stop=model.trunk_names[-1])
            features, target, own = trunk, theta, values
        else:
            x, target, own = draw_varied(task.prior or phase.prior, task.spec or phase.spec,
                                         phase.batch_size, phase.vary, generator,
                                         images.device)
            features = model.run_blocks(x, stop=model.trunk_names[-1])
        if task.target != "angle":
            target = standardise(own[task.target], *phase.vary[task.target])
        elif task.target_offset != 0:
            target = ang.wrap(target + task.target_offset)
        head = model.blocks["head"] if task.head == "head" else model.heads[task.head]
        total = total + task.weight * loss_fn(head(features), target)
    return total


def train(
    model: AngleNet,
    phases: Sequence[Phase],
    seed: int,
    generator: torch.Generator | None = None,
    on_epoch: Callable[[dict, AngleNet], None] | None = None,
    on_phase_end: Callable[[Phase, AngleNet], None] | None = None,
    on_strategy_end: Callable[[Phase, Strategy], None] | None = None,
) -> xr.Dataset:
    """Train ``model`` through ``phases`` in order; return the per-epoch history.

    The history has one entry per epoch over all phases (dim ``epoch``) with coordinates
    ``epoch_phase`` (the phase's name; not ``phase``, so the history merges with measurements
    that have a ``phase`` dimension) and ``epoch_in_phase``, and variables ``train_loss``,
    ``val_loss`` (NaN for on-the-fly phases) and ``eval_error`` (mean absolute angular error on
    the phase's spec over a fixed angle grid; chance is π/4).

    ``on_epoch(record, model)`` is called after each epoch with that epoch's history entry, and
    ``on_phase_end(phase, model)`` after each phase (model in eval mode), e.g. to measure Fisher
    information between phases. ``on_strategy_end(phase, strategy)`` gets each phase's
    fine-tuning strategy (:mod:`anglesim.finetune`) once the phase ends, before
    ``on_phase_end``; ``strategy.diagnostics()`` says what it did. A non-finite loss raises
    FloatingPointError naming the phase and epoch, so a replicate manager records the failure
    instead of keeping garbage.
    """
    if len(phases) == 0:
        raise ValueError("phases must hold at least one Phase, got none")
    device = next(model.parameters()).device
    gen = generator if generator is not None else make_generator(seed, device)
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


def _run_phase(model, phase, gen, previous_opt, seed, records, on_epoch):
    device = next(model.parameters()).device
    tasks = phase.task_list()
    losses = []
    for task in tasks:
        if task.head != "head" and task.head not in model.heads:
            raise ValueError(f"task head {task.head!r} is not a head of the model")
        if task.target != "angle" and model.readout_of(task.head) != "scalar":
            raise ValueError(
                f"task target {task.target!r} needs a 'scalar' head; head {task.head!r} has "
                f"readout {model.readout_of(task.head)!r}"
            )
        losses.append(get_loss(task.loss, model.readout_of(task.head),
                              n_bins=model.n_bins_of(task.head),
                               **task.loss_params))
    # the per-epoch error of the "head" readout is measured against what it is trained on
    eval_offset = next((t.target_offset for t in tasks
                        if t.head == "head" and t.target == "angle"), 0.0)
    pool = named_pool(model, _set_trainable(model, phase.trainable))
    finite: tuple[FiniteDataset, FiniteDataset, FiniteDataset] | None = None
    if phase.dataset_size is not None:
        finite = reference_split(phase.prior, phase.spec, phase.dataset_size, gen, device)
    # The strategy draws any extra data from its own generator, not from the training stream.
    sgen = strategy_generator(seed, phase.name, device)
    ctx = make_context(
        phase,
        lambda x, t, v=None: _batch_loss(model, tasks, losses, x, t, phase, sgen, v),
        sgen,
        lambda n: draw_varied(phase.prior, phase.spec, n, phase.vary, sgen, device),
        finite,
    )
    strategy = build_strategy(phase.strategy, phase.strategy_params)
    opt = _make_optimizer(phase, strategy.setup(model, pool, ctx), previous_opt)
    strategy.start(opt)
    best_val, best_state, since_best = math.inf, None, 0

    for epoch in range(phase.epochs):
        model.train()
        strategy.epoch_start(epoch)
        if finite is None:
            batches = (draw_varied(phase.prior, phase.spec, phase.batch_size, phase.vary, gen,
                                   device)
                       for _ in range(phase.steps_per_epoch))
        else:
            batches = ((x, t, {}) for x, t in finite[0].batches(phase.batch_size, gen))
        total, count = 0.0, 0
        for images, theta, values in batches:
            loss = _batch_loss(model, tasks, losses, images, theta, phase, gen, values)
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
            total += loss.item() * len(theta)
            count += len(theta)
        val_loss = math.nan
        if finite is not None:
            val_loss = _dataset_loss(model, tasks, losses, finite[1], phase, gen)
            if val_loss < best_val:
                best_val, since_best = val_loss, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
        # The same evaluation images every epoch of the phase, so epochs are comparable.
        err = evaluate_error(model, phase.spec, phase.eval_angles, phase.eval_repeats,
                             make_generator(seed + 7919, device), target_offset=eval_offset)
        record = {
            "phase": phase.name,
            "epoch_in_phase": epoch,
            "train_loss": total / count,
            "val_loss": val_loss,
            "eval_error": float(err.mean()),
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


@torch.no_grad()
def _dataset_loss(model, tasks, losses, dataset, phase, gen) -> float:
    model.eval()
    total, count = 0.0, 0
    for images, theta in dataset.batches(256, shuffle=False):
        total += _batch_loss(model, tasks, losses, images, theta, phase, gen).item() * len(theta)
        count += len(theta)
    model.train()
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
