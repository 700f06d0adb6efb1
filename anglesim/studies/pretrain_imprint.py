"""Pretraining imprint: does a pretrained network leave a fingerprint on its fine-tuned children?

Each replicate is one *parent*: a CNN pretrained on uniformly distributed orientations. Several
*children* are fine-tuned from it on a von Mises prior at 90°, differing only in the seed of
their fine-tuning data — once with the optimiser state reset between the phases, once with
Adam's state kept from pretraining. We measure every child's Fisher information (FI) of the
decoded angle, remove the curve shared by all children of all parents, and ask whether the
small-scale wiggles that remain correlate more between children of the same parent than
between children of different parents — a fingerprint of pretraining that fine-tuning does
not erase.

**Design.** Per parent (the replicate) and optimiser state: ``within``, the mean Pearson
correlation of the residual log FI curves over pairs of its children; ``between``, the mean
correlation of its children with every other parent's children (:func:`imprint`). Both states
fine-tune the same parent with the same children's data seeds, so the states are paired by
parent. The declared claims (:data:`CLAIMS`, Holm over the family of 3):

* ``fingerprint`` (per state): within > between, paired by parent (the one-sample t test of
  within − between over parents);
* ``kept_stronger``: the fingerprint (within − between) is larger with Adam's state kept than
  with a reset, paired by parent.

Caveat: the t tests treat parents as independent; each parent's ``between`` shares the other
parents' curves, and removing the grand mean couples all curves (it makes ``between``
−1/(P − 1) for P parents whose children are clones), so the intervals are approximate; under
no imprint ``within`` and ``between`` have the same expectation, so the contrast is unbiased.

**Sizes.** Full: 12 parents × 4 children × 2 states (≥ 8 paired parents; ~60 CPU s a parent,
about 6 min on 2 workers), 8 pretraining epochs and 4 fine-tuning epochs of 50 batches of 64,
48 angles. Quick: 2 parents × 2 children of a few steps (a smoke test).

Run: ``anglesim run pretrain_imprint [--quick]``.
"""

from __future__ import annotations

import copy
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.claims import Contrast
from anglesim.distributions import Uniform, VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    angle_axis,
    caption,
    interval_bars,
    mean_ci,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.seeding import root_generator
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

from ._recipes import CNN, SPEC, expects_aperture_ties, fisher_variables, labelled

NAME = "pretrain_imprint"
FINETUNE_LOC = math.pi / 2
STATES = ("reset", "kept")
KAPPA = 4.0
"""The fine-tuning prior's concentration (the claims are about it)."""

SIZES = {
    "full": dict(pre_epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, children=4,
                 replicates=12),
    "quick": dict(pre_epochs=1, ft_epochs=1, steps=3, batch=16, n_angles=8, children=2,
                  replicates=2),
}


def phases(kappa: float, sz: dict, state: str) -> tuple[Phase, Phase]:
    """Pretraining on a uniform prior, fine-tuning on VonMises(90°, κ) at half the rate."""
    common = dict(spec=SPEC, loss="cosine", steps_per_epoch=sz["steps"],
                  batch_size=sz["batch"], eval_angles=sz["n_angles"], eval_repeats=1)
    return (
        Phase("pretrain", Uniform(), lr=2e-3, epochs=sz["pre_epochs"], **common),
        Phase("finetune", VonMises(FINETUNE_LOC, kappa), lr=1e-3, epochs=sz["ft_epochs"],
              reset_optimizer=state == "reset", **common),
    )


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """One parent and its children, fine-tuned with optimiser state reset and kept."""
    sz, on = ctx.params, ctx.on_device
    kappa = float(ctx.condition["kappa"])
    grid = ctx.angles
    angle = grid.double().numpy()

    def measure(net) -> xr.DataArray:
        return propagated_fisher(net, SPEC, grid, layers=["fc", "output"], sigma=SPEC.noise_std,
                                 **on)

    init = build_model(CNN, generator=ctx.seed_generator())
    pre, _ = phases(kappa, sz, "reset")
    parent = copy.deepcopy(init)
    train(parent, [pre], ctx.seed, **on)
    parent_fisher = measure(parent)

    curves = {state: [] for state in STATES}
    for child in range(sz["children"]):
        cs = ctx.stream_seed("data", child)  # the child's fine-tuning data
        # reset: the fine-tuning phase alone, from a copy of the parent, with a fresh optimiser
        net = copy.deepcopy(parent)
        train(net, [phases(kappa, sz, "reset")[1]], cs, **on)
        curves["reset"].append(measure(net))
        # kept: pretraining is replayed exactly (same init, same seed) so Adam's state exists;
        # at the phase boundary the data generator takes the state of the child's root stream
        # (the stream the reset child's train(…, cs) draws from), so only fine-tuning differs.
        net = copy.deepcopy(init)
        gen = ctx.root_generator()
        child_stream = root_generator(cs, device=ctx.device)

        def reseed(phase: Phase, _net, gen=gen, child_stream=child_stream) -> None:
            if phase.name == "pretrain":  # the data continue as the child's root stream
                gen.set_state(child_stream.get_state())

        train(net, list(phases(kappa, sz, "kept")), ctx.seed, generator=gen,
              on_phase_end=reseed, **on)
        curves["kept"].append(measure(net))

    fisher = xr.concat(
        [xr.concat(curves[s], dim="child") for s in STATES], dim="state"
    ).assign_coords(state=list(STATES), child=np.arange(sz["children"]), angle=angle)
    return xr.Dataset(fisher_variables(fisher=fisher,
                                       parent_fisher=parent_fisher.assign_coords(angle=angle)))


def imprint(ds: xr.Dataset, layer: str = "output") -> xr.Dataset:
    """Within- and between-parent correlation of the children's FI wiggles, per state and κ.

    For each state, log FI minus its mean over every child of every parent (the shared shape)
    leaves each child's residual curve. ``within``: per parent, the mean Pearson correlation
    over pairs of its children; ``between``: per parent, the mean correlation of its children
    with the children of every other parent. ``imprint`` = within − between, per parent.
    """
    ok = successful(ds)
    logfi = np.log(ok["fisher"].sel(layer=layer))
    resid = logfi - logfi.mean(("replicate", "child"))
    resid = resid - resid.mean("angle")
    z = resid / np.sqrt((resid**2).sum("angle"))

    def _pairs(zz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # zz: [parent, child, angle] of unit-norm, mean-zero curves: dot products = correlations
        n_par, n_ch, _ = zz.shape
        corr = np.einsum("pca,qda->pcqd", zz, zz)
        within = np.full(n_par, np.nan)
        between = np.full(n_par, np.nan)
        for p in range(n_par):
            pairs = [corr[p, c, p, d] for c, d in itertools.combinations(range(n_ch), 2)]
            within[p] = np.nanmean(pairs) if pairs else np.nan
            others = [corr[p, :, q, :].ravel() for q in range(n_par) if q != p]
            between[p] = np.nanmean(np.concatenate(others)) if others else np.nan
        return within, between

    within, between = xr.apply_ufunc(
        _pairs, z.transpose(..., "replicate", "child", "angle"),
        input_core_dims=[["replicate", "child", "angle"]],
        output_core_dims=[["replicate"], ["replicate"]], vectorize=True,
    )
    return xr.Dataset({"within": within, "between": between, "imprint": within - between})


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "finetune_loc": FINETUNE_LOC,
            "phases": [p.to_config() for p in phases(grid["kappa"][0], params, "kept")]}


LABELS = {
    "kappa": ("1", "concentration κ of the fine-tuning prior (von Mises on 2θ)"),
    "state": ("1", "optimiser state at the phase boundary: reset, or Adam's moments kept "
                   "from pretraining"),
    "child": ("1", "child index (its fine-tuning data seed)"),
    "imprint_within": ("1", "mean Pearson correlation of residual log FI between children "
                            "of the same parent"),
    "imprint_between": ("1", "mean Pearson correlation of residual log FI between this "
                             "parent's children and other parents' children"),
    "imprint": ("1", "fingerprint: within-parent minus between-parent correlation"),
}
"""Units and long names of the study's own variables and coordinates."""


def add_imprint(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`imprint` added (variables prefixed ``imprint_``, the difference
    as ``imprint``), and units and long names on every variable."""
    m = imprint(ds)
    named = {f"imprint_{k}" if k != "imprint" else "imprint": v for k, v in m.data_vars.items()}
    out = ds.assign(named)
    for name in named:
        out[name].attrs = {}
    return labelled(out, LABELS)


# ---- the declared claims ---------------------------------------------------------------------

CLAIMS = [
    Contrast(name="fingerprint", statement="residual log FI curves of children of one parent "
             "correlate more than those of children of different parents",
             measure="imprint_within", against="imprint_between", where={"kappa": KAPPA},
             over=["state"], direction="greater"),
    Contrast(name="kept_stronger", statement="the fingerprint (within − between) is larger "
             "with Adam's state kept from pretraining than with the optimiser reset",
             measure="imprint", arm={"state": "kept"}, against={"state": "reset"},
             paired=True, where={"kappa": KAPPA}, direction="greater"),
]
"""The study's planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """Within- and between-parent correlations per state, mean and 95% t interval over
    parents, and the figure's caption (the claims table follows, from the runner)."""
    if "imprint" not in ds:
        ds = add_imprint(ds)
    ok = successful(ds)
    n = int(ok["imprint"].isel(kappa=0, state=0).count())
    lines = [f"correlation of children's FI residuals (output), mean and 95% t interval over "
             f"{n} parents:"]
    for state in ok["state"].values:
        cells = []
        for var in ("imprint_within", "imprint_between", "imprint"):
            m, h = mean_ci(ok[var].sel(state=state).isel(kappa=0))
            label = var.replace("imprint_", "") if var != "imprint" else "within − between"
            cells.append(f"{label} {float(m):+.3f} ± {float(h):.3f}")
        lines.append(f"  optimiser {state}: " + "; ".join(cells))
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`, from what the figure drew)."""
    fig = plot_pretrain_imprint(ds)
    try:
        return caption(fig, (
            f"Pretraining imprint: {ds.sizes['replicate']} parent CNNs pretrained on uniform "
            f"orientations, {ds.sizes['child']} children of each fine-tuned on a von Mises "
            "prior at 90° with different data seeds. (a, b) Residual log₁₀ FI of the decoded "
            "angle (each child minus the mean of all children) for the children of three "
            "parents, optimiser state reset (a) or kept (b); (c) mean correlation of the "
            "residuals between children of the same parent and of different parents; (d) "
            "within − between per parent (dots joined across states)."))
    finally:
        plt.close(fig)


def plot_pretrain_imprint(ds: xr.Dataset) -> plt.Figure:
    """Pretraining imprint: do children of one pretrained parent share their FI wiggles?

    Panels (a, b): residual log FI of the decoded angle (each child's curve minus the mean over
    all children of all parents) for the children of up to three parents, optimiser state reset
    (a) and kept (b) at the phase boundary; (c) mean correlation of residuals between children
    of the same parent and of different parents, mean and 95% t interval over parents; (d) the
    fingerprint within − between per parent, its mean and paired 95% t interval, per state.
    """
    if "imprint" not in ds:
        ds = add_imprint(ds)
    ds = successful(ds).isel(kappa=0)
    theta_deg = np.degrees(ds["angle"].values)
    logfi = np.log10(ds["fisher"].sel(layer="output"))
    resid = logfi - logfi.mean(("replicate", "child"))
    parents = ds["replicate"].values[:3]
    states = [str(s) for s in ds["state"].values]
    x = np.arange(len(states), dtype=float)
    ticks = [f"{s}" for s in states]
    with print_style():
        fig, axes = print_figure(2, 2, width="double", aspect=0.55)
        for ax, state in zip(axes[0], states, strict=False):
            for i, parent in enumerate(parents):
                colour = PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)]
                curves = resid.sel(state=state, replicate=parent)
                for j, child in enumerate(curves["child"].values):
                    ax.plot(theta_deg, curves.sel(child=child), color=colour, lw=0.7,
                            alpha=0.8, label=f"parent {parent}" if j == 0 else None)
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_ylabel("residual log₁₀ FI of θ̂")
            angle_axis(ax)
            low, high = ax.get_ylim()
            ax.set_ylim(low, high + 0.45 * (high - low))  # room for the legend
            ax.legend(loc="upper left", ncols=3, handlelength=1.2, columnspacing=0.8)
            ax.set_title(f"children, optimiser state {state}")

        ax = axes[1, 0]
        for offset, (var, label, colour) in enumerate(
            [("imprint_within", "same parent", PHASE_COLOURS[1]),
             ("imprint_between", "different parents", PHASE_COLOURS[2])]
        ):
            interval_bars(ax, x + (offset - 0.5) * 0.3,
                          ds[var].sel(state=states).transpose("state", "replicate"), colour,
                          label, bounds=(-1, 1), what="parents")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(x, ticks)
        ax.set_xlim(-0.6, len(states) - 0.4)
        ax.set_ylim(-0.6, 1.5)
        ax.set_xlabel("optimiser state at the phase boundary")
        ax.set_ylabel("correlation of FI residuals")
        ax.legend(loc="upper left", ncols=2)
        ax.set_title("correlation between children")

        ax = axes[1, 1]
        paired_difference(ax, ds["imprint_between"].sel(state=states),
                          ds["imprint_within"].sel(state=states), x=x, colour=PHASE_COLOURS[1])
        ax.set_xticks(x, ticks)
        ax.set_xlim(-0.6, len(states) - 0.4)
        ax.set_xlabel("optimiser state at the phase boundary")
        ax.set_ylabel("within − between correlation")
        ax.set_title("fingerprint, paired by parent")
        panel_letters(fig)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question="Do children fine-tuned from one pretrained parent share the parent's FI wiggles?",
    replicate=replicate,
    sizes=SIZES,
    grid={"kappa": [KAPPA]},
    describe=describe,
    postprocess=add_imprint,
    figure=plot_pretrain_imprint,
    summary=summarise,
    # one condition; the children of a parent are made inside its replicate (child seeds derived
    # from the parent's)
    pair_axes=(),
    claims=CLAIMS,
)
