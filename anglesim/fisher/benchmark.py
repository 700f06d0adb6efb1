"""Benchmark rows for the propagated solvers: exact against Krylov at growing image sizes.

`solver_rows` measures every-layer `propagated_fisher` on the default CNN family scaled with
the image (``CNNConfig(image_size=P)``, untrained, seeded), for GratingSpec(size=P,
noise_std=0.5): seconds per angle, the peak memory the computation adds, and the largest
relative error against the exact solver over layers and angles where the exact solver was run.
Each measurement runs in a fresh process, so the peak (the growth of the process's maximum
resident size, or CUDA's peak allocation) belongs to it alone. For ``anglesim bench``::

    rows = solver_rows(sizes=(32, 64, 128), exact_sizes=(32, 64))
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["solver_rows"]

_CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(1)
from anglesim.fisher import propagated_fisher
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec
size, solver, n_angles, device = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
net = build_model(CNNConfig(image_size=size)).to(device)
spec = GratingSpec(size=size, noise_std=0.5)
angles = (torch.arange(n_angles, dtype=torch.float64) + 0.5) * (3.141592653589793 / n_angles)
propagated_fisher(net, GratingSpec(size=size, noise_std=0.5), angles[:1], layers=["input"],
                  device=device)  # warm-up outside the timing
if device.startswith("cuda"):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
fi = propagated_fisher(net, spec, angles, solver=solver, device=device, force=True)
if device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda") else
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
print(json.dumps({"seconds_per_angle": seconds / n_angles, "peak_bytes": peak,
                  "layers": [str(n) for n in fi["layer"].values],
                  "solvers": [str(s) for s in fi["solver"].values],
                  "iterations": fi["iterations"].values.max(1).tolist(),
                  "values": fi.values.tolist()}))
"""


def _measure(size: int, solver: str, n_angles: int, device: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(size), solver, str(n_angles),
                          device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def solver_rows(
    sizes: Sequence[int] = (32, 64, 128),
    exact_sizes: Sequence[int] = (32, 64),
    n_angles: int = 1,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """One row per (size, solver): size, solver, seconds_per_angle, peak_mb, max_rel_error
    (against exact; NaN where exact was not run), max_iterations, and the exact/Krylov speed
    ratio on the Krylov rows. The exact solver runs only at ``exact_sizes``."""
    rows = []
    for size in sizes:
        exact = _measure(size, "exact", n_angles, device) if size in exact_sizes else None
        kry = _measure(size, "krylov", n_angles, device)
        ref = None if exact is None else np.asarray(exact["values"])
        for solver, res in (("exact", exact), ("krylov", kry)):
            if res is None:
                continue
            vals = np.asarray(res["values"])
            err = float("nan") if ref is None else float(
                np.max(np.abs(vals - ref) / np.where(ref > 0, ref, 1.0)))
            rows.append({
                "size": size, "solver": solver, "device": device,
                "seconds_per_angle": res["seconds_per_angle"],
                "peak_mb": res["peak_bytes"] / 2**20, "max_rel_error": err,
                "max_iterations": int(max(res["iterations"])),
                "speedup": (exact["seconds_per_angle"] / res["seconds_per_angle"]
                            if exact is not None and solver == "krylov" else float("nan")),
            })
    return rows


if __name__ == "__main__":  # python -m anglesim.fisher.benchmark [sizes...]
    chosen = tuple(int(a) for a in sys.argv[1:]) or (32, 64)
    for row in solver_rows(chosen, exact_sizes=chosen):
        print(json.dumps(row))
