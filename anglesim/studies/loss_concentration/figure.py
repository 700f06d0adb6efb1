"""Loss and concentration's figure: normalised FI, the exponents against their prediction,
their order, the fits' angles, locality against a fixed budget, and the hidden layer's α."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from anglesim.distributions import VonMises
from anglesim.plotting import (
    caption,
    given_bars,
    interval_bars,
    log_band,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.stats import welch_ci
from anglesim.theory import predicted_fisher, sqrt_total

from .measures import ALPHA_MARGIN, LOCAL_MARGIN, LP_ORDER, PRIOR_LOC, locality

__all__ = ["SHORT", "figure_caption", "plot_loss_concentration"]

SHORT = {"vonmises_nll": "vM NLL", "cross_entropy": "bins CE"}
"""Tick labels of the losses with long names."""


def _ticks(losses: list[str]) -> list[str]:
    return [SHORT.get(label, label) for label in losses]


def _kappa_colours(kappas: list[float]) -> dict[float, tuple]:
    return dict(zip(kappas, plt.get_cmap("viridis")(np.linspace(0.15, 0.8, len(kappas))),
                    strict=True))


def plot_loss_concentration(ds: xr.Dataset) -> plt.Figure:
    """Loss and concentration: how sharply FI follows the prior, per training loss.

    (a) FI of θ̂ normalised to ∫√J dθ = 1 (geometric mean over replicates) per loss at the
    largest κ, with the p² (infomax) and p^{2/3} (squared error) predictions; (b) fitted α
    per loss and κ against 2/(p + 1) ± 0.25 (the equivalence margin); (c) the differences of
    α between neighbouring Lp losses (Welch intervals; the claim: > 0); (d) the share of
    angles in the fits (error < 5°); (e) locality: log₂ J at p = 1/π over κ = 1's, against
    the fixed-budget prediction and the local code's 0 ± log₂ 1.5; (f) α of the last hidden
    layer (exploratory).
    """
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    losses = [str(v) for v in ds["loss"].values]
    kappas = [float(k) for k in ds["kappa"].values]
    colours = _kappa_colours(kappas)
    loss_colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.85, len(losses)))
    x = np.arange(len(losses))
    width = 0.6 / max(len(kappas), 1)

    def offset(k: int) -> float:
        return (k - (len(kappas) - 1) / 2) * width

    fi = ds["fisher"].sel(layer="output")
    norm = fi / sqrt_total(fi) ** 2
    with print_style():
        fig, axes = print_figure(3, 2, width="double", aspect=0.62)
        ax = axes[0, 0]
        kappa = kappas[-1]
        for colour, label in zip(loss_colours, losses, strict=True):
            log_band(ax, theta_deg, norm.sel(loss=label, kappa=kappa), colour,
                     SHORT.get(label, label), alpha=0.15)
        density = xr.DataArray(VonMises(PRIOR_LOC, kappa).pdf(ds["angle"].values),
                               dims="angle", coords={"angle": ds["angle"].values})
        unit = xr.ones_like(density)
        for alpha, style in [(2.0, "--"), (2 / 3, ":")]:
            pred = predicted_fisher(density, alpha, normalise_to=unit)
            ax.plot(theta_deg, pred / sqrt_total(unit) ** 2, color="k", ls=style, lw=1,
                    label=rf"$\propto p^{{{alpha:.2g}}}$")
        ax.set_yscale("log")
        ax.set_xlim(0, 180)
        ax.set_xticks([0, 45, 90, 135, 180])
        ax.set(xlabel="orientation θ (deg)",
               ylabel=r"FI of $\hat\theta$ / $(\int\sqrt{J}\,d\theta)^2$ (1)",
               title=f"normalised FI at κ = {kappa:g}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.02), frameon=False, fontsize=7,
                  handlelength=1.4)

        ax = axes[0, 1]
        pred = ds["alpha_predicted"].sel(loss=losses).values
        for i, p in enumerate(pred):
            ax.add_patch(plt.Rectangle((i - 0.4, p - ALPHA_MARGIN), 0.8, 2 * ALPHA_MARGIN,
                                       color="0.88", lw=0, zorder=0))
        ax.hlines(pred, x - 0.4, x + 0.4, color="k", lw=1.2, zorder=1)
        for k, kap in enumerate(kappas):
            interval_bars(ax, x + offset(k), ds["alpha"].sel(kappa=kap, layer="output",
                                                               loss=losses),
                          colours[kap], f"κ = {kap:g}", ms=3)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(x, _ticks(losses), rotation=25, ha="right")
        ax.set(xlabel="training loss", ylabel=r"$\alpha$ in $J_{\hat\theta} \propto p^\alpha$ (1)",
               title="exponent against 2/(p+1)")

        ax = axes[1, 0]
        pairs = [(a, b) for a, b in zip(LP_ORDER, LP_ORDER[1:], strict=False)
                 if a in losses and b in losses]
        alpha = ds["alpha"].sel(layer="output")
        for k, kap in enumerate(kappas):
            for i, (a, b) in enumerate(pairs):
                diff, half = welch_ci(alpha.sel(loss=a, kappa=kap), alpha.sel(loss=b, kappa=kap))
                n = min(int(alpha.sel(loss=a, kappa=kap).count()),
                        int(alpha.sel(loss=b, kappa=kap).count()))
                given_bars(ax, [i + offset(k)], float(diff), float(half), n, colours[kap],
                           None, ms=3)
        for i, (a, b) in enumerate(pairs):
            gap = float(ds["alpha_predicted"].sel(loss=a) - ds["alpha_predicted"].sel(loss=b))
            ax.hlines(gap, i - 0.4, i + 0.4, color="k", lw=1.2)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(np.arange(len(pairs)), [f"{a} − {b}" for a, b in pairs])
        ax.set_xlim(-0.6, max(len(pairs), 1) - 0.4)
        ax.set(xlabel="neighbouring Lp losses", ylabel="difference in α (1)",
               title="order: α of the smaller power higher")

        ax = axes[1, 1]
        for k, kap in enumerate(kappas):
            interval_bars(ax, x + offset(k), 100 * ds["fit_share"].sel(kappa=kap, loss=losses),
                          colours[kap], f"κ = {kap:g}", bounds=(0, 100), ms=3)
        ax.set_ylim(0, 105)
        ax.set_xticks(x, _ticks(losses), rotation=25, ha="right")
        limit = float(np.degrees(ds["error_limit"].max()))
        ax.set(xlabel="training loss", ylabel=f"angles with error < {limit:g}° (%)",
               title="angles in the fits")

        ax = axes[2, 0]
        local = math.log2(LOCAL_MARGIN)
        ax.axhspan(-local, local, color="0.9", lw=0, zorder=0)
        ax.axhline(0, color="0.6", lw=0.6)
        budget = np.log2(ds["budget_ratio_predicted"])
        for k, kap in enumerate(kappas[1:], start=1):
            diff, half = locality(ds, kap)
            level = ds["fisher_at_uniform_density"].sel(layer="output")
            n = np.minimum(level.sel(kappa=kap).count("replicate"),
                           level.isel(kappa=0).count("replicate"))
            given_bars(ax, x + offset(k), diff.sel(loss=losses).values,
                       half.sel(loss=losses).values, n.sel(loss=losses).values, colours[kap],
                       None, ms=3)
            ax.hlines(budget.sel(kappa=kap, loss=losses).values, x + offset(k) - width / 2,
                      x + offset(k) + width / 2, color=colours[kap], lw=1.5)
        ax.set_xticks(x, _ticks(losses), rotation=25, ha="right")
        ax.set(xlabel="training loss", ylabel=f"log₂ J(p = 1/π), κ / κ = {kappas[0]:g} (1)",
               title="locality against a fixed budget")

        ax = axes[2, 1]
        for k, kap in enumerate(kappas):
            interval_bars(ax, x + offset(k), ds["alpha"].sel(kappa=kap, layer="fc", loss=losses),
                          colours[kap], f"κ = {kap:g}", ms=3)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(x, _ticks(losses), rotation=25, ha="right")
        ax.set(xlabel="training loss", ylabel=r"$\alpha$ in $J_{\mathrm{fc}} \propto p^\alpha$ (1)",
               title="last hidden layer (exploratory)")

        handles = [Line2D([], [], color=colours[k], marker="o", ls="", label=f"κ = {k:g}")
                   for k in kappas]
        handles += [Line2D([], [], color="k", lw=1.2, label="prediction (b, c)"),
                    Patch(color="0.88", label=f"±{ALPHA_MARGIN:g} (b), ×{LOCAL_MARGIN:g} (e)"),
                    Line2D([], [], color="0.4", lw=1.5, label="fixed budget (e, colour of κ)")]
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles),
                   frameon=False)
        panel_letters(fig)
    return fig


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and their n."""
    fig = plot_loss_concentration(ds)
    text = caption(fig, "CNNs trained from scratch on a von Mises prior (κ) with one loss each; "
                        "FI of the decoded angle, α fitted per network over the angles with "
                        "decoding error below 5°. (c, e) differences between independent "
                        "networks with Welch 95% intervals.")
    plt.close(fig)
    return text
