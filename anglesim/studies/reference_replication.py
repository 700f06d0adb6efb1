"""Reference replication: the original research's setup, uniform against concentrated priors.

The network, stimulus and protocol of the research anglesim grew from (lrast/angleFinetuning):
the fully-connected reference MLP (P² → P → 20 → 2, ReLU) on 101×101 gratings with clamped
Bernoulli–Gaussian pixel noise (``GratingSpec.reference()``), trained on finite datasets of D
images (train/validation/test 8D/2D/2D, Adam, lr 1e−3, batch 32, early stopping on the
validation loss) with a squared error on (cos 2θ, sin 2θ). Training angles come from a uniform
prior or a von Mises prior on 2θ (κ = 4 or 8, centred at 0, π/3 or π/2: :data:`PRIORS`).

The stimulus noise is not additive Gaussian, so the propagated estimator does not apply: FI is
the bias-corrected linear Fisher information of the network's 2-D output (Kanitscheider et al.
2015) from T noisy images at θ ± Δθ/2, with its standard error, and d′ = √J·Δθ for the
discrimination of θ − Δθ/2 from θ + Δθ/2 (the reference research's measure of sensitivity).
The question: does concentrated training raise sensitivity at likely angles, or mostly lower it
at unlikely ones?

**Design.** Every (prior, D) cell trains its own networks from its own seeds, so a concentrated
arm and the uniform arm are independent (Welch's test, not paired). Regions of the angle grid
follow :func:`anglesim.angles.near_far` around each concentrated prior's peak: *near*, within
22.5° (9 of the 36 grid angles), *far*, 45° or more from it (19 of 36); the uniform networks'
FI and error are averaged over the same regions. The declared claims (:data:`CLAIMS`, at
D = 512 for κ = 4 and κ = 8 centred at 90°, Holm over the family of 6), each a ratio of
geometric means of concentrated over uniform networks, tested on the log scale:

* ``near_gain``: the mean FI near the peak is higher after concentrated training;
* ``far_loss``: the mean FI far from the peak is lower;
* ``error_far``: the mean decoding error far from the peak is higher;
* exploratory: the decoding error near the peak (either direction).

**Sizes.** Full: priors uniform, κ = 4 and κ = 8 at 90°, D = 512, 8 replicates each (≥ 8 per
arm for the Welch contrasts). A replicate costs about 24 CPU s (rendering the 12D images and
FI's 18 000) plus 0.5 s an epoch, 26–36 CPU s measured (8–23 epochs; early stopping took 11–27
epochs on average at D = 512 in the earlier runs): about 830 CPU s, 7 min on 2 workers. On the
earlier runs' six replicates per arm the near gain's MDE at Holm's level was ×1.8 against
observed ×1.05 (κ = 4) and ×1.37 (κ = 8): it may stay unresolved, while the far loss (×0.03–0.13,
MDE ×1.7–2.6) and the far error (×20–65) were far beyond theirs. The earlier design (all
seven priors × D ∈ {512, 1024, 2048}, 150 worker-minutes) stays available as an
override, ``grid.prior=[uniform,vm4_0,vm4_60,vm4_90,vm8_0,vm8_60,vm8_90]
grid.dataset_size=[512,1024,2048]``: a D = 2048 replicate costs about three times a D = 512
one. Quick: uniform and κ = 8 at 90° on 33×33 images, D = 16, 2 replicates (a smoke test; its
claims, declared at D = 512, are "not in this run").

Run: ``anglesim run reference_replication [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import FuncFormatter, NullLocator

from anglesim import angles as ang
from anglesim.claims import Contrast
from anglesim.distributions import AnglePrior, Uniform, VonMises
from anglesim.models import reference_mlp
from anglesim.plotting import (
    PHASE_COLOURS,
    RatioLocator,
    angle_axis,
    band,
    caption,
    log_band,
    mark_angle,
    mean_ci,
    panel_letters,
    print_figure,
    print_style,
    radius_axis,
    ratio_points,
    successful,
)
from anglesim.stats import welch_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import DTHETA, labelled, output_fisher, reference_spec

NAME = "reference_replication"

PRIORS: dict[str, AnglePrior] = {"uniform": Uniform()}
for _kappa in (4, 8):
    for _deg in (0, 60, 90):
        PRIORS[f"vm{_kappa}_{_deg}"] = VonMises(math.radians(_deg), float(_kappa))
CLAIM_PRIORS = ["vm4_90", "vm8_90"]
"""The concentrated priors the claims are about (each against uniform training)."""
CLAIM_SIZE = 512
"""The dataset size D the claims are about."""
REGIONS = ("near", "far")
"""Regions of the angle grid around a concentrated prior's peak: within 22.5°, 45° or more."""

SIZES = {
    "full": dict(image_size=101, datasets=[CLAIM_SIZE], priors=["uniform", *CLAIM_PRIORS],
                 epochs=60, patience=5, n_angles=36, n_trials=250, replicates=8),
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


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": reference_spec(params["image_size"]).to_config(),
            "model": reference_mlp(image_size=params["image_size"]).config,
            "priors": {k: p.to_config() for k, p in PRIORS.items()}, "dtheta": DTHETA}


# ---- derived measures ------------------------------------------------------------------------


def peak(label: str) -> float:
    """The peak (radians) of the concentrated prior ``label``."""
    return float(PRIORS[label].to_config()["loc"])


def region_masks(angle: xr.DataArray, labels: list[str], near: float = math.pi / 8,
                 far: float = math.pi / 4) -> xr.DataArray:
    """Boolean masks over ``angle`` (dims ``concentrated``, ``region``, ``angle``): within
    ``near`` of each concentrated prior's peak and ``far`` or more from it
    (:func:`anglesim.angles.near_far`'s one boundary rule)."""
    masks = np.array([np.stack(ang.near_far(angle.values, peak(label), near, far))
                      for label in labels]).reshape(len(labels), len(REGIONS), angle.size)
    return xr.DataArray(masks, dims=("concentrated", "region", "angle"),
                        coords={"concentrated": labels, "region": list(REGIONS),
                                "angle": angle.values})


LABELS = {
    "prior": ("1", "training prior: uniform, or von Mises on 2θ as vm<κ>_<centre in deg>"),
    "dataset_size": ("1", "training images D (8D train, 2D validation, 2D test)"),
    "concentrated": ("1", "concentrated prior whose peak defines the regions"),
    "region": ("1", "region of the angle grid: within 22.5° of the concentrated prior's peak "
                    "(near) or 45° or more from it (far)"),
    "angle": ("rad", "orientation θ"),
    "replicate": ("1", "replicate index within the condition"),
    "fisher": ("rad^-2", "bias-corrected linear FI of the 2-D network output"),
    "fisher_stderr": ("rad^-2", "standard error of the bias-corrected linear FI"),
    "d_prime": ("1", f"d′ = √J·Δθ for Δθ = {DTHETA:.5f} rad"),
    "abs_error": ("rad", "mean absolute decoding error |θ̂ − θ|"),
    "prior_density": ("1/rad", "training prior density"),
    "epochs_run": ("1", "epochs trained before early stopping"),
    "test_like_val_loss": ("1", "lowest validation loss (squared error on (cos 2θ, sin 2θ))"),
    "region_angles": ("1", "grid angles in the region"),
    "fisher_region": ("rad^-2", "FI, mean over the region's angles"),
    "abs_error_region": ("rad", "mean absolute decoding error over the region's angles"),
    "gain": ("1", "log2 ratio of geometric-mean region FI, concentrated over uniform training"),
    "gain_ci": ("1", "half-width of the 95% Welch t interval of gain (log2)"),
}
"""Units and long names of the study's variables and coordinates."""


def measures(ds: xr.Dataset) -> xr.Dataset:
    """Region means per replicate, and the concentrated-over-uniform gain per region and D.

    * ``fisher_region``, ``abs_error_region``: FI and error averaged over each region around
      each concentrated prior's peak, for every prior's networks (on a linear scale: the
      bias-corrected estimate of a small FI can be negative at single angles);
    * ``gain``: log₂(geometric mean over the concentrated prior's replicates / geometric mean
      over the uniform replicates) of ``fisher_region``, same D and region (the estimate of
      the claims' Welch test on the log scale), and ``gain_ci`` the half-width of its 95%
      Welch t interval (:func:`anglesim.stats.welch_ci`; Welch 1947).
    """
    ok = successful(ds)
    labels = [str(p) for p in ok["prior"].values if p != "uniform"]
    masks = region_masks(ok["angle"], labels)
    fi = ok["fisher"].where(masks).mean("angle")
    gains, halves = [], []
    for label in labels:
        log_fi = np.log2(fi.sel(concentrated=label, drop=True).where(lambda v: v > 0))
        gain, half = welch_ci(log_fi.sel(prior=label, drop=True),
                              log_fi.sel(prior="uniform", drop=True))
        gains.append(gain)
        halves.append(half)
    dim = xr.DataArray(labels, dims="concentrated")
    return xr.Dataset({
        "fisher_region": fi,
        "abs_error_region": ok["abs_error"].where(masks).mean("angle"),
        "region_angles": masks.sum("angle"),
        "gain": xr.concat(gains, dim=dim),
        "gain_ci": xr.concat(halves, dim=dim),
    })


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added, and units and long names on every variable."""
    m = measures(ds)
    out = ds.assign(m.data_vars)
    for name in m.data_vars:
        out[name].attrs = {}
    return labelled(out, LABELS)


# ---- the declared claims ---------------------------------------------------------------------


def _against_uniform(name: str, measure: str, region: str, label: str, statement: str,
                     direction: str, exploratory: bool = False) -> Contrast:
    """The networks trained on ``label`` against uniformly trained ones, in ``region`` around
    its peak, at D = :data:`CLAIM_SIZE`: Welch on the log scale (independent networks)."""
    return Contrast(name=f"{name}_{label}", statement=statement, measure=measure,
                    arm={"prior": label}, against={"prior": "uniform"}, paired=False,
                    where={"concentrated": label, "region": region,
                           "dataset_size": [CLAIM_SIZE]},
                    over=["dataset_size"], scale="ratio", direction=direction,
                    exploratory=exploratory)


def _claims() -> list[Contrast]:
    out = []
    for label in CLAIM_PRIORS:
        kappa, deg = label[2:].split("_")
        prior = f"a von Mises prior at {deg}° (κ = {kappa})"
        out += [
            _against_uniform("near_gain", "fisher_region", "near", label, f"training on {prior} "
                             "raises the mean FI within 22.5° of its peak above uniform "
                             "training's", "greater"),
            _against_uniform("far_loss", "fisher_region", "far", label, f"training on {prior} "
                             "lowers the mean FI 45° or more from its peak below uniform "
                             "training's", "less"),
            _against_uniform("error_far", "abs_error_region", "far", label, f"training on "
                             f"{prior} raises the decoding error 45° or more from its peak "
                             "above uniform training's", "greater"),
        ]
    for label in CLAIM_PRIORS:
        out.append(_against_uniform(
            "error_near", "abs_error_region", "near", label, "the decoding error within 22.5° "
            f"of the peak of {label}, concentrated over uniform training", "differs",
            exploratory=True))
    return out


CLAIMS = _claims()
"""The study's planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """Region-mean FI per arm and the concentrated-over-uniform gain, with 95% t intervals,
    the decoding errors, and the figure's caption (the claims table follows, from the runner)."""
    if "gain" not in ds:
        ds = add_measures(ds)
    ok = successful(ds)
    lines = ["log₂ FI, concentrated over uniform training (ratio of geometric means, 95% Welch "
             "t interval), near (±22.5°) | far (≥ 45°) from the prior's peak:"]
    for label in ok["concentrated"].values:
        cells = []
        for d in ok["dataset_size"].values:
            c = ok.sel(concentrated=label, dataset_size=d)
            cells.append(" | ".join(
                f"{float(c['gain'].sel(region=r)):+.2f} ± {float(c['gain_ci'].sel(region=r)):.2f}"
                for r in REGIONS))
            cells[-1] = f"D = {int(d)}: {cells[-1]}"
        lines.append(f"  {label:>8}: " + "; ".join(cells))
    lines.append("mean decoding error over the grid (deg; mean and 95% t interval over "
                 "replicates):")
    for prior in ok["prior"].values:
        cells = []
        for d in ok["dataset_size"].values:
            err = np.degrees(ok["abs_error"].sel(prior=prior, dataset_size=d).mean("angle"))
            m, h = mean_ci(err)
            cells.append(f"D = {int(d)}: {float(m):.2f} ± {float(h):.2f}° "
                         f"({int(err.count())} replicates)")
        lines.append(f"  {str(prior):>8}: " + "; ".join(cells))
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`, from what the figure drew)."""
    fig = plot_reference_replication(ds)
    try:
        counts = ds["region_angles"] if "region_angles" in ds else measures(ds)["region_angles"]
        counts = counts.isel(concentrated=0)
        near, far = int(counts.sel(region="near")), int(counts.sel(region="far"))
        d_max = int(ds["dataset_size"].max())
        return caption(fig, (
            "Reference replication: the reference MLP trained on D images from a uniform or a "
            f"von Mises prior (101×101 gratings at full size). (a) d′ for Δθ = 2° around the "
            f"orientation circle (against 2θ), (b) linear FI of the output and (c) decoding "
            f"error against θ, D = {d_max}; (d) mean FI within 22.5° of each concentrated "
            f"prior's peak ({near} of {ds.sizes['angle']} angles), (e) 45° or more from it "
            f"({far}) and (f) the mean error there, concentrated (colour) and uniform (grey) "
            "networks, independent replicates."))
    finally:
        plt.close(fig)


def plot_reference_replication(ds: xr.Dataset) -> plt.Figure:
    """Reference replication: d′, FI and error around the circle, and the prior's effect.

    Panels: (a) polar plot against 2θ (so the half-circle of orientations closes) of d′ for
    Δθ = 2°, mean over replicates, per prior, largest D; (b) the output's linear FI against θ,
    geometric mean and 95% t band of log FI, peaks marked; (c) mean absolute decoding error
    against θ; (d, e) mean FI near each concentrated prior's peak (±22.5°) and far from it
    (≥ 45°), concentrated networks beside uniform ones over the same angles, and (f) the
    decoding error far from the peak: geometric means with the 95% t interval of the log, one
    dot per replicate (independent networks: the claims compare them by Welch's test), one
    point per (prior, D) cell.
    """
    if "gain" not in ds:
        ds = add_measures(ds)
    ds = successful(ds)
    priors = [str(p) for p in ds["prior"].values]
    conc = [p for p in priors if p != "uniform"]
    colours = {"uniform": "0.45"}
    colours.update({p: PHASE_COLOURS[(i + 1) % len(PHASE_COLOURS)] for i, p in enumerate(conc)})
    d_max = ds["dataset_size"].values.max()
    theta_deg = np.degrees(ds["angle"].values)
    at_max = ds.sel(dataset_size=d_max)
    # the (concentrated prior, D) cells of panels d-f, in one dim
    cells = [(c, d) for c in conc for d in ds["dataset_size"].values]
    names = [f"{c}, D={int(d)}" if ds.sizes["dataset_size"] > 1 else c for c, d in cells]
    x = np.arange(len(cells), dtype=float)

    def per_cell(var: str, region: str, arm: str | None) -> xr.DataArray:
        values = [ds[var].sel(prior=arm or c, concentrated=c, region=region, dataset_size=d)
                  for c, d in cells]
        return xr.concat(values, dim="cell").assign_coords(cell=names).transpose("cell", ...)

    with print_style():
        fig, axes = print_figure(2, 3, width="double", aspect=0.62)
        spec = axes[0, 0].get_subplotspec()  # a: polar
        axes[0, 0].remove()
        ax = fig.add_subplot(spec, projection="polar")
        two_theta = np.append(2 * ds["angle"].values, 2 * ds["angle"].values[:1] + 2 * np.pi)
        for prior in priors:
            values = at_max["d_prime"].sel(prior=prior).mean("replicate").values
            ax.plot(two_theta, np.append(values, values[:1]), color=colours[prior], lw=1)
        ax.set_xticks(np.radians([0, 90, 180, 270]), ["0°", "45°", "90°", "135°"])
        radius_axis(ax, "d′ (Δθ = 2°)", angle=45.0)
        ax.set_title(f"d′, D = {int(d_max)}", loc="left", pad=12)
        polar = ax

        ax = axes[0, 1]
        for prior in priors:
            log_band(ax, theta_deg, at_max["fisher"].sel(prior=prior), colours[prior], prior)
        for c in conc:
            mark_angle(ax, peak(c), "", colours[c])
        ax.set_yscale("log")
        ax.set_ylabel("linear FI of output (rad⁻²)")
        angle_axis(ax)
        ax.set_title(f"FI, D = {int(d_max)}", loc="left")

        ax = axes[0, 2]
        for prior in priors:
            band(ax, theta_deg, np.degrees(at_max["abs_error"].sel(prior=prior)),
                 colours[prior], prior, bounds=(0, 90))
        ax.set_ylabel("mean |θ̂ − θ| (deg)")
        ax.set_ylim(bottom=0)
        angle_axis(ax)
        ax.set_title(f"error, D = {int(d_max)}", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="prior")

        for ax, var, region, ylabel, title in [
                (axes[1, 0], "fisher_region", "near", "mean FI (rad⁻²)",
                 "FI near the peak (grey: uniform)"),
                (axes[1, 1], "fisher_region", "far", "mean FI (rad⁻²)", "FI far from the peak"),
                (axes[1, 2], "abs_error_region", "far", "mean |θ̂ − θ| (deg)",
                 "error far from the peak")]:
            for offset, arm in ((-0.17, None), (0.17, "uniform")):
                values = per_cell(var, region, arm)
                if var == "abs_error_region":
                    values = np.degrees(values)
                colour = "0.45" if arm else None
                if arm is None:
                    for i, (c, _) in enumerate(cells):
                        ratio_points(ax, values.isel(cell=[i]), x=x[[i]], offset=offset,
                                     colour=colours[c], reference=None)
                else:
                    ratio_points(ax, values, x=x, offset=offset, colour=colour,
                                 reference=None)
            # ticks that read as numbers (no crowded minor labels over a narrow range)
            ax.yaxis.set_major_locator(RatioLocator())
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())
            # many cells (a wider grid by override): names turned upright
            ax.set_xticks(x, names, rotation=90 if len(cells) > 4 else 0)
            ax.set_xlim(-0.6, len(cells) - 0.4)
            ax.set_xlabel("concentrated prior")
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")
        panel_letters([polar, *axes.ravel()[1:]])
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
    postprocess=add_measures,
    figure=plot_reference_replication,
    summary=summarise,
    pair_axes=(),  # every (prior, D) trains its own networks from its own seeds
    claims=CLAIMS,
)
