"""Fine-tuning data size: how much data does re-centring a prior take, whole network vs frozen?

The reference setup (reference MLP, ``GratingSpec.reference()``, finite datasets with early
stopping): a parent network is trained on D = 2048 images from a von Mises prior at 0° (κ = 8),
then fine-tuned on D_ft ∈ {16, …, 512} images from the same prior centred at 90°, either every
layer or with the first layer (``fc1``, the pixel layer holding almost all the weights) frozen.
Every fine-tuning of one replicate starts from the same parent. We measure the bias-corrected
linear FI of the output (the noise is not Gaussian) near the old and the new peak, and the
decoding error.

Run: ``anglesim run finetune_data_size [--quick]``.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from anglesim import angles as ang
from anglesim.data import evaluation_grid
from anglesim.distributions import VonMises
from anglesim.models import reference_mlp
from anglesim.training import Phase, evaluate_error, make_generator, train

try:  # run as ``studies.finetune_data_size`` (CLI, workers) or as a script
    from studies._common import run_grid, successful
    from studies.reference_replication import DTHETA, output_fisher, spec_for
except ImportError:  # pragma: no cover - direct ``python studies/finetune_data_size.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from studies._common import run_grid, successful
    from studies.reference_replication import DTHETA, output_fisher, spec_for

NAME = "finetune_data_size"
OLD, NEW = VonMises(0.0, 8.0), VonMises(math.pi / 2, 8.0)
FROZEN = {"none": None, "fc1": ["fc2", "head"]}
"""Which blocks train: every one, or all but the first layer."""

SIZES = {
    "full": dict(image_size=101, parent_size=2048, sizes=[16, 32, 64, 128, 256, 512],
                 epochs=60, patience=5, n_angles=36, n_trials=250, replicates=6),
    "quick": dict(image_size=33, parent_size=16, sizes=[16, 32], epochs=2, patience=2,
                  n_angles=8, n_trials=20, replicates=2),
}


def phase(name: str, prior, spec, d: int, sz: dict, trainable=None) -> Phase:
    """The reference protocol: Adam, lr 1e−3, batch 32, 8D/2D/2D, early stopping."""
    return Phase(name, prior, spec, loss="vector_mse", lr=1e-3, batch_size=32, dataset_size=d,
                 epochs=sz["epochs"], patience=sz["patience"], eval_angles=sz["n_angles"],
                 trainable=trainable)


def replicate(condition: dict, replicate: int, seed: int, size: str = "full") -> xr.Dataset:
    """One parent, fine-tuned with every D_ft and both freezing modes."""
    sz = SIZES[size]
    spec = spec_for(sz)
    grid = evaluation_grid(sz["n_angles"]).double()
    torch.manual_seed(seed)
    parent = reference_mlp(image_size=spec.size)
    train(parent, [phase("parent", OLD, spec, sz["parent_size"], sz)], seed)

    def measure(net, s: int) -> tuple[np.ndarray, np.ndarray]:
        fi, _ = output_fisher(net, spec, grid, sz["n_trials"], DTHETA, make_generator(s))
        err = evaluate_error(net, spec, sz["n_angles"], repeats=16, generator=make_generator(s))
        return fi, err.values

    parent_fi, parent_err = measure(parent, seed + 1)
    fisher = np.empty((len(sz["sizes"]), len(FROZEN), grid.numel()))
    error = np.empty_like(fisher)
    for i, d in enumerate(sz["sizes"]):
        for j, (_, trainable) in enumerate(FROZEN.items()):
            net = copy.deepcopy(parent)
            train(net, [phase("finetune", NEW, spec, d, sz, trainable)], seed + 10 + i)
            fisher[i, j], error[i, j] = measure(net, seed + 1)
    angle = grid.numpy()
    ds = xr.Dataset(
        {
            "fisher": (("finetune_size", "frozen", "angle"), fisher),
            "abs_error": (("finetune_size", "frozen", "angle"), error),
            "parent_fisher": ("angle", parent_fi),
            "parent_abs_error": ("angle", parent_err),
        },
        coords={"finetune_size": sz["sizes"], "frozen": list(FROZEN), "angle": angle},
    )
    ds["fisher"].attrs = {"units": "rad^-2", "method": "linear_bias_corrected",
                          "quantity": "bias-corrected linear FI of the 2-D output"}
    return ds


def shift(ds: xr.Dataset, near: float = math.pi / 8) -> xr.Dataset:
    """Mean FI and mean error near the new and the old peak, per D_ft, mode and replicate,
    and the parents' (``parent_fisher_near_new`` …) for comparison."""
    ok = successful(ds)
    out = {}
    for name, prior in (("new", NEW), ("old", OLD)):
        loc = prior.to_config()["loc"]
        mask = xr.DataArray(np.abs(ang.difference(ok["angle"].values, loc)) <= near,
                            coords={"angle": ok["angle"]})
        for prefix in ("", "parent_"):
            out[f"{prefix}fisher_near_{name}"] = ok[f"{prefix}fisher"].where(mask).mean("angle")
            out[f"{prefix}error_near_{name}"] = (ok[f"{prefix}abs_error"].where(mask)
                                                 .mean("angle"))
    return xr.Dataset(out)


def add_shift(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`shift` added."""
    return ds.assign(shift(ds).data_vars)


def run(quick: bool = False, replicates: int | None = None, **options) -> Path:
    """Run the parents across replicates and save the Dataset; return its path."""
    size = "quick" if quick else "full"
    sz = SIZES[size]
    config = {"study": NAME, "size": size, "sizes": sz, "spec": spec_for(sz).to_config(),
              "old": OLD.to_config(), "new": NEW.to_config(), "frozen": FROZEN,
              "dtheta": DTHETA}
    return run_grid(NAME, replicate, {"shift": ["0->90"]}, quick=quick,
                    n_replicates=replicates or sz["replicates"], config=config,
                    postprocess=add_shift, **options)


def summarise(ds: xr.Dataset) -> str:
    """Error and FI near the new peak by D_ft and mode (means over replicates)."""
    ok = successful(ds).isel(shift=0)
    lines = ["by fine-tuning D: error near the new peak (deg) | FI near new / old peak (rad⁻²)"]
    for frozen in ok["frozen"].values:
        cells = []
        for d in ok["finetune_size"].values:
            c = ok.sel(frozen=frozen, finetune_size=d)
            cells.append(f"D={int(d)}: {float(np.degrees(c['error_near_new'].mean())):.1f}° | "
                         f"{float(c['fisher_near_new'].mean()):.0f}/"
                         f"{float(c['fisher_near_old'].mean()):.0f}")
        lines.append(f"  frozen={frozen}: " + "; ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    from anglesim.cli import main

    sys.exit(main(["run", NAME, *sys.argv[1:]]))
