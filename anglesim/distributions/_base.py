"""The prior base class, the helpers every prior shares, and the two simplest priors.

:class:`AnglePrior` fixes the interface (``pdf``, ``sample``, ``to_config``) and its argument
checks; :class:`Uniform` is flat on a sub-range and :class:`Mixture` a weighted sum of priors.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import angles as ang
from .. import validation as check

PI = ang.PERIOD

# --------------------------------------------------------------------------------------------
# argument checks and random-number helpers
# --------------------------------------------------------------------------------------------

SAMPLE_PARAMETERS = {"n": check.Integer(minimum=0), "generator": check.Generator("torch"),
                     "device": check.Device()}
"""`AnglePrior.sample`'s parameters."""


def theta_array(theta: Any) -> np.ndarray:
    """Angles as a float64 numpy array, every entry finite (ValueError naming ``theta``)."""
    try:
        if theta is None or isinstance(theta, str | bytes):
            raise TypeError
        arr = np.asarray(theta, dtype=np.float64)
    except (TypeError, ValueError):
        raise check.fail("theta", "angles in radians (numbers)", theta) from None
    return check.finite_array("theta", arr)


def rand64(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n uniform draws on [0, 1) in float64, on the generator's device (CPU for the default)."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, dtype=torch.float64, generator=generator, device=dev)


def _f32_inside(lo: float, hi: float) -> tuple[float, float]:
    """The smallest float32 >= lo and the largest float32 < hi."""
    lo32 = np.float32(lo)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    hi32 = np.float32(hi)
    if float(hi32) >= hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return float(lo32), float(hi32)


def _to_float32(x: torch.Tensor, lo: float, hi: float, device: Any) -> torch.Tensor:
    """Cast float64 samples in [lo, hi) to float32 that stay in [lo, hi), then move them."""
    lo32, hi32 = _f32_inside(lo, hi)
    out = x.to(torch.float32).clamp(lo32, hi32)
    return out.to("cpu" if device is None else device)


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------


class AnglePrior(abc.ABC):
    """A probability density over orientation θ ∈ [0, π) with period π.

    Subclasses implement ``_pdf`` (numpy float64, θ already wrapped to [0, π)),
    ``_sample64`` (float64 torch samples on the generator's device) and ``to_config``.
    """

    #: support of the samples, [low, high) ⊆ [0, π]; subclasses with a smaller one override
    _support: tuple[float, float] = (0.0, PI)

    @abc.abstractmethod
    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        """Density at θ ∈ [0, π) (float64 numpy in, float64 numpy out, same shape)."""

    @abc.abstractmethod
    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n >= 1 exact draws, float64, on the generator's device (CPU for None)."""

    @abc.abstractmethod
    def to_config(self) -> dict:
        """A JSON-serialisable dict with a ``"kind"`` key; ``prior_from_config`` inverts it."""

    def pdf(self, theta: Any) -> Any:
        """Density p(θ) w.r.t. dθ on [0, π), ∫₀^π p(θ) dθ = 1; θ is wrapped mod π first.

        A float or numpy array gives numpy float64 (a 0-d ``np.float64`` for a scalar); a torch
        tensor gives a tensor of the same shape, floating dtype and device. The tensor result is
        computed in float64 numpy and carries no autograd graph. NaN, ±inf and non-numbers
        raise ValueError naming ``theta`` (a density at an undefined angle has no value).
        """
        if isinstance(theta, torch.Tensor):
            x = ang.wrap(theta_array(theta.detach().to("cpu", torch.float64).numpy()))
            out = self._pdf(np.asarray(x, dtype=np.float64))
            dtype = theta.dtype if theta.is_floating_point() else torch.get_default_dtype()
            return torch.as_tensor(out, dtype=torch.float64).to(device=theta.device, dtype=dtype)
        x = np.asarray(ang.wrap(theta_array(theta)), dtype=np.float64)
        out = np.asarray(self._pdf(x), dtype=np.float64)
        return out[()] if out.ndim == 0 else out

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: Any = None
    ) -> torch.Tensor:
        """Draw n orientations: float32 tensor [n] in [0, π) (in [low, high) for ``Uniform``).

        All randomness comes from ``generator`` (torch's default CPU generator when None); the
        draws are made on the generator's device and the result is moved to ``device``
        (CPU when None), so a seeded generator gives the same angles on every device.
        A ``generator`` that is not a ``torch.Generator`` or a ``device`` torch cannot parse
        raises ValueError naming it.
        """
        args = check.validate({"n": n, "generator": generator, "device": device},
                              SAMPLE_PARAMETERS)
        n, device = args["n"], args["device"]
        lo, hi = self._support
        if n == 0:
            return torch.empty(0, dtype=torch.float32, device="cpu" if device is None else device)
        return _to_float32(self._sample64(n, generator), lo, hi, device)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnglePrior):
            return NotImplemented
        return self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_config(), sort_keys=True))


# --------------------------------------------------------------------------------------------
# Uniform
# --------------------------------------------------------------------------------------------


class Uniform(AnglePrior):
    """Flat prior on [low, high) ⊆ [0, π]: p(θ) = 1 / (high − low) there, 0 elsewhere."""

    def __init__(self, low: float = 0.0, high: float = PI) -> None:
        low = check.real("low", low, minimum=0.0, maximum=PI, max_open=True)
        high = check.real("high", high, minimum=low, maximum=PI, min_open=True)
        self.low = low
        self.high = high
        self._support = (low, high)

    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        inside = (theta >= self.low) & (theta < self.high)
        return np.where(inside, 1.0 / (self.high - self.low), 0.0)

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.low + (self.high - self.low) * rand64(n, generator)

    def to_config(self) -> dict:
        return {"kind": "uniform", "low": self.low, "high": self.high}

    def __repr__(self) -> str:
        return f"Uniform(low={self.low!r}, high={self.high!r})"



# --------------------------------------------------------------------------------------------
# Mixture
# --------------------------------------------------------------------------------------------


class Mixture(AnglePrior):
    """Weighted mixture p(θ) = Σᵢ wᵢ pᵢ(θ), weights normalised to sum to 1 (default equal).

    Sampling draws each component label from the weights, then the draws of every component
    in one vectorised call per component.
    """

    def __init__(
        self, components: Sequence[AnglePrior], weights: Sequence[float] | None = None
    ) -> None:
        what = "a non-empty list of priors, e.g. [Uniform(), VonMises(1.0, 4.0)]"
        if isinstance(components, AnglePrior | str | bytes) or not isinstance(
                components, Sequence | tuple):
            raise check.fail("components", what, components)
        components = list(components)
        if not components:
            raise check.fail("components", what, components)
        for i, c in enumerate(components):
            check.instance(f"components[{i}]", c, AnglePrior, "an AnglePrior")
        if weights is None:
            w = [1.0] * len(components)
        else:
            if isinstance(weights, str | bytes) or not isinstance(weights, Sequence | tuple
                                                                   | np.ndarray):
                raise check.fail("weights", "None or one weight per component", weights)
            w = [check.real(f"weights[{i}]", x, minimum=0.0) for i, x in enumerate(weights)]
            if len(w) != len(components):
                raise check.fail("weights", f"one weight per component ({len(components)})",
                                 list(weights))
            if sum(w) <= 0:
                raise check.fail("weights", "weights with a positive sum", list(weights))
        total = math.fsum(w)
        self.components = tuple(components)
        self.weights = tuple(x / total for x in w)

    def _pdf(self, theta: np.ndarray) -> np.ndarray:
        out = np.zeros_like(theta)
        for w, c in zip(self.weights, self.components, strict=True):
            out = out + w * c._pdf(theta)
        return out

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        u = rand64(n, generator)
        edges = torch.tensor(np.cumsum(self.weights)[:-1], dtype=torch.float64, device=u.device)
        label = torch.searchsorted(edges, u, right=True)
        out = torch.empty(n, dtype=torch.float64, device=u.device)
        for i, c in enumerate(self.components):
            where = label == i
            m = int(where.sum())
            if m:
                out[where] = c._sample64(m, generator).to(u.device)
        return out

    def to_config(self) -> dict:
        return {
            "kind": "mixture",
            "components": [c.to_config() for c in self.components],
            "weights": list(self.weights),
        }

    def __repr__(self) -> str:
        return f"Mixture(components={list(self.components)!r}, weights={list(self.weights)!r})"
