"""Prior specialisation: how far do networks specialise to likely angles, and what stays after?

A CNN is trained from scratch on orientations from a von Mises prior on 2θ centred at 45°
(prior A, concentrations κ ∈ {2, 8}). We measure how much its Fisher information (FI) and error
favour the region of high prior density against the rest — and set that specialisation beside
the spread between replicates. Then the network is fine-tuned on a prior of the same κ centred
at 135° (prior B, the opposite point of the orientation circle), and compared with a control
network trained from scratch on B for as many steps as the first phase: whatever FI the
fine-tuned network still has near 45° beyond the control's is what prior A left behind.

**Design.** Per κ, replicates differ only in their seed; each trains its network through A
then B (stages ``first``, ``second``) and its own control on B (stage ``control``, its own seed
stream, so it shares nothing with the fine-tuned network: the two are compared by Welch's test,
not paired). Regions of the angle grid follow :func:`anglesim.angles.near_far`'s one boundary
rule (float32-safe): within 22.5° of A (*near A*, 13 of the 48 grid angles), 45° or more from
A (*far A*, 25), within 22.5° of B (*near B*). The declared claims (:data:`CLAIMS`, Holm over
the family of 9):

* ``beyond_spread`` (per κ): the specialisation log₂(mean FI near A / far from A) after
  training on A exceeds the replicate spread of log₂ FI (the SD over replicates, averaged over
  angles): one-sample t against that per-κ reference;
* ``sharper_with_kappa``: the specialisation is larger at κ = 8 than at κ = 2 (Welch);
* ``error_far`` (per κ): the error far from A over the error near A > 1 (a ratio);
* ``left_behind`` (per κ): FI near A of the network fine-tuned on B over the control's > 1
  (Welch on log FI: a ratio of geometric means);
* ``below_control_B`` (per κ): FI near B of the fine-tuned network over the control's < 1;
* exploratory: the error near B (90° from A) at κ = 8 against chance (45°).

**Sizes.** Full: κ ∈ {2, 8} × 10 replicates (≥ 8 per arm for the Welch contrasts; ~17 CPU s
a replicate, about 3 min on 2 workers), 8 epochs on A, 4 on B at half the rate, 8 for the
control, 50 batches of 64 an epoch, 48 angles. Quick: κ = 4 × 2 replicates of a few steps
(a smoke test: the claims, declared for κ ∈ {2, 8}, are "not in this run").

Run: ``anglesim run prior_specialisation [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.angles import near_far
from anglesim.claims import Contrast
from anglesim.distributions import VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    angle_axis,
    band,
    caption,
    fi_vs_angle_axis,
    interval_bars,
    log_band,
    mark_angle,
    mean_ci,
    panel_letters,
    print_figure,
    print_style,
    ratio_points,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import CNN, SPEC, expects_aperture_ties, fisher_variables, labelled

NAME = "prior_specialisation"
LOC_A, LOC_B = math.pi / 4, 3 * math.pi / 4
STAGES = ("first", "second", "control")
"""first: trained on A; second: first fine-tuned on B; control: trained from scratch on B."""
REGIONS = ("near_A", "far_A", "near_B")
"""Regions of the angle grid: within 22.5° of A, 45° or more from A, within 22.5° of B."""
KAPPAS = [2.0, 8.0]
"""The concentrations of the full size, which the claims are about."""

SIZES = {
    "full": dict(epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, replicates=10,
                 kappas=KAPPAS),
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
            **fisher_variables(fisher=xr.concat([fisher[s] for s in STAGES], dim="stage")),
            "abs_error": xr.concat([errors[s] for s in STAGES], dim="stage"),
            "prior_density": (("prior", "angle"),
                              np.stack([plan["first"].prior.pdf(angle),
                                        plan["second"].prior.pdf(angle)])),
        },
        coords={"stage": list(STAGES), "prior": ["A", "B"], "angle": angle},
    )
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior density"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(), "loc_a": LOC_A,
            "loc_b": LOC_B,
            "phases": {k: p.to_config() for k, p in phases(params["kappas"][0], params).items()}}


def region_masks(angle: xr.DataArray, loc: float, near: float = math.pi / 8,
                 far: float = math.pi / 4) -> tuple[xr.DataArray, xr.DataArray]:
    """Angles within ``near`` of ``loc`` and ``far`` or more from it (wrapped at π), by
    :func:`anglesim.angles.near_far`'s one boundary rule."""
    is_near, is_far = near_far(angle.values, loc, near, far)
    return (xr.DataArray(is_near, coords={"angle": angle}),
            xr.DataArray(is_far, coords={"angle": angle}))


def regions(angle: xr.DataArray) -> xr.DataArray:
    """Boolean masks over ``angle`` of :data:`REGIONS` (dim ``region``)."""
    near_a, far_a = region_masks(angle, LOC_A)
    near_b, _ = region_masks(angle, LOC_B)
    return xr.concat([near_a, far_a, near_b], dim="region").assign_coords(region=list(REGIONS))


LABELS = {
    "kappa": ("1", "concentration κ of priors A and B (von Mises on 2θ)"),
    "stage": ("1", "training stage: first (on A), second (first fine-tuned on B), control "
                   "(on B from scratch)"),
    "prior": ("1", "training prior: A (von Mises at 45°) or B (at 135°)"),
    "region": ("1", "region of the angle grid: within 22.5° of A, 45° or more from A, within "
                    "22.5° of B"),
    "train_loss": ("1", "training loss 1 − cos 2(θ̂ − θ), mean over the epoch"),
    "val_loss": ("1", "validation loss (finite-dataset phases only)"),
    "region_angles": ("1", "grid angles in the region"),
    "fisher_region": ("rad^-2", "FI, mean over the region's angles"),
    "abs_error_region": ("rad", "mean absolute decoding error over the region's angles"),
    "measure_specialisation": ("1", "log2 ratio of mean FI of θ̂ near A to far from A, after "
                                    "training on A"),
    "measure_error_ratio": ("1", "mean error far from A over mean error near A, after "
                                 "training on A"),
    "measure_spread": ("1", "SD over replicates of log2 FI of θ̂ after training on A, mean "
                            "over angles"),
    "measure_left_behind": ("1", "log2 ratio of mean FI of θ̂ near A, fine-tuned on B over "
                                 "the control"),
}
"""Units and long names of the study's own variables and coordinates."""


def measures(ds: xr.Dataset, layer: str = "output") -> xr.Dataset:
    """Per replicate and κ: region means, specialisation, extrapolation, replicate spread,
    what A left behind.

    * ``fisher_region``, ``abs_error_region``: FI and error, mean over each of
      :data:`REGIONS`, per stage (and layer for FI);
    * ``specialisation``: log₂ of mean FI near A over mean FI far from A, after the first
      phase (FI of θ̂, ``layer``);
    * ``error_ratio``: mean error far from A over mean error near A (extrapolation cost);
    * ``spread``: the standard deviation over replicates of log₂ FI, averaged over angles — the
      scale a specialisation must beat to be more than replicate-to-replicate variation;
    * ``left_behind``: log₂ of mean FI near A of the fine-tuned network over the control's.
    """
    ok = successful(ds)
    masks = regions(ok["angle"])
    fi = ok["fisher"].where(masks).mean("angle")
    err = ok["abs_error"].where(masks).mean("angle")

    def pick(da: xr.DataArray, **sel) -> xr.DataArray:
        return da.sel(sel, drop=True)

    out_fi = pick(fi, layer=layer)
    first = pick(ok["fisher"], layer=layer, stage="first")
    return xr.Dataset({
        "fisher_region": fi,
        "abs_error_region": err,
        "region_angles": masks.sum("angle"),
        "specialisation": np.log2(pick(out_fi, stage="first", region="near_A")
                                  / pick(out_fi, stage="first", region="far_A")),
        "error_ratio": (pick(err, stage="first", region="far_A")
                        / pick(err, stage="first", region="near_A")),
        "spread": np.log2(first).std("replicate", ddof=1).mean("angle"),
        "left_behind": np.log2(pick(out_fi, stage="second", region="near_A")
                               / pick(out_fi, stage="control", region="near_A")),
    })


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added (region means under their own names, the rest
    prefixed ``measure_``), and units and long names on every variable."""
    m = measures(ds)
    own = ("fisher_region", "abs_error_region", "region_angles")
    named = {(k if k in own else f"measure_{k}"): v for k, v in m.data_vars.items()}
    out = ds.assign(named)
    for name in named:
        out[name].attrs = {}
    return labelled(out, LABELS)


# ---- the declared claims ---------------------------------------------------------------------


def _stages(region: str, name: str, statement: str, direction: str) -> Contrast:
    """Fine-tuned on B against the control trained on B, FI of θ̂ in ``region``, per κ."""
    return Contrast(name=name, statement=statement, measure="fisher_region",
                    arm={"stage": "second"}, against={"stage": "control"}, paired=False,
                    where={"region": region, "layer": "output", "kappa": KAPPAS},
                    over=["kappa"], scale="ratio", direction=direction)


CLAIMS = [
    Contrast(name="beyond_spread", statement="after training on A, log2(FI near A / far from "
             "A) exceeds the replicate spread of log2 FI", measure="measure_specialisation",
             against="measure_spread", where={"kappa": KAPPAS}, over=["kappa"],
             direction="greater"),
    Contrast(name="sharper_with_kappa", statement="the specialisation to A is larger at κ = 8 "
             "than at κ = 2", measure="measure_specialisation", arm={"kappa": 8.0},
             against={"kappa": 2.0}, paired=False, direction="greater"),
    Contrast(name="error_far", statement="after training on A, the decoding error far from A "
             "exceeds the error near A", measure="measure_error_ratio", against=1.0,
             where={"kappa": KAPPAS}, over=["kappa"], scale="ratio", direction="greater"),
    _stages("near_A", "left_behind", "after fine-tuning on B, FI near A stays above that of a "
            "control trained on B only", "greater"),
    _stages("near_B", "below_control_B", "after fine-tuning on B, FI near B stays below that of "
            "a control trained on B only", "less"),
    Contrast(name="chance_near_B", statement="after training on A (κ = 8), the decoding error "
             "within 22.5° of B (135°) against chance (45°)", measure="abs_error_region",
             arm={"stage": "first"}, against=math.pi / 4,
             where={"region": "near_B", "kappa": 8.0}, direction="differs",
             exploratory=True),
]
"""The study's planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """Region means and measures per κ: mean and 95% t interval over replicates, the replicate
    spread, and the figure's caption (the claims table follows, from the runner)."""
    if "fisher_region" not in ds:
        ds = add_measures(ds)
    ok = successful(ds)
    lines = ["per κ: mean and 95% t interval over replicates (FI of the decoded angle θ̂)"]
    for kappa in ok["kappa"].values:
        row = ok.sel(kappa=kappa)
        n = int(row["measure_specialisation"].count())
        cells = []
        for var, label in [("measure_specialisation", "log₂ FI near/far A"),
                           ("measure_left_behind", "log₂ FI near A, fine-tuned/control")]:
            m, h = mean_ci(row[var])
            cells.append(f"{label} {float(m):+.2f} ± {float(h):.2f}")
        m, h = mean_ci(row["measure_error_ratio"])
        cells.append(f"error far/near A {float(m):.2f} ± {float(h):.2f}")
        cells.append(f"replicate spread of log₂ FI {float(row['measure_spread']):.2f}")
        lines.append(f"  κ = {float(kappa):g} ({n} replicates): " + "; ".join(cells))
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`, from what the figure drew)."""
    fig = plot_prior_specialisation(ds)
    try:
        counts = ds["region_angles"] if "region_angles" in ds else measures(ds)["region_angles"]
        near, far = int(counts.sel(region="near_A")), int(counts.sel(region="far_A"))
        return caption(fig, (
            "Prior specialisation: CNNs trained on a von Mises prior at 45° (A), then fine-tuned "
            "on one at 135° (B), against controls trained on B only. (a) FI of the decoded angle "
            "θ̂ and (b) decoding error after training on A, per κ; (c) FI after B, largest κ; "
            f"(d) specialisation log₂(mean FI within 22.5° of A, {near} angles, over 45° or "
            f"more from A, {far} of {ds.sizes['angle']}) beside the replicate spread of log₂ FI "
            "(bars); (e) mean FI near A and (f) near B after B, fine-tuned (green) and control "
            "(grey), also the colours of c."))
    finally:
        plt.close(fig)


def headroom(ax, fraction: float) -> None:
    """Raise the top of ``ax``'s y axis by ``fraction`` of its span (of its decades on a log
    axis): room for a legend above the data."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(low, high * (high / low) ** fraction)
    else:
        ax.set_ylim(low, high + fraction * (high - low))


def plot_prior_specialisation(ds: xr.Dataset) -> plt.Figure:
    """Prior specialisation: FI and error after training on prior A, then what B left of A.

    Panels: (a) FI of the decoded angle after training on A (von Mises at 45°), per κ;
    (b) decoding error after training on A, per κ; (c) FI after fine-tuning on B (135°)
    against a control trained on B from scratch, largest κ; (d) the specialisation
    log₂(FI near A / FI far from A) per κ, mean and 95% t interval with the replicates, beside
    the replicate spread of log₂ FI; (e, f) mean FI near A and near B after B, fine-tuned and
    control, geometric means and 95% t intervals of log FI (independent networks: the claims
    compare them by Welch's test).
    """
    if "fisher_region" not in ds:
        ds = add_measures(ds)
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    kappas = [float(k) for k in ds["kappa"].values]
    colours = {k: PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)] for i, k in enumerate(kappas)}
    stage_colours = {"second": PHASE_COLOURS[3], "control": PHASE_COLOURS[0]}
    stage_labels = {"second": "A, then B", "control": "B only (control)"}
    fi = ds["fisher"].sel(layer="output")
    x = np.arange(len(kappas), dtype=float)
    ticks = [f"{k:g}" for k in kappas]
    with print_style():
        fig, axes = print_figure(2, 3, width="double", aspect=0.72)
        ax = axes[0, 0]
        for kappa in kappas:
            log_band(ax, theta_deg, fi.sel(kappa=kappa, stage="first"), colours[kappa],
                     f"κ = {kappa:g}")
        mark_angle(ax, LOC_A, "A")
        fi_vs_angle_axis(ax)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 0.0))
        ax.set_title("after training on A")

        ax = axes[0, 1]
        for kappa in kappas:
            band(ax, theta_deg, np.degrees(ds["abs_error"].sel(kappa=kappa, stage="first")),
                 colours[kappa], f"κ = {kappa:g}", bounds=(0, 90))
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        mark_angle(ax, LOC_A, "A")
        angle_axis(ax)
        ax.set_title("error after training on A")

        ax = axes[0, 2]
        kappa = kappas[-1]
        for stage in ("second", "control"):
            log_band(ax, theta_deg, fi.sel(kappa=kappa, stage=stage), stage_colours[stage],
                     stage_labels[stage])
        mark_angle(ax, LOC_A, "A")
        mark_angle(ax, LOC_B, "B")
        fi_vs_angle_axis(ax)
        ax.set_title(f"after B (κ = {kappa:g})")

        ax = axes[1, 0]
        ax.bar(x, ds["measure_spread"].sel(kappa=kappas).values, width=0.5, color="0.85",
               label="replicate spread", zorder=0)
        interval_bars(ax, x, ds["measure_specialisation"].transpose("kappa", "replicate"),
                      PHASE_COLOURS[1], "specialisation")
        values = ds["measure_specialisation"].transpose("kappa", "replicate").values
        ax.plot(np.repeat(x, values.shape[1]) + 0.15, values.ravel(), "o", ms=2,
                color=PHASE_COLOURS[1], alpha=0.4, mew=0)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(x, ticks)
        ax.set_xlim(-0.7, len(kappas) - 0.3)
        ax.set_xlabel("prior concentration κ")
        ax.set_ylabel("log₂ FI near A / far from A")
        headroom(ax, 0.75)
        ax.legend(loc="upper left")
        ax.set_title("specialisation to A")

        for ax, region, title in [(axes[1, 1], "near_A", "FI near A after B"),
                                  (axes[1, 2], "near_B", "FI near B after B")]:
            for offset, stage in zip((-0.15, 0.15), ("second", "control"), strict=True):
                ratio_points(ax, ds["fisher_region"].sel(region=region, layer="output",
                                                         stage=stage).transpose("kappa", ...),
                             x=x, offset=offset, colour=stage_colours[stage],
                             label=stage_labels[stage], reference=None)
            ax.set_xticks(x, ticks)
            ax.set_xlim(-0.7, len(kappas) - 0.3)
            ax.set_xlabel("prior concentration κ")
            ax.set_ylabel("mean FI of θ̂ (rad⁻²)")
            ax.set_title(title)
            headroom(ax, 0.75)
        axes[1, 1].legend(loc="upper right")
        panel_letters(fig)
        for ax in axes[0]:  # room above the axes for the marked angles' names
            ax.set_title(ax.get_title(loc="left"), loc="left", pad=11)
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
    claims=CLAIMS,
)
