"""Cost estimates for the propagated solvers, the "auto" choice, and the cost guard.

Every route's cost is counted in forward passes of one chunk of the network up to the layer
(its FLOPs counted once with ``torch.utils.flop_counter`` where the layer has convolutions or
matrix products), so that the choice does not depend on the machine's load; the measured time
of one pass (t_pass) turns the chosen plan into seconds for the guard. Per layer with N units,
P noisy inputs and a chunk of C images:

* **exact**: the Jacobian needs min(P, 2N) passes (forward mode over P columns, or reverse
  mode over N rows at about twice a pass), twice that with float64 products, plus the Gram
  matrix and its Cholesky factor, C·N·P·min(N, P) multiply–adds; it holds C·N·P elements (in
  the products' dtype and again in float64) and a C·min(N, P)² Gram matrix;
* **sparse** (layers whose units see a bounded window of k_y × k_x pixels of c channels,
  found by :func:`._sparse.local_window`): one float64 Jacobian–vector product per colour,
  c·k_y·k_x (`COLOUR_PASSES` each), and a nested-dissection factorisation of the n × n matrix
  (n = min(N, P)) whose work grows as (w·c)²·n^1.5 with w = max(k_y, k_x) (the top separator
  of a 2-D grid of n cells holds w·c·√n unknowns, George 1973), with `SPARSE_FLOPS` the
  constant measured on the default CNN's conv1 and conv2 (64–224 px) and `FACTOR_PASSES`
  converting it to passes; its factor holds about `SPARSE_FILL` · (w·c)²·n·log₂ n numbers;
* **krylov**: `ITERATION_PASSES` per Golub–Kahan iteration (a JVP, a VJP and the recurrences,
  measured), half that with float32 products, plus the probes, for `krylov_iterations`
  iterations: a power of P measured on the benchmark's networks, steep for the first, nearly
  lossless layer after the noise site (34, 283, 2,015 and 1,794 iterations on the default
  CNN's conv1 at 32, 64, 96 and 128 px) and mild for the later ones; it holds C·(N_PROBES + 8)
  activations of the network up to the layer, and the kept vectors of the
  reorthogonalisation.

``solver="auto"`` keeps a layer on the dense exact solver (the reference) when its Jacobian
costs at most `EXACT_CHEAP` passes and fits in half the memory (every layer of the 32-px
studies, whose numbers therefore do not move); otherwise it takes the route of the smallest
predicted cost among those that fit. The guard refuses a run whose chosen solvers would need
more memory than the device has (CUDA: free memory; CPU: total memory) or more than an hour,
naming the cheaper choices, unless ``force=True``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from ._krylov import MAXITER, N_PROBES

__all__ = ["EXACT_CHEAP", "HOUR", "LayerCost", "available_memory", "choose", "estimate",
           "guard", "krylov_iterations", "reorthogonalize_steps"]

HOUR = 3600.0

EXACT_CHEAP = 1264
"""Passes up to which "auto" keeps a layer on the dense exact solver (twice the budget the
cost model used to give a Krylov solve: 6 passes for each of 100 iterations, plus the probes)."""

SPARSE_FLOPS = 8.0
"""Multiply–adds of the sparse factorisation per (w·c)²·n^1.5 (fitted on the default CNN's
conv1 and conv2, 64–224 px, one core)."""

SPARSE_FILL = 0.6
"""Non-zeros of the sparse factor per (w·c)²·n·log₂ n."""

FLOPS_PER_SECOND = 1e9
"""Multiply–adds per second of the dense and sparse factorisations (one core)."""

FACTOR_PASSES = 4.0
"""How many multiply–adds of a forward pass (convolutions, run at several times the speed)
one multiply–add of a factorisation costs as much time as."""

COLOUR_PASSES = 4.0
"""Passes one colour's float64 Jacobian–vector product costs (measured: 256 colours of conv2
at 64 and 128 px took as long as about 1,000 float32 passes)."""

ITERATION_PASSES = 10.0
"""Passes one Krylov iteration with float64 products costs (a JVP, a VJP and the recurrences;
5 with float32 products)."""

FIRST_ITERATIONS = (34.0, 1.6)
"""Krylov iterations a·(P/1024)^b of the first layer after the noise site: nearly lossless,
its spectrum reaches ε as the image grows (the default CNN's conv1: 34, 283, 2,015 and 1,794
iterations at 32, 64, 96 and 128 px)."""

DEEP_ITERATIONS = (200.0, 0.0)
"""Krylov iterations a·(P/1024)^b of later layers, warm-started (the default CNN's conv2: 213,
185, 182 and 174 at 64, 96, 128 and 224 px)."""


def krylov_iterations(inputs: int, first: bool, maxiter: int) -> int:
    """The iterations the cost model expects of one Krylov solve (see the module docstring)."""
    a, b = FIRST_ITERATIONS if first else DEEP_ITERATIONS
    return int(min(maxiter, max(10.0, a * (inputs / 1024) ** b)))


@dataclass(frozen=True)
class LayerCost:
    """Predicted passes (the machine-independent unit of the choice), seconds and peak bytes
    of one layer's solve by each route it can take (over all chunks)."""

    name: str
    units: int
    inputs: int
    passes: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, float] = field(default_factory=dict)
    iterations: int = 0


def estimate(name: str, units: int, inputs: int, through: int, n_img: int, n_chunks: int,
             t_pass: float, itemsize: int, *, pass_flops: float = 0.0,
             products64: bool = False, window: tuple[int, int] | None = None,
             first: bool = False, maxiter: int = MAXITER) -> LayerCost:
    """The cost of layer ``name`` over all chunks. ``through``: activations per image up to
    it; ``pass_flops``: multiply–adds of one image's forward pass up to it (0: unknown, then
    ``through``·10 stands in); ``window``: (w, channels) of a local layer, else None;
    ``first``: the first layer after the noise site (see `FIRST_ITERATIONS`)."""
    flops = pass_flops if pass_flops > 0 else 10.0 * through
    slow = 2.0 if products64 else 1.0  # float64 products cost about twice float32 ones
    small = min(units, inputs)
    passes: dict[str, float] = {}
    seconds: dict[str, float] = {}
    nbytes: dict[str, float] = {}
    gram = n_img * units * inputs * small  # multiply–adds of the Gram matrix
    passes["exact"] = min(inputs, 2 * units) * slow + FACTOR_PASSES * gram / (n_img * flops)
    seconds["exact"] = n_chunks * (min(inputs, 2 * units) * slow * t_pass
                                   + gram / FLOPS_PER_SECOND)
    size = 8 if products64 else itemsize
    nbytes["exact"] = n_img * units * inputs * (size + 8.0) + 2 * n_img * small**2 * 8.0
    iters = krylov_iterations(inputs, first, maxiter)
    k_passes = ITERATION_PASSES / 2 * iters * slow + 2 * N_PROBES
    passes["krylov"] = k_passes
    seconds["krylov"] = n_chunks * k_passes * t_pass
    nbytes["krylov"] = n_img * (through + inputs) * 8.0 * (N_PROBES + 8)
    if window is not None:
        w, channels = window
        colours = channels * w * w
        n = small
        factor = SPARSE_FLOPS * (w * channels) ** 2 * n**1.5 * n_img
        passes["sparse"] = (COLOUR_PASSES * colours + 24
                            + FACTOR_PASSES * factor / (n_img * flops))
        seconds["sparse"] = n_chunks * ((COLOUR_PASSES * colours + 24) * t_pass
                                        + factor / FLOPS_PER_SECOND)
        fill = SPARSE_FILL * (w * channels) ** 2 * n * math.log2(max(n, 2))
        nbytes["sparse"] = (n_img * units * colours * 16.0 + fill * 16.0
                            + colours * n_img * units * 8.0)
    return LayerCost(name, units, inputs, passes, seconds, nbytes, iters)


def reorthogonalize_steps(units: int, inputs: int, n_img: int, pass_flops: float,
                          products64: bool, memory: float, maxiter: int) -> int:
    """Krylov vectors of each side to keep for full reorthogonalisation: as many as a quarter
    of the memory holds, and no more than keep one step's reorthogonalisation (CGS twice on both
    sides, 8·k·(N + P) multiply–adds an image) below the cost of its products."""
    by_memory = int(0.25 * memory // (n_img * (units + inputs) * 8.0))
    products = 3.0 * max(pass_flops, 1.0) * (2.0 if products64 else 1.0)
    by_cost = int(products // (8.0 * (units + inputs)))
    return max(0, min(maxiter, by_memory, by_cost))


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
    """The route of one layer under ``solver`` ("exact", "sparse", "krylov" or "auto").

    "auto": the dense exact solver when its Jacobian needs at most `EXACT_CHEAP` passes and
    fits in half the memory; otherwise the fitting route of the fewest predicted passes
    (Krylov always fits the plan). "sparse" on a layer without a bounded window: "krylov".
    """
    if solver == "sparse":
        return "sparse" if "sparse" in cost.passes else "krylov"
    if solver != "auto":
        return solver
    fits = {r for r, b in cost.bytes.items() if b <= 0.5 * memory} | {"krylov"}
    exact_jacobian = min(cost.inputs, 2 * cost.units)
    if "exact" in fits and exact_jacobian <= EXACT_CHEAP:
        return "exact"
    return min(sorted(fits & set(cost.passes)), key=lambda r: cost.passes[r])


def guard(costs: list[LayerCost], chosen: dict[str, str], memory: float) -> None:
    """ValueError (one line) when the chosen solvers need more than ``memory`` or an hour."""
    total_s = sum(c.seconds[chosen[c.name]] for c in costs)
    peak = max((c.bytes[chosen[c.name]] for c in costs), default=0.0)
    if peak <= memory and total_s <= HOUR:
        return
    krylov_s = sum(c.seconds["krylov"] for c in costs)
    krylov_b = max((c.bytes["krylov"] for c in costs), default=0.0)
    worst = max(costs, key=lambda c: c.bytes[chosen[c.name]])
    raise ValueError(
        f"propagated_fisher would need about {peak / 2**30:.3g} GB (device: "
        f"{memory / 2**30:.3g} GB) and {total_s / HOUR:.3g} h with solvers "
        f"{sorted(set(chosen.values()))} (largest layer {worst.name!r}: {worst.units} units x "
        f"{worst.inputs} inputs); cheaper: solver='krylov' (about {krylov_b / 2**30:.3g} GB, "
        f"{krylov_s / HOUR:.3g} h), fewer layers, or output_noise_fisher; force=True runs it "
        f"anyway")
