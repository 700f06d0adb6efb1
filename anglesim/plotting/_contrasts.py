"""Panels for the claims a figure makes: the paired difference where a claim is paired, and
points with intervals for ratios (or any positive quantity) on a log axis, where bars would
mislead (a bar's length on a log axis depends on where the axis starts)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, Locator, LogLocator, MaxNLocator, NullLocator

from .. import validation as check
from ..stats import interval
from ._intervals import MIN_BAND_N, record

__all__ = ["RatioLocator", "paired_difference", "ratio_points"]

REFERENCE_GID = "anglesim-reference"
"""``gid`` of the reference line (zero difference, ratio 1) the panels below draw once."""


def paired_difference(ax: Axes, a: xr.DataArray, b: xr.DataArray, *, x=None,
                      dim: str = "replicate", ratio: bool = False, colour="0.15",
                      label: str | None = None, connect: bool = True,
                      min_n: int = MIN_BAND_N, level: float = 0.95,
                      spread: float = 0.12) -> xr.Dataset:
    """The paired contrast b − a: one dot per replicate, their mean and its paired t interval,
    and the zero line — the figure of a paired claim (two unpaired intervals of a and b hide
    the pairing, which removes the variation the replicates share).

    Per replicate i (pairs where both are valid), dᵢ = bᵢ − aᵢ; drawn are the dᵢ and
    d̄ ± t_{n−1, (1+level)/2} · s_d/√n (Student 1908; :func:`anglesim.stats.interval`, no
    interval below ``min_n`` pairs). ``ratio=True`` takes rᵢ = bᵢ/aᵢ of positive values
    instead, on a log axis with the line at 1: the geometric mean ratio and the t interval of
    ln r. ``a`` and ``b`` share the ``dim`` coordinate (pairs are matched by it) and have at
    most one other dim between them (one may lack it: one baseline against several arms),
    whose entries are drawn side by side at ``x`` (default 0, 1, …, labelled with that
    dim's values); ``connect`` joins each replicate's dots across them. Dots sit at
    x − ``spread``, the mean at x + ``spread``. Returns the interval Dataset (``mean``,
    ``low``, ``high``, ``n``), recorded for :func:`caption`.
    """
    a, b = _paired(a, b, dim)
    if ratio:
        d = (b / a).where((a > 0) & (b > 0))
    else:
        d = b - a
    out = interval(d, dim, level=level, min_n=min_n, log=ratio, what="pairs")
    xs, others = _positions(ax, d, dim, x)
    per = d.transpose(*others, dim).values.reshape(len(xs), d.sizes[dim])
    jitter = _jitter(d.sizes[dim], spread)
    dots_x = xs[:, None] - spread + jitter[None, :]
    ax.plot(dots_x.ravel(), per.ravel(), "o", color=colour, alpha=0.45, ms=2.5, mew=0,
            label="_replicates")
    if connect and len(xs) > 1:
        ax.plot(dots_x, per, "-", color=colour, alpha=0.2, lw=0.5, label="_pairs")
    _mean_and_interval(ax, xs + spread, out, colour, label)
    _reference(ax, 1.0 if ratio else 0.0, log=ratio)
    record(ax, out, None, "pairs", kind="paired")
    return out


def ratio_points(ax: Axes, values: xr.DataArray, *, x=None, dim: str = "replicate",
                 colour=None, label: str | None = None, reference: float | None = 1.0,
                 replicates: bool = True, offset: float = 0.0, spread: float = 0.08,
                 min_n: int = MIN_BAND_N, level: float = 0.95, fmt: str = "o") -> xr.Dataset:
    """A positive quantity (a ratio, an error, FI) as points with intervals on a log axis:
    the geometric mean over ``dim`` and exp(mean ± t_{n−1, (1+level)/2} · s/√n) of its logs
    (:func:`anglesim.stats.interval` with ``log=True``; no interval below ``min_n``), with the
    single replicates as faint dots (``replicates``) and a dashed line at ``reference``
    (e.g. 1 for a ratio; None for none). Replaces bars on a log axis.

    ``values`` has ``dim`` and at most one other dim, drawn at ``x`` (default 0, 1, …,
    labelled with that dim's values) shifted by ``offset`` (to set series side by side).
    Non-positive values count as missing. Returns the interval Dataset, recorded for
    :func:`caption`.
    """
    if not isinstance(values, xr.DataArray) or dim not in values.dims:
        raise check.fail("values", f"a DataArray with a {dim!r} dim",
                         getattr(values, "dims", type(values).__name__))
    values = values.where(values > 0)
    out = interval(values, dim, level=level, min_n=min_n, log=True)
    xs, others = _positions(ax, values, dim, x)
    xs = xs + offset
    ax.set_yscale("log")
    colour = _mean_and_interval(ax, xs, out, colour, label, fmt=fmt)
    if replicates:
        per = values.transpose(*others, dim).values.reshape(len(xs), values.sizes[dim])
        dots_x = xs[:, None] + _jitter(values.sizes[dim], spread)[None, :]
        ax.plot(dots_x.ravel(), per.ravel(), "o", color=colour, alpha=0.35, ms=2.0, mew=0,
                zorder=1.5, label="_replicates")
    if reference is not None:
        _reference(ax, check.real("reference", reference, minimum=0.0, min_open=True),
                   log=True)
    record(ax, out, None, "replicates", kind="ratio")
    return out


def _paired(a, b, dim: str) -> tuple[xr.DataArray, xr.DataArray]:
    """``a`` and ``b`` matched on their shared coordinates (``dim`` among them) and broadcast
    against each other (one baseline against several arms)."""
    for name, da in (("a", a), ("b", b)):
        if not isinstance(da, xr.DataArray) or dim not in da.dims:
            raise check.fail(name, f"a DataArray with a {dim!r} dim",
                             getattr(da, "dims", type(da).__name__))
    try:
        a, b = xr.align(a, b, join="exact")
    except ValueError:
        raise check.fail("b", f"paired with a: the same {dim!r} and other coordinates",
                         f"{dict(b.sizes)} against {dict(a.sizes)}") from None
    a, b = xr.broadcast(a, b)
    return a, b.transpose(*a.dims)


def _positions(ax: Axes, da: xr.DataArray, dim: str, x) -> tuple[np.ndarray, list[str]]:
    """x positions of the entries of ``da``'s one dim besides ``dim``; labels the ticks with
    that dim's values when ``x`` is not given."""
    others = [d for d in da.dims if d != dim]
    if len(others) > 1:
        raise check.fail("values", f"over {dim!r} and at most one other dim", tuple(da.dims))
    count = da.sizes[others[0]] if others else 1
    if x is None:
        xs = np.arange(count, dtype=float)
        if others:
            ax.set_xticks(xs, [str(v) for v in da[others[0]].values])
        else:
            ax.set_xticks([])
    else:
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        if xs.shape != (count,):
            raise check.fail("x", f"{count} position(s)", x)
    return xs, others


def _jitter(n: int, spread: float) -> np.ndarray:
    """Fixed horizontal offsets for n replicate dots (the same figure every time)."""
    return np.linspace(-spread / 2, spread / 2, n) if n > 1 else np.zeros(n)


def _mean_and_interval(ax: Axes, xs, out: xr.Dataset, colour, label, fmt: str = "o"):
    """Draw the means with their intervals (none where NaN); returns the colour used."""
    mean = np.atleast_1d(out["mean"].values).astype(float)
    low = np.atleast_1d(out["low"].values).astype(float)
    high = np.atleast_1d(out["high"].values).astype(float)
    below = np.nan_to_num(mean - low, nan=0.0)
    above = np.nan_to_num(high - mean, nan=0.0)
    drawn = ax.errorbar(xs, mean, yerr=np.stack([below, above]), fmt=fmt, color=colour,
                        label=label, ms=4, capsize=2, lw=1.0)
    return drawn.lines[0].get_color()


def _reference(ax: Axes, value: float, *, log: bool) -> None:
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(RatioLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
    if not any(line.get_gid() == REFERENCE_GID and line.get_ydata()[0] == value
               for line in ax.get_lines()):
        ax.axhline(value, color="0.5", lw=0.8, ls="--", zorder=0, gid=REFERENCE_GID)


class RatioLocator(Locator):
    """Ticks of a log axis of ratios that read as numbers: 0.5, 1, 2, 5 … over a decade or
    more, and plain steps (0.8, 1, 1.2 …) over a narrower range, where a log locator would
    label one tick or none; labelled ``{v:g}`` by the panels here."""

    def __call__(self):
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin: float, vmax: float):
        vmin, vmax = sorted((vmin, vmax))
        if vmin <= 0 or vmax / vmin >= 8.0:
            return LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)).tick_values(max(vmin, 1e-300),
                                                                          vmax)
        ticks = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(vmin, vmax)
        return ticks[ticks > 0]
