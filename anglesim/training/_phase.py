"""Training phases and their tasks: what a network sees, what it learns, how, and what changes.

See :mod:`anglesim.training` for the conventions. Every value is checked when a :class:`Phase`
or :class:`Task` is made (their parameters are declared as data, :data:`PHASE_PARAMETERS` and
:data:`TASK_PARAMETERS`), so a bad one fails at construction, naming the parameter and value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import validation as check
from ..data import RENDER_ARG, draw_varied
from ..distributions import AnglePrior
from ..finetune import Batch, validate_strategy
from ..losses import check_loss
from ..stimuli import GratingSpec, NaturalPatches
from ._labels import kept_fraction

__all__ = ["OPTIMIZERS", "PHASE_PARAMETERS", "TARGETS", "TASK_PARAMETERS", "Phase", "Task"]


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

TARGETS = ("angle", "contrast", "frequency", "photograph")
"""What a Task predicts: the orientation θ, a stimulus property varied per image, or (on
natural patches) the photograph a patch was cut from."""

PRIOR = check.Instance(AnglePrior, "an AnglePrior (e.g. Uniform(), VonMises(loc, kappa))")
SPEC = check.Instance(GratingSpec, "a GratingSpec")
SOURCE = check.Instance(NaturalPatches, "a NaturalPatches")


TASK_PARAMETERS: dict[str, check.Constraint] = {
    "head": check.Text(),
    "target": check.Choice(TARGETS),
    "weight": check.Real(minimum=0),
    "prior": check.Optional(check.Instance(AnglePrior, "an AnglePrior")),
    "spec": check.Optional(SPEC),
    "target_offset": check.Real(),
    "informative_prior": check.Optional(check.Instance(AnglePrior, "an AnglePrior")),
}
"""The constraints on a :class:`Task`'s fields (its loss is checked by
:func:`anglesim.losses.check_loss`)."""

PHASE_PARAMETERS: dict[str, check.Constraint] = {
    "name": check.Text(),
    "prior": check.Optional(PRIOR),
    "spec": check.Optional(SPEC),
    "source": check.Optional(SOURCE),
    "rotation": check.Real(),
    "optimizer": check.Choice(sorted(OPTIMIZERS)),
    "lr": check.Real(minimum=0, min_open=True),
    "weight_decay": check.Real(minimum=0),
    **{name: check.Integer(minimum=1) for name in (
        "epochs", "steps_per_epoch", "batch_size", "patience", "eval_angles", "eval_repeats")},
    "dataset_size": check.Optional(check.Integer(minimum=1)),
    "trainable": check.Optional(check.Names(allow_empty=False)),
    "reset_optimizer": check.Boolean(),
}
"""The constraints on a :class:`Phase`'s scalar fields (its loss, tasks, ``vary`` and strategy
are checked by their own rules, and which of prior, spec, source and rotation go together by
:meth:`Phase.check_source`)."""


def _declared(obj: Any, constraints: dict[str, check.Constraint]) -> None:
    """Check ``obj``'s fields named in ``constraints`` and store the checked values; a plain
    Python int or float is kept as given (so configs, and the cache hashes made from them,
    keep their form), anything else is replaced by its conversion (numpy scalars become
    Python ones, a tuple of names a list)."""
    values = {name: getattr(obj, name) for name in constraints}
    for name, value in check.validate(values, constraints).items():
        setattr(obj, name, _plain(values[name], value))


@dataclass
class Task:
    """One objective in a phase: train ``head`` with ``loss``, weighted by ``weight``.

    ``prior``/``spec`` of None share the phase's images; a task with its own prior or spec
    draws its own batch each step (e.g. a second angle distribution on a second head).
    ``target`` is what the head predicts: "angle" (θ, the default), a stimulus property the
    phase varies per image ("contrast", "frequency"; see ``Phase.vary``), which needs a
    "scalar" head and a loss for it (e.g. "mse") and is standardised by :func:`standardise`,
    or, in a phase on natural patches (``Phase.source``), "photograph": which of the source's
    photographs a patch was cut from, learnt by a "classes" head with one unit per photograph
    and the "cross_entropy" loss — a task without orientation labels.
    ``target_offset`` δ (radians, angle targets only) makes the head learn y = (θ + δ) mod π,
    a different function of θ (an output-level shift); 0 (the default) trains θ itself.
    ``informative_prior`` q (angle targets on on-the-fly data only) adds label noise: each
    image's label is kept with probability k(θ) = m·q(θ)/p(θ), m = min p/q, and otherwise
    replaced by an angle uniform on [0, π), so the kept labels' angles follow q whatever the
    images' prior p (``Uniform()``: as many informative labels per unit angle at rare angles
    as at common ones; the user guide's "Label noise"). None (the default) keeps every
    label.
    """

    head: str = "head"
    loss: str = "cosine"
    loss_params: dict = field(default_factory=dict)
    weight: float = 1.0
    prior: AnglePrior | None = None
    spec: GratingSpec | None = None
    target: str = "angle"
    target_offset: float = 0.0
    informative_prior: AnglePrior | None = None

    def __post_init__(self) -> None:
        _declared(self, TASK_PARAMETERS)
        check_loss(self.loss, self.loss_params, target=self.target)
        self.loss_params = _python_values(self.loss_params)
        if self.target_offset != 0 and self.target != "angle":
            raise ValueError(
                f"target_offset applies to angle targets only; got "
                f"target_offset={self.target_offset!r} with target={self.target!r}"
            )
        if self.informative_prior is not None and self.target != "angle":
            raise ValueError(
                f"informative_prior (label noise) applies to angle targets only; got "
                f"informative_prior={self.informative_prior!r} with target={self.target!r}"
            )


def _plain(value: Any, checked: Any) -> Any:
    """``value`` itself when it is a plain Python int or float (so configs, and the cache
    hashes made from them, keep their form), else its checked Python conversion (numpy
    scalars become int / float)."""
    return value if type(value) in (int, float) else checked


def _python_values(params: Any) -> Any:
    """A copy of ``params`` with numpy scalar values as Python ones (others as given)."""
    if not isinstance(params, dict) or not any(isinstance(v, np.generic)
                                               for v in params.values()):
        return params
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


@dataclass
class Phase:
    """One stage of training (see the module docstring for the conventions).

    A phase draws gratings (``prior`` and ``spec``, both needed) or, with ``source``, natural
    patches turned by ``rotation``; :meth:`draw` draws either.
    """

    name: str
    prior: AnglePrior | None = None
    spec: GratingSpec | None = None
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
    source: NaturalPatches | None = None
    """Natural patches (:class:`~anglesim.stimuli.NaturalPatches`) to train on instead of
    gratings; None (the default): gratings from ``prior`` and ``spec``. A phase on natural
    patches has no prior (the patches carry no orientation labels) and lists its ``tasks``:
    tasks on the patches learn the photograph each was cut from (target "photograph"), a task
    with a prior of its own draws gratings beside them; its ``spec``, optional, sets the
    gratings of the per-epoch evaluation (without one ``eval_error`` is NaN). Patches are drawn
    on the fly (no ``dataset_size``, no ``vary``)."""
    rotation: float = 0.0
    """Every patch of ``source`` is the photograph turned by this angle (radians; a grating of
    orientation θ in it becomes θ + rotation), as Henderson & Serences (2021, J Vision
    21(8):10) rotated ImageNet; 0 for a phase on gratings."""

    def __post_init__(self) -> None:
        _declared(self, PHASE_PARAMETERS)
        check_loss(self.loss, self.loss_params)
        if self.tasks is not None:
            if isinstance(self.tasks, str | Task) or not isinstance(self.tasks, Sequence):
                raise check.fail("tasks", "None or a non-empty list of Task", self.tasks)
            if len(self.tasks) == 0:
                raise ValueError("tasks must be None or a non-empty sequence, got []")
            for i, task in enumerate(self.tasks):
                if not isinstance(task, Task):
                    raise check.fail(f"tasks[{i}]", "a Task", task)
            if self.dataset_size is not None and any(
                t.prior is not None or t.spec is not None for t in self.tasks
            ):
                raise ValueError(
                    "tasks with their own prior or spec need on-the-fly data; "
                    f"got dataset_size={self.dataset_size!r}"
                )
        self.check_source()
        for task in self.tasks or []:
            if task.informative_prior is None:
                continue
            if self.dataset_size is not None:
                raise ValueError(
                    "a task with informative_prior (label noise) needs on-the-fly data; "
                    f"got dataset_size={self.dataset_size!r}"
                )
            kept_fraction(task.prior or self.prior, task.informative_prior)
        self._check_vary()
        validate_strategy(self.strategy, self.strategy_params)  # ValueError: bad name/params
        # numpy scalars among the parameters become Python ones, so the config is JSON
        self.loss_params = _python_values(self.loss_params)
        self.strategy_params = _python_values(self.strategy_params)

    def _check_vary(self) -> None:
        """Validate ``vary`` (normalised to {name: (lo, hi)}) and the tasks' targets."""
        if self.vary is not None:
            if not isinstance(self.vary, dict) or not self.vary:
                raise ValueError(f"vary must be None or a non-empty dict, got {self.vary!r}")
            clean = {}
            for name, bounds in self.vary.items():
                if name not in RENDER_ARG:
                    raise ValueError(
                        f"vary keys must be among {list(RENDER_ARG)}, got {name!r}"
                    )
                if isinstance(bounds, str) or not isinstance(bounds, Sequence) or len(
                        bounds) != 2:
                    raise check.fail(f"vary[{name!r}]", "a pair (lo, hi)", bounds)
                lo = check.real(f"vary[{name!r}] lo", bounds[0],
                                minimum=0, min_open=name != "contrast")
                hi = check.real(f"vary[{name!r}] hi", bounds[1], minimum=0, min_open=True)
                if not lo < hi:
                    raise check.fail(f"vary[{name!r}]", "a pair with lo < hi", bounds)
                clean[name] = (lo, hi)
            self.vary = {name: clean[name] for name in RENDER_ARG if name in clean}
            if self.dataset_size is not None:
                raise ValueError(
                    f"vary needs on-the-fly data; got dataset_size={self.dataset_size!r}"
                )
        for task in self.task_list():
            if task.target not in ("angle", "photograph") and task.target not in (
                    self.vary or {}):
                raise ValueError(
                    f"a task with target {task.target!r} needs the phase to vary it "
                    f"(vary={{{task.target!r}: (lo, hi)}}), got vary={self.vary!r}"
                )

    def check_source(self) -> None:
        """Check which of prior, spec, source, rotation, tasks, ``vary`` and ``dataset_size``
        go together (ValueError naming the first misfit): a phase on gratings needs a prior
        and a spec and takes no rotation and no "photograph" task; a phase on natural patches
        takes no prior, ``vary`` or ``dataset_size`` and lists its tasks, each either learning
        the patches' photographs or drawing gratings of its own (a prior, and a spec of its
        own or the phase's)."""
        tasks = self.task_list()
        if self.source is None:
            if self.prior is None:
                raise check.fail("prior", "an AnglePrior (e.g. Uniform(), VonMises(loc, kappa)) "
                                 "for a phase on gratings (or source=NaturalPatches(...))", None)
            if self.spec is None:
                raise check.fail("spec", "a GratingSpec for a phase on gratings", None)
            if self.rotation != 0:
                raise ValueError("rotation turns a phase's natural patches; a phase on gratings "
                                 f"(source=None) takes rotation 0, got rotation={self.rotation!r}")
            for i, task in enumerate(tasks):
                if task.target == "photograph":
                    raise ValueError(f"tasks[{i}] has target 'photograph', which needs a phase "
                                     "on natural patches (source=NaturalPatches(...)), got "
                                     "source=None")
            return
        if self.prior is not None:
            raise check.fail("prior", "None for a phase on natural patches (they carry no "
                             "orientation labels; a task with its own prior draws gratings)",
                             self.prior)
        if self.vary is not None:
            raise ValueError(f"vary needs a phase on gratings; got vary={self.vary!r} with "
                             "a source of natural patches")
        if self.dataset_size is not None:
            raise ValueError("dataset_size needs a phase on gratings (natural patches are drawn "
                             f"on the fly), got dataset_size={self.dataset_size!r}")
        if self.tasks is None:
            raise check.fail("tasks", "the tasks of a phase on natural patches, e.g. "
                             "[Task(head='photo', target='photograph', loss='cross_entropy')] "
                             "(the patches carry no orientation labels)", None)
        for i, task in enumerate(tasks):
            own = task.prior is not None or task.spec is not None
            if task.target == "photograph" and own:
                raise ValueError(f"tasks[{i}] (target 'photograph') learns the phase's patches "
                                 f"and takes no prior or spec of its own, got prior="
                                 f"{task.prior!r}, spec={task.spec!r}")
            if task.target != "photograph" and (task.target != "angle" or task.prior is None
                                                or (task.spec or self.spec) is None):
                raise ValueError(
                    f"tasks[{i}] (target {task.target!r}) on natural patches must learn their "
                    "photographs (target 'photograph') or the orientation of gratings of its "
                    "own (target 'angle', a prior and a spec, its own or the phase's): the "
                    f"patches carry no orientation labels; got prior={task.prior!r}, "
                    f"spec={task.spec!r}")

    def draw(self, n: int, generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> Batch:
        """``n`` images of the phase, a :data:`~anglesim.finetune.Batch` (images, angles,
        values): gratings with angles from the prior and the varied properties
        (:func:`anglesim.data.draw_varied`, the same random numbers), or natural patches turned
        by ``rotation`` (:meth:`~anglesim.stimuli.NaturalPatches.draw`) with their rotations and
        ``{"photograph": labels}``, drawn from ``generator`` on ``device``."""
        if self.source is None:
            return draw_varied(self.prior, self.spec, n, self.vary, generator, device)
        patches = self.source.draw(n, generator, rotation=self.rotation, device=device)
        return patches.images, patches.rotations, {"photograph": patches.labels}

    def task_list(self) -> list[Task]:
        """The phase's tasks; a single-task phase trains ``head`` with the phase's loss."""
        if self.tasks is not None:
            return list(self.tasks)
        return [Task(head="head", loss=self.loss, loss_params=dict(self.loss_params))]

    def to_config(self) -> dict:
        """A JSON-able description (priors and specs by their own configs)."""
        return {
            "name": self.name,
            "prior": None if self.prior is None else self.prior.to_config(),
            "spec": None if self.spec is None else self.spec.to_config(),
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
                    **({} if t.informative_prior is None else
                       {"informative_prior": t.informative_prior.to_config()}),
                }
                for t in self.tasks
            ],
            **({} if self.vary is None else {"vary": {k: list(v) for k, v in self.vary.items()}}),
            # only when not the default, so earlier configs (and cache hashes) keep their form
            **({} if self.strategy == "full" and not self.strategy_params else
               {"strategy": self.strategy, "strategy_params": dict(self.strategy_params)}),
            **({} if self.source is None else
               {"source": self.source.to_config(), "rotation": self.rotation}),
        }

