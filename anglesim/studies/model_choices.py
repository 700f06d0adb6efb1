"""Model choices: how rough are FI curves, by nonlinearity, readout and training data?

Fisher-information curves of trained networks are rough: they wiggle from angle to angle far
more than the smooth prior they were trained on. Here CNNs that differ only in their
nonlinearity (relu, leaky_relu, gelu, softplus, tanh) and readout (one angle, (cos 2θ, sin 2θ),
36 bins) are trained on uniformly distributed orientations, either from a stream of fresh images
or from a fixed finite set of D images with early stopping. We measure the roughness of each
network's log-FI curve — the fraction of its variance above the 4th harmonic of its Fourier
series in 2θ — and its number of peaks, and, for the finite-set networks, FI at the angles the
network was trained on against FI at fresh angles.

Run: ``anglesim run model_choices [--quick]``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from scipy.signal import find_peaks

from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.models import CNNConfig, build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    band_footnote,
    fi_vs_angle_axis,
    interval_bars,
    log_band,
    replicate_count,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, evaluate_error, train

from ._recipes import CNN, SPEC, expects_aperture_ties

NAME = "model_choices"
LOSS_FOR_READOUT = {"angle": "cosine", "cossin": "cosine", "bins": "cross_entropy"}
FINITE_EPOCH_FACTOR = 4
"""Finite-set phases may run this many times the stream phase's epochs (early stopping ends
them sooner): one epoch of a finite set of 8D images is fewer steps than a stream epoch."""
CUTOFF = 4
"""Harmonics of 2θ up to this order count as smooth (the prior-driven shape)."""
PEAK_PROMINENCE = 0.1
"""A peak must stand this far (in log₁₀ FI) above its surroundings to count."""

SIZES = {
    "full": dict(epochs=8, steps=50, batch=64, dataset_size=256, n_angles=64, n_train_angles=64,
                 replicates=3,
                 nonlinearities=["relu", "leaky_relu", "gelu", "softplus", "tanh"],
                 readouts=["angle", "cossin", "bins"], data=["stream", "finite"]),
    "quick": dict(epochs=1, steps=3, batch=16, dataset_size=16, n_angles=16, n_train_angles=8,
                  replicates=2, nonlinearities=["relu", "tanh"], readouts=["cossin"],
                  data=["stream", "finite"]),
}


def phase(readout: str, data: str, sz: dict) -> Phase:
    """Uniform prior; a stream of fresh images, or a fixed set of D (8D train, 2D val, 2D test)."""
    finite = data == "finite"
    return Phase("train", Uniform(), SPEC, loss=LOSS_FOR_READOUT[readout], lr=2e-3,
                 epochs=sz["epochs"] * (FINITE_EPOCH_FACTOR if finite else 1),
                 steps_per_epoch=sz["steps"],
                 batch_size=sz["batch"], dataset_size=sz["dataset_size"] if finite else None,
                 patience=5, eval_angles=sz["n_angles"])


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


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network; measure its FI curve, roughness, peaks and error."""
    sz, on = ctx.params, ctx.on_device
    readout, data = str(ctx.condition["readout"]), str(ctx.condition["data"])
    model = build_model(CNNConfig.standard(readout,
                                           nonlinearity=str(ctx.condition["nonlinearity"])),
                        generator=ctx.seed_generator())
    plan = phase(readout, data, sz)
    history = train(model, [plan], ctx.seed, generator=ctx.root_generator(), **on)
    grid = ctx.angles
    fisher = propagated_fisher(model, SPEC, grid, layers=["fc", "output"],
                               sigma=SPEC.noise_std, **on)
    log_fi = np.log10(fisher.sel(layer="output").values)
    error = evaluate_error(model, SPEC, sz["n_angles"], repeats=16,
                           generator=ctx.generator("eval"))

    # FI at angles the network was trained on against fresh angles from the same prior.
    # The training angles are the first draws of the generator that built the finite set:
    # replay them from the same seed (stream networks get the same angles, never seen twice).
    train_angles = plan.prior.sample(8 * sz["dataset_size"], generator=ctx.root_generator())[
        : sz["n_train_angles"]].double()
    fresh = plan.prior.sample(sz["n_train_angles"], generator=ctx.generator("fresh")).double()
    at_train = propagated_fisher(model, SPEC, train_angles, layers=["output"],
                                 sigma=SPEC.noise_std, **on)
    at_fresh = propagated_fisher(model, SPEC, fresh, layers=["output"], sigma=SPEC.noise_std,
                                 **on)
    log_ratio = float(np.mean(np.log(at_train.values)) - np.mean(np.log(at_fresh.values)))

    ds = xr.Dataset(
        {
            "fisher": fisher.assign_coords(angle=grid.double().numpy()),
            "abs_error": error.assign_coords(angle=grid.double().numpy()),
            "roughness": ((), roughness(log_fi)),
            "n_peaks": ((), float(n_peaks(log_fi))),
            "train_fresh_log_ratio": ((), log_ratio),
        }
    )
    ds["roughness"].attrs = {"long_name": f"fraction of log-FI variance above harmonic {CUTOFF}"}
    ds["n_peaks"].attrs = {"long_name": f"peaks of log10 FI with prominence >= "
                                        f"{PEAK_PROMINENCE}"}
    ds["train_fresh_log_ratio"].attrs = {
        "long_name": "mean ln FI at training angles minus mean ln FI at fresh angles"}
    # Early stopping ends finite-set runs at different epochs, and finite-set phases run longer
    # than stream ones: pad every history to the longest phase of the grid so all replicates
    # have one structure (NaN after the stop).
    ds["epochs_run"] = ((), float(history.sizes["epoch"]))
    history = history.drop_vars(["epoch_phase", "epoch_in_phase"]).reindex(
        epoch=np.arange(FINITE_EPOCH_FACTOR * sz["epochs"]))
    return xr.merge([ds, history], combine_attrs="drop_conflicts")




def summarise(ds: xr.Dataset) -> str:
    """Roughness, peaks and the training-angle FI ratio, mean over replicates."""

    ok = successful(ds)
    lines = ["mean over replicates: roughness | peaks | ln FI(train angles) − ln FI(fresh)"]
    for data in ok["data"].values:
        for readout in ok["readout"].values:
            cells = []
            for nl in ok["nonlinearity"].values:
                c = ok.sel(data=data, readout=readout, nonlinearity=nl)
                cells.append(f"{nl} {float(c['roughness'].mean()):.2f}|"
                             f"{float(c['n_peaks'].mean()):.1f}|"
                             f"{float(c['train_fresh_log_ratio'].mean()):+.2f}")
            lines.append(f"  {data:>6} {readout:>6}: " + "; ".join(cells))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "cutoff": CUTOFF, "peak_prominence": PEAK_PROMINENCE,
            "loss_for_readout": LOSS_FOR_READOUT}


# ---- figure ----------------------------------------------------------------------------------


def plot_model_choices(ds: xr.Dataset) -> plt.Figure:
    """Model choices: roughness and peaks of FI curves by nonlinearity, readout and data.

    Panels: (a) FI of the decoded angle for each nonlinearity (first readout, stream data;
    geometric mean over replicates); (b) roughness, the fraction of log-FI variance above the
    cut-off harmonic, per nonlinearity and readout (stream data); (c) number of FI peaks;
    (d) ln FI at the training angles minus at fresh angles, finite set against stream.
    """
    ds = successful(ds)
    theta_deg = np.degrees(ds["angle"].values)
    nls = [str(v) for v in ds["nonlinearity"].values]
    readouts = [str(v) for v in ds["readout"].values]
    datas = [str(v) for v in ds["data"].values]
    stream = ds.sel(data="stream") if "stream" in datas else ds.isel(data=0)
    x = np.arange(len(nls))

    def _dots(ax, var, groups, select, width=0.6, bounds=None):
        step = width / max(len(groups), 1)
        for g, group in enumerate(groups):
            interval_bars(ax, x + (g - (len(groups) - 1) / 2) * step,
                          select(group)[var].sel(nonlinearity=nls),
                          PHASE_COLOURS[(g + 1) % len(PHASE_COLOURS)], group, bounds=bounds,
                          ms=3)
        ax.set_xticks(x, nls, rotation=30)

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), constrained_layout=True)
        ax = axes[0]
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(nls)))
        for colour, nl in zip(colours, nls, strict=True):
            fi = stream["fisher"].sel(layer="output", nonlinearity=nl, readout=readouts[0])
            log_band(ax, theta_deg, fi, colour, nl)
        fi_vs_angle_axis(ax)
        ax.legend(frameon=False, fontsize=7)
        ax.set_title(f"a  FI, {readouts[0]} readout", loc="left")

        ax = axes[1]
        _dots(ax, "roughness", readouts, lambda r: stream.sel(readout=r), bounds=(0, 1))
        ax.set_ylabel("roughness (power above cut-off)")
        ax.set_ylim(0, 1)
        ax.legend(frameon=False, fontsize=7, title="readout", title_fontsize=7)
        ax.set_title("b  roughness", loc="left")

        ax = axes[2]
        _dots(ax, "n_peaks", readouts, lambda r: stream.sel(readout=r), bounds=(0, None))
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
        fig.suptitle(f"model choices: {replicate_count(ds)}", fontsize=9)
        band_footnote(fig)
    return fig


def _pool_readouts(ds: xr.Dataset) -> xr.Dataset:
    """Treat (readout, replicate) pairs as replicates, for measures pooled over readouts."""
    pooled = ds.stack(pooled=("readout", "replicate")).reset_index("pooled", drop=True)
    return pooled.rename(pooled="replicate")


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question=("How do nonlinearity, readout and finite training data shape the roughness and peaks "
              "of FI curves?"),
    replicate=replicate,
    sizes=SIZES,
    grid=lambda params: {"nonlinearity": params["nonlinearities"], "readout": params["readouts"],
                         "data": params["data"]},
    describe=describe,
    figure=plot_model_choices,
    summary=summarise,
    pair_axes=(),  # every model choice trains its own networks from its own seeds
    # NaN by design: stream phases have no validation loss, and the history is padded to a
    # common epoch axis (finite-set runs stop early)
    allow_nan=("val_loss", "train_loss", "eval_error"),
)
