"""Signal or noise: does fine-tuning raise a layer's FI through its tuning or its covariance?

Cheng et al. (2025, Nat Hum Behav 9:1023) found that perceptual learning in a CNN raised
discriminability mainly by shrinking trial-to-trial variability, not by sharpening tuning.
Here a parent CNN is pretrained on the uniform prior (the fine-tuning-under-shift study's
parent) and copies of it are fine-tuned on the prior shift (angles from a von Mises prior at
90°, κ = 4: practice concentrated around one orientation) with several strategies
(:mod:`anglesim.finetune`; the shift study's phases, at one n_train and one learning rate).
At each block and angle the linear FI J = f′ᵀ(Σ + ridge)⁻¹f′ of the propagated pixel noise
(f′ = A ẋ, Σ = A Σ_x Aᵀ) is split (:func:`anglesim.laws.signal_noise_split`) into
``delta_signal`` = log₂ J(f′_ft, Σ_pre)/J_pre (tuning changed, covariance kept),
``delta_noise`` = log₂ J(f′_pre, Σ_ft)/J_pre and the ``delta_interaction`` that the two leave
of ``delta_total``.

The ridge (relative, :data:`EPS`) is what keeps J(f′_ft, Σ_pre) finite where Σ is singular: a
block with at least as many units as pixels (conv1: 2,048 units on 1,024 pixels; conv2 1,024)
has rank(Σ) < N, and a fine-tuned f′ need not lie in the pretrained Σ's range; there the two
one-sided terms are set by the ridge, and only their sum (the total) is not.

Run: ``anglesim run signal_noise [--quick]``.
"""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.data import evaluation_grid
from anglesim.laws import signal_noise_split
from anglesim.plotting import STYLE, successful
from anglesim.stats import mean_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import evaluate_error, train

from ._laws_common import MIN_BAND_REPLICATES, band_note
from ._recipes import (
    CNN,
    PRIOR_SHIFT,
    SHIFT_SIZES,
    SPEC,
    finetune_phase,
    pretrain_phase,
    pretrained_parent,
    shifted_task,
)
from ._recipes import (
    STRATEGIES as SHIFT_STRATEGIES,
)

NAME = "signal_noise"
STRATEGIES = ("full", "linear_probe", "lp_ft", "surgical", "l2_sp")
"""Strategies from the shift study's table (its parameters; ``surgical`` tunes conv1)."""
LAYERS = ("conv1", "conv2", "fc", "head")
TERMS = ("delta_total", "delta_signal", "delta_noise", "delta_interaction")
EPS = 1e-3
"""Relative ridge of every J: ε · tr(Σ)/N added to Σ's diagonal."""

SIZES = {
    "full": dict(SHIFT_SIZES["full"], n_train=256, lr=1e-3, n_split_angles=8,
                 strategies=list(STRATEGIES), replicates=3),
    "quick": dict(SHIFT_SIZES["quick"], n_train=16, lr=1e-3, n_split_angles=2,
                  strategies=["full", "linear_probe", "surgical"], replicates=2),
}
"""The shift study's sizes (pretraining, steps, batch) with one n_train and one rate; the
split's angle grid (8: every 22.5°, which holds the prior's peak at 90°) and 3 replicates, so
that the split (about 0.5 s per network and angle, mostly conv1's 2,048 × 2,048 covariance)
fits the study's budget of 8 minutes on a shared core."""


def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Pretrain a parent, fine-tune a copy with each strategy, split each block's FI change."""
    sz = ctx.params
    task = shifted_task(str(ctx.condition["shift"]))
    parent = pretrained_parent(ctx, sz, ctx.stream_seed("data"))
    nets = {}
    for name in sz["strategies"]:
        net = copy.deepcopy(parent)
        train(net, [finetune_phase(task, name, sz["n_train"], sz["lr"], sz)],
              ctx.stream_seed("data", 1))  # the same data and batches for every strategy
        nets[name] = net.eval()
    grid = evaluation_grid(sz["n_split_angles"]).double().numpy()
    split = signal_noise_split(parent, nets, task.spec, grid, list(LAYERS),
                               sigma=task.spec.noise_std, eps=EPS, dim="strategy")
    n_eval = sz["n_angles"]

    def error(net) -> np.ndarray:
        return evaluate_error(net, task.spec, n_eval, sz["error_repeats"],
                              ctx.generator("eval")).values

    errs = np.stack([error(nets[s]) for s in nets])
    w = task.prior.pdf(ctx.angles.double().numpy())
    ds = split.rename(angle="split_angle")
    ds["id_error"] = (("strategy",), (errs * w).sum(1) / w.sum(),
                      {"units": "rad", "long_name": "error on the fine-tuning task, weighted "
                       "by its prior"})
    ds["parent_id_error"] = ((), float((error(parent) * w).sum() / w.sum()),
                             {"units": "rad", "long_name": "the parent's error there"})
    ds["prior_density"] = (("split_angle",), task.prior.pdf(grid),
                           {"units": "1/rad", "long_name": "fine-tuning prior density"})
    return ds


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """Each term weighted by the fine-tuning prior over the split's angles (``*_prior``)."""
    ok = successful(ds)
    w = xr.DataArray(PRIOR_SHIFT.pdf(ok["split_angle"].values), dims="split_angle",
                     coords={"split_angle": ok["split_angle"]})
    return ds.assign({f"{t}_prior": (ok[t] * w).sum("split_angle") / w.sum() for t in TERMS})


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    task = shifted_task("prior")
    return {"spec": SPEC.to_config(), "model": CNN.to_config(), "eps": EPS,
            "strategies": {s: SHIFT_STRATEGIES[s] for s in params["strategies"]},
            "pretrain": pretrain_phase(params).to_config(),
            "finetune_example": finetune_phase(
                task, "full", params["n_train"], params["lr"], params).to_config()}


def summarise(ds: xr.Dataset) -> str:
    """Per strategy and block: the four log₂ terms weighted by the fine-tuning prior."""
    ok = successful(ds).isel(shift=0)
    lines = [f"log2 FI change after fine-tuning on the prior shift, weighted by its prior "
             f"(mean ± 95% CI over {ok.sizes['replicate']} replicates; ridge eps={EPS:g}):",
             "  strategy       block   total            signal (f')      noise (Σ)        "
             "interaction"]
    for s in ok["strategy"].values:
        m, h = mean_ci(np.degrees(ok["id_error"].sel(strategy=s)))
        pm, _ = mean_ci(np.degrees(ok["parent_id_error"]))
        lines.append(f"  {s}: ID error {float(m):.2f} ± {float(h):.2f}° (parent "
                     f"{float(pm):.2f}°)")
        for layer in ok["layer"].values:
            cells = []
            for t in TERMS:
                m, h = mean_ci(ok[f"{t}_prior"].sel(strategy=s, layer=layer))
                cells.append(f"{float(m):+7.3f} ± {float(h):6.3f}")
            lines.append(f"  {'':14} {layer:>6}  " + "  ".join(cells))
    return "\n".join(lines)


def figure(ds: xr.Dataset) -> plt.Figure:
    """Per block: the prior-weighted log₂ change of each strategy split into signal, noise and
    interaction (bars), with the total (points) and its interval."""
    ok = successful(ds).isel(shift=0)
    strategies = list(ok["strategy"].values)
    layers = list(ok["layer"].values)
    enough = ok.sizes["replicate"] >= MIN_BAND_REPLICATES
    colours = {"delta_signal": "C0", "delta_noise": "C3", "delta_interaction": "0.6"}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 3.0),
                                 constrained_layout=True)
        pos = np.arange(len(strategies))
        width = 0.25
        for ax, layer in zip(axes, layers, strict=True):
            for k, t in enumerate(("delta_signal", "delta_noise", "delta_interaction")):
                m, h = mean_ci(ok[f"{t}_prior"].sel(layer=layer))
                ax.bar(pos + (k - 1) * width, m.values, width, color=colours[t],
                       yerr=h.values if enough else None, capsize=1.5,
                       label=t.removeprefix("delta_"))
            m, h = mean_ci(ok["delta_total_prior"].sel(layer=layer))
            ax.errorbar(pos, m.values, yerr=h.values if enough else None, fmt="ko", ms=3,
                        capsize=2, label="total")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xticks(pos, strategies, rotation=60, fontsize=7)
            ax.set_title(str(layer))
            if np.nanmax(np.abs(ok["delta_signal_prior"].sel(layer=layer))) > 4:
                ax.set_yscale("symlog", linthresh=1.0)
        axes[0].set_ylabel("log₂ FI change (prior-weighted)")
        axes[0].legend(frameon=False, fontsize=7)
        fig.suptitle(f"FI change after fine-tuning split into tuning (f′) and covariance (Σ) "
                     f"parts, ridge ε = {EPS:g}; {band_note(ok)}", fontsize=8)
    return fig




STUDY = Study(
    name=NAME,
    question="Does fine-tuning raise a layer's FI through its tuning f' or its covariance "
             "Sigma (Cheng et al. 2025)?",
    replicate=replicate,
    sizes=SIZES,
    grid={"shift": ["prior"]},
    describe=describe,
    postprocess=add_measures,
    figure=figure,
    summary=summarise,
)
