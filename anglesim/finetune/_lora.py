"""LoRA (Hu et al. 2021): low-rank adapters for Linear and Conv2d layers, and their strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from .. import validation as check
from ._base import Strategy, register_strategy
from ._parts import Parts

RANK = check.Integer(minimum=1)
"""An adapter's rank r: an integer >= 1."""
ALPHA = check.Real(minimum=0, min_open=True)
"""An adapter's scale numerator α (the update is scaled by α/r): > 0."""


class LoRALinear(nn.Module):
    """A Linear layer with a low-rank adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
    Large Language Models"): y = base(x) + (α/r)·B A x with A [r, in] ~ N(0, 1/in) and
    B [out, r] = 0 at the start, so the adapted layer starts as the base layer exactly and its
    update ΔW = (α/r)·BA has rank ≤ r. :meth:`merge` folds ΔW into the base weight.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check.instance("base", base, nn.Linear, "an nn.Linear")
        rank, alpha = RANK("rank", rank), ALPHA("alpha", alpha)
        w = base.weight
        self.base = base
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        a = torch.randn(rank, base.in_features, generator=generator, dtype=w.dtype)
        self.lora_a = nn.Parameter((a / math.sqrt(base.in_features)).to(w.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype,
                                               device=w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r)·B A, shaped like the base weight [out, in]."""
        return self.scale * (self.lora_b @ self.lora_a)

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """Fold ΔW into the base weight (in place, same Parameter), zero B, return the base."""
        self.base.weight.add_(self.delta_weight())
        self.lora_b.zero_()
        return self.base


class LoRAConv2d(nn.Module):
    """A Conv2d with a low-rank adapter (Hu et al. 2021): a k×k conv A from C_in down to r
    channels (same stride, padding, dilation; no bias) followed by a 1×1 conv B up to C_out,
    scaled by α/r. A ~ N(0, 1/(C_in k²)), B = 0 at the start. The update
    ΔW[o, i, :, :] = (α/r)·Σ_r B[o, r] A[r, i, :, :] is, as a [C_out, C_in·k·k] matrix,
    a product of [C_out, r] and [r, C_in·k·k]: rank ≤ r. :meth:`merge` folds it into the base.
    """

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check.instance("base", base, nn.Conv2d, "an nn.Conv2d")
        if base.groups != 1:
            raise ValueError(f"LoRA needs a conv with groups=1, got groups={base.groups}")
        if base.padding_mode != "zeros":
            raise ValueError(f"LoRA needs padding_mode='zeros', got {base.padding_mode!r}")
        rank, alpha = RANK("rank", rank), ALPHA("alpha", alpha)
        w = base.weight
        c_out, c_in, kh, kw = w.shape
        self.base = base
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        a = torch.randn(rank, c_in, kh, kw, generator=generator, dtype=w.dtype)
        self.lora_a = nn.Parameter((a / math.sqrt(c_in * kh * kw)).to(w.device))
        self.lora_b = nn.Parameter(torch.zeros(c_out, rank, 1, 1, dtype=w.dtype,
                                               device=w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        h = F.conv2d(x, self.lora_a, None, b.stride, b.padding, b.dilation)
        return b(x) + self.scale * F.conv2d(h, self.lora_b)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r)·Σ_r B[:, r] A[r], shaped like the base weight [C_out, C_in, k, k]."""
        return self.scale * torch.einsum("or,rikl->oikl", self.lora_b[:, :, 0, 0], self.lora_a)

    @torch.no_grad()
    def merge(self) -> nn.Conv2d:
        """Fold ΔW into the base weight (in place, same Parameter), zero B, return the base."""
        self.base.weight.add_(self.delta_weight())
        self.lora_b.zero_()
        return self.base


LORA_TYPES = (LoRALinear, LoRAConv2d)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear | LoRAConv2d]:
    """The LoRA-wrapped modules of ``model`` by their qualified names."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LORA_TYPES)}


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float | None = None,
    blocks: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Wrap every Linear and Conv2d inside the named parts of ``model`` (an AngleNet or a
    ReadoutNet; names or glob patterns as in :class:`~anglesim.finetune.Parts`, default the
    trunk blocks) with a LoRA adapter of rank ``rank`` and scale ``alpha``/rank (``alpha``
    default: ``rank``), in place, in forward order, so names, ``run_blocks`` and
    ``activations`` keep working. ``generator`` (CPU) draws the A matrices. Returns the full
    module paths of the wrapped layers (``model.named_modules()`` names).
    """
    rank = RANK("rank", rank)
    alpha = float(rank) if alpha is None else ALPHA("alpha", alpha)
    parts = Parts(model)
    names = parts.trunk if blocks is None else parts.resolve(blocks, "blocks")
    wrapped: list[str] = []

    def adapt(parent: nn.Module, child_name: str, child: nn.Module, path: str) -> None:
        if isinstance(child, LORA_TYPES):
            raise ValueError(f"{path} already has a LoRA adapter; merge_lora(model) first")
        if isinstance(child, nn.Linear):
            setattr(parent, child_name, LoRALinear(child, rank, alpha, generator))
        elif isinstance(child, nn.Conv2d):
            setattr(parent, child_name, LoRAConv2d(child, rank, alpha, generator))
        else:
            for grandchild_name, grandchild in list(child.named_children()):
                adapt(child, grandchild_name, grandchild, f"{path}.{grandchild_name}")
            return
        wrapped.append(path)

    for name in parts.outermost(names):
        path = parts.paths[name]
        parent_path, _, child_name = path.rpartition(".")
        adapt(model.get_submodule(parent_path), child_name, model.get_submodule(path), path)
    if not wrapped:
        raise ValueError(f"blocks {names} hold no Linear or Conv2d layer to adapt")
    return wrapped


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter of ``model`` into its base weight and put the plain base module
    back in its place (same Parameter objects as before wrapping). Returns how many merged."""
    count = 0

    def unwrap(module: nn.Module) -> None:
        nonlocal count
        for child_name, child in list(module.named_children()):
            if isinstance(child, LORA_TYPES):
                setattr(module, child_name, child.merge())
                count += 1
            else:
                unwrap(child)

    unwrap(model)
    return count


@register_strategy("lora")
class LoRA(Strategy):
    """LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022):
    the base weights of the adapted blocks are frozen and low-rank adapters (rank r, scale
    α/r, B = 0 at the start) train on every Linear and Conv2d weight in them; a k×k conv gets a
    k×k conv down to r channels and a 1×1 conv up (:class:`LoRAConv2d`), so its update has
    rank ≤ r. The heads train fully when ``train_head`` (the new task's readout), else stay
    frozen. Adapter A matrices are drawn from the strategy's generator.

    At the end of the phase (after the best checkpoint is restored) the adapters are merged
    (``merge=True``, default) so the model leaves the phase with its plain layers and the same
    parameter names; with ``merge=False`` it keeps the adapters (:func:`merge_lora` later).
    ``diagnostics()``: ``lora_update_norm`` (‖ΔW‖_F) and ``lora_update_rank`` over
    ``lora_module`` (with coordinate ``lora_block``), measured before merging.

    Parameters: ``rank`` (int >= 1, default 4), ``alpha`` (> 0 or None = rank), ``blocks``
    (names or glob patterns of what to adapt, default the trunk within the phase's trainable
    blocks; see :class:`~anglesim.finetune.Parts`),
    ``train_head`` (bool, default True), ``merge`` (bool, default True).
    """

    parameters = {"rank": RANK, "alpha": check.Optional(ALPHA),
                  "blocks": check.Optional(check.Names(allow_empty=False)),
                  "train_head": check.Boolean(), "merge": check.Boolean()}
    defaults = {"rank": 4, "alpha": None, "blocks": None, "train_head": True, "merge": True}

    def param_groups(self, model, pool, ctx):
        parts = Parts(model)
        in_pool = list(dict.fromkeys(q.block for q in pool))
        if self.params["blocks"] is None:
            blocks = [b for b in in_pool if not parts.is_head(b)]
        else:
            blocks = parts.resolve(self.params["blocks"], f"strategy {self.name!r}: blocks")
            parts.check_in_pool(parts.outermost(blocks), pool, f"strategy {self.name!r}")
        heads = [q.param for q in pool if parts.is_head(q.block)]
        if self.params["train_head"] and any(parts.is_head(parts.block_of(parts.paths[b]))
                                             for b in blocks):
            raise ValueError(
                f"strategy {self.name!r}: blocks {blocks} adapt a head while train_head=True; "
                "set train_head=False to adapt it with LoRA instead"
            )
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator,
                                 device=ctx.generator.device).item())
        init = torch.Generator().manual_seed(seed)
        self.wrapped = apply_lora(model, self.params["rank"], self.params["alpha"], blocks,
                                  init)
        self.wrapped_blocks = [parts.block_of(path) for path in self.wrapped]
        modules = lora_modules(model)
        adapters = [p for name in self.wrapped
                    for p in (modules[name].lora_a, modules[name].lora_b)]
        groups = [{"params": adapters, "lr": ctx.lr}]
        if self.params["train_head"] and heads:
            groups.append({"params": heads, "lr": ctx.lr})
        self._summary: tuple[list[float], list[int]] | None = None
        return groups

    def summarise(self) -> tuple[list[float], list[int]]:
        """‖ΔW‖_F and rank(ΔW) (as a matrix [out, in·k·k]) of each adapter, now."""
        modules = lora_modules(self.model)
        norms, ranks = [], []
        with torch.no_grad():
            for name in self.wrapped:
                delta = modules[name].delta_weight()
                norms.append(float(torch.linalg.vector_norm(delta)))
                ranks.append(int(torch.linalg.matrix_rank(delta.reshape(delta.shape[0], -1))))
        return norms, ranks

    def on_phase_end(self) -> None:
        self._summary = self.summarise()
        if self.params["merge"]:
            merge_lora(self.model)

    def diagnostics(self) -> xr.Dataset:
        self.require_setup()
        norms, ranks = self._summary if self._summary is not None else self.summarise()
        blocks = self.wrapped_blocks
        return self.dataset(
            {"lora_update_norm": (("lora_module",), np.asarray(norms, dtype=np.float64)),
             "lora_update_rank": (("lora_module",), np.asarray(ranks, dtype=np.int64))},
            coords={"lora_module": list(self.wrapped), "lora_block": ("lora_module", blocks)},
        )
