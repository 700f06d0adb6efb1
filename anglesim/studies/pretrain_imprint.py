"""Pretraining imprint: does a pretrained network leave a fingerprint on its fine-tuned children?

Each replicate is one *parent*: a CNN pretrained on uniformly distributed orientations. Several
*children* are fine-tuned from it on a von Mises prior at 90°, differing only in the seed of
their fine-tuning data — once with the optimiser state reset between the phases, once with
Adam's state kept from pretraining. We measure every child's Fisher information (FI) of the
decoded angle, remove the curve shared by all children of all parents, and ask whether the
small-scale wiggles that remain correlate more between children of the same parent than
between children of different parents — a fingerprint of pretraining that fine-tuning does
not erase.

Run: ``anglesim run pretrain_imprint [--quick]``.
"""

from __future__ import annotations

import copy
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.distributions import Uniform, VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    angle_axis,
    band_footnote,
    interval_bars,
    successful,
)
from anglesim.seeding import root_seed
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

from ._recipes import CNN, SPEC, expects_aperture_ties

NAME = "pretrain_imprint"
FINETUNE_LOC = math.pi / 2
STATES = ("reset", "kept")

SIZES = {
    "full": dict(pre_epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, children=4,
                 replicates=6),
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
        # the data generator is re-seeded at the phase boundary, so only fine-tuning differs.
        net = copy.deepcopy(init)
        gen = ctx.root_generator()

        def reseed(phase: Phase, _net, gen=gen, cs=cs) -> None:
            if phase.name == "pretrain":  # the data continue as the child's root stream
                gen.manual_seed(root_seed(cs))

        train(net, list(phases(kappa, sz, "kept")), ctx.seed, generator=gen,
              on_phase_end=reseed, **on)
        curves["kept"].append(measure(net))

    fisher = xr.concat(
        [xr.concat(curves[s], dim="child") for s in STATES], dim="state"
    ).assign_coords(state=list(STATES), child=np.arange(sz["children"]), angle=angle)
    return xr.Dataset(
        {
            "fisher": fisher,
            "parent_fisher": parent_fisher.assign_coords(angle=angle),
        }
    )


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


def add_imprint(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`imprint` added (variables prefixed ``imprint_``)."""
    m = imprint(ds)
    return ds.assign({f"imprint_{k}" if k != "imprint" else "imprint": v
                      for k, v in m.data_vars.items()})




def summarise(ds: xr.Dataset) -> str:
    """Within- and between-parent correlations, mean ± s.e. over parents, per state."""
    lines = ["correlation of children's FI residuals (output), mean ± s.e. over parents:"]
    for state in ds["state"].values:
        cells = []
        for var in ("imprint_within", "imprint_between", "imprint"):
            v = ds[var].sel(state=state).isel(kappa=0)
            se = float(v.std("replicate", ddof=1) / np.sqrt(v.count("replicate")))
            cells.append(f"{var.replace('imprint_', '')} {float(v.mean()):+.3f} ± {se:.3f}")
        lines.append(f"  optimiser {state}: " + "; ".join(cells))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "finetune_loc": FINETUNE_LOC,
            "phases": [p.to_config() for p in phases(grid["kappa"][0], params, "kept")]}


# ---- figure ----------------------------------------------------------------------------------


def plot_pretrain_imprint(ds: xr.Dataset) -> plt.Figure:
    """Pretraining imprint: do children of one pretrained parent share their FI wiggles?

    Panels (a, b): residual log FI of the decoded angle (each child's curve minus the mean over
    all children of all parents) for the children of up to three parents, optimiser state reset
    (a) and kept (b) at the phase boundary; (c) mean correlation of residuals between children of
    the same parent and of different parents, mean ± 95% CI over parents.
    """
    ds = successful(ds).isel(kappa=0)
    theta_deg = np.degrees(ds["angle"].values)
    logfi = np.log10(ds["fisher"].sel(layer="output"))
    resid = logfi - logfi.mean(("replicate", "child"))
    parents = ds["replicate"].values[:3]
    states = [str(s) for s in ds["state"].values]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), constrained_layout=True)
        for ax, state, letter in zip(axes[:2], states, "ab", strict=False):
            for i, parent in enumerate(parents):
                colour = PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)]
                curves = resid.sel(state=state, replicate=parent)
                for j, child in enumerate(curves["child"].values):
                    ax.plot(theta_deg, curves.sel(child=child), color=colour, lw=0.9,
                            alpha=0.8, label=f"parent {parent}" if j == 0 else None)
            ax.axhline(0, color="0.6", lw=0.8)
            ax.set_ylabel("residual log₁₀ FI of θ̂")
            angle_axis(ax)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(f"{letter}  children, optimiser state {state}", loc="left")
        ax = axes[2]
        x = np.arange(len(states))
        for offset, (var, label, colour) in enumerate(
            [("imprint_within", "same parent", PHASE_COLOURS[1]),
             ("imprint_between", "different parents", PHASE_COLOURS[2])]
        ):
            interval_bars(ax, x + (offset - 0.5) * 0.2, ds[var].sel(state=states), colour, label,
                          bounds=(-1, 1), what="parents")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, [f"optimiser {s}" for s in states])
        ax.set_xlim(-0.6, len(states) - 0.4)
        ax.set_ylabel("correlation of FI residuals")
        ax.legend(frameon=False)
        ax.set_title("c  fingerprint", loc="left")
        fig.suptitle(f"pretraining imprint: {int(ds['replicate'].size)} parents × "
                     f"{int(ds['child'].size)} children", fontsize=9)
        band_footnote(fig)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question="Do children fine-tuned from one pretrained parent share the parent's FI wiggles?",
    replicate=replicate,
    sizes=SIZES,
    grid={"kappa": [4.0]},
    describe=describe,
    postprocess=add_imprint,
    figure=plot_pretrain_imprint,
    summary=summarise,
    # one condition; the children of a parent are made inside its replicate (child seeds derived
    # from the parent's)
    pair_axes=(),
)
