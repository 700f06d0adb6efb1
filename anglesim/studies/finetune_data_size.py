"""Fine-tuning data size: how much data does re-centring a prior take, whole network vs frozen?

The reference setup of the research anglesim grew from (lrast/angleFinetuning: the reference
MLP, ``GratingSpec.reference()``, finite datasets with early stopping, the research's
fine-tuning of a network trained on one prior with a few images from another): a parent
network is trained on D = 512 images from a von Mises prior at 0° (κ = 8), then fine-tuned on
D_ft images from the same prior centred at 90°, either every layer or with the first layer
(``fc1``, the pixel layer holding almost all the weights) frozen. We measure the bias-corrected
linear FI of the output (the noise is not Gaussian) near the old and the new peak, and the
decoding error.

**Design.** Every fine-tuning of one replicate starts from the same parent, and the FI and
error draws come from the same two streams for the parent and each of its children (common
random numbers), so the freezing modes, the sizes and the parent are compared paired by
parent (replicate). Regions follow :func:`anglesim.angles.near_far`: within 22.5° of the new
peak (90°) or of the old one (0°), 9 of the 36 grid angles each. The declared claims
(:data:`CLAIMS`, Holm over the family of 7), each a ratio tested on the log scale:

* ``whole_error`` (per D_ft): fine-tuning the whole network leaves a lower error near the new
  peak than fine-tuning with ``fc1`` frozen;
* ``whole_fisher`` (per D_ft): ... and a higher FI near the new peak;
* ``old_fisher_lost`` (per D_ft): whole-network fine-tuning lowers FI near the old peak below
  the parent's;
* ``more_data``: the error near the new peak is lower after whole-network fine-tuning on the
  largest D_ft than on the smallest;
* exploratory: FI near the old peak with ``fc1`` frozen against the parent's.

**Sizes.** Full: parents trained on 512 images, D_ft ∈ {16, 256}, 8 parents (≥ 8 pairs for
every contrast). A replicate measures FI once per network (8 CPU s each) and trains its parent
and its children: 135 CPU s measured for one replicate with D_ft ∈ {16, 64, 256} (seven FI
measurements, six children), so about 115 CPU s with two sizes (five, four): about 920 CPU s,
7.7 min on 2 workers; a third size would take it to 9 min. The earlier design (parents on 2048
images, whose training alone takes about 2 CPU min by the reference MLP's cost per epoch, and
D_ft ∈ {16, 32, …, 512}) is an override (``parent_size=2048 sizes=[16,32,64,128,256,512]``).
On its six parents (a guide only: those parents saw 2048 images) the MDEs at Holm's level over
these 7 contrasts were ×1.2–2.7 (a fold either way) against observed effects of ×0.23–0.62 on
the error, ×24–27 on FI near the new peak and ×0.37–0.54 on FI near the old one: all but the
error at D_ft = 16 (×0.62, MDE ×2.6) were beyond their MDE. Quick: a parent on 16 images of
33×33, D_ft ∈ {16, 32}, 2 replicates (a smoke test; its claims, declared for the full sizes,
are "not in this run").

Run: ``anglesim run finetune_data_size [--quick]``.
"""

from __future__ import annotations

import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from anglesim import angles as ang
from anglesim.claims import Contrast
from anglesim.distributions import VonMises
from anglesim.models import reference_mlp
from anglesim.plotting import (
    PHASE_COLOURS,
    RatioLocator,
    angle_axis,
    caption,
    interval_bars,
    log_band,
    mark_angle,
    mean_ci,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import DTHETA, labelled, output_fisher, reference_spec

NAME = "finetune_data_size"
OLD, NEW = VonMises(0.0, 8.0), VonMises(math.pi / 2, 8.0)
FROZEN = {"none": None, "fc1": ["fc2", "head"]}
"""Which blocks train: every one, or all but the first layer."""
CLAIM_SIZES = [16, 256]
"""The fine-tuning sizes D_ft the claims are about (the full size's)."""
SHIFT = "0->90"
"""The one shift of the grid: from the prior at 0° to the one at 90°."""

SIZES = {
    "full": dict(image_size=101, parent_size=512, sizes=CLAIM_SIZES, epochs=60, patience=5,
                 n_angles=36, n_trials=250, replicates=8),
    "quick": dict(image_size=33, parent_size=16, sizes=[16, 32], epochs=2, patience=2,
                  n_angles=8, n_trials=20, replicates=2),
}


def phase(name: str, prior, spec, d: int, sz: dict, trainable=None) -> Phase:
    """The reference protocol: Adam, lr 1e−3, batch 32, 8D/2D/2D, early stopping."""
    return Phase(name, prior, spec, loss="vector_mse", lr=1e-3, batch_size=32, dataset_size=d,
                 epochs=sz["epochs"], patience=sz["patience"], eval_angles=sz["n_angles"],
                 trainable=trainable)


def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """One parent, fine-tuned with every D_ft and both freezing modes."""
    sz, on = ctx.params, ctx.on_device
    spec = reference_spec(sz["image_size"])
    grid = ctx.angles.double()
    parent = reference_mlp(image_size=spec.size, generator=ctx.seed_generator())
    train(parent, [phase("parent", OLD, spec, sz["parent_size"], sz)], ctx.seed, **on)

    def measure(net) -> tuple[np.ndarray, np.ndarray]:
        # the FI's and the error's noise from two streams, the same for the parent and every
        # fine-tuned network (common random numbers)
        fi, _ = output_fisher(net, spec, grid, sz["n_trials"], DTHETA, ctx.generator("fisher"))
        err = evaluate_error(net, spec, sz["n_angles"], repeats=16,
                             generator=ctx.generator("eval"))
        return fi, err.values

    parent_fi, parent_err = measure(parent)
    fisher = np.empty((len(sz["sizes"]), len(FROZEN), grid.numel()))
    error = np.empty_like(fisher)
    for i, d in enumerate(sz["sizes"]):
        for j, (_, trainable) in enumerate(FROZEN.items()):
            net = copy.deepcopy(parent)
            train(net, [phase("finetune", NEW, spec, d, sz, trainable)],
                  ctx.stream_seed("data", i), **on)
            fisher[i, j], error[i, j] = measure(net)
    angle = grid.numpy()
    ds = xr.Dataset(
        {
            "fisher": (("finetune_size", "frozen", "angle"), fisher),
            "abs_error": (("finetune_size", "frozen", "angle"), error),
            "parent_fisher": ("angle", parent_fi),
            "parent_abs_error": ("angle", parent_err),
        },
        coords={"finetune_size": sz["sizes"], "frozen": list(FROZEN), "angle": angle},
    )
    ds["fisher"].attrs = {"units": "rad^-2", "method": "linear_bias_corrected",
                          "quantity": "bias-corrected linear FI of the 2-D output"}
    return ds


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": reference_spec(params["image_size"]).to_config(), "old": OLD.to_config(),
            "new": NEW.to_config(), "frozen": FROZEN, "dtheta": DTHETA}


# ---- derived measures ------------------------------------------------------------------------

REGIONS = {"near_new": NEW, "near_old": OLD}
"""Regions of the angle grid: within 22.5° of the new prior's peak (90°) or the old one's (0°)."""


def region_masks(angle: xr.DataArray, near: float = math.pi / 8) -> xr.DataArray:
    """Boolean masks over ``angle`` of :data:`REGIONS` (dim ``region``), by
    :func:`anglesim.angles.near_far`'s one boundary rule."""
    masks = [ang.near_far(angle.values, prior.to_config()["loc"], near, max(near, math.pi / 4))[0]
             for prior in REGIONS.values()]
    return xr.DataArray(np.array(masks), dims=("region", "angle"),
                        coords={"region": list(REGIONS), "angle": angle.values})


LABELS = {
    "shift": ("1", "the prior shift: von Mises (κ = 8) at 0°, then at 90°"),
    "finetune_size": ("1", "fine-tuning images D_ft (8D_ft train, 2D_ft validation, 2D_ft test)"),
    "frozen": ("1", "blocks frozen while fine-tuning: none (whole network) or fc1"),
    "region": ("1", "region of the angle grid: within 22.5° of the new peak (90°) or of the old "
                    "peak (0°)"),
    "angle": ("rad", "orientation θ"),
    "replicate": ("1", "replicate (parent) index"),
    "fisher": ("rad^-2", "bias-corrected linear FI of the 2-D output after fine-tuning"),
    "abs_error": ("rad", "mean absolute decoding error |θ̂ − θ| after fine-tuning"),
    "parent_fisher": ("rad^-2", "bias-corrected linear FI of the parent's 2-D output"),
    "parent_abs_error": ("rad", "the parent's mean absolute decoding error |θ̂ − θ|"),
    "region_angles": ("1", "grid angles in the region"),
    "fisher_region": ("rad^-2", "FI after fine-tuning, mean over the region's angles"),
    "abs_error_region": ("rad", "decoding error after fine-tuning, mean over the region's "
                                "angles"),
    "parent_fisher_region": ("rad^-2", "the parent's FI, mean over the region's angles"),
    "parent_abs_error_region": ("rad", "the parent's decoding error, mean over the region's "
                                       "angles"),
}
"""Units and long names of the study's variables and coordinates."""


def measures(ds: xr.Dataset) -> xr.Dataset:
    """FI and error averaged over each region (:data:`REGIONS`), per D_ft, mode and replicate
    (``fisher_region``, ``abs_error_region``), and the parents' (``parent_…``), on a linear
    scale (the bias-corrected estimate of a small FI can be negative at single angles)."""
    ok = successful(ds)
    masks = region_masks(ok["angle"])
    out = {name: ok[var].where(masks).mean("angle")
           for var, name in [("fisher", "fisher_region"), ("abs_error", "abs_error_region"),
                             ("parent_fisher", "parent_fisher_region"),
                             ("parent_abs_error", "parent_abs_error_region")]}
    out["region_angles"] = masks.sum("angle")
    return xr.Dataset(out)


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added, and units and long names on every variable."""
    m = measures(ds)
    out = ds.assign(m.data_vars)
    for name in m.data_vars:
        out[name].attrs = {}
    return labelled(out, LABELS)


# ---- the declared claims ---------------------------------------------------------------------


def _cells(region: str, sizes: list[int] = CLAIM_SIZES) -> dict:
    return {"shift": SHIFT, "region": region, "finetune_size": list(sizes)}


CLAIMS = [
    Contrast(name="whole_error", statement="fine-tuning the whole network leaves a lower error "
             "within 22.5° of the new peak than fine-tuning with fc1 frozen",
             measure="abs_error_region", arm={"frozen": "none"}, against={"frozen": "fc1"},
             paired=True, where=_cells("near_new"), over=["finetune_size"], scale="ratio",
             direction="less"),
    Contrast(name="whole_fisher", statement="fine-tuning the whole network raises FI within "
             "22.5° of the new peak above fine-tuning with fc1 frozen",
             measure="fisher_region", arm={"frozen": "none"}, against={"frozen": "fc1"},
             paired=True, where=_cells("near_new"), over=["finetune_size"], scale="ratio",
             direction="greater"),
    Contrast(name="old_fisher_lost", statement="whole-network fine-tuning lowers FI within "
             "22.5° of the old peak below the parent's", measure="fisher_region",
             arm={"frozen": "none"}, against="parent_fisher_region", where=_cells("near_old"),
             over=["finetune_size"], scale="ratio", direction="less"),
    Contrast(name="more_data", statement=f"whole-network fine-tuning on {CLAIM_SIZES[-1]} "
             f"images leaves a lower error near the new peak than on {CLAIM_SIZES[0]}",
             measure="abs_error_region", arm={"finetune_size": CLAIM_SIZES[-1]},
             against={"finetune_size": CLAIM_SIZES[0]}, paired=True,
             where={"shift": SHIFT, "region": "near_new", "frozen": "none"}, scale="ratio",
             direction="less"),
    Contrast(name="frozen_old_fisher", statement="FI within 22.5° of the old peak after "
             "fine-tuning with fc1 frozen, over the parent's", measure="fisher_region",
             arm={"frozen": "fc1"}, against="parent_fisher_region", where=_cells("near_old"),
             over=["finetune_size"], scale="ratio", direction="differs", exploratory=True),
]
"""The study's planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """Error and FI near the new and the old peak by D_ft and mode, and the parents': mean and
    95% t interval over replicates; then the figure's caption (the claims table follows)."""
    if "fisher_region" not in ds:
        ds = add_measures(ds)
    ok = successful(ds).isel(shift=0)

    def cell(da: xr.DataArray, fmt: str, scale: float = 1.0) -> str:
        m, h = mean_ci(da * scale)
        return f"{float(m):{fmt}} ± {float(h):{fmt}}"

    n = int(ok["parent_abs_error_region"].isel(region=0).count())
    deg = 180 / math.pi
    lines = [f"mean and 95% t interval over {n} parents: error near the new peak (deg) | FI "
             "near the new | the old peak (rad⁻²)",
             "  parent: " + " | ".join([
                 cell(ok["parent_abs_error_region"].sel(region="near_new"), ".1f", deg),
                 cell(ok["parent_fisher_region"].sel(region="near_new"), ".0f"),
                 cell(ok["parent_fisher_region"].sel(region="near_old"), ".0f")])]
    for frozen in ok["frozen"].values:
        label = "whole network" if frozen == "none" else f"{frozen} frozen"
        lines.append(f"  {label}:")
        for d in ok["finetune_size"].values:
            c = ok.sel(frozen=frozen, finetune_size=d)
            lines.append(f"    D_ft = {int(d)}: " + " | ".join([
                cell(c["abs_error_region"].sel(region="near_new"), ".1f", deg),
                cell(c["fisher_region"].sel(region="near_new"), ".0f"),
                cell(c["fisher_region"].sel(region="near_old"), ".0f")]))
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`, from what the figure drew)."""
    fig = plot_finetune_data_size(ds)
    try:
        counts = ds["region_angles"] if "region_angles" in ds else measures(ds)["region_angles"]
        near = int(counts.sel(region="near_new"))
        d_max = int(ds["finetune_size"].max())
        return caption(fig, (
            "Fine-tuning data size: reference MLPs trained on images from a von Mises prior at "
            "0° (κ = 8; the parents), then fine-tuned on D_ft images "
            "from one at 90°, the whole network or with the pixel layer fc1 frozen. (a) FI of "
            f"the output against θ, parents and children fine-tuned on {d_max} images; (b) "
            f"error and (c) FI within 22.5° of the new peak ({near} of {ds.sizes['angle']} "
            "angles) against D_ft, parents dotted; (d) error and (e) FI near the new peak, "
            "whole network over fc1 frozen, and (f) FI near the old peak after fine-tuning "
            "over the parent's, paired by parent."))
    finally:
        plt.close(fig)


def log_ticks(ax) -> None:
    """Tick labels of a log y axis that read as numbers and do not crowd: decades only over
    two decades or more, :class:`~anglesim.plotting.RatioLocator`'s steps below."""
    low, high = ax.get_ylim()
    if high / low >= 100:
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_locator(RatioLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())


MODE_COLOURS = {"none": PHASE_COLOURS[1], "fc1": PHASE_COLOURS[2]}
MODE_LABELS = {"none": "whole network", "fc1": "fc1 frozen"}


def plot_finetune_data_size(ds: xr.Dataset) -> plt.Figure:
    """Fine-tuning data size: FI and error near the new and old peak against D_ft.

    Panels: (a) the output's linear FI against θ, geometric mean and 95% t band of log FI, for
    the parents and their children fine-tuned on the largest D_ft in each mode, peaks marked;
    (b) mean error within 22.5° of the new peak and (c) FI there against D_ft (log axes), per
    mode, mean and 95% t interval over parents, the parents' mean dotted; (d, e) the same
    quantities, whole network over fc1 frozen, and (f) FI near the old peak after fine-tuning
    over the parent's, per mode: paired ratios, one dot per parent, their geometric mean and
    95% paired t interval (the claims' tests).
    """
    if "fisher_region" not in ds:
        ds = add_measures(ds)
    ds = successful(ds).isel(shift=0)
    sizes = ds["finetune_size"].values
    modes = [str(m) for m in ds["frozen"].values]
    theta_deg = np.degrees(ds["angle"].values)
    x = np.arange(len(sizes), dtype=float)
    ticks = [str(int(d)) for d in sizes]
    with print_style():
        fig, axes = print_figure(2, 3, width="double", aspect=0.68)
        ax = axes[0, 0]
        log_band(ax, theta_deg, ds["parent_fisher"], "0.45", "parent")
        for mode in modes:
            log_band(ax, theta_deg, ds["fisher"].sel(frozen=mode, finetune_size=sizes[-1]),
                     MODE_COLOURS[mode], MODE_LABELS[mode])
        mark_angle(ax, OLD.to_config()["loc"], "old")
        mark_angle(ax, NEW.to_config()["loc"], "new")
        ax.set_yscale("log")
        ax.set_ylabel("linear FI of output (rad⁻²)")
        angle_axis(ax)
        ax.set_title(f"FI, D_ft = {int(sizes[-1])}", loc="left")
        low, high = ax.get_ylim()
        ax.set_ylim(low / (high / low) ** 0.45, high)  # room for the legend below the data
        ax.legend(loc="lower center", ncols=3, handlelength=1.0, columnspacing=0.8)

        for ax, var, scale, ylabel, title in [
                (axes[0, 1], "abs_error_region", 180 / math.pi, "mean |θ̂ − θ| (deg)",
                 "error near the new peak"),
                (axes[0, 2], "fisher_region", 1.0, "mean FI (rad⁻²)", "FI near the new peak")]:
            ax.set_yscale("log")
            for offset, mode in zip((-0.06, 0.06), modes, strict=False):
                interval_bars(ax, x + offset,
                              scale * ds[var].sel(frozen=mode, region="near_new"),
                              MODE_COLOURS[mode], MODE_LABELS[mode], log=True, fmt="o-", ms=3)
            parent = scale * ds[f"parent_{var}"].sel(region="near_new")
            ax.axhline(float(np.exp(np.log(parent.where(parent > 0)).mean())), color="0.45",
                       ls=":", lw=1)
            ax.set_xticks(x, ticks)
            ax.set_xlim(-0.5, len(sizes) - 0.5)
            ax.set_xlabel("fine-tuning images D_ft")
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")

        for ax, var, title in [(axes[1, 0], "abs_error_region", "error near new: whole / fc1"),
                               (axes[1, 1], "fisher_region", "FI near new: whole / fc1")]:
            values = ds[var].sel(region="near_new")
            if len(modes) == 2:
                paired_difference(ax, values.sel(frozen="fc1"), values.sel(frozen="none"),
                                  ratio=True, x=x, colour=PHASE_COLOURS[1])
            ax.set_xticks(x, ticks)
            ax.set_xlim(-0.5, len(sizes) - 0.5)
            ax.set_xlabel("fine-tuning images D_ft")
            ax.set_ylabel("whole network / fc1 frozen")
            ax.set_title(title, loc="left")

        ax = axes[1, 2]
        for offset, mode in zip((-0.2, 0.2), modes, strict=False):
            paired_difference(ax, ds["parent_fisher_region"].sel(region="near_old"),
                              ds["fisher_region"].sel(frozen=mode, region="near_old"),
                              ratio=True, x=x + offset, colour=MODE_COLOURS[mode],
                              label=MODE_LABELS[mode], spread=0.07, connect=False)
        ax.set_xticks(x, ticks)
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_xlabel("fine-tuning images D_ft")
        ax.set_ylabel("FI near old peak, after / parent")
        ax.set_title("FI near the old peak", loc="left")
        for ax in axes[0]:
            log_ticks(ax)
        panel_letters(fig)
        ax = axes[0, 0]  # room above the axes for the marked peaks' names
        ax.set_title(ax.get_title(loc="left"), loc="left", pad=11)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question="How many fine-tuning images does it take to move FI and error to a new prior's peak?",
    replicate=replicate,
    sizes=SIZES,
    grid={"shift": [SHIFT]},
    describe=describe,
    postprocess=add_measures,
    figure=plot_finetune_data_size,
    summary=summarise,
    # one condition; each replicate's parent is fine-tuned at every D_ft and freezing mode inside
    # the replicate, so the claims pair by replicate
    pair_axes=(),
    claims=CLAIMS,
)
