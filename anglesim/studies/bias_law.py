"""Bias and discriminability: do trained networks obey b(θ) ∝ d/dθ [1/J(θ)]?

Wei & Stocker (2017, PNAS 114:10244) showed that an observer with efficient encoding and a
Bayesian decoder has an estimation bias proportional to the slope of its discrimination
threshold squared: b(θ) = c · d/dθ[1/J(θ)] with c > 0, a repulsion from where Fisher
information is high (Hahn & Wei 2024, Nat Neurosci: the same law, with other constants, for
other losses). A network trained to report θ is not built to be such an observer; this study
measures both sides on the same network and fits c.

Conditions (grid): the training ``prior`` — uniform, or a von Mises prior on 2θ concentrated at
90° (κ = 4, the quickstart's fine-tuning prior) — and the ``loss`` (registered names in
:mod:`anglesim.losses`: cosine, wrapped squared error, von Mises negative log-likelihood). Each
replicate trains the studies' standard CNN from scratch on that prior with that loss, then on a
grid of angles measures

* ``fisher`` — the output FI of the decoded angle θ̂, propagated pixel noise (σ = 1), through
  :func:`anglesim.fisher.measure_fisher`;
* ``bias`` — the decoded-angle bias, circular mean of θ̂ − θ over noisy trials
  (:func:`anglesim.laws.decoded_bias`), with its standard error over trials;
* ``slope`` — d/dθ[1/J] from a Fourier fit of log J (:func:`anglesim.laws.inverse_fisher_slope`);

and the fit (:func:`anglesim.laws.fit_bias_law`) over the angles where the threshold 1/√J
is at most :data:`MAX_THRESHOLD` (the law is derived for small noise; where J is near 0 the
slope of 1/J diverges while a bias cannot exceed 90°): ``law_constant`` c (the law says
c > 0), ``law_correlation`` r over those angles and ``law_explained``; across replicates
``law_agreement`` says at each angle whether the bias has the law's sign (+1), the opposite
one (−1) or cannot be told from 0 (0).

Run: ``anglesim run bias_law [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.distributions import Uniform, VonMises
from anglesim.fisher import measure_fisher, method_result
from anglesim.laws import decoded_bias, fit_bias_law, inverse_fisher_slope, law_agreement
from anglesim.models import build_model
from anglesim.plotting import STYLE, successful
from anglesim.stats import mean_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

from ._laws_common import MIN_BAND_REPLICATES, band_note, replicate_band
from ._recipes import CNN, SPEC, expects_aperture_ties

NAME = "bias_law"
PRIORS = {"uniform": Uniform(), "concentrated": VonMises(math.pi / 2, 4.0)}
LOSSES = ("cosine", "wrapped_mse", "vonmises_nll")
MAX_THRESHOLD = 0.1
"""The law is a small-noise result: c is fitted only at angles whose discrimination threshold
1/√J is at most this many radians (5.7°)."""
FISHER_FLOOR = 1e-6
"""J below this fraction of its maximum is raised to it before log J is fitted."""

SIZES = {
    "full": dict(epochs=6, steps=50, batch=64, n_angles=48, n_trials=400, n_harmonics=6,
                 replicates=3),
    "quick": dict(epochs=1, steps=3, batch=16, n_angles=8, n_trials=20, n_harmonics=2,
                  replicates=2),
}
"""Full: 300 steps of 64 images (3/4 of the quickstart's pretraining) and 3 replicates per
condition, so the 18 networks train in the study's budget of 8 minutes on a shared core."""


def phase(prior: str, loss: str, sz: dict) -> Phase:
    """Training from scratch on ``prior`` with ``loss`` (fresh images every batch)."""
    return Phase(prior, PRIORS[prior], SPEC, loss=loss, lr=2e-3, epochs=sz["epochs"],
                 steps_per_epoch=sz["steps"], batch_size=sz["batch"], eval_angles=8,
                 eval_repeats=1)


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network and measure its output FI, its decoded bias and the law's fit."""
    sz = ctx.params
    prior, loss = str(ctx.condition["prior"]), str(ctx.condition["loss"])
    model = build_model(CNN, generator=ctx.generator("init", device="cpu"))
    history = train(model, [phase(prior, loss, sz)], ctx.stream_seed("data"))
    grid = ctx.angles.double().numpy()
    measured = measure_fisher(model, SPEC, PRIORS[prior], ["propagated"], layers=["output"],
                              angles=grid, sigma=SPEC.noise_std)
    fisher = method_result(measured, "propagated").sel(layer="output", drop=True)
    bias = decoded_bias(model, SPEC, grid, sz["n_trials"], ctx.generator("eval"))
    floor = FISHER_FLOOR * float(fisher.max())  # log J is fitted: J = 0 (θ̂ flat) is floored
    slope = inverse_fisher_slope(np.maximum(fisher, floor), sz["n_harmonics"])
    fit = fit_bias_law(bias["bias"], slope, where=fisher >= 1 / MAX_THRESHOLD**2)
    ds = xr.Dataset({
        "fisher": fisher.assign_attrs(units="rad^-2", method="propagated", long_name=(
            "output FI of the decoded angle, propagated pixel noise")),
        "slope": slope,
        "prior_density": measured["prior_density"],
        **bias.data_vars,
        **fit.data_vars,
    })
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """``law_agreement`` per condition and angle (+1 holds, −1 flips, 0 unresolved)."""
    ok = successful(ds)
    return ds.assign(law_agreement=law_agreement(ok["bias"], ok["slope"]))


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "priors": {k: p.to_config() for k, p in PRIORS.items()},
            "phases": [phase(p, ls, params).to_config() for p in grid["prior"]
                       for ls in grid["loss"]],
            "max_threshold": MAX_THRESHOLD, "fisher_floor": FISHER_FLOOR}


def summarise(ds: xr.Dataset) -> str:
    """Per condition: c and r (mean ± 95% t half-width over replicates), the share of angles
    where the law holds / flips / is unresolved, and the decoding error."""
    ok = successful(ds)
    lines = ["b(θ) = c·d/dθ[1/J(θ)] fitted where 1/√J ≤ "
             f"{np.degrees(MAX_THRESHOLD):.1f}°: c (law: > 0), r, explained share, angles "
             "fitted; all angles where the bias has the law's sign / the opposite / unresolved:"]
    for prior in ok["prior"].values:
        for loss in ok["loss"].values:
            c = ok.sel(prior=prior, loss=loss)
            m, h = mean_ci(c["law_constant"])
            rm, rh = mean_ci(c["law_correlation"])
            em, eh = mean_ci(c["law_explained"])
            agree = c["law_agreement"]
            n = agree.sizes["angle"]
            holds, flips = int((agree > 0).sum()), int((agree < 0).sum())
            err = float(np.degrees(c["abs_error"].mean()))
            bmax = float(np.degrees(np.abs(c["bias"].mean("replicate")).max()))
            lines.append(
                f"  {prior:>12} {loss:>12}: c = {float(m):+.3g} ± {float(h):.2g}, r = "
                f"{float(rm):+.2f} ± {float(rh):.2f}, explained {float(em):+.2f} ± "
                f"{float(eh):.2f} ({float(c['law_n_angles'].mean()):.0f} angles); holds "
                f"{holds}/{n}, flips {flips}/{n}, unresolved "
                f"{n - holds - flips}/{n}; |bias| up to {bmax:.2f}°, error {err:.2f}°")
    return "\n".join(lines)


def figure(ds: xr.Dataset) -> plt.Figure:
    """Per prior (rows): the bias against θ, the law's prediction ĉ·d/dθ[1/J] (ĉ the mean
    constant), and FI; last column the constant per loss with its interval."""
    ok = successful(ds)
    losses = list(ok["loss"].values)
    colours = {loss: f"C{i}" for i, loss in enumerate(losses)}
    x = np.degrees(ok["angle"].values)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(ok.sizes["prior"], 3, figsize=(9, 2.6 * ok.sizes["prior"]),
                                 constrained_layout=True, squeeze=False)
        for row, prior in zip(axes, ok["prior"].values, strict=True):
            c = ok.sel(prior=prior)
            for loss in losses:
                d = c.sel(loss=loss)
                replicate_band(row[0], x, np.degrees(d["bias"]), colours[loss], str(loss),
                               clip=(-90.0, 90.0))
                const = float(d["law_constant"].mean())
                row[0].plot(x, np.degrees(const * d["slope"].mean("replicate")),
                            color=colours[loss], ls="--", lw=0.8)
                replicate_band(row[1], x, d["fisher"], colours[loss], str(loss), log=True)
            row[0].axhline(0, color="k", lw=0.5)
            row[0].set_ylabel(f"{prior}\nbias θ̂ − θ (deg)")
            row[1].set_yscale("log")
            row[1].set_ylabel("output FI (rad⁻²)")
            for ax in row[:2]:
                ax.set_xlim(0, 180)
                ax.set_xticks([0, 45, 90, 135, 180])
                ax.set_xlabel("θ (deg)")
            pos = np.arange(len(losses))
            m, h = mean_ci(c["law_constant"])
            enough = int(c["law_constant"].count("replicate").min()) >= MIN_BAND_REPLICATES
            row[2].errorbar(pos, m.values, yerr=h.values if enough else None, fmt="o",
                            color="k", capsize=2)
            row[2].axhline(0, color="k", lw=0.5)
            row[2].set_xticks(pos, losses)
            row[2].set_ylabel("law constant c")
        axes[0, 0].legend(frameon=False, fontsize=7)
        fig.suptitle("Bias vs the law b = c·d/dθ[1/J] (dashed: mean ĉ times the mean slope; "
                     "c fitted where 1/√J ≤ 5.7°; bias bands clipped to ±90°); "
                     + band_note(ok), fontsize=8)
    return fig



STUDY = Study(
    name=NAME,
    question="Does a trained network's decoded-angle bias follow b = c d/dtheta[1/J] "
             "(Wei & Stocker 2017), and where does it hold, fail or flip sign?",
    replicate=replicate,
    sizes=SIZES,
    grid={"prior": list(PRIORS), "loss": list(LOSSES)},
    describe=describe,
    postprocess=add_measures,
    figure=figure,
    summary=summarise,
    allow_nan=("val_loss", "law_constant", "law_correlation", "law_explained"),
)
