"""Means over replicates with their 95% t intervals, drawn by one rule and recorded on the
figure so that its footnote (and caption) can say what the bands are and over how many."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ..stats import band_caption, interval

__all__ = ["MIN_BAND_N", "band", "band_footnote", "given_bars", "interval_bars", "log_band",
           "record", "replicate_count", "successful"]

MIN_BAND_N = 3
"""Fewest valid replicates a band or error bar is drawn from (issue 15: with 2, t = 12.7)."""

def band(ax, x, values: xr.DataArray, colour, label, *, log: bool = False,
         bounds: tuple[float | None, float | None] | None = None, min_n: int = MIN_BAND_N,
         alpha: float = 0.25, dim: str = "replicate", style: str = "-",
         what: str = "replicates", **line) -> xr.Dataset:
    """Mean over ``dim`` as a line with its 95% t band, by the figures' rule
    (:func:`anglesim.stats.interval`): no band where fewer than ``min_n`` values are valid.

    ``values`` is a DataArray over ``dim`` and one dim matching ``x``. ``log`` draws the
    geometric mean with the t band of ln x (for FI); ``bounds`` clips the band to the
    quantity's range (e.g. ``(0, 90)`` for an error in degrees). ``alpha`` is the band's
    opacity (lower it where many bands overlap). The interval Dataset is returned and recorded
    on the figure, so that :func:`band_footnote` can say what the bands are; ``line`` goes to
    the mean line's ``ax.plot`` (e.g. ``ms``, ``lw``).
    """
    out = interval(values, dim, bounds=bounds, min_n=min_n, log=log, what=what)
    mean_line, = ax.plot(x, out["mean"].values, style, color=colour, label=label, **line)
    ax.fill_between(x, out["low"].values, out["high"].values, color=mean_line.get_color(),
                    alpha=alpha, linewidth=0)
    record(ax, out, bounds, what)
    return out


def interval_bars(ax, x, values: xr.DataArray, colour, label, *, log: bool = False,
                  bounds: tuple[float | None, float | None] | None = None,
                  min_n: int = MIN_BAND_N, dim: str = "replicate", fmt: str = "o",
                  what: str = "replicates", **kwargs) -> xr.Dataset:
    """Means over ``dim`` as points with 95% t error bars, by the same rule as :func:`band`
    (no bar where fewer than ``min_n`` values are valid); returns the interval Dataset and
    records it for :func:`band_footnote`. ``kwargs`` go to ``ax.errorbar``."""
    out = interval(values, dim, bounds=bounds, min_n=min_n, log=log, what=what)
    mean = np.atleast_1d(out["mean"].values)
    below = np.nan_to_num(mean - np.atleast_1d(out["low"].values), nan=0.0)
    above = np.nan_to_num(np.atleast_1d(out["high"].values) - mean, nan=0.0)
    kwargs.setdefault("capsize", 2)
    kwargs.setdefault("ms", 4)
    ax.errorbar(x, mean, yerr=np.stack([below, above]), fmt=fmt, color=colour, label=label,
                **kwargs)
    record(ax, out, bounds, what)
    return out


def given_bars(ax, x, mean, half, n, colour, label, *, min_n: int = MIN_BAND_N,
               fmt: str = "o", level: float = 0.95, **kwargs) -> None:
    """Points with error bars from an interval computed elsewhere (e.g. a stored Welch
    interval, :func:`anglesim.stats.welch_ci`), by the figures' rule: no bar where ``n``
    (the fewest valid replicates behind each interval) is below ``min_n``; recorded for
    :func:`band_footnote` like :func:`interval_bars`'s."""
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    n = np.broadcast_to(np.atleast_1d(np.asarray(n)), mean.shape)
    half = np.where(n >= min_n, np.nan_to_num(np.broadcast_to(np.asarray(half, float),
                                                              mean.shape)), 0.0)
    kwargs.setdefault("capsize", 2)
    kwargs.setdefault("ms", 4)
    ax.errorbar(x, mean, yerr=half, fmt=fmt, color=colour, label=label, **kwargs)
    out = xr.Dataset({"n": ("i", n.copy())},
                     attrs={"min_n": min_n, "level": level, "scale": "linear",
                            "caption": band_caption(n, min_n, level)})
    record(ax, out, None, "replicates")


def record(ax, out: xr.Dataset, bounds, what: str) -> None:
    """Note on ``ax``'s figure an interval Dataset drawn there (from
    :func:`anglesim.stats.interval`), for :func:`band_footnote` to describe."""
    fig = ax.figure
    if not hasattr(fig, "_anglesim_bands"):
        fig._anglesim_bands = []
    fig._anglesim_bands.append((out, bounds, what))


def band_footnote(fig: plt.Figure, extra: str = "") -> str:
    """Write one line under ``fig`` saying what its bands and error bars are (the
    :func:`anglesim.stats.band_caption` of every interval :func:`band` and
    :func:`interval_bars` drew on it), e.g. "bands: 95% t intervals over 4 replicates" or
    "no band: n < 3 replicates (n = 2)"; ``extra`` is appended. Drawn once (a second call
    returns the text without drawing it again); returns the text ("" if nothing was drawn)."""
    recorded = getattr(fig, "_anglesim_bands", [])
    if not recorded:
        return extra
    counts = np.concatenate([np.ravel(out["n"].values) for out, _, _ in recorded])
    first = recorded[0][0].attrs
    whats = {what for _, _, what in recorded}
    text = band_caption(counts, int(first["min_n"]), float(first["level"]),
                        what=whats.pop() if len(whats) == 1 else "replicates")
    if any(out.attrs["scale"] == "log" for out, _, _ in recorded) and text.startswith("bands"):
        text += "; FI on the log scale (geometric mean)"
    if any("clipped" in out.attrs["caption"] for out, _, _ in recorded) and (
            text.startswith("bands")):
        text += "; clipped to the quantity's range"
    if extra:
        text += f"; {extra}"
    if getattr(fig, "_anglesim_footnote", None) is None:
        fig._anglesim_footnote = fig.text(0.01, 0.0, text, ha="left", va="top", fontsize=7,
                                          color="0.3")
    return text



def successful(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with failed replicates' values set to NaN.

    Only floating-point variables that carry every dim of ``failed`` (condition axes and
    ``replicate``) are masked; per-condition or per-loss variables and the bookkeeping
    variables keep their shape and values.
    """
    if "failed" not in ds:
        return ds
    keep = ~ds["failed"].astype(bool)
    masked = {
        name: var.where(keep)
        for name, var in ds.data_vars.items()
        if set(keep.dims) <= set(var.dims) and np.issubdtype(var.dtype, np.floating)
    }
    return ds.assign(masked)


def log_band(ax, theta_deg, fi: xr.DataArray, colour, label, alpha: float = 0.25,
             min_n: int = MIN_BAND_N) -> xr.Dataset:
    """Geometric mean of a positive curve over replicates with the t band of its log
    (:func:`band` with ``log=True``; no band below ``min_n`` replicates)."""
    return band(ax, theta_deg, fi, colour, label, log=True, alpha=alpha, min_n=min_n)



def replicate_count(ds: xr.Dataset, min_n: int = MIN_BAND_N) -> str:
    """"N replicates per condition" and what the bands are: "mean ± 95% CI" from ``min_n``
    replicates on, else "means only (no band: n < min_n)"."""
    n = int(ds["replicate"].size)
    bands = "mean ± 95% CI" if n >= min_n else f"means only (no band: n < {min_n})"
    return f"{n} replicate{'s' if n != 1 else ''} per condition, {bands}"

