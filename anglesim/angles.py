"""Arithmetic on orientations: angles in [0, π) with period π.

Every module that compares or averages orientations goes through these helpers, so the
wrap-around at 0/π is handled in exactly one place.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import validation as check

PERIOD = math.pi
"""The period of orientation: θ and θ + π are the same grating."""

ArrayLike = np.ndarray | torch.Tensor | float


def wrap(theta: ArrayLike) -> ArrayLike:
    """Map angles to [0, π). Works on floats, numpy arrays and torch tensors (autograd-safe)."""
    if isinstance(theta, torch.Tensor):
        return torch.remainder(theta, PERIOD)
    return np.mod(theta, PERIOD)


def difference(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Signed orientation difference a − b, wrapped to [−π/2, π/2).

    The gradient with respect to either argument is ±1 everywhere except at the wrap point.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a = torch.as_tensor(a)
        b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
        return torch.remainder(a - b + PERIOD / 2, PERIOD) - PERIOD / 2
    return np.mod(np.asarray(a) - np.asarray(b) + PERIOD / 2, PERIOD) - PERIOD / 2


def circular_mean(theta: ArrayLike, axis: int = -1, weights: ArrayLike | None = None) -> ArrayLike:
    """Mean orientation on the half-circle: arg(Σ w·e^{2iθ}) / 2, wrapped to [0, π)."""
    if isinstance(theta, torch.Tensor):
        w = torch.ones_like(theta) if weights is None else torch.as_tensor(weights).to(theta)
        c = (w * torch.cos(2 * theta)).sum(axis)
        s = (w * torch.sin(2 * theta)).sum(axis)
        return torch.remainder(torch.atan2(s, c) / 2, PERIOD)
    theta = np.asarray(theta)
    w = np.ones_like(theta) if weights is None else np.asarray(weights)
    c = (w * np.cos(2 * theta)).sum(axis)
    s = (w * np.sin(2 * theta)).sum(axis)
    return np.mod(np.arctan2(s, c) / 2, PERIOD)


BOUNDARY_TOL = 1e-9
"""Angles within this many radians of a region's boundary count as on it (inside), so that
whether "beyond 45°" includes a grid angle at exactly 45° is decided by the rule, not by the
rounding of π/4."""


def near_far(theta: ArrayLike, centre: float, near: float = math.pi / 8,
             far: float = math.pi / 4) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of ``theta``: within ``near`` of ``centre``, and ``far`` or more from it.

    One boundary rule for every analysis: distance |θ − centre| (wrapped at π) ``<= near`` is
    near and ``>= far`` is far, both up to :data:`BOUNDARY_TOL`. The defaults (22.5° and 45°)
    are the quickstart's "near the fine-tuning prior's peak" and "far from it".
    """
    centre = check.real("centre", centre)
    near = check.real("near", near, minimum=0.0, maximum=math.pi / 2)
    far = check.real("far", far, minimum=near, maximum=math.pi / 2)
    dist = np.abs(difference(check.finite_array("theta", theta), centre))
    return dist <= near + BOUNDARY_TOL, dist >= far - BOUNDARY_TOL


def near_far_masks(density, near: float = math.pi / 8, far: float = math.pi / 4):
    """:func:`near_far` around the peak of ``density`` (a DataArray over ``angle``).

    Returns two boolean DataArrays over ``angle``.
    """
    import xarray as xr

    theta = density["angle"]
    peak = float(theta[int(density.argmax("angle"))])
    is_near, is_far = near_far(theta.values, peak, near, far)
    return (xr.DataArray(is_near, dims="angle", coords={"angle": theta}),
            xr.DataArray(is_far, dims="angle", coords={"angle": theta}))
