"""Section ``resnet``: propagated Fisher information of the ResNet-18-shaped network
(:func:`~anglesim.bench.resnet.resnet_model`) on 3-channel grey gratings at 224 px, one
hard angle (π/2), untrained and briefly trained on gratings.

Rows: for each network state and layer (the stem's maxpool, layer1–4, output), the time per angle of
``propagated_fisher`` with its own plan (Krylov with float64 products for the wide layers),
its iterations and ``fisher_error``/J (converged: a bound within rtol 1e-3); layer1's
iterations when it starts from the stem's solution against a cold start; and the cost of the
products each Krylov iteration makes (one JVP and one VJP through the network up to that
layer). Goal: ≤ 3 min per layer per angle. The exact solver is out of reach here (the stem's
Jacobian alone is 200,704 × 150,528). ``--device cuda`` runs the same rows on a GPU.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import jvp, vjp

from ..data import draw
from ..distributions import Uniform
from ..fisher._network import Network
from ..losses import get_loss
from ..seeding import torch_generator
from ..stimuli import render_clean
from ._harness import Context, Goal, race
from ._solvers import HARD_ANGLE, propagated
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


def briefly_trained(width: int, size: int, steps: int, device: str,
                    seed: int = 0) -> nn.Module:
    """The network after ``steps`` Adam steps (batch 16, lr 1e-3, cosine loss on (cos 2θ,
    sin 2θ)) on the standard stimulus at ``size`` px, 3 channels, uniform angles: enough for
    its FI to carry a trained network's structure (a plain loop: the section times the
    solver, not training)."""
    model = resnet_model(width, seed=seed).to(device)
    spec = STANDARD_SPEC.replace(size=size, channels=3)
    loss_fn = get_loss("cosine", "cossin")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch_generator(seed, "data", device=device)
    model.train()
    for _ in range(steps):
        images, theta = draw(Uniform(), spec, 16, gen, device=device)
        loss = loss_fn(model(images), theta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def bench_resnet(ctx: Context) -> None:
    """Every layer of the ResNet-18-shaped network, untrained and briefly trained: time per
    angle, iterations and the bound of each; warm starts on layer1; the products' cost."""
    sz = ctx.sizes
    size, dev = sz.resnet_size, ctx.device
    spec = STANDARD_SPEC.replace(size=size, channels=3)
    angles = torch.tensor([HARD_ANGLE])
    solver = sz.resnet_solver  # smoke sizes: the exact solver (tiny; Krylov is tested apart)
    details: dict[str, Any] = {"size": size, "width": sz.resnet_width, "solver": solver,
                               "device": dev, "networks": {}}
    networks = {"untrained": resnet_model(sz.resnet_width, seed=0).to(dev)}
    started = time.perf_counter()
    networks["trained"] = briefly_trained(sz.resnet_width, size, sz.resnet_train_steps, dev)
    details["train_seconds"] = time.perf_counter() - started
    image = render_clean(angles, spec).to(dev)
    for layer in LAYERS:
        products = product_seconds(networks["untrained"], image, layer, rounds=2)
        ctx.add("resnet", f"{size} px, 3 channels: one JVP + one VJP up to {layer}",
                products * 1e3, "ms", note="the products of one Krylov iteration")
        details.setdefault("products_seconds", {})[layer] = products
    for state, model in networks.items():
        entry: dict[str, Any] = {}
        slowest = 0.0
        for layer in LAYERS:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = propagated(model, spec, angles, solver, [layer], device=dev)
            stalled = any("did not reach rtol" in str(w.message) for w in caught)
            per_angle = run["seconds"] / len(angles)
            slowest = max(slowest, per_angle)
            info = run["info"]
            iters = int(np.max(info["iterations"]))
            rel = float(np.max(np.asarray(info["fisher_error"]) / np.abs(run["values"])))
            kind = info["error_kind"][0]
            converged = not stalled and kind in ("bound", "exact")
            ctx.add("resnet", f"{size} px, {state}: {layer}", per_angle, "s/angle",
                    Goal("<=", 180),
                    note=f"{info['solver'][0]}, {iters} iterations, fisher_error/J {rel:.2g} "
                         f"({kind}: the bracket within rtol, plus the ridge estimate's term)"
                    if converged else f"{info['solver'][0]}: stopped at maxiter ({iters}), "
                                      f"fisher_error/J {rel:.2g}")
            ctx.log(f"  resnet {state} {layer}: {per_angle:.1f} s/angle, {iters} iterations, "
                    f"error/J {rel:.2g} {kind}")
            entry[layer] = {"seconds_per_angle": per_angle, "iterations": iters,
                            "relative_error": rel, "error_kind": kind,
                            "converged": converged, "fisher": run["values"].tolist(),
                            "peak_bytes": run["peak_bytes"]}
        details["networks"][state] = entry
    # warm starts: layer1 after the stem, from the stem's pixel-space solution or cold
    warm = {}
    for start in (True, False):
        run = propagated(networks["untrained"], spec, angles, "krylov", ["maxpool", "layer1"],
                         device=dev, warm_start=start)
        warm[start] = (int(np.max(run["info"]["iterations"][1])), run["seconds"])
    ctx.add("resnet", f"{size} px: layer1 iterations, warm start from the stem", warm[True][0],
            "", note=f"cold start: {warm[False][0]}; stem and layer1 together "
                     f"{warm[True][1]:.1f} s against {warm[False][1]:.1f} s")
    details["warm_start"] = {"iterations": {"warm": warm[True][0], "cold": warm[False][0]},
                             "seconds": {"warm": warm[True][1], "cold": warm[False][1]}}
    ctx.details["resnet"] = details
