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
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from anglesim import angles as ang
from anglesim.data import evaluation_grid
from anglesim.distributions import AnglePrior, Uniform, VonMises
from anglesim.fisher import linear_fisher_from_samples, linear_fisher_variance
from anglesim.models import AngleNet, reference_mlp
from anglesim.stimuli import GratingSpec, render
from anglesim.training import Phase, evaluate_error, make_generator, train

try:  # run as ``studies.reference_replication`` (CLI, workers) or as a script
    from studies._common import run_grid
except ImportError:  # pragma: no cover - direct ``python studies/reference_replication.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from studies._common import run_grid

NAME = "reference_replication"
DTHETA = math.pi / 90  # 2°: the pair of orientations whose discrimination d′ describes

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


def spec_for(sz: dict) -> GratingSpec:
    """The reference stimulus (quick mode: the same recipe on a smaller grid)."""
    spec = GratingSpec.reference()
    return spec if sz["image_size"] == spec.size else spec.replace(size=sz["image_size"])


def output_fisher(model: AngleNet, spec: GratingSpec, angles: torch.Tensor, n_trials: int,
                  dtheta: float, generator: torch.Generator, chunk: int = 4) -> tuple:
    """Bias-corrected linear FI of the model's output at each angle, and its standard error.

    For each θ, ``n_trials`` images at θ − Δθ/2 and at θ + Δθ/2 (the spec's own noise) are run
    through the network; the [T, 2] outputs go to
    :func:`anglesim.fisher.linear_fisher_from_samples`, the standard error to
    :func:`anglesim.fisher.linear_fisher_variance` (at the estimate, floored at 0).
    """
    values, errors = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, angles.numel(), chunk):
            theta = angles[start:start + chunk]
            pair = torch.stack([theta - dtheta / 2, theta + dtheta / 2], 1)  # [c, 2]
            batch = pair[:, None, :].expand(-1, n_trials, -1).reshape(-1)  # ordered (c, T, ±)
            out = model(render(batch, spec, generator=generator, dtype=torch.float32))
            out = out.reshape(theta.numel(), n_trials, 2, -1).double().numpy()
            for k in range(theta.numel()):
                j = linear_fisher_from_samples(out[k, :, 0], out[k, :, 1], dtheta)
                n_units = out.shape[-1]
                var = linear_fisher_variance(max(j, 0.0), n_trials, n_units, dtheta)
                values.append(j)
                errors.append(math.sqrt(var))
    return np.array(values), np.array(errors)


def replicate(condition: dict, replicate: int, seed: int, size: str = "full") -> xr.Dataset:
    """Train the reference MLP on D images from one prior; measure FI, d′ and error."""
    sz = SIZES[size]
    spec = spec_for(sz)
    prior = PRIORS[str(condition["prior"])]
    torch.manual_seed(seed)
    model = reference_mlp(image_size=spec.size)
    plan = Phase("train", prior, spec, loss="vector_mse", optimizer="adam", lr=1e-3,
                 batch_size=32, dataset_size=int(condition["dataset_size"]),
                 epochs=sz["epochs"], patience=sz["patience"], eval_angles=sz["n_angles"])
    history = train(model, [plan], seed)
    grid = evaluation_grid(sz["n_angles"]).double()
    fisher, stderr = output_fisher(model, spec, grid, sz["n_trials"], DTHETA,
                                   make_generator(seed + 1))
    error = evaluate_error(model, spec, sz["n_angles"], repeats=16,
                           generator=make_generator(seed + 2))
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
    from studies._common import successful

    ok = successful(ds)
    fi = ok["fisher"]
    out = {}
    labels = [p for p in ok["prior"].values if p != "uniform"]
    dim = xr.DataArray(labels, dims="concentrated")
    for region, mask_fn in (("near", lambda d: d <= near), ("far", lambda d: d > far)):
        gains, ses = [], []
        for label in labels:
            peak = PRIORS[str(label)].to_config()["loc"]
            mask = xr.DataArray(mask_fn(np.abs(ang.difference(ok["angle"].values, peak))),
                                coords={"angle": ok["angle"]})
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


def run(quick: bool = False, replicates: int | None = None, **options) -> Path:
    """Run the prior × D grid across replicates and save the Dataset; return its path."""
    size = "quick" if quick else "full"
    sz = SIZES[size]
    config = {"study": NAME, "size": size, "sizes": sz, "spec": spec_for(sz).to_config(),
              "model": reference_mlp(image_size=sz["image_size"]).config,
              "priors": {k: p.to_config() for k, p in PRIORS.items()}, "dtheta": DTHETA}
    grid = {"prior": sz["priors"], "dataset_size": sz["datasets"]}
    return run_grid(NAME, replicate, grid, quick=quick,
                    n_replicates=replicates or sz["replicates"], config=config,
                    postprocess=add_effects, **options)


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


if __name__ == "__main__":
    from anglesim.cli import main

    sys.exit(main(["run", NAME, *sys.argv[1:]]))
