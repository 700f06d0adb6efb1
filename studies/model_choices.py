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

import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from scipy.signal import find_peaks

from anglesim.data import evaluation_grid
from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.training import Phase, evaluate_error, make_generator, train

try:  # run as ``studies.model_choices`` (CLI, workers) or as a script
    from studies._common import SPEC, run_grid, standard_cnn
except ImportError:  # pragma: no cover - direct ``python studies/model_choices.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from studies._common import SPEC, run_grid, standard_cnn

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


def replicate(condition: dict, replicate: int, seed: int, size: str = "full") -> xr.Dataset:
    """Train one network; measure its FI curve, roughness, peaks and error."""
    sz = SIZES[size]
    readout, data = str(condition["readout"]), str(condition["data"])
    torch.manual_seed(seed)
    model = build_model(standard_cnn(readout, nonlinearity=str(condition["nonlinearity"])))
    plan = phase(readout, data, sz)
    gen = make_generator(seed)
    history = train(model, [plan], seed, generator=gen)
    grid = evaluation_grid(sz["n_angles"])
    fisher = propagated_fisher(model, SPEC, grid, layers=["fc", "output"],
                               sigma=SPEC.noise_std)
    log_fi = np.log10(fisher.sel(layer="output").values)
    error = evaluate_error(model, SPEC, sz["n_angles"], repeats=16,
                           generator=make_generator(seed + 1))

    # FI at angles the network was trained on against fresh angles from the same prior.
    # The training angles are the first draws of the generator that built the finite set:
    # replay them from the same seed (stream networks get the same angles, never seen twice).
    replay = make_generator(seed)
    train_angles = plan.prior.sample(8 * sz["dataset_size"], generator=replay)[
        : sz["n_train_angles"]].double()
    fresh = plan.prior.sample(sz["n_train_angles"], generator=make_generator(seed + 2)).double()
    at_train = propagated_fisher(model, SPEC, train_angles, layers=["output"],
                                 sigma=SPEC.noise_std)
    at_fresh = propagated_fisher(model, SPEC, fresh, layers=["output"], sigma=SPEC.noise_std)
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


def run(quick: bool = False, replicates: int | None = None, **options) -> Path:
    """Run the nonlinearity × readout × data grid and save the Dataset; return its path."""
    size = "quick" if quick else "full"
    sz = SIZES[size]
    grid = {"nonlinearity": sz["nonlinearities"], "readout": sz["readouts"], "data": sz["data"]}
    config = {"study": NAME, "size": size, "sizes": sz, "spec": SPEC.to_config(),
              "model": standard_cnn("cossin").to_config(), "cutoff": CUTOFF,
              "peak_prominence": PEAK_PROMINENCE, "loss_for_readout": LOSS_FOR_READOUT}
    return run_grid(NAME, replicate, grid, quick=quick,
                    n_replicates=replicates or sz["replicates"], config=config, **options)


def summarise(ds: xr.Dataset) -> str:
    """Roughness, peaks and the training-angle FI ratio, mean over replicates."""
    from studies._common import successful

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


if __name__ == "__main__":
    from anglesim.cli import main

    sys.exit(main(["run", NAME, *sys.argv[1:]]))
