"""Prior specialisation: how far do networks specialise to likely angles, and what stays after?

A CNN is trained from scratch on orientations from a von Mises prior on 2θ centred at 45°
(prior A, several concentrations κ). We measure how much its Fisher information (FI) and error
favour the region of high prior density against the rest — and set that specialisation beside
the spread between replicates. Then the network is fine-tuned on a prior of the same κ centred
at 135° (prior B, the opposite point of the orientation circle), and compared with a control
network trained from scratch on B for as many steps as the first phase: whatever FI the
fine-tuned network still has near 45° beyond the control's is what prior A left behind.

Run: ``anglesim run prior_specialisation [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.angles import near_far
from anglesim.distributions import VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    angle_axis,
    band,
    band_footnote,
    fi_vs_angle_axis,
    interval_bars,
    log_band,
    mark_angle,
    replicate_count,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import CNN, SPEC, expects_aperture_ties

NAME = "prior_specialisation"
LOC_A, LOC_B = math.pi / 4, 3 * math.pi / 4
STAGES = ("first", "second", "control")
"""first: trained on A; second: first fine-tuned on B; control: trained from scratch on B."""

SIZES = {
    "full": dict(epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, replicates=4,
                 kappas=[2.0, 8.0]),
    "quick": dict(epochs=1, ft_epochs=1, steps=4, batch=16, n_angles=8, replicates=2,
                  kappas=[4.0]),
}


def phases(kappa: float, sz: dict) -> dict[str, Phase]:
    """The three trainings: on A, fine-tuning on B (half the rate), and the control on B."""
    common = dict(spec=SPEC, loss="cosine", steps_per_epoch=sz["steps"],
                  batch_size=sz["batch"], eval_angles=sz["n_angles"])
    return {
        "first": Phase("first", VonMises(LOC_A, kappa), lr=2e-3, epochs=sz["epochs"], **common),
        "second": Phase("second", VonMises(LOC_B, kappa), lr=1e-3, epochs=sz["ft_epochs"],
                        **common),
        "control": Phase("control", VonMises(LOC_B, kappa), lr=2e-3, epochs=sz["epochs"],
                         **common),
    }


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train on A then fine-tune on B, and a control on B; measure FI and error after each."""
    sz, on = ctx.params, ctx.on_device
    plan = phases(float(ctx.condition["kappa"]), sz)
    grid = ctx.angles
    angle = grid.double().numpy()
    fisher, errors = {}, {}

    def measure(phase: Phase, net) -> None:
        fisher[phase.name] = propagated_fisher(net, SPEC, grid, layers=["fc", "output"],
                                               sigma=SPEC.noise_std, **on)
        errors[phase.name] = evaluate_error(net, SPEC, sz["n_angles"], repeats=16,
                                            generator=ctx.generator("eval"))

    model = build_model(CNN, generator=ctx.seed_generator())
    history = train(model, [plan["first"], plan["second"]], ctx.seed, on_phase_end=measure,
                    **on)
    # the control's own stream, for its weights and its training
    control = build_model(CNN, generator=ctx.generator("control", device="cpu"))
    train(control, [plan["control"]], ctx.stream_seed("control"), on_phase_end=measure, **on)

    ds = xr.Dataset(
        {
            "fisher": xr.concat([fisher[s] for s in STAGES], dim="stage"),
            "abs_error": xr.concat([errors[s] for s in STAGES], dim="stage"),
            "prior_density": (("prior", "angle"),
                              np.stack([plan["first"].prior.pdf(angle),
                                        plan["second"].prior.pdf(angle)])),
        },
        coords={"stage": list(STAGES), "prior": ["A", "B"], "angle": angle},
    )
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior density"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")




def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added (variables prefixed ``measure_``)."""
    m = measures(ds)
    return ds.assign({f"measure_{k}": v for k, v in m.data_vars.items()})


def region_masks(angle: xr.DataArray, loc: float, near: float = math.pi / 8,
                 far: float = math.pi / 4) -> tuple[xr.DataArray, xr.DataArray]:
    """Angles within ``near`` of ``loc`` and ``far`` or more from it (wrapped at π), by
    :func:`anglesim.angles.near_far`'s one boundary rule."""
    is_near, is_far = near_far(angle.values, loc, near, far)
    return (xr.DataArray(is_near, coords={"angle": angle}),
            xr.DataArray(is_far, coords={"angle": angle}))


def measures(ds: xr.Dataset, layer: str = "output") -> xr.Dataset:
    """Per replicate and κ: specialisation, extrapolation, replicate spread, what A left behind.

    * ``specialisation``: log₂ of mean FI near A over mean FI far from A, after the first phase;
    * ``error_ratio``: mean error far from A over mean error near A (extrapolation cost);
    * ``spread``: the standard deviation over replicates of log₂ FI, averaged over angles — the
      scale a specialisation must beat to be more than replicate-to-replicate variation;
    * ``left_behind``: log₂ of mean FI near A of the fine-tuned network over the control's.
    """
    ok = successful(ds)
    fi = ok["fisher"].sel(layer=layer)
    near_a, far_a = region_masks(ok["angle"], LOC_A)
    first = fi.sel(stage="first")
    err = ok["abs_error"].sel(stage="first")
    out = xr.Dataset(
        {
            "specialisation": np.log2(first.where(near_a).mean("angle")
                                      / first.where(far_a).mean("angle")),
            "error_ratio": err.where(far_a).mean("angle") / err.where(near_a).mean("angle"),
            "spread": np.log2(first).std("replicate", ddof=1).mean("angle"),
            "left_behind": np.log2(fi.sel(stage="second").where(near_a).mean("angle")
                                   / fi.sel(stage="control").where(near_a).mean("angle")),
        }
    )
    return out


def summarise(ds: xr.Dataset) -> str:
    """The four measures, mean ± standard error over replicates, per κ."""
    m = measures(ds)
    lines = ["per κ: mean ± s.e. over replicates (FI of the decoded angle)"]
    for kappa in m["kappa"].values:
        row = m.sel(kappa=kappa)
        cells = []
        for var, label in [("specialisation", "log₂ FI near/far A"),
                           ("error_ratio", "error far/near A"),
                           ("left_behind", "log₂ FI near A, fine-tuned/control")]:
            v = row[var]
            se = float(v.std("replicate", ddof=1) / np.sqrt(v.count("replicate")))
            cells.append(f"{label} {float(v.mean()):+.2f} ± {se:.2f}")
        cells.append(f"replicate spread of log₂ FI {float(row['spread']):.2f}")
        lines.append(f"  κ={kappa:g}: " + "; ".join(cells))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(), "loc_a": LOC_A,
            "loc_b": LOC_B,
            "phases": {k: p.to_config() for k, p in phases(params["kappas"][0], params).items()}}


# ---- figure ----------------------------------------------------------------------------------


def plot_prior_specialisation(ds: xr.Dataset) -> plt.Figure:
    """Prior specialisation: FI and error after training on prior A, then what B left of A.

    Panels: (a) FI of the decoded angle after training on A (von Mises at 45°), per κ;
    (b) decoding error after training on A, per κ; (c) FI after fine-tuning on B (135°)
    against a control trained on B from scratch, largest κ; (d) per-κ measures with 95% CIs
    over replicates: specialisation log₂(FI near A / FI far from A), what A left behind
    log₂(FI near A, fine-tuned / control), and the replicate spread of log₂ FI.
    """
    spread = ds["measure_spread"]
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    loc_a = float(ds["angle"][int(ds["prior_density"].sel(prior="A").isel(
        replicate=0, kappa=0).argmax("angle"))])
    loc_b = float(ds["angle"][int(ds["prior_density"].sel(prior="B").isel(
        replicate=0, kappa=0).argmax("angle"))])
    kappas = [float(k) for k in ds["kappa"].values]
    fi = ds["fisher"].sel(layer="output")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.0), constrained_layout=True)
        ax = axes[0]
        for i, kappa in enumerate(kappas):
            log_band(ax, theta_deg, fi.sel(kappa=kappa, stage="first"),
                      PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)], f"κ = {kappa:g}")
        mark_angle(ax, loc_a, "A")
        fi_vs_angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("a  after training on A", loc="left", pad=12)

        ax = axes[1]
        for i, kappa in enumerate(kappas):
            band(ax, theta_deg, np.degrees(ds["abs_error"].sel(kappa=kappa, stage="first")),
                 PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)], f"κ = {kappa:g}",
                 bounds=(0, 90))
        ax.axhline(45, color="0.6", lw=0.8, ls=":", label="chance")
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        mark_angle(ax, loc_a, "A")
        angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("b  error after training on A", loc="left", pad=12)

        ax = axes[2]
        kappa = kappas[-1]
        for i, (stage, label) in enumerate([("second", "A, then fine-tuned on B"),
                                            ("control", "B only (control)")]):
            log_band(ax, theta_deg, fi.sel(kappa=kappa, stage=stage), PHASE_COLOURS[i],
                      label)
        mark_angle(ax, loc_a, "A")
        mark_angle(ax, loc_b, "B")
        fi_vs_angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title(f"c  after B (κ = {kappa:g})", loc="left", pad=12)

        ax = axes[3]
        x = np.arange(len(kappas))
        for offset, (var, label, colour) in enumerate(
            [("measure_specialisation", "specialisation to A", PHASE_COLOURS[1]),
             ("measure_left_behind", "left behind by A", PHASE_COLOURS[2])]
        ):
            interval_bars(ax, x + (offset - 0.5) * 0.25, ds[var], colour, label)
        ax.bar(x, spread.values, width=0.6, color="0.85", label="replicate spread",
               zorder=0)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, [f"κ = {k:g}" for k in kappas])
        ax.set_ylabel("log₂ FI ratio")
        ax.legend(frameon=False)
        ax.set_title("d  measures", loc="left", pad=12)
        fig.suptitle(f"prior specialisation: {replicate_count(ds)}", fontsize=9)
        band_footnote(fig)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question=("How much does training on prior A specialise FI, and what does fine-tuning on B "
              "leave of A?"),
    replicate=replicate,
    sizes=SIZES,
    grid=lambda params: {"kappa": params["kappas"]},
    describe=describe,
    postprocess=add_measures,
    figure=plot_prior_specialisation,
    summary=summarise,
    pair_axes=(),  # every κ trains its own networks from its own seeds
    # NaN by design: stream phases have no validation loss
    allow_nan=("val_loss",),
)
