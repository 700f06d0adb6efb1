"""Loss and concentration: does the loss set how sharply Fisher information follows the prior?

Efficient-coding theory predicts that a code minimising the expected Lp error under a fixed
budget ∫√J dθ has J ∝ p(θ)^{2/(p+1)} (Wang, Stocker & Lee 2016): the smaller the loss's power,
the more FI concentrates where stimuli are likely (p → 0 is the infomax limit J ∝ p²). Here
CNNs are trained from scratch on orientations drawn from a von Mises prior on 2θ centred at 90°
(several concentrations κ), each with one loss; after training we measure the propagated
(linearised) Fisher information of the decoded angle and of the last hidden layer on a grid of
angles, and the decoding error. The exponent α of J ∝ p^α is fitted per replicate and stored
beside the prediction.

Run: ``anglesim run loss_concentration [--quick]``.
"""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.distributions import VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import CNNConfig, build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    angle_axis,
    band_footnote,
    interval_bars,
    log_band,
    replicate_count,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.theory import budget_scale, fit_exponents, loss_exponent
from anglesim.training import Phase, evaluate_error, train

from ._recipes import SPEC, expects_aperture_ties

NAME = "loss_concentration"
PRIOR_LOC = math.pi / 2
N_BINS = 36

# label: (registered loss name, loss parameters, readout, Lp power the theory assigns or None)
LOSSES: dict[str, tuple[str, dict, str]] = {
    "L0.5": ("lp", {"p": 0.5}, "cossin"),
    "L1": ("lp", {"p": 1.0}, "cossin"),
    "L2": ("lp", {"p": 2.0}, "cossin"),
    "L4": ("lp", {"p": 4.0}, "cossin"),
    "cosine": ("cosine", {}, "cossin"),
    "vonmises_nll": ("vonmises_nll", {}, "cossin"),
    "cross_entropy": ("cross_entropy", {}, "bins"),
}

SIZES = {
    "full": dict(epochs=10, steps=50, batch=64, n_angles=64, replicates=4,
                 kappas=[1.0, 2.0, 4.0], losses=list(LOSSES)),
    "quick": dict(epochs=1, steps=4, batch=16, n_angles=8, replicates=2,
                  kappas=[2.0], losses=["L2", "cross_entropy"]),
}


def model_config(readout: str) -> CNNConfig:
    """The studies' standard CNN with the readout a loss needs."""
    return CNNConfig.standard(readout, n_bins=N_BINS)


def phase(loss_label: str, kappa: float, size: dict) -> Phase:
    """Training from scratch on VonMises(90°, κ) with the given loss."""
    loss, params, _ = LOSSES[loss_label]
    return Phase("train", VonMises(PRIOR_LOC, kappa), SPEC, loss=loss, loss_params=params,
                 lr=2e-3, epochs=size["epochs"], steps_per_epoch=size["steps"],
                 batch_size=size["batch"], eval_angles=size["n_angles"])


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network with one loss on one prior; measure FI and error on the angle grid."""
    sz, on = ctx.params, ctx.on_device
    label, kappa = str(ctx.condition["loss"]), float(ctx.condition["kappa"])
    model = build_model(model_config(LOSSES[label][2]), generator=ctx.seed_generator())
    plan = phase(label, kappa, sz)
    history = train(model, [plan], ctx.seed, **on)
    grid = ctx.angles
    fisher = propagated_fisher(model, SPEC, grid, layers=["fc", "output"], sigma=SPEC.noise_std,
                               **on)
    error = evaluate_error(model, SPEC, sz["n_angles"], repeats=16,
                           generator=ctx.generator("eval"))
    angle = grid.double().numpy()
    ds = xr.Dataset(
        {
            "fisher": fisher.assign_coords(angle=angle),
            "abs_error": error.assign_coords(angle=angle),
            "prior_density": ("angle", plan.prior.pdf(angle)),
        }
    )
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior density"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")




def add_fits(ds: xr.Dataset) -> xr.Dataset:
    """Add the fitted exponent α of J ∝ p^α per layer, loss, κ and replicate, and the prediction.

    ``alpha``/``alpha_r2``: least squares of log J on log p over the angle grid
    (:func:`anglesim.theory.fit_exponents`); ``alpha_predicted``: the efficient-coding exponent
    2/(p + 1) of each loss (:func:`anglesim.theory.loss_exponent`).
    """
    fits = fit_exponents(ds["fisher"], ds["prior_density"])
    predicted = [loss_exponent(LOSSES[str(label)][0], LOSSES[str(label)][1])
                 for label in ds["loss"].values]
    out = ds.assign(alpha=fits["alpha"], alpha_r2=fits["r2"])
    # Locality: FI at the uniform density level 1/π from each replicate's fit, relative to the
    # least concentrated prior, against the change a fixed global budget ∫√J would force.
    level = np.exp(fits["intercept"] + fits["alpha"] * math.log(1 / math.pi))
    out["fisher_at_uniform_level"] = level
    out["fisher_at_uniform_level"].attrs = {
        "units": "rad^-2", "long_name": "fitted J where p(θ) = 1/π (exp(c + α ln(1/π)))"}
    density = ds["prior_density"].isel(replicate=0, loss=0)
    scales = xr.concat([budget_scale(density, a) for a, _ in predicted],
                       dim=ds["loss"])
    out["budget_ratio_predicted"] = scales / scales.isel(kappa=0)
    out["budget_ratio_predicted"].attrs = {
        "long_name": "J at a fixed density level relative to the first kappa, predicted by a "
                     "fixed budget of total sqrt(J) with alpha = alpha_predicted"}
    out["alpha_predicted"] = xr.DataArray([a for a, _ in predicted], dims="loss",
                                          coords={"loss": ds["loss"]})
    out["alpha_predicted"].attrs = {
        "long_name": "efficient-coding exponent 2/(p+1) (Wang, Stocker & Lee 2016)",
        "approximation": json.dumps({str(k): why for k, (_, why) in
                                     zip(ds["loss"].values, predicted, strict=True)}),
    }
    return out


def summarise(ds: xr.Dataset) -> str:
    """Fitted exponents per loss and κ (mean over replicates) beside the decoding error."""

    ok = successful(ds)
    lines = ["exponent α of J_output ∝ p(θ)^α, mean ± s.e. over replicates (predicted) | "
             "mean abs. error:"]
    for label in ok["loss"].values:
        cells = []
        for kappa in ok["kappa"].values:
            alpha = ok["alpha"].sel(loss=label, kappa=kappa, layer="output")
            se = float(alpha.std("replicate", ddof=1) / np.sqrt(alpha.count("replicate")))
            a = f"{float(alpha.mean()):+.2f} ± {se:.2f}"
            e = float(np.degrees(ok["abs_error"].sel(loss=label, kappa=kappa).mean()))
            cells.append(f"κ={kappa:g}: α={a}, err={e:.2f}°")
        pred = float(ds["alpha_predicted"].sel(loss=label))
        lines.append(f"  {label:>13} ({pred:.2f}): " + "; ".join(cells))
    lines.append("locality: J at density 1/π relative to κ = "
                 f"{float(ok['kappa'][0]):g}, measured (fixed-budget prediction):")
    level = ok["fisher_at_uniform_level"].sel(layer="output")
    rel = level.mean("replicate") / level.isel(kappa=0).mean("replicate")
    for label in ok["loss"].values:
        cells = [f"κ={float(k):g}: {float(rel.sel(loss=label, kappa=k)):.2f} "
                 f"({float(ds['budget_ratio_predicted'].sel(loss=label, kappa=k)):.2f})"
                 for k in ok["kappa"].values]
        lines.append(f"  {label:>13}: " + "; ".join(cells))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": model_config("cossin").to_config(),
            "prior_loc": PRIOR_LOC, "losses": {k: list(v) for k, v in LOSSES.items()}}


# ---- figure ----------------------------------------------------------------------------------


def plot_loss_concentration(ds: xr.Dataset) -> plt.Figure:
    """Loss and concentration: how sharply FI follows the prior, per training loss.

    Panels: (a) FI of the decoded angle normalised to ∫√J dθ = 1 (geometric mean over
    replicates) for each loss at the largest κ, with the prior's own p² (infomax) and p^{2/3}
    (squared error) predictions; (b) log normalised FI against log prior density, pooled over
    κ, with the predicted slopes; (c) fitted exponent α per loss and κ (mean ± 95% CI over
    replicates) against the prediction 2/(p + 1); (d) mean absolute decoding error; (e)
    locality: FI at the density level 1/π (from each replicate's fit) relative to the least
    concentrated prior, against the change a fixed budget of ∫√J would force (bars); 0 means
    FI depends on the local density only.
    """
    from anglesim.theory import predicted_fisher, sqrt_total

    ds = successful(ds)
    predicted = ds["alpha_predicted"]
    theta_deg = np.degrees(ds["angle"].values)
    losses = [str(v) for v in ds["loss"].values]
    kappas = [float(k) for k in ds["kappa"].values]
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(losses)))
    fi = ds["fisher"].sel(layer="output")
    norm = fi / sqrt_total(fi) ** 2
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 5, figsize=(16, 3.2), constrained_layout=True)
        ax = axes[0]
        kappa = kappas[-1]
        for colour, label in zip(colours, losses, strict=True):
            log_band(ax, theta_deg, norm.sel(loss=label, kappa=kappa), colour, label)
        density = ds["prior_density"].sel(kappa=kappa).isel(loss=0, replicate=0)
        unit = xr.ones_like(density)
        for alpha, style in [(2.0, "--"), (2 / 3, ":")]:
            pred = predicted_fisher(density, alpha, normalise_to=unit)
            ax.plot(theta_deg, pred / sqrt_total(unit) ** 2, color="k", ls=style, lw=1,
                    label=f"∝ p^{alpha:.2g}")
        ax.set_yscale("log")
        ax.set_ylabel("FI of θ̂ / (∫√J dθ)²")
        angle_axis(ax)
        ax.legend(frameon=False, fontsize=6, ncol=2)
        ax.set_title(f"a  normalised FI (κ = {kappa:g})", loc="left")

        ax = axes[1]
        for colour, label in zip(colours, losses, strict=True):
            x = np.log10(ds["prior_density"].sel(loss=label)).mean("replicate")
            y = np.log10(norm.sel(loss=label)).mean("replicate")
            ax.plot(x.values.ravel(), y.values.ravel(), ".", ms=2, color=colour, label=label)
        x_all = np.log10(ds["prior_density"]).mean("replicate")
        y_all = np.log10(norm).mean("replicate")
        xr_ = np.array([float(x_all.min()), float(x_all.max())])
        x0, y0 = float(x_all.mean()), float(y_all.mean())
        for alpha, style in [(2.0, "--"), (2 / 3, ":")]:
            ax.plot(xr_, y0 + alpha * (xr_ - x0), color="k", ls=style, lw=1,
                    label=f"slope {alpha:.2g}")
        ax.legend(frameon=False, fontsize=6, ncol=2, markerscale=3)
        ax.set_xlabel("log₁₀ prior density p(θ)")
        ax.set_ylabel("log₁₀ normalised FI")
        ax.set_title("b  FI against density", loc="left")

        ax = axes[2]
        x = np.arange(len(losses))
        width = 0.6 / max(len(kappas), 1)
        for k, kappa in enumerate(kappas):
            interval_bars(ax, x + (k - (len(kappas) - 1) / 2) * width,
                          ds["alpha"].sel(kappa=kappa, layer="output"),
                          PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)], f"κ = {kappa:g}", ms=3)
        ax.scatter(x, predicted, marker="_", s=250, color="k", label="prediction 2/(p+1)",
                   zorder=3)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, losses, rotation=35, ha="right")
        ax.set_ylabel("fitted α in J ∝ p^α")
        ax.legend(frameon=False, fontsize=7)
        ax.set_title("c  exponent per loss", loc="left")

        ax = axes[3]
        for k, kappa in enumerate(kappas):
            interval_bars(ax, x + (k - (len(kappas) - 1) / 2) * width,
                          np.degrees(ds["abs_error"].sel(kappa=kappa)).mean("angle"),
                          PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)], f"κ = {kappa:g}",
                          bounds=(0, 90), ms=3)
        ax.set_xticks(x, losses, rotation=35, ha="right")
        ax.set_ylabel("mean |θ̂ − θ| over θ (deg)")
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False, fontsize=7)
        ax.set_title("d  error on a uniform grid", loc="left")

        ax = axes[4]
        if "fisher_at_uniform_level" in ds:
            level = ds["fisher_at_uniform_level"].sel(layer="output")
            rel = np.log2(level / level.isel(kappa=0).mean("replicate"))
            budget = np.log2(ds["budget_ratio_predicted"])
            for k, kap in enumerate(kappas[1:], start=1):
                off = (k - (len(kappas) - 1) / 2) * width
                interval_bars(ax, x + off, rel.sel(kappa=kap),
                              PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)],
                              f"κ = {kap:g}, measured", ms=3)
                ax.scatter(x + off, budget.sel(kappa=kap), marker="_", s=120,
                           color=PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)], zorder=3)
            ax.scatter([], [], marker="_", color="k", label="fixed-budget prediction")
            ax.axhline(0, color="0.6", lw=0.8, label="local code")
            ax.set_xticks(x, losses, rotation=35, ha="right")
            ax.set_ylabel(f"log₂ J at p = 1/π, vs κ = {kappas[0]:g}")
            ax.legend(frameon=False, fontsize=6)
        ax.set_title("e  locality", loc="left")
        fig.suptitle(f"loss and concentration: {replicate_count(ds)}", fontsize=9)
        band_footnote(fig)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question="How sharply does FI follow the training prior, per loss (J ∝ p^α with α = 2/(p+1))?",
    replicate=replicate,
    sizes=SIZES,
    grid=lambda params: {"loss": params["losses"], "kappa": params["kappas"]},
    describe=describe,
    postprocess=add_fits,
    figure=plot_loss_concentration,
    summary=summarise,
    pair_axes=(),  # every (loss, κ) trains its own networks from its own seeds
    # NaN by design: stream phases have no validation loss
    allow_nan=("val_loss",),
)
