"""Section ``resnet``: propagated Fisher information of a ResNet-18-shaped network at 224 px.

The network people measure (Benjamin et al. 2022 measured torchvision ResNets) is larger than
anglesim's CNNs; this section times the matrix-free (Krylov) propagated estimator on one of
that shape, written here: a stride-2 7×7 stem convolution with batch norm, ReLU and a 3×3
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

import torch
from torch import nn
from torch.func import jvp, vjp

from ..data import evaluation_grid
from ..models import decode
from ..seeding import torch_generator
from ..stimuli import render_clean
from .harness import Context, Goal, race
from .solvers import has_solver, propagated
from .workloads import STANDARD_SPEC

STAGES = ("layer1", "layer2", "layer3", "layer4")
LAYERS = ("stem", *STAGES, "output")
"""The layers timed: the stem, the four stages and the decoded output."""


class BasicBlock(nn.Module):
    """y = relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x)); the shortcut is the
    identity, or a 1×1 convolution with batch norm where stride or width change."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.relu(y + skip)


class ResNet18Shaped(nn.Module):
    """A ResNet-18-shaped network ([2, 2, 2, 2] BasicBlocks) with a (cos 2θ, sin 2θ) readout.

    Children ``stem``, ``layer1`` … ``layer4`` and ``head`` (pool and linear readout), so their
    ``named_modules()`` paths are the block names; it also has the block protocol anglesim's
    estimators use (``block_names``, ``run_blocks``, ``decode``). Purely functional (no in-place
    ops), so it works under torch.func.
    """

    readout = "cossin"

    def __init__(self, in_channels: int = 3, width: int = 64, seed: int = 0) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths = (w, 2 * w, 4 * w, 8 * w)
        c_in = w
        for k, (name, c_out) in enumerate(zip(STAGES, widths, strict=True)):
            stride = 1 if k == 0 else 2
            setattr(self, name, nn.Sequential(BasicBlock(c_in, c_out, stride),
                                              BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 2))
        self.block_names = ("stem", *STAGES, "head")
        gen = torch_generator(seed, "init")
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu",
                                            generator=gen)
                elif isinstance(m, nn.Linear):
                    bound = 1 / math.sqrt(m.in_features)
                    nn.init.uniform_(m.weight, -bound, bound, generator=gen)
                    nn.init.zeros_(m.bias)
        self.eval()

    @property
    def blocks(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.block_names}

    def run_blocks(self, h: torch.Tensor, start: str | None = None,
                   stop: str | None = None) -> torch.Tensor:
        """Apply blocks ``start`` … ``stop`` (inclusive; defaults: first and last) to ``h``."""
        names = list(self.block_names)
        first = 0 if start is None else names.index(start)
        last = len(names) - 1 if stop is None else names.index(stop)
        for name in names[first:last + 1]:
            h = getattr(self, name)(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(x)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """θ̂ = atan2(s, c)/2 mod π from the (c, s) readout."""
        return decode(output, "cossin")


def product_seconds(model: ResNet18Shaped, x: torch.Tensor, layer: str, rounds: int) -> float:
    """Best seconds of one JVP plus one VJP through the network from the image to ``layer``
    (the decoded angle for "output"): the products one Krylov iteration makes."""
    def upto(z: torch.Tensor) -> torch.Tensor:
        if layer == "output":
            return model.decode(model.run_blocks(z))
        return model.run_blocks(z, stop=layer)

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
    model = ResNet18Shaped(in_channels=3, width=sz.resnet_width, seed=0)
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
        details["layers"][layer] = entry
    ctx.add("resnet", f"{size} px: stem, four stages and output together", total, "s/angle",
            Goal("<=", 180), note=f"{solver or 'krylov'} solver, {ctx.threads} thread(s)")
    ctx.details["resnet"] = details
