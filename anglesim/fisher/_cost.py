"""Cost estimates for the propagated solvers, the "auto" choice, and the cost guard.

Per layer with N units, P noisy inputs and a chunk of C images, in units of one forward pass
of the chunk (measured once, t_pass seconds):

* exact: the Jacobian needs min(P, 2N) passes (forward mode over P columns, or reverse mode
  over N rows at about twice the cost of a forward pass) and holds C·N·P elements (in the
  model's dtype and again in float64), plus a Gram matrix of C·min(N, P)² float64;
* krylov: a budget of 6 passes per iteration, guessed as min(N, P, KRYLOV_ITERATIONS)
  iterations, plus the probes (the Golub–Kahan solver needs one JVP and one VJP, about 3
  passes, per iteration, but more iterations than the guess on wide convolutions: 34–283 on
  the default CNN's conv1 at 32–64 px, over 1000 at 128 px; the budget is kept so that
  "auto" chooses as before); it holds
  C·(N_PROBES + 8) activations of the network up to the layer.

``solver="auto"`` takes the exact solver for a layer when its passes are at most twice the
Krylov guess's and its memory fits, else Krylov: small layers (the fully connected
ones, the head) stay exact, wide convolutional layers at large images go matrix-free. The
guard refuses a run whose chosen solver would need more memory than the device has (CUDA:
free memory; CPU: total memory) or
more than an hour, naming the cheaper choices, unless ``force=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ._krylov import N_PROBES

__all__ = ["KRYLOV_ITERATIONS", "LayerCost", "available_memory", "choose", "guard"]

KRYLOV_ITERATIONS = 100
"""The iteration count the cost model assumes for one Krylov solve."""

HOUR = 3600.0


@dataclass(frozen=True)
class LayerCost:
    """Estimated seconds and peak bytes of one layer's solve, for both solvers."""

    name: str
    units: int
    inputs: int
    exact_s: float
    exact_bytes: float
    krylov_s: float
    krylov_bytes: float
    exact_passes: int = 0
    krylov_passes: int = 0


def estimate(name: str, units: int, inputs: int, through: int, n_img: int, n_chunks: int,
             t_pass: float, itemsize: int) -> LayerCost:
    """The cost of layer ``name`` (``through`` activations per image up to it) over all chunks."""
    passes = min(inputs, 2 * units)
    small = min(units, inputs)
    gram_s = n_img * units * inputs * small / 2e9  # ~2 GFLOP/s for the dense Gram matrix
    exact_s = n_chunks * (passes * t_pass + gram_s)
    exact_bytes = n_img * units * inputs * (itemsize + 8.0) + 2 * n_img * small**2 * 8.0
    iters = min(units, inputs, KRYLOV_ITERATIONS)
    krylov_s = n_chunks * (6 * iters + 2 * N_PROBES) * t_pass
    krylov_bytes = n_img * (through + inputs) * 8.0 * (N_PROBES + 8)
    return LayerCost(name, units, inputs, exact_s, exact_bytes, krylov_s, krylov_bytes,
                     passes, 6 * iters + 2 * N_PROBES)


def available_memory(device: torch.device) -> float:
    """Bytes the device has: CUDA's free memory, else the machine's total memory.

    Total rather than MemAvailable on the CPU: the guard is for runs the machine cannot hold
    at all, and MemAvailable swings with other processes (it reads 0 on a busy shared host).
    """
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def choose(cost: LayerCost, solver: str, memory: float) -> str:
    """"exact" or "krylov" for one layer under ``solver`` ("exact", "krylov" or "auto").

    "auto" compares passes, not measured seconds, so that the choice (and the numbers) do
    not depend on the machine's load: exact when its Jacobian needs at most twice the
    passes the Krylov guess does and its memory fits in half of what is free.
    """
    if solver != "auto":
        return solver
    fits = cost.exact_bytes <= 0.5 * memory
    return "exact" if fits and cost.exact_passes <= 2 * cost.krylov_passes else "krylov"


def guard(costs: list[LayerCost], chosen: dict[str, str], memory: float) -> None:
    """ValueError (one line) when the chosen solvers need more than ``memory`` or an hour."""
    total_s = sum(c.exact_s if chosen[c.name] == "exact" else c.krylov_s for c in costs)
    peak = max((c.exact_bytes if chosen[c.name] == "exact" else c.krylov_bytes
                for c in costs), default=0.0)
    if peak <= memory and total_s <= HOUR:
        return
    krylov_s = sum(c.krylov_s for c in costs)
    krylov_b = max((c.krylov_bytes for c in costs), default=0.0)
    worst = max(costs, key=lambda c: c.exact_bytes if chosen[c.name] == "exact"
                else c.krylov_bytes)
    raise ValueError(
        f"propagated_fisher would need about {peak / 2**30:.3g} GB (device: "
        f"{memory / 2**30:.3g} GB) and {total_s / HOUR:.3g} h with solvers "
        f"{sorted(set(chosen.values()))} (largest layer {worst.name!r}: {worst.units} units x "
        f"{worst.inputs} inputs); cheaper: solver='krylov' (about {krylov_b / 2**30:.3g} GB, "
        f"{krylov_s / HOUR:.3g} h), fewer layers, or output_noise_fisher; force=True runs it "
        f"anyway")
