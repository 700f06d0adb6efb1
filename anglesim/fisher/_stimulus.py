"""Stimuli for the Fisher estimators: a GratingSpec or any differentiable image source.

Every estimator takes ``spec`` as a :class:`~anglesim.stimuli.GratingSpec`, a
:class:`Stimulus`, or a bare callable ``stimulus(theta) -> images [N, C, H, W]``; all become
a :class:`Stimulus` through :func:`as_stimulus`. A callable carries no noise of its own, so its
noise model is given explicitly: additive Gaussian pixel noise n with per-pixel variance
V = ``noise_std``² (the same on every pixel) or V = ``noise_variance`` (a map broadcastable to
one image [C, H, W]). The propagated estimator uses Σ_x = diag(V); the sampled ones draw
x(θ) + √V ⊙ ε, ε ~ N(0, I), from an explicit generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import validation as check
from ..stimuli import GratingSpec, render, render_clean

__all__ = ["Stimulus", "as_stimulus"]

StimulusLike = Any  # GratingSpec | Stimulus | Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Stimulus:
    """A differentiable image source x(θ) and its additive Gaussian pixel noise.

    Exactly one of ``spec`` (a GratingSpec, whose own noise model applies) and ``fn`` (a
    callable θ [N] -> images [N, C, H, W], differentiable in θ) is set. For ``fn``,
    ``noise_std`` σ ≥ 0 gives V = σ² on every pixel and ``noise_variance`` (≥ 0, broadcastable
    to one image) a map V; give at most one.
    """

    spec: GratingSpec | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    noise_std: float = 0.0
    noise_variance: torch.Tensor | None = None

    @property
    def random_phase(self) -> bool:
        """True when the grating's phase is random (the estimators then average over phases)."""
        return self.spec is not None and self.spec.phase is None

    @property
    def gaussian_noise_only(self) -> bool:
        """True iff the noise is exactly additive Gaussian (always for a callable)."""
        return self.spec is None or self.spec.gaussian_noise_only

    @property
    def has_noise(self) -> bool:
        """Whether the stimulus has pixel noise of its own."""
        if self.spec is not None:
            return self.spec.noise_std > 0 and self.spec.noise_prob > 0
        return self.noise_std > 0 or self.noise_variance is not None

    def clean(
        self, theta: torch.Tensor, phase: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The noiseless images x(θ) [N, C, H, W] (differentiable in θ)."""
        if self.spec is not None:
            return render_clean(theta, self.spec, phase, dtype=dtype)
        images = self.fn(theta)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or (
                images.shape[0] != theta.shape[0]):
            raise ValueError(
                f"stimulus must return images [N, C, H, W] for N={theta.shape[0]} angles, got "
                f"{getattr(images, 'shape', type(images).__name__)}")
        return images if dtype is None else images.to(dtype)

    def noisy(
        self, theta: torch.Tensor, generator: torch.Generator | None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Noisy images x(θ) + n: the spec's own noise, or √V ⊙ ε for a callable."""
        if self.spec is not None:
            return render(theta, self.spec, generator, dtype=dtype, inplace=True)
        with torch.no_grad():
            x = self.clean(theta, dtype=dtype)
            var = self.variance(x.shape[1:], None, x.device).to(x.dtype).reshape(x.shape[1:])
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype,
                              device=generator.device if generator is not None else x.device)
            return x + var.sqrt() * eps.to(x.device)

    def variance(
        self, image_shape: torch.Size | tuple[int, ...], sigma: float | None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Flat float64 per-pixel noise variance V over one image [C·H·W].

        ``sigma`` (when given) sets the scale: for a spec, its noise_variance_map with
        noise_std = σ; for a callable, σ² times the shape of its map (the map over its
        maximum), or σ² everywhere.
        """
        if self.spec is not None:
            spec = self.spec
            if sigma is not None and sigma != spec.noise_std:
                spec = dataclasses.replace(spec, noise_std=sigma)
            vmap = torch.as_tensor(spec.noise_variance_map())
        elif self.noise_variance is not None:
            vmap = self.noise_variance.detach().double()
            if sigma is not None:
                peak = float(vmap.max())
                vmap = vmap / peak * sigma**2 if peak > 0 else vmap
        else:
            vmap = torch.tensor(float(self.noise_std if sigma is None else sigma) ** 2)
        try:
            flat = vmap.to(device, torch.float64).expand(tuple(image_shape)).reshape(-1)
        except RuntimeError as err:
            raise ValueError(f"noise_variance must broadcast to one image {tuple(image_shape)}, "
                             f"got shape {tuple(vmap.shape)}") from err
        return flat

    def describe(self) -> str:
        """How the images are noisy, in words (for attrs)."""
        if self.spec is None:
            what = ("a per-pixel variance map" if self.noise_variance is not None
                    else f"sigma={self.noise_std:g}")
            return f"callable stimulus, additive Gaussian pixel noise {what}"
        spec, parts = self.spec, []
        if spec.noise_std > 0 and spec.noise_prob > 0:
            gate = ("" if spec.noise_prob == 1 else
                    f" with probability {spec.noise_prob:g} per pixel")
            parts.append(f"Gaussian pixel noise sigma={spec.noise_std:g}{gate}")
        if spec.shot_prob > 0:
            parts.append(f"shot noise p={spec.shot_prob:g}")
        if spec.clamp is not None:
            parts.append(f"clamped to [{spec.clamp[0]:g}, {spec.clamp[1]:g}]")
        if spec.phase is None:
            parts.append("random phase")
        return "the spec's own noise: " + (", ".join(parts) if parts else "none")

    def to_config(self) -> dict[str, Any]:
        """The spec's config, or a description of the callable (not rebuildable)."""
        if self.spec is not None:
            return self.spec.to_config()
        return {"callable": getattr(self.fn, "__qualname__", type(self.fn).__name__),
                "noise_std": self.noise_std,
                "noise_variance": None if self.noise_variance is None else "map"}


def stimulus_like(name: str, value: Any) -> Any:
    """``value`` if it is a GratingSpec, a :class:`Stimulus` or a callable
    ``stimulus(theta) -> images`` (not yet wrapped: see :func:`as_stimulus`)."""
    if isinstance(value, GratingSpec | Stimulus):
        return value
    if isinstance(value, str | bytes) or not callable(value) or isinstance(value, type):
        raise check.fail(name, "a GratingSpec, a Stimulus or a callable stimulus(theta) -> "
                         "images", value)
    return value


STIMULUS = check.Check(stimulus_like, "a GratingSpec, a Stimulus or a callable stimulus(theta) "
                       "-> images")
"""What every estimator's ``spec`` accepts."""


def as_stimulus(
    stimulus: StimulusLike,
    noise_std: float | None = None,
    noise_variance: Any = None,
) -> Stimulus:
    """``stimulus`` as a :class:`Stimulus`.

    Args:
        stimulus: a GratingSpec (its own noise; ``noise_std`` then replaces the spec's σ), a
            Stimulus (returned as is when no noise is given), or a callable
            ``stimulus(theta) -> images [N, C, H, W]``, differentiable in θ.
        noise_std: σ ≥ 0 of additive Gaussian pixel noise (callables: on every pixel).
        noise_variance: callables only: a per-pixel variance map ≥ 0 broadcastable to one
            image [C, H, W] (numpy or torch).
    """
    args = check.validate(locals(), AS_STIMULUS_PARAMETERS)
    stimulus, noise_std, var = args["stimulus"], args["noise_std"], args["noise_variance"]
    if isinstance(stimulus, Stimulus):
        if noise_std is None and var is None:
            return stimulus
        stimulus = stimulus.spec if stimulus.spec is not None else stimulus.fn
    if isinstance(stimulus, GratingSpec):
        if var is not None:
            raise check.fail("noise_variance", "None for a GratingSpec (its noise_variance_map "
                             "applies)", "a map")
        spec = stimulus if noise_std is None else dataclasses.replace(stimulus,
                                                                     noise_std=noise_std)
        return Stimulus(spec=spec)
    if var is not None and noise_std is not None:
        raise check.fail("noise_std", "None when noise_variance is given", noise_std)
    return Stimulus(fn=stimulus, noise_std=0.0 if noise_std is None else float(noise_std),
                    noise_variance=var)


def variance_map(name: str, value: Any) -> torch.Tensor:
    """``value`` (numpy or torch) as a float64 tensor of variances >= 0, positive somewhere."""
    arr = check.finite_array(name, value)
    if (arr < 0).any() or not (arr > 0).any():
        raise check.fail(name, ">= 0 and positive somewhere",
                         f"values in [{arr.min():g}, {arr.max():g}]")
    return torch.as_tensor(np.ascontiguousarray(arr), dtype=torch.float64)


AS_STIMULUS_PARAMETERS = {
    "stimulus": STIMULUS,
    "noise_std": check.Optional(check.Real(minimum=0.0)),
    "noise_variance": check.Optional(check.Check(variance_map, "a variance map >= 0")),
}
