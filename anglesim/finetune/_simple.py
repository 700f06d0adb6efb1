"""Fine-tuning strategies that choose what trains: full, linear probe, LP-FT, surgical, freeze."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from torch import nn

from .. import validation as check
from ._base import Strategy, register_strategy
from ._parts import Parts

LR_SCALE = check.Real(minimum=0, min_open=True)
"""A multiplier of the phase's learning rate: > 0."""


@register_strategy("full")
class Full(Strategy):
    """Every parameter of the phase's trainable blocks trains, at ``lr_scale`` × the phase's
    learning rate (one group). With the defaults this is exactly anglesim's behaviour before
    strategies existed (the reference point of Kumar et al. 2022 and Lee et al. 2023).

    Parameters: ``lr_scale`` (> 0, default 1), e.g. 0.1 to fine-tune at a tenth of the rate
    the phase states.
    """

    parameters = {"lr_scale": LR_SCALE}
    defaults = {"lr_scale": 1.0}

    def param_groups(self, model, pool, ctx):
        return [{"params": [q.param for q in pool], "lr": ctx.lr * self.params["lr_scale"]}]


@register_strategy("linear_probe")
class LinearProbe(Strategy):
    """Linear probing: only the heads (``head`` and any extra heads) train, on frozen features
    (the baseline of Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution", ICLR).

    Parameters: ``lr_scale`` (> 0, default 1).
    """

    parameters = {"lr_scale": LR_SCALE}
    defaults = {"lr_scale": 1.0}

    def param_groups(self, model, pool, ctx):
        parts = Parts(model)
        heads = [q.param for q in pool if parts.is_head(q.block)]
        if not heads:
            raise ValueError(
                f"strategy {self.name!r}: the phase's trainable blocks "
                f"{sorted({q.block for q in pool})} hold no head to probe"
            )
        return [{"params": heads, "lr": ctx.lr * self.params["lr_scale"]}]


@register_strategy("lp_ft")
class LPFT(Strategy):
    """LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
    Out-of-Distribution", ICLR): a linear probe trained to convergence, then full fine-tuning
    starting from that head, so the features are not distorted by a random head's gradients.

    Within one phase: the first epochs train only the heads (at ``probe_lr_scale`` × the
    phase's rate) until the probe converges — the epoch's loss (the validation loss for
    finite-data phases, else the training loss) improved on the previous epoch's by at most
    ``probe_tol`` relative — or ``probe_epochs`` epochs have passed; from the next epoch
    everything trains at ``ft_lr_scale`` × the phase's rate, the heads' optimiser state reset
    so fine-tuning starts afresh from the probe's head. ``diagnostics()`` gives
    ``lp_ft_switch_epoch``, the first fine-tuning epoch (within the phase).

    Parameters: ``probe_epochs`` (int >= 1, default 5; must be less than the phase's epochs),
    ``probe_tol`` (>= 0, default 1e-3), ``probe_lr_scale`` (> 0, default 1), ``ft_lr_scale``
    (> 0, default 1). Early stopping (finite data) can end the phase during the probe.
    """

    parameters = {"probe_epochs": check.Integer(minimum=1), "probe_tol": check.Real(minimum=0),
                  "probe_lr_scale": LR_SCALE, "ft_lr_scale": LR_SCALE}
    defaults = {"probe_epochs": 5, "probe_tol": 1e-3, "probe_lr_scale": 1.0, "ft_lr_scale": 1.0}

    def param_groups(self, model, pool, ctx):
        if self.params["probe_epochs"] >= ctx.phase.epochs:
            raise ValueError(
                f"strategy {self.name!r}: probe_epochs={self.params['probe_epochs']} leaves no "
                f"epoch for fine-tuning in a phase of {ctx.phase.epochs} epochs"
            )
        parts = Parts(model)
        self._heads = [q.param for q in pool if parts.is_head(q.block)]
        self._trunk = [q.param for q in pool if not parts.is_head(q.block)]
        if not self._heads or not self._trunk:
            raise ValueError(
                f"strategy {self.name!r} needs both a head and trunk blocks among the phase's "
                f"trainable blocks, got {sorted({q.block for q in pool})}"
            )
        return [
            {"params": self._heads, "lr": ctx.lr * self.params["probe_lr_scale"]},
            {"params": self._trunk, "lr": ctx.lr * self.params["ft_lr_scale"]},
        ]

    def on_phase_start(self) -> None:
        for p in self._trunk:
            p.requires_grad_(False)  # probe first: the trunk gets no gradient, hence no update
        self.switch_epoch: int | None = None
        self._probe_losses: list[float] = []

    def on_epoch_end(self, record):
        if self.switch_epoch is not None:
            return
        val = record.get("val_loss", math.nan)
        value = float(val) if val is not None and math.isfinite(val) else float(
            record["train_loss"])
        self._probe_losses.append(value)
        done = len(self._probe_losses) >= self.params["probe_epochs"]
        if len(self._probe_losses) >= 2:
            prev = self._probe_losses[-2]
            done = done or (prev - value) <= self.params["probe_tol"] * abs(prev)
        if done:
            for p in self._trunk:
                p.requires_grad_(True)
            self.optimizer.param_groups[0]["lr"] = self.ctx.lr * self.params["ft_lr_scale"]
            for p in self._heads:
                self.optimizer.state.pop(p, None)
            self.switch_epoch = self.epoch + 1

    def diagnostics(self) -> xr.Dataset:
        switch = getattr(self, "switch_epoch", None)
        losses = getattr(self, "_probe_losses", [])
        ds = self.dataset(
            {
                "lp_ft_switch_epoch": ((), -1 if switch is None else switch),
                "lp_ft_probe_loss": (("probe_epoch",), np.asarray(losses, dtype=np.float64)),
            },
        )
        ds["lp_ft_switch_epoch"].attrs = {
            "long_name": "first full fine-tuning epoch within the phase (-1: never switched)"}
        return ds


@register_strategy("surgical")
class Surgical(Strategy):
    """Surgical fine-tuning (Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation to
    Distribution Shifts", ICLR): only a named subset of the network trains, e.g. the first block
    only (input-level shifts) or from block k to block m; everything else stays bit-for-bit.

    Parameters: either ``blocks`` (names of blocks, heads or modules inside them, or glob
    patterns over those, e.g. ``["layer1.*"]``; see :class:`~anglesim.finetune.Parts`) or
    ``start`` and/or ``stop`` (block names; the inclusive range of ``Parts(model).chain``, the
    blocks in forward order up to ``head``, defaulting to its first and last); ``lr_scale``
    (> 0, default 1). Extra heads are addressed only through
    ``blocks``.
    """

    parameters = {"blocks": check.Optional(check.Names(allow_empty=False)),
                  "start": check.Optional(check.Text()), "stop": check.Optional(check.Text()),
                  "lr_scale": LR_SCALE}
    defaults = {"blocks": None, "start": None, "stop": None, "lr_scale": 1.0}

    @classmethod
    def check_together(cls, params):
        """``blocks`` or ``start``/``stop``: one of the two ways, not both, not neither."""
        blocks, start, stop = params["blocks"], params["start"], params["stop"]
        if blocks is not None and (start is not None or stop is not None):
            raise ValueError(
                f"strategy {cls.name!r}: give blocks or start/stop, not both; got "
                f"blocks={blocks!r}, start={start!r}, stop={stop!r}"
            )
        if blocks is None and start is None and stop is None:
            raise ValueError(
                f"strategy {cls.name!r} needs blocks or start/stop, got blocks=None, "
                "start=None, stop=None"
            )

    def chosen_blocks(self, model: nn.Module) -> list[str]:
        """The names (blocks, modules) this strategy trains on ``model``, in forward order."""
        parts = Parts(model)
        if self.params["blocks"] is not None:
            return parts.outermost(parts.resolve(self.params["blocks"],
                                                 f"strategy {self.name!r}: blocks"))
        names = parts.chain
        start = self.params["start"] or names[0]
        stop = self.params["stop"] or names[-1]
        for key, value in (("start", start), ("stop", stop)):
            if value not in names:
                raise ValueError(
                    f"strategy {self.name!r}: {key} must be one of {names}, got {value!r}")
        first, last = names.index(start), names.index(stop)
        if first > last:
            raise ValueError(
                f"strategy {self.name!r}: start={start!r} comes after stop={stop!r} in {names}")
        return names[first : last + 1]

    def param_groups(self, model, pool, ctx):
        parts = Parts(model)
        names = self.chosen_blocks(model)
        parts.check_in_pool(names, pool, f"strategy {self.name!r}")
        chosen = parts.param_names(names)
        return [{"params": [q.param for q in pool if q.name in chosen],
                 "lr": ctx.lr * self.params["lr_scale"]}]


@register_strategy("freeze")
class Freeze(Strategy):
    """Freeze the named parts; everything else of the phase's trainable set trains (the
    complement of ``surgical``; Lee et al. 2023). ``Phase.trainable`` still selects the pool.

    Parameters: ``blocks`` (non-empty list of names or glob patterns, as for ``surgical``, of
    what to freeze), ``lr_scale``.
    """

    parameters = {"blocks": check.Names(allow_empty=False), "lr_scale": LR_SCALE}
    defaults = {"lr_scale": 1.0}

    def param_groups(self, model, pool, ctx):
        frozen = Parts(model).param_names(self.params["blocks"],
                                          f"strategy {self.name!r}: blocks")
        params = [q.param for q in pool if q.name not in frozen]
        if not params:
            raise ValueError(f"strategy {self.name!r}: freezing {self.params['blocks']} leaves "
                             "nothing to train")
        return [{"params": params, "lr": ctx.lr * self.params["lr_scale"]}]


