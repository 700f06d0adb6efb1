"""Numbers as the claims tables and reasons print them: significant digits, one minus sign."""

from __future__ import annotations

import math

__all__ = ["DIGITS", "effect", "interval", "number", "p_value"]

DIGITS = 3
"""Significant digits of every estimate, interval bound and MDE."""

MINUS = "\u2212"


def number(x: float | None, digits: int = DIGITS, *, decimals: int | None = None) -> str:
    """``x`` to ``digits`` significant digits (at least ``decimals`` decimals when given):
    fixed notation for ``1e-4 ≤ |x| < 1e6`` (trailing zeros kept, so 0.120 shows its
    precision), scientific outside; "—" for None."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return ("" if x > 0 else MINUS) + "inf"
    if x == 0:
        return "0" if not decimals else f"{0:.{decimals}f}"
    rounded = float(f"{x:.{digits - 1}e}")
    exponent = math.floor(math.log10(abs(rounded)))
    if -4 <= exponent < 6:
        places = max(digits - 1 - exponent, decimals or 0, 0)
        text = f"{x if decimals and places > digits - 1 - exponent else rounded:.{places}f}"
    else:
        text = f"{rounded:.{digits - 1}e}"
    return text.replace("-", MINUS)


def interval(estimate: float | None, low: float | None, high: float | None,
             scale: str) -> str:
    """"estimate [low, high]": each to :data:`DIGITS` significant digits, and to as many
    decimals as show the interval's width to two significant digits (so ×1.0029
    [1.0012, 1.0046] is not printed ×1.00 [1.00, 1.00]); a ratio with "×"."""
    if estimate is None:
        return "—"
    if low is None or high is None:
        return effect(estimate, scale)
    width = high - low
    places = 1 - math.floor(math.log10(width)) if width > 0 and math.isfinite(width) else None
    places = places if places is not None and places > 0 else None
    prefix = "×" if scale == "ratio" else ""
    return (f"{prefix}{number(estimate, decimals=places)} "
            f"[{number(low, decimals=places)}, {number(high, decimals=places)}]")


def p_value(p: float | None) -> str:
    """A p-value to 2 significant digits, "< 0.001" below 0.001, "> 0.99" above 0.99 but
    below 1, "1" at 1; "—" for None."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if p < 0.001:
        return "< 0.001"
    if p >= 1:
        return "1"
    if p > 0.99:
        return "> 0.99"
    return number(p, 2)


def effect(x: float | None, scale: str) -> str:
    """An estimate or MDE on its scale: "×2.74" for a ratio (a fold), the number itself for a
    difference."""
    if x is None:
        return "—"
    return ("×" if scale == "ratio" else "") + number(x)
