"""Figure functions: a saved Dataset in, a matplotlib Figure out, one shared style.

Every figure function is registered in `FIGURES` under the study name that produces its
Dataset, so `anglesim figures` can redraw every figure from `results/*.nc` without training.
Bands are 95% confidence intervals of the mean over replicates (Student t); angles are shown
in degrees, orientation wrapping at 180°.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (CI, clusters)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .angles import near_far_masks  # noqa: E402, F401  (used by studies)
from .stats import mean_ci  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
}
PHASE_COLOURS = ("#4d4d4d", "#d6604d", "#4393c3", "#5aae61", "#9970ab")

FIGURES: dict[str, Callable[[xr.Dataset], plt.Figure]] = {}


def register_figure(study: str):
    """Register a figure function for the Datasets of ``study``."""

    def deco(fn):
        FIGURES[study] = fn
        return fn

    return deco


def _band(ax, x_deg, mean, half, colour, label, log=False, alpha=0.25):
    """Mean line with its CI band; with ``log`` the inputs are log10 values (geometric mean).

    ``alpha`` is the band's opacity: lower it where many bands overlap.
    """
    lo, hi = mean - half, mean + half
    if log:
        mean, lo, hi = 10.0**mean, 10.0**lo, 10.0**hi
    ax.plot(x_deg, mean, color=colour, label=label)
    ax.fill_between(x_deg, lo, hi, color=colour, alpha=alpha, linewidth=0)


def _angle_axis(ax):
    ax.set_xlim(0, 180)
    ax.set_xticks([0, 45, 90, 135, 180])
    ax.set_xlabel("orientation θ (deg)")


def _fi_vs_angle_axis(ax):
    """Log FI of the decoded angle against orientation: the axes of every FI-curve panel."""
    ax.set_yscale("log")
    ax.set_ylabel("FI of θ̂ (rad⁻²)")
    _angle_axis(ax)


def successful(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with failed replicates' values set to NaN.

    Only floating-point variables that carry every dim of ``failed`` (condition axes and
    ``replicate``) are masked; per-condition or per-loss variables and the bookkeeping
    variables keep their shape and values.
    """
    if "failed" not in ds:
        return ds
    keep = ~ds["failed"].astype(bool)
    masked = {
        name: var.where(keep)
        for name, var in ds.data_vars.items()
        if set(keep.dims) <= set(var.dims) and np.issubdtype(var.dtype, np.floating)
    }
    return ds.assign(masked)


_successful = successful


@register_figure("quickstart")
def plot_quickstart(ds: xr.Dataset) -> plt.Figure:
    """Quickstart: prior, Fisher information and error before and after fine-tuning.

    Panels: (a) the training priors of each phase; (b) Fisher information of the decoded
    angle (propagated pixel noise) against θ, geometric mean and CI over replicates on a log
    scale; (c) mean absolute decoding error
    against θ; (d) FI after fine-tuning over FI before, per layer, near the fine-tuning prior's
    peak against far from it.
    """
    ds = _successful(ds)
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
        _angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("a  training priors", loc="left")

        ax = axes[1]
        for i, ph in enumerate(phases):
            # FI is positive and spans decades: average and bound it on a log scale.
            mean, half = mean_ci(np.log10(ds["fisher"].sel(phase=ph, layer="output")))
            _band(ax, theta_deg, mean, half, PHASE_COLOURS[i], f"after {ph}", log=True)
        ax.set_yscale("log")
        ax.set_ylabel("Fisher information of θ̂ (rad⁻²)")
        _angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("b  FI at the decoded output", loc="left")

        ax = axes[2]
        for i, ph in enumerate(phases):
            mean, half = mean_ci(np.degrees(ds["abs_error"].sel(phase=ph)))
            _band(ax, theta_deg, mean, half, PHASE_COLOURS[i], f"after {ph}")
        ax.axhline(45, color="0.6", lw=0.8, ls=":", label="chance")
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        _angle_axis(ax)
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
            mean, half = mean_ci(per_rep)
            ax.errorbar(x + (offset - 0.5) * 0.25, mean, yerr=half, fmt="o", color=colour,
                        label=label, capsize=2, ms=4)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, layers, rotation=30)
        ax.set_ylabel("log₂ FI after / before")
        ax.legend(frameon=False)
        ax.set_title("d  change per layer", loc="left")
        n_ok = int(ds["replicate"].size - (ds["failed"].sum() if "failed" in ds else 0))
        fig.suptitle(f"quickstart: {n_ok} replicates, mean ± 95% CI", fontsize=9)
    return fig


def _log_band(ax, theta_deg, fi, colour, label, alpha=0.25):
    """Geometric mean of a positive curve over replicates with its CI (log-space t interval)."""
    mean, half = mean_ci(np.log10(fi.where(fi > 0)))
    _band(ax, theta_deg, mean, half, colour, label, log=True, alpha=alpha)


def _mark_angle(ax, theta: float, text: str, colour: str = "0.5") -> None:
    deg = float(np.degrees(theta))
    ax.axvline(deg, color=colour, lw=0.8, ls="--")
    ax.annotate(text, (deg, 1.0), xycoords=("data", "axes fraction"), ha="center",
                va="bottom", fontsize=7, color=colour)


def _replicate_count(ds: xr.Dataset) -> str:
    n = int(ds["replicate"].size)
    return f"{n} replicates per condition, mean ± 95% CI"


@register_figure("prior_specialisation")
def plot_prior_specialisation(ds: xr.Dataset) -> plt.Figure:
    """Prior specialisation: FI and error after training on prior A, then what B left of A.

    Panels: (a) FI of the decoded angle after training on A (von Mises at 45°), per κ;
    (b) decoding error after training on A, per κ; (c) FI after fine-tuning on B (135°)
    against a control trained on B from scratch, largest κ; (d) per-κ measures with 95% CIs
    over replicates: specialisation log₂(FI near A / FI far from A), what A left behind
    log₂(FI near A, fine-tuned / control), and the replicate spread of log₂ FI.
    """
    spread = ds["measure_spread"]
    ds = _successful(ds)
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
            _log_band(ax, theta_deg, fi.sel(kappa=kappa, stage="first"),
                      PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)], f"κ = {kappa:g}")
        _mark_angle(ax, loc_a, "A")
        _fi_vs_angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("a  after training on A", loc="left", pad=12)

        ax = axes[1]
        for i, kappa in enumerate(kappas):
            mean, half = mean_ci(np.degrees(ds["abs_error"].sel(kappa=kappa, stage="first")))
            _band(ax, theta_deg, mean, half, PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)],
                  f"κ = {kappa:g}")
        ax.axhline(45, color="0.6", lw=0.8, ls=":", label="chance")
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        _mark_angle(ax, loc_a, "A")
        _angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title("b  error after training on A", loc="left", pad=12)

        ax = axes[2]
        kappa = kappas[-1]
        for i, (stage, label) in enumerate([("second", "A, then fine-tuned on B"),
                                            ("control", "B only (control)")]):
            _log_band(ax, theta_deg, fi.sel(kappa=kappa, stage=stage), PHASE_COLOURS[i],
                      label)
        _mark_angle(ax, loc_a, "A")
        _mark_angle(ax, loc_b, "B")
        _fi_vs_angle_axis(ax)
        ax.legend(frameon=False)
        ax.set_title(f"c  after B (κ = {kappa:g})", loc="left", pad=12)

        ax = axes[3]
        x = np.arange(len(kappas))
        for offset, (var, label, colour) in enumerate(
            [("measure_specialisation", "specialisation to A", PHASE_COLOURS[1]),
             ("measure_left_behind", "left behind by A", PHASE_COLOURS[2])]
        ):
            mean, half = mean_ci(ds[var])
            ax.errorbar(x + (offset - 0.5) * 0.25, mean, yerr=half, fmt="o", color=colour,
                        label=label, capsize=2, ms=4)
        ax.bar(x, spread.values, width=0.6, color="0.85", label="replicate spread",
               zorder=0)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, [f"κ = {k:g}" for k in kappas])
        ax.set_ylabel("log₂ FI ratio")
        ax.legend(frameon=False)
        ax.set_title("d  measures", loc="left", pad=12)
        fig.suptitle(f"prior specialisation: {_replicate_count(ds)}", fontsize=9)
    return fig


@register_figure("loss_concentration")
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
    from .theory import predicted_fisher, sqrt_total

    ds = _successful(ds)
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
            _log_band(ax, theta_deg, norm.sel(loss=label, kappa=kappa), colour, label)
        density = ds["prior_density"].sel(kappa=kappa).isel(loss=0, replicate=0)
        unit = xr.ones_like(density)
        for alpha, style in [(2.0, "--"), (2 / 3, ":")]:
            pred = predicted_fisher(density, alpha, normalise_to=unit)
            ax.plot(theta_deg, pred / sqrt_total(unit) ** 2, color="k", ls=style, lw=1,
                    label=f"∝ p^{alpha:.2g}")
        ax.set_yscale("log")
        ax.set_ylabel("FI of θ̂ / (∫√J dθ)²")
        _angle_axis(ax)
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
            mean, half = mean_ci(ds["alpha"].sel(kappa=kappa, layer="output"))
            ax.errorbar(x + (k - (len(kappas) - 1) / 2) * width, mean, yerr=half, fmt="o",
                        ms=3, capsize=2, color=PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)],
                        label=f"κ = {kappa:g}")
        ax.scatter(x, predicted, marker="_", s=250, color="k", label="prediction 2/(p+1)",
                   zorder=3)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, losses, rotation=35, ha="right")
        ax.set_ylabel("fitted α in J ∝ p^α")
        ax.legend(frameon=False, fontsize=7)
        ax.set_title("c  exponent per loss", loc="left")

        ax = axes[3]
        for k, kappa in enumerate(kappas):
            mean, half = mean_ci(np.degrees(ds["abs_error"].sel(kappa=kappa)).mean("angle"))
            ax.errorbar(x + (k - (len(kappas) - 1) / 2) * width, mean, yerr=half, fmt="o",
                        ms=3, capsize=2, color=PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)],
                        label=f"κ = {kappa:g}")
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
                mean, half = mean_ci(rel.sel(kappa=kap))
                off = (k - (len(kappas) - 1) / 2) * width
                ax.errorbar(x + off, mean, yerr=half, fmt="o", ms=3, capsize=2,
                            color=PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)],
                            label=f"κ = {kap:g}, measured")
                ax.scatter(x + off, budget.sel(kappa=kap), marker="_", s=120,
                           color=PHASE_COLOURS[(k + 1) % len(PHASE_COLOURS)], zorder=3)
            ax.scatter([], [], marker="_", color="k", label="fixed-budget prediction")
            ax.axhline(0, color="0.6", lw=0.8, label="local code")
            ax.set_xticks(x, losses, rotation=35, ha="right")
            ax.set_ylabel(f"log₂ J at p = 1/π, vs κ = {kappas[0]:g}")
            ax.legend(frameon=False, fontsize=6)
        ax.set_title("e  locality", loc="left")
        fig.suptitle(f"loss and concentration: {_replicate_count(ds)}", fontsize=9)
    return fig


@register_figure("pretrain_imprint")
def plot_pretrain_imprint(ds: xr.Dataset) -> plt.Figure:
    """Pretraining imprint: do children of one pretrained parent share their FI wiggles?

    Panels (a, b): residual log FI of the decoded angle (each child's curve minus the mean over
    all children of all parents) for the children of up to three parents, optimiser state reset
    (a) and kept (b) at the phase boundary; (c) mean correlation of residuals between children of
    the same parent and of different parents, mean ± 95% CI over parents.
    """
    ds = _successful(ds).isel(kappa=0)
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
            _angle_axis(ax)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(f"{letter}  children, optimiser state {state}", loc="left")
        ax = axes[2]
        x = np.arange(len(states))
        for offset, (var, label, colour) in enumerate(
            [("imprint_within", "same parent", PHASE_COLOURS[1]),
             ("imprint_between", "different parents", PHASE_COLOURS[2])]
        ):
            mean, half = mean_ci(ds[var])
            ax.errorbar(x + (offset - 0.5) * 0.2, mean.sel(state=states),
                        yerr=half.sel(state=states), fmt="o", color=colour, label=label,
                        capsize=2, ms=4)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(x, [f"optimiser {s}" for s in states])
        ax.set_xlim(-0.6, len(states) - 0.4)
        ax.set_ylabel("correlation of FI residuals")
        ax.legend(frameon=False)
        ax.set_title("c  fingerprint", loc="left")
        fig.suptitle(f"pretraining imprint: {int(ds['replicate'].size)} parents × "
                     f"{int(ds['child'].size)} children, mean ± 95% CI", fontsize=9)
    return fig


@register_figure("model_choices")
def plot_model_choices(ds: xr.Dataset) -> plt.Figure:
    """Model choices: roughness and peaks of FI curves by nonlinearity, readout and data.

    Panels: (a) FI of the decoded angle for each nonlinearity (first readout, stream data;
    geometric mean over replicates); (b) roughness, the fraction of log-FI variance above the
    cut-off harmonic, per nonlinearity and readout (stream data); (c) number of FI peaks;
    (d) ln FI at the training angles minus at fresh angles, finite set against stream.
    """
    ds = _successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    nls = [str(v) for v in ds["nonlinearity"].values]
    readouts = [str(v) for v in ds["readout"].values]
    datas = [str(v) for v in ds["data"].values]
    stream = ds.sel(data="stream") if "stream" in datas else ds.isel(data=0)
    x = np.arange(len(nls))

    def _dots(ax, var, groups, select, width=0.6):
        step = width / max(len(groups), 1)
        for g, group in enumerate(groups):
            mean, half = mean_ci(select(group)[var])
            ax.errorbar(x + (g - (len(groups) - 1) / 2) * step, mean.sel(nonlinearity=nls),
                        yerr=half.sel(nonlinearity=nls), fmt="o", ms=3, capsize=2,
                        color=PHASE_COLOURS[(g + 1) % len(PHASE_COLOURS)], label=group)
        ax.set_xticks(x, nls, rotation=30)

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), constrained_layout=True)
        ax = axes[0]
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(nls)))
        for colour, nl in zip(colours, nls, strict=True):
            fi = stream["fisher"].sel(layer="output", nonlinearity=nl, readout=readouts[0])
            _log_band(ax, theta_deg, fi, colour, nl)
        _fi_vs_angle_axis(ax)
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"a  FI, {readouts[0]} readout", loc="left")

        ax = axes[1]
        _dots(ax, "roughness", readouts, lambda r: stream.sel(readout=r))
        ax.set_ylabel("roughness (power above cut-off)")
        ax.set_ylim(0, 1)
        ax.legend(frameon=False, fontsize=7, title="readout", title_fontsize=7)
        ax.set_title("b  roughness", loc="left")

        ax = axes[2]
        _dots(ax, "n_peaks", readouts, lambda r: stream.sel(readout=r))
        ax.set_ylabel("peaks of FI")
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False, fontsize=7, title="readout", title_fontsize=7)
        ax.set_title("c  peaks", loc="left")

        ax = axes[3]
        _dots(ax, "train_fresh_log_ratio", datas, lambda d: _pool_readouts(ds.sel(data=d)),
              width=0.4)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylabel("ln FI(train angles) − ln FI(fresh)")
        ax.legend(frameon=False, fontsize=7, title="training data", title_fontsize=7)
        ax.set_title("d  training angles vs fresh", loc="left")
        fig.suptitle(f"model choices: {_replicate_count(ds)}", fontsize=9)
    return fig


def _pool_readouts(ds: xr.Dataset) -> xr.Dataset:
    """Treat (readout, replicate) pairs as replicates, for measures pooled over readouts."""
    pooled = ds.stack(pooled=("readout", "replicate")).reset_index("pooled", drop=True)
    return pooled.rename(pooled="replicate")


@register_figure("adapt_loop")
def plot_adapt_loop(ds: xr.Dataset) -> plt.Figure:
    """Adaptive loop: the prior and FI over rounds of p ← p/√J, and convergence per mode.

    Panels: (a) training prior of each round and (b) FI of the decoded angle after it
    (geometric mean over replicates), first mode; (c) coefficient of variation of FI over
    angles and (d) KL divergence between successive priors, per round and mode, mean ± 95% CI
    over replicates.
    """
    ds = _successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    modes = [str(m) for m in ds["mode"].values]
    rounds = ds["round"].values
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(rounds)))
    first = ds.sel(mode=modes[0])
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), constrained_layout=True)
        ax = axes[0]
        for colour, r in zip(colours, rounds, strict=True):
            mean, half = mean_ci(first["prior_density"].sel(round=r))
            _band(ax, theta_deg, mean, half, colour, f"round {int(r)}")
        ax.set_ylabel("training prior p(θ) (1/rad)")
        ax.set_ylim(bottom=0)
        _angle_axis(ax)
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"a  prior ({modes[0]})", loc="left")

        ax = axes[1]
        for colour, r in zip(colours, rounds, strict=True):
            _log_band(ax, theta_deg, first["fisher"].sel(round=r), colour, f"round {int(r)}")
        _fi_vs_angle_axis(ax)
        ax.set_title(f"b  FI ({modes[0]})", loc="left")

        for ax, var, label, letter in [
            (axes[2], "fisher_cv", "CV of FI over θ", "c  flatness of FI"),
            (axes[3], "prior_kl", "KL(p_r ‖ p_{r−1}) (nats)", "d  step between priors"),
        ]:
            for m, mode in enumerate(modes):
                mean, half = mean_ci(ds[var].sel(mode=mode))
                ax.errorbar(rounds + (m - 1) * 0.08, mean, yerr=half, fmt="o-", ms=3,
                            capsize=2, color=PHASE_COLOURS[(m + 1) % len(PHASE_COLOURS)],
                            label=mode)
            ax.set_xticks(rounds)
            ax.set_xlabel("round")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(letter, loc="left")
        fig.suptitle(f"adaptive loop: {_replicate_count(ds)}", fontsize=9)
    return fig


@register_figure("reference_replication")
def plot_reference_replication(ds: xr.Dataset) -> plt.Figure:
    """Reference replication: d′ and FI around the orientation circle, and the prior's effect.

    Panels: (a, b) polar plots against 2θ (so the half-circle of orientations closes) of the
    output's linear FI and of d′ for Δθ = 2°, uniform training against the most concentrated
    prior, largest D (mean over replicates); (c) log₂ FI of concentrated over uniform networks
    near the prior's peak (±22.5°) and far from it (>45°) against D, averaged over the priors'
    centres, per κ, ± 1.96 s.e.; (d) mean absolute decoding error against D per prior.
    """
    ds = _successful(ds)
    two_theta = 2 * ds["angle"].values
    two_theta = np.append(two_theta, two_theta[:1] + 2 * np.pi)
    d_max = ds["dataset_size"].values.max()
    priors = [str(p) for p in ds["prior"].values]
    conc = [p for p in priors if p != "uniform"]
    show = ["uniform"] + ([conc[-1]] if conc else [])
    sizes = ds["dataset_size"].values
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(12, 3.3), constrained_layout=True)
        for k, (var, label) in enumerate([("fisher", "linear FI (rad⁻²)"),
                                          ("d_prime", "d′ (Δθ = 2°)")]):
            ax = fig.add_subplot(1, 4, k + 1, projection="polar")
            for i, prior in enumerate(show):
                values = ds[var].sel(prior=prior, dataset_size=d_max).mean("replicate")
                values = np.clip(np.append(values.values, values.values[:1]), 0, None)
                ax.plot(two_theta, values, color=PHASE_COLOURS[i], label=prior)
            ax.set_title(f"{'ab'[k]}  {label}, D = {int(d_max)}", loc="left", fontsize=8)
            ax.set_xticks(np.radians([0, 90, 180, 270]), ["0°", "45°", "90°", "135°"])
            ax.tick_params(labelsize=6)
            if k == 0:
                ax.legend(frameon=False, fontsize=6, loc="lower left",
                          bbox_to_anchor=(-0.25, -0.2))

        ax = fig.add_subplot(1, 4, 3)
        kappas = sorted({p.split("_")[0] for p in conc})
        for i, kap in enumerate(kappas):
            members = [p for p in conc if p.startswith(kap + "_")]
            for region, marker, ls in (("near", "o", "-"), ("far", "s", "--")):
                gain = ds[f"gain_{region}"].sel(concentrated=members)
                se = ds[f"gain_{region}_se"].sel(concentrated=members)
                mean = gain.mean("concentrated")
                half = 1.96 * np.sqrt((se**2).sum("concentrated")) / len(members)
                ax.errorbar(sizes, mean.sel(dataset_size=sizes), yerr=half.sel(
                    dataset_size=sizes), fmt=marker + ls, ms=3, capsize=2,
                    color=PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)],
                    label=f"κ = {kap[2:]}, {region} peak")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlim(sizes.min() / 1.4, sizes.max() * 1.4)  # also when every gain is NaN
        ax.set_xlabel("dataset size D")
        ax.set_ylabel("log₂ FI, concentrated / uniform")
        ax.legend(frameon=False, fontsize=6)
        ax.set_title("c  effect of the prior", loc="left")

        ax = fig.add_subplot(1, 4, 4)
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(priors)))
        for colour, prior in zip(colours, priors, strict=True):
            err = np.degrees(ds["abs_error"].sel(prior=prior)).mean("angle")
            mean, half = mean_ci(err)
            ax.errorbar(sizes, mean.sel(dataset_size=sizes), yerr=half.sel(dataset_size=sizes),
                        fmt="o-", ms=3, capsize=2, color=colour, label=prior)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dataset size D")
        ax.set_ylabel("mean |θ̂ − θ| over θ (deg)")
        ax.set_ylim(bottom=0)
        # beside the axes: the concentrated priors' points fill its upper left corner
        ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  title="prior\n(vmκ_centre°)", title_fontsize=6)
        ax.set_title("d  error on a uniform grid", loc="left")
        fig.suptitle(f"reference replication: {_replicate_count(ds)}", fontsize=9)
    return fig


@register_figure("finetune_data_size")
def plot_finetune_data_size(ds: xr.Dataset) -> plt.Figure:
    """Fine-tuning data size: error and FI near the new and old peak against D_ft.

    Panels, each against the number D_ft of fine-tuning images (log axis), whole network
    against first layer frozen, mean ± 95% CI over replicates (parents): (a) mean absolute
    error within 22.5° of the new prior's peak (log axis); (b) linear FI of the output near the
    new peak (log axis); (c) near the old peak; the parents' mean in each as a dotted line.
    """
    ds = _successful(ds).isel(shift=0)
    sizes = ds["finetune_size"].values
    modes = [str(m) for m in ds["frozen"].values]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), constrained_layout=True)
        panels = [
            (axes[0], np.degrees(ds["error_near_new"]), "mean |θ̂ − θ| near new peak (deg)",
             "a  error", np.degrees(ds["parent_error_near_new"]), True),
            (axes[1], ds["fisher_near_new"], "linear FI near new peak (rad⁻²)",
             "b  FI near the new peak", ds["parent_fisher_near_new"], True),
            (axes[2], ds["fisher_near_old"], "linear FI near old peak (rad⁻²)",
             "c  FI near the old peak", ds["parent_fisher_near_old"], False),
        ]
        # a and b span two orders of magnitude (the parent against the fine-tuned networks)
        for ax, var, ylabel, title, parent, log in panels:
            if log:
                ax.set_yscale("log")
            for m, mode in enumerate(modes):
                mean, half = mean_ci(var.sel(frozen=mode))
                label = "whole network" if mode == "none" else f"{mode} frozen"
                ax.errorbar(sizes, mean.sel(finetune_size=sizes),
                            yerr=half.sel(finetune_size=sizes), fmt="o-", ms=3, capsize=2,
                            color=PHASE_COLOURS[(m + 1) % len(PHASE_COLOURS)], label=label)
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
        fig.suptitle(f"fine-tuning data size: {_replicate_count(ds)}", fontsize=9)
    return fig


def save_figure(fig: plt.Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")):
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; return the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        # no creation date in PDFs, so that redrawing an unchanged Dataset leaves the file as it was
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def draw_figure(ds: xr.Dataset) -> plt.Figure:
    """Draw the registered figure for a Dataset, chosen by its ``study`` attribute."""
    study = ds.attrs.get("study")
    if study not in FIGURES:
        raise ValueError(
            f"no figure is registered for study {study!r}; known studies: {sorted(FIGURES)}"
        )
    return FIGURES[study](ds)


def plot_activation_projection(
    proj: xr.DataArray, ax: plt.Axes | None = None, title: str | None = None
) -> plt.Figure:
    """Scatter a block's 2-D activation projection (from
    :func:`anglesim.representation.activation_projection`) coloured by θ in degrees on a
    cyclic colour map (0° and 180° share a colour, as orientations do). Returns the Figure."""
    if not isinstance(proj, xr.DataArray) or proj.dims != ("stimulus", "component") or (
        proj.sizes["component"] < 2 or "theta" not in proj.coords
    ):
        raise ValueError(
            "proj must be a DataArray over (stimulus, component >= 2) with a theta coordinate, "
            f"got {getattr(proj, 'dims', type(proj).__name__)}"
        )
    with plt.rc_context(STYLE):
        if ax is None:
            fig, ax = plt.subplots(figsize=(3.4, 3.0))
        else:
            fig = ax.figure
        theta_deg = np.degrees(proj["theta"].values) % 180.0
        points = ax.scatter(proj.values[:, 0], proj.values[:, 1], c=theta_deg, cmap="twilight",
                            vmin=0.0, vmax=180.0, s=10, linewidths=0)
        ratio = proj.attrs.get("explained_variance_ratio", [float("nan")] * 2)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% var.)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% var.)")
        ax.set_title(title or f"{proj.attrs.get('layer', '')} activations", loc="left")
        fig.colorbar(points, ax=ax, label="θ (deg)", ticks=[0, 45, 90, 135, 180])
    return fig


_MT_JOINT_BLUES = ("#92c5de", "#4393c3", "#2166ac", "#053061")


def _mt_regime_style(regimes: list[str]) -> dict[str, tuple[str, str]]:
    """Colour and label of each multitask regime: angle only grey, sequential red, joint
    regimes in blues darkening with the weight of the other task."""
    joint = [r for r in regimes if r.startswith("joint_")]
    out = {}
    for r in regimes:
        if r == "angle_only":
            out[r] = (PHASE_COLOURS[0], "angle only")
        elif r == "sequential":
            out[r] = (PHASE_COLOURS[1], "sequential")
        else:
            i = joint.index(r) + max(0, len(_MT_JOINT_BLUES) - 1 - len(joint))
            out[r] = (_MT_JOINT_BLUES[min(i, len(_MT_JOINT_BLUES) - 1)],
                      f"joint, w = {r.removeprefix('joint_')}")
    return out


@register_figure("multitask")
def plot_multitask(ds: xr.Dataset) -> plt.Figure:
    """Multitask: angle estimation alone, after another task, and jointly with it.

    One row per other task (contrast or spatial-frequency estimation). Panels: (a) FI of the
    decoded angle against θ per regime (geometric mean and 95% CI over replicates), at the
    fixed standard stimulus; (b) per block, mean log₂ FI about θ minus the angle-only
    regime's, with Welch 95% CIs (``fisher_log2_ratio``), and the sequential regime's trunk
    after its first, other-task-only phase; (c) mean absolute angle error per regime (mean ±
    95% CI, replicates as dots); (d) the other property's RMSE relative to always predicting
    its mean: its head after training, the head after the first sequential phase, and a
    linear probe of the last trunk block.
    """
    ds = _successful(ds)
    others = [str(o) for o in ds["other"].values]
    regimes = [str(r) for r in ds["regime"].values]
    style = _mt_regime_style(regimes)
    ticks = [style[r][1].replace(", ", "\n").replace("angle only", "angle\nonly")
             for r in regimes]
    theta_deg = np.degrees(ds["angle"].values)
    layers = [str(v) for v in ds["layer"].values if str(v) != "input"]
    x_reg = np.arange(len(regimes))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(others), 4, figsize=(13, 3.2 * len(others)),
                                 constrained_layout=True, squeeze=False)
        for row, other in zip(axes, others, strict=True):
            d = ds.sel(other=other)
            span = ""
            if "other_low" in d.coords:
                span = f" ({float(d['other_low']):g}–{float(d['other_high']):g})"
            ax = row[0]
            for r in regimes:
                _log_band(ax, theta_deg, d["fisher"].sel(regime=r, layer="output"),
                          style[r][0], style[r][1], alpha=0.12)
            _fi_vs_angle_axis(ax)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(f"a  other task: {other}{span}; FI at the output", loc="left")

            ax = row[1]
            x = np.arange(len(layers))
            shown = [r for r in regimes if r != "angle_only"]
            width = 0.8 / (len(shown) + 1)
            for k, r in enumerate(shown):
                mean = d["fisher_log2_ratio"].sel(regime=r, layer=layers)
                half = d["fisher_log2_ratio_ci"].sel(regime=r, layer=layers)
                ax.errorbar(x + (k - len(shown) / 2) * width, mean, yerr=half, fmt="o",
                            ms=4, capsize=2, color=style[r][0], label=style[r][1])
            # after the first sequential phase the angle head is untrained: trunk blocks only
            trunk = [layer for layer in layers if layer not in ("head", "output")]
            ax.errorbar(np.arange(len(trunk)) + (len(shown) / 2) * width,
                        d["other_only_log2_ratio"].sel(layer=trunk),
                        yerr=d["other_only_log2_ratio_ci"].sel(layer=trunk), fmt="^", ms=4,
                        capsize=2, color=style["sequential"][0], mfc="white",
                        label=f"{other} only (sequential, 1st phase)")
            ax.axhline(0, color=style["angle_only"][0], lw=0.8, label="angle only")
            ax.set_xticks(x, layers)
            ax.set_xlabel("block")
            ax.set_ylabel("log₂ FI about θ / angle only")
            ax.legend(frameon=False, fontsize=6.5)
            ax.set_title("b  FI per block vs angle only", loc="left")

            ax = row[2]
            for k, r in enumerate(regimes):
                err = np.degrees(d["angle_error"].sel(regime=r))
                mean, half = mean_ci(err)
                ax.errorbar(k, mean, yerr=half, fmt="o", ms=5, capsize=3, color=style[r][0])
                ax.plot(np.full(err.sizes["replicate"], k + 0.18), err, ".", ms=3,
                        color=style[r][0], alpha=0.6)
            ax.set_xticks(x_reg, ticks, fontsize=7)
            ax.set_ylabel("mean |θ̂ − θ| (deg)")
            ax.set_ylim(bottom=0)
            ax.set_title("c  angle error", loc="left")

            ax = row[3]
            for offset, (var, marker, label) in enumerate([
                ("other_error_rel", "o", f"{other} head"),
                ("probe_error_rel", "s", "linear probe of fc"),
            ]):
                mean, half = mean_ci(d[var])
                ok = np.isfinite(mean.values)
                ax.errorbar(x_reg[ok] + (offset - 0.5) * 0.25, mean.values[ok],
                            yerr=half.values[ok], fmt=marker, ms=4, capsize=2,
                            color="0.2" if offset == 0 else "0.55", label=label)
            if "other_error_other_only_rel" in d:
                mean, half = mean_ci(d["other_error_other_only_rel"])
                k = regimes.index("sequential")
                ax.errorbar(k + 0.38, float(mean), yerr=float(half), fmt="^", ms=4,
                            capsize=2, color=style["sequential"][0], mfc="white",
                            label="head after 1st phase")
            ax.axhline(1, color="0.6", lw=0.8, ls=":", label="chance (predict the mean)")
            ax.set_xticks(x_reg, ticks, fontsize=7)
            ax.set_ylabel(f"{other} RMSE / chance RMSE")
            ax.set_ylim(bottom=0)
            ax.legend(frameon=False, fontsize=6.5)
            ax.set_title(f"d  {other} error", loc="left")
        fig.suptitle(f"multitask: {_replicate_count(ds)}; FI at contrast 1, 4 cycles/image",
                     fontsize=9)
    return fig


_FS_SHIFT_LABELS = {"input": "input shift (spatial frequency)",
                    "prior": "prior shift (uniform → von Mises at 90°)",
                    "output": "output shift (target θ + 45°)"}
_FS_SHIFT_COLOURS = {"input": "#1b9e77", "prior": "#d95f02", "output": "#7570b3"}


def _fs_plain_log(ax) -> None:
    """A log y axis labelled with plain numbers (1, 2, 5, 10, …) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _fs_strategy_colours(strategies: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def _fs_by_strategy(ax, values: xr.DataArray, groups: list, colours: dict, labels: dict,
                    group_dim: str, strategies: list[str], scale: float = 1.0) -> None:
    """Mean ± 95% CI over replicates of ``values`` per strategy (x), one marker per group."""
    x = np.arange(len(strategies))
    width = 0.7 / max(1, len(groups))
    for k, g in enumerate(groups):
        mean, half = mean_ci(scale * values.sel({group_dim: g}).sel(strategy=strategies))
        ax.errorbar(x + (k - (len(groups) - 1) / 2) * width, mean, yerr=half, fmt="o", ms=3.5,
                    capsize=2, lw=1, color=colours[g], label=labels[g])
    ax.set_xticks(x, strategies, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(strategies) - 0.4)


@register_figure("finetune_shift")
def plot_finetune_shift(ds: xr.Dataset) -> plt.Figure:
    """Fine-tuning under shift: error per strategy and shift, and what each strategy changed.

    Rows 1–2, one panel per shift: the in-distribution error (on the fine-tuning task, weighted
    by its prior) and the out-of-distribution error (the pretraining task) of every strategy,
    mean ± 95% CI over replicates for each number of fine-tuning images, the parent's error
    as a dashed line. (d) the input shift's calibration: the parent's error along the
    frequency ladder and the doubling threshold; (h) the source information left in ``fc``
    (ridge-probe error). Row 3, largest n_train: linear CKA of each block against the parent,
    per strategy and shift, and (l) Auto-RGN's mean rate weight per block. Row 4: (m) TPGM's
    learned radius per block over the block's pretrained norm, beside how far full
    fine-tuning moved it; (n) the change of the output's FI, log₂(FI / parent FI) averaged
    over θ; (o, p) FI curves of the decoded angle, parent and three strategies.
    """
    ds = _successful(ds)
    shifts = [str(s) for s in ds["shift"].values]
    strategies = [str(s) for s in ds["strategy"].values]
    sizes = [int(n) for n in ds["n_train"].values]
    n_max = max(sizes)
    size_colours = dict(zip(sizes, plt.get_cmap("viridis")(np.linspace(0.15, 0.85,
                                                                        len(sizes))),
                            strict=True))
    size_labels = {n: f"{n} images" for n in sizes}
    s_colours = _fs_strategy_colours(strategies)
    theta_deg = np.degrees(ds["angle"].values)
    blocks = [str(b) for b in ds["block"].values]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(4, 4, figsize=(14, 13.5))
        fig.subplots_adjust(left=0.05, right=0.99, top=0.95, bottom=0.05, wspace=0.32,
                            hspace=0.5)
        letters = iter("abcdefghijklmnop")
        for row, (var, parent_var, what) in enumerate([
            ("id_error", "parent_id_error", "in-distribution error"),
            ("ood_error", "parent_ood_error", "out-of-distribution (source) error"),
        ]):
            for col, shift in enumerate(shifts):
                ax = axes[row, col]
                d = ds.sel(shift=shift)
                _fs_by_strategy(ax, d[var], sizes, size_colours, size_labels, "n_train",
                                strategies, scale=180 / np.pi)
                ax.axhline(float(np.degrees(d[parent_var].mean())), color="0.4", ls="--",
                           lw=0.9, label="parent (no fine-tuning)")
                _fs_plain_log(ax)
                ax.set_ylabel(f"{what} (deg)")
                if row == 1 and col == len(shifts) - 1:  # the emptiest panel: one legend
                    ax.legend(frameon=False, fontsize=7, title="fine-tuning set (rows 1–2)",
                              title_fontsize=7, loc="center")
                label = _FS_SHIFT_LABELS.get(shift, shift)
                if shift == "input" and "shift_value" in d:
                    freqs = sorted({float(v) for v in d["shift_value"].values
                                    if np.isfinite(v)})
                    label = ("input shift: 4 → " + "/".join(f"{f:g}" for f in freqs)
                             + " cycles per image")
                ax.set_title(f"{next(letters)}  {label}", loc="left")
            if row == 0:
                ax = axes[0, 3]
                if "input" in shifts:
                    d = ds.sel(shift="input")
                    freq = d["severity_frequency"].values
                    err = d["severity_error"] / d["severity_base_error"]
                    for r in range(err.sizes["replicate"]):
                        ax.plot(freq, err.isel(replicate=r), "o-", ms=2.5, lw=0.8,
                                color=_FS_SHIFT_COLOURS["input"], alpha=0.6)
                    ax.axhline(2.0, color="0.4", ls="--", lw=0.9, label="2 × source error")
                    ax.axvline(4.0, color="0.6", ls=":", lw=0.9, label="source (4 cycles)")
                    ax.legend(frameon=False, fontsize=7)
                ax.set_xlabel("spatial frequency (cycles per image)")
                ax.set_ylabel("parent's error / its source error")
                ax.set_title(f"{next(letters)}  input shift: severity ladder", loc="left")
            else:
                ax = axes[1, 3]
                shift_labels = {s: s for s in shifts}
                _fs_by_strategy(ax, ds["probe_error"].sel(n_train=n_max), shifts,
                                _FS_SHIFT_COLOURS, shift_labels, "shift", strategies,
                                scale=180 / np.pi)
                ax.axhline(float(np.degrees(ds["parent_probe_error"].mean())), color="0.4",
                           ls="--", lw=0.9, label="parent")
                ax.set_ylabel("ridge probe of θ from fc, source task (deg)")
                ax.legend(frameon=False, fontsize=7)
                ax.set_title(f"{next(letters)}  source information in fc (n = {n_max})",
                             loc="left")

        xb = np.arange(len(blocks))
        for col, shift in enumerate(shifts):
            ax = axes[2, col]
            d = ds["cka"].sel(shift=shift, n_train=n_max)
            for s in strategies:
                mean, half = mean_ci(d.sel(strategy=s))
                ax.plot(xb, mean, "o-", ms=2.5, lw=1, color=s_colours[s], label=s)
                ax.fill_between(xb, mean - half, mean + half, color=s_colours[s], alpha=0.15,
                                linewidth=0)
            ax.set_xticks(xb, blocks)
            ax.set_xlabel("block")
            ax.set_ylabel("linear CKA, parent vs fine-tuned")
            if col == 0:
                ax.legend(frameon=False, fontsize=6.5, ncol=2)
            ax.set_title(f"{next(letters)}  representation drift, {shift} (n = {n_max})",
                         loc="left")

        def per_block(ax, var, ylabel, title, reference=None):
            for shift in shifts:
                mean, half = mean_ci(ds[var].sel(shift=shift, n_train=n_max))
                ok = np.isfinite(mean.values)
                ax.errorbar(xb[ok], mean.values[ok], yerr=half.values[ok], fmt="o-", ms=3,
                            capsize=2, lw=1, color=_FS_SHIFT_COLOURS[shift], label=shift)
                if reference is not None:
                    ref, _ = mean_ci(reference.sel(shift=shift, n_train=n_max))
                    ax.plot(xb, ref, ":", lw=1, color=_FS_SHIFT_COLOURS[shift])
            ax.set_xticks(xb, blocks)
            ax.set_xlabel("block")
            ax.set_ylabel(ylabel)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(title, loc="left")

        per_block(axes[2, 3], "rgn_weight", "Auto-RGN rate / phase rate",
                  f"{next(letters)}  Auto-RGN per-block rates (n = {n_max})")
        per_block(axes[3, 0], "tpgm_radius_rel", "TPGM radius / ‖θ₀‖ of the block",
                  f"{next(letters)}  TPGM radii (dotted: full's ‖θ − θ₀‖/‖θ₀‖)",
                  reference=ds["weight_change"].sel(strategy="full")
                  if "full" in strategies else None)
        axes[3, 0].set_ylim(bottom=0)

        ax = axes[3, 1]
        _fs_by_strategy(ax, ds["fisher_change"].sel(layer="output", n_train=n_max), shifts,
                        _FS_SHIFT_COLOURS, {s: s for s in shifts}, "shift", strategies)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylabel("log₂ FI of θ̂ / parent's, mean over θ")
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"{next(letters)}  FI change at the output (n = {n_max})", loc="left")

        for ax, shift in zip(axes[3, 2:], [s for s in ("prior", "input") if s in shifts] +
                             [None] * 2, strict=False):
            letter = next(letters)
            if shift is None:
                ax.set_visible(False)
                continue
            d = ds.sel(shift=shift)
            _log_band(ax, theta_deg, d["parent_fisher"].sel(layer="output"), "0.3", "parent")
            mean_id = d["id_error"].sel(n_train=n_max).mean("replicate")
            best = str(mean_id["strategy"].values[int(mean_id.argmin("strategy"))])
            shown = list(dict.fromkeys([best, "full", "linear_probe"]))
            for s in (s for s in shown if s in strategies):
                _log_band(ax, theta_deg, d["fisher"].sel(strategy=s, n_train=n_max,
                                                         layer="output"),
                          s_colours[s], s + (" (lowest ID error)" if s == best else ""))
            _fi_vs_angle_axis(ax)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(f"{letter}  FI curves, {shift} shift (n = {n_max})", loc="left")
        fig.suptitle(f"fine-tuning under shift: {_replicate_count(ds)}; each strategy at the "
                     "learning rate its validation loss chose", fontsize=9)
    return fig
