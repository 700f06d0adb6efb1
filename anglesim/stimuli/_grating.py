"""``GratingSpec``: everything about a grating stimulus except its orientation, with its
presets, configs and derived geometry (pixel grid, aperture, noise variance), and the cached
grid and mask the renderer shares. The formulas are in `render`'s docstring."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from .. import validation as check

ANY = check.Check(lambda name, value: value, "any value (checked by GratingSpec)")

FIELDS = {
    "size": check.Integer(minimum=8),
    "frequency": check.Real(minimum=0.0, min_open=True),
    "phase": check.Optional(check.Real()),
    "contrast": check.Real(minimum=0.0),
    "aperture": check.Optional(check.Real(minimum=0.0, min_open=True)),
    "aperture_edge": check.Real(minimum=0.0),
    "noise_std": check.Real(minimum=0.0),
    "noise_prob": check.Real(0.0, 1.0),
    "shot_prob": check.Real(0.0, 1.0),
    "mask_after_noise": check.Boolean(),
    "extent": check.Real(minimum=0.0, min_open=True),
    "channels": check.Integer(minimum=1),
}
"""The constraints on `GratingSpec`'s scalar fields (``clamp`` and ``colour`` are checked
against each other's and the channels' values)."""


@dataclass(frozen=True)
class GratingSpec:
    """Everything about a grating stimulus except its orientation.

    Attributes:
        size: P, the image is P × P pixels; int >= 8.
        frequency: cycles per image across the full width 2·extent; > 0.
        phase: φ in radians; None draws φ ~ U[0, 2π) per image from the generator.
        contrast: amplitude of the cosine; >= 0.
        aperture: radius of the circular aperture as a fraction of the half-width ``extent``
            (outer radius, where the mask reaches 0); None = no aperture; > 0.
        aperture_edge: width of the raised-cosine edge as a fraction of the half-width; with
            ρ = √(X² + Y²)/extent the mask is ½(1 + cos(π t)), t = clip((ρ − aperture +
            edge) / edge, 0, 1). 0 = hard edge: a pixel is kept iff X² + Y² < (aperture·extent)².
        noise_std: σ of the additive Gaussian pixel noise; >= 0.
        noise_prob: probability that a pixel receives the Gaussian noise; in [0, 1].
        shot_prob: probability that a pixel is replaced by ±contrast (equal odds); in [0, 1].
        clamp: (lo, hi), lo < hi: pixel values clamped after the noise; None = no clamp.
        mask_after_noise: True: the aperture multiplies the noisy image; False: it multiplies
            the clean grating and the noise is added everywhere.
        extent: half-width of the coordinate grid, x = y = linspace(−extent, extent, P); > 0.
        channels: C, the number of image channels (1 grey; 3 for RGB models); int >= 1.
        colour: None (every channel carries the same grey grating) or one finite weight per
            channel, not all 0: channel c is w_c times the grating, e.g. (1.0, 0.6, 0.2).

    ``frequency`` must be at most P/2 (the Nyquist limit, see `render`).
    """

    size: int = 32
    frequency: float = 4.0
    phase: float | None = 0.0
    contrast: float = 1.0
    aperture: float | None = 0.9
    aperture_edge: float = 0.1
    noise_std: float = 0.0
    noise_prob: float = 1.0
    shot_prob: float = 0.0
    clamp: tuple[float, float] | None = None
    mask_after_noise: bool = False
    extent: float = math.pi
    channels: int = 1
    colour: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name, value in check.validate({k: getattr(self, k) for k in FIELDS},
                                          FIELDS).items():
            put(name, value)
        if self.frequency > self.size / 2:
            raise check.fail("frequency", f"<= size/2 = {self.size / 2:g} cycles per image (the "
                             "Nyquist limit; beyond it the grating aliases)", self.frequency)
        if self.colour is not None:
            c = self.colour
            if isinstance(c, (str, bytes)) or not hasattr(c, "__len__"):
                raise check.fail("colour", f"None or one weight per channel ({self.channels})", c)
            if len(c) != self.channels:
                raise check.fail("colour", f"one weight per channel (channels={self.channels})",
                                 c)
            weights = tuple(check.real(f"colour[{i}]", w) for i, w in enumerate(c))
            if not any(weights):
                raise check.fail("colour", "a weight tuple with a nonzero weight", c)
            put("colour", weights)
        if self.clamp is not None:
            c = self.clamp
            if isinstance(c, (str, bytes)) or not hasattr(c, "__len__") or len(c) != 2:
                raise check.fail("clamp", "None or a pair (lo, hi)", c)
            lo, hi = check.real("clamp[0]", c[0]), check.real("clamp[1]", c[1])
            if not lo < hi:
                raise check.fail("clamp", "a pair (lo, hi) with lo < hi", c)
            put("clamp", (lo, hi))

    # ---- presets ---------------------------------------------------------------------------

    @classmethod
    def reference(cls) -> GratingSpec:
        """The stimulus of the research anglesim grows from (lrast/angleFinetuning), reproduced
        exactly.

        101 × 101 pixels on [−π, π]², image cos(5 (Y cos θ + X sin θ)) (phase 0, contrast 1);
        each pixel gets Gaussian noise of variance 20 with probability 0.8, is clamped to
        [−1, 1], and pixels with X² + Y² ≥ 6 are then set to 0 (hard aperture of radius √6).
        """
        return cls(
            size=101,
            frequency=5.0,
            phase=0.0,
            contrast=1.0,
            aperture=math.sqrt(6.0) / math.pi,
            aperture_edge=0.0,
            noise_std=math.sqrt(20.0),
            noise_prob=0.8,
            shot_prob=0.0,
            clamp=(-1.0, 1.0),
            mask_after_noise=True,
            extent=math.pi,
        )

    @classmethod
    def standard(cls) -> GratingSpec:
        """The studies' standard stimulus: 32 × 32 gratings, 4 cycles per image, phase 0,
        contrast 1, a soft circular aperture (radius 0.9, edge 0.1 of the half-width) and
        additive Gaussian pixel noise σ = 1 (contrast-to-noise 1), so the propagated Fisher
        estimator applies exactly to its noise. ``replace(size=…, channels=…)`` scales it."""
        return cls(size=32, frequency=4.0, phase=0.0, contrast=1.0, aperture=0.9,
                   aperture_edge=0.1, noise_std=1.0)

    @classmethod
    def small(cls) -> GratingSpec:
        """A small, fast preset: 32 × 32 with the default fields."""
        return cls()

    # ---- configs ---------------------------------------------------------------------------

    def replace(self, **changes: Any) -> GratingSpec:
        """A copy with some fields changed (validated like the constructor)."""
        check.validate(changes, {f.name: ANY for f in dataclasses.fields(self)},
                       owner="GratingSpec.replace", partial=True)
        return dataclasses.replace(self, **changes)

    def to_config(self) -> dict:
        """All fields as a JSON-serialisable dict (clamp and colour as lists).

        ``channels`` and ``colour`` appear only when they differ from the one-channel grey
        default, so the configs of one-channel specs (and whatever is keyed on them, such as
        study caches) are the same as before these fields existed.
        """
        cfg = dataclasses.asdict(self)
        cfg["clamp"] = None if self.clamp is None else list(self.clamp)
        if self.channels == 1:
            del cfg["channels"]
        if self.colour is None:
            del cfg["colour"]
        else:
            cfg["colour"] = list(self.colour)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> GratingSpec:
        """Inverse of ``to_config``; unknown keys raise ValueError."""
        check.instance("cfg", cfg, dict, "a GratingSpec config dict")
        check.validate(cfg, {f.name: ANY for f in dataclasses.fields(cls)},
                       owner="GratingSpec.from_config", partial=True)
        cfg = dict(cfg)
        if isinstance(cfg.get("colour"), list):
            cfg["colour"] = tuple(cfg["colour"])
        return cls(**cfg)

    # ---- derived quantities ----------------------------------------------------------------

    @property
    def wavenumber(self) -> float:
        """k = π · frequency / extent, radians per coordinate unit."""
        return math.pi * self.frequency / self.extent

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, P, P), the shape of one image; a model takes ``in_channels = spec.channels``
        (e.g. ``CNNConfig(image_size=spec.size, in_channels=spec.channels)``)."""
        return (self.channels, self.size, self.size)

    @property
    def gaussian_noise_only(self) -> bool:
        """True iff the noise is exactly additive Gaussian: noise_prob = 1, no shot noise, no
        clamp (then the linearised Fisher estimator with ``noise_variance_map`` applies)."""
        return self.noise_prob == 1.0 and self.shot_prob == 0.0 and self.clamp is None

    def aperture_mask(self, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The aperture mask [P, P] with values in [0, 1] (all ones when aperture is None)."""
        m = aperture_weights(self.size, self.extent, self.aperture, self.aperture_edge,
                  str(torch.device(device or "cpu")), dtype)
        return m.clone()

    def noise_variance_map(
        self, device: Any = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Per-pixel variance of the additive Gaussian part of the noise: [P, P] for one
        channel, [C, P, P] (the same map in every channel) for C > 1; either broadcasts
        against one image [C, P, P].

        σ² · noise_prob (a Bernoulli(p) gate times N(0, σ²) has variance σ² p), times mask²
        when ``mask_after_noise`` (the noise is then multiplied by the aperture), else the same
        everywhere. The noise is independent across pixels and channels and does not depend
        on ``colour``. Shot noise and clamping are not included (see ``gaussian_noise_only``).
        """
        var = self.noise_std**2 * self.noise_prob
        if self.mask_after_noise and self.aperture is not None:
            out = var * self.aperture_mask(device, dtype) ** 2
        else:
            out = torch.full((self.size, self.size), var, dtype=dtype,
                             device=torch.device(device or "cpu"))
        return out if self.channels == 1 else out.expand(self.channels, -1, -1).clone()


# ---- cached geometry -----------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def pixel_grid(size: int, extent: float, device: str, dtype: torch.dtype):
    """(X, Y) [P, P] from x = y = linspace(−extent, extent, P), computed in float64. Shared:
    callers must not modify them."""
    x = torch.linspace(-extent, extent, size, dtype=torch.float64)
    xx, yy = torch.meshgrid(x, x, indexing="xy")
    return xx.to(device=device, dtype=dtype), yy.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def aperture_weights(size: int, extent: float, aperture: float | None, edge: float, device: str,
          dtype: torch.dtype) -> torch.Tensor:
    """Aperture mask [P, P] (see ``GratingSpec``), computed in float64. Shared: read only."""
    xx, yy = pixel_grid(size, extent, "cpu", torch.float64)
    if aperture is None:
        m = torch.ones_like(xx)
    elif edge == 0.0:
        m = (xx * xx + yy * yy < (aperture * extent) ** 2).to(torch.float64)
    else:
        rho = torch.sqrt(xx * xx + yy * yy) / extent
        t = ((rho - (aperture - edge)) / edge).clamp(0.0, 1.0)
        m = 0.5 * (1.0 + torch.cos(math.pi * t))
    return m.to(device=device, dtype=dtype)
