"""The base of the fine-tuning strategies: the protocol, the registry and shared checks.

The protocol (:class:`Strategy`, :class:`StrategyContext`, the registry) is defined by the
training side, :mod:`anglesim.training.strategy`, which hands it to strategies; it is
re-exported here so a strategy module needs only this one. The helpers below are the checks
the built-in strategies share (block names known to the model, inside the phase's pool).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .. import validation as check
from ..models import AngleNet
from ..training.strategy import (
    STRATEGIES,
    Batch,
    NamedParam,
    Strategy,
    StrategyContext,
    _is_number,
    _subset,
    build_strategy,
    make_context,
    named_pool,
    register_strategy,
    strategy_generator,
    strategy_names,
)

__all__ = ["STRATEGIES", "Batch", "NamedParam", "Strategy", "StrategyContext", "_is_number",
           "_subset",
           "build_strategy", "make_context", "named_pool", "register_strategy",
           "strategy_generator", "strategy_names"]

_TINY = 1e-12


# --------------------------------------------------------------------------------------------
# validation helpers (errors name the strategy, the parameter and the value)


def _param(strategy: str, name: str) -> str:
    """How an error names a strategy's parameter: ``strategy 'lora': rank``."""
    return f"strategy {strategy!r}: {name}"


def _bad(strategy: str, name: str, need: str, value: Any) -> ValueError:
    return check.fail(_param(strategy, name), need, value)


def _positive(strategy: str, name: str, value: Any) -> float:
    return check.real(_param(strategy, name), value, minimum=0, min_open=True)


def _non_negative(strategy: str, name: str, value: Any) -> float:
    return check.real(_param(strategy, name), value, minimum=0)


def _integer(strategy: str, name: str, value: Any, minimum: int) -> int:
    return check.integer(_param(strategy, name), value, minimum=minimum)


def _choice(strategy: str, name: str, value: Any, choices: Sequence[str]) -> str:
    return check.choice(_param(strategy, name), value, choices)


def _names(strategy: str, name: str, value: Any, allow_empty: bool = False) -> list[str]:
    return check.name_list(_param(strategy, name), value, allow_empty=allow_empty)


def _flag(strategy: str, name: str, value: Any) -> bool:
    return check.boolean(_param(strategy, name), value)


def _all_blocks(model: AngleNet) -> list[str]:
    return model.block_names + list(model.heads)


def _check_known(strategy: str, name: str, blocks: Sequence[str], model: AngleNet) -> None:
    known = _all_blocks(model)
    unknown = [b for b in blocks if b not in known]
    if unknown:
        raise ValueError(
            f"strategy {strategy!r}: {name} names unknown block(s) {unknown}; "
            f"the model has {known}"
        )


def _check_in_pool(strategy: str, blocks: Sequence[str], pool: Sequence[NamedParam]) -> None:
    inside = {q.block for q in pool}
    outside = [b for b in blocks if b not in inside]
    if outside:
        raise ValueError(
            f"strategy {strategy!r}: block(s) {outside} are outside the phase's trainable "
            f"blocks {sorted(inside)}"
        )


def _is_head(model: AngleNet, block: str) -> bool:
    return block == "head" or block in model.heads


def _lr_scale_check(self: Strategy) -> None:
    _positive(self.name, "lr_scale", self.params["lr_scale"])


class _LossCall(nn.Module):
    """Wraps the phase loss so torch.func.functional_call can swap the model's parameters."""

    def __init__(self, model: AngleNet, loss: Callable) -> None:
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, images: torch.Tensor, theta: torch.Tensor,
                values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(images, theta, values)


