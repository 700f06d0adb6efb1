"""Argument checks shared by every module: one message format, numpy scalars accepted.

Every public constructor and estimator validates its arguments on entry with these helpers, so
a bad value fails at construction with one line naming the parameter and the value::

    <param> must be <what is expected>, got <value!r>

Python and numpy scalars (``np.int64(3)``, ``np.float32(0.5)``) are accepted wherever Python
ones are; ``bool`` is never taken for a number, and strings are never taken for numbers or
sequences of names.

Two layers, one implementation per kind of check:

* the checks themselves, one function per kind (:func:`integer`, :func:`real`,
  :func:`choice`, :func:`device`, :func:`generator`, …), each returning the converted value;
* parameters declared as data: an entry point declares ``{name: constraint}`` once
  (:class:`Integer`, :class:`Real`, :class:`Choice`, :class:`Device`, :class:`Optional`, …; each
  calls the check of its kind) and :func:`validate` checks a whole set of parameters, refusing
  undeclared names with the list of declared ones (the shape of scikit-learn's
  ``_parameter_constraints``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "AnyOf",
    "Array",
    "Boolean",
    "Check",
    "Choice",
    "Constraint",
    "Device",
    "Function",
    "Generator",
    "Instance",
    "Integer",
    "Names",
    "Optional",
    "Real",
    "Text",
    "boolean",
    "choice",
    "device",
    "fail",
    "finite_array",
    "function",
    "generator",
    "instance",
    "integer",
    "name_list",
    "real",
    "text",
    "validate",
]


def fail(name: str, expected: str, value: Any) -> ValueError:
    """The error for parameter ``name``: ``"<name> must be <expected>, got <value!r>"``."""
    return ValueError(f"{name} must be {expected}, got {_show(value)}")


def _show(value: Any) -> str:
    text = " ".join(repr(value).split())  # one line, whatever the repr (numpy arrays)
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


def device(name: str, value: Any, *, allow_none: bool = True) -> Any:
    """``value`` as a ``torch.device`` (None stays None unless ``allow_none=False``).

    Accepts a ``torch.device`` or a string torch parses (``"cpu"``, ``"cuda:0"``).
    """
    import torch

    if value is None and allow_none:
        return None
    if isinstance(value, torch.device):
        return value
    if isinstance(value, str):
        try:
            return torch.device(value)
        except (RuntimeError, ValueError):
            pass
    raise fail(name, ("None, " if allow_none else "")
               + "a torch.device or a device string such as 'cpu' or 'cuda:0'", value)


def generator(name: str, value: Any, *, kind: str = "torch", allow_none: bool = True) -> Any:
    """``value`` if it is a random generator of ``kind`` (``"torch"``: ``torch.Generator``;
    ``"numpy"``: ``numpy.random.Generator``), or None when ``allow_none``."""
    if value is None and allow_none:
        return None
    if kind == "torch":
        import torch

        ok, what = isinstance(value, torch.Generator), "a torch.Generator"
    elif kind == "numpy":
        ok, what = isinstance(value, np.random.Generator), "a numpy.random.Generator"
    else:  # pragma: no cover - a programming error in a declaration
        raise ValueError(f"kind must be 'torch' or 'numpy', got {kind!r}")
    if not ok:
        raise fail(name, ("None or " if allow_none else "") + what, value)
    return value


def instance(name: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is an instance of ``types`` (described to the user as ``what``)."""
    if not isinstance(value, types):
        raise fail(name, what, value)
    return value


def function(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """``value`` if it is callable (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise fail(name, ("None or " if allow_none else "") + "a callable", value)
    return value


# --------------------------------------------------------------------------------------------
# parameters declared as data
#
# A public entry point declares its parameters once, as a mapping from name to constraint
# (``{"lr": Real(minimum=0, min_open=True), "epochs": Integer(minimum=1), ...}``), and checks
# them with :func:`validate`; each constraint calls the one check of its kind above, so there is
# one implementation per kind of check and one message format.


class Constraint:
    """A declared constraint on one parameter: ``constraint(name, value)`` returns the value
    (converted: numpy scalars to Python ones, device strings to ``torch.device``) or raises
    ``ValueError("<name> must be …, got <value>")``. ``describe()`` says what it accepts."""

    def __call__(self, name: str, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class Integer(Constraint):
    """An int (Python or numpy, never bool or float) within ``[minimum, maximum]``."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def __call__(self, name: str, value: Any) -> int:
        return integer(name, value, minimum=self.minimum, maximum=self.maximum)

    def describe(self) -> str:
        return "an integer" + _suffix(self.minimum, self.maximum, False, False)


class Real(Constraint):
    """A real number (never bool), finite unless ``finite=False``, within the bounds
    (``min_open``/``max_open`` make a bound strict)."""

    def __init__(self, minimum: float | None = None, maximum: float | None = None, *,
                 min_open: bool = False, max_open: bool = False, finite: bool = True) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.min_open, self.max_open, self.finite = min_open, max_open, finite

    def __call__(self, name: str, value: Any) -> float:
        return real(name, value, minimum=self.minimum, maximum=self.maximum,
                    min_open=self.min_open, max_open=self.max_open, finite=self.finite)

    def describe(self) -> str:
        return "a real number" + _suffix(self.minimum, self.maximum, self.min_open,
                                         self.max_open)


class Boolean(Constraint):
    """True or False (Python or numpy bool only)."""

    def __call__(self, name: str, value: Any) -> bool:
        return boolean(name, value)

    def describe(self) -> str:
        return "True or False"


class Text(Constraint):
    """A string, non-empty unless ``allow_empty``."""

    def __init__(self, allow_empty: bool = False) -> None:
        self.allow_empty = allow_empty

    def __call__(self, name: str, value: Any) -> str:
        return text(name, value, allow_empty=self.allow_empty)

    def describe(self) -> str:
        return "a string" if self.allow_empty else "a non-empty string"


class Choice(Constraint):
    """One of ``options`` (compared with ==)."""

    def __init__(self, options: Iterable[Any]) -> None:
        self.options = tuple(options)

    def __call__(self, name: str, value: Any) -> Any:
        return choice(name, value, self.options)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.options)


class Names(Constraint):
    """A list of non-empty strings (a bare string is refused), non-empty unless
    ``allow_empty``."""

    def __init__(self, allow_empty: bool = True) -> None:
        self.allow_empty = allow_empty

    def __call__(self, name: str, value: Any) -> list[str]:
        return name_list(name, value, allow_empty=self.allow_empty)

    def describe(self) -> str:
        return "a list of names" if self.allow_empty else "a non-empty list of names"


class Device(Constraint):
    """A ``torch.device`` or a device string (None allowed unless ``allow_none=False``)."""

    def __init__(self, allow_none: bool = True) -> None:
        self.allow_none = allow_none

    def __call__(self, name: str, value: Any) -> Any:
        return device(name, value, allow_none=self.allow_none)

    def describe(self) -> str:
        return "a torch device"


class Generator(Constraint):
    """A random generator of ``kind`` ("torch" or "numpy"); None unless ``allow_none=False``."""

    def __init__(self, kind: str = "torch", allow_none: bool = True) -> None:
        self.kind, self.allow_none = choice("kind", kind, ("torch", "numpy")), allow_none

    def __call__(self, name: str, value: Any) -> Any:
        return generator(name, value, kind=self.kind, allow_none=self.allow_none)

    def describe(self) -> str:
        return f"a {self.kind} generator"


class Instance(Constraint):
    """An instance of ``types``, described to the user as ``what``."""

    def __init__(self, types: type | tuple[type, ...], what: str) -> None:
        self.types, self.what = types, what

    def __call__(self, name: str, value: Any) -> Any:
        return instance(name, value, self.types, self.what)

    def describe(self) -> str:
        return self.what


class Function(Constraint):
    """A callable."""

    def __call__(self, name: str, value: Any) -> Any:
        return function(name, value)

    def describe(self) -> str:
        return "a callable"


class Array(Constraint):
    """An array-like or tensor of finite numbers (``ndim`` dimensions when given), returned as a
    float64 numpy array."""

    def __init__(self, ndim: int | None = None) -> None:
        self.ndim = ndim

    def __call__(self, name: str, value: Any) -> np.ndarray:
        return finite_array(name, value, ndim=self.ndim)

    def describe(self) -> str:
        return "an array of finite numbers"


class Optional(Constraint):
    """None, or a value ``inner`` accepts. An error ``inner`` raises about one element of the
    value (``"blocks[1] must be …"``) is passed on as it is, since it says more."""

    def __init__(self, inner: Constraint) -> None:
        self.inner = inner

    def __call__(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.inner(name, value)
        except ValueError as err:
            if str(err).startswith(f"{name}["):
                raise
            raise fail(name, "None or " + self.inner.describe(), value) from None

    def describe(self) -> str:
        return "None or " + self.inner.describe()


class AnyOf(Constraint):
    """A value that one of ``options`` accepts (tried in order; the first that accepts it
    converts it)."""

    def __init__(self, *options: Constraint) -> None:
        if not options:
            raise ValueError("AnyOf needs at least one constraint")
        self.options = options

    def __call__(self, name: str, value: Any) -> Any:
        for option in self.options:
            try:
                return option(name, value)
            except ValueError:
                continue
        raise fail(name, self.describe(), value)

    def describe(self) -> str:
        return " or ".join(option.describe() for option in self.options)


class Check(Constraint):
    """A constraint given by a function ``fn(name, value) -> value`` that raises
    ``ValueError`` in the one format itself (for checks of a kind found in one place only),
    described as ``what``."""

    def __init__(self, fn: Any, what: str) -> None:
        self.fn, self.what = fn, what

    def __call__(self, name: str, value: Any) -> Any:
        return self.fn(name, value)

    def describe(self) -> str:
        return self.what


def validate(params: Mapping[str, Any], constraints: Mapping[str, Constraint], *,
             owner: str | None = None, partial: bool = False) -> dict[str, Any]:
    """Check ``params`` against declared ``constraints``; the checked (converted) values.

    A name not declared raises ValueError listing the declared ones; a bad value raises
    ``"<owner>: <name> must be …, got <value>"`` (``owner``, e.g. ``"strategy 'lora'"``, names
    whose parameter it is, where the bare name would be ambiguous). Every declared name must be
    given unless ``partial=True`` (defaults merged in before, or checked later).
    """
    if not isinstance(params, Mapping):
        raise fail(owner or "params", "a dict of parameters", params)
    prefix = f"{owner}: " if owner else ""
    unknown = sorted(str(k) for k in params if k not in constraints)
    if unknown:
        raise ValueError(f"{prefix}unknown parameter(s) {unknown}; the parameters are "
                         f"{sorted(constraints)}")
    if not partial:
        missing = sorted(k for k in constraints if k not in params)
        if missing:
            raise ValueError(f"{prefix}missing parameter(s) {missing}")
    return {k: constraints[k](prefix + str(k), v) for k, v in params.items()}
