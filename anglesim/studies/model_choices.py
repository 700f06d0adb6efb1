"""Model choices: do networks trained on a few angles have more FI there than between them?
And how rough are FI curves, by nonlinearity and readout?

**Question.** A network trained on a finite set of images could become most sensitive at the
orientations it was trained on ("memorised" sensitivity). The earlier design could not test
this: its finite set held 2,048 images at 2,048 random angles, so every "fresh" angle lay
within ~0.05° of a training angle. Here the finite set has **16 distinct training angles**
(evenly spaced 11.25° apart, the comb rotated by a random offset per replicate) × 128 noise
draws each, and FI of the decoded angle at the 16 training angles is compared with FI at the
16 angles **midway** between them, 5.6° from the nearest training angle.

**Arms.** The studies' standard CNN with each nonlinearity (relu, leaky_relu, gelu, softplus,
tanh) × readout (one angle, (cos 2θ, sin 2θ), 36 bins; cosine loss for the first two, cross
entropy for bins) × training data:

* ``finite`` — the comb: D = 256 gives 8D = 2,048 training images, 2D = 512 validation images
  (early stopping, patience 5, the best validation checkpoint kept) and 2D test images, all at
  the 16 comb angles (each image's angle drawn uniformly among them, so ≈128 ± 11 training
  images per angle), with fresh pixel noise on every image. A comb angle is a uniform density
  on a 1e-5-rad interval (``Mixture`` of narrow ``Uniform``), 1/20,000 of the half spacing.
* ``stream`` — a fresh batch of uniformly distributed orientations every step (as before).
  Its networks never saw the comb: they are the control for the training-vs-midway contrast
  (a comb offset is drawn for them the same way) and the networks whose roughness and peaks
  are reported.

**Measured.** FI of θ̂ (propagated pixel noise) at the 16 training and 16 midway angles
(``fisher_comb``; their geometric means ``fisher_comb_mean``) and the decoding error there
(``error_comb``, 32 noise draws per angle); FI at 64 grid angles (``fisher``), its roughness
(fraction of log-FI variance above the 4th harmonic of 2θ) and number of peaks (prominence
0.1 in log₁₀ FI); the decoding error on the grid.

**Primary contrasts** (:data:`CLAIMS`; one family, Holm over its 15 members): per nonlinearity ×
readout, finite-set networks' FI at the training angles over FI midway, paired within each
network (ratio of geometric means, t test on the log). Its direction ("greater") is the
memorisation hypothesis the study was built to test, declared before the pilot below; a result
the other way is reported as contradicted at the same level. Exploratory (no verdict, unadjusted):
the same ratio for stream networks (the control), and the readout differences in peak counts
of the earlier run (angle > cos/sin > bins readout) on stream networks.

**Sizes.** 8 replicates per cell (issue 23), 5 × 3 × 2 = 30 cells, 240 replicates. One
full-size replicate took 6.8–8.3 CPU s (stream) and 16–20 CPU s (finite: the validation images
share the training angles, so early stopping never ended the 32 epochs of a pilot network) on
the 2-core AMD EPYC container: ≈ 120 × 18 + 120 × 7.5 ≈ 51 CPU min, ≈ 26 min on 2 workers.
A pilot (3 finite-set networks each of relu/cos-sin, tanh/angle, gelu/bins) put FI at the
training angles at ×0.78, ×0.36 and ×0.66 of FI midway, with SDs of the log ratio 0.13, 0.88
and 0.19: at n = 8 and the family's Bonferroni level 0.05/15 the MDEs are ×1.28, ×5.5 and
×1.46, so the angle readout's cells may stay unresolved. Two stream networks gave ×0.97 and
×0.96. ``--quick``: two nonlinearities, the cos/sin readout, a 4-angle comb × 32 draws, 2
replicates.

Run: ``anglesim run model_choices [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr
from matplotlib.lines import Line2D
from scipy.signal import find_peaks

from anglesim import angles as ang
from anglesim.claims import Contrast
from anglesim.distributions import Mixture, Uniform
from anglesim.fisher import propagated_fisher
from anglesim.models import CNNConfig, build_model
from anglesim.plotting import (
    caption,
    interval_bars,
    log_band,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.stats import interval
from anglesim.stimuli import render
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import CNN, SPEC, describe_variables, expects_aperture_ties, fisher_variables

NAME = "model_choices"
LOSS_FOR_READOUT = {"angle": "cosine", "cossin": "cosine", "bins": "cross_entropy"}
FINITE_EPOCH_FACTOR = 4
"""Finite-set phases may run this many times the stream phase's epochs (early stopping ends
them sooner): one epoch of a finite set of 8D images is fewer steps than a stream epoch."""
CUTOFF = 4
"""Harmonics of 2θ up to this order count as smooth (the prior-driven shape)."""
PEAK_PROMINENCE = 0.1
"""A peak must stand this far (in log₁₀ FI) above its surroundings to count."""
COMB_WIDTH = 1e-5
"""Width (rad) of the uniform interval each comb angle is drawn from (a density needs one)."""
ANGLE_SETS = ("training", "midway")

SIZES = {
    "full": dict(epochs=8, steps=50, batch=64, comb_angles=16, draws_per_angle=128,
                 n_angles=64, error_repeats=32, replicates=8,
                 nonlinearities=["relu", "leaky_relu", "gelu", "softplus", "tanh"],
                 readouts=["angle", "cossin", "bins"], data=["stream", "finite"]),
    "quick": dict(epochs=1, steps=3, batch=16, comb_angles=4, draws_per_angle=32, n_angles=16,
                  error_repeats=4, replicates=2, nonlinearities=["relu", "tanh"],
                  readouts=["cossin"], data=["stream", "finite"]),
}

CLAIMS = [
    Contrast(
        name="training_above_midway",
        statement="after training on 16 angles × 128 noise draws, FI of θ̂ is higher at the "
                  "training angles than midway between them",
        measure="fisher_comb_mean",
        arm={"angle_set": "training"},
        against={"angle_set": "midway"},
        paired=True,  # both sets are measured on the same network
        where={"data": "finite"},
        over=["nonlinearity", "readout"],
        scale="ratio",
        direction="greater",
    ),
    Contrast(
        name="stream_control",
        statement="control: networks trained on a stream of uniform angles have the same FI "
                  "at the comb's training and midway angles",
        measure="fisher_comb_mean",
        arm={"angle_set": "training"},
        against={"angle_set": "midway"},
        paired=True,
        where={"data": "stream"},
        over=["nonlinearity", "readout"],
        scale="ratio",
        direction="differs",
        exploratory=True,
    ),
    Contrast(
        name="peaks_angle_over_cossin",
        statement="an angle readout gives more FI peaks than a (cos 2θ, sin 2θ) readout "
                  "(earlier run's observation)",
        measure="n_peaks",
        arm={"readout": "angle"},
        against={"readout": "cossin"},
        paired=False,  # different networks from different seeds
        where={"data": "stream"},
        over=["nonlinearity"],
        direction="greater",
        exploratory=True,
    ),
    Contrast(
        name="peaks_cossin_over_bins",
        statement="a (cos 2θ, sin 2θ) readout gives more FI peaks than a 36-bin readout "
                  "(earlier run's observation)",
        measure="n_peaks",
        arm={"readout": "cossin"},
        against={"readout": "bins"},
        paired=False,
        where={"data": "stream"},
        over=["nonlinearity"],
        direction="greater",
        exploratory=True,
    ),
]
"""The declared claims: the training-vs-midway contrast per nonlinearity × readout (the
family), and exploratory looks (the stream control, the earlier run's peak counts)."""


def comb(offset: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The comb's training angles offset + kπ/n (k = 0 … n − 1) and the angles midway between
    neighbours, offset + (k + ½)π/n wrapped to [0, π)."""
    k = np.arange(n)
    training = offset + k * math.pi / n
    return training, np.mod(training + math.pi / (2 * n), math.pi)


def comb_prior(training: np.ndarray, width: float = COMB_WIDTH) -> Mixture:
    """Equal-weight mixture of uniform densities ``width`` wide centred on each training
    angle: images drawn from it have one of the comb's angles (to within ``width``/2)."""
    return Mixture([Uniform(float(a) - width / 2, float(a) + width / 2) for a in training])


def comb_offset(ctx: ReplicateContext, n: int, width: float = COMB_WIDTH) -> float:
    """The replicate's comb offset, uniform on [width, π/n − width] (stream ``"comb"``): every
    comb interval then lies inside [0, π)."""
    u = float(ctx.numpy_generator("comb").random())
    return width + (math.pi / n - 2 * width) * u


def phase(readout: str, data: str, sz: dict, prior=None) -> Phase:
    """Training from scratch: a stream of uniform orientations, or the finite comb set of
    ``comb_angles × draws_per_angle`` images (8D training, 2D validation, 2D test) with early
    stopping."""
    finite = data == "finite"
    images = sz["comb_angles"] * sz["draws_per_angle"]
    if images % 8:
        raise ValueError(f"comb_angles × draws_per_angle must be a multiple of 8 (the training "
                         f"set is 8D images), got {images}")
    d = images // 8
    return Phase("train", prior if finite else Uniform(), SPEC, loss=LOSS_FOR_READOUT[readout],
                 lr=2e-3, epochs=sz["epochs"] * (FINITE_EPOCH_FACTOR if finite else 1),
                 steps_per_epoch=sz["steps"], batch_size=sz["batch"],
                 dataset_size=d if finite else None, patience=5, eval_angles=sz["n_angles"])


def roughness(log_fi: np.ndarray, cutoff: int = CUTOFF) -> float:
    """Fraction of a periodic curve's variance above harmonic ``cutoff`` (of 2θ on [0, π))."""
    coeffs = np.fft.rfft(log_fi - log_fi.mean())
    power = np.abs(coeffs) ** 2
    total = power[1:].sum()
    return float(power[cutoff + 1:].sum() / total) if total > 0 else 0.0


def n_peaks(log10_fi: np.ndarray, prominence: float = PEAK_PROMINENCE) -> int:
    """Local maxima of a periodic curve with at least ``prominence``, counted once each."""
    n = log10_fi.size
    tiled = np.concatenate([log10_fi, log10_fi, log10_fi])
    peaks, _ = find_peaks(tiled, prominence=prominence)
    return int(((peaks >= n) & (peaks < 2 * n)).sum())


@torch.no_grad()
def error_at(model, angles: np.ndarray, repeats: int, generator: torch.Generator) -> np.ndarray:
    """Mean |θ̂ − θ| (rad, wrapped at π) at each angle over ``repeats`` noisy images of
    :data:`SPEC`."""
    device = next(model.parameters()).device
    theta = torch.as_tensor(angles, dtype=torch.float32, device=device).repeat(repeats)
    model.eval()
    images = render(theta, SPEC, generator=generator, inplace=True)
    theta_hat = model.decode(model(images), model.readout_of("head"))
    err = ang.difference(theta_hat, theta).abs().reshape(repeats, len(angles)).mean(0)
    return err.double().cpu().numpy()


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network; measure FI at the comb's training and midway angles, its FI curve,
    roughness, peaks and error."""
    sz, on = ctx.params, ctx.on_device
    readout, data = str(ctx.condition["readout"]), str(ctx.condition["data"])
    n = int(sz["comb_angles"])
    offset = comb_offset(ctx, n)
    training, midway = comb(offset, n)
    model = build_model(CNNConfig.standard(readout,
                                           nonlinearity=str(ctx.condition["nonlinearity"])),
                        generator=ctx.seed_generator())
    plan = phase(readout, data, sz, comb_prior(training))
    history = train(model, [plan], ctx.seed, **on)
    grid = ctx.angles
    fisher = propagated_fisher(model, SPEC, grid, layers=["fc", "output"],
                               sigma=SPEC.noise_std, **on)
    log_fi = np.log10(fisher.sel(layer="output").values)
    error = evaluate_error(model, SPEC, sz["n_angles"], repeats=16,
                           generator=ctx.generator("eval"))
    at = propagated_fisher(model, SPEC, torch.as_tensor(np.concatenate([training, midway])),
                           layers=["output"], sigma=SPEC.noise_std, **on)
    at_comb = at.sel(layer="output").values.reshape(2, n)
    err_comb = error_at(model, np.concatenate([training, midway]), sz["error_repeats"],
                        ctx.generator("comb_error")).reshape(2, n)

    ds = xr.Dataset(
        {
            **fisher_variables(fisher=fisher.assign_coords(angle=grid.double().numpy())),
            "abs_error": error.assign_coords(angle=grid.double().numpy()),
            "roughness": ((), roughness(log_fi)),
            "n_peaks": ((), float(n_peaks(log_fi))),
            "fisher_comb": (("angle_set", "comb"), at_comb),
            "fisher_comb_mean": (("angle_set",), np.exp(np.log(at_comb).mean(1))),
            "error_comb": (("angle_set", "comb"), err_comb),
            "comb_offset": ((), offset),
        },
        coords={"angle_set": list(ANGLE_SETS), "comb": np.arange(n)},
    )
    # Early stopping ends finite-set runs at different epochs, and finite-set phases run longer
    # than stream ones: pad every history to the longest phase of the grid so all replicates
    # have one structure (NaN after the stop).
    ds["epochs_run"] = ((), float(history.sizes["epoch"]))
    history = history.drop_vars(["epoch_phase", "epoch_in_phase"]).reindex(
        epoch=np.arange(FINITE_EPOCH_FACTOR * sz["epochs"]))
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


ATTRS = {
    "fisher_comb": {"units": "rad^-2", "long_name": "FI of the decoded angle at the comb's "
                                                    "training and midway angles"},
    "fisher_comb_mean": {"units": "rad^-2", "long_name": "geometric mean FI of the decoded "
                                                         "angle over the comb's training "
                                                         "(or midway) angles"},
    "error_comb": {"units": "rad", "long_name": "mean absolute angular error at the comb's "
                                                "training and midway angles"},
    "comb_offset": {"units": "rad", "long_name": "the comb's first training angle (drawn per "
                                                 "replicate)"},
    "roughness": {"units": "1", "long_name": f"fraction of log-FI variance above harmonic "
                                             f"{CUTOFF} of 2θ"},
    "n_peaks": {"units": "1", "long_name": f"peaks of log10 FI of the decoded angle with "
                                           f"prominence >= {PEAK_PROMINENCE}"},
    "epochs_run": {"units": "1", "long_name": "epochs trained (early stopping ends finite-set "
                                              "runs)"},
    "angle_set": {"units": "1", "long_name": "comb angles: training, or midway between "
                                             "neighbouring training angles"},
    "comb": {"units": "1", "long_name": "index of the comb angle"},
    "nonlinearity": {"units": "1", "long_name": "the CNN's nonlinearity"},
    "readout": {"units": "1", "long_name": "the CNN's readout (loss: cosine for angle and "
                                           "cos/sin, cross entropy for bins)"},
    "data": {"units": "1", "long_name": "training data: stream of uniform angles, or the "
                                        "finite comb set"},
}


def add_metadata(ds: xr.Dataset) -> xr.Dataset:
    """Units and long names on every variable and coordinate (:data:`ATTRS`, then the
    shared ones of :func:`describe_variables`)."""
    return describe_variables(ds, ATTRS)


def _fold(values: xr.DataArray) -> str:
    """Geometric mean and 95% t interval of the log over replicates, as '×m [lo, hi]'."""
    out = interval(values, "replicate", log=True, min_n=2)
    return (f"×{float(out['mean']):.3g} [{float(out['low']):.3g}, {float(out['high']):.3g}]"
            if np.isfinite(float(out["low"])) else f"×{float(out['mean']):.3g}")


def _mean_ci(values: xr.DataArray, fmt: str = ".2f") -> str:
    out = interval(values, "replicate", min_n=2)
    if not np.isfinite(float(out["low"])):
        return f"{float(out['mean']):{fmt}}"
    return f"{float(out['mean']):{fmt}} [{float(out['low']):{fmt}}, {float(out['high']):{fmt}}]"


def summarise(ds: xr.Dataset) -> str:
    """FI at training over midway angles per cell (paired, 95% CI), then the exploratory
    roughness and peak counts (means and 95% t intervals over replicates)."""
    ok = successful(ds)
    ratio = ok["fisher_comb_mean"].sel(angle_set="training") / ok["fisher_comb_mean"].sel(
        angle_set="midway")
    n = int(ds.sizes["comb"])
    lines = [f"FI of θ̂ at the {n} comb training angles / midway between them (geometric mean "
             "over replicates, 95% paired t interval of the log):"]
    for data in ok["data"].values:
        for readout in ok["readout"].values:
            cells = [f"{nl} {_fold(ratio.sel(data=data, readout=readout, nonlinearity=nl))}"
                     for nl in ok["nonlinearity"].values]
            lines.append(f"  {data:>6} {readout:>6}: " + "; ".join(cells))
    err = np.degrees(ok["error_comb"].mean("comb"))
    if "finite" in ok["data"].values:
        lines.append("decoding error of finite-set networks at training | midway angles (deg, "
                     "mean [95% t interval]):")
        for readout in ok["readout"].values:
            cell = err.sel(data="finite", readout=readout)
            cells = [f"{nl} {_mean_ci(cell.sel(nonlinearity=nl, angle_set='training'))} | "
                     f"{_mean_ci(cell.sel(nonlinearity=nl, angle_set='midway'))}"
                     for nl in ok["nonlinearity"].values]
            lines.append(f"  {readout:>6}: " + "; ".join(cells))
    lines.append("exploratory (stream networks): roughness | FI peaks, mean [95% CI]:")
    stream = ok.sel(data="stream") if "stream" in ok["data"].values else ok.isel(data=0)
    for readout in stream["readout"].values:
        cells = [f"{nl} {_mean_ci(stream['roughness'].sel(readout=readout, nonlinearity=nl))}"
                 f" | {_mean_ci(stream['n_peaks'].sel(readout=readout, nonlinearity=nl), '.1f')}"
                 for nl in stream["nonlinearity"].values]
        lines.append(f"  {readout:>6}: " + "; ".join(cells))
    lines.append("figure: " + figure_caption(ds))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "cutoff": CUTOFF, "peak_prominence": PEAK_PROMINENCE, "comb_width": COMB_WIDTH,
            "loss_for_readout": LOSS_FOR_READOUT}


# ---- figure ----------------------------------------------------------------------------------

DATA_COLOURS = {"finite": "#c2410c", "stream": "0.45"}


def _readout_colours(readouts: list[str]) -> dict[str, tuple]:
    return dict(zip(readouts, plt.get_cmap("viridis")(np.linspace(0.05, 0.75, len(readouts))),
                    strict=True))


def plot_model_choices(ds: xr.Dataset) -> plt.Figure:
    """(a) FI of θ̂ against θ per nonlinearity (stream networks, the first readout); (b)
    roughness and (c) FI peaks per nonlinearity and readout (stream networks; exploratory);
    (d–f) one panel per readout: FI at the comb's training angles over FI midway, per network
    (paired ratios on a log axis), finite-set networks beside the stream control."""
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    nls = [str(v) for v in ds["nonlinearity"].values]
    readouts = [str(v) for v in ds["readout"].values]
    datas = [str(v) for v in ds["data"].values]
    stream = ds.sel(data="stream") if "stream" in datas else ds.isel(data=0)
    x = np.arange(len(nls))
    colours = _readout_colours(readouts)
    step = 0.6 / max(len(readouts), 1)
    with print_style():
        fig, axes = print_figure(2, 3, width="double", aspect=0.8)
        ax = axes[0, 0]
        nl_colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.8, len(nls)))
        for colour, nl in zip(nl_colours, nls, strict=True):
            log_band(ax, theta_deg, stream["fisher"].sel(layer="output", nonlinearity=nl,
                                                         readout=readouts[0]), colour, nl)
        ax.set_yscale("log")
        ax.set_xlim(0, 180)
        ax.set_xticks([0, 45, 90, 135, 180])
        ax.set(xlabel="orientation θ (deg)", ylabel="FI of θ̂ (rad⁻²)",
               title=f"FI, stream, {readouts[0]} readout")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=3, frameon=False,
                  handlelength=1.2, columnspacing=0.8)

        for ax, var, label, bounds in ((axes[0, 1], "roughness", "roughness (1)", (0, 1)),
                                       (axes[0, 2], "n_peaks", "FI peaks (count)",
                                        (0, None))):
            for g, readout in enumerate(readouts):
                interval_bars(ax, x + (g - (len(readouts) - 1) / 2) * step,
                              stream[var].sel(readout=readout, nonlinearity=nls),
                              colours[readout], readout, bounds=bounds, ms=3)
            ax.set_xticks(x, nls, rotation=30)
            ax.set_xlabel("nonlinearity")
            ax.set_ylabel(label)
            ax.set_ylim(0, 1 if var == "roughness" else None)
        axes[0, 1].set_title("roughness (exploratory)")
        axes[0, 2].set_title("FI peaks (exploratory)")

        mean = ds["fisher_comb_mean"]
        offsets = {"finite": -0.17, "stream": 0.17}
        for ax, readout in zip(axes[1], readouts, strict=False):
            for data in datas:
                cell = mean.sel(readout=readout, data=data, nonlinearity=nls)
                paired_difference(ax, cell.sel(angle_set="midway"),
                                  cell.sel(angle_set="training"), x=x + offsets.get(data, 0),
                                  ratio=True, colour=DATA_COLOURS.get(data, "k"),
                                  connect=False, spread=0.06)
            ax.set_xticks(x, nls, rotation=30)
            ax.set_xlim(-0.6, len(nls) - 0.4)
            ax.set_xlabel("nonlinearity")
            ax.set_ylabel("FI training / midway (ratio)")
            ax.set_title(f"training vs midway, {readout}")
        for ax in axes[1][len(readouts):]:
            ax.set_visible(False)
        n = int(ds.sizes["comb"])
        handles = [Line2D([], [], color=colours[r], marker="o", ls="", label=f"{r} readout")
                   for r in readouts]
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles),
                   frameon=False)
        handles = [Line2D([], [], color=DATA_COLOURS.get(d, "k"), marker="o", ls="",
                          label=(f"finite: {n} training angles" if d == "finite"
                                 else "stream of uniform angles (control)")) for d in datas]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles),
                   frameon=False)
        panel_letters(fig)
    return fig


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and their n."""
    fig = plot_model_choices(ds)
    n = int(ds.sizes["comb"])
    text = caption(fig, f"Networks differing in nonlinearity and readout, trained on a stream "
                        f"of uniform orientations or on {n} comb angles with fresh pixel noise "
                        f"on each image; (d–f) FI of θ̂ at the {n} training angles over FI "
                        "midway between them, per network.")
    plt.close(fig)
    return text


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question=("Do networks trained on a few angles have more FI at those angles than between "
              "them, and how rough are FI curves by nonlinearity and readout?"),
    replicate=replicate,
    sizes=SIZES,
    grid=lambda params: {"nonlinearity": params["nonlinearities"], "readout": params["readouts"],
                         "data": params["data"]},
    describe=describe,
    postprocess=add_metadata,
    figure=plot_model_choices,
    summary=summarise,
    pair_axes=(),  # every model choice trains its own networks from its own seeds
    # NaN by design: stream phases have no validation loss, and the history is padded to a
    # common epoch axis (finite-set runs stop early)
    allow_nan=("val_loss", "train_loss", "eval_error"),
    claims=CLAIMS,
)
