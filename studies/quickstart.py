"""Quickstart: does fine-tuning on a concentrated prior move Fisher information to its peak?

Small CNNs are pretrained on uniformly distributed orientations, then fine-tuned on a von Mises
prior concentrated at π/2 (90°). After each phase we measure, on a fixed grid of angles, the
mean absolute decoding error and the linearised Fisher information (propagated pixel noise) at
every block and at the decoded output, through :func:`anglesim.fisher.measure_fisher` (which
also stores the phase's prior density). Replicates differ only in their seed.

Run: ``anglesim quickstart`` (or ``python studies/quickstart.py``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from anglesim.data import evaluation_grid
from anglesim.distributions import Uniform, VonMises
from anglesim.fisher import measure_fisher, method_result
from anglesim.models import build_model
from anglesim.training import Phase, evaluate_error, make_generator, train

try:  # run as ``studies.quickstart`` (CLI, workers) or as a script
    from studies._common import SPEC, run_grid, standard_cnn, successful
except ImportError:  # pragma: no cover - direct ``python studies/quickstart.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from studies._common import SPEC, run_grid, standard_cnn, successful

NAME = "quickstart"
MODEL = standard_cnn("cossin")
FINETUNE_LOC = math.pi / 2

# name: (pretrain epochs, fine-tune epochs, steps per epoch, batch, angles, replicates)
SIZES = {
    "full": dict(pre_epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, replicates=4),
    "quick": dict(pre_epochs=1, ft_epochs=1, steps=4, batch=16, n_angles=8, replicates=2),
}


def phases(kappa: float, size: dict) -> list[Phase]:
    """Pretrain on a uniform prior, then fine-tune on VonMises(π/2, κ) at half the rate."""
    common = dict(spec=SPEC, loss="cosine", steps_per_epoch=size["steps"],
                  batch_size=size["batch"], eval_angles=size["n_angles"])
    return [
        Phase("pretrain", Uniform(), lr=2e-3, epochs=size["pre_epochs"], **common),
        Phase("finetune", VonMises(FINETUNE_LOC, kappa), lr=1e-3, epochs=size["ft_epochs"],
              **common),
    ]


def replicate(condition: dict, replicate: int, seed: int, size: str = "full") -> xr.Dataset:
    """Train one network through both phases and measure it after each."""
    sz = SIZES[size]
    torch.manual_seed(seed)
    model = build_model(MODEL)
    plan = phases(float(condition["kappa"]), sz)
    grid = evaluation_grid(sz["n_angles"])
    fisher, errors, densities = [], [], []

    def measure(phase: Phase, net) -> None:
        measured = measure_fisher(net, SPEC, phase.prior, methods=["propagated"], angles=grid,
                                  sigma=SPEC.noise_std)
        fisher.append(method_result(measured, "propagated"))
        errors.append(evaluate_error(net, SPEC, sz["n_angles"], repeats=16,
                                     generator=make_generator(seed + 1)))
        densities.append(measured["prior_density"].values)

    history = train(model, plan, seed, on_phase_end=measure)
    names = [p.name for p in plan]
    angle = grid.double().numpy()
    ds = xr.Dataset(
        {
            "fisher": xr.concat(fisher, dim="phase").assign_coords(phase=names),
            "abs_error": xr.concat(errors, dim="phase").assign_coords(phase=names),
            "prior_density": (("phase", "angle"), np.stack(densities)),
        }
    ).assign_coords(angle=angle)
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior density"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


def run(quick: bool = False, replicates: int | None = None, **options) -> Path:
    """Run the study across replicates and save its Dataset; return the Dataset's path."""
    size = "quick" if quick else "full"
    sz = SIZES[size]
    grid = {"kappa": [4.0]}
    config = {"study": NAME, "size": size, "sizes": sz, "spec": SPEC.to_config(),
              "model": MODEL.to_config(), "finetune_loc": FINETUNE_LOC,
              "phases": [p.to_config() for p in phases(grid["kappa"][0], sz)]}
    return run_grid(NAME, replicate, grid, quick=quick,
                    n_replicates=replicates or sz["replicates"], config=config, **options)


def summarise(ds: xr.Dataset) -> str:
    """What the run measured, in numbers (means over successful replicates)."""
    from anglesim.plotting import near_far_masks

    ok = successful(ds).isel(kappa=0)
    lines = ["decoding error, mean |θ̂ − θ| over the angle grid (chance 45°):"]
    for ph in ok["phase"].values:
        err = np.degrees(ok["abs_error"].sel(phase=ph).mean("angle"))
        lines.append(f"  after {ph}: {float(err.mean()):.2f}° "
                     f"(replicates {', '.join(f'{v:.2f}' for v in err.values)})")
    near, far = near_far_masks(ok["prior_density"].sel(phase="finetune").isel(replicate=0))
    lines.append("Fisher information of θ̂ (rad⁻²), near the fine-tuning peak (±22.5°) "
                 "vs far (>45°):")
    for ph in ok["phase"].values:
        fi = ok["fisher"].sel(phase=ph, layer="output")
        lines.append(f"  after {ph}: near {float(fi.where(near).mean()):.1f}, "
                     f"far {float(fi.where(far).mean()):.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    from anglesim.cli import main

    sys.exit(main(["run", NAME, *sys.argv[1:]]))
