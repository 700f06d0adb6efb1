"""Planning a study run: its configuration, grid, replicates and cache key, resolved once."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .. import validation as check
from ._declaration import Study
from ._finder import code_version, load
from ._overrides import apply_overrides, parse_overrides

__all__ = ["PLAN_PARAMETERS", "Plan", "plan"]

PLAN_PARAMETERS: dict[str, check.Constraint] = {
    "quick": check.Boolean(),
    "seed": check.Integer(minimum=0),
    "replicates": check.Optional(check.Integer(minimum=1)),
    "device": check.Device(),
}
"""The constraints on :func:`plan`'s parameters (the command line checks its options with
them too)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything that decides a study run's replicates (see :func:`plan`).

    Attributes:
        study: the declaration.
        size: "quick" or "full".
        params: the resolved configuration (size entries and defaults after overrides, plus
            ``device`` when it is not the CPU).
        grid: ``{axis: values}`` after overrides.
        n_replicates: replicates per condition.
        seed: the study seed.
        overrides: the overrides given, ``{dotted key: value}``.
        config: the run's configuration as recorded in the Dataset and the cache key.
    """

    study: Study
    size: str
    params: dict[str, Any]
    grid: dict[str, list]
    n_replicates: int
    seed: int
    overrides: dict[str, Any]
    config: dict[str, Any]

    @property
    def cache_name(self) -> str:
        """The cache's subfolder, ``<name>-<size>``."""
        return f"{self.study.name}-{self.size}"

    @property
    def n_conditions(self) -> int:
        """The number of grid cells."""
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def results_file(self, results: str | Path) -> Path:
        """Where the run's Dataset goes under ``results``."""
        name = self.study.name
        return Path(results) / (f"{name}_quick.nc" if self.size == "quick" else f"{name}.nc")


def plan(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
         seed: int = 0, replicates: int | None = None, device: Any = None) -> Plan:
    """Resolve a study's configuration, grid and replicates for one run.

    ``study`` is a :class:`Study`, a study's name or a path to a study file. ``overrides`` are
    ``key=value`` strings (the grammar of :func:`~anglesim.study.parse_overrides`) or an
    already parsed ``{dotted key: value}``; ``replicates`` (the ``--replicates`` option) and
    an override ``replicates=N`` mean the same. ``device`` (of a type the study declares in
    ``devices``) reaches the replicate as ``ctx.device`` when it is not the CPU (results on
    another device differ in their last bits, so it is part of the cache key).

    Raises:
        ValueError: an unknown study or key (listing the valid ones) or a bad value (naming
            both).
    """
    checked = check.validate({"quick": quick, "seed": seed, "replicates": replicates,
                              "device": device}, PLAN_PARAMETERS)
    study = load(study)
    size = "quick" if checked["quick"] else "full"
    given = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    if checked["replicates"] is not None:
        given.setdefault("replicates", checked["replicates"])
    declared = study.configuration(size)
    params, grid_changes = apply_overrides(declared, study.grid_for(declared), given)
    grid = {**study.grid_for(params), **grid_changes}
    if checked["device"] is not None:
        params.update(_device(study, checked["device"]))
    n = check.integer("replicates", params["replicates"], minimum=1)
    for axis in study.pair_axes:
        if axis not in grid:
            raise ValueError(f"pair_axes names {axis!r}, which is not a grid axis of study "
                             f"{study.name} (axes: {', '.join(grid) or 'none'})")
    # The number of replicates is not part of the cache key: replicate r of a condition is the
    # same whether 2 or 6 are asked for (the Dataset's replicate axis records how many ran).
    config = {"study": study.name, "size": size,
              "sizes": {**params, "replicates": declared["replicates"]}}
    if study.angles is not None:  # ctx.angles where the configuration has no n_angles
        config["angles"] = study.angles if isinstance(study.angles, int) else list(study.angles)
    if study.describe is not None:
        config.update(study.describe(params, grid))
    config["overrides"] = {k: v for k, v in given.items() if k != "replicates"}
    config["code"] = {"study": code_version(study), "anglesim": __version__,
                      "origin": "built-in" if study.module.startswith("anglesim.studies")
                      else Path(getattr(sys.modules.get(study.module), "__file__", None)
                                or study.module).name}
    config["pair_axes"] = list(study.pair_axes)
    return Plan(study, size, params, grid, n, checked["seed"], given, config)


def _device(study: Study, device: Any) -> dict[str, str]:
    """``{"device": name}`` for a torch device other than the CPU (the CPU is the default, so
    it leaves the configuration, and the cache key, as they are)."""
    import torch

    if device.type not in study.devices:
        raise check.fail("device", f"a device study {study.name} computes on "
                         f"({', '.join(study.devices)})", str(device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise check.fail("device", "a device of this machine (CUDA is not available)",
                         str(device))
    return {} if device.type == "cpu" else {"device": str(device)}
