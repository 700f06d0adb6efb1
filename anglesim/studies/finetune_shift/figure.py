"""The fine-tuning-under-shift study's figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.plotting import (
    STYLE,
    band,
    band_footnote,
    fi_vs_angle_axis,
    interval_bars,
    log_band,
    replicate_count,
    successful,
)
from anglesim.stats import mean_ci

# ---- figure ----------------------------------------------------------------------------------


_FS_SHIFT_LABELS = {"input": "input shift (spatial frequency)",
                    "prior": "prior shift (uniform → von Mises at 90°)",
                    "output": "output shift (target θ + 45°)"}


_FS_SHIFT_COLOURS = {"input": "#1b9e77", "prior": "#d95f02", "output": "#7570b3"}


def _fs_plain_log(ax) -> None:
    """A log y axis labelled with plain numbers (1, 2, 5, 10, …) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _fs_strategy_colours(strategies: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def _fs_by_strategy(ax, values: xr.DataArray, groups: list, colours: dict, labels: dict,
                    group_dim: str, strategies: list[str], scale: float = 1.0,
                    bounds: tuple[float | None, float | None] | None = None) -> None:
    """Mean ± 95% CI over replicates of ``values`` per strategy (x), one marker per group
    (no bar below 3 replicates: :func:`anglesim.plotting.interval_bars`)."""
    x = np.arange(len(strategies))
    width = 0.7 / max(1, len(groups))
    for k, g in enumerate(groups):
        interval_bars(ax, x + (k - (len(groups) - 1) / 2) * width,
                      scale * values.sel({group_dim: g}).sel(strategy=strategies), colours[g],
                      labels[g], bounds=bounds, ms=3.5, lw=1)
    ax.set_xticks(x, strategies, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(strategies) - 0.4)


def plot_finetune_shift(ds: xr.Dataset) -> plt.Figure:
    """Fine-tuning under shift: error per strategy and shift, and what each strategy changed.

    Rows 1–2, one panel per shift: the in-distribution error (on the fine-tuning task, weighted
    by its prior) and the out-of-distribution error (the pretraining task) of every strategy,
    mean ± 95% CI over replicates for each number of fine-tuning images, the parent's error
    as a dashed line. (d) the input shift's calibration: the parent's error along the
    frequency ladder and the doubling threshold; (h) the source information left in ``fc``
    (ridge-probe error). Row 3, largest n_train: linear CKA of each block against the parent,
    per strategy and shift, and (l) Auto-RGN's mean rate weight per block. Row 4: (m) TPGM's
    learned radius per block over the block's pretrained norm, beside how far full
    fine-tuning moved it; (n) the change of the output's FI, log₂(FI / parent FI) averaged
    over θ; (o, p) FI curves of the decoded angle, parent and three strategies.
    """
    ds = successful(ds)
    shifts = [str(s) for s in ds["shift"].values]
    strategies = [str(s) for s in ds["strategy"].values]
    sizes = [int(n) for n in ds["n_train"].values]
    n_max = max(sizes)
    size_colours = dict(zip(sizes, plt.get_cmap("viridis")(np.linspace(0.15, 0.85,
                                                                        len(sizes))),
                            strict=True))
    size_labels = {n: f"{n} images" for n in sizes}
    s_colours = _fs_strategy_colours(strategies)
    theta_deg = np.degrees(ds["angle"].values)
    blocks = [str(b) for b in ds["block"].values]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(4, 4, figsize=(14, 13.5))
        fig.subplots_adjust(left=0.05, right=0.99, top=0.95, bottom=0.05, wspace=0.32,
                            hspace=0.5)
        letters = iter("abcdefghijklmnop")
        for row, (var, parent_var, what) in enumerate([
            ("id_error", "parent_id_error", "in-distribution error"),
            ("ood_error", "parent_ood_error", "out-of-distribution (source) error"),
        ]):
            for col, shift in enumerate(shifts):
                ax = axes[row, col]
                d = ds.sel(shift=shift)
                _fs_by_strategy(ax, d[var], sizes, size_colours, size_labels, "n_train",
                                strategies, scale=180 / np.pi, bounds=(0, 90))
                ax.axhline(float(np.degrees(d[parent_var].mean())), color="0.4", ls="--",
                           lw=0.9, label="parent (no fine-tuning)")
                _fs_plain_log(ax)
                ax.set_ylabel(f"{what} (deg)")
                if row == 1 and col == len(shifts) - 1:  # the emptiest panel: one legend
                    ax.legend(frameon=False, fontsize=7, title="fine-tuning set (rows 1–2)",
                              title_fontsize=7, loc="center")
                label = _FS_SHIFT_LABELS.get(shift, shift)
                if shift == "input" and "shift_value" in d:
                    freqs = sorted({float(v) for v in d["shift_value"].values
                                    if np.isfinite(v)})
                    label = ("input shift: 4 → " + "/".join(f"{f:g}" for f in freqs)
                             + " cycles per image")
                ax.set_title(f"{next(letters)}  {label}", loc="left")
            if row == 0:
                ax = axes[0, 3]
                if "input" in shifts:
                    d = ds.sel(shift="input")
                    freq = d["severity_frequency"].values
                    err = d["severity_error"] / d["severity_base_error"]
                    for r in range(err.sizes["replicate"]):
                        ax.plot(freq, err.isel(replicate=r), "o-", ms=2.5, lw=0.8,
                                color=_FS_SHIFT_COLOURS["input"], alpha=0.6)
                    ax.axhline(2.0, color="0.4", ls="--", lw=0.9, label="2 × source error")
                    ax.axvline(4.0, color="0.6", ls=":", lw=0.9, label="source (4 cycles)")
                    ax.legend(frameon=False, fontsize=7)
                ax.set_xlabel("spatial frequency (cycles per image)")
                ax.set_ylabel("parent's error / its source error")
                ax.set_title(f"{next(letters)}  input shift: severity ladder", loc="left")
            else:
                ax = axes[1, 3]
                shift_labels = {s: s for s in shifts}
                _fs_by_strategy(ax, ds["probe_error"].sel(n_train=n_max), shifts,
                                _FS_SHIFT_COLOURS, shift_labels, "shift", strategies,
                                scale=180 / np.pi, bounds=(0, 90))
                ax.axhline(float(np.degrees(ds["parent_probe_error"].mean())), color="0.4",
                           ls="--", lw=0.9, label="parent")
                ax.set_ylabel("ridge probe of θ from fc, source task (deg)")
                ax.legend(frameon=False, fontsize=7)
                ax.set_title(f"{next(letters)}  source information in fc (n = {n_max})",
                             loc="left")

        xb = np.arange(len(blocks))
        for col, shift in enumerate(shifts):
            ax = axes[2, col]
            d = ds["cka"].sel(shift=shift, n_train=n_max)
            for s in strategies:
                band(ax, xb, d.sel(strategy=s), s_colours[s], s, bounds=(None, 1), alpha=0.15,
                     style="o-", ms=2.5, lw=1)
            ax.set_xticks(xb, blocks)
            ax.set_xlabel("block")
            ax.set_ylabel("linear CKA, parent vs fine-tuned")
            if col == 0:
                ax.legend(frameon=False, fontsize=6.5, ncol=2)
            ax.set_title(f"{next(letters)}  representation drift, {shift} (n = {n_max})",
                         loc="left")

        def per_block(ax, var, ylabel, title, reference=None):
            for shift in shifts:
                values = ds[var].sel(shift=shift, n_train=n_max)
                ok = values.count("replicate").values > 0
                interval_bars(ax, xb[ok], values.isel(block=np.flatnonzero(ok)),
                              _FS_SHIFT_COLOURS[shift], shift, bounds=(0, None), fmt="o-",
                              ms=3, lw=1)
                if reference is not None:
                    ref, _ = mean_ci(reference.sel(shift=shift, n_train=n_max))
                    ax.plot(xb, ref, ":", lw=1, color=_FS_SHIFT_COLOURS[shift])
            ax.set_xticks(xb, blocks)
            ax.set_xlabel("block")
            ax.set_ylabel(ylabel)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(title, loc="left")

        per_block(axes[2, 3], "rgn_weight", "Auto-RGN rate / phase rate",
                  f"{next(letters)}  Auto-RGN per-block rates (n = {n_max})")
        per_block(axes[3, 0], "tpgm_radius_rel", "TPGM radius / ‖θ₀‖ of the block",
                  f"{next(letters)}  TPGM radii (dotted: full's ‖θ − θ₀‖/‖θ₀‖)",
                  reference=ds["weight_change"].sel(strategy="full")
                  if "full" in strategies else None)
        axes[3, 0].set_ylim(bottom=0)

        ax = axes[3, 1]
        _fs_by_strategy(ax, ds["fisher_change"].sel(layer="output", n_train=n_max), shifts,
                        _FS_SHIFT_COLOURS, {s: s for s in shifts}, "shift", strategies)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylabel("log₂ FI of θ̂ / parent's, mean over θ")
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"{next(letters)}  FI change at the output (n = {n_max})", loc="left")

        for ax, shift in zip(axes[3, 2:], [s for s in ("prior", "input") if s in shifts] +
                             [None] * 2, strict=False):
            letter = next(letters)
            if shift is None:
                ax.set_visible(False)
                continue
            d = ds.sel(shift=shift)
            log_band(ax, theta_deg, d["parent_fisher"].sel(layer="output"), "0.3", "parent")
            mean_id = d["id_error"].sel(n_train=n_max).mean("replicate")
            best = str(mean_id["strategy"].values[int(mean_id.argmin("strategy"))])
            shown = list(dict.fromkeys([best, "full", "linear_probe"]))
            for s in (s for s in shown if s in strategies):
                log_band(ax, theta_deg, d["fisher"].sel(strategy=s, n_train=n_max,
                                                         layer="output"),
                          s_colours[s], s + (" (lowest ID error)" if s == best else ""))
            fi_vs_angle_axis(ax)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(f"{letter}  FI curves, {shift} shift (n = {n_max})", loc="left")
        fig.suptitle(f"fine-tuning under shift: {replicate_count(ds)}; each strategy at the "
                     "learning rate its validation loss chose", fontsize=9)
        band_footnote(fig)
    return fig
