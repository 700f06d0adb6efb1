"""Shared figure style and primitives, and figures of any result: FI, error, training history.

Each study draws its own figure (``figure`` of its :class:`anglesim.study.Study`) with the
style and primitives here. :func:`plot_fisher`, :func:`plot_error` and :func:`plot_history`
draw an estimator's result (e.g. :func:`anglesim.fisher.measure_fisher`'s Dataset, one
method's DataArray from :func:`anglesim.fisher.method_result`, :func:`anglesim.fisher.\
propagated_fisher`'s output), a training history from :func:`anglesim.training.train`, or a
study's Dataset, with labelled, unit-bearing axes. Bands are 95% confidence intervals of the
mean over replicates (Student t, :func:`anglesim.stats.interval`), drawn only from
:data:`MIN_BAND_N` valid replicates on (with 2, t = 12.7 and a band spans ±9 SDs), and
:func:`band_footnote` writes under a figure what its bands are; FI is averaged on a log
scale (geometric mean); angles are shown in degrees, orientation wrapping at 180°.

Importing this module does not select a matplotlib backend (a notebook keeps ``inline``); the
command line selects Agg where it writes figures to files.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from .stats import band_caption, interval, mean_ci  # noqa: F401 (mean_ci: re-exported)

__all__ = ["MIN_BAND_N", "PHASE_COLOURS", "STYLE", "angle_axis", "band", "band_footnote",
           "fi_vs_angle_axis", "given_bars", "interval_bars", "log_band", "mark_angle",
           "plot_activation_projection", "plot_error", "plot_fisher", "plot_history",
           "replicate_count", "save_figure", "successful"]

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
}
PHASE_COLOURS = ("#4d4d4d", "#d6604d", "#4393c3", "#5aae61", "#9970ab")
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
    _record(ax, out, bounds, what)
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
    _record(ax, out, bounds, what)
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
    _record(ax, out, None, "replicates")


def _record(ax, out: xr.Dataset, bounds, what: str) -> None:
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


def angle_axis(ax):
    ax.set_xlim(0, 180)
    ax.set_xticks([0, 45, 90, 135, 180])
    ax.set_xlabel("orientation θ (deg)")


def fi_vs_angle_axis(ax):
    """Log FI of the decoded angle against orientation: the axes of every FI-curve panel."""
    ax.set_yscale("log")
    ax.set_ylabel("FI of θ̂ (rad⁻²)")
    angle_axis(ax)


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


def mark_angle(ax, theta: float, text: str, colour: str = "0.5") -> None:
    deg = float(np.degrees(theta))
    ax.axvline(deg, color=colour, lw=0.8, ls="--")
    ax.annotate(text, (deg, 1.0), xycoords=("data", "axes fraction"), ha="center",
                va="bottom", fontsize=7, color=colour)


def replicate_count(ds: xr.Dataset, min_n: int = MIN_BAND_N) -> str:
    """"N replicates per condition" and what the bands are: "mean ± 95% CI" from ``min_n``
    replicates on, else "means only (no band: n < min_n)"."""
    n = int(ds["replicate"].size)
    bands = "mean ± 95% CI" if n >= min_n else f"means only (no band: n < {min_n})"
    return f"{n} replicate{'s' if n != 1 else ''} per condition, {bands}"


def save_figure(fig: plt.Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")):
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; return the paths written."""
    band_footnote(fig)  # a figure whose code did not say what its bands are says it here
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        # no creation date in PDFs, so that redrawing an unchanged Dataset leaves the file as it was
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_activation_projection(
    proj: xr.DataArray, ax: plt.Axes | None = None, title: str | None = None
) -> plt.Figure:
    """Scatter a block's 2-D activation projection (from
    :func:`anglesim.representation.activation_projection`) coloured by θ in degrees on a
    cyclic colour map (0° and 180° share a colour, as orientations do). Returns the Figure."""
    if not isinstance(proj, xr.DataArray) or proj.dims != ("stimulus", "component") or (
        proj.sizes["component"] < 2 or "theta" not in proj.coords
    ):
        raise ValueError(
            "proj must be a DataArray over (stimulus, component >= 2) with a theta coordinate, "
            f"got {getattr(proj, 'dims', type(proj).__name__)}"
        )
    with plt.rc_context(STYLE):
        if ax is None:
            fig, ax = plt.subplots(figsize=(3.4, 3.0))
        else:
            fig = ax.figure
        theta_deg = np.degrees(proj["theta"].values) % 180.0
        points = ax.scatter(proj.values[:, 0], proj.values[:, 1], c=theta_deg, cmap="twilight",
                            vmin=0.0, vmax=180.0, s=10, linewidths=0)
        ratio = proj.attrs.get("explained_variance_ratio", [float("nan")] * 2)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% var.)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% var.)")
        ax.set_title(title or f"{proj.attrs.get('layer', '')} activations", loc="left")
        fig.colorbar(points, ax=ax, label="θ (deg)", ticks=[0, 45, 90, 135, 180])
    return fig



# ---- figures of any result --------------------------------------------------------------------


def _pick(result: xr.Dataset | xr.DataArray, names: tuple[str, ...], what: str) -> xr.DataArray:
    if isinstance(result, xr.DataArray):
        return result
    if isinstance(result, xr.Dataset):
        for name in names:
            if name in result:
                return successful(result)[name]
        raise ValueError(f"result must hold one of the variables {list(names)} for {what}, "
                         f"got variables {sorted(map(str, result.data_vars))}")
    raise ValueError(f"result must be an xarray Dataset or DataArray, got "
                     f"{type(result).__name__}")


def _series(da: xr.DataArray, core: str) -> list[tuple[str, xr.DataArray]]:
    """One (label, curve) per combination of the dims other than ``core`` and ``replicate``;
    dims of size 1 are dropped first, and curves without a finite value left out."""
    if core not in da.dims:
        raise ValueError(f"result must have a {core!r} dimension, got dims {list(da.dims)}")
    da = da.squeeze([d for d in da.dims if da.sizes[d] == 1 and d not in (core, "replicate")],
                    drop=False)
    others = [d for d in da.dims if d not in (core, "replicate")]
    if not others:
        return [("", da)]
    out = []
    for values in itertools.product(*(da[d].values for d in others)):
        sel = dict(zip(others, values, strict=True))
        label = ", ".join(f"{v}" if d in ("layer", "method", "estimator", "phase") else f"{d}={v}"
                          for d, v in sel.items())
        curve = da.sel(sel)
        if bool(np.isfinite(curve).any()):  # e.g. a layer that a method does not measure
            out.append((label, curve))
    return out


def _draw_curves(ax, curves, x, log: bool, scale: float = 1.0) -> None:
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(curves), 1)))
    for colour, (label, curve) in zip(colours, curves, strict=True):
        if "replicate" in curve.dims:
            band(ax, x, curve if log else scale * curve, colour, label or None, log=log)
        else:
            ax.plot(x, scale * curve.values, color=colour, label=label or None)


def _units(da: xr.DataArray, default: str) -> str:
    return str(da.attrs.get("units", default))


def plot_fisher(result: xr.Dataset | xr.DataArray, ax: plt.Axes | None = None,
                log: bool = True) -> plt.Figure:
    """Fisher information J(θ) against orientation, one curve per layer / method / condition.

    ``result`` is an FI DataArray with an ``angle`` dimension (radians; e.g.
    ``propagated_fisher(...)`` or ``method_result(measure_fisher(...), "propagated")``) or a
    Dataset holding ``fisher`` (``measure_fisher``'s output, a study's Dataset). Other dims
    (``layer``, ``method``, ``phase``, grid axes) give one curve each; over ``replicate`` the
    geometric mean is drawn with its 95% CI band. The y axis is log-scaled unless ``log`` is
    False; non-positive values are left out of the log mean.
    """
    da = _pick(result, ("fisher",), "plot_fisher")
    curves = _series(da, "angle")
    with plt.rc_context(STYLE):
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.2, 3.0), constrained_layout=True)
        else:
            fig = ax.figure
        _draw_curves(ax, curves, np.degrees(da["angle"].values), log)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(f"Fisher information J(θ) ({_units(da, 'rad⁻²')})")
        angle_axis(ax)
        if len(curves) > 1:
            ax.legend(frameon=False, fontsize=7)
    return fig


def plot_error(result: xr.Dataset | xr.DataArray, ax: plt.Axes | None = None) -> plt.Figure:
    """Mean absolute decoding error |θ̂ − θ| against orientation, in degrees.

    ``result`` is an error DataArray over ``angle`` in radians (e.g.
    :func:`anglesim.training.evaluate_error`'s output) or a Dataset holding ``abs_error``
    (a study's Dataset); other dims give one curve each, ``replicate`` a mean ± 95% CI band.
    The chance level of a uniform guess, 45°, is drawn dotted.
    """
    da = _pick(result, ("abs_error",), "plot_error")
    if _units(da, "rad") != "rad":
        raise ValueError(f"result must be in radians, got units {da.attrs['units']!r}")
    curves = _series(da, "angle")
    with plt.rc_context(STYLE):
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.2, 3.0), constrained_layout=True)
        else:
            fig = ax.figure
        _draw_curves(ax, curves, np.degrees(da["angle"].values), log=False,
                     scale=180.0 / np.pi)
        ax.axhline(45, color="0.6", lw=0.8, ls=":", label="chance")
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.legend(frameon=False, fontsize=7)
    return fig


def plot_history(history: xr.Dataset) -> plt.Figure:
    """Training history: the training and validation loss, and the evaluation error (deg),
    against the epoch; dashed lines mark phase boundaries (from ``epoch_phase``).

    ``history`` is :func:`anglesim.training.train`'s Dataset or a study's Dataset that holds
    it (``train_loss`` over ``epoch``); over ``replicate`` the mean ± 95% CI is drawn; other
    dims of size > 1 give one curve each.
    """
    if not isinstance(history, xr.Dataset) or "train_loss" not in history or (
            "epoch" not in history["train_loss"].dims):
        raise ValueError("history must be a Dataset with train_loss over epoch (train()'s "
                         f"output), got {type(history).__name__}"
                         + (f" with variables {sorted(map(str, history.data_vars))}"
                            if isinstance(history, xr.Dataset) else ""))
    ds = successful(history)
    epoch = ds["epoch"].values
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(8, 3.0), constrained_layout=True)
        for name, style in (("train_loss", "-"), ("val_loss", "--")):
            if name not in ds or not np.isfinite(ds[name].values).any():
                continue
            for label, curve in _series(ds[name], "epoch"):
                tag = name.removesuffix("_loss") + (f", {label}" if label else "")
                if "replicate" in curve.dims:
                    band(ax_loss, epoch, curve, None, tag, style=style)
                else:
                    ax_loss.plot(epoch, curve.values, style, label=tag)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss (" + _units(ds["train_loss"], "loss units") + ")")
        ax_loss.legend(frameon=False, fontsize=7)
        if "eval_error" in ds:
            _draw_curves(ax_err, _series(ds["eval_error"], "epoch"), epoch, log=False,
                         scale=180.0 / np.pi if _units(ds["eval_error"], "rad") == "rad"
                         else 1.0)
            ax_err.set_ylabel("evaluation error |θ̂ − θ| (deg)")
            ax_err.set_ylim(bottom=0)
        ax_err.set_xlabel("epoch")
        if "epoch_phase" in ds.coords:
            phases = np.asarray(ds["epoch_phase"].values).reshape(-1, epoch.size)[0]
            for i in range(1, epoch.size):
                if phases[i] != phases[i - 1]:
                    for ax in (ax_loss, ax_err):
                        ax.axvline(epoch[i] - 0.5, color="0.6", lw=0.8, ls="--")
                    ax_err.annotate(str(phases[i]), (epoch[i] - 0.5, 1.0),
                                    xycoords=("data", "axes fraction"), fontsize=7,
                                    va="bottom", ha="left", color="0.4")
    return fig
