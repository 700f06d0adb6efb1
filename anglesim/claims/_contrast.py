"""The declaration: :class:`Contrast`, one planned comparison a study lists next to its grid."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from .. import validation as check

__all__ = ["DIRECTIONS", "SCALES", "Contrast", "callable_label", "matches"]

DIRECTIONS = ("greater", "less", "differs", "equivalent")
"""What a claim asserts about ``arm`` relative to ``against``: larger, smaller, different
(either way), or equal within ``margin``."""

SCALES = ("difference", "ratio")
"""``difference``: arm − against in the measure's units; ``ratio``: arm / against, tested on
the log scale and reported back-transformed (a fold change)."""

Measure = str | Callable[[xr.Dataset], xr.DataArray]
Reference = Mapping[str, Any] | float | str | Callable[[xr.Dataset], xr.DataArray]


def _scalar(name: str, value: Any) -> Any:
    """A coordinate value: a string, a bool or a finite real, as the Python scalar."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    raise check.fail(name, "a coordinate value (a string, a bool or a finite number)", value)


def _selection(name: str, value: Any, *, lists: bool = False) -> dict[str, Any]:
    """A mapping from dimension name to one coordinate value (or, with ``lists``, to a list of
    values that keeps the dimension)."""
    what = ("a dict from dimension name to a coordinate value or a list of values" if lists
            else "a dict from dimension name to one coordinate value")
    if not isinstance(value, Mapping):
        raise check.fail(name, what, value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        check.text(f"{name} key", key)
        if lists and isinstance(item, list | tuple):
            if not item:
                raise check.fail(f"{name}[{key!r}]", "a non-empty list of values", item)
            out[key] = [_scalar(f"{name}[{key!r}]", v) for v in item]
        else:
            out[key] = _scalar(f"{name}[{key!r}]", item)
    return out


def _arm(name: str, value: Any) -> dict[str, Any]:
    out = _selection(name, value)
    if not out:
        raise check.fail(name, "a non-empty dict from dimension name to a coordinate value",
                         value)
    return out


def _against(name: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return _arm(name, value)
    if isinstance(value, str):
        return check.text(name, value)
    if callable(value):
        return value
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise check.fail(name, "an arm (a dict of selections), a number, the name of a data "
                         "variable or a callable ds -> DataArray", value)
    return check.real(name, value)


def _one_line(name: str, value: Any) -> str:
    value = check.text(name, value)
    if "\n" in value or "\r" in value:
        raise check.fail(name, "one line of text", value)
    return value


def callable_label(fn: Any) -> str | None:
    label = getattr(fn, "__name__", None)
    return None if label is None or label == "<lambda>" else label


_CONSTRAINTS = {
    "name": check.Check(_one_line, "one line of text"),
    "statement": check.Check(_one_line, "one line of text"),
    "measure": check.AnyOf(check.Text(), check.Function()),
    "arm": check.Check(_selection, "a dict from dimension name to one coordinate value"),
    "against": check.Check(_against, "an arm, a number, a variable name or a callable"),
    "direction": check.Choice(DIRECTIONS),
    "paired": check.Optional(check.Boolean()),
    "where": check.Check(lambda n, v: _selection(n, v, lists=True), "a dict of selections"),
    "over": check.Names(),
    "scale": check.Choice(SCALES),
    "margin": check.Optional(check.Real(minimum=0, min_open=True)),
    "label": check.Optional(check.Check(_one_line, "one line of text")),
    "exploratory": check.Boolean(),
}


@dataclass(frozen=True, kw_only=True)
class Contrast:
    """One planned comparison of a study, declared as data and checked at construction.

    Args:
        name: a short identifier, unique in the study (members of an expanded contrast are
            named ``name[axis=value, …]``).
        statement: the claim in one line, as the results page states it.
        measure: the data variable compared, or a callable ``ds -> DataArray`` giving one
            value per replicate and cell (a derived measure, e.g. the mean log₂ FI over the
            near window); it must keep the ``replicate`` dimension.
        arm: the selection that picks the arm the claim is about, ``{dim: value}`` over grid
            axes or any other dimension of the measure (e.g. ``{"strategy": "surgical"}``);
            may be empty against a reference (the measure in the cell is the arm).
        against: what the arm is compared with: another arm (a dict like ``arm``), a fixed
            number (a law's prediction, 0, 1), or a reference that varies by cell or replicate
            (the name of a data variable, or a callable ``ds -> DataArray``).
        direction: what the claim asserts about arm relative to against: ``"greater"``,
            ``"less"``, ``"differs"`` (either way) or ``"equivalent"`` (within ``margin``).
        paired: for two arms, True to pair them by replicate (the arms share each replicate's
            parent or seed, so the test is a paired t test on the differences) or False
            (independent replicates, Welch's t test); must be None against a reference value.
        where: further selections fixing the cell, ``{dim: value}``; a list of values keeps
            the dimension and restricts an ``over`` axis to those values.
        over: dimensions to expand over: one family member per value (per combination of
            values, in order), each tested and Holm-adjusted as its own contrast.
        scale: ``"difference"`` (arm − against, in the measure's units) or ``"ratio"``
            (arm / against, tested as a difference of natural logs and reported as a fold).
        margin: for ``"equivalent"`` only (and required there): the equivalence margin,
            in the measure's units for differences, as a fold > 1 for ratios (1.1 means
            within ×1/1.1 … ×1.1).
        label: what the records call a callable measure or reference (defaults to its
            ``__name__``; required for a lambda).
        exploratory: True for a post-hoc comparison, reported apart from the declared claims
            and outside the Holm family (no verdict).

    Every field is validated here; a bad value raises ``ValueError`` in one line, e.g.
    ``"contrast 'surgical_vs_full': direction must be one of 'greater', …, got 'lower'"``.
    Whether the names and values exist in a Dataset is checked when the contrast is
    evaluated (:func:`~anglesim.claims.evaluate_claims`), or against a grid with
    :meth:`check_grid`.
    """

    name: str
    statement: str
    measure: Measure
    against: Reference
    direction: str
    arm: Mapping[str, Any] = field(default_factory=dict)
    paired: bool | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    over: Sequence[str] = ()
    scale: str = "difference"
    margin: float | None = None
    label: str | None = None
    exploratory: bool = False

    def __post_init__(self) -> None:
        params = {f: getattr(self, f) for f in _CONSTRAINTS}
        owner = (f"contrast {self.name!r}" if isinstance(self.name, str) and self.name
                 else "contrast")
        values = check.validate(params, _CONSTRAINTS, owner=owner)
        values["over"] = tuple(values["over"])
        for key, value in values.items():
            object.__setattr__(self, key, value)
        self._check_fields(owner)

    def _check_fields(self, owner: str) -> None:
        def fail(param: str, expected: str, value: Any) -> ValueError:
            return check.fail(f"{owner}: {param}", expected, value)

        two_arms = isinstance(self.against, dict)
        if "[" in self.name or "]" in self.name:
            raise fail("name", "a name without brackets (they mark expanded members)",
                       self.name)
        if two_arms and self.paired is None:
            raise fail("paired", "True or False for a contrast between two arms", None)
        if not two_arms and self.paired is not None:
            raise fail("paired", "None against a reference value (the test is one-sample)",
                       self.paired)
        if two_arms:
            if not self.arm:
                raise fail("arm", "a non-empty selection for a contrast between two arms",
                           self.arm)
            if set(self.against) != set(self.arm):
                raise fail("against", f"an arm selecting the same dimensions as arm "
                                      f"{sorted(self.arm)}", self.against)
            if self.against == self.arm:
                raise fail("against", "an arm different from arm", self.against)
        if self.direction == "equivalent" and self.margin is None:
            raise fail("margin", "a positive number for an equivalence claim", None)
        if self.direction != "equivalent" and self.margin is not None:
            raise fail("margin", "None unless direction is 'equivalent'", self.margin)
        if self.scale == "ratio" and self.margin is not None and self.margin <= 1:
            raise fail("margin", "a fold > 1 on the ratio scale", self.margin)
        if (self.scale == "ratio" and isinstance(self.against, float)
                and self.against <= 0):
            raise fail("against", "a positive reference on the ratio scale", self.against)
        if len(set(self.over)) != len(self.over):
            raise fail("over", "distinct dimension names", list(self.over))
        selected = set(self.arm) | {k for k, v in self.where.items() if not isinstance(v, list)}
        for dim in self.over:
            if dim in selected:
                raise fail("over", f"dimensions not fixed by arm or where ({sorted(selected)})",
                           list(self.over))
        for key, value in self.where.items():
            if key in self.arm:
                raise fail("where", f"selections of dimensions other than arm's "
                                    f"{sorted(self.arm)}", self.where)
            if isinstance(value, list) and key not in self.over:
                raise fail(f"where[{key!r}]", "one value (a list is only for an 'over' "
                                              "dimension)", value)
        for what, value in (("measure", self.measure), ("against", self.against)):
            if callable(value) and self.label is None and callable_label(value) is None:
                raise fail("label", f"a name for the callable {what} (a lambda has none)",
                           None)

    # ----------------------------------------------------------------------------------------

    @property
    def two_arms(self) -> bool:
        """Whether the contrast compares two arms (else an arm against a reference)."""
        return isinstance(self.against, dict)

    @property
    def measure_name(self) -> str:
        """The measure as the records name it: the variable, or the callable's label."""
        if isinstance(self.measure, str):
            return self.measure
        return self.label or callable_label(self.measure) or "measure"

    @property
    def against_label(self) -> Any:
        """``against`` as the records hold it: the arm dict, the number, or a name."""
        if callable(self.against):
            return self.label or callable_label(self.against) or "reference"
        return self.against

    def check_grid(self, grid: Mapping[str, Sequence[Any]]) -> None:
        """Check the selections that name grid axes against the grid's values (a study can
        call this when it is declared; dimensions that are not grid axes, such as a
        ``strategy`` dimension inside each replicate's Dataset, are checked at evaluation).

        Raises:
            ValueError: ``"contrast 'x': arm['shift'] must be one of …, got …"``.
        """
        owner = f"contrast {self.name!r}"
        selections = [("arm", self.arm), ("where", self.where)]
        if self.two_arms:
            selections.append(("against", self.against))
        for what, selection in selections:
            for key, value in selection.items():
                if key not in grid:
                    continue
                options = [v.item() if isinstance(v, np.generic) else v for v in grid[key]]
                for item in value if isinstance(value, list) else [value]:
                    if not any(matches(item, option) for option in options):
                        raise check.fail(f"{owner}: {what}[{key!r}]",
                                         "one of " + ", ".join(repr(o) for o in options), item)


def matches(value: Any, option: Any) -> bool:
    """Whether a declared value names a coordinate value (floats to within float32 rounding)."""
    if isinstance(value, str) or isinstance(option, str):
        return str(value) == str(option)
    if isinstance(value, bool) or isinstance(option, bool | np.bool_):
        return isinstance(value, bool) and isinstance(option, bool | np.bool_) and (
            value == bool(option))
    try:
        a, b = float(value), float(option)
    except (TypeError, ValueError):
        return False
    return a == b or math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)
