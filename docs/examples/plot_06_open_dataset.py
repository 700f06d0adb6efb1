"""
Open a study's Dataset
======================

Every study saves one netCDF file with its provenance: the anglesim version and git revision,
the date, the seed, the full configuration as JSON, and a checksum of the data, checked when
:func:`anglesim.io.load_dataset` reads it. The published datasets are in ``figures/data/``;
here the quickstart's is opened, summarised and drawn again.
"""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from anglesim.angles import near_far_masks
from anglesim.io import load_dataset
from anglesim.stats import mean_ci

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in [here, *here.parents] if (p / "figures" / "data").is_dir())
ds = load_dataset(root / "figures" / "data" / "quickstart.nc")
print(ds)

# %%
# The provenance is in the attributes; the configuration is JSON.
for key in ("anglesim_version", "git_rev", "created", "torch", "platform", "cpu", "seed"):
    print(f"{key:>17}: {ds.attrs.get(key, '(not recorded)')}")
config = json.loads(ds.attrs["config"])
print("phases:", [(p["name"], p["prior"], p["epochs"]) for p in config["phases"]])

# %%
# Numbers with intervals: the mean over replicates ± the 95% Student-t half-width, for the
# decoding error and the output FI near the fine-tuning peak (within ±22.5° of 90°) and far
# from it (beyond 45°).
run = ds.isel(kappa=0)
near, far = near_far_masks(run["prior_density"].sel(phase="finetune").isel(replicate=0))
for phase in run.phase.values:
    err, err_ci = mean_ci(np.degrees(run["abs_error"].sel(phase=phase).mean("angle")))
    out = run["fisher"].sel(phase=phase, layer="output")
    fi_near, near_ci = mean_ci(out.where(near).mean("angle"))
    fi_far, far_ci = mean_ci(out.where(far).mean("angle"))
    print(f"after {phase}: error {float(err):.2f} ± {float(err_ci):.2f}°, "
          f"FI near {float(fi_near):.0f} ± {float(near_ci):.0f}, "
          f"far {float(fi_far):.0f} ± {float(far_ci):.0f} rad⁻²")

# %%
# Every variable carries its units, and the dimensions are named, so a figure needs no
# knowledge of the study: here the FI of each layer after each phase, the geometric mean over
# replicates with its 95% interval (taken on log FI).
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
deg = np.degrees(run.angle)
for ax, phase in zip(axes, run.phase.values, strict=True):
    for layer in run.layer.values:
        mean, half = mean_ci(np.log(run["fisher"].sel(phase=phase, layer=layer)))
        (line,) = ax.semilogy(deg, np.exp(mean), label=layer)
        ax.fill_between(deg, np.exp(mean - half), np.exp(mean + half), alpha=0.2,
                        color=line.get_color())
    ax.set(title=f"after {phase}", xlabel="orientation θ (deg)")
axes[0].set_ylabel(f"Fisher information ({run['fisher'].attrs.get('units', 'rad^-2')})")
axes[1].legend(fontsize=8)
fig.tight_layout()
