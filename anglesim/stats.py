"""Intervals the studies and figures rest on: one module, so every band means the same thing.

* :func:`mean_ci` — the mean over replicates and the half-width of its Student-t interval
  (unchanged; any n ≥ 2 gets a band, however wide).
* :func:`paired_ci` — the mean paired difference a − b over replicates and its t half-width
  (moved unchanged from ``finetune_shift.analysis``).
* :func:`welch_ci` — the difference of two independent means and its Welch t half-width
  (moved unchanged from the multitask study).
* :func:`interval` — the rule figures use: the same t interval, but **no band** where fewer
  than ``min_n`` replicates are valid (with 2 replicates t₀.₉₇₅,₁ = 12.7 and a band spans
  ±9 sample SDs: decoding-error bands reached 400° and log-FI axes 10⁻²⁷–10²³), optionally
  on the log scale (geometric mean, for Fisher information) and clipped to the quantity's
  range; with a caption that says which rule was applied (:func:`band_caption`).

Bands over trials within one network come from the Fisher package's estimators
(:func:`anglesim.fisher.bootstrap_replicates` for bands over replicates of FI curves).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from scipy import stats as _st

from . import validation as check

__all__ = ["band_caption", "interval", "mean_ci", "paired_ci", "welch_ci"]

LEVEL = check.Real(0.0, 1.0, min_open=True, max_open=True)
"""A confidence level, 0 < level < 1."""


def data_array(name: str, value: object, dim: str | None = None) -> xr.DataArray:
    """``value`` if it is a DataArray (with dimension ``dim`` when given)."""
    if not isinstance(value, xr.DataArray):
        raise check.fail(name, "a DataArray" + (f" with a {dim!r} dim" if dim else ""), value)
    if dim is not None and dim not in value.dims:
        raise check.fail("dim", f"one of {name}'s dims {value.dims}", dim)
    return value


def mean_ci(da: xr.DataArray, dim: str = "replicate", level: float = 0.95):
    """Mean over ``dim`` and the half-width of its Student-t confidence interval (NaN-aware).

    With one valid replicate the half-width is 0 (no band is drawn).
    """
    data_array("da", da, dim)
    level = LEVEL("level", level)
    mean = da.mean(dim, skipna=True)
    n = da.count(dim)
    sem = da.std(dim, ddof=1, skipna=True) / np.sqrt(n)
    t = xr.apply_ufunc(lambda k: _st.t.ppf(0.5 + level / 2, np.maximum(k - 1, 1)), n)
    half = (t * sem).where(n > 1, 0.0)
    return mean, half


def paired_ci(a: xr.DataArray, b: xr.DataArray, level: float = 0.95) -> tuple[float, float]:
    """Mean of the paired differences d = a − b over replicates and its Student-t half-width,

        d̄ ± t_{n−1, (1+level)/2} · s_d/√n,

    over the replicates where both are valid; the half-width is NaN below 2 pairs (and the
    mean too with none). ``a`` and ``b`` are 1-D over ``replicate`` (e.g. two strategies'
    errors on the same networks: the pairing removes the networks' shared variation).
    """
    data_array("a", a, "replicate")
    data_array("b", b, "replicate")
    level = LEVEL("level", level)
    d = (a - b).dropna("replicate").values
    if d.size < 2:
        return float(np.mean(d)) if d.size else math.nan, math.nan
    half = _st.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(half)


def welch_ci(a: xr.DataArray, b: xr.DataArray, dim: str = "replicate",
             level: float = 0.95) -> tuple[xr.DataArray, xr.DataArray]:
    """Difference of means mean(a) − mean(b) over ``dim`` and the half-width of its Welch
    t interval (Welch 1947, Biometrika 34: 28–35), NaN-aware:

        t_{ν, (1+level)/2} · √(s_a²/n_a + s_b²/n_b),
        ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))

    (the Welch–Satterthwaite degrees of freedom; for independent groups of unequal variance,
    e.g. replicates of two regimes that trained different networks).
    """
    data_array("a", a, dim)
    data_array("b", b, dim)
    level = LEVEL("level", level)
    na, nb = a.count(dim), b.count(dim)
    va, vb = a.var(dim, ddof=1) / na, b.var(dim, ddof=1) / nb
    nu = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    t = xr.apply_ufunc(lambda v: _st.t.ppf(0.5 + level / 2, v), nu.fillna(1.0))
    return a.mean(dim) - b.mean(dim), t * np.sqrt(va + vb)


def interval(
    da: xr.DataArray,
    dim: str = "replicate",
    level: float = 0.95,
    *,
    bounds: tuple[float | None, float | None] | None = None,
    min_n: int = 3,
    log: bool = False,
    what: str = "replicates",
) -> xr.Dataset:
    """Mean over ``dim`` with a Student-t interval, and no band where n < ``min_n``.

    With n the valid (non-NaN) values at each index, m their mean and s their SD,

        low, high = m ∓ t_{n−1, (1+level)/2} · s/√n        where n ≥ min_n, else NaN,

    so a figure's ``fill_between(x, low, high)`` draws nothing where the band would be
    meaningless. ``log=True`` takes the mean and interval of ln x (x > 0; zero and negative
    values count as missing) and returns exp of them: the geometric mean and a band that stays
    positive (for Fisher information). ``bounds=(lo, hi)`` (either may be None) clips the
    band to the quantity's range, e.g. ``(0, 90)`` for an absolute orientation error in
    degrees. The mean is given wherever n ≥ 1.

    Returns a Dataset over the remaining dims with ``mean``, ``low``, ``high`` and ``n``, and
    attrs ``caption`` (:func:`band_caption`: e.g. "bands: 95% t intervals over 3–5
    replicates; no band where n < 3"), ``level``, ``min_n``, ``scale`` ("log" or "linear").
    """
    data_array("da", da, dim)
    level = LEVEL("level", level)
    min_n = check.integer("min_n", min_n, minimum=2)
    log = check.boolean("log", log)
    lo, hi = _check_bounds(bounds)
    values = da.astype(np.float64)
    if log:
        values = np.log(values.where(values > 0))
    n = values.count(dim)
    mean = values.mean(dim, skipna=True)
    sem = values.std(dim, ddof=1, skipna=True) / np.sqrt(n.where(n > 0))
    t = xr.apply_ufunc(lambda k: _st.t.ppf(0.5 + level / 2, np.where(k > 1, k - 1, np.nan)),
                       n.where(n >= min_n))
    low, high = mean - t * sem, mean + t * sem
    if log:
        mean, low, high = np.exp(mean), np.exp(low), np.exp(high)
    clipped = False
    if lo is not None or hi is not None:
        band = xr.concat([low, high], "_bound")
        clipped = bool((lo is not None and (band < lo).any())
                        or (hi is not None and (band > hi).any()))
        low, high = low.clip(lo, hi), high.clip(lo, hi)
    caption = band_caption(n, min_n, level, what=what, log=log,
                           clipped=(lo, hi) if clipped else None)
    out = xr.Dataset({"mean": mean, "low": low, "high": high, "n": n})
    for name in ("mean", "low", "high"):
        out[name].attrs = dict(da.attrs)
    out["n"].attrs = {"long_name": f"number of valid {what}"}
    out.attrs = {"caption": caption, "level": level, "min_n": min_n,
                 "scale": "log" if log else "linear"}
    return out


def band_caption(
    n: xr.DataArray | np.ndarray | int,
    min_n: int = 3,
    level: float = 0.95,
    *,
    what: str = "replicates",
    log: bool = False,
    clipped: tuple[float | None, float | None] | None = None,
) -> str:
    """One line for a figure's caption saying what its bands are and where there are none.

    ``n`` holds the valid counts behind the bands (as :func:`interval` returns them).
    Examples: "bands: 95% t intervals over 4 replicates", "bands: 95% t intervals of the
    log over 3–5 replicates; no band where n < 3", "no band: n < 3 replicates (n = 2)".
    """
    counts = np.asarray(n).ravel()
    counts = counts[counts > 0] if counts.size else counts
    if counts.size == 0:
        return f"no data: 0 {what}"
    low_n, high_n = int(counts.min()), int(counts.max())
    span = f"{low_n}" if low_n == high_n else f"{low_n}–{high_n}"
    if high_n < min_n:
        return f"no band: n < {min_n} {what} (n = {span})"
    band = (f"bands: {level:.0%} t intervals{' of the log' if log else ''} over "
            f"{span} {what}")
    if low_n < min_n:
        band += f"; no band where n < {min_n}"
    if clipped is not None:
        lo, hi = clipped
        band += (f"; clipped to [{'-inf' if lo is None else f'{lo:g}'}, "
                 f"{'inf' if hi is None else f'{hi:g}'}]")
    return band


def _check_bounds(bounds: object) -> tuple[float | None, float | None]:
    if bounds is None:
        return None, None
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise check.fail("bounds", "a pair (lo, hi), either of which may be None", bounds)
    lo = None if bounds[0] is None else check.real("bounds[0]", bounds[0])
    hi = None if bounds[1] is None else check.real("bounds[1]", bounds[1])
    if lo is not None and hi is not None and not lo < hi:
        raise check.fail("bounds", "(lo, hi) with lo < hi", bounds)
    return lo, hi
