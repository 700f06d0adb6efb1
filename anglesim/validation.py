"""Argument checks shared by every module: one message format, numpy scalars accepted.

Every public constructor and estimator validates its arguments on entry with these helpers, so
a bad value fails at construction with one line naming the parameter and the value::

    <param> must be <what is expected>, got <value!r>

Python and numpy scalars (``np.int64(3)``, ``np.float32(0.5)``) are accepted wherever Python
ones are; ``bool`` is never taken for a number, and strings are never taken for numbers or
sequences of names.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "boolean",
    "choice",
    "fail",
    "finite_array",
    "integer",
    "name_list",
    "real",
    "text",
]


def fail(name: str, expected: str, value: Any) -> ValueError:
    """The error for parameter ``name``: ``"<name> must be <expected>, got <value!r>"``."""
    return ValueError(f"{name} must be {expected}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bounds(minimum: float | None, maximum: float | None, min_open: bool,
            max_open: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum:g}")
    return " and ".join(parts)


def real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a float, finite unless ``finite=False``, within the bounds given.

    ``min_open``/``max_open`` make a bound strict (``> minimum`` instead of ``>= minimum``).
    NaN is always refused; ±inf only passes with ``finite=False`` and a bound that allows it.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise fail(name, "a real number" + _suffix(minimum, maximum, min_open, max_open), value)
    out = float(value)
    if math.isnan(out) or (finite and math.isinf(out)):
        raise fail(name, "a finite real number"
                   + _suffix(minimum, maximum, min_open, max_open), value)
    if minimum is not None and (out < minimum or (min_open and out == minimum)):
        raise fail(name, _bounds(minimum, maximum, min_open, max_open), value)
    if maximum is not None and (out > maximum or (max_open and out == maximum)):
        raise fail(name, _bounds(minimum, maximum, min_open, max_open), value)
    return out


def _suffix(minimum, maximum, min_open, max_open) -> str:
    bounds = _bounds(minimum, maximum, min_open, max_open)
    return f" {bounds}" if bounds else ""


def integer(name: str, value: Any, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """``value`` as an int (Python or numpy integer, not bool, not a float) within bounds."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise fail(name, "an integer" + _suffix(minimum, maximum, False, False), value)
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise fail(name, "an integer " + _bounds(minimum, maximum, False, False), value)
    return out


def boolean(name: str, value: Any) -> bool:
    """``value`` as a bool (Python or numpy bool only: 0, 1 and "yes" are refused)."""
    if not isinstance(value, bool | np.bool_):
        raise fail(name, "True or False", value)
    return bool(value)


def text(name: str, value: Any, *, allow_empty: bool = False) -> str:
    """``value`` as a str (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str) or (not allow_empty and not value):
        raise fail(name, "a non-empty string" if not allow_empty else "a string", value)
    return value


def choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared with ==), else an error listing them."""
    options = list(choices)
    try:
        ok = not isinstance(value, bool | np.bool_) and any(value == c for c in options)
    except Exception:  # noqa: BLE001 - an array or odd object compared to a string
        ok = False
    if not ok:
        raise fail(name, "one of " + ", ".join(repr(c) for c in options), value)
    return value


def name_list(name: str, value: Any, *, allow_empty: bool = True) -> list[str]:
    """A sequence of strings as a list; a bare string is refused (it is not split)."""
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset | tuple):
        raise fail(name, "a list of names (a bare string is not split into characters)", value)
    out = list(value)
    for i, item in enumerate(out):
        if not isinstance(item, str) or not item:
            raise fail(f"{name}[{i}]", "a non-empty string", item)
    if not allow_empty and not out:
        raise fail(name, "a non-empty list of names", value)
    return out


def finite_array(name: str, value: Any, *, ndim: int | None = None,
                 dtype: Any = np.float64) -> np.ndarray:
    """``value`` (array-like or tensor) as a numpy array whose entries are all finite."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, str):
        raise fail(name, "an array of numbers", value)
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise fail(name, "an array of numbers", value) from None
    if ndim is not None and arr.ndim != ndim:
        raise fail(name, f"a {ndim}-d array", f"shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise fail(name, "finite everywhere", f"{bad} NaN or infinite entries of {arr.size}")
    return arr
