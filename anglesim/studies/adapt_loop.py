"""Adaptive loop: reshape the training prior from measured Fisher information, round by round.

The reference research's iterative rule: measure the network's Fisher information (FI) J(θ),
smooth it on the circle, set the next training prior to p ← p/√J (renormalised) — more
training where the network is least sensitive — and fine-tune on it; repeat. Here the loop
starts from a CNN trained on a von Mises prior at 90° (κ = 4), so its FI is concentrated there,
and runs k rounds in three modes: fine-tuning the previous round's network with the optimiser
state reset each round or kept, or fine-tuning the original network every round. A damping
λ ∈ (0, 1] mixes the update geometrically, p ← p^{1−λ}·(p/√J)^{λ}.

Convergence is tracked by scale-free diagnostics: the coefficient of variation of J over
angles (0 for a flat FI curve — the rule's fixed point), the KL divergence between successive
priors, and their spread over replicates. Every replicate runs all k rounds (so all share one
structure); ``stop_round`` records the first round at which the stopping rule
(CV < ``CV_TOL`` or KL < ``KL_TOL``) would have ended the loop.

Run: ``anglesim run adapt_loop [--quick]``.
"""

from __future__ import annotations

import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.distributions import Gridded, VonMises
from anglesim.fisher import propagated_fisher, smooth_periodic
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
    replicate_count,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

from ._recipes import CNN, SPEC, expects_aperture_ties

NAME = "adapt_loop"
START_PRIOR = VonMises(math.pi / 2, 4.0)
MODES = ("previous_reset", "previous_kept", "original")
SMOOTH_ORDER = 3
"""Harmonics of 2θ kept when smoothing log FI on the circle before the update."""
CV_TOL, KL_TOL = 0.25, 0.002

SIZES = {
    "full": dict(pre_epochs=8, epochs=3, steps=50, batch=64, n_angles=48, rounds=8,
                 damping=0.5, replicates=4),
    "quick": dict(pre_epochs=1, epochs=1, steps=3, batch=16, n_angles=16, rounds=2,
                  damping=0.5, replicates=2),
}


def update_prior(density: np.ndarray, fisher: np.ndarray, damping: float) -> np.ndarray:
    """p ← p^{1−λ}·(p/√J_s)^λ, renormalised to a density on [0, π); J_s smoothed on the circle.

    Smoothing is of log J (FI spans decades), so J_s = exp(smooth(log J)) stays positive.
    """
    if not 0 < damping <= 1:
        raise ValueError(f"damping must be in (0, 1], got {damping!r}")
    angle = np.arange(fisher.size) * (math.pi / fisher.size)
    log_j = smooth_periodic(xr.DataArray(np.log(fisher), dims="angle", coords={"angle": angle}),
                            n_harmonics=SMOOTH_ORDER, log=False).values
    new = density * np.exp(-0.5 * damping * log_j)
    return new / (new.mean() * math.pi)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) of two densities sampled on an even grid over [0, π)."""
    return float(np.mean(p * np.log(p / q)) * math.pi)


def cv(fisher: np.ndarray) -> float:
    """Coefficient of variation of J over the angle grid: std/mean, scale-free."""
    return float(fisher.std() / fisher.mean())


def phase(name: str, prior, sz: dict, epochs: int, lr: float, reset: bool = True) -> Phase:
    return Phase(name, prior, SPEC, loss="cosine", lr=lr, epochs=epochs,
                 steps_per_epoch=sz["steps"], batch_size=sz["batch"],
                 eval_angles=sz["n_angles"], eval_repeats=1, reset_optimizer=reset)


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Run the loop for one mode; record prior and FI at every round."""
    sz, on = ctx.params, ctx.on_device
    mode = str(ctx.condition["mode"])
    grid = ctx.angles
    angle = grid.double().numpy()

    def measure(net) -> np.ndarray:
        return propagated_fisher(net, SPEC, grid, layers=["output"],
                                 sigma=SPEC.noise_std, **on).values[0]

    original = build_model(CNN, generator=ctx.seed_generator())
    train(original, [phase("start", START_PRIOR, sz, sz["pre_epochs"], 2e-3)], ctx.seed, **on)
    priors = [START_PRIOR.pdf(angle)]
    fishers = [measure(original)]

    if mode == "original":
        for r in range(1, sz["rounds"] + 1):
            density = update_prior(priors[-1], fishers[-1], sz["damping"])
            net = copy.deepcopy(original)
            train(net, [phase(f"round{r}", Gridded(density), sz, sz["epochs"], 1e-3)],
                  ctx.stream_seed("data", r), **on)
            priors.append(density)
            fishers.append(measure(net))
    else:
        # One train() call over all rounds, so Adam's state can be kept between them; each
        # round's prior is set from the FI measured at the end of the previous round.
        reset = mode == "previous_reset"
        rounds = [phase(f"round{r}", Gridded(priors[0]), sz, sz["epochs"], 1e-3, reset)
                  for r in range(1, sz["rounds"] + 1)]
        density = update_prior(priors[-1], fishers[-1], sz["damping"])
        rounds[0].prior = Gridded(density)
        priors.append(density)
        net = copy.deepcopy(original)

        def next_round(ph: Phase, model) -> None:
            fishers.append(measure(model))
            r = int(ph.name.removeprefix("round"))
            if r < len(rounds):
                new = update_prior(priors[-1], fishers[-1], sz["damping"])
                rounds[r].prior = Gridded(new)
                priors.append(new)

        train(net, rounds, ctx.stream_seed("data", 1), on_phase_end=next_round, **on)

    fisher = np.stack(fishers)
    prior = np.stack(priors)
    cvs = np.array([cv(f) for f in fisher])
    kls = np.array([np.nan] + [kl_divergence(prior[i], prior[i - 1])
                               for i in range(1, len(prior))])
    met = np.flatnonzero((cvs < CV_TOL) | (kls < KL_TOL))
    rounds_idx = np.arange(len(fishers))
    ds = xr.Dataset(
        {
            "fisher": (("round", "angle"), fisher),
            "prior_density": (("round", "angle"), prior),
            "fisher_cv": ("round", cvs),
            "prior_kl": ("round", kls),
            "stop_round": ((), float(met[0]) if met.size else np.nan),
        },
        coords={"round": rounds_idx, "angle": angle},
    )
    ds["fisher"].attrs = {"units": "rad^-2", "long_name": "FI of the decoded angle (propagated)"}
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior of the round"}
    ds["fisher_cv"].attrs = {"long_name": "coefficient of variation of FI over angles"}
    ds["prior_kl"].attrs = {"long_name": "KL(prior of round r || prior of round r-1)"}
    ds["stop_round"].attrs = {"long_name": f"first round with CV < {CV_TOL} or KL < {KL_TOL}"}
    return ds




def summarise(ds: xr.Dataset) -> str:
    """CV of FI and KL between successive priors per round, mean over replicates, per mode."""

    ok = successful(ds)
    lines = ["per mode, per round: CV of FI (KL to the previous prior), mean over replicates"]
    for mode in ok["mode"].values:
        c = ok.sel(mode=mode)
        cells = [f"r{int(r)} {float(c['fisher_cv'].sel(round=r).mean()):.2f}"
                 f" ({float(c['prior_kl'].sel(round=r).mean()):.3f})" for r in c["round"].values]
        stop = c["stop_round"]
        met = (f"rule met by round {float(stop.mean()):.1f} on average" if stop.count()
               else f"rule (CV < {CV_TOL} or KL < {KL_TOL}) not met")
        lines.append(f"  {mode:>15}: " + ", ".join(cells)
                     + f"; {met} ({int(stop.count())}/{int(stop.size)} replicates)")
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "start_prior": START_PRIOR.to_config(), "smooth_order": SMOOTH_ORDER,
            "cv_tol": CV_TOL, "kl_tol": KL_TOL}


# ---- figure ----------------------------------------------------------------------------------


def plot_adapt_loop(ds: xr.Dataset) -> plt.Figure:
    """Adaptive loop: the prior and FI over rounds of p ← p/√J, and convergence per mode.

    Panels: (a) training prior of each round and (b) FI of the decoded angle after it
    (geometric mean over replicates), first mode; (c) coefficient of variation of FI over
    angles and (d) KL divergence between successive priors, per round and mode, mean ± 95% CI
    over replicates.
    """
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    modes = [str(m) for m in ds["mode"].values]
    rounds = ds["round"].values
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(rounds)))
    first = ds.sel(mode=modes[0])
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), constrained_layout=True)
        ax = axes[0]
        for colour, r in zip(colours, rounds, strict=True):
            band(ax, theta_deg, first["prior_density"].sel(round=r), colour, f"round {int(r)}",
                 bounds=(0, None))
        ax.set_ylabel("training prior p(θ) (1/rad)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"a  prior ({modes[0]})", loc="left")

        ax = axes[1]
        for colour, r in zip(colours, rounds, strict=True):
            log_band(ax, theta_deg, first["fisher"].sel(round=r), colour, f"round {int(r)}")
        fi_vs_angle_axis(ax)
        ax.set_title(f"b  FI ({modes[0]})", loc="left")

        for ax, var, label, letter in [
            (axes[2], "fisher_cv", "CV of FI over θ", "c  flatness of FI"),
            (axes[3], "prior_kl", "KL(p_r ‖ p_{r−1}) (nats)", "d  step between priors"),
        ]:
            for m, mode in enumerate(modes):
                interval_bars(ax, rounds + (m - 1) * 0.08, ds[var].sel(mode=mode),
                              PHASE_COLOURS[(m + 1) % len(PHASE_COLOURS)], mode,
                              bounds=(0, None), fmt="o-", ms=3)
            ax.set_xticks(rounds)
            ax.set_xlabel("round")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(letter, loc="left")
        fig.suptitle(f"adaptive loop: {replicate_count(ds)}", fontsize=9)
        band_footnote(fig)
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question=("Does iterating p ← p/√J (train, measure FI, reweight the prior) flatten Fisher "
              "information?"),
    replicate=replicate,
    sizes=SIZES,
    grid={"mode": list(MODES)},
    describe=describe,
    figure=plot_adapt_loop,
    summary=summarise,
    pair_axes=(),  # each mode trains its own networks from its own seeds
    # NaN by design: the first round has no previous prior; a mode that never converges has
    # no stop round
    allow_nan=("prior_kl", "stop_round"),
)
