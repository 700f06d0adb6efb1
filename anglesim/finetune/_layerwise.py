"""Layer-wise learning rates: Auto-RGN (Lee et al. 2023) and discriminative fine-tuning
(Howard & Ruder 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from .. import validation as check
from ._base import TINY, Strategy, register_strategy
from ._parts import Parts


def relative_gradient_norms(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """RGN_i = ‖g_i‖ / ‖w_i‖ per tensor (a missing gradient counts as 0; ‖w‖ floored at
    1e-12), as a float64 vector (Lee et al. 2023, §4)."""
    g = torch.stack([
        torch.zeros((), dtype=torch.float64) if gr is None
        else torch.linalg.vector_norm(gr.detach()).double().cpu()
        for gr in grads
    ])
    w = torch.stack([torch.linalg.vector_norm(p.detach()).double().cpu() for p in params])
    return g / w.clamp_min(TINY)


@register_strategy("auto_rgn")
class AutoRGN(Strategy):
    """Auto-RGN (Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation to Distribution
    Shifts", ICLR, §4): every parameter tensor i gets its own rate η·RGN_i / max_j RGN_j with
    the relative gradient norm RGN_i = ‖g_i‖/‖w_i‖, so the layers whose gradients are large
    relative to their weights move most. η is the phase's learning rate.

    Cadence: ``"epoch"`` (default) recomputes the rates at the start of every epoch from the
    mean gradient over ``n_batches`` minibatches of ``batch_size`` (default: the phase's)
    training images drawn with the strategy's generator, the model in eval mode (no dropout);
    ``"step"`` recomputes them before every step from that step's gradient.

    ``diagnostics()``: ``rgn`` and ``rgn_weight`` (= RGN/max RGN, the rate over η) over
    (``rgn_update``, ``parameter``) with coordinates ``parameter_block``, ``rgn_epoch`` and
    ``rgn_step``, and ``rgn_weight_block`` (the mean weight of each block's tensors) over
    (``rgn_update``, ``block``).

    Parameters: ``n_batches`` (int >= 1, default 2), ``batch_size`` (int >= 1 or None),
    ``cadence`` ("epoch" or "step").
    """

    parameters = {"n_batches": check.Integer(minimum=1),
                  "batch_size": check.Optional(check.Integer(minimum=1)),
                  "cadence": check.Choice(("epoch", "step"))}
    defaults = {"n_batches": 2, "batch_size": None, "cadence": "epoch"}

    def param_groups(self, model, pool, ctx):
        self.pool = list(pool)
        self._records: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        return [{"params": [q.param], "lr": ctx.lr} for q in pool]

    def _set_rates(self, grads: Sequence[torch.Tensor | None]) -> None:
        rgn = relative_gradient_norms([q.param for q in self.pool], grads)
        top = rgn.max()
        weight = rgn / top if top > 0 else torch.ones_like(rgn)
        for group, w in zip(self.optimizer.param_groups, weight.tolist(), strict=True):
            group["lr"] = self.ctx.lr * w
        self._records.append((self.epoch, self.step, rgn.numpy(), weight.numpy()))

    def on_epoch_start(self) -> None:
        if self.params["cadence"] != "epoch":
            return
        params = [q.param for q in self.pool]
        was_training = self.model.training
        self.model.eval()
        total: list[torch.Tensor | None] = [None] * len(params)
        n = self.params["n_batches"]
        for _ in range(n):
            images, theta, values = self.ctx.train_batch(self.params["batch_size"])
            loss = self.ctx.loss(images, theta, values) / n
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            total = [g if t is None else (t if g is None else t + g)
                     for t, g in zip(total, grads, strict=True)]
        self.model.train(was_training)
        self._set_rates(total)

    def before_step(self) -> None:
        if self.params["cadence"] == "step":
            self._set_rates([q.param.grad for q in self.pool])

    def diagnostics(self) -> xr.Dataset:
        self.require_setup()
        names = [q.name for q in self.pool]
        blocks = [q.block for q in self.pool]
        recs = self._records
        rgn = np.array([r[2] for r in recs]).reshape(len(recs), len(names))
        weight = np.array([r[3] for r in recs]).reshape(len(recs), len(names))
        order = list(dict.fromkeys(blocks))
        per_block = np.stack(
            [weight[:, [b == name for b in blocks]].mean(axis=1) for name in order], axis=1
        ) if recs else np.zeros((0, len(order)))
        ds = self.dataset(
            {
                "rgn": (("rgn_update", "parameter"), rgn),
                "rgn_weight": (("rgn_update", "parameter"), weight),
                "rgn_weight_block": (("rgn_update", "block"), per_block),
            },
            coords={
                "parameter": names,
                "parameter_block": ("parameter", blocks),
                "block": order,
                "rgn_epoch": ("rgn_update", np.array([r[0] for r in recs], dtype=np.int64)),
                "rgn_step": ("rgn_update", np.array([r[1] for r in recs], dtype=np.int64)),
            },
        )
        ds["rgn"].attrs = {"long_name": "relative gradient norm ‖g‖/‖w‖"}
        ds["rgn_weight"].attrs = {"long_name": "learning rate / phase learning rate"}
        return ds


@register_strategy("discriminative")
class Discriminative(Strategy):
    """Discriminative fine-tuning with warm-up (Howard & Ruder 2018, "Universal Language Model
    Fine-tuning for Text Classification", ACL): layer-wise learning-rate decay, each earlier
    block's rate ``decay`` times the next one's, ramped up linearly from 0.

    Depth: ``head`` and extra heads 0, the last trunk block 1, …, the first trunk block L (the
    number of trunk blocks). Block b's base rate is η_b = η·decay^depth(b) (η the phase's
    rate); at optimiser step s = 1, 2, … of the phase its rate is η_b·min(1, s/n) with
    n = ``warmup_steps`` (no warm-up when n = 0). ``diagnostics()``: ``lr`` over
    (``lr_step``, ``block``), the rates actually used at every step, and ``base_lr`` (η_b).

    Parameters: ``decay`` in (0, 1] (default 1/2.6, ULMFiT's), ``warmup_steps`` (int >= 0,
    default 0).
    """

    parameters = {"decay": check.Real(minimum=0, min_open=True, maximum=1),
                  "warmup_steps": check.Integer(minimum=0)}
    defaults = {"decay": 1 / 2.6, "warmup_steps": 0}

    def depth(self, model: nn.Module, block: str) -> int:
        """Distance of ``block`` from the output: heads 0, last trunk block 1, … (the trunk of
        :class:`~anglesim.finetune.Parts`, in forward order)."""
        parts = Parts(model)
        if parts.is_head(block):
            return 0
        return len(parts.trunk) - parts.trunk.index(block)

    def param_groups(self, model, pool, ctx):
        blocks = list(dict.fromkeys(q.block for q in pool))
        self._blocks = blocks
        self._base = [ctx.lr * self.params["decay"] ** self.depth(model, b) for b in blocks]
        self._lrs: list[list[float]] = []
        return [{"params": [q.param for q in pool if q.block == b], "lr": lr}
                for b, lr in zip(blocks, self._base, strict=True)]

    def rate(self, base: float, step: int) -> float:
        """The rate at optimiser step ``step`` (1-based) of a block with base rate ``base``."""
        n = self.params["warmup_steps"]
        return base if n == 0 else base * min(1.0, step / n)

    def before_step(self) -> None:
        s = self.step + 1
        lrs = [self.rate(base, s) for base in self._base]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._lrs.append(lrs)

    def diagnostics(self) -> xr.Dataset:
        self.require_setup()
        lrs = np.array(self._lrs, dtype=np.float64).reshape(len(self._lrs), len(self._blocks))
        return self.dataset(
            {"lr": (("lr_step", "block"), lrs),
             "base_lr": (("block",), np.array(self._base, dtype=np.float64))},
            coords={"lr_step": np.arange(1, len(self._lrs) + 1), "block": self._blocks},
        )


