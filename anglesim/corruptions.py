"""Input-level corruptions of the grating stimulus, as in surgical fine-tuning's pixel shifts.

Lee et al. (2023, ICLR, "Surgical fine-tuning improves adaptation to distribution shifts")
found that for input-level shifts (CIFAR-C's blur, noise, contrast…) tuning only the first
block beats full fine-tuning. :func:`corrupt` gives the shifted stimulus for four pixel-level
corruptions, each a spec that every part of anglesim (rendering, training, the propagated and
sampled FI estimators) takes as it takes a ``GratingSpec``:

* ``"contrast"`` — contrast reduction, contrast × level (0 < level): the spec's own field;
* ``"noise"`` — the additive pixel noise's σ × level: the spec's own field;
* ``"invert"`` — contrast inversion x → −x of the clean image. With a fixed phase this is the
  spec with phase φ + π exactly (−cos u = cos(u + π); the aperture and the symmetric noise
  are unchanged); with a random phase (``phase=None``), where φ + π is the same distribution,
  a :class:`CorruptedSpec` negates the clean image instead;
* ``"blur"`` — a Gaussian blur of the clean image with σ = level pixels, by ``conv2d`` with a
  normalised kernel of radius ⌈3σ⌉ and zero padding (the aperture has already taken the
  image to 0 at its border), before the pixel noise: an optical blur seen through a noisy
  sensor, so the noise stays white and the propagated FI stays exact. It is differentiable in
  θ. On a grating of wavelength λ pixels a blur of σ pixels scales the amplitude by
  exp(−2π²σ²/λ²) away from the aperture's edge, so for gratings it is mostly a contrast
  reduction that also softens the aperture's edge.

:class:`CorruptedSpec` is a ``GratingSpec`` subclass with a ``clean_transform`` that
:func:`anglesim.stimuli.render` applies to the clean (masked) image before the noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import validation as check
from .stimuli import GratingSpec

__all__ = ["CORRUPTIONS", "CorruptedSpec", "corrupt", "gaussian_blur", "gaussian_kernel"]

CORRUPTIONS = ("blur", "noise", "contrast", "invert")
"""The corruption kinds :func:`corrupt` knows."""


@functools.lru_cache(maxsize=16)
def _kernel(sigma: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    return torch.outer(k, k)[None, None].to(dtype=dtype, device=device)


def gaussian_kernel(sigma: float, dtype: torch.dtype = torch.float32,
                    device: Any = None) -> torch.Tensor:
    """The [1, 1, 2r+1, 2r+1] normalised Gaussian kernel of σ pixels, r = ⌈3σ⌉ (sums to 1)."""
    sigma = check.real("sigma", sigma, minimum=0, min_open=True)
    return _kernel(sigma, dtype, str(torch.device(device or "cpu"))).clone()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images [N, C, P, P] channel by channel with a Gaussian of σ pixels (zero padding).

    y = k ⋆ x with k(i, j) ∝ exp(−(i² + j²)/2σ²) on |i|, |j| ≤ ⌈3σ⌉, Σ k = 1; linear and
    differentiable (``conv2d``), same size out as in.
    """
    sigma = check.real("sigma", sigma, minimum=0, min_open=True)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise check.fail("images", "a 4-d tensor [N, C, P, P]",
                         getattr(images, "shape", type(images).__name__))
    k = _kernel(sigma, images.dtype, str(images.device))
    n, c, h, w = images.shape
    out = F.conv2d(images.reshape(n * c, 1, h, w), k, padding=k.shape[-1] // 2)
    return out.reshape(n, c, h, w)


@dataclass(frozen=True)
class CorruptedSpec(GratingSpec):
    """A grating spec whose clean image is negated (``invert``) and/or blurred (``blur``, σ in
    pixels, 0 = none) before the noise; every other field as in ``GratingSpec``."""

    blur: float = 0.0
    invert: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "blur", check.real("blur", self.blur, minimum=0))
        object.__setattr__(self, "invert", check.boolean("invert", self.invert))

    def clean_transform(self, img: torch.Tensor) -> torch.Tensor:
        """−img if ``invert``, then the Gaussian blur of ``blur`` pixels if > 0."""
        if self.invert:
            img = -img
        if self.blur > 0:
            img = gaussian_blur(img, self.blur)
        return img

    @classmethod
    def from_spec(cls, spec: GratingSpec, **changes: Any) -> CorruptedSpec:
        """``spec``'s fields (and its blur/invert if it is one) with ``changes`` applied."""
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        fields.update(changes)
        return cls(**fields)


def corrupt(spec: GratingSpec, kind: str, level: float | None = None) -> GratingSpec:
    """The stimulus ``spec`` under corruption ``kind`` (see the module text for each).

    ``level``: the blur's σ in pixels (> 0), the noise's or the contrast's factor (> 0);
    unused (None) for ``"invert"``.
    """
    if not isinstance(spec, GratingSpec):
        raise check.fail("spec", "a GratingSpec", spec)
    kind = check.choice("kind", kind, CORRUPTIONS)
    if kind == "invert":
        if level is not None:
            raise check.fail("level", "None for 'invert'", level)
        if spec.phase is None or isinstance(spec, CorruptedSpec):
            return CorruptedSpec.from_spec(spec, invert=not getattr(spec, "invert", False))
        return spec.replace(phase=math.fmod(spec.phase + math.pi, 2 * math.pi))
    level = check.real("level", level, minimum=0, min_open=True)
    if kind == "contrast":
        return spec.replace(contrast=spec.contrast * level)
    if kind == "noise":
        return spec.replace(noise_std=spec.noise_std * level)
    return CorruptedSpec.from_spec(spec, blur=level)
