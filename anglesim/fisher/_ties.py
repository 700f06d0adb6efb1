"""Tied max-pool windows seen by the propagated estimator (issue 15), as attrs and a warning.

`propagated_fisher` linearises the network at the noiseless image. Where a max-pool window's
largest inputs are exactly tied at a non-zero value and the pixel noise reaches them, the
network is not differentiable there and the linearised FI is not the σ → 0 limit of the noisy
network's FI (see :mod:`anglesim.pool_ties`). `pool_tie_check` counts such windows with
:func:`anglesim.pool_ties.count_pool_ties` on at most `MAX_IMAGES` of the measured items: one
forward pass on their clean images x(θ) and one on x(θ) + √V ⊙ z, with V the noise variance
the estimator propagates and z drawn from its own stream ``"pool_ties"`` of seed 0 — never from
a generator an estimator uses, so no estimate moves. For noise injected at a layer only the
clean images are counted (``pool_ties_noisy`` = −1: not measured) and nothing warns.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..pool_ties import PoolTieWarning, count_pool_ties, ties_attrs
from ..seeding import torch_generator
from ._base import INPUT
from ._stimulus import Stimulus

__all__ = ["MAX_IMAGES", "pool_tie_check"]

MAX_IMAGES = 8
"""Most items (angle, phase) whose images are checked for ties, evenly spread over those
measured."""

WARNED: set[tuple[tuple[str, ...], bool]] = set()
"""(tied pooling layers, hint) pairs already warned about in this process."""


def pool_tie_check(
    model: nn.Module,
    stim: Stimulus,
    theta: torch.Tensor,
    phase: torch.Tensor | None,
    variance: torch.Tensor,
    noise_at: str = INPUT,
    *,
    warn: bool = True,
    stacklevel: int = 3,
) -> dict[str, Any]:
    """attrs ``pool_ties_<pool layer>``, ``pool_ties_noisy``, ``pool_ties_images`` for the
    items ``theta`` [M] (with ``phase`` [M] or None), warning with `PoolTieWarning` when tied
    non-zero windows receive the noise of per-pixel variance ``variance`` (flat, one image)
    unless ``warn=False`` (the caller knows: ``propagated_fisher(pool_ties="record")``).

    A model without ``nn.MaxPool2d`` modules is not run: ``pool_ties_noisy`` = 0.
    """
    if not any(isinstance(m, nn.MaxPool2d) for m in model.modules()):
        return {"pool_ties_noisy": 0, "pool_ties_images": 0}
    n = theta.numel()
    pick = torch.linspace(0, n - 1, min(n, MAX_IMAGES), device=theta.device).round().long()
    th = theta[pick]
    ph = None if phase is None else phase[pick]
    with torch.no_grad():
        clean = stim.clean(th, ph)
        noisy = None
        if noise_at == INPUT:
            gen = torch_generator(0, "pool_ties")
            z = torch.randn(clean.shape, generator=gen, dtype=torch.float64)
            std = variance.detach().double().cpu().sqrt().reshape(clean.shape[1:])
            noisy = (clean.double().cpu() + std * z).to(clean.device, clean.dtype)
    counts = count_pool_ties(model, clean, noisy)
    attrs: dict[str, Any] = ties_attrs(counts)
    attrs["pool_ties_images"] = int(th.numel())
    bad = {name: c for name, c in counts.items() if c.tied_noisy}
    if bad and warn:
        where = "; ".join(f"{name}: {c}" for name, c in bad.items())
        spec = stim.spec
        hint = (" — the spec adds noise where the aperture masks the signal; "
                "mask_after_noise=True keeps those pixels exactly 0"
                if spec is not None and spec.aperture is not None
                and not spec.mask_after_noise else "")
        key = (tuple(sorted(bad)), bool(hint))
        if key not in WARNED:  # the counts vary by angle and call: one warning per process
            WARNED.add(key)    # and pooling layers, the counts of every call are in the attrs
            warnings.warn(
                f"tied max-pool windows receive noise ({where}) over {th.numel()} images: the "
                f"propagated (linearised) FI is not the small-noise limit there{hint} (every "
                f"result's counts are in its pool_ties_* attrs; said once per process)",
                PoolTieWarning, stacklevel=stacklevel)
    return attrs
