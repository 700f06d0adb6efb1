"""Fine-tuning data size: how much data does re-centring a prior take, whole network vs frozen?

The reference setup (reference MLP, ``GratingSpec.reference()``, finite datasets with early
stopping): a parent network is trained on D = 2048 images from a von Mises prior at 0° (κ = 8),
then fine-tuned on D_ft ∈ {16, …, 512} images from the same prior centred at 90°, either every
layer or with the first layer (``fc1``, the pixel layer holding almost all the weights) frozen.
Every fine-tuning of one replicate starts from the same parent. We measure the bias-corrected
linear FI of the output (the noise is not Gaussian) near the old and the new peak, and the
decoding error.

Run: ``anglesim run finetune_data_size [--quick]``.
"""

from __future__ import annotations

import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim import angles as ang
from anglesim.distributions import VonMises
from anglesim.models import reference_mlp
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    band_footnote,
    interval_bars,
    replicate_count,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import DTHETA, output_fisher, reference_spec

NAME = "finetune_data_size"
OLD, NEW = VonMises(0.0, 8.0), VonMises(math.pi / 2, 8.0)
FROZEN = {"none": None, "fc1": ["fc2", "head"]}
"""Which blocks train: every one, or all but the first layer."""

SIZES = {
    "full": dict(image_size=101, parent_size=2048, sizes=[16, 32, 64, 128, 256, 512],
                 epochs=60, patience=5, n_angles=36, n_trials=250, replicates=6),
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


def shift(ds: xr.Dataset, near: float = math.pi / 8) -> xr.Dataset:
    """Mean FI and mean error near the new and the old peak, per D_ft, mode and replicate,
    and the parents' (``parent_fisher_near_new`` …) for comparison."""
    ok = successful(ds)
    out = {}
    for name, prior in (("new", NEW), ("old", OLD)):
        loc = prior.to_config()["loc"]
        is_near, _ = ang.near_far(ok["angle"].values, loc, near, max(near, math.pi / 4))
        mask = xr.DataArray(is_near, coords={"angle": ok["angle"]})
        for prefix in ("", "parent_"):
            out[f"{prefix}fisher_near_{name}"] = ok[f"{prefix}fisher"].where(mask).mean("angle")
            out[f"{prefix}error_near_{name}"] = (ok[f"{prefix}abs_error"].where(mask)
                                                 .mean("angle"))
    return xr.Dataset(out)


def add_shift(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`shift` added."""
    return ds.assign(shift(ds).data_vars)




def summarise(ds: xr.Dataset) -> str:
    """Error and FI near the new peak by D_ft and mode (means over replicates)."""
    ok = successful(ds).isel(shift=0)
    lines = ["by fine-tuning D: error near the new peak (deg) | FI near new / old peak (rad⁻²)"]
    for frozen in ok["frozen"].values:
        cells = []
        for d in ok["finetune_size"].values:
            c = ok.sel(frozen=frozen, finetune_size=d)
            cells.append(f"D={int(d)}: {float(np.degrees(c['error_near_new'].mean())):.1f}° | "
                         f"{float(c['fisher_near_new'].mean()):.0f}/"
                         f"{float(c['fisher_near_old'].mean()):.0f}")
        lines.append(f"  frozen={frozen}: " + "; ".join(cells))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": reference_spec(params["image_size"]).to_config(), "old": OLD.to_config(),
            "new": NEW.to_config(), "frozen": FROZEN, "dtheta": DTHETA}


# ---- figure ----------------------------------------------------------------------------------


def plot_finetune_data_size(ds: xr.Dataset) -> plt.Figure:
    """Fine-tuning data size: error and FI near the new and old peak against D_ft.

    Panels, each against the number D_ft of fine-tuning images (log axis), whole network
    against first layer frozen, mean ± 95% CI over replicates (parents): (a) mean absolute
    error within 22.5° of the new prior's peak (log axis); (b) linear FI of the output near the
    new peak (log axis); (c) near the old peak; the parents' mean in each as a dotted line.
    """
    ds = successful(ds).isel(shift=0)
    sizes = ds["finetune_size"].values
    modes = [str(m) for m in ds["frozen"].values]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), constrained_layout=True)
        panels = [
            (axes[0], np.degrees(ds["error_near_new"]), "mean |θ̂ − θ| near new peak (deg)",
             "a  error", np.degrees(ds["parent_error_near_new"]), True, (0, 90)),
            (axes[1], ds["fisher_near_new"], "linear FI near new peak (rad⁻²)",
             "b  FI near the new peak", ds["parent_fisher_near_new"], True, None),
            (axes[2], ds["fisher_near_old"], "linear FI near old peak (rad⁻²)",
             "c  FI near the old peak", ds["parent_fisher_near_old"], False, None),
        ]
        # a and b span two orders of magnitude (the parent against the fine-tuned networks)
        for ax, var, ylabel, title, parent, log, bounds in panels:
            if log:
                ax.set_yscale("log")
            for m, mode in enumerate(modes):
                label = "whole network" if mode == "none" else f"{mode} frozen"
                # the bias-corrected linear FI can be negative: a linear-scale interval
                interval_bars(ax, sizes, var.sel(frozen=mode, finetune_size=sizes),
                              PHASE_COLOURS[(m + 1) % len(PHASE_COLOURS)], label,
                              bounds=bounds, fmt="o-", ms=3)
            if parent is not None:
                ax.axhline(float(parent.mean()), color="0.5", ls=":", lw=1,
                           label="parent (before)")
            ax.set_xscale("log", base=2)
            ax.set_xlim(sizes.min() / 1.4, sizes.max() * 1.4)
            ax.set_xlabel("fine-tuning images D_ft")
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")
        # one legend under the panels: inside, it hid the parents' lines or the points
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3,
                   frameon=False, fontsize=7)
        fig.suptitle(f"fine-tuning data size: {replicate_count(ds)}", fontsize=9)
        band_footnote(fig)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question="How many fine-tuning images does it take to move FI and error to a new prior's peak?",
    replicate=replicate,
    sizes=SIZES,
    grid={"shift": ["0->90"]},
    describe=describe,
    postprocess=add_shift,
    figure=plot_finetune_data_size,
    summary=summarise,
    # one condition; each replicate's parent is fine-tuned at every D_ft and freezing mode inside
    # the replicate
    pair_axes=(),
)
