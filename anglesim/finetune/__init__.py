"""Fine-tuning strategies, registered by name and chosen in a training Phase, for any network.

A Phase names a strategy (``Phase.strategy``, default ``"full"``) and its hyper-parameters
(``Phase.strategy_params``); :func:`anglesim.training.train` builds it and drives it through
the :class:`Strategy` protocol (which parameters train at which rates, hooks on the step,
``diagnostics()``). The built-in strategies — full, linear_probe, lp_ft, surgical, freeze,
auto_rgn, discriminative, l2_sp, tpgm, ldifs, lora — are listed with their parameters and
papers in the user guide (``docs/user_guide/training.rst``).

Any ``torch.nn.Module`` trains once it says how it is read out: :class:`ReadoutNet` attaches
heads at named layers (or reads the module's own output); :class:`Parts` names a network's
blocks, module paths and glob patterns over them in forward order, which is how
``Phase.trainable`` and the strategies' block parameters select parameters.

Main names: :class:`ReadoutNet`, :class:`Parts`, :class:`Strategy`,
:func:`register_strategy`, :func:`strategy_names`, :func:`validate_strategy`,
:func:`build_strategy`; the context a strategy sees (:class:`StrategyContext`,
:func:`make_context`, :func:`named_pool`, :func:`strategy_generator`); LoRA's adapters
(:func:`apply_lora`, :func:`merge_lora`).
"""

from __future__ import annotations

from ._base import (
    STRATEGIES,
    Strategy,
    build_strategy,
    register_strategy,
    strategy_names,
    validate_strategy,
)
from ._context import Batch, StrategyContext, make_context, strategy_generator
from ._heads import ReadoutNet
from ._layerwise import AutoRGN, Discriminative, relative_gradient_norms
from ._lora import LORA_TYPES, LoRA, LoRAConv2d, LoRALinear, apply_lora, lora_modules, merge_lora
from ._parts import NamedParam, Parts, named_pool
from ._regularised import L2SP, LDIFS, TPGM
from ._simple import LPFT, Freeze, Full, LinearProbe, Surgical

__all__ = ["LORA_TYPES", "LPFT", "STRATEGIES", "TPGM", "AutoRGN", "Batch", "Discriminative",
           "Freeze", "Full", "L2SP", "LDIFS", "LinearProbe", "LoRA", "LoRAConv2d", "LoRALinear",
           "NamedParam", "Parts", "ReadoutNet", "Strategy", "StrategyContext", "Surgical",
           "apply_lora", "build_strategy", "lora_modules", "make_context", "merge_lora",
           "named_pool", "register_strategy", "relative_gradient_norms", "strategy_generator",
           "strategy_names", "validate_strategy"]
