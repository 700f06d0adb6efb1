"""The fine-tuning-under-shift study's figure (8 panels, double column) and its caption."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.plotting import (
    caption,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    ratio_points,
    successful,
)

from .analysis import REFERENCE, interior_share

__all__ = ["FIGURE_TEXT", "figure_caption", "plot_finetune_shift"]

SHIFT_TITLES = {"input": "input (frequency)", "prior": "prior (half circle)",
                "output": "output (θ + 45°)"}
LABELS = {"full": "full", "linear_probe": "LP", "lp_ft": "LP-FT", "surgical": "surgical",
          "freeze": "freeze", "auto_rgn": "Auto-RGN", "discriminative": "discrim.",
          "l2_sp": "L2-SP", "tpgm": "TPGM", "ldifs": "LDIFS", "lora": "LoRA"}
"""Short tick labels of the strategies (the caption spells them out)."""
SHIFT_COLOURS = {"input": "#1b9e77", "prior": "#d95f02", "output": "#7570b3"}
REGION_TITLES = {"id": "ID", "ood": "OOD"}

FIGURE_TEXT = (
    "Fine-tuning on angles in [0°, 90°) only, tested there (ID) and on [90°, 180°) (OOD). "
    "(a–f) Error of each strategy over full fine-tuning's on the same parent, per shift, ID "
    "(a–c) and OOD (d–f), one colour per fine-tuning set size; below 1 the strategy errs "
    "less (LP: linear probe; LP-FT: linear probe then fine-tuning; surgical: conv1 only; "
    "freeze: all but conv1; discrim.: discriminative rates; L2-SP, TPGM, LoRA, Auto-RGN "
    "as registered in anglesim.finetune). (g) Share of the learning-rate choices at each "
    "rate of the grid, per strategy (all shifts, sizes and replicates). (h) Each strategy's "
    "feature change of block fc on OOD images over that on ID images, largest set, per "
    "shift (below 1: OOD features moved less; LP moves none).")
"""What the figure shows; :func:`figure_caption` adds the intervals and their n."""


def _size_colours(sizes: list[int]) -> dict[int, tuple]:
    return dict(zip(sizes, plt.get_cmap("viridis")(np.linspace(0.1, 0.75, len(sizes))),
                    strict=True))


def _strategy_axis(ax, strategies: list[str], labels: bool = True) -> None:
    """Strategies along x (short labels), or no tick labels where the panel below has them."""
    x = np.arange(len(strategies))
    ax.set_xticks(x, [LABELS.get(s, s) for s in strategies] if labels else [], rotation=90)
    ax.set_xlim(-0.6, len(strategies) - 0.4)
    if labels:
        ax.set_xlabel("strategy")


def _contrast_panel(ax, ds: xr.Dataset, var: str, shift: str, strategies: list[str],
                    colours: dict[int, tuple]) -> None:
    """Per strategy (x), the paired ratio strategy / full of ``var`` for each n_train side by
    side: one dot per replicate, the geometric mean and its paired t interval."""
    d = ds[var].sel(shift=shift)
    sizes = list(colours)
    x = np.arange(len(strategies), dtype=float)
    width = 0.8 / len(sizes)
    for k, n in enumerate(sizes):
        c = d.sel(n_train=n)
        paired_difference(ax, c.sel(strategy=REFERENCE), c.sel(strategy=strategies), ratio=True,
                          x=x + (k - (len(sizes) - 1) / 2) * width, colour=colours[n],
                          label=f"{n} images", connect=False, spread=width * 0.3)


def _rates_panel(ax, ds: xr.Dataset, fig) -> None:
    """Share of the chosen rates at each grid rate, per strategy (an image)."""
    lrs = ds["lr"].values
    strategies = [str(s) for s in ds["strategy"].values]
    chosen = ds["chosen_lr"]
    share = np.array([[float((np.isclose(chosen.sel(strategy=s), lr)).sum())
                       / max(1, int(chosen.sel(strategy=s).count())) for lr in lrs]
                      for s in strategies])
    image = ax.imshow(share, aspect="auto", cmap="Greys", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_xticks(np.arange(len(lrs)), [f"{v:g}" for v in lrs], rotation=45)
    ax.set_yticks(np.arange(len(strategies)), [LABELS.get(s, s) for s in strategies])
    ax.set_xlabel("Adam learning rate")
    ax.set_ylabel("strategy")
    bar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
    bar.set_label("share of choices")
    share_interior = interior_share(chosen, lrs)
    ax.set_title(f"chosen rates ({100 * share_interior:.0f}% interior)")


def _mechanism_panel(ax, ds: xr.Dataset, strategies: list[str]) -> None:
    """Feature change of fc on OOD over ID images, per strategy, largest n_train, a series
    per shift."""
    n_max = int(ds["n_train"].max())
    fc = ds["feature_change"].sel(block="fc", n_train=n_max)
    ratio = fc.sel(region="ood") / fc.sel(region="id")
    shifts = [str(s) for s in ds["shift"].values]
    x = np.arange(len(strategies), dtype=float)
    width = 0.8 / len(shifts)
    for k, shift in enumerate(shifts):
        ratio_points(ax, ratio.sel(shift=shift, strategy=strategies),
                     x=x + (k - (len(shifts) - 1) / 2) * width, colour=SHIFT_COLOURS[shift],
                     label=shift, spread=width * 0.5)
    _strategy_axis(ax, strategies)
    ax.set_ylabel("fc feature change, OOD / ID (ratio)")
    ax.set_title(f"fc features, {n_max} images")
    ax.legend(title="shift", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def plot_finetune_shift(ds: xr.Dataset) -> plt.Figure:
    """The study's figure (:data:`FIGURE_TEXT` says what each panel shows): 8 panels at
    double-column width, the paired ratios against full fine-tuning drawn as paired
    contrasts (:func:`anglesim.plotting.paired_difference`)."""
    ds = successful(ds)
    shifts = [str(s) for s in ds["shift"].values]
    strategies = [str(s) for s in ds["strategy"].values if str(s) != REFERENCE]
    colours = _size_colours([int(n) for n in ds["n_train"].values])
    mosaic = [[f"{r}_{s}" for s in shifts for _ in (0, 1)] for r in ("id", "ood")]
    mosaic.append(["rates"] * len(shifts) + ["mechanism"] * len(shifts))
    with print_style():
        fig, axes = print_figure(mosaic=mosaic, width="double", height=8.6)
        for region in ("id", "ood"):
            for shift in shifts:
                ax = axes[f"{region}_{shift}"]
                _contrast_panel(ax, ds, f"{region}_error", shift, strategies, colours)
                _strategy_axis(ax, strategies, labels=region == "ood")
                ax.set_ylabel(f"{REGION_TITLES[region]} error / full's (ratio)")
                ax.set_title(f"{REGION_TITLES[region]}: {SHIFT_TITLES.get(shift, shift)}")
        handles, labels = axes[f"id_{shifts[0]}"].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncol=len(labels),
                   title=f"fine-tuning set (a–{chr(ord('a') + 2 * len(shifts) - 1)})")
        _rates_panel(axes["rates"], ds, fig)
        _mechanism_panel(axes["mechanism"], ds, [REFERENCE] + strategies)
        panel_letters(fig)
    return fig


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: :data:`FIGURE_TEXT` and what its intervals are, over how many
    replicates (:func:`anglesim.plotting.caption`, from the figure drawn)."""
    fig = plot_finetune_shift(ds)
    try:
        return caption(fig, FIGURE_TEXT)
    finally:
        plt.close(fig)
