"""The replicate context: what a study's replicate function receives."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import validation as check

if TYPE_CHECKING:  # torch is imported when a context is used, not with the study package
    import numpy as np
    import torch

__all__ = ["ReplicateContext"]


@dataclasses.dataclass(frozen=True)
class ReplicateContext:
    """One replicate of one condition: ``replicate(ctx) -> xr.Dataset`` gets this.

    Every random number of a replicate comes from its seed through the context: named streams
    (:meth:`generator`, :meth:`numpy_generator`, :meth:`stream_seed`, from
    :mod:`anglesim.seeding`) and the seed itself (:meth:`seed_generator`, for a model's
    initial weights: ``build_model(config, generator=ctx.seed_generator())``). A study never
    seeds torch's global generator.

    Attributes:
        condition: the grid cell, ``{axis: value}``.
        replicate: the replicate's index within its condition.
        seed: the replicate's seed (derived from the study seed, the condition and the index;
            shared along the study's ``pair_axes``).
        params: the resolved configuration: the size's entries merged with the study's
            defaults, after overrides (plus ``device`` when ``--device`` is not the CPU).
        grid_angles: the study's declared ``angles`` (used by :attr:`angles` when ``params``
            has no ``n_angles``).
    """

    condition: Mapping[str, Any]
    replicate: int
    seed: int
    params: Mapping[str, Any]
    grid_angles: int | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check.validate({"condition": self.condition, "replicate": self.replicate,
                        "seed": self.seed, "params": self.params}, FIELDS, partial=True)

    @property
    def device(self) -> str | None:
        """The device the replicate computes on (``--device``); None for the CPU."""
        return self.params.get("device")

    @property
    def on_device(self) -> dict[str, str]:
        """``{"device": d}`` when :attr:`device` is set, else ``{}``: keyword arguments for
        ``train``, the Fisher estimators and the data draws, so that a CPU run calls them
        exactly as one without a device."""
        return {} if self.device is None else {"device": self.device}

    @property
    def angles(self) -> torch.Tensor:
        """The evaluation grid (float32, radians, on the CPU): ``evaluation_grid(n)`` for
        ``params["n_angles"]`` or the study's declared number of angles, else the declared
        angles themselves."""
        import torch

        from ..data import evaluation_grid

        declared = self.params.get("n_angles", self.grid_angles)
        if declared is None:
            raise ValueError("ctx.angles needs an angle grid: give the study's sizes an "
                             "n_angles entry or the Study an angles= declaration, got neither")
        if isinstance(declared, int | float) and not isinstance(declared, bool):
            return evaluation_grid(check.integer("n_angles", declared, minimum=1))
        return torch.tensor(declared, dtype=torch.float32)

    def stream_seed(self, name: str, *index: int) -> int:
        """The seed of stream ``name`` (and sub-indices) of this replicate
        (:func:`anglesim.seeding.stream_seed`)."""
        from ..seeding import stream_seed

        return stream_seed(self.seed, name, *index)

    def generator(self, name: str, *index: int, device: str | None = None,
                  offset: int = 0) -> torch.Generator:
        """A ``torch.Generator`` of stream ``name`` on ``device`` (default :attr:`device`,
        else the CPU; a model's initial weights need ``device="cpu"``).

        ``offset`` is added to the stream's seed: only for numbers published from such an
        offset (new code names another stream instead)."""
        import torch

        from ..seeding import stream_seed, torch_generator

        offset = check.integer("offset", offset, minimum=0)
        where = device if device is not None else self.device
        if offset == 0:
            return torch_generator(self.seed, name, *index, device=where)
        gen = torch.Generator(device=where if where is not None else "cpu")
        return gen.manual_seed(stream_seed(self.seed, name, *index) + offset)

    def numpy_generator(self, name: str, *index: int) -> np.random.Generator:
        """A ``numpy.random.Generator`` of stream ``name``
        (:func:`anglesim.seeding.numpy_generator`)."""
        from ..seeding import numpy_generator

        return numpy_generator(self.seed, name, *index)

    def seed_generator(self) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded with the replicate's seed itself: a model built with
        it (``build_model(config, generator=ctx.seed_generator())``) gets the weights
        ``torch.manual_seed(seed)`` gave."""
        import torch

        return torch.Generator().manual_seed(self.seed)

    def root_generator(self, device: str | None = None) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` (default :attr:`device`) seeded from the
        replicate seed's unnamed SeedSequence (:func:`anglesim.seeding.root_seed`), the
        derivation studies' data streams used before streams had names."""
        import torch

        from ..seeding import root_seed

        where = device if device is not None else self.device
        gen = torch.Generator(device=where if where is not None else "cpu")
        return gen.manual_seed(root_seed(self.seed))


FIELDS: dict[str, check.Constraint] = {
    "condition": check.Instance(Mapping, "a dict {axis: value}"),
    "replicate": check.Integer(minimum=0),
    "seed": check.Integer(minimum=0),
    "params": check.Instance(Mapping, "a dict (the resolved configuration)"),
}
"""The constraints on a :class:`ReplicateContext`'s fields."""
