"""Grid, conditions and seeds: which (condition, replicate) tasks a study has.

A condition is one point of the grid's Cartesian product; replicate ``r`` of condition ``c``
gets ``replicate_seed(seed, condition_id(c), r)``, so a condition's seeds depend only on its
own values (not on the rest of the grid, the workers or the backend).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import io
from .. import validation as check

RESERVED_NAMES = ("replicate", "failed", "error", "replicate_seed")
"""Names that neither a grid axis nor a variable or dimension of fn's result may use."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._=,+-]")

def replicate_seed(seed: int, condition_index: int, replicate: int) -> int:
    """The seed of one replicate of one condition, in [0, 2**63).

    It is the first 64-bit word of ``SeedSequence(seed, spawn_key=(condition_index,
    replicate)).generate_state`` shifted right by one bit (so it fits an int64): the same
    arguments always give the same seed, and different (condition_index, replicate) pairs give
    statistically independent streams (O'Neill 2015; numpy's SeedSequence spawning).
    ``condition_index`` is any non-negative integer naming the condition; :func:`run_study`
    uses :func:`condition_id`.

    Raises:
        ValueError: if any argument is not a non-negative integer.
    """
    seed = check.integer("seed", seed, minimum=0)
    condition_index = check.integer("condition_index", condition_index, minimum=0)
    replicate = check.integer("replicate", replicate, minimum=0)
    words = np.random.SeedSequence(seed, spawn_key=(condition_index, replicate)).generate_state(
        1, dtype=np.uint64)
    return int(words[0]) >> 1


def axis_values(name: str, values: Any) -> list[str | int | float | bool]:
    """Validated values of one grid axis, numpy scalars turned into Python ones."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"grid axis {name!r} must be a list of values, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if not isinstance(v, (str, int, float, bool)):
            raise ValueError(f"grid axis {name!r}: values must be str, int, float or bool, "
                             f"got {v!r} of type {type(v).__name__}")
        if isinstance(v, float) and math.isnan(v):
            raise ValueError(f"grid axis {name!r}: NaN is not a usable condition value")
        out.append(v)
    if not out:
        raise ValueError(f"grid axis {name!r} is empty; give it at least one value")
    kinds = {"str" if isinstance(v, str) else "bool" if isinstance(v, bool) else "number"
             for v in out}
    if len(kinds) > 1:
        raise ValueError(f"grid axis {name!r} mixes value types ({', '.join(sorted(kinds))}): "
                         f"{out!r}; one axis becomes one coordinate, so use one type")
    seen: list = []
    for v in out:
        if v in seen:
            raise ValueError(f"grid axis {name!r} has the value {v!r} more than once")
        seen.append(v)
    return out


def check_grid(grid: Any) -> dict[str, list]:
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a dict of axis name -> list of values, got {grid!r}")
    axes = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"grid axis names must be non-empty strings, got {name!r}")
        axes[name] = axis_values(name, values)
    return axes


def iter_conditions(grid: Mapping[str, Sequence]) -> list[dict]:
    """All conditions of a grid: the Cartesian product of its axes, first axis slowest.

    ``iter_conditions({"a": [1, 2], "b": ["x", "y"]})`` gives ``[{"a": 1, "b": "x"},
    {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]``; an empty grid gives one
    empty condition. Numpy scalars are turned into the Python ones.

    Raises:
        ValueError: if ``grid`` is not a mapping, an axis name is not a non-empty string, an
            axis is empty or not a list, a value is not a str/int/float/bool (or is NaN), an
            axis mixes strings, booleans and numbers, or repeats a value.
    """
    axes = check_grid(grid)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def condition_id(condition: Mapping[str, Any]) -> int:
    """A 64-bit integer naming a condition by its values: ``int(config_hash(condition), 16)``.

    It depends only on the condition itself (axis names, values and their types: 1 and 1.0
    differ), not on its position in a grid.
    """
    return int(io.config_hash(dict(condition)), 16)


def condition_key(condition: Mapping[str, Any]) -> str:
    """A file-name-safe, readable key of a condition, e.g. ``kappa=4.0,loss=cosine-1a2b3c4d``.

    The readable part (axis=value pairs, unsafe characters replaced by ``_``, at most 80
    characters) is followed by 8 hex digits of the condition's hash, so two conditions never
    share a key even when their readable parts do.
    """
    readable = ",".join(f"{k}={v}" for k, v in condition.items())
    readable = UNSAFE_CHARS.sub("_", readable)[:80] or "default"
    return f"{readable}-{io.config_hash(dict(condition))[:8]}"


@dataclass(frozen=True)
class Task:
    """One (condition, replicate) cell of a study: its seed, its cache key and file stem."""

    index: int  # position in the flat (condition, replicate) list, the assembled order
    condition_index: int
    condition: dict
    replicate: int
    seed: int
    key: dict  # everything that determines the result: study config, condition, seeds
    config_hash: str  # io.config_hash(key)
    stem: str  # cache file name without suffix
    code_version: str | None = None  # the study's declared version of its replicate code

    def describe(self) -> str:
        return f"replicate {self.replicate} of condition {self.condition} (seed {self.seed})"


@dataclass(frozen=True)
class StudySpec:
    """What decides a study's replicates and their cache keys, checked once
    (:meth:`checked`): grid axes, replicates per condition, study seed, name, config, the
    replicate code's version and the axes left out of the seeds (``pair_axes``)."""

    axes: dict[str, list]
    n_replicates: int
    seed: int
    name: str
    config: Mapping[str, Any] | None
    code_version: str | None = None
    pair_axes: tuple[str, ...] = ()

    @classmethod
    def checked(cls, grid: Any, n_replicates: Any, seed: Any, name: Any, config: Any,
                code_version: Any = None, pair_axes: Any = ()) -> StudySpec:
        """The spec of :func:`~anglesim.replicates.run_study`'s arguments of these names.

        Raises:
            ValueError: one line naming the argument and its value.
        """
        axes = check_grid(grid)
        for axis in axes:
            if axis in RESERVED_NAMES:
                raise ValueError(f"grid axis name {axis!r} is reserved; reserved names are "
                                 f"{list(RESERVED_NAMES)}")
        n_replicates = check.integer("n_replicates", n_replicates, minimum=1)
        seed = check.integer("seed", seed, minimum=0)
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise check.fail("name", "1-100 letters, digits, '.', '_' or '-' starting with a "
                             "letter or digit", name)
        if config is not None and not isinstance(config, Mapping):
            raise check.fail("config", "a dict or None", config)
        io.to_json(config)  # fail now, not after the computation, if config is not JSON
        if code_version is not None:
            code_version = check.text("code_version", code_version)
        pair = tuple(check.name_list("pair_axes", pair_axes))
        unknown = [a for a in pair if a not in axes]
        if unknown:
            raise check.fail("pair_axes", f"a list of grid axes ({', '.join(axes) or 'none'})",
                             unknown[0])
        return cls(axes, n_replicates, seed, name, config, code_version, pair)

    def tasks(self) -> list[Task]:
        """Every (condition, replicate) task of the study, in the order of the assembled
        Dataset.

        A replicate's seed is ``replicate_seed(seed, condition_id(c'), r)`` where ``c'`` is the
        condition without its ``pair_axes``: conditions that differ only in those axes share
        their replicates' seeds (one parent, many treatments). ``code_version``, when given, is
        part of every task's cache key (the key is unchanged without it, so existing caches
        stay valid).
        """
        tasks: list[Task] = []
        for ci, condition in enumerate(iter_conditions(self.axes)):
            cid = condition_id({k: v for k, v in condition.items() if k not in self.pair_axes})
            stem = condition_key(condition)
            for r in range(self.n_replicates):
                s = replicate_seed(self.seed, cid, r)
                key = {"config": self.config, "condition": condition, "replicate": r,
                       "seed": self.seed, "replicate_seed": s}
                if self.code_version is not None:
                    key["code_version"] = self.code_version
                tasks.append(Task(len(tasks), ci, condition, r, s, key, io.config_hash(key),
                                  f"{stem}__r{r}", self.code_version))
        return tasks
