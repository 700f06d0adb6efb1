"""The learning-dynamics figure: FI over training at common and rare angles, the half-time
gap and its change under equalised labels, FI curves at checkpoints, the prior alignment over
training, and the final FI peak against each prior's mode."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.plotting import (
    angle_axis,
    band,
    caption,
    interval_bars,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)

from .measures import EARLY_STEP, PEAK_MARGIN

__all__ = ["PRIOR_COLOURS", "figure_caption", "plot_learning_dynamics"]

PRIOR_COLOURS = {"cos_90": "C0", "vm_0": "C1", "vm_22_5": "C2", "vm_45": "C3"}
"""One colour per prior, in every panel."""
SHOWN_PRIOR = "vm_22_5"
"""The prior whose FI curves and alignment by layer panels f and g show (the in-between
centre, neither cardinal nor oblique); the first prior of the run when it lacks this one."""
LAYERS = ("conv1", "conv2", "fc", "head", "output")
"""The layers panel g draws (the input's FI does not change with training)."""


def _label(prior: str) -> str:
    return {"cos_90": "2 − cos 2θ", "vm_0": "vM 0°", "vm_22_5": "vM 22.5°",
            "vm_45": "vM 45°"}.get(prior, prior)


def _window_ratio(fisher: xr.DataArray, mask: xr.DataArray) -> xr.DataArray:
    """The mean FI over the window's angles, over its value at the last checkpoint."""
    mean = fisher.where(mask).mean("angle")
    return mean / mean.isel(step=-1)


def _steps_axis(ax, steps: np.ndarray) -> None:
    ax.set_xscale("log")
    ticks = [s for s in (0, 10, 50, 400) if s <= steps[-1]]
    ax.set_xticks([1 + s for s in ticks], [str(s) for s in ticks])
    ax.minorticks_off()
    ax.set_xlabel("optimiser steps (log 1 + steps)")


def _points(ax, values: xr.DataArray, x: np.ndarray, colour, label: str) -> None:
    """Replicates as dots and their mean with its 95% t interval, at ``x`` per prior."""
    per = values.transpose("prior", "replicate").values
    jitter = np.linspace(-0.06, 0.06, per.shape[1]) if per.shape[1] > 1 else np.zeros(1)
    ax.plot((x[:, None] + jitter[None, :]).ravel(), per.ravel(), "o", color=colour,
            alpha=0.35, ms=2.0, mew=0, label="_replicates")
    interval_bars(ax, x + 0.12, values.transpose("prior", "replicate"), colour, label, ms=3)


def plot_learning_dynamics(ds: xr.Dataset) -> plt.Figure:
    """The figure (8 panels):

    (a) the training priors; (b, c) the output FI averaged over the common (solid) and rare
    (dashed) angles, over its final value, against optimiser steps, with clean (b) and
    equalised (c) labels; (d) the half-time gap (log₂ ratio of 1 + half-time, common over
    rare) per prior with clean labels, against 0; (e) its paired change, equalised − clean;
    (f) FI against θ at three checkpoints for one prior, at fc (dashed) and the output
    (solid); (g) the prior alignment of FI against steps per layer, same prior; (h) the final
    output FI's peak offset from the prior's mode, with the ±11.25° equivalence margin.
    """
    ds = successful(ds)
    priors = [str(p) for p in ds["prior"].values]
    steps = ds["step"].values
    shown = SHOWN_PRIOR if SHOWN_PRIOR in priors else priors[0]
    out = ds.sel(layer="output")
    x = np.arange(len(priors), dtype=float)
    with print_style():
        fig, axes = print_figure(2, 4, width="double", aspect=1.2)
        ax = axes[0, 0]
        theta = np.degrees(ds["angle"].values)
        for prior in priors:
            dens = ds["prior_density"].sel(prior=prior, labels="clean").isel(replicate=0)
            ax.plot(theta, dens, color=PRIOR_COLOURS.get(prior), label=_label(prior))
        ax.set_ylim(0, float(ds["prior_density"].max()) * 1.1)
        ax.set_ylabel("p(θ) (1/rad)")
        angle_axis(ax)
        _legend_below(ax, ncol=2)
        ax.set_title("training priors", loc="left")

        for ax, labels in ((axes[0, 1], "clean"), (axes[0, 2], "equalised")):
            arm = out.sel(labels=labels)
            for prior in priors:
                colour = PRIOR_COLOURS.get(prior)
                for window, style in (("common", "-"), ("rare", "--")):
                    ratio = _window_ratio(arm["fisher"].sel(prior=prior),
                                          ds[window].sel(prior=prior))
                    band(ax, 1 + steps, ratio.transpose("step", "replicate"), colour,
                         None, log=True, style=style, alpha=0.12, lw=1.0)
            ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
            ax.set_ylim(0, 1.6)
            _steps_axis(ax, steps)
            ax.set_ylabel("output FI / final (ratio)")
            ax.set_title(f"{labels} labels", loc="left")
        axes[0, 1].plot([], [], "k-", lw=1.0, label="common angles")
        axes[0, 1].plot([], [], "k--", lw=1.0, label="rare angles")
        _legend_below(axes[0, 1], ncol=2)

        ax = axes[0, 3]
        for i, prior in enumerate(priors):
            _points(ax, out["half_time_gap"].sel(labels="clean", prior=[prior]), x[i:i + 1],
                    PRIOR_COLOURS.get(prior), "_" + prior)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, [_label(p) for p in priors], rotation=90)
        ax.set_xlabel("prior")
        ax.set_xlim(-0.5, len(priors) - 0.3)
        ax.set_ylabel("clean gap, log₂ ratio (1)")
        ax.set_title("half-time gap", loc="left")

        ax = axes[1, 0]
        # priors do not share seeds: each prior's pairs stand alone (connect=False)
        paired_difference(ax, out["half_time_gap"].sel(labels="clean"),
                          out["half_time_gap"].sel(labels="equalised"), colour="C4",
                          connect=False)
        ax.set_xticks(x, [_label(p) for p in priors], rotation=90)
        ax.set_xlabel("prior")
        ax.set_xlim(-0.5, len(priors) - 0.3)
        ax.set_ylabel("Δ gap, log₂ ratio (1)")
        ax.set_title("equalised − clean", loc="left")

        ax = axes[1, 1]
        clean = ds.sel(prior=shown, labels="clean")
        picks = [s for s in (10, EARLY_STEP, int(steps[-1])) if s in steps] or [int(steps[-1])]
        shades = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, len(picks)))
        for step, shade in zip(picks, shades, strict=True):
            for layer, style in (("fc", "--"), ("output", "-")):
                band(ax, theta, clean["fisher"].sel(layer=layer, step=step)
                     .transpose("angle", "replicate"), shade,
                     f"step {step}" if layer == "output" else None, log=True, style=style,
                     alpha=0.12, lw=1.0)
        ax.axvline(float(ds["centre"].sel(prior=shown)), color="0.5", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_ylabel("FI (rad⁻²)")
        angle_axis(ax)
        ax.set_title(f"{_label(shown)}: output, fc - -", loc="left")
        _legend_below(ax, ncol=3)

        ax = axes[1, 2]
        shades = plt.get_cmap("plasma")(np.linspace(0.0, 0.8, len(LAYERS)))
        for layer, shade in zip(LAYERS, shades, strict=True):
            if layer in ds["layer"].values:
                band(ax, 1 + steps, clean["alignment"].sel(layer=layer)
                     .transpose("step", "replicate"), shade, layer, alpha=0.15, lw=1.0)
        ax.axhline(0, color="0.6", lw=0.6)
        if EARLY_STEP in steps:
            ax.axvline(1 + EARLY_STEP, color="0.6", lw=0.6, ls=":")
        _steps_axis(ax, steps)
        ax.set_ylabel("prior alignment a (1)")
        ax.set_title(f"{_label(shown)}: alignment", loc="left")
        _legend_below(ax, ncol=3)

        ax = axes[1, 3]
        ax.axhspan(-PEAK_MARGIN, PEAK_MARGIN, color="0.9", lw=0)
        for i, prior in enumerate(priors):
            _points(ax, out["peak_offset"].sel(labels="clean", prior=[prior]), x[i:i + 1],
                    PRIOR_COLOURS.get(prior), "_" + prior)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, [_label(p) for p in priors], rotation=90)
        ax.set_xlabel("prior")
        ax.set_xlim(-0.5, len(priors) - 0.3)
        ax.set_ylabel("clean FI peak − mode (deg)")
        ax.set_title("final peak", loc="left")
        panel_letters(fig)
    return fig


def _legend_below(ax, ncol: int) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=ncol, frameon=False,
              handlelength=1.4, columnspacing=0.8)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then the intervals and their n."""
    fig = plot_learning_dynamics(ds)
    n = ds.sizes["prior"]
    text = caption(fig, f"Learning dynamics of the standard CNN trained from scratch under "
                        f"{n} prior{'s' if n > 1 else ''}, with clean or equalised labels.")
    plt.close(fig)
    return text
