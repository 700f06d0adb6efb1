"""The plan of a `propagated_fisher` call: each layer's route and everything its solve needs
that does not change between chunks (noise variance, precision of the products, windows of the
local layers, reorthogonalisation budgets), with the cost guard."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .. import validation as check
from ._base import INPUT, OUTPUT
from ._cost import (
    LayerCost,
    available_memory,
    choose,
    estimate,
    guard,
    reorthogonalize_steps,
)
from ._network import Network
from ._solve import layer_function
from ._sparse import SparseUnavailable, Window, local_window
from ._stimulus import Stimulus

__all__ = ["PASS_REPEATS", "PRECISION_INPUTS", "Plan", "make_plan", "pass_seconds",
           "pixel_variance"]

PRECISION_INPUTS = 4096
"""Noisy inputs (pixels × channels) from which ``precision="auto"`` runs the products in float64:
below, float32 rounding stays well under the default tolerance (the float32 exact solver is
within about 1e-6 of float64 at 32 px); from 64² up it does not (the default CNN's conv1 at
96 px: 4.7e-3 in float32; float32 Krylov products 1.9e-3 to 1.3e-2 at 64–128 px)."""


@dataclass
class Plan:
    """Each layer's route and cost, the products' precision, windows and reorthogonalisation."""

    routes: dict[str, str]
    costs: list[LayerCost]
    products64: bool
    windows: dict[str, Window]
    reorthogonalize: dict[str, int]


PASS_REPEATS = 5
"""How many timed forward passes :func:`_pass_seconds` takes the best of."""


def pass_seconds(model: torch.nn.Module, x: torch.Tensor, dev: torch.device) -> float:
    """Seconds of one forward pass of ``x``, for the cost model: the best of
    `PASS_REPEATS` passes (after the probe's), each on the CPU the smaller of its wall
    time and this process's CPU time.

    The CPU time does not count the time the process waits for a core, so a machine loaded by
    other jobs does not inflate the estimate (the best of two wall-clock passes on a 2-core
    machine running three other jobs once made the guard refuse the quickstart's FI, a matter
    of seconds, as "1.1 h"); the wall time bounds it for a multi-threaded pass, whose CPU time
    sums over threads. On other devices the wall time is used (CUDA synchronised around it).
    """
    best = math.inf
    for _ in range(PASS_REPEATS):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall, cpu = time.perf_counter(), time.process_time()
        model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = min(best, min(wall, cpu) if dev.type == "cpu" else wall)
    return best


def _flops(fn, x: torch.Tensor) -> float:  # noqa: ANN001
    """Multiply–adds of one image's pass through ``fn`` (convolutions and matrix products, by
    ``torch.utils.flop_counter``), or 0 where none are counted."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(x[:1])
        return float(counter.get_total_flops()) / 2
    except Exception:  # noqa: BLE001 - an op the counter cannot trace: unknown
        return 0.0


def make_plan(net: Network, names: list[str], site: str, variance: torch.Tensor,
              x0: torch.Tensor, image0: torch.Tensor, n_img: int, n_items: int, t_pass: float,
              dtype: torch.dtype, dev: torch.device, solver: str, precision: str,
              reorthogonalize: bool, maxiter: int, force: bool) -> Plan:
    """The plan of the layers that need a solver (not the noise site, not a decoded output).

    ``x0``: one item's noise source (the image, or the site's activations) and ``image0`` its
    image, for the counts and the windows; ``t_pass``: seconds of one forward pass of a
    chunk.
    """
    n_in = int((variance > 0).sum())
    order = net.order(list(net.units))
    n_chunks = math.ceil(n_items / n_img)
    memory = available_memory(dev)
    products64 = precision == "float64" or (
        precision == "auto" and torch.finfo(dtype).bits < 64 and n_in >= PRECISION_INPUTS)
    costs, windows, flops = [], {}, {}
    for name in names:
        if name == site or (name == OUTPUT and net.decoded):
            continue
        upto = order[:order.index(name) + 1] if name in order else order
        through = sum(net.units[n] for n in upto if n not in (INPUT, OUTPUT))
        fn = layer_function(net, name, site, image0)
        flops[name] = _flops(fn, x0)
        window = None
        if solver in ("auto", "sparse") and name in net.shapes and x0.dim() == 4:
            try:
                windows[name] = local_window(fn, x0, net.shapes[name])
                w = windows[name]
                window = (max(w.ky, w.kx), x0.shape[1])
            except SparseUnavailable:
                pass
        costs.append(estimate(name, net.units[name], n_in, through, n_img, n_chunks, t_pass,
                              torch.finfo(dtype).bits // 8, pass_flops=flops[name],
                              products64=products64, window=window, first=not costs,
                              maxiter=maxiter))
    routes = {c.name: choose(c, solver, memory) for c in costs}
    if not force:
        guard(costs, routes, memory)
    reorth = {}
    if reorthogonalize:
        for c in costs:
            if routes[c.name] == "krylov":
                reorth[c.name] = reorthogonalize_steps(c.units, c.inputs, n_img, flops[c.name],
                                                       products64, memory, maxiter)
    return Plan(routes, costs, products64, windows, reorth)


def pixel_variance(stim: Stimulus, sigma: float | None, shape: torch.Size,
                    dev: torch.device) -> tuple[torch.Tensor, float, str]:
    """Per-pixel noise variance V (flat, float64), the σ used, and a description."""
    if sigma is None:
        if not stim.has_noise:
            raise check.fail(
                "sigma", "given (the pixel noise standard deviation): the stimulus has no "
                "pixel noise of its own (spec.noise_std is 0, or a callable without "
                "as_stimulus(..., noise_std=...))", None)
        sigma_used = stim.spec.noise_std if stim.spec is not None else None
    else:
        sigma_used = sigma
    flat = stim.variance(shape, sigma_used, dev)
    if not (torch.isfinite(flat).all() and (flat >= 0).all() and (flat > 0).any()):
        raise ValueError(
            f"the noise variance map must be finite, >= 0 and positive somewhere, got values "
            f"in [{float(flat.min())}, {float(flat.max())}]")
    if sigma_used is None:  # a callable's own map or σ
        sigma_used = math.sqrt(float(flat.max()))
    if float(flat.max() - flat.min()) <= 1e-12 * float(flat.max()):
        return flat, float(sigma_used), (
            f"additive Gaussian pixel noise, variance {float(flat[0]):g} on every pixel")
    return flat, float(sigma_used), (
        f"additive Gaussian pixel noise, per-pixel variance map with scale sigma = "
        f"{sigma_used:g}; pixels with zero variance left out")
