"""Command-line overrides of a study's configuration, in Hydra's ``key=value`` grammar.

Grammar (one override per argument)::

    override := key "=" value
    key      := name ("." name)*          e.g. kappa, phases.finetune.lr, grid.kappa
    value    := number | bool | null | list | string
    list     := "[" [value ("," value)*] "]"

Values are read as YAML-like literals: ``8`` an integer, ``5e-4`` or ``0.5`` a float,
``true``/``false`` booleans, ``null`` None, ``[2,8]`` a list, ``'8'`` or ``"8"`` the string
"8", anything else a plain string. Keys address the study's declared configuration (its size
entries and defaults, see :class:`~anglesim.study.Study`): ``phases.finetune.lr=5e-4`` sets
that leaf. ``grid.<axis>=[...]`` replaces the values of a grid axis; a bare grid-axis name that
is not also a configuration key (``kappa=8``) means ``grid.kappa=[8]``; ``replicates=6`` sets
the replicates per condition.

A value must have the type of the default it replaces (an integer where an integer is declared;
an integer or a float where a float is; a list where a list is), and a positive default stays
positive; a group (a key holding further keys) cannot be replaced whole.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .. import validation as check

__all__ = ["apply_overrides", "constraint_for", "leaf_keys", "parse_overrides", "parse_value"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def parse_value(text: str) -> Any:
    """A YAML-like literal: number, bool, null, ``[list, …]``, quoted or plain string."""
    value, rest = _value(text.strip(), text)
    if rest.strip():
        raise ValueError(f"override value {text!r} has trailing text {rest.strip()!r}")
    return value


def _value(s: str, whole: str) -> tuple[Any, str]:
    s = s.lstrip()
    if s.startswith("["):
        items: list[Any] = []
        s = s[1:].lstrip()
        if s.startswith("]"):
            return items, s[1:]
        while True:
            item, s = _value(s, whole)
            items.append(item)
            s = s.lstrip()
            if s.startswith(","):
                s = s[1:]
            elif s.startswith("]"):
                return items, s[1:]
            else:
                raise ValueError(f"override value {whole!r} is not a closed list "
                                 "(expected ',' or ']')")
    if s[:1] in ("'", '"'):
        end = s.find(s[0], 1)
        if end < 0:
            raise ValueError(f"override value {whole!r} has an unclosed quote")
        return s[1:end], s[end + 1:]
    m = re.match(r"[^,\[\]]*", s)
    token, rest = m.group(0).strip(), s[m.end():]
    return _scalar(token), rest


def _scalar(token: str) -> Any:
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return float(token)
    return token


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["kappa=8", "phases.finetune.lr=5e-4"]`` → ``{"kappa": 8, "phases.finetune.lr":
    0.0005}``; a later override of the same key wins.

    Raises:
        ValueError: an item without ``=``, a malformed key or value (one line naming it).
    """
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise check.fail("override", "key=value (e.g. kappa=8)", item)
        key, _, raw = item.partition("=")
        key = key.strip()
        if not _KEY.fullmatch(key):
            raise check.fail("override key", "dotted names (e.g. phases.finetune.lr)", key)
        if not raw.strip():
            raise ValueError(f"override {key} has no value, got {item!r}")
        out[key] = parse_value(raw)
    return out


def leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every leaf of a nested configuration."""
    keys: list[str] = []
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            keys += leaf_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def _valid_keys(declared: Mapping, grid: Mapping) -> str:
    keys = leaf_keys(declared) + [f"grid.{a}" for a in grid]
    keys += [a for a in grid if a not in declared]
    return ", ".join(sorted(dict.fromkeys(keys)))


def constraint_for(default: Any) -> check.Constraint | None:
    """The constraint an override of ``default`` must meet: its type (an integer where an
    integer is declared, a number where a float is, true/false, a string) and, for a positive
    number, its sign; None where any value goes (a None default)."""
    if isinstance(default, bool):
        return check.Boolean()
    if isinstance(default, int):
        return check.Integer(minimum=1 if default > 0 else None)
    if isinstance(default, float):
        return check.Real(minimum=0.0, min_open=True) if default > 0 else check.Real()
    if isinstance(default, str):
        return check.Text(allow_empty=True)
    return None


def _checked(key: str, value: Any, default: Any) -> Any:
    """``value`` if it meets :func:`constraint_for` ``default`` (a list element-wise);
    a ValueError naming key and value if not."""
    name = f"override {key}"
    if isinstance(default, list):
        values = value if isinstance(value, list) else [value]
        if not values:
            raise check.fail(name, "a non-empty list", value)
        if default:
            return [_checked(f"{key}[{i}]", v, default[0]) for i, v in enumerate(values)]
        return values
    if default is None:
        return value
    constraint = constraint_for(default)
    if constraint is None:  # pragma: no cover - a declared value of another type
        raise check.fail(name, f"a value like {default!r}", value)
    return constraint(name, value)


def apply_overrides(declared: Mapping[str, Any], grid: Mapping[str, Sequence],
                    given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
    """Apply ``given`` (``{dotted key: value}``) to a declared configuration and its grid.

    Returns ``(params, grid_changes)``: a changed copy of ``declared``, and the grid axes whose
    values were replaced. Raises a one-line ValueError for an unknown key (listing the valid
    ones) or a bad value (naming key and value).
    """
    params = copy.deepcopy(dict(declared))
    changes: dict[str, list] = {}
    for key, value in given.items():
        parts = key.split(".")
        if parts[0] == "grid" and "grid" not in declared:
            if len(parts) != 2 or parts[1] not in grid:
                raise ValueError(f"unknown override key {key!r}; valid keys: "
                                 f"{_valid_keys(declared, grid)}")
            changes[parts[1]] = _grid_values(key, value, grid[parts[1]])
            continue
        if len(parts) == 1 and key in grid and key not in declared:
            changes[key] = _grid_values(key, value, grid[key])
            continue
        node: Any = params
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"unknown override key {key!r}; valid keys: "
                                 f"{_valid_keys(declared, grid)}")
            if i < len(parts) - 1:
                node = node[part]
        default = node[parts[-1]]
        if isinstance(default, Mapping) and default:
            raise ValueError(f"override {key} is a group; set one of its keys: "
                             f"{', '.join(leaf_keys(default, key + '.'))}")
        node[parts[-1]] = _checked(key, value, default)
    return params, changes


def _grid_values(key: str, value: Any, current: Sequence) -> list:
    """New values of a grid axis: a non-empty list without repeats, of numbers where the
    axis holds numbers (floats where it holds floats) and of strings where it holds strings."""
    name = f"override {key}"
    values = value if isinstance(value, list) else [value]
    if not values:
        raise check.fail(name, "a non-empty list", value)
    if len({repr(v) for v in values}) != len(values):
        raise check.fail(name, "a list without repeated values", value)
    sample = current[0] if len(current) else None
    if isinstance(sample, int | float) and not isinstance(sample, bool):
        try:
            checked = [check.real(name, v) for v in values]
        except ValueError:
            raise check.fail(name, "a list of numbers", value) from None
        if isinstance(sample, float):
            values = checked
    elif isinstance(sample, str):
        if not all(isinstance(v, str) for v in values):
            raise check.fail(name, "a list of strings", value)
    return values
