"""Quickstart: does fine-tuning on a concentrated prior move Fisher information to its peak?

Small CNNs are pretrained on uniformly distributed orientations, then fine-tuned on a von Mises
prior concentrated at π/2 (90°). After each phase we measure, on a fixed grid of angles, the
mean absolute decoding error and the linearised Fisher information (propagated pixel noise) at
every block and at the decoded output, through :func:`anglesim.fisher.measure_fisher` (which
also stores the phase's prior density). Replicates differ only in their seed.

Conditions do not share seeds (one condition, κ = 4, by default; ``grid.kappa=[2,8]`` gives
each κ its own networks). Overridable: ``kappa=8``, ``phases.finetune.lr=5e-4``,
``pre_epochs=2``, ``replicates=6``, … (``anglesim run quickstart --dry-run`` shows the cells).

Run: ``anglesim quickstart`` or ``anglesim run quickstart [key=value …]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.angles import near_far_masks
from anglesim.distributions import Uniform, VonMises
from anglesim.fisher import measure_fisher, method_result
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    angle_axis,
    band,
    band_footnote,
    interval_bars,
    log_band,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import CNN, SPEC, expects_aperture_ties

NAME = "quickstart"
FINETUNE_LOC = math.pi / 2
PHASES = {"pretrain": {"lr": 2e-3}, "finetune": {"lr": 1e-3}}
"""Each phase's learning rate (fine-tuning at half the pretraining rate)."""

# name: (pretrain epochs, fine-tune epochs, steps per epoch, batch, angles, replicates)
SIZES = {
    "full": dict(pre_epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, replicates=4),
    "quick": dict(pre_epochs=1, ft_epochs=1, steps=4, batch=16, n_angles=8, replicates=2),
}


def phases(kappa: float, size: dict) -> list[Phase]:
    """Pretrain on a uniform prior, then fine-tune on VonMises(π/2, κ) at half the rate
    (``size["phases"]`` may change the rates, ``size["finetune_loc"]`` the prior's peak)."""
    common = dict(spec=SPEC, loss="cosine", steps_per_epoch=size["steps"],
                  batch_size=size["batch"], eval_angles=size["n_angles"])
    lrs = size.get("phases", PHASES)
    loc = size.get("finetune_loc", FINETUNE_LOC)
    return [
        Phase("pretrain", Uniform(), lr=lrs["pretrain"]["lr"], epochs=size["pre_epochs"],
              **common),
        Phase("finetune", VonMises(loc, kappa), lr=lrs["finetune"]["lr"],
              epochs=size["ft_epochs"], **common),
    ]


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network through both phases and measure it after each."""
    sz, on = ctx.params, ctx.on_device
    model = build_model(CNN, generator=ctx.seed_generator())
    plan = phases(float(ctx.condition["kappa"]), sz)
    grid = ctx.angles
    fisher, errors, densities = [], [], []

    def measure(phase: Phase, net) -> None:
        measured = measure_fisher(net, SPEC, phase.prior, methods=["propagated"], angles=grid,
                                  sigma=SPEC.noise_std, **on)
        fisher.append(method_result(measured, "propagated"))
        errors.append(evaluate_error(net, SPEC, sz["n_angles"], repeats=16,
                                     generator=ctx.generator("eval")))
        densities.append(measured["prior_density"].values)

    history = train(model, plan, ctx.seed, on_phase_end=measure, **on)
    names = [p.name for p in plan]
    angle = grid.double().numpy()
    ds = xr.Dataset(
        {
            "fisher": xr.concat(fisher, dim="phase").assign_coords(phase=names),
            "abs_error": xr.concat(errors, dim="phase").assign_coords(phase=names),
            "prior_density": (("phase", "angle"), np.stack(densities)),
        }
    ).assign_coords(angle=angle)
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior density"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")



def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes (stimulus, model, phases)."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "finetune_loc": params["finetune_loc"],
            "phases": [p.to_config() for p in phases(grid["kappa"][0], params)]}


def summarise(ds: xr.Dataset) -> str:
    """What the run measured, in numbers (means over successful replicates)."""

    ok = successful(ds).isel(kappa=0)
    lines = ["decoding error, mean |θ̂ − θ| over the angle grid (chance 45°):"]
    for ph in ok["phase"].values:
        err = np.degrees(ok["abs_error"].sel(phase=ph).mean("angle"))
        lines.append(f"  after {ph}: {float(err.mean()):.2f}° "
                     f"(replicates {', '.join(f'{v:.2f}' for v in err.values)})")
    near, far = near_far_masks(ok["prior_density"].sel(phase="finetune").isel(replicate=0))
    lines.append("Fisher information of θ̂ (rad⁻²), near the fine-tuning peak (±22.5°) "
                 "vs far (>45°):")
    for ph in ok["phase"].values:
        fi = ok["fisher"].sel(phase=ph, layer="output")
        lines.append(f"  after {ph}: near {float(fi.where(near).mean()):.1f}, "
                     f"far {float(fi.where(far).mean()):.1f}")
    lines.append("(FI is the propagated, linearised value; the stimulus's pixel noise outside "
                 "its aperture ties max-pool windows there, where it is not the small-noise "
                 "limit: user guide, Studies, \"Pool ties in the built-in studies\")")
    return "\n".join(lines)


# ---- figure ----------------------------------------------------------------------------------


def plot_quickstart(ds: xr.Dataset) -> plt.Figure:
    """Quickstart: prior, Fisher information and error before and after fine-tuning.

    Panels: (a) the training priors of each phase; (b) Fisher information of the decoded
    angle (propagated pixel noise) against θ, geometric mean and CI over replicates on a log
    scale; (c) mean absolute decoding error
    against θ; (d) FI after fine-tuning over FI before, per layer, near the fine-tuning prior's
    peak against far from it.
    """
    ds = successful(ds)
    # The quickstart grid has one condition axis; average over it only if it has one value.
    extra = [d for d in ds["fisher"].dims if d not in ("replicate", "phase", "layer", "angle")]
    ds = ds.isel({d: 0 for d in extra})
    phases = [str(p) for p in ds["phase"].values]
    theta_deg = np.degrees(ds["angle"].values)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(11, 2.8), constrained_layout=True)
        ax = axes[0]
        for i, ph in enumerate(phases):
            dens = ds["prior_density"].sel(phase=ph).isel(replicate=0)
            ax.plot(theta_deg, dens, color=PHASE_COLOURS[i], label=ph)
        ax.set_ylabel("prior density p(θ) (1/rad)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("a  training priors", loc="left")

        ax = axes[1]
        for i, ph in enumerate(phases):
            # FI is positive and spans decades: average and bound it on a log scale.
            log_band(ax, theta_deg, ds["fisher"].sel(phase=ph, layer="output"),
                     PHASE_COLOURS[i], f"after {ph}")
        ax.set_yscale("log")
        ax.set_ylabel("Fisher information of θ̂ (rad⁻²)")
        angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("b  FI at the decoded output", loc="left")

        ax = axes[2]
        for i, ph in enumerate(phases):
            band(ax, theta_deg, np.degrees(ds["abs_error"].sel(phase=ph)), PHASE_COLOURS[i],
                 f"after {ph}", bounds=(0, 90))
        ax.axhline(45, color="0.6", lw=0.8, ls=":", label="chance")
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("c  decoding error", loc="left")

        ax = axes[3]
        near, far = near_far_masks(ds["prior_density"].sel(phase=phases[-1]).isel(replicate=0))
        ratio = np.log2(ds["fisher"].sel(phase=phases[-1]) / ds["fisher"].sel(phase=phases[0]))
        layers = [str(v) for v in ds["layer"].values if str(v) != "input"]
        x = np.arange(len(layers))
        for offset, (mask, label, colour) in enumerate(
            [(near, "near peak", PHASE_COLOURS[1]), (far, "far from peak", PHASE_COLOURS[2])]
        ):
            per_rep = ratio.where(mask).mean("angle").sel(layer=layers)
            interval_bars(ax, x + (offset - 0.5) * 0.25, per_rep, colour, label)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, layers, rotation=30)
        ax.set_ylabel("log₂ FI after / before")
        ax.legend(frameon=False)
        ax.set_title("d  change per layer", loc="left")
        n_ok = int(ds["replicate"].size - (ds["failed"].sum() if "failed" in ds else 0))
        fig.suptitle(f"quickstart: {n_ok} replicates", fontsize=9)
        band_footnote(fig)
    return fig


STUDY = Study(
    name=NAME,
    question="Does fine-tuning on a concentrated prior move Fisher information to its peak?",
    replicate=replicate,
    sizes=SIZES,
    grid={"kappa": [4.0]},
    defaults={"finetune_loc": FINETUNE_LOC, "phases": PHASES},
    describe=describe,
    figure=plot_quickstart,
    summary=summarise,
    pair_axes=(),  # each κ trains its own networks from its own seeds
    devices=("cpu", "cuda"),
    # NaN by design: stream phases have no validation loss
    allow_nan=("val_loss",),
)
