"""Adaptive loop: reshape the training prior from measured Fisher information, round by round.

The reference research's iterative rule: measure the network's Fisher information (FI) J(θ),
smooth it on the circle, set the next training prior to p ← p/√J (renormalised) — more
training where the network is least sensitive — and fine-tune on it; repeat. Here the loop
starts from a CNN trained on a von Mises prior at 90° (κ = 4), so its FI is concentrated there,
and runs k rounds in three modes: fine-tuning the previous round's network with the optimiser
state reset each round or kept, or fine-tuning the original network every round. A damping
λ ∈ (0, 1] mixes the update geometrically, p ← p^{1−λ}·(p/√J)^{λ}.

Convergence is tracked by scale-free diagnostics: the coefficient of variation (CV) of J over
angles (0 for a flat FI curve — the rule's fixed point), the KL divergence between successive
priors, and their spread over replicates. Every replicate runs all k rounds (so all share one
structure); ``stop_round`` records the first round at which the stopping rule
(CV < ``CV_TOL`` or KL < ``KL_TOL``) would have ended the loop.

**Design.** The modes are paired (``pair_axes=("mode",)``): replicate r of every mode gets the
same seed, so the three loops start from the same original network (round 0 is identical) and
fine-tune with the same data streams; a mode's change of CV and the differences between modes
are then paired by replicate. The declared claims (:data:`CLAIMS`, Holm over the family of 9;
``fisher_cv_change`` = CV after the last round − CV at round 0):

* ``cv_drops`` (per mode): the CV of FI falls over the rounds (change < 0);
* ``previous_flatter_reset``, ``previous_flatter_kept``: building on the previous round's
  network (optimiser reset, or kept) lowers the CV more than fine-tuning the original network
  every round (paired by replicate);
* ``reset_vs_kept``: the drop differs between resetting and keeping the optimiser state
  (two-sided, paired);
* ``not_converged`` (per mode): after the last round the CV is still above the stopping
  tolerance ``CV_TOL``.

**Sizes.** Full: 3 modes × 10 replicates (≥ 8 pairs for the contrasts between modes; 26 CPU s
a replicate for the original network, 33 s building on the previous one: about 8 min on 2
workers), 8 rounds of 3 epochs of 50 batches of 64 after 8
epochs on the start prior, damping 0.5, 48 angles. Quick: 2 rounds, 2 replicates of a few steps
(a smoke test).

Run: ``anglesim run adapt_loop [--quick]``.
"""

from __future__ import annotations

import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from anglesim.claims import Contrast
from anglesim.distributions import Gridded, VonMises
from anglesim.fisher import propagated_fisher, smooth_periodic
from anglesim.models import build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    angle_axis,
    band,
    caption,
    fi_vs_angle_axis,
    interval_bars,
    log_band,
    mean_ci,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

from ._recipes import CNN, SPEC, expects_aperture_ties, labelled

NAME = "adapt_loop"
START_PRIOR = VonMises(math.pi / 2, 4.0)
MODES = ("previous_reset", "previous_kept", "original")
MODE_NAMES = {"previous_reset": "previous, reset", "previous_kept": "previous, kept",
              "original": "original"}
"""How the figure names the modes: which network each round fine-tunes, and the optimiser."""
SMOOTH_ORDER = 3
"""Harmonics of 2θ kept when smoothing log FI on the circle before the update."""
CV_TOL, KL_TOL = 0.25, 0.002

SIZES = {
    "full": dict(pre_epochs=8, epochs=3, steps=50, batch=64, n_angles=48, rounds=8,
                 damping=0.5, replicates=10),
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


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "start_prior": START_PRIOR.to_config(), "smooth_order": SMOOTH_ORDER,
            "cv_tol": CV_TOL, "kl_tol": KL_TOL}


# ---- derived measures ------------------------------------------------------------------------

LABELS = {
    "mode": ("1", "what each round fine-tunes: the previous round's network with the optimiser "
                  "reset or kept, or the original network"),
    "round": ("1", "round of the loop (0: the original network on the start prior)"),
    "fisher_cv": ("1", "coefficient of variation of FI over angles"),
    "prior_kl": ("nat", "KL(prior of round r || prior of round r-1)"),
    "stop_round": ("1", f"first round with CV < {CV_TOL} or KL < {KL_TOL} (NaN: none)"),
    "fisher_cv_final": ("1", "coefficient of variation of FI over angles after the last round"),
    "fisher_cv_change": ("1", "CV of FI after the last round minus CV at round 0"),
}
"""Units and long names of the study's own variables and coordinates."""


def add_convergence(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the CV after the last round (``fisher_cv_final``) and its change from
    round 0 (``fisher_cv_change``), and units and long names on every variable."""
    cv = ds["fisher_cv"]
    final = cv.isel(round=-1, drop=True)
    out = ds.assign(fisher_cv_final=final, fisher_cv_change=final - cv.isel(round=0, drop=True))
    for name in ("fisher_cv_final", "fisher_cv_change"):
        out[name].attrs = {}
    return labelled(out, LABELS)


# ---- the declared claims ---------------------------------------------------------------------


def _flatter(mode: str, kind: str) -> Contrast:
    return Contrast(name=f"previous_flatter_{kind}", statement=f"fine-tuning the previous "
                    f"round's network (optimiser {kind}) lowers the CV of FI more than "
                    "fine-tuning the original network every round",
                    measure="fisher_cv_change", arm={"mode": mode},
                    against={"mode": "original"}, paired=True, direction="less")


CLAIMS = [
    Contrast(name="cv_drops", statement="the coefficient of variation of FI over angles falls "
             "from round 0 to the last round", measure="fisher_cv_change", against=0.0,
             over=["mode"], direction="less"),
    _flatter("previous_reset", "reset"),
    _flatter("previous_kept", "kept"),
    Contrast(name="reset_vs_kept", statement="the drop of the CV differs between resetting and "
             "keeping the optimiser state when building on the previous network",
             measure="fisher_cv_change", arm={"mode": "previous_reset"},
             against={"mode": "previous_kept"}, paired=True, direction="differs"),
    Contrast(name="not_converged", statement=f"after the last round the CV of FI is still "
             f"above the stopping tolerance {CV_TOL}", measure="fisher_cv_final",
             against=CV_TOL, over=["mode"], direction="greater"),
]
"""The study's planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """CV of FI at round 0 and after the last round and the last KL between successive priors,
    mean and 95% t interval over replicates per mode, the stopping rule, and the figure's
    caption (the claims table follows, from the runner)."""
    if "fisher_cv_change" not in ds:
        ds = add_convergence(ds)
    ok = successful(ds)
    last = int(ok["round"].values[-1])
    n = int(ok["fisher_cv_final"].isel(mode=0).count())
    lines = [f"per mode: CV of FI at round 0 → round {last}, its change, and KL(p_{last} ‖ "
             f"p_{last - 1}); mean and 95% t interval over {n} replicates"]
    for mode in ok["mode"].values:
        c = ok.sel(mode=mode)
        cells = []
        for label, da, fmt in [("CV r0", c["fisher_cv"].isel(round=0), ".2f"),
                               (f"r{last}", c["fisher_cv_final"], ".2f"),
                               ("change", c["fisher_cv_change"], "+.2f"),
                               ("KL", c["prior_kl"].isel(round=-1), ".4f")]:
            m, h = mean_ci(da)
            cells.append(f"{label} {float(m):{fmt}} ± {float(h):.{fmt[-2]}f}")
        stop = c["stop_round"]
        met = (f"rule met by round {float(stop.mean()):.1f} on average" if stop.count()
               else f"rule (CV < {CV_TOL} or KL < {KL_TOL}) not met")
        lines.append(f"  {mode:>15}: " + "; ".join(cells)
                     + f"; {met} ({int(stop.count())}/{int(stop.size)} replicates)")
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`, from what the figure drew)."""
    fig = plot_adapt_loop(ds)
    try:
        first = MODE_NAMES.get(str(ds["mode"].values[0]), str(ds["mode"].values[0]))
        return caption(fig, (
            "Adaptive loop p ← p/√J (damping 0.5) from a CNN trained on a von Mises prior at "
            f"90° (κ = 4), three modes started from the same networks. (a) Training prior and "
            f"(b) FI of the decoded angle θ̂ of each round (mode {first}); (c) CV of FI over "
            "angles and (d) KL divergence between successive priors per round and mode (reset, "
            "kept: each round fine-tunes the previous round's network, optimiser reset or kept; "
            "original: the original network); (e) "
            "change of the CV from round 0 to the last round per mode and (f) its differences "
            "between modes, one dot per replicate (joined across modes)."))
    finally:
        plt.close(fig)


def short(mode: str) -> str:
    """A mode's name in a few words on one line ("reset", "kept", "original")."""
    return MODE_NAMES.get(mode, mode).split(",")[-1].strip()


def plot_adapt_loop(ds: xr.Dataset) -> plt.Figure:
    """Adaptive loop: the prior and FI over rounds of p ← p/√J, and convergence per mode.

    Panels: (a) training prior of each round and (b) FI of the decoded angle after it
    (geometric mean and 95% t band over replicates), first mode, rounds coloured as the
    colour bar; (c) coefficient of variation of FI over angles and (d) KL divergence between
    successive priors, per round and mode, mean and 95% t interval over replicates; (e) the
    change of the CV per mode, paired by replicate against round 0 (the ``cv_drops`` claims);
    (f) the between-mode differences of that change, paired by replicate (the
    ``previous_flatter_*`` and ``reset_vs_kept`` claims).
    """
    if "fisher_cv_change" not in ds:
        ds = add_convergence(ds)
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    modes = [str(m) for m in ds["mode"].values]
    colours = {m: PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)] for i, m in enumerate(modes)}
    rounds = ds["round"].values
    cmap = plt.get_cmap("viridis")
    norm = Normalize(float(rounds.min()), float(rounds.max()) * 1.12 or 1.0)
    first = ds.sel(mode=modes[0])
    with print_style():
        fig, axes = print_figure(2, 3, width="double", aspect=0.75)
        ax = axes[0, 0]
        for r in rounds:
            band(ax, theta_deg, first["prior_density"].sel(round=r), cmap(norm(r)),
                 f"round {int(r)}", bounds=(0, None), alpha=0.1)
        ax.set_ylabel("training prior p(θ) (1/rad)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.set_title(f"prior ({short(modes[0])})")

        ax = axes[0, 1]
        for r in rounds:
            log_band(ax, theta_deg, first["fisher"].sel(round=r), cmap(norm(r)),
                     f"round {int(r)}", alpha=0.08)
        fi_vs_angle_axis(ax)
        ax.set_title(f"FI ({short(modes[0])})")
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, 1], pad=0.02,
                           fraction=0.06, ticks=rounds)
        bar.set_label("round")

        for ax, var, label, title in [
            (axes[0, 2], "fisher_cv", "CV of FI over θ", "flatness of FI"),
            (axes[1, 0], "prior_kl", "KL(pᵣ ‖ pᵣ₋₁) (nat)", "step between priors"),
        ]:
            for m, mode in enumerate(modes):
                interval_bars(ax, rounds + (m - 1) * 0.12, ds[var].sel(mode=mode).transpose(
                    "round", "replicate"), colours[mode], short(mode),
                    bounds=(0, None), fmt="o-", ms=2.5, lw=0.8)
            ax.set_xticks(rounds)
            ax.set_xlabel("round")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.set_title(title)
        axes[0, 2].axhline(CV_TOL, color="0.6", lw=0.6, ls=":")
        axes[0, 2].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="mode",
                          handlelength=1.2)  # beside the axes, off the data

        ax = axes[1, 1]
        x = np.arange(len(modes), dtype=float)
        paired_difference(ax, ds["fisher_cv"].isel(round=0, drop=True).sel(mode=modes),
                          ds["fisher_cv_final"].sel(mode=modes), x=x, colour="0.25")
        ax.set_xticks(x, [short(m) for m in modes])
        ax.set_xlim(-0.6, len(modes) - 0.4)
        ax.set_xlabel("mode")
        ax.set_ylabel(f"CV at round {int(rounds[-1])} − CV at round 0")
        ax.set_title("change of the CV")

        ax = axes[1, 2]
        change = ds["fisher_cv_change"]
        pairs = [(m, "original") for m in modes if m != "original" and "original" in modes]
        if {"previous_reset", "previous_kept"} <= set(modes):
            pairs.append(("previous_reset", "previous_kept"))
        for i, (a, b) in enumerate(pairs):
            paired_difference(ax, change.sel(mode=b, drop=True), change.sel(mode=a, drop=True),
                              x=[float(i)], colour="0.25")
        ax.set_xticks(np.arange(len(pairs)),
                      [f"{short(a)} −\n{short(b)}" for a, b in pairs])
        ax.set_xlim(-0.6, len(pairs) - 0.4)
        ax.set_xlabel("modes compared")
        ax.set_ylabel("difference in CV change")
        ax.set_title("between modes (paired)")
        panel_letters(fig)
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
    postprocess=add_convergence,
    figure=plot_adapt_loop,
    summary=summarise,
    pair_axes=("mode",),  # replicate r of every mode starts from the same original network
    # NaN by design: the first round has no previous prior; a mode that never converges has
    # no stop round
    allow_nan=("prior_kl", "stop_round"),
    claims=CLAIMS,
)
