"""Section ``solvers``: every-layer propagated Fisher information of the default CNN from 32 to
224 px, one hard angle (π/2): the route "auto" plans against the exact solver as it was before
this round (float32 products) and the Krylov solver, and every solver's ``fisher_error``
against the true error.

The default CNN family scaled with the image (``standard_cnn(image_size=P)``, untrained,
initialised from the named seed stream ``"init"``) on the standard stimulus at P × P. Per size:

* **auto**, every layer in one call (so later layers start from earlier ones' solutions): time
  per angle, the peak memory it adds (:func:`anglesim.bench._harness.peak_memory`), each
  layer's route and iterations;
* **exact (float32)**, up to ``Sizes.solver_exact_max`` (its Jacobians' memory): the dense
  solver with the model's float32 products, as every size used it before this round;
* **krylov**, up to ``Sizes.solver_krylov_max``: every layer matrix-free;
* **truth**: the network in float64 through its float32 pass's gates, solved exactly (the
  sparse solver for its local layers, the dense one for the others); each solver's largest
  ratio of true error to ``fisher_error`` (≤ 1: no ``fisher_error`` below its true error).

Goals (issue 26): auto ≥ 20× faster than the float32 exact solver at 64 px; its time per
angle growing at most as P^1.1 from the smallest size to the largest; every error ratio ≤ 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..fisher import propagated_fisher
from ..models import build_model
from ..seeding import stream_seed
from ._harness import Context, Goal, peak_memory
from ._workloads import STANDARD_SPEC, standard_cnn

RTOL = 1e-3
"""The Krylov solver's relative tolerance in these rows (the issue's default)."""

HARD_ANGLE = math.pi / 2
"""The angle timed: hard for the iteration (the issue measured its iterations there)."""

LOCAL = ("conv1", "conv2")
"""The default CNN's layers whose units see a bounded window: the truth's sparse solves."""


def _values(result: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """FI values [layer, angle] and the estimator's per-layer coordinates, JSON-able."""
    info: dict[str, Any] = {}
    for name, coord in result.coords.items():  # fisher_error, iterations, solver, …
        if name not in result.dims:
            info[name] = np.asarray(coord.values).tolist()
    return np.asarray(result.values, dtype=np.float64), info


def propagated(model: torch.nn.Module, spec: Any, angles: Any, solver: str,
               layers: Sequence[str], rtol: float = RTOL, device: str = "cpu",
               **options: Any) -> dict[str, Any]:
    """One timed call of ``propagated_fisher``: values, seconds, peak bytes and its coords."""
    result, seconds, peak, kind = peak_memory(lambda: propagated_fisher(
        model, spec, angles, layers=list(layers), solver=solver, rtol=rtol, device=device,
        force=True, pool_ties="record", **options))
    values, info = _values(result)
    return {"values": values, "seconds": seconds, "peak_bytes": peak, "memory_kind": kind,
            "info": info, "layers": [str(n) for n in result["layer"].values]}


def scaled_cnn(size: int, seed: int = 0) -> torch.nn.Module:
    """The default CNN for P × P images, initialised from the named stream ``"init"`` without
    touching torch's global generator state outside this call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, "init"))
        return build_model(standard_cnn(image_size=size)).eval()


def truth(model: torch.nn.Module, spec: Any, angles: Any, layers: Sequence[str],
          device: str = "cpu") -> dict[str, np.ndarray]:
    """Each layer's J of the network in float64 through its own gates, solved exactly."""
    out: dict[str, np.ndarray] = {}
    dense = [n for n in layers if n not in LOCAL]
    local = [n for n in layers if n in LOCAL]
    if local:
        run = propagated(model, spec, angles, "sparse", local, device=device,
                         precision="float64")
        for name, route, value in zip(run["layers"], run["info"]["solver"], run["values"],
                                      strict=True):
            if route == "sparse":
                out[name] = value
            else:  # not local at this size: the dense solver
                dense.append(name)
    if dense:
        run = propagated(model, spec, angles, "exact", dense, device=device,
                         precision="float64")
        out.update(dict(zip(run["layers"], run["values"], strict=True)))
    return out


def error_ratio(run: dict[str, Any], ref: dict[str, np.ndarray]) -> float:
    """Largest true error ÷ fisher_error over the layers and angles (inf where a layer
    claims 0 and is off by more than float64 rounding)."""
    worst = 0.0
    errors = np.asarray(run["info"]["fisher_error"], dtype=float)
    for k, name in enumerate(run["layers"]):
        if name not in ref:
            continue
        gap = np.abs(run["values"][k] - ref[name])
        err = errors[k]
        floor = 1e-10 * np.abs(ref[name])
        over = np.where(err > 0, gap / np.where(err > 0, err, 1.0),
                        np.where(gap > floor, np.inf, 0.0))
        worst = max(worst, float(np.max(over)))
    return worst


def bench_solvers(ctx: Context) -> None:
    """Auto, exact (float32) and Krylov, every layer, at each of the mode's image sizes."""
    sz = ctx.sizes
    angles = torch.tensor([HARD_ANGLE] + [HARD_ANGLE + 0.3 * k
                                          for k in range(1, sz.solver_angles)])
    details: dict[str, Any] = {"rtol": RTOL, "angles": angles.tolist(), "sizes": {},
                               "device": ctx.device}
    seconds: dict[tuple[str, int], float] = {}
    warm = scaled_cnn(16)
    propagated(warm, STANDARD_SPEC.replace(size=16), angles[:1], "auto", ["conv1", "output"],
               device=ctx.device)  # first-call costs (torch.func set-up) out of the timings
    for size in sz.solver_sizes:
        spec = STANDARD_SPEC.replace(size=size)
        model = scaled_cnn(size)
        layers = ["input", *model.block_names, "output"]
        record: dict[str, Any] = {"layers": layers}
        runs = {"auto": propagated(model, spec, angles, "auto", layers, device=ctx.device)}
        if size <= sz.solver_exact_max:
            runs["exact"] = propagated(model, spec, angles, "exact", layers,
                                       device=ctx.device, precision="model")
        if size <= sz.solver_krylov_max:
            runs["krylov"] = propagated(model, spec, angles, "krylov", layers,
                                        device=ctx.device)
        ref = truth(model, spec, angles, list(model.block_names), ctx.device)
        for name, run in runs.items():
            seconds[name, size] = run["seconds"] / len(angles)
            info = run["info"]
            routes = dict(zip(layers, info["solver"], strict=True))
            iters = [int(max(i)) for i in info["iterations"]]
            label = {"auto": "auto", "exact": "exact (float32 products, as before)",
                     "krylov": f"krylov (rtol {RTOL:g})"}[name]
            ctx.add("solvers", f"{size} px: {label}, every layer", seconds[name, size] * 1e3,
                    "ms/angle", note=", ".join(f"{n} {routes[n]}"
                                               + (f" {i} it" if i else "")
                                               for n, i in zip(layers, iters, strict=True)
                                               if routes[n] != "closed_form"))
            ratio = error_ratio(run, ref)
            ctx.add("solvers", f"{size} px: {label}, true error ÷ fisher_error (largest)",
                    ratio if math.isfinite(ratio) else 1e9, "", Goal("<=", 1.0),
                    note="against the float64 network solved exactly")
            record[name] = {"seconds_per_angle": seconds[name, size],
                            "peak_bytes": run["peak_bytes"], "routes": routes,
                            "iterations": dict(zip(layers, iters, strict=True)),
                            "values": run["values"].tolist(), "info": info,
                            "error_ratio": ratio}
        ctx.add("solvers", f"{size} px: auto, peak memory",
                runs["auto"]["peak_bytes"] / 2**20, "MiB", note=runs["auto"]["memory_kind"])
        record["truth"] = {k: v.tolist() for k, v in ref.items()}
        details["sizes"][size] = record
    if ("exact", 64) in seconds:
        ctx.add("solvers", "64 px: auto over exact (float32), every layer",
                seconds["exact", 64] / seconds["auto", 64], "×", Goal(">=", 20))
    lo, hi = min(sz.solver_sizes), max(sz.solver_sizes)
    ctx.add("solvers", f"auto: time per angle ∝ (pixels)^k from {lo}² to {hi}², k",
            _exponent(seconds, "auto", lo, hi), "", Goal("<=", 1.1))
    ctx.details["solvers"] = details


def _exponent(seconds: dict[tuple[str, int], float], solver: str, lo: int, hi: int) -> float:
    """k in t ∝ (P²)^k between image sizes lo and hi: log(t_hi/t_lo) / log(hi²/lo²)."""
    return math.log(seconds[solver, hi] / seconds[solver, lo]) / math.log((hi / lo) ** 2)
