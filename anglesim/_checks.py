"""Argument checks shared by the modules: errors name the parameter and the bad value."""

from __future__ import annotations

import math
import numbers
from typing import Any


def real(name: str, value: Any) -> float:
    """``value`` as a finite float, or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return out
