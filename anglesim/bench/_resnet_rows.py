"""Section ``resnet``: propagated Fisher information of the ResNet-18-shaped network
(:func:`~anglesim.bench.resnet.resnet_model`) on 3-channel grey gratings at 224 px.

Rows: time per angle for the stem, each stage and the output with the Krylov solver, and the
cost of the products each Krylov iteration makes (one JVP and one VJP through the network up
to that layer). Goal: stem, four stages and output in ≤ 3 min per angle on one thread. The
exact solver is out of reach here (the stem's Jacobian alone is 200,704 × 150,528).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import jvp, vjp

from ..data import evaluation_grid
from ..fisher._network import Network
from ..stimuli import render_clean
from ._harness import Context, Goal, race
from ._solvers import propagated
from ._workloads import STANDARD_SPEC
from .resnet import LAYERS, resnet_model


def product_seconds(model: nn.Module, x: torch.Tensor, layer: str, rounds: int) -> float:
    """Best seconds of one JVP plus one VJP through the network from the image to ``layer``
    (the decoded angle for "output"): the products one Krylov iteration makes."""
    network = Network(model)
    network.probe(x)

    def upto(z: torch.Tensor) -> torch.Tensor:
        return network.outputs(z, [layer])[0]

    tangent = torch.ones_like(x)
    with torch.no_grad():
        cotangent = torch.ones_like(upto(x))

    def both() -> None:
        jvp(upto, (x,), (tangent,))
        _, pull = vjp(upto, x)
        pull(cotangent)

    return race({"products": both}, rounds, 0.0)["products"]


def bench_resnet(ctx: Context) -> None:
    """Time per angle of the stem, each stage and the output of the ResNet-18-shaped network."""
    sz = ctx.sizes
    size = sz.resnet_size
    model = resnet_model(sz.resnet_width, seed=0)
    spec = STANDARD_SPEC.replace(size=size, channels=3)
    angles = evaluation_grid(sz.resnet_angles) + 0.1
    # smoke sizes time the exact solver (tiny and fast; the Krylov path is tested apart)
    solver = sz.resnet_solver
    image = render_clean(angles[:1], spec)
    details: dict[str, Any] = {"size": size, "width": sz.resnet_width, "angles":
                               angles.tolist(), "solver": solver, "layers": {}}
    total = 0.0
    for layer in LAYERS:
        products = product_seconds(model, image, layer, rounds=2)
        ctx.add("resnet", f"{size} px, 3 channels: one JVP + one VJP up to {layer}",
                products * 1e3, "ms", note="the products of one Krylov iteration")
        entry: dict[str, Any] = {"products_seconds": products}
        run = propagated(model, spec, angles, solver, layers=[layer])
        per_angle = run["seconds"] / len(angles)
        total += per_angle
        entry.update(seconds_per_angle=per_angle, peak_bytes=run["peak_bytes"],
                     fisher=run["values"].tolist(), info=run["info"])
        ctx.add("resnet", f"{size} px: {layer}, {solver} solver", per_angle, "s/angle",
                note=f"peak {run['peak_bytes'] / 2**20:.0f} MiB")
        ctx.log(f"  resnet {layer}: {per_angle:.1f} s/angle, products {products:.3f} s, "
                f"peak {run['peak_bytes'] / 2**20:.0f} MiB, iterations "
                f"{int(np.max(run['info'].get('iterations', 0)))}")
        details["layers"][layer] = entry
    ctx.add("resnet", f"{size} px: stem, four stages and output together", total, "s/angle",
            Goal("<=", 180), note=f"{solver} solver, {ctx.threads} thread(s)")
    ctx.details["resnet"] = details
