"""Training phases and their tasks: what a network sees, what it learns, how, and what changes.

See :mod:`anglesim.training` for the conventions. Every value is checked when a :class:`Phase`
or :class:`Task` is made, so a bad one fails at construction, naming the parameter and value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..data import RENDER_ARG as _RENDER_ARG
from ..distributions import AnglePrior
from ..evaluate import check_offset as _offset
from ..stimuli import GratingSpec
from .strategy import build_strategy

__all__ = ["OPTIMIZERS", "TARGETS", "Phase", "Task"]


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

TARGETS = ("angle", "contrast", "frequency")
"""What a Task predicts: the orientation θ, or a stimulus property varied per image."""

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

