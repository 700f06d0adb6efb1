"""Prior specialisation: how far do networks specialise to likely angles, and what stays after?

A CNN is trained from scratch on orientations from a von Mises prior on 2θ centred at 45°
(prior A, several concentrations κ). We measure how much its Fisher information (FI) and error
favour the region of high prior density against the rest — and set that specialisation beside
the spread between replicates. Then the network is fine-tuned on a prior of the same κ centred
at 135° (prior B, the opposite point of the orientation circle), and compared with a control
network trained from scratch on B for as many steps as the first phase: whatever FI the
fine-tuned network still has near 45° beyond the control's is what prior A left behind.

Run: ``anglesim run prior_specialisation [--quick]``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from anglesim.data import evaluation_grid
from anglesim.distributions import VonMises
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.training import Phase, evaluate_error, make_generator, train

try:  # run as ``studies.prior_specialisation`` (CLI, workers) or as a script
    from studies._common import SPEC, run_grid, standard_cnn, successful
except ImportError:  # pragma: no cover - direct ``python studies/prior_specialisation.py``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from studies._common import SPEC, run_grid, standard_cnn, successful

NAME = "prior_specialisation"
MODEL = standard_cnn("cossin")
LOC_A, LOC_B = math.pi / 4, 3 * math.pi / 4
STAGES = ("first", "second", "control")
"""first: trained on A; second: first fine-tuned on B; control: trained from scratch on B."""

SIZES = {
    "full": dict(epochs=8, ft_epochs=4, steps=50, batch=64, n_angles=48, replicates=4,
                 kappas=[2.0, 8.0]),
    "quick": dict(epochs=1, ft_epochs=1, steps=4, batch=16, n_angles=8, replicates=2,
                  kappas=[4.0]),
}


def phases(kappa: float, sz: dict) -> dict[str, Phase]:
    """The three trainings: on A, fine-tuning on B (half the rate), and the control on B."""
    common = dict(spec=SPEC, loss="cosine", steps_per_epoch=sz["steps"],
                  batch_size=sz["batch"], eval_angles=sz["n_angles"])
    return {
        "first": Phase("first", VonMises(LOC_A, kappa), lr=2e-3, epochs=sz["epochs"], **common),
        "second": Phase("second", VonMises(LOC_B, kappa), lr=1e-3, epochs=sz["ft_epochs"],
                        **common),
        "control": Phase("control", VonMises(LOC_B, kappa), lr=2e-3, epochs=sz["epochs"],
                         **common),
    }


def replicate(condition: dict, replicate: int, seed: int, size: str = "full") -> xr.Dataset:
    """Train on A then fine-tune on B, and a control on B; measure FI and error after each."""
    sz = SIZES[size]
    plan = phases(float(condition["kappa"]), sz)
    grid = evaluation_grid(sz["n_angles"])
    angle = grid.double().numpy()
    fisher, errors = {}, {}

    def measure(phase: Phase, net) -> None:
        fisher[phase.name] = propagated_fisher(net, SPEC, grid, layers=["fc", "output"],
                                               sigma=SPEC.noise_std)
        errors[phase.name] = evaluate_error(net, SPEC, sz["n_angles"], repeats=16,
                                            generator=make_generator(seed + 1))

    torch.manual_seed(seed)
    model = build_model(MODEL)
    history = train(model, [plan["first"], plan["second"]], seed, on_phase_end=measure)
    torch.manual_seed(seed + 1)
    control = build_model(MODEL)
    train(control, [plan["control"]], seed + 1, on_phase_end=measure)

    ds = xr.Dataset(
        {
            "fisher": xr.concat([fisher[s] for s in STAGES], dim="stage"),
            "abs_error": xr.concat([errors[s] for s in STAGES], dim="stage"),
            "prior_density": (("prior", "angle"),
                              np.stack([plan["first"].prior.pdf(angle),
                                        plan["second"].prior.pdf(angle)])),
        },
        coords={"stage": list(STAGES), "prior": ["A", "B"], "angle": angle},
    )
    ds["prior_density"].attrs = {"units": "1/rad", "long_name": "training prior density"}
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


def run(quick: bool = False, replicates: int | None = None, **options) -> Path:
    """Run the κ grid across replicates and save its Dataset; return the path."""
    size = "quick" if quick else "full"
    sz = SIZES[size]
    config = {"study": NAME, "size": size, "sizes": sz, "spec": SPEC.to_config(),
              "model": MODEL.to_config(), "loc_a": LOC_A, "loc_b": LOC_B,
              "phases": {k: p.to_config() for k, p in phases(sz["kappas"][0], sz).items()}}
    return run_grid(NAME, replicate, {"kappa": sz["kappas"]}, quick=quick,
                    n_replicates=replicates or sz["replicates"], config=config,
                    postprocess=add_measures, **options)


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added (variables prefixed ``measure_``)."""
    m = measures(ds)
    return ds.assign({f"measure_{k}": v for k, v in m.data_vars.items()})


def region_masks(angle: xr.DataArray, loc: float, near: float = math.pi / 8,
                 far: float = math.pi / 4) -> tuple[xr.DataArray, xr.DataArray]:
    """Angles within ``near`` of ``loc`` and beyond ``far`` from it (wrapped at π)."""
    from anglesim.angles import difference

    dist = np.abs(difference(angle.values, loc))
    return (xr.DataArray(dist <= near, coords={"angle": angle}),
            xr.DataArray(dist > far, coords={"angle": angle}))


def measures(ds: xr.Dataset, layer: str = "output") -> xr.Dataset:
    """Per replicate and κ: specialisation, extrapolation, replicate spread, what A left behind.

    * ``specialisation``: log₂ of mean FI near A over mean FI far from A, after the first phase;
    * ``error_ratio``: mean error far from A over mean error near A (extrapolation cost);
    * ``spread``: the standard deviation over replicates of log₂ FI, averaged over angles — the
      scale a specialisation must beat to be more than replicate-to-replicate variation;
    * ``left_behind``: log₂ of mean FI near A of the fine-tuned network over the control's.
    """
    ok = successful(ds)
    fi = ok["fisher"].sel(layer=layer)
    near_a, far_a = region_masks(ok["angle"], LOC_A)
    first = fi.sel(stage="first")
    err = ok["abs_error"].sel(stage="first")
    out = xr.Dataset(
        {
            "specialisation": np.log2(first.where(near_a).mean("angle")
                                      / first.where(far_a).mean("angle")),
            "error_ratio": err.where(far_a).mean("angle") / err.where(near_a).mean("angle"),
            "spread": np.log2(first).std("replicate", ddof=1).mean("angle"),
            "left_behind": np.log2(fi.sel(stage="second").where(near_a).mean("angle")
                                   / fi.sel(stage="control").where(near_a).mean("angle")),
        }
    )
    return out


def summarise(ds: xr.Dataset) -> str:
    """The four measures, mean ± standard error over replicates, per κ."""
    m = measures(ds)
    lines = ["per κ: mean ± s.e. over replicates (FI of the decoded angle)"]
    for kappa in m["kappa"].values:
        row = m.sel(kappa=kappa)
        cells = []
        for var, label in [("specialisation", "log₂ FI near/far A"),
                           ("error_ratio", "error far/near A"),
                           ("left_behind", "log₂ FI near A, fine-tuned/control")]:
            v = row[var]
            se = float(v.std("replicate", ddof=1) / np.sqrt(v.count("replicate")))
            cells.append(f"{label} {float(v.mean()):+.2f} ± {se:.2f}")
        cells.append(f"replicate spread of log₂ FI {float(row['spread']):.2f}")
        lines.append(f"  κ={kappa:g}: " + "; ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    from anglesim.cli import main

    sys.exit(main(["run", NAME, *sys.argv[1:]]))
