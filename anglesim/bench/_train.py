"""Section ``train``: the default CNN's training step, its FLOP/s and the model-FLOP
utilisation.

Images/s of one training step (forward, loss, backward, Adam) of the default CNN at batch
256, its FLOPs counted by :class:`torch.utils.flop_counter.FlopCounterMode`, and the achieved
FLOP/s over the float32 peak of a large square matmul measured alongside with the same
threads: the model-FLOP utilisation (MFU). Goal: ≥ 0.4. The step with the model in the NCHW
layout (torch's default) is timed too, since :func:`anglesim.models.build_model` puts CNNs in
channels-last.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from ..data import draw
from ..distributions import Uniform
from ..losses import get_loss
from ..models import build_model
from ._harness import Context, Goal, race, top_ops
from ._workloads import STANDARD_SPEC, standard_cnn


def train_step(model: torch.nn.Module, batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
               loss_name: str = "cosine") -> Callable[[], float]:
    """One Adam step of ``model`` on the (images, angles) that ``batch()`` returns, as
    :func:`anglesim.training.train` does (a fixed batch: ``lambda: (images, theta)``)."""
    loss_fn = get_loss(loss_name, model.readout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> float:
        images, theta = batch()
        loss = loss_fn(model(images), theta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def count_flops(model: torch.nn.Module, images: torch.Tensor, theta: torch.Tensor,
                loss_name: str = "cosine") -> int:
    """FLOPs of one forward, loss and backward pass, by torch's FlopCounterMode (convolutions
    and matrix products; elementwise ops, pooling and the optimiser count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    loss_fn = get_loss(loss_name, model.readout)
    net = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter:
        loss_fn(net(images), theta).backward()
    return int(counter.get_total_flops())


def bench_train(ctx: Context) -> None:
    """The default CNN's training step, its FLOP/s and the model-FLOP utilisation."""
    sz = ctx.sizes
    gen = torch.Generator().manual_seed(0)
    images, theta = draw(Uniform(), STANDARD_SPEC, sz.train_batch, gen)
    torch.manual_seed(0)
    model = build_model(standard_cnn())
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    flops = count_flops(model, images, theta)
    a, b = torch.randn(sz.matmul_n, sz.matmul_n), torch.randn(sz.matmul_n, sz.matmul_n)
    c = torch.empty(sz.matmul_n, sz.matmul_n)
    step = train_step(model, lambda: (images, theta))
    step_nchw = train_step(nchw, lambda: (images, theta))
    draw_gen = torch.Generator().manual_seed(1)
    prior = Uniform()
    with_draw = train_step(copy.deepcopy(model),
                           lambda: draw(prior, STANDARD_SPEC, sz.train_batch, draw_gen))
    t = race({"step": step, "step_nchw": step_nchw, "step_with_draw": with_draw,
              "matmul": lambda: torch.mm(a, b, out=c)}, sz.rounds, sz.min_seconds)
    peak = 2 * sz.matmul_n**3 / t["matmul"]
    achieved = flops / t["step"]
    n = sz.train_batch
    ctx.add("train", f"step at batch {n} (build_model's layout)", n / t["step"], "img/s")
    ctx.add("train", "step, model in NCHW layout", n / t["step_nchw"], "img/s")
    ctx.add("train", "speed-up of build_model's layout over NCHW", t["step_nchw"] / t["step"],
            "×")
    ctx.add("train", "step including drawing the batch (render)", n / t["step_with_draw"],
            "img/s")
    ctx.add("train", "FLOPs per step (FlopCounterMode)", flops / 1e6, "MFLOP")
    ctx.add("train", "achieved", achieved / 1e9, "GFLOP/s")
    ctx.add("train", f"float32 matmul peak ({sz.matmul_n}², same threads)", peak / 1e9,
            "GFLOP/s")
    ctx.add("train", "model-FLOP utilisation (achieved ÷ peak)", achieved / peak, "",
            Goal(">=", 0.4))
    details: dict[str, Any] = {"seconds": t, "flops_per_step": flops, "batch": n,
                               "matmul_n": sz.matmul_n}
    if ctx.mode != "smoke":
        details["profile_step"] = top_ops(step)
    ctx.details["train"] = details
