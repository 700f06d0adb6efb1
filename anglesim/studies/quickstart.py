"""Quickstart: does fine-tuning on a concentrated prior move Fisher information to its peak?

Small CNNs are pretrained on uniformly distributed orientations, then fine-tuned on a von Mises
prior concentrated at π/2 (90°, κ = 4). After each phase we measure, on a fixed grid of angles,
the mean absolute decoding error and the linearised Fisher information (FI; propagated pixel
noise) at every block and at the decoded output, through :func:`anglesim.fisher.measure_fisher`
(which also stores the phase's prior density). Replicates differ only in their seed.

**Design.** The two arms are the phases of one network: FI and error after pretraining and
after fine-tuning, paired by replicate. Each is averaged over two windows of the angle grid
(:func:`anglesim.angles.near_far`'s one boundary rule, float32-safe): *near*, within 22.5° of
the fine-tuning prior's peak (13 of the 48 grid angles at the full size), and *far*, 45° or
more from it (25 of 48); *all* is the whole grid. The declared claims (:data:`CLAIMS`, tested
at κ = 4 by the claims layer, Holm over the family of 8):

* ``near_gain``: FI near the peak after / before fine-tuning > 1, per layer from ``conv2`` to
  the decoded output (paired ratio; ``input`` and ``conv1`` keep every pixel's information, so
  their FI cannot change);
* ``far_loss``: FI of the decoded angle far from the peak after / before < 1;
* ``gain_grows``: the near gain (log₂) is larger at the output than at ``conv2``;
* ``error_rises_far`` and ``error_rises``: the decoding error after / before fine-tuning > 1
  far from the peak and over the whole grid;
* exploratory: the error near the peak after / before.

**Sizes.** Full: 8 replicates (≥ 8 pairs for the contrasts between phases; ~50 CPU s each, so
about 3.5 min on 2 workers), 8 + 4 epochs of 50 batches of 64, 48 angles. Quick: 2 replicates
of a few steps (a smoke test; its networks decode at chance and its claims are unresolved).

Conditions do not share seeds (one condition, κ = 4, by default; ``grid.kappa=[2,8]`` gives
each κ its own networks, and the claims, declared for κ = 4, are then "not in this run").
Overridable: ``kappa=8``, ``phases.finetune.lr=5e-4``, ``pre_epochs=2``, ``replicates=6``, …
(``anglesim run quickstart --dry-run`` shows the cells).

Run: ``anglesim quickstart`` or ``anglesim run quickstart [key=value …]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.angles import near_far_masks
from anglesim.claims import Contrast
from anglesim.distributions import Uniform, VonMises
from anglesim.fisher import measure_fisher, method_result
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    angle_axis,
    band,
    caption,
    log_band,
    mean_ci,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import CNN, SPEC, expects_aperture_ties, labelled

NAME = "quickstart"
FINETUNE_LOC = math.pi / 2
PHASES = {"pretrain": {"lr": 2e-3}, "finetune": {"lr": 1e-3}}
"""Each phase's learning rate (fine-tuning at half the pretraining rate)."""
KAPPA = 4.0
"""The fine-tuning prior's concentration the claims are about."""
WINDOWS = ("near", "far", "all")
"""Windows of the angle grid: within 22.5° of the fine-tuning prior's peak, 45° or more from
it (:func:`anglesim.angles.near_far`), and the whole grid."""
CLAIM_LAYERS = ["conv2", "fc", "head", "output"]
"""The layers whose FI can change (``input`` and ``conv1`` keep every pixel's information)."""

# name: (pretrain epochs, fine-tune epochs, steps per epoch, batch, angles, replicates)
SIZES = {
    "full": dict(pre_epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, replicates=8),
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


# ---- derived measures ------------------------------------------------------------------------


def window_masks(ds: xr.Dataset) -> xr.DataArray:
    """Boolean masks over ``angle`` of :data:`WINDOWS` (dim ``window``), around the peak of
    the fine-tuning prior (:func:`anglesim.angles.near_far_masks`: near ≤ 22.5°, far ≥ 45°,
    boundaries included at any float precision)."""
    density = ds["prior_density"].sel(phase="finetune")
    density = density.max([d for d in density.dims if d != "angle"])  # NaN-skipping
    near, far = near_far_masks(density)
    return xr.concat([near, far, xr.ones_like(near)], dim="window").assign_coords(
        window=list(WINDOWS))


LABELS = {
    "kappa": ("1", "concentration κ of the fine-tuning prior (von Mises on 2θ)"),
    "train_loss": ("1", "training loss 1 − cos 2(θ̂ − θ), mean over the epoch"),
    "val_loss": ("1", "validation loss (finite-dataset phases only)"),
    "window": ("1", "window of the angle grid: within 22.5° of the fine-tuning prior's peak "
                    "(near), 45° or more from it (far), or all angles"),
    "window_angles": ("1", "grid angles in the window"),
    "fisher_window": ("rad^-2", "FI, mean over the window's angles"),
    "abs_error_window": ("rad", "mean absolute decoding error over the window's angles"),
    "fisher_gain": ("1", "log2 ratio of window-mean FI after fine-tuning to before"),
}
"""Units and long names of the quickstart's own variables and coordinates."""


def add_windows(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with window means of FI and error (``fisher_window``, ``abs_error_window``), the
    log₂ change of FI from pretraining to fine-tuning per window (``fisher_gain``), each
    window's number of grid angles, and units and long names on every variable."""
    ok = successful(ds)
    masks = window_masks(ok)
    fi = ok["fisher"].where(masks).mean("angle")
    out = ds.assign(
        fisher_window=fi,
        abs_error_window=ok["abs_error"].where(masks).mean("angle"),
        fisher_gain=np.log2(fi.sel(phase="finetune", drop=True)
                            / fi.sel(phase="pretrain", drop=True)),
        window_angles=masks.sum("angle"),
    )
    for name in ("fisher_window", "abs_error_window", "fisher_gain", "window_angles"):
        out[name].attrs = {}
    return labelled(out, LABELS)


# ---- the declared claims ---------------------------------------------------------------------


def _phases(measure: str, window: str, statement: str, name: str, direction: str,
            **where) -> Contrast:
    """After fine-tuning against after pretraining, paired by replicate, as a ratio."""
    return Contrast(name=name, statement=statement, measure=measure,
                    arm={"phase": "finetune"}, against={"phase": "pretrain"}, paired=True,
                    where={"kappa": KAPPA, "window": window, **where},
                    over=["layer"] if isinstance(where.get("layer"), list) else [],
                    scale="ratio", direction=direction)


CLAIMS = [
    _phases("fisher_window", "near", "fine-tuning on a prior at 90° (κ = 4) raises the mean "
            "FI within 22.5° of its peak, in every layer from conv2 to the decoded output",
            "near_gain", "greater", layer=CLAIM_LAYERS),
    _phases("fisher_window", "far", "fine-tuning lowers the mean FI of the decoded angle 45° "
            "or more from the prior's peak", "far_loss", "less", layer="output"),
    Contrast(name="gain_grows", statement="the FI gain near the peak grows from conv2 to the "
             "decoded output", measure="fisher_gain", arm={"layer": "output"},
             against={"layer": "conv2"}, paired=True,
             where={"kappa": KAPPA, "window": "near"}, direction="greater"),
    _phases("abs_error_window", "far", "fine-tuning raises the decoding error 45° or more "
            "from the prior's peak", "error_rises_far", "greater"),
    _phases("abs_error_window", "all", "fine-tuning raises the mean decoding error over all "
            "angles", "error_rises", "greater"),
    Contrast(name="error_near", statement="the decoding error within 22.5° of the peak, after "
             "fine-tuning over before", measure="abs_error_window", arm={"phase": "finetune"},
             against={"phase": "pretrain"}, paired=True,
             where={"kappa": KAPPA, "window": "near"}, scale="ratio", direction="differs",
             exploratory=True),
]
"""The quickstart's planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """What the run measured: error and window-mean FI of θ̂ per phase, mean and 95% t
    interval over replicates (the claims table follows, from the runner), and the caption."""
    if "fisher_window" not in ds:
        ds = add_windows(ds)
    ok = successful(ds).sel(kappa=ds["kappa"].values[0])
    n = int(ok["abs_error"].isel(phase=0, angle=0).count())
    counts = {w: int(ok["window_angles"].sel(window=w)) for w in WINDOWS}
    lines = [f"κ = {float(ok['kappa']):g}; mean and 95% t interval over {n} replicates:",
             "decoding error, mean |θ̂ − θ| over the angle grid (chance 45°):"]
    for ph in ok["phase"].values:
        m, h = mean_ci(np.degrees(ok["abs_error_window"].sel(phase=ph, window="all")))
        lines.append(f"  after {ph}: {float(m):.2f} ± {float(h):.2f}°")
    lines.append(f"FI of θ̂ (rad⁻²), mean over the window: near the fine-tuning peak (±22.5°, "
                 f"{counts['near']} angles), far (≥ 45°, {counts['far']} of "
                 f"{counts['all']}):")
    for ph in ok["phase"].values:
        cells = []
        for w in ("near", "far"):
            m, h = mean_ci(ok["fisher_window"].sel(phase=ph, window=w, layer="output"))
            cells.append(f"{w} {float(m):.0f} ± {float(h):.0f}")
        lines.append(f"  after {ph}: " + ", ".join(cells))
    lines.append("(FI is the propagated, linearised value; the stimulus's pixel noise outside "
                 "its aperture ties max-pool windows there, where it is not the small-noise "
                 "limit: user guide, Studies, \"Pool ties in the built-in studies\")")
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then what its intervals are and over how many
    replicates (:func:`anglesim.plotting.caption`, from what the figure drew)."""
    fig = plot_quickstart(ds)
    try:
        windows = ds["window_angles"] if "window_angles" in ds else add_windows(ds)[
            "window_angles"]
        near, far, n_all = (int(windows.sel(window=w)) for w in WINDOWS)
        return caption(fig, (
            "Quickstart: CNNs pretrained on uniform orientations, then fine-tuned on a von "
            f"Mises prior at 90° (κ = {float(ds['kappa'].values[0]):g}). (a) Training priors; "
            "(b) FI of the decoded angle θ̂ and (c) decoding error after each phase (colours as in "
            "a); (d) FI after over before "
            f"fine-tuning per layer, within 22.5° of the new peak (near, {near} of {n_all} "
            f"angles) and 45° or more from it (far, {far})."))
    finally:
        plt.close(fig)


def plot_quickstart(ds: xr.Dataset) -> plt.Figure:
    """Quickstart: prior, Fisher information and error before and after fine-tuning.

    Panels: (a) the training priors of each phase; (b) FI of the decoded angle (propagated
    pixel noise) against θ, geometric mean and 95% t band of log FI over replicates, the near
    window shaded; (c) mean absolute decoding error against θ; (d) FI after fine-tuning over
    FI before, per layer, near the fine-tuning prior's peak and far from it: one dot per
    replicate, the geometric mean and its paired 95% t interval (the claims' test).
    """
    if "fisher_window" not in ds:
        ds = add_windows(ds)
    ds = successful(ds)
    # The quickstart grid has one condition axis; draw its first value.
    extra = [d for d in ds["fisher"].dims if d not in ("replicate", "phase", "layer", "angle")]
    ds = ds.isel({d: 0 for d in extra})
    phases = [str(p) for p in ds["phase"].values]
    theta_deg = np.degrees(ds["angle"].values)
    near = window_masks(ds).sel(window="near")
    with print_style():
        fig, axes = print_figure(2, 2, width="double", aspect=0.6)
        ax = axes[0, 0]
        for i, ph in enumerate(phases):
            dens = ds["prior_density"].sel(phase=ph).max("replicate")
            ax.plot(theta_deg, dens, color=PHASE_COLOURS[i], label=ph)  # colours of a–c
        ax.set_ylabel("prior density p(θ) (1/rad)")
        ax.set_ylim(0, 1.3 * float(ds["prior_density"].max()))
        angle_axis(ax)
        ax.legend(loc="upper left", title="phase", alignment="left")
        ax.set_title("training priors")

        ax = axes[0, 1]
        shown = theta_deg[near.values]
        ax.axvspan(shown.min(), shown.max(), color="0.92", lw=0, zorder=0)
        for i, ph in enumerate(phases):
            log_band(ax, theta_deg, ds["fisher"].sel(phase=ph, layer="output"),
                     PHASE_COLOURS[i], f"after {ph}")
        ax.set_yscale("log")
        ax.set_ylabel("FI of θ̂ (rad⁻²)")
        angle_axis(ax)
        ax.set_title("FI at the decoded output (near window shaded)")

        ax = axes[1, 0]
        for i, ph in enumerate(phases):
            band(ax, theta_deg, np.degrees(ds["abs_error"].sel(phase=ph)), PHASE_COLOURS[i],
                 f"after {ph}", bounds=(0, 90))
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.set_title("decoding error")

        ax = axes[1, 1]
        layers = [str(v) for v in ds["layer"].values if str(v) != "input"]
        x = np.arange(len(layers), dtype=float)
        fi = ds["fisher_window"].sel(layer=layers)
        for offset, (window, label, colour) in enumerate(
                [("near", "near peak (≤ 22.5°)", PHASE_COLOURS[1]),
                 ("far", "far from it (≥ 45°)", PHASE_COLOURS[2])]):
            paired_difference(ax, fi.sel(phase="pretrain", window=window),
                              fi.sel(phase="finetune", window=window), ratio=True,
                              x=x + (offset - 0.5) * 0.36, colour=colour, label=label,
                              spread=0.08, connect=False)
        ax.set_xticks(x, layers)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_xlabel("layer")
        ax.set_ylabel("FI after / before fine-tuning")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * (high / low) ** 0.25)  # headroom for the legend (log axis)
        ax.legend(loc="upper left", ncols=2, handletextpad=0.2, columnspacing=1.0)
        ax.set_title("change per layer (paired by replicate)")
        panel_letters(fig)
    return fig


STUDY = Study(
    name=NAME,
    question="Does fine-tuning on a concentrated prior move Fisher information to its peak?",
    replicate=replicate,
    sizes=SIZES,
    grid={"kappa": [KAPPA]},
    defaults={"finetune_loc": FINETUNE_LOC, "phases": PHASES},
    describe=describe,
    postprocess=add_windows,
    figure=plot_quickstart,
    summary=summarise,
    pair_axes=(),  # each κ trains its own networks from its own seeds
    devices=("cpu", "cuda"),
    # NaN by design: stream phases have no validation loss
    allow_nan=("val_loss",),
    claims=CLAIMS,
)
