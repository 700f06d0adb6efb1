"""Reference replication: the original research's setup, uniform against concentrated priors.

The network, stimulus and protocol of the research anglesim grew from: the fully-connected
reference MLP (P² → P → 20 → 2, ReLU) on 101×101 gratings with clamped Bernoulli–Gaussian pixel
noise (``GratingSpec.reference()``), trained on finite datasets of D images (train/validation/
test 8D/2D/2D, Adam, lr 1e−3, batch 32, early stopping on the validation loss) with a squared
error on (cos 2θ, sin 2θ). Training angles come from a uniform prior or a von Mises prior on 2θ
(κ = 4 or 8, centred at 0, π/3 or π/2).

The stimulus noise is not additive Gaussian, so the propagated estimator does not apply: FI is
the bias-corrected linear Fisher information of the network's 2-D output (Kanitscheider et al.
2015) from T noisy images at θ ± Δθ/2, with its standard error, and d′ = √J·Δθ for the
discrimination of θ − Δθ/2 from θ + Δθ/2. The question: does concentrated training raise
sensitivity at likely angles, or mostly lower it at unlikely ones — and does the effect shrink as
D grows?

Run: ``anglesim run reference_replication [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim import angles as ang
from anglesim.distributions import AnglePrior, Uniform, VonMises
from anglesim.models import reference_mlp
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    band_footnote,
    given_bars,
    interval_bars,
    replicate_count,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import DTHETA, output_fisher, reference_spec

NAME = "reference_replication"

PRIORS: dict[str, AnglePrior] = {"uniform": Uniform()}
for _kappa in (4, 8):
    for _deg in (0, 60, 90):
        PRIORS[f"vm{_kappa}_{_deg}"] = VonMises(math.radians(_deg), float(_kappa))

SIZES = {
    "full": dict(image_size=101, datasets=[512, 1024, 2048], priors=list(PRIORS), epochs=60,
                 patience=5, n_angles=36, n_trials=250, replicates=6),
    "quick": dict(image_size=33, datasets=[16], priors=["uniform", "vm8_90"], epochs=2,
                  patience=2, n_angles=8, n_trials=20, replicates=2),
}


def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train the reference MLP on D images from one prior; measure FI, d′ and error."""
    sz, on = ctx.params, ctx.on_device
    spec = reference_spec(sz["image_size"])
    prior = PRIORS[str(ctx.condition["prior"])]
    model = reference_mlp(image_size=spec.size, generator=ctx.seed_generator())
    plan = Phase("train", prior, spec, loss="vector_mse", optimizer="adam", lr=1e-3,
                 batch_size=32, dataset_size=int(ctx.condition["dataset_size"]),
                 epochs=sz["epochs"], patience=sz["patience"], eval_angles=sz["n_angles"])
    history = train(model, [plan], ctx.seed, **on)
    grid = ctx.angles.double()
    fisher, stderr = output_fisher(model, spec, grid, sz["n_trials"], DTHETA,
                                   ctx.generator("fisher"))
    error = evaluate_error(model, spec, sz["n_angles"], repeats=16,
                           generator=ctx.generator("eval"))
    angle = grid.numpy()
    ds = xr.Dataset(
        {
            "fisher": ("angle", fisher),
            "fisher_stderr": ("angle", stderr),
            "d_prime": ("angle", np.sqrt(np.clip(fisher, 0, None)) * DTHETA),
            "abs_error": error.assign_coords(angle=angle),
            "prior_density": ("angle", prior.pdf(angle)),
            "epochs_run": ((), float(history.sizes["epoch"])),
            "test_like_val_loss": ((), float(history["val_loss"].min())),
        },
        coords={"angle": angle},
    )
    ds["fisher"].attrs = {
        "units": "rad^-2", "method": "linear_bias_corrected",
        "quantity": "bias-corrected linear Fisher information of the 2-D network output for "
                    "the spec's own (clamped Bernoulli-Gaussian) pixel noise, fixed phase"}
    ds["d_prime"].attrs = {"long_name": f"d' = sqrt(J) * dtheta, dtheta = {DTHETA:.5f} rad"}
    return ds


def effects(ds: xr.Dataset, near: float = math.pi / 8, far: float = math.pi / 4) -> xr.Dataset:
    """Concentrated against uniform training, near and far from each prior's peak, per D.

    Per replicate, FI is averaged over the angles within ``near`` of the prior's peak (or
    beyond ``far``) — on a linear scale, since the bias-corrected estimate of a small FI can be
    negative. ``gain_near`` / ``gain_far`` = log₂(mean over concentrated replicates / mean over
    uniform replicates, same D); ``*_se`` its standard error by the delta method for
    independent replicates, √((s_c/m_c)² + (s_u/m_u)²)/ln 2, s the standard errors of the means.
    """

    ok = successful(ds)
    fi = ok["fisher"]
    out = {}
    labels = [p for p in ok["prior"].values if p != "uniform"]
    dim = xr.DataArray(labels, dims="concentrated")
    for region in ("near", "far"):
        gains, ses = [], []
        for label in labels:
            peak = PRIORS[str(label)].to_config()["loc"]
            masks = dict(zip(("near", "far"), ang.near_far(ok["angle"].values, peak, near, far),
                             strict=True))
            mask = xr.DataArray(masks[region], coords={"angle": ok["angle"]})
            stats = []
            for which in (label, "uniform"):
                per_rep = fi.sel(prior=which).where(mask).mean("angle")
                m = per_rep.mean("replicate")
                se = per_rep.std("replicate", ddof=1) / np.sqrt(per_rep.count("replicate"))
                stats.append((m.where(m > 0), se))
            (mc, sc), (mu, su) = stats
            gains.append(np.log2(mc / mu))
            ses.append(np.sqrt((sc / mc) ** 2 + (su / mu) ** 2) / math.log(2))
        out[f"gain_{region}"] = xr.concat(gains, dim=dim)
        out[f"gain_{region}_se"] = xr.concat(ses, dim=dim)
    return xr.Dataset(out)


def add_effects(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`effects` added (dims ``concentrated`` and ``dataset_size``)."""
    return ds.assign(effects(ds).data_vars)




def summarise(ds: xr.Dataset) -> str:
    """Gain of log₂ FI near and far from the peak, concentrated vs uniform, per D."""
    lines = ["log₂ FI, concentrated minus uniform training (± s.e.), near | far from the peak:"]
    for label in ds["concentrated"].values:
        cells = []
        for d in ds["dataset_size"].values:
            c = ds.sel(concentrated=label, dataset_size=d)
            cells.append(f"D={int(d)}: {float(c['gain_near']):+.2f}±{float(c['gain_near_se']):.2f}"
                         f" | {float(c['gain_far']):+.2f}±{float(c['gain_far_se']):.2f}")
        lines.append(f"  {label:>8}: " + "; ".join(cells))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": reference_spec(params["image_size"]).to_config(),
            "model": reference_mlp(image_size=params["image_size"]).config,
            "priors": {k: p.to_config() for k, p in PRIORS.items()}, "dtheta": DTHETA}


# ---- figure ----------------------------------------------------------------------------------


def plot_reference_replication(ds: xr.Dataset) -> plt.Figure:
    """Reference replication: d′ and FI around the orientation circle, and the prior's effect.

    Panels: (a, b) polar plots against 2θ (so the half-circle of orientations closes) of the
    output's linear FI and of d′ for Δθ = 2°, uniform training against the most concentrated
    prior, largest D (mean over replicates); (c) log₂ FI of concentrated over uniform networks
    near the prior's peak (±22.5°) and far from it (>45°) against D, averaged over the priors'
    centres, per κ, ± 1.96 s.e.; (d) mean absolute decoding error against D per prior.
    """
    ds = successful(ds)
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
        n_valid = ds["fisher"].isel(angle=0).count("replicate")  # over (prior, dataset_size)
        for i, kap in enumerate(kappas):
            members = [p for p in conc if p.startswith(kap + "_")]
            for region, marker, ls in (("near", "o", "-"), ("far", "s", "--")):
                gain = ds[f"gain_{region}"].sel(concentrated=members)
                se = ds[f"gain_{region}_se"].sel(concentrated=members)
                mean = gain.mean("concentrated")
                half = 1.96 * np.sqrt((se**2).sum("concentrated")) / len(members)
                n = n_valid.sel(prior=members + ["uniform"]).min("prior")
                given_bars(ax, sizes, mean.sel(dataset_size=sizes), half.sel(dataset_size=sizes),
                           n.sel(dataset_size=sizes),
                           PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)],
                           f"κ = {kap[2:]}, {region} peak", fmt=marker + ls, ms=3)
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
            interval_bars(ax, sizes, err.sel(dataset_size=sizes), colour, prior, bounds=(0, 90),
                          fmt="o-", ms=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dataset size D")
        ax.set_ylabel("mean |θ̂ − θ| over θ (deg)")
        ax.set_ylim(bottom=0)
        # beside the axes: the concentrated priors' points fill its upper left corner
        ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  title="prior\n(vmκ_centre°)", title_fontsize=6)
        ax.set_title("d  error on a uniform grid", loc="left")
        fig.suptitle(f"reference replication: {replicate_count(ds)}", fontsize=9)
        band_footnote(fig, "c: ±1.96 delta-method s.e. instead")
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question=("Does anglesim reproduce the reference recipe's FI and d′ around the circle and the "
              "prior's effect on them?"),
    replicate=replicate,
    sizes=SIZES,
    grid=lambda params: {"prior": params["priors"], "dataset_size": params["datasets"]},
    describe=describe,
    postprocess=add_effects,
    figure=plot_reference_replication,
    summary=summarise,
    pair_axes=(),  # every (prior, D) trains its own networks from its own seeds
)
