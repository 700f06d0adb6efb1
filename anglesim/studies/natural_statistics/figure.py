"""The natural-statistics study's figure, drawn to the figure standard (double column)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.ticker import FuncFormatter

from anglesim.plotting import (
    band,
    caption,
    interval_bars,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    ratio_points,
    successful,
)

__all__ = ["CAPTION", "figure_caption", "plot_natural_statistics"]

ROTATION_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
LAYER_COLOURS = {"conv1": "#a6cee3", "conv2": "#1f78b4", "fc": "#08306b"}
STRATEGY_LABELS = {"full": "full", "linear_probe": "probe", "surgical": "surg.", "lp_ft": "LP-FT"}
CAPTION = (
    "Natural statistics. (a) Orientation energy of the training patches at each rotation. "
    "(b, c) Fisher information of conv2 and fc about grating orientation, relative to its mean "
    "over θ, in networks pretrained at each rotation (dotted: the rotation's energy peaks). "
    "(d) Bias index at each network's own training peaks minus the same index in the networks "
    "of the other rotations, per layer, mean over rotations. (e) The same, paired between "
    "layers. (f) Shift of the cos 4θ phase against the first rotation (line: identity). "
    "(g) Change of the bias index at fc by fine-tuning on gratings, per strategy. (h) Decoding "
    "error after fine-tuning.")


def _curve(ax, da: xr.DataArray, colour, label) -> None:
    """A curve over ``angle`` as mean with its t band over replicates, in degrees."""
    band(ax, np.degrees(da["angle"].values), da.transpose("replicate", "angle"), colour, label,
         lw=1.0)


def plot_natural_statistics(ds: xr.Dataset):
    """The figure (panels a–h, see :data:`CAPTION`); its caption is :func:`figure_caption`."""
    ds = successful(ds)
    rotations = [float(r) for r in ds["rotation"].values]
    colours = dict(zip(rotations, ROTATION_COLOURS, strict=False))
    pre = ds.sel(network="pretrained")
    with print_style():
        fig, axes = print_figure(width="double", height=7.4,
                                 mosaic=[["a", "b", "c"], ["d", "e", "f"], ["g", "g", "h"]])
        ax = axes["a"]
        for r in rotations:
            _curve(ax, ds["energy"].sel(rotation=r), colours[r], f"{r:g}°")
        ax.set(xlabel="orientation θ (deg)", ylabel="energy density (rad⁻¹)",
               title="training patches", xticks=[0, 45, 90, 135, 180])
        for key, layer in (("b", "conv2"), ("c", "fc")):
            ax = axes[key]
            fisher = pre["fisher"].sel(layer=layer)
            relative = fisher / fisher.mean("angle")
            for r in rotations:
                _curve(ax, relative.sel(rotation=r), colours[r], None)
                for peak in (r, r + 90.0):
                    ax.axvline(peak % 180.0, color=colours[r], ls=":", lw=0.8)
            ax.set(xlabel="grating orientation θ (deg)", ylabel="FI / its mean (ratio)",
                   title=f"{layer}, pretrained", xticks=[0, 45, 90, 135, 180])
        fig.legend(*axes["a"].get_legend_handles_labels(), title="rotation of the patches",
                   loc="outside upper center", ncol=len(rotations), frameon=False)
        ax = axes["d"]
        following = pre["bias_following"]
        layers = [str(layer) for layer in following["layer"].values]
        for i, layer in enumerate(layers):
            interval_bars(ax, [i], following.sel(layer=[layer]), LAYER_COLOURS.get(layer, "k"),
                          None)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xticks(range(len(layers)), layers)
        ax.set(xlabel="layer", ylabel="bias index, own − others (1)",
               title="follows the rotation")
        ax = axes["e"]
        pairs = ["conv2 − conv1", "fc − conv2"]
        a = following.sel(layer=["conv1", "conv2"]).assign_coords(layer=pairs)
        b = following.sel(layer=["conv2", "fc"]).assign_coords(layer=pairs)
        paired_difference(ax, a, b)
        ax.set(xlabel="layers", ylabel="difference of bias index (1)", title="with depth")
        ax = axes["f"]
        steps = np.asarray(rotations) - rotations[0]
        ax.plot(steps, steps, color="0.6", lw=0.8, label="rotation")
        for k, layer in enumerate(("conv2", "fc")):
            shift = pre["phase_shift"].sel(layer=layer).transpose("rotation", "replicate")
            interval_bars(ax, steps + (k - 0.5) * 2.0, shift, LAYER_COLOURS[layer], layer)
        interval_bars(ax, steps + 2.0, ds["energy_phase_shift"].transpose("rotation",
                                                                          "replicate"),
                      "0.3", "energy", fmt="s")
        ax.set(xlabel="rotation − first (deg)", ylabel="cos 4θ phase shift (deg)",
               title="cos 4θ phase", xticks=steps)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
        ax = axes["g"]
        fc = ds["bias_following"].sel(layer="fc")
        strategies = [str(s) for s in ds["strategy"].values]
        paired_difference(ax, fc.sel(network="pretrained"), fc.sel(network=strategies))
        ax.set(xlabel="fine-tuning strategy", ylabel="change of bias index at fc (1)",
               title="after fine-tuning on gratings")
        ax = axes["h"]
        # each replicate's mean over the rotations (its networks share its seed), so the
        # interval is over replicates, not over rotations pooled as if they were replicates
        error = np.degrees(ds["finetune_error"].mean(("angle", "rotation")))
        ratio_points(ax, error.transpose("strategy", "replicate"), reference=None)
        ax.set_xticks(range(len(strategies)), [STRATEGY_LABELS.get(s, s) for s in strategies])
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set(xlabel="strategy", ylabel="decoding error (deg)", title="fine-tuned error")
        panel_letters(fig)
    return fig


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: :data:`CAPTION` and what its intervals are, over how many
    replicates (:func:`anglesim.plotting.caption`)."""
    import matplotlib.pyplot as plt

    fig = plot_natural_statistics(ds)
    try:
        return caption(fig, CAPTION)
    finally:
        plt.close(fig)
