"""Means over replicates with their 95% t intervals, drawn by one rule and recorded on the
figure so that its footnote (and caption) can say what the bands are and over how many."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ..stats import band_caption, interval

__all__ = ["MIN_BAND_N", "band", "band_footnote", "caption", "given_bars", "interval_bars",
           "log_band", "record", "recorded", "replicate_count", "successful"]

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
    records it for :func:`band_footnote`. ``kwargs`` go to ``ax.errorbar``.

    The figure standard replaces it on a log axis (``log=True``, ratios, FI) with
    :func:`anglesim.plotting.ratio_points` (the replicates as dots, a line at 1, ticks that
    read as numbers), and where two arms measured on the same replicates are compared, with
    :func:`anglesim.plotting.paired_difference` (two unpaired intervals hide the pairing)."""
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
    :func:`band_footnote` like :func:`interval_bars`'s.

    For unpaired contrasts (independent groups, Welch) only: the figure standard draws a
    paired claim with :func:`anglesim.plotting.paired_difference`."""
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


def record(ax, out: xr.Dataset, bounds, what: str, kind: str = "mean") -> None:
    """Note on ``ax``'s figure an interval Dataset drawn there (from
    :func:`anglesim.stats.interval`), for :func:`band_footnote` and
    :func:`anglesim.plotting.caption` to describe; ``kind`` is what was drawn: ``"mean"``
    (a mean and its t interval), ``"paired"`` (paired differences), ``"ratio"`` (geometric
    means of a positive quantity on a log axis)."""
    fig = ax.figure
    if not hasattr(fig, "_anglesim_bands"):
        fig._anglesim_bands = []
    fig._anglesim_bands.append((out, bounds, what, kind))


def recorded(fig: plt.Figure) -> list[tuple[xr.Dataset, tuple | None, str, str]]:
    """The intervals :func:`record` noted on ``fig``: (Dataset, bounds, what, kind) each."""
    return list(getattr(fig, "_anglesim_bands", []))


def band_footnote(fig: plt.Figure, extra: str = "") -> str:
    """Write one line under ``fig`` saying what its bands and error bars are (the
    :func:`anglesim.stats.band_caption` of every interval :func:`band` and
    :func:`interval_bars` drew on it), e.g. "bands: 95% t intervals over 4 replicates" or
    "no band: n < 3 replicates (n = 2)"; ``extra`` is appended. Drawn once (a second call
    returns the text without drawing it again); returns the text ("" if nothing was drawn).

    The figure standard puts this in the caption instead (:func:`caption`, which also names
    paired and ratio intervals and gives n as "n = …"); :func:`save_figure` draws no
    footnote on a :func:`anglesim.plotting.print_figure` figure."""
    drawn = [entry[:3] for entry in recorded(fig)]
    if not drawn:
        return extra
    counts = np.concatenate([np.ravel(out["n"].values) for out, _, _ in drawn])
    first = drawn[0][0].attrs
    whats = {what for _, _, what in drawn}
    text = band_caption(counts, int(first["min_n"]), float(first["level"]),
                        what=whats.pop() if len(whats) == 1 else "replicates")
    if any(out.attrs["scale"] == "log" for out, _, _ in drawn) and text.startswith("bands"):
        text += "; FI on the log scale (geometric mean)"
    if any("clipped" in out.attrs["caption"] for out, _, _ in drawn) and (
            text.startswith("bands")):
        text += "; clipped to the quantity's range"
    if extra:
        text += f"; {extra}"
    if getattr(fig, "_anglesim_footnote", None) is None:
        fig._anglesim_footnote = fig.text(0.01, 0.0, text, ha="left", va="top", fontsize=7,
                                          color="0.3")
    return text


def caption(fig: plt.Figure, text: str = "") -> str:
    """The caption sentence saying what ``fig``'s intervals are and over how many replicates,
    after ``text`` (what the figure shows): e.g. "… Lines and points: means; bands and error
    bars: 95% t intervals over n = 6 replicates per condition; paired differences: one dot
    per replicate, their mean and 95% paired t interval over n = 6 pairs."

    Built from every interval the figure's helpers drew (:func:`band`, :func:`log_band`,
    :func:`interval_bars`, :func:`given_bars`, :func:`anglesim.plotting.paired_difference`,
    :func:`anglesim.plotting.ratio_points`), so it cannot disagree with them; intervals are
    always named as t intervals with their level and n, never as ±s.e. Returns ``text`` alone
    if nothing was recorded.
    """
    entries = recorded(fig)
    parts = []
    means = [e for e in entries if e[3] == "mean"]
    if means:
        level = float(means[0][0].attrs["level"])
        what = {e[2] for e in means}
        part = (f"lines and points: means; bands and error bars: {level:.0%} t intervals over "
                f"n = {_span(means)} {what.pop() if len(what) == 1 else 'replicates'}")
        if any(e[0].attrs["scale"] == "log" for e in means):
            part += " (on log axes: geometric means and the t interval of the log)"
        parts.append(part)
    ratios = [e for e in entries if e[3] == "ratio"]
    if ratios:
        level = float(ratios[0][0].attrs["level"])
        parts.append(f"points on log axes: geometric means with the {level:.0%} t interval of "
                     f"the log over n = {_span(ratios)} replicates (dots: single replicates)")
    paired = [e for e in entries if e[3] == "paired"]
    if paired:
        level = float(paired[0][0].attrs["level"])
        log = any(e[0].attrs["scale"] == "log" for e in paired)
        parts.append(
            ("paired ratios: one dot per replicate, their geometric mean and the "
             f"{level:.0%} paired t interval of the log ratio" if log else
             "paired differences: one dot per replicate, their mean and "
             f"{level:.0%} paired t interval") + f" over n = {_span(paired)} pairs")
    few = [e for e in entries if _counts(e[0]).size
           and _counts(e[0]).min() < int(e[0].attrs["min_n"])]
    if few:
        parts.append(f"no interval where n < {int(few[0][0].attrs['min_n'])}")
    if any("clipped" in e[0].attrs.get("caption", "") for e in entries):
        parts.append("intervals clipped to the quantity's range")
    if not parts:
        return text
    sentence = "; ".join(parts)
    sentence = sentence[0].upper() + sentence[1:] + "."
    return f"{text.rstrip()} {sentence}" if text.strip() else sentence


def _counts(out: xr.Dataset) -> np.ndarray:
    counts = np.ravel(out["n"].values)
    return counts[counts > 0]


def _span(entries) -> str:
    counts = np.concatenate([_counts(e[0]) for e in entries])
    if counts.size == 0:
        return "0"
    low, high = int(counts.min()), int(counts.max())
    return f"{low}" if low == high else f"{low}–{high}"


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
    replicates on, else "means only (no band: n < min_n)".

    A title line of the screen figures; the figure standard states the intervals and n in the
    caption (:func:`caption`), not on the figure."""
    n = int(ds["replicate"].size)
    bands = "mean ± 95% CI" if n >= min_n else f"means only (no band: n < {min_n})"
    return f"{n} replicate{'s' if n != 1 else ''} per condition, {bands}"

