"""Tied max-pool windows: where the linearised Fisher information is not the small-noise limit.

`propagated_fisher` linearises each layer at the noiseless image, r ≈ r(x) + A n. That is the
σ → 0 limit of the noisy network only where r is differentiable at x. A max-pool window whose
largest inputs are exactly equal is a kink: with noise n = σz the window's output is
m + σ·max_i(a_iᵀz) over the tied elements i, which is linear in σ but not Gaussian and not
A n for any one A (autograd passes the gradient to one of the tied elements). The noisy
response's mean shifts and its covariance shrinks by factors that do not depend on σ, so the
gap between the linearised FI and the Monte-Carlo FI does not close as σ → 0.

Where ties come from: outside the aperture a clean image is exactly 0, so every unit of a conv
channel there sees the same input and outputs the same value (ReLU(bias), non-zero when the
bias is positive); all four units of such a 2×2 window tie. With ``mask_after_noise=False``
(the default spec) the pixel noise is added there too and reaches those windows; with
``mask_after_noise=True`` the aperture masks the noise, those pixels stay exactly 0 in every
noisy image, and the tied windows see no noise (nothing to linearise).

* `count_pool_ties` — per ``nn.MaxPool2d`` module (dotted ``named_modules`` name): windows,
  windows tied (top two inputs within ``atol``), tied at a non-zero value, and — given noisy
  images — tied windows whose inputs the noise moves (those break the linearisation).
* `warn_pool_ties` — renders the spec's clean and noisy images at some angles, counts, and
  warns (`PoolTieWarning`) when tied windows at non-zero values receive noise.
* `ties_attrs` — the counts as flat attrs for an estimator's DataArray.

Only ``nn.MaxPool2d`` modules are hooked (anglesim's CNNs use them; a functional
``F.max_pool2d`` call inside ``forward`` is not seen).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import validation as check

__all__ = ["PoolTieWarning", "TieCount", "count_pool_ties", "ties_attrs", "warn_pool_ties"]


class PoolTieWarning(UserWarning):
    """Tied max-pool windows receive noise: the linearised FI is not the small-noise limit."""


@dataclass(frozen=True)
class TieCount:
    """Max-pool windows of one pooling layer, summed over the images given."""

    windows: int
    tied: int
    tied_nonzero: int
    tied_noisy: int | None = None  # tied at a non-zero value and moved by the noise

    def __str__(self) -> str:
        noisy = "" if self.tied_noisy is None else f", {self.tied_noisy:,} of them under noise"
        return (f"{self.tied:,} of {self.windows:,} windows tied "
                f"({self.tied_nonzero:,} at non-zero values{noisy})")


def pool_windows(module: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """The pooling windows of x [B, C, H, W] as [B, C, k·k, L], padded with −inf like the pool."""
    k = _pair(module.kernel_size)
    s = _pair(module.stride if module.stride is not None else module.kernel_size)
    p = _pair(module.padding)
    d = _pair(module.dilation)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    h, w = x.shape[-2:]
    extra = [0, 0]
    if module.ceil_mode:
        for i, size in enumerate((h, w)):
            span = size + 2 * p[i] - d[i] * (k[i] - 1) - 1
            out = -(-span // s[i]) + 1
            if (out - 1) * s[i] >= size + p[i]:
                out -= 1
            extra[i] = max(0, (out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (size + 2 * p[i]))
    padded = F.pad(x, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]), value=-math.inf)
    cols = F.unfold(padded, k, dilation=d, stride=s)  # [B, C·k·k, L]
    return cols.reshape(x.shape[0], x.shape[1], k[0] * k[1], -1)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _tied(cols: torch.Tensor, atol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(tied [B, C, L], max value [B, C, L]) for windows [B, C, K, L]."""
    top = cols.topk(2, dim=2).values if cols.shape[2] > 1 else cols.repeat(1, 1, 2, 1)
    best, second = top[:, :, 0], top[:, :, 1]
    tied = (best - second <= atol) & torch.isfinite(best) & (cols.shape[2] > 1)
    return tied, best


def count_pool_ties(
    model: nn.Module,
    images: torch.Tensor,
    noisy: torch.Tensor | None = None,
    *,
    atol: float = 0.0,
) -> dict[str, TieCount]:
    """Tied windows of every ``nn.MaxPool2d`` in ``model`` on ``images`` [B, C, P, P].

    A window is tied when its two largest inputs differ by at most ``atol`` (0: exactly
    equal), and tied at a non-zero value when, moreover, its maximum is not 0 (a window of
    dead ReLUs, all 0, is flat but carries nothing either way). With ``noisy`` (images of the
    same shape, e.g. the same angles with the spec's noise) a tied non-zero window also counts
    as ``tied_noisy`` when the noise moves one of its tied inputs (an input below the maximum
    by a finite gap does not matter as σ → 0): those are the windows where the linearised FI
    is not the small-noise limit. The model runs
    in eval mode without gradients; returns {module name: TieCount} in module order.
    """
    atol = check.real("atol", atol, minimum=0)
    if not isinstance(model, nn.Module):
        raise check.fail("model", "a torch.nn.Module", model)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise check.fail("images", "a [B, C, P, P] tensor", getattr(images, "shape", images))
    if noisy is not None and (not isinstance(noisy, torch.Tensor)
                              or noisy.shape != images.shape):
        raise check.fail("noisy", f"a tensor of the images' shape {tuple(images.shape)}",
                         getattr(noisy, "shape", noisy))
    pools = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.MaxPool2d)]
    seen: dict[str, list[torch.Tensor]] = {name: [] for name, _ in pools}
    handles = [m.register_forward_hook(
        lambda mod, inp, out, name=name: seen[name].append(pool_windows(mod, inp[0].detach())))
        for name, m in pools]
    param = next(model.parameters(), None)
    dev = param.device if param is not None else images.device
    dtype = param.dtype if param is not None else images.dtype
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images.to(dev, dtype))
            if noisy is not None:
                model(noisy.to(dev, dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for name, _ in pools:
        clean = seen[name][0]
        tied, best = _tied(clean, atol)
        nonzero = tied & (best != 0)
        moved = None
        if noisy is not None:
            members = clean >= (best - atol).unsqueeze(2)  # the inputs tied at the maximum
            changed = ((seen[name][1] != clean) & members).any(dim=2)
            moved = int((nonzero & changed).sum())
        out[name] = TieCount(windows=int(tied.numel()), tied=int(tied.sum()),
                             tied_nonzero=int(nonzero.sum()), tied_noisy=moved)
    return out


def warn_pool_ties(
    model: nn.Module,
    spec: Any,
    angles: Sequence[float] | torch.Tensor = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4),
    generator: torch.Generator | None = None,
    *,
    atol: float = 0.0,
    stacklevel: int = 2,
) -> dict[str, TieCount]:
    """Count ties on the spec's clean and noisy images at ``angles``; warn when they matter.

    Clean images are ``render_clean(angles, spec)``, noisy ones ``render(angles, spec,
    generator)`` (the spec's own noise; default generator seeded 0); a spec with random
    phases is checked at phase 0 (the aperture's ties do not depend on the phase). A
    `PoolTieWarning` names each pooling layer whose tied non-zero windows receive noise.
    Returns the counts.
    """
    from .stimuli import GratingSpec, render, render_clean

    check.instance("model", model, nn.Module, "a torch.nn.Module")
    check.instance("spec", spec, GratingSpec, "a GratingSpec")
    check.generator("generator", generator)
    try:
        theta = torch.as_tensor(check.finite_array("angles", angles)).reshape(-1)
    except ValueError:
        theta = torch.empty(0)
    if theta.numel() == 0:
        raise check.fail("angles", "a non-empty list of finite angles", angles)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    fixed = spec if spec.phase is not None else spec.replace(phase=0.0)
    noisy = render(theta, fixed, gen)
    clean = render_clean(theta, fixed).reshape(noisy.shape).to(noisy.dtype)
    counts = count_pool_ties(model, clean, noisy, atol=atol)
    bad = {name: c for name, c in counts.items() if c.tied_noisy}
    if bad:
        where = "; ".join(f"{name}: {c}" for name, c in bad.items())
        hint = (" — the spec adds noise where the aperture masks the signal; "
                "mask_after_noise=True keeps those pixels exactly 0"
                if getattr(spec, "aperture", None) is not None
                and not getattr(spec, "mask_after_noise", True) else "")
        warnings.warn(
            f"tied max-pool windows receive noise ({where}) over {theta.numel()} images: the "
            f"linearised (propagated) FI is not the small-noise limit there{hint}",
            PoolTieWarning, stacklevel=stacklevel)
    return counts


def ties_attrs(counts: dict[str, TieCount]) -> dict[str, int | str]:
    """Flat attrs for a DataArray: ``pool_ties_<layer>`` = "tied/windows (non-zero, noisy)"
    per pooling layer and ``pool_ties_noisy`` = the total of tied non-zero windows under noise
    (−1 when not measured)."""
    attrs: dict[str, int | str] = {}
    total = 0
    measured = True
    for name, c in counts.items():
        key = "pool_ties_" + name.replace(".", "_")
        attrs[key] = (f"{c.tied}/{c.windows} tied, {c.tied_nonzero} at non-zero values"
                      + ("" if c.tied_noisy is None else f", {c.tied_noisy} under noise"))
        if c.tied_noisy is None:
            measured = False
        else:
            total += c.tied_noisy
    attrs["pool_ties_noisy"] = total if measured else -1
    return attrs
