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

import numpy as np

from anglesim.angles import near_far_masks
from anglesim.io import load_dataset
from anglesim.plotting import draw_figure
from anglesim.stats import mean_ci

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in [here, *here.parents] if (p / "figures" / "data").is_dir())
ds = load_dataset(root / "figures" / "data" / "quickstart.nc")
print(ds)

# %%
# The provenance is in the attributes; the configuration is JSON.
for key in ("anglesim_version", "git_rev", "created", "torch", "platform", "seed"):
    print(f"{key:>17}: {ds.attrs[key]}")
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
# The study's own figure is drawn from the Dataset alone.
fig = draw_figure(ds)
