"""Figures of any result: FI, decoding error and training history against their axes, and a
block's activation projection, with labelled, unit-bearing axes."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ._axes import angle_axis
from ._intervals import band, successful
from ._style import STYLE

__all__ = ["plot_activation_projection", "plot_error", "plot_fisher", "plot_history"]


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
