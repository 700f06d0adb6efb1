"""Fine-tuning strategies, registered by name and chosen in a training Phase.

A *strategy* is a small object that says which parameters train with which learning rates,
and may hook the training step. A Phase names one (``Phase.strategy``, default ``"full"``)
with its hyper-parameters (``Phase.strategy_params``); :func:`anglesim.training.train` builds
it with :func:`build_strategy` at the start of the phase and drives it through the protocol
described in :mod:`anglesim.training.strategy` (``param_groups``, the step hooks and
``diagnostics``). ``diagnostics()`` is an ``xarray.Dataset`` of what the strategy did (Auto-RGN's
rates per update, TPGM's learned radii, …); :func:`~anglesim.training.train` hands each phase's
strategy to its ``on_strategy_end(phase, strategy)`` callback so a study can store them.

Inside the hooks ``self.model``, ``self.optimizer``, ``self.ctx`` (a :class:`StrategyContext`:
the phase, its base learning rate, a generator of the strategy's own, the phase's loss, and
training / validation data), ``self.step`` (optimiser steps completed in the phase; in
``before_step`` the 0-based index of the step about to be taken) and ``self.epoch`` are set.
Extra data that strategies draw (Auto-RGN's minibatches, TPGM's validation set) come from the
strategy's own generator, so the training batches are those of a ``"full"`` run with the
same seed.

The protocol and the registry are the training side's (:mod:`anglesim.training.strategy`,
re-exported by :mod:`anglesim.finetune.base`); this package imports training and registers
the strategies, one module per family: :mod:`~anglesim.finetune.simple` (full, linear probe,
LP-FT, surgical, freeze), :mod:`~anglesim.finetune.layerwise` (Auto-RGN, discriminative
rates), :mod:`~anglesim.finetune.regularised` (L2-SP, TPGM, LDIFS) and
:mod:`~anglesim.finetune.lora` (the adapters and their strategy).

Registered strategies (parameters in brackets; every value is validated and a bad one raises
ValueError naming the parameter and the value):

* ``full`` [lr_scale] — every parameter trains.
* ``linear_probe`` [lr_scale] — only the heads train, on frozen features.
* ``lp_ft`` [probe_epochs, probe_tol, probe_lr_scale, ft_lr_scale] — linear probe, then full
  fine-tuning from that head (Kumar et al. 2022).
* ``surgical`` [blocks | start, stop, lr_scale] and ``freeze`` [blocks, lr_scale] — train only
  a named subset of blocks / everything but a named subset (Lee et al. 2023).
* ``auto_rgn`` [n_batches, batch_size, cadence] — per-tensor rates η·RGN/max RGN (Lee et al.
  2023).
* ``discriminative`` [decay, warmup_steps] — layer-wise rate decay with linear warm-up
  (Howard & Ruder 2018).
* ``l2_sp`` [alpha, beta, norm, anchor, new_blocks] — penalty towards the pretrained weights
  (Li et al. 2018), or plain L1/L2 decay towards zero for comparison.
* ``tpgm`` [update_every, radius_steps, radius_lr, val_size, val_batch_size, exclude] —
  projection onto learned balls around the pretrained weights (Tian et al. 2023).
* ``ldifs`` [weight, blocks] — ℓ2 penalty on the distance between the fine-tuned and the
  frozen pretrained network's features (Mukhoti et al. 2024).
* ``lora`` [rank, alpha, blocks, train_head, merge] — low-rank adapters (Hu et al. 2021).

A new strategy takes a few lines::

    @register_strategy("bias_only")
    class BiasOnly(Strategy):
        '''BitFit (Ben Zaken et al. 2022): only the bias terms train.'''

        defaults = {"lr_scale": 1.0}

        def param_groups(self, model, pool, ctx):
            biases = [q.param for q in pool if q.name.endswith(".bias")]
            return [{"params": biases, "lr": ctx.lr * self.params["lr_scale"]}]
"""

from __future__ import annotations

from .base import (
    STRATEGIES,
    Batch,
    NamedParam,
    Strategy,
    StrategyContext,
    build_strategy,
    make_context,
    named_pool,
    register_strategy,
    strategy_generator,
    strategy_names,
)
from .layerwise import AutoRGN, Discriminative, relative_gradient_norms
from .lora import LORA_TYPES, LoRA, LoRAConv2d, LoRALinear, apply_lora, lora_modules, merge_lora
from .regularised import L2SP, LDIFS, TPGM
from .simple import LPFT, Freeze, Full, LinearProbe, Surgical

__all__ = ["LORA_TYPES", "LPFT", "STRATEGIES", "TPGM", "AutoRGN", "Batch", "Discriminative",
           "Freeze", "Full", "L2SP", "LDIFS", "LinearProbe", "LoRA", "LoRAConv2d", "LoRALinear",
           "NamedParam", "Strategy", "StrategyContext", "Surgical", "apply_lora",
           "build_strategy", "lora_modules", "make_context", "merge_lora", "named_pool",
           "register_strategy", "relative_gradient_norms", "strategy_generator",
           "strategy_names"]
