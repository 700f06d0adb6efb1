"""Anisotropy control: how much FI structure comes from the pixel grid, before any prior?

A CNN of the studies' standard kind is measured twice: untrained (its random initial weights)
and after training on a *uniform* prior. At every layer the propagated Fisher information
about θ (pixel noise σ = 1 on the standard stimulus) is measured on a grid of 24 angles (7.5°
apart), which holds the cardinals (0°, 90°) and the obliques (45°, 135°); :func:`anglesim.laws.
cardinal_oblique` gives log₂(mean J at the cardinals / mean J at the obliques) per layer. With
a uniform prior nothing in training prefers an orientation, so any cardinal–oblique difference
is the grid's, the architecture's or the initialisation's: the baseline every prior-
specialisation result (FI moving to a prior's peak at 90°, a cardinal) must be read against.

Run: ``anglesim run anisotropy [--quick]``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.laws import cardinal_oblique
from anglesim.models import build_model
from anglesim.plotting import STYLE, successful
from anglesim.stats import mean_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._laws_common import band_note, replicate_band
from ._recipes import CNN, SPEC, expects_aperture_ties, fisher_variables

NAME = "anisotropy"
STATES = ("untrained", "trained")

SIZES = {
    "full": dict(epochs=8, steps=50, batch=64, n_angles=24, error_repeats=16, replicates=4),
    "quick": dict(epochs=1, steps=3, batch=16, n_angles=8, error_repeats=2, replicates=2),
}
"""``n_angles`` must be a multiple of 4 so that the grid holds 0°, 45°, 90° and 135°."""


def phase(sz: dict) -> Phase:
    """Training on the uniform prior (the quickstart's pretraining recipe)."""
    return Phase("uniform", Uniform(), SPEC, loss="cosine", lr=2e-3, epochs=sz["epochs"],
                 steps_per_epoch=sz["steps"], batch_size=sz["batch"], eval_angles=8,
                 eval_repeats=1)


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """One network: FI at every layer and decoding error, untrained and after training."""
    sz = ctx.params
    model = build_model(CNN, generator=ctx.generator("init", device="cpu"))
    grid = ctx.angles.double().numpy()
    fisher, errors = [], []

    def measure(net) -> None:
        fisher.append(propagated_fisher(net, SPEC, grid, sigma=SPEC.noise_std))
        errors.append(evaluate_error(net, SPEC, sz["n_angles"], sz["error_repeats"],
                                     ctx.generator("eval")).values)

    measure(model.eval())
    history = train(model, [phase(sz)], ctx.stream_seed("data"))
    measure(model)
    ds = xr.Dataset({
        **fisher_variables(
            fisher=xr.concat(fisher, dim="state").assign_coords(state=list(STATES))),
        "abs_error": (("state", "angle"), np.stack(errors)),
    })
    ds["fisher"].attrs = {"units": "rad^-2", "method": "propagated",
                          "long_name": "propagated FI about theta, pixel noise sigma = 1"}
    ds["abs_error"].attrs = {"units": "rad", "long_name": "mean |theta_hat - theta|"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """``cardinal_oblique`` per replicate, state and layer (log₂ cardinal / oblique FI)."""
    return ds.assign(cardinal_oblique=cardinal_oblique(successful(ds)["fisher"]))


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "phase": phase(params).to_config()}


def summarise(ds: xr.Dataset) -> str:
    """log₂ cardinal/oblique FI per layer and state, mean ± 95% t half-width over replicates."""
    co = ds["cardinal_oblique"].isel(prior=0)
    lines = ["log2 FI(0°, 90°) / FI(45°, 135°), mean ± 95% CI over "
             f"{int(co.sizes['replicate'])} replicates (0 = isotropic):"]
    for layer in co["layer"].values:
        parts = []
        for state in co["state"].values:
            m, h = mean_ci(co.sel(layer=layer, state=state))
            parts.append(f"{state} {float(m):+.3f} ± {float(h):.3f}")
        lines.append(f"  {layer:>7}: " + ", ".join(parts))
    return "\n".join(lines)


def figure(ds: xr.Dataset) -> plt.Figure:
    """FI over θ per layer (normalised to its mean over angles), untrained and trained, and
    the cardinal/oblique log-ratio per layer."""
    ok = successful(ds).isel(prior=0)
    layers = list(ok["layer"].values)
    colours = {"untrained": "0.45", "trained": "C0"}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(layers) + 1, figsize=(2.2 * (len(layers) + 1), 2.6),
                                 constrained_layout=True)
        x = np.degrees(ok["angle"].values)
        for ax, layer in zip(axes[:-1], layers, strict=True):
            for state in ok["state"].values:
                fi = ok["fisher"].sel(layer=layer, state=state)
                replicate_band(ax, x, fi / fi.mean("angle"), colours[str(state)], str(state),
                               log=True)
            ax.set_title(str(layer))
            rel = ok["fisher"].sel(layer=layer) / ok["fisher"].sel(layer=layer).mean("angle")
            if float(rel.max() / rel.min()) > 10:  # untrained heads' FI spans decades
                ax.set_yscale("log")
            ax.set_xticks([0, 45, 90, 135, 180])
            ax.set_xlim(0, 180)
            ax.set_xlabel("θ (deg)")
        axes[0].set_ylabel("FI / its mean over θ")
        axes[0].legend(frameon=False)
        ax = axes[-1]
        co = ok["cardinal_oblique"]
        pos = np.arange(len(layers))
        for k, state in enumerate(ok["state"].values):
            m, h = mean_ci(co.sel(state=state))
            err = h.values if int(co.sizes["replicate"]) >= 3 else None
            ax.errorbar(pos + 0.15 * (k - 0.5), m.values, yerr=err, fmt="o",
                        color=colours[str(state)], label=str(state), ms=4, capsize=2)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(pos, layers, rotation=60)
        ax.set_ylabel("log₂ FI cardinal / oblique")
        fig.suptitle(f"Anisotropy control: cardinal (0°, 90°) vs oblique (45°, 135°); "
                     f"{band_note(ok)}", fontsize=8)
    return fig



STUDY = Study(
    name=NAME,
    question="How much FI structure (cardinal against oblique) comes from the pixel grid and "
             "the architecture, before any prior?",
    replicate=replicate,
    sizes=SIZES,
    grid={"prior": ["uniform"]},
    describe=describe,
    postprocess=add_measures,
    figure=figure,
    summary=summarise,
    allow_nan=("val_loss",),
)
