"""The surgical sweep's figure: paired error ratios of every arm against full fine-tuning per
shift and n, the chosen rates, and the errors themselves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator

from anglesim.plotting import (
    RatioLocator,
    caption,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    ratio_points,
    successful,
)

SHIFT_TITLES = {"invert": "inversion (conv1 can undo it)", "blur": "blur",
                "noise": "added noise", "output": "output θ + 45° (head can undo it)"}
DEGREES = 180 / np.pi


def _size_colours(sizes: list[int]) -> dict[int, tuple]:
    return dict(zip(sizes, plt.get_cmap("viridis")(np.linspace(0.1, 0.8, len(sizes))),
                    strict=True))


def _offsets(count: int, width: float = 0.54) -> np.ndarray:
    return (np.arange(count) - (count - 1) / 2) * (width / max(count, 1))


def plot_surgical_sweep(ds: xr.Dataset) -> plt.Figure:
    """(a–d) one panel per shift: each arm's test error over full fine-tuning's on the same
    parent (paired ratios on a log axis, one dot per replicate, the geometric mean and its
    95% paired t interval), side by side for each n; (e) the rate each arm chose (marker area:
    how often, over shifts and replicates), per n; (f) the test error of the parent, of full
    fine-tuning at each n and of the exactly undone parent (geometric means and 95% t
    intervals of the log)."""
    ds = successful(ds)
    shifts = [str(s) for s in ds["shift"].values]
    sizes = [int(n) for n in ds["n_train"].values]
    arms = [str(a) for a in ds["strategy"].values if a != "full"]
    colours = _size_colours(sizes)
    offsets = _offsets(len(sizes))
    error = ds["test_error"]
    with print_style():
        fig, axes = print_figure(3, 2, width="double", aspect=0.62)
        for ax, shift in zip(axes.ravel()[:4], shifts, strict=False):
            for k, n in enumerate(sizes):
                cell = error.sel(shift=shift, n_train=n)
                paired_difference(ax, cell.sel(strategy="full"), cell.sel(strategy=arms),
                                  x=np.arange(len(arms)) + offsets[k], ratio=True,
                                  colour=colours[n], connect=False, spread=0.05)
            ax.set_xticks(np.arange(len(arms)), arms)
            ax.set_xlim(-0.6, len(arms) - 0.4)
            ax.set_xlabel("arm (a block alone, LP-FT, L2-SP)")
            ax.set_ylabel("test error / full's")
            ax.set_title(SHIFT_TITLES.get(shift, shift), loc="left")
        for ax in axes.ravel()[len(shifts):4]:
            ax.set_visible(False)

        ax = axes[2, 0]
        chosen = ds["chosen_lr"]
        lrs = ds["lr"].values
        every = [str(a) for a in ds["strategy"].values]
        interior = 0
        for k, n in enumerate(sizes):
            c = chosen.sel(n_train=n)
            for i, arm in enumerate(every):
                values = c.sel(strategy=arm).values.ravel()
                counts = np.array([(values == lr).sum() for lr in lrs])
                shown = counts > 0
                ax.scatter(np.full(shown.sum(), i + offsets[k]), lrs[shown],
                           s=60 * counts[shown] / max(values.size, 1), color=colours[n],
                           alpha=0.8, lw=0)
        valid = np.isfinite(chosen.values)
        interior = int(((chosen > lrs.min()) & (chosen < lrs.max())).sum())
        ax.set_yscale("log")
        ax.set_yticks(lrs, [f"{v:g}" for v in lrs])
        ax.minorticks_off()
        ax.set_ylim(lrs.min() / 2, lrs.max() * 2)
        ax.set_xticks(np.arange(len(every)), every)
        ax.set_xlim(-0.6, len(every) - 0.4)
        ax.set_xlabel("arm")
        ax.set_ylabel("chosen Adam rate")
        ax.set_title(f"chosen rates ({interior}/{int(valid.sum())} interior)", loc="left")

        ax = axes[2, 1]
        x = np.arange(len(shifts))
        series = [("parent", ds["parent_error"], "0.55", "s")]
        series += [(f"full, n = {n}", error.sel(strategy="full", n_train=n), colours[n], "o")
                   for n in sizes]
        if np.isfinite(ds["undo_error"]).any():
            series.append(("exact undo", ds["undo_error"], "k", "x"))
        width = _offsets(len(series), 0.7)
        for (label, values, colour, marker), dx in zip(series, width, strict=True):
            ratio_points(ax, (values * DEGREES).transpose("shift", "replicate"), x=x,
                         offset=dx, colour=colour, reference=None, fmt=marker, spread=0.04,
                         label="_" + label)
        ax.yaxis.set_major_locator(RatioLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xticks(x, shifts)
        ax.set_xlim(-0.6, len(shifts) - 0.4)
        ax.set_xlabel("shift")
        ax.set_ylabel("test error (deg)")
        ax.set_title("test error: parent, full fine-tuning, exact undo", loc="left")

        handles = [Line2D([], [], color=colours[n], marker="o", ls="", label=f"n = {n}")
                   for n in sizes]
        handles += [Line2D([], [], color="0.55", marker="s", ls="", label="parent"),
                    Line2D([], [], color="k", marker="x", ls="", label="exact one-block undo")]
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles),
                   frameon=False)
        panel_letters(fig)
    return fig


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, and what its intervals are over how many
    replicates (:func:`anglesim.plotting.caption` of the drawn figure)."""
    fig = plot_surgical_sweep(ds)
    text = caption(fig, "Surgical fine-tuning against full fine-tuning of the same parent "
                        "under four shifts; each arm at the Adam rate its validation loss "
                        "chose, test error on a separate test set of the shifted task. "
                        "(e) marker area: how often each rate was chosen over shifts and "
                        "replicates.")
    plt.close(fig)
    return text
