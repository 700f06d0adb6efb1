"""Shared figure style and primitives, and figures of any result: FI, error, training history.

Each study draws its own figure (``figure`` of its :class:`anglesim.study.Study`) with the
style and primitives here. :func:`plot_fisher`, :func:`plot_error` and :func:`plot_history`
draw an estimator's result (e.g. :func:`anglesim.fisher.measure_fisher`'s Dataset, one
method's DataArray from :func:`anglesim.fisher.method_result`, :func:`anglesim.fisher.\
propagated_fisher`'s output), a training history from :func:`anglesim.training.train`, or a
study's Dataset, with labelled, unit-bearing axes. Bands are 95% confidence intervals of the
mean over replicates (Student t, :func:`anglesim.stats.mean_ci`); FI is averaged on a log
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

from .stats import mean_ci

__all__ = ["PHASE_COLOURS", "STYLE", "angle_axis", "band", "fi_vs_angle_axis", "log_band",
           "mark_angle", "plot_activation_projection", "plot_error", "plot_fisher",
           "plot_history", "replicate_count", "save_figure", "successful"]

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

def band(ax, x_deg, mean, half, colour, label, log=False, alpha=0.25):
    """Mean line with its CI band; with ``log`` the inputs are log10 values (geometric mean).

    ``alpha`` is the band's opacity: lower it where many bands overlap.
    """
    lo, hi = mean - half, mean + half
    if log:
        mean, lo, hi = 10.0**mean, 10.0**lo, 10.0**hi
    ax.plot(x_deg, mean, color=colour, label=label)
    ax.fill_between(x_deg, lo, hi, color=colour, alpha=alpha, linewidth=0)


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


def log_band(ax, theta_deg, fi, colour, label, alpha=0.25):
    """Geometric mean of a positive curve over replicates with its CI (log-space t interval)."""
    mean, half = mean_ci(np.log10(fi.where(fi > 0)))
    band(ax, theta_deg, mean, half, colour, label, log=True, alpha=alpha)


def mark_angle(ax, theta: float, text: str, colour: str = "0.5") -> None:
    deg = float(np.degrees(theta))
    ax.axvline(deg, color=colour, lw=0.8, ls="--")
    ax.annotate(text, (deg, 1.0), xycoords=("data", "axes fraction"), ha="center",
                va="bottom", fontsize=7, color=colour)


def replicate_count(ds: xr.Dataset) -> str:
    n = int(ds["replicate"].size)
    return f"{n} replicates per condition, mean ± 95% CI"


def save_figure(fig: plt.Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")):
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; return the paths written."""
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
            values = curve.where(curve > 0) if log else curve
            mean, half = mean_ci(np.log10(values) if log else scale * values)
            band(ax, x, mean, half, colour, label or None, log=log)
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
                    mean, half = mean_ci(curve)
                    line, = ax_loss.plot(epoch, mean, style, label=tag)
                    ax_loss.fill_between(epoch, mean - half, mean + half, alpha=0.25,
                                         color=line.get_color(), linewidth=0)
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
