"""Strategies that keep the fine-tuned network near the pretrained one: in its weights, L2-SP
(Li et al. 2018) and TPGM (Tian et al. 2023); in its features, LDIFS (Mukhoti et al. 2024)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.func import functional_call

from .. import validation as check
from ._base import TINY, Strategy, register_strategy
from ._context import Batch, subset_batch
from ._parts import Parts

BLOCK_LIST = check.Names(allow_empty=True)
"""A list of block names, possibly empty."""


class LossCall(nn.Module):
    """The phase loss as a module holding the model, so ``torch.func.functional_call`` can
    evaluate it with some of the model's parameters swapped (``"model.<name>"``)."""

    def __init__(self, model: nn.Module, loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images: torch.Tensor, theta: torch.Tensor,
                values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(images, theta, values)


@register_strategy("l2_sp")
class L2SP(Strategy):
    """L2-SP (Li, Grandvalet & Davoine 2018, "Explicit Inductive Bias for Transfer Learning
    with Convolutional Networks", ICML): the penalty α·‖θ − θ₀‖² pulls every trainable
    parameter towards its value θ₀ at the start of the phase (the pretrained weights), plus
    β·‖θ‖² on blocks listed as new (the paper's freshly initialised layers). Li et al. write
    α/2 and β/2; here α and β multiply the squared norms directly.

    For comparison ``anchor="zero"`` makes it plain weight decay α‖θ‖², and ``norm="l1"``
    uses the L1 norm (α‖θ − θ₀‖₁, α‖θ‖₁). The penalty is added to the loss that is
    back-propagated; the history's ``train_loss`` stays the data loss. ``diagnostics()``:
    ``penalty`` (mean over each epoch's steps) over ``penalty_epoch``.

    Parameters: ``alpha`` (>= 0, default 0.01), ``beta`` (>= 0, default 0), ``norm`` ("l2" or
    "l1"), ``anchor`` ("pretrained" or "zero"), ``new_blocks`` (names or glob patterns, default
    empty).
    """

    parameters = {"alpha": check.Real(minimum=0), "beta": check.Real(minimum=0),
                  "norm": check.Choice(("l2", "l1")),
                  "anchor": check.Choice(("pretrained", "zero")), "new_blocks": BLOCK_LIST}
    defaults = {"alpha": 0.01, "beta": 0.0, "norm": "l2", "anchor": "pretrained",
                "new_blocks": []}

    def param_groups(self, model, pool, ctx):
        new = Parts(model).param_names(self.params["new_blocks"],
                                       f"strategy {self.name!r}: new_blocks")
        self._shared = [q.param for q in pool if q.name not in new]
        self._new = [q.param for q in pool if q.name in new]
        self.anchors = [p.detach().clone() for p in self._shared]
        self._epoch_sum, self._epoch_n, self._per_epoch = 0.0, 0, []
        return [{"params": [q.param for q in pool], "lr": ctx.lr}]

    def penalty(self) -> torch.Tensor | None:
        alpha, beta = self.params["alpha"], self.params["beta"]
        zero = self.params["anchor"] == "zero"
        p0 = next(iter(self._shared or self._new))
        total = p0.new_zeros(())
        if alpha > 0:
            for p, a in zip(self._shared, self.anchors, strict=True):
                d = p if zero else p - a
                total = total + (d.abs().sum() if self.params["norm"] == "l1" else (d * d).sum())
            total = alpha * total
        if beta > 0 and self._new:
            total = total + beta * sum((p * p).sum() for p in self._new)
        self._epoch_sum += float(total.detach())
        self._epoch_n += 1
        return total

    def on_epoch_end(self, record):
        self._per_epoch.append(self._epoch_sum / max(self._epoch_n, 1))
        self._epoch_sum, self._epoch_n = 0.0, 0

    def diagnostics(self) -> xr.Dataset:
        self.require_setup()
        per = np.asarray(self._per_epoch, dtype=np.float64)
        return self.dataset({"penalty": (("penalty_epoch",), per)},
                             coords={"penalty_epoch": np.arange(len(per))})


@register_strategy("tpgm")
class TPGM(Strategy):
    """Trainable Projected Gradient Method (Tian, Liu, Kira & Kira 2023, "Trainable Projected
    Gradient Method for Robust Fine-tuning", CVPR): fine-tune every parameter, and keep each
    trunk parameter tensor i within a ball ‖θ_i − θ₀_i‖ ≤ γ_i around its pretrained value,
    with the radii γ learned on held-out validation data.

    Projection: Π(θ_i) = θ₀_i + min(1, γ_i/‖θ_i − θ₀_i‖)(θ_i − θ₀_i) (Frobenius norm; the paper
    also offers a per-row MARS norm, not implemented). Heads (``head`` and extra heads) and
    what ``exclude`` names (names or glob patterns) are not projected.

    Cadence (alternating, as in the paper's Algorithm 1): after every ``update_every``-th
    optimiser step (steps T, 2T, … of the phase) a projection update learns the radii with the
    weights fixed: ``radius_steps`` Adam steps (rate ``radius_lr``) on log γ minimising the
    phase loss of the projected weights Π(θ) on minibatches (``val_batch_size``, default the
    phase's) of the validation set (the finite dataset's validation split, or ``val_size``
    images drawn once from the phase's prior and spec). Radii start, at the first update, at
    each tensor's current distance (the identity projection). After every step from the first
    update on the weights are projected with the current radii, so ‖θ − θ₀‖ ≤ γ holds after
    every later step. Learning log γ keeps radii positive and moves them by relative amounts.

    ``diagnostics()``: ``tpgm_radius`` (γ after each update) and ``tpgm_distance`` (‖θ − θ₀‖
    before that update's projection) over (``tpgm_update``, ``parameter``), coordinates
    ``parameter_block`` and ``tpgm_step``. Once set up, ``projected`` lists the projected
    tensors (:class:`~anglesim.finetune.NamedParam`) and ``anchors`` their values θ₀.

    Parameters: ``update_every`` (int >= 1, default 10), ``radius_steps`` (int >= 1, default
    5), ``radius_lr`` (> 0, default 0.1), ``val_size`` (int >= 1, default 256),
    ``val_batch_size`` (int >= 1 or None), ``exclude`` (names or patterns, default empty).
    """

    parameters = {"update_every": check.Integer(minimum=1),
                  "radius_steps": check.Integer(minimum=1),
                  "radius_lr": check.Real(minimum=0, min_open=True),
                  "val_size": check.Integer(minimum=1),
                  "val_batch_size": check.Optional(check.Integer(minimum=1)),
                  "exclude": BLOCK_LIST}
    defaults = {"update_every": 10, "radius_steps": 5, "radius_lr": 0.1, "val_size": 256,
                "val_batch_size": None, "exclude": []}

    def param_groups(self, model, pool, ctx):
        parts = Parts(model)
        exclude = parts.param_names(self.params["exclude"], f"strategy {self.name!r}: exclude")
        self.projected = [q for q in pool
                          if not parts.is_head(q.block) and q.name not in exclude]
        if not self.projected:
            raise ValueError(
                f"strategy {self.name!r}: no trunk parameters to project among the phase's "
                f"trainable blocks {sorted({q.block for q in pool})} "
                f"(exclude={self.params['exclude']})"
            )
        self.anchors = [q.param.detach().clone() for q in self.projected]
        self.log_radius: torch.Tensor | None = None
        self._radius_opt: torch.optim.Optimizer | None = None
        self._val_order: list[torch.Tensor] = []
        self._records: list[tuple[int, np.ndarray, np.ndarray]] = []
        return [{"params": [q.param for q in pool], "lr": ctx.lr}]

    @property
    def radii(self) -> torch.Tensor | None:
        """The current radii γ (one per projected tensor), or None before the first update."""
        return None if self.log_radius is None else self.log_radius.detach().exp()

    def distances(self) -> torch.Tensor:
        """‖θ_i − θ₀_i‖ for every projected tensor (float32 vector on the model's device)."""
        return torch.stack([torch.linalg.vector_norm(q.param.detach() - a)
                            for q, a in zip(self.projected, self.anchors, strict=True)])

    def _val_batch(self) -> Batch:
        data = self.ctx.validation_set(self.params["val_size"])
        size = self.params["val_batch_size"] or self.ctx.phase.batch_size
        if not self._val_order:
            g = self.ctx.generator
            order = torch.randperm(len(data[1]), generator=g, device=g.device).to(
                data[1].device)
            self._val_order = list(order.split(size))
        return subset_batch(data, self._val_order.pop(0))

    def learn_radii(self) -> None:
        """One projection update's radius learning: the weights stay fixed; only γ moves."""
        theta = [q.param.detach() for q in self.projected]
        diffs = [t - a for t, a in zip(theta, self.anchors, strict=True)]
        dist = torch.stack([torch.linalg.vector_norm(d) for d in diffs])
        log_dist = dist.clamp_min(TINY).log()
        if self.log_radius is None:
            self.log_radius = log_dist.clone().requires_grad_(True)
            self._radius_opt = torch.optim.Adam([self.log_radius], lr=self.params["radius_lr"])
        call = LossCall(self.model, self.ctx.loss)
        was_training = self.model.training
        self.model.eval()
        try:
            for _ in range(self.params["radius_steps"]):
                images, target, values = self._val_batch()
                # min(1, γ/d) in log space: exactly 1 at the initial γ = d, where the clamp
                # still passes the gradient, so the radii can shrink from the first update
                ratio = (self.log_radius - log_dist).clamp(max=0.0).exp()
                swapped = {f"model.{q.name}": a + r * d for q, a, r, d in
                           zip(self.projected, self.anchors, ratio, diffs, strict=True)}
                loss = functional_call(call, swapped, (images, target, values))
                (grad,) = torch.autograd.grad(loss, [self.log_radius])
                self._radius_opt.zero_grad(set_to_none=True)
                self.log_radius.grad = grad
                self._radius_opt.step()
        finally:
            self.model.train(was_training)
        self._records.append((self.step, self.radii.cpu().double().numpy(),
                              dist.cpu().double().numpy()))

    @torch.no_grad()
    def project(self) -> None:
        """Π: pull every projected tensor outside its ball back onto the ball's surface."""
        radius = self.radii
        for q, a, g in zip(self.projected, self.anchors, radius, strict=True):
            diff = q.param - a
            d = torch.linalg.vector_norm(diff)
            q.param.copy_(torch.where(d > g, a + (g / d.clamp_min(TINY)) * diff, q.param))

    def after_step(self) -> None:
        if self.step % self.params["update_every"] == 0:
            self.learn_radii()
        if self.log_radius is not None:
            self.project()

    def diagnostics(self) -> xr.Dataset:
        self.require_setup()
        recs = self._records
        n = len(self.projected)
        return self.dataset(
            {
                "tpgm_radius": (("tpgm_update", "parameter"),
                                np.array([r[1] for r in recs]).reshape(len(recs), n)),
                "tpgm_distance": (("tpgm_update", "parameter"),
                                  np.array([r[2] for r in recs]).reshape(len(recs), n)),
            },
            coords={
                "parameter": [q.name for q in self.projected],
                "parameter_block": ("parameter", [q.block for q in self.projected]),
                "tpgm_step": ("tpgm_update", np.array([r[0] for r in recs], dtype=np.int64)),
            },
        )


@register_strategy("ldifs")
class LDIFS(Strategy):
    """LDIFS (Mukhoti, Gal, Torr & Dokania 2024, "Fine-tuning can cripple your foundation
    model; preserving features may be the solution", TMLR): fine-tune every parameter while an
    ℓ2 penalty keeps the network's features close to those of the frozen pretrained network
    (the model as it was at the start of the phase), on the images of each training step:

        penalty = λ · (1/N) Σ_n Σ_{b ∈ blocks} (1/U_b) ‖φ_b(x_n; θ) − φ_b(x_n; θ₀)‖²

    with φ_b block b's output (U_b units) and x_1 … x_N the step's training batch (the same
    images as the data loss, :meth:`StrategyContext.current_batch`). The paper takes the
    features of several intermediate layers; here each block's squared distance is averaged
    over its units, so a block counts by its mean unit rather than by its size, and the blocks
    are summed. The penalty is 0 with a zero gradient at the first step (θ = θ₀), so it only
    pulls back once the features have moved; unlike L2-SP it constrains what the network
    computes, not where its weights are. The pretrained features are computed in eval mode
    (no dropout); the fine-tuned ones in the model's training mode. The penalty is added to
    the loss that is back-propagated; the history's ``train_loss`` stays the data loss.

    ``diagnostics()``: ``feature_distance`` (the mean over each epoch's steps of the
    unweighted per-unit squared distance) over (``penalty_epoch``, ``block``) and ``penalty``
    (λ times its sum over blocks) over ``penalty_epoch``.

    Parameters: ``weight`` λ (>= 0, default 1; 0 is plain full fine-tuning), ``blocks``
    (trunk blocks or modules inside them, names or glob patterns; default every trunk block;
    the features are taken in forward order).
    """

    parameters = {"weight": check.Real(minimum=0),
                  "blocks": check.Optional(check.Names(allow_empty=False))}
    defaults = {"weight": 1.0, "blocks": None}

    def param_groups(self, model, pool, ctx):
        parts = Parts(model)
        if self.params["blocks"] is None:
            self.blocks = list(parts.trunk)
        else:
            self.blocks = parts.resolve(self.params["blocks"], f"strategy {self.name!r}: blocks")
        outside = [b for b in self.blocks if not parts.in_trunk(b)]
        if outside:
            raise ValueError(
                f"strategy {self.name!r}: blocks must be trunk blocks (before the readout) "
                f"{parts.trunk} or modules inside them, got {outside}"
            )
        self._reference = copy.deepcopy(model).eval().requires_grad_(False)
        self._parts = (parts, Parts(self._reference))
        self._sums = torch.zeros(len(self.blocks), dtype=torch.float64)
        self._count = 0
        self._per_epoch: list[np.ndarray] = []
        return [{"params": [q.param for q in pool], "lr": ctx.lr}]

    def distances(self, images: torch.Tensor) -> torch.Tensor:
        """Per-block mean over images of the per-unit squared feature distance, [blocks]
        (differentiable in the model's parameters)."""
        parts, reference = self._parts
        now = parts.activations(images, self.blocks)
        with torch.no_grad():
            ref = reference.activations(images, self.blocks)
        return torch.stack([(now[b] - ref[b]).flatten(1).pow(2).mean(1).mean()
                            for b in self.blocks])

    def penalty(self) -> torch.Tensor | None:
        batch = self.ctx.current_batch()
        if batch is None:
            raise RuntimeError(
                f"strategy {self.name!r} needs the step's batch (ctx.current_batch()); "
                "drive it through anglesim.training.train"
            )
        dist = self.distances(batch[0])
        self._sums += dist.detach().double().cpu()
        self._count += 1
        return self.params["weight"] * dist.sum()

    def on_epoch_end(self, record):
        self._per_epoch.append((self._sums / max(self._count, 1)).numpy().copy())
        self._sums.zero_()
        self._count = 0

    def diagnostics(self) -> xr.Dataset:
        self.require_setup()
        per = np.asarray(self._per_epoch, dtype=np.float64).reshape(-1, len(self.blocks))
        ds = self.dataset(
            {"feature_distance": (("penalty_epoch", "block"), per),
             "penalty": (("penalty_epoch",), self.params["weight"] * per.sum(axis=1))},
            coords={"penalty_epoch": np.arange(len(per)), "block": list(self.blocks)},
        )
        ds["feature_distance"].attrs = {
            "long_name": "mean per-unit squared distance to the pretrained features"}
        return ds
