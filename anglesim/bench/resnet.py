"""Section ``resnet``: propagated Fisher information of a ResNet-18-shaped network at 224 px.

The network people measure (Benjamin et al. 2022 measured torchvision ResNets) is larger than
anglesim's CNNs; this section times the matrix-free (Krylov) propagated estimator on one of
that shape (:class:`anglesim.models.ResNet`, torchvision's layer names): a stride-2 7×7 stem
convolution with batch norm, ReLU and a 3×3
stride-2 max-pool; four stages of two BasicBlocks each (He et al. 2016, "Deep residual
learning for image recognition", CVPR: two 3×3 convolutions with batch norm, the input added
back, through a 1×1 stride-2 projection where the shape changes) with 64, 128, 256 and 512
channels; global average pooling and a 2-unit readout of (cos 2θ, sin 2θ). Untrained, its
weights initialised deterministically from the named seed stream ``"init"`` (He-normal
convolutions, fan-out, as torchvision does; batch norm at identity in eval mode), on 3-channel
grey gratings. Rows: time per angle for the stem, each stage and the output with the Krylov
solver, and the cost of the products each Krylov iteration makes (one JVP and one VJP through
the network up to that layer). Goal: stem, four stages and output in ≤ 3 min per angle on one
thread. The exact solver is out of reach here (the stem's Jacobian alone is 200,704 × 150,528).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import jvp, vjp

from ..data import evaluation_grid
from ..fisher import Network
from ..models import build_model
from ..seeding import torch_generator
from ..stimuli import render_clean
from .harness import Context, Goal, race
from .solvers import has_solver, propagated
from .workloads import STANDARD_SPEC

STAGES = ("layer1", "layer2", "layer3", "layer4")
LAYERS = ("maxpool", *STAGES, "output")
"""The layers timed: the stem (its last module, ``maxpool``), the four stages and the decoded
output."""


def resnet_model(width: int, seed: int = 0) -> nn.Module:
    """The ResNet-18-shaped network of :mod:`anglesim.models` with ``width`` channels in its
    first stage (64 is ResNet-18's), 3 input channels and the (cos 2θ, sin 2θ) readout,
    initialised from the named stream ``"init"`` of ``seed``, in eval mode."""
    config = {"kind": "resnet18", "in_channels": 3, "width": width / 64, "readout": "cossin"}
    return build_model(config, generator=torch_generator(seed, "init")).eval()


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
    # smoke sizes time the exact solver (tiny and fast; the Krylov path is tested apart);
    # without the Krylov solver the other sizes cannot run at all
    solver: str | None = sz.resnet_solver
    if solver == "krylov" and not has_solver():
        solver = None
    image = render_clean(angles[:1], spec)
    details: dict[str, Any] = {"size": size, "width": sz.resnet_width, "angles":
                               angles.tolist(), "solver": solver, "layers": {}}
    total = 0.0
    for layer in LAYERS:
        products = product_seconds(model, image, layer, rounds=2)
        ctx.add("resnet", f"{size} px, 3 channels: one JVP + one VJP up to {layer}",
                products * 1e3, "ms", note="the products of one Krylov iteration")
        entry: dict[str, Any] = {"products_seconds": products}
        if solver is None:
            ctx.add("resnet", f"{size} px: {layer}, Krylov solver", math.nan, "s/angle",
                    note="not measured: anglesim.fisher.propagated_fisher has no solver= yet")
            total = math.nan
        else:
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
            Goal("<=", 180), note=f"{solver or 'krylov'} solver, {ctx.threads} thread(s)")
    ctx.details["resnet"] = details
