"""Learning dynamics: do common orientations become sensitive first, and do FI peaks follow
the prior from early in training?

**Question.** Benjamin et al. 2022 (Nat Commun 13:7972) show that gradient descent makes a
network sensitive to common orientations before rare ones; Henderson & Serences 2021 (J Vision
21(8):10) find that the peaks of a CNN's Fisher information follow its (rotated) training
distribution, grow with depth, and appear early in training. A study that measures FI only
after training cannot tell "first" or "early"; this one stores the propagated FI of every layer
at checkpoints during training (dimension ``step``: 0, 10, 25, 50, 100, 200, 400 optimiser
steps at full size).

**Arms.** The standard CNN (cos/sin readout, cosine loss, Adam 2e-3, batches of 64 fresh
gratings) is trained from scratch for 400 steps under one of four priors (grid axis
``prior``): ``cos_90``, p ∝ 2 − cos 2θ (mode 90°, p_max/p_min = 3), and von Mises priors on the
doubled angle with κ = 1 (p_max/p_min = e² ≈ 7.4) centred at 0° (``vm_0``), 22.5° (``vm_22_5``)
and 45° (``vm_45``): a cardinal, an in-between and an oblique centre, so the pixel grid's own
preference cannot pass for the prior's. Each prior is run with clean labels and with label
noise that equalises the information per angle (grid axis ``labels``: ``clean``,
``equalised``), the two sharing each replicate's seed (``pair_axes``): the same initial
weights and the same images, only the labels differ.

**The label noise** (:class:`~anglesim.training.Task` ``informative_prior=Uniform()``; Benjamin
et al. Fig. 6d balanced noise against frequency the same way, by dropping labels at an
orientation-dependent rate). Each image's label θ is kept with probability
k(θ) = p_min/p(θ) and otherwise replaced by an angle drawn uniformly on [0, π). A replaced label
is independent of the image, so it carries no information about θ; the kept (informative)
labels then have density p(θ)·k(θ) = p_min at every angle, the same number per unit angle at
rare angles as at common ones, although common images still arrive more often. For the cosine
loss, linear in (cos 2y, sin 2y), a uniform label has zero expected gradient, so the expected
gradient at θ is p_min times the clean one at every angle: the label signal is that of a
uniform prior, the input statistics are the prior's. A fraction π·p_min of the labels is kept
(1/2 under ``cos_90``, e^{−1}/I₀(1) ≈ 0.29 under the von Mises priors).

**Measures** (per replicate, :func:`postprocess`). Angles are on a grid offset by half a step,
θ_k = (k + ½)π/n, so that no angle lies on a quarter boundary: *common* angles are those within
22.5° of the prior's mode (the quarter of the circle of highest density, its top quartile) and
*rare* those within 22.5° of the anti-mode (the bottom quartile), n/4 each. For every layer and
angle, the **half-time** t½ is the first time the FI reaches half its final (step-400) value,
interpolated linearly in FI between checkpoints on a log(1 + step) axis (0 when the FI at
step 0 already has half its final value). The **half-time gap** is the mean of log₂(1 + t½)
over common angles minus that over rare angles: negative when common angles get there first
(−1: their geometric-mean 1 + t½ is half the rare angles'). The **prior alignment**
a(t) = Σ J(θ,t) cos 2(θ − μ) / Σ J(θ,t) (μ the prior's mode) is the FI's share that leans
towards the mode (0 for a flat FI, at most 1); its **gain** is a(t) − a(0). The **peak offset**
is the circular mean of the final FI on the doubled angle, ½ arg Σ J(θ) e^{2iθ}, minus μ, in
degrees in [−90, 90).

**Declared claims** (before the data; one family, Holm over its 16 members):

* ``common_first``: under each prior with clean labels, the output's half-time gap is below 0
  (Benjamin et al.).
* ``equalised_removes_common_first``: under each prior, the gap with equalised labels is
  greater (less negative) than with clean labels, paired by replicate: information per angle,
  not frequency, orders the learning (the expected gradient is the uniform prior's, above).
  Benjamin et al.'s Fig. 6d found the opposite with one-hot labels and a squared loss (common
  angles still first), where a dropped label still pulls the output towards zero; with the
  cosine loss a random label pulls nowhere on average.
* ``peaks_follow_prior``: the final output FI's peak lies within ±11.25° of the prior's mode
  (half the spacing of the von Mises centres), an equivalence test, per prior (Henderson &
  Serences).
* ``early``: by step 50 (an eighth of training) the output FI's prior alignment has already
  grown, gain > 0, per prior (Henderson & Serences).

Exploratory: the gap and the alignment per layer (does the alignment grow with depth?), and
the gap of the equalised arm against 0.

**Sizes.** Full: 4 priors × 2 label arms × 16 paired replicates (128 trainings), 24 angles
(6 per window), 7 checkpoints, every layer (input, conv1, conv2, fc, head, output) with the
matrix-free (Krylov) solver at a relative error ≤ 1e-2 (far below the FI's spread between
angles; the exact solver costs ~6× more on the conv layers). One replicate took 20–34 CPU
seconds (user + sys) on a 2-core AMD EPYC container shared with other jobs: about 6 s of
training and 2 s of FI per checkpoint; 128 of them are ~45–70 CPU minutes, 25–35 min on 2
workers. A 4-replicate pilot (vm_0 and cos_90) gave SDs over replicates of 0.66–0.74 for the
clean gap, 0.71–0.94 for the paired equalised − clean change and 0.28–0.37 for the gain by
step 50, so at n = 16 with Holm over 16 members the MDEs are about 0.8, 0.8–1.0 and 0.3–0.4;
the pilot's vm_0 effects (−0.94, +0.68, +0.39) sit near them, cos_90's gap (+0.07) far below.
Quick: one prior (``vm_0``), 2 replicates, 20 steps, 8 angles.

**Figure** (:func:`~anglesim.studies.learning_dynamics.figure.plot_learning_dynamics`, 8
panels). Caption: bands and error bars are 95% t intervals over n replicates per condition
(on log axes: geometric means and the t interval of the log); paired differences: one dot per
replicate, their mean and 95% paired t interval over n pairs (:func:`figure_caption` gives the
sentence with the run's n).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from anglesim.distributions import AnglePrior, Gridded, Uniform, VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.stats import interval
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, Task, keep_probability, train

from .._recipes import CNN, SPEC, expects_aperture_ties
from .figure import figure_caption, plot_learning_dynamics
from .measures import (
    EARLY_STEP,
    QUARTER,
    add_measures,
    claims,
    offset_grid,
)

NAME = "learning_dynamics"

PRIORS = ("cos_90", "vm_0", "vm_22_5", "vm_45")
"""The priors (grid axis ``prior``): 2 − cos 2θ, and von Mises at 0°, 22.5° and 45°."""
CENTRES = {"cos_90": 90.0, "vm_0": 0.0, "vm_22_5": 22.5, "vm_45": 45.0}
"""Each prior's mode (degrees)."""
LABELS = ("clean", "equalised")
"""The label arms (grid axis ``labels``)."""

SIZES = {
    "full": dict(checkpoints=[0, 10, 25, 50, 100, 200, 400], steps_per_epoch=5, batch=64,
                 lr=2e-3, n_angles=24, kappa=1.0, priors=list(PRIORS), rtol=1e-2,
                 replicates=16),
    "quick": dict(checkpoints=[0, 10, 20], steps_per_epoch=5, batch=16, lr=2e-3,
                  n_angles=8, kappa=1.0, priors=["vm_0"], rtol=1e-2, replicates=2),
}
"""``checkpoints``: optimiser steps after which FI is measured (multiples of
``steps_per_epoch``; the history has one entry per ``steps_per_epoch`` steps); ``rtol``: the
Krylov solver's relative error bound."""


def make_prior(name: str, kappa: float) -> AnglePrior:
    """The prior ``name`` (:data:`PRIORS`): 2 − cos 2θ as a 720-point periodic piecewise-linear
    density (error below 1e-5 of its value), or VonMises(centre, κ) on the doubled angle."""
    if name == "cos_90":
        grid = np.arange(720) * math.pi / 720
        return Gridded(2.0 - np.cos(2.0 * grid))
    if name not in CENTRES:
        raise ValueError(f"prior must be one of {list(PRIORS)}, got {name!r}")
    return VonMises(math.radians(CENTRES[name]), kappa)


def training_phase(prior: AnglePrior, labels: str, params: dict) -> Phase:
    """The one training phase: fresh batches from ``prior``, the cosine loss, and for
    ``labels="equalised"`` the label noise that leaves as many informative labels per unit
    angle everywhere (``informative_prior=Uniform()``)."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {list(LABELS)}, got {labels!r}")
    steps = params["checkpoints"][-1]
    task = Task(loss="cosine", informative_prior=Uniform() if labels == "equalised" else None)
    return Phase("train", prior, SPEC, loss="cosine", lr=params["lr"],
                 epochs=steps // params["steps_per_epoch"],
                 steps_per_epoch=params["steps_per_epoch"], batch_size=params["batch"],
                 eval_angles=8, eval_repeats=1, tasks=[task])


def check_checkpoints(params: dict) -> list[int]:
    """The checkpoints, increasing from 0, each a multiple of ``steps_per_epoch``."""
    steps, every = params["checkpoints"], params["steps_per_epoch"]
    if (not isinstance(steps, list) or len(steps) < 3 or steps[0] != 0
            or any(b <= a for a, b in zip(steps, steps[1:], strict=False))
            or any(not isinstance(s, int) or s % every for s in steps)):
        raise ValueError(f"checkpoints must be at least 3 increasing multiples of "
                         f"steps_per_epoch={every} from 0, got {steps!r}")
    return steps


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network from scratch, measuring the FI of every layer at each checkpoint."""
    params = ctx.params
    checkpoints = check_checkpoints(params)
    name, labels = str(ctx.condition["prior"]), str(ctx.condition["labels"])
    prior = make_prior(name, float(params["kappa"]))
    angles = offset_grid(int(params["n_angles"]))
    model = build_model(CNN, generator=ctx.generator("init", device="cpu"))
    every = params["steps_per_epoch"]
    measured: list[xr.DataArray] = []

    def measure(net) -> None:
        measured.append(propagated_fisher(net, SPEC, angles, solver="krylov",
                                          rtol=params["rtol"], **ctx.on_device))

    def on_epoch(record: dict, net) -> None:
        if (record["epoch_in_phase"] + 1) * every in checkpoints:
            measure(net)

    measure(model)  # step 0
    history = train(model, [training_phase(prior, labels, params)], ctx.stream_seed("data"),
                    on_epoch=on_epoch, **ctx.on_device)
    fisher = xr.concat([fi.drop_vars(["solver"], errors="ignore") for fi in measured],
                       dim="step", coords="minimal", compat="override")
    fisher = fisher.assign_coords(step=("step", np.array(checkpoints)))
    fisher.attrs = {k: v for k, v in measured[-1].attrs.items()
                    if isinstance(v, str | int | float)}
    fisher.attrs.update(units="rad-2", long_name="propagated Fisher information about θ")
    theta = angles.double().numpy()
    keep = (keep_probability(theta, prior, Uniform()) if labels == "equalised"
            else np.ones_like(theta))
    ds = xr.Dataset({
        "fisher": fisher.drop_vars([c for c in fisher.coords if c not in fisher.dims]),
        "prior_density": ("angle", np.asarray(prior.pdf(theta), dtype=np.float64),
                          {"units": "1/rad", "long_name": "training prior density p(θ)"}),
        "label_keep": ("angle", keep,
                       {"units": "1", "long_name": "probability that a training label is kept"}),
    }).assign_coords(angle=theta)
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


def grid(params: dict) -> dict:
    """The priors the size runs, each with both label arms."""
    return {"prior": list(params["priors"]), "labels": list(LABELS)}


def describe(params: dict, cells: dict) -> dict:
    """The stimulus, the model, and the training phase of every cell (its prior and label
    noise), for the Dataset's config."""
    phases = {}
    for name in cells["prior"]:
        prior = make_prior(name, float(params["kappa"]))
        for labels in cells["labels"]:
            phases[f"{name}/{labels}"] = training_phase(prior, labels, params).to_config()
    return {"spec": SPEC.to_config(), "model": CNN.to_config(), "phases": phases,
            "centres_deg": {name: CENTRES[name] for name in cells["prior"]},
            "quarter_deg": math.degrees(QUARTER)}


METADATA = {
    "step": ("1", "optimiser steps completed"),
    "epoch": ("1", "training epoch (steps_per_epoch optimiser steps each)"),
    "epoch_phase": ("1", "training phase of the epoch"),
    "epoch_in_phase": ("1", "epoch within its phase"),
    "train_loss": ("1", "training loss 1 − cos 2(θ̂ − label), mean over the epoch"),
    "val_loss": ("1", "validation loss (NaN: every batch is fresh)"),
    "prior": ("1", "training prior"),
    "labels": ("1", "training labels: clean, or equalised by label noise"),
    "layer": ("1", "layer (dotted module path, 'input' or 'output')"),
    "replicate": ("1", "replicate index"),
    "failed": ("1", "the replicate's computation raised an error"),
    "error": ("1", "error message of a failed replicate ('' if none)"),
    "replicate_seed": ("1", "seed passed to the replicate's function"),
}
"""Units and long names for the variables and coordinates the training history and the runner
leave without (each is given only where missing)."""


def postprocess(ds: xr.Dataset) -> xr.Dataset:
    """Add the half-times, the gap, the alignment and the peak offset (see the module
    docstring), with the prior's mode as coordinate ``centre`` (degrees), and the units and
    long names :data:`METADATA` gives."""
    centre = xr.DataArray([CENTRES[str(p)] for p in ds["prior"].values], dims="prior",
                          attrs={"units": "deg", "long_name": "the prior's mode"})
    ds = add_measures(ds.assign_coords(centre=centre))
    for name, (units, long_name) in METADATA.items():
        if name in ds.variables:
            ds[name].attrs.setdefault("units", units)
            ds[name].attrs.setdefault("long_name", long_name)
    return ds


def summarise(ds: xr.Dataset) -> str:
    """The output's half-time gap, alignment gain by the early step and peak offset per cell
    (the early step is step 50, or the checkpoint nearest below it in a smaller run)."""
    out = ds.sel(layer="output")
    steps = [int(s) for s in out["step"].values if 0 < s <= EARLY_STEP] or [int(out["step"][1])]
    early = steps[-1]
    lines = ["output layer, mean over replicates [95% t interval] per prior × labels:"]
    for prior in out["prior"].values:
        for labels in out["labels"].values:
            cell = out.sel(prior=prior, labels=labels)
            if "failed" in cell:
                cell = cell.where(~cell["failed"])
            gap = _mean_ci(cell["half_time_gap"].values, "{:+.2f}")
            gain = _mean_ci(cell["alignment_gain"].sel(step=early).values, "{:+.3f}")
            peak = _mean_ci(cell["peak_offset"].values, "{:+.1f}°")
            lines.append(f"  {prior:8s} {labels:9s} gap {gap}; gain by step {early} {gain}; "
                         f"peak offset {peak}")
    lines.append("gap: log2 (1 + steps to half the final FI), common − rare angles (< 0: common "
                 "first); gain: alignment a(t) − a(0); peak offset: the final FI's circular "
                 "mean − the prior's mode")
    lines.append(f"figure: {figure_caption(ds)}")
    return "\n".join(lines)


def _mean_ci(values: np.ndarray, fmt: str) -> str:
    """The mean of the valid values with its 95% t interval (:func:`anglesim.stats.interval`;
    the mean alone below 3 values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    out = interval(xr.DataArray(values, dims="replicate"), "replicate")
    mean, low, high = (float(out[k]) for k in ("mean", "low", "high"))
    if not np.isfinite(low):
        return f"{fmt.format(mean)} (n = {values.size}, no interval)"
    return f"{fmt.format(mean)} [{fmt.format(low)}, {fmt.format(high)}] (n = {values.size})"


STUDY = Study(
    name=NAME,
    question="Does gradient descent make common orientations sensitive first, and do FI peaks "
             "follow the prior from early in training?",
    replicate=replicate,
    sizes=SIZES,
    grid=grid,
    describe=describe,
    postprocess=postprocess,
    figure=plot_learning_dynamics,
    summary=summarise,
    pair_axes=("labels",),  # both label arms train the same initial network on the same images
    devices=("cpu", "cuda"),
    allow_nan=("val_loss",),
    claims=claims(),
)
