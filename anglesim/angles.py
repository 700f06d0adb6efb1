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


def angle_resolution(values: ArrayLike) -> float:
    """The rounding unit (in radians) of the precision ``values`` were computed in.

    float32 angles are rounded to ~1.2e-7 of their size; float64 ones to ~2.2e-16. A float64
    array whose every value is a float32 number (a float32 grid converted with ``.double()``)
    carries float32's rounding, so it counts as float32: the precision an angle was *computed*
    in, not the one it is stored in, decides how close to a boundary it can be trusted.
    """
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(
        values)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    eps = float(np.finfo(arr.dtype).eps)
    if arr.dtype.itemsize > 4 and arr.size and np.array_equal(
            arr.astype(np.float32).astype(arr.dtype), arr, equal_nan=True):
        eps = float(np.finfo(np.float32).eps)
    return eps * PERIOD


def boundary_tolerance(theta: ArrayLike, centre: ArrayLike) -> float:
    """How far (radians) an angle may sit from a region's boundary and still count as on it.

    Four rounding units (:func:`angle_resolution`) of the coarser of ``theta`` and ``centre``:
    a distance |θ − c| is formed from two rounded values and one subtraction, each off by at most
    half a unit, so an angle meant to lie exactly on the boundary (a grid angle at 22.5° or 45°
    from the centre) is within the tolerance whatever the precision, while distinct grid angles
    (at least ~1e-4 rad apart on any grid anglesim makes) never are.
    """
    return 4.0 * max(angle_resolution(theta), angle_resolution(centre))


def near_far(theta: ArrayLike, centre: float, near: float = math.pi / 8,
             far: float = math.pi / 4) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of ``theta``: within ``near`` of ``centre``, and ``far`` or more from it.

    One boundary rule for every analysis: distance |θ − centre| (wrapped at π, computed in
    float64) ``<= near`` is near and ``>= far`` is far, both up to
    :func:`boundary_tolerance`, so an angle exactly on a boundary is inside the region whether
    the grid and the centre are float32 or float64. The defaults (22.5° and 45°) are the
    quickstart's "near the fine-tuning prior's peak" and "far from it".
    """
    centre_value = check.real("centre", centre)
    near = check.real("near", near, minimum=0.0, maximum=math.pi / 2)
    far = check.real("far", far, minimum=near, maximum=math.pi / 2)
    values = check.finite_array("theta", theta)
    tol = boundary_tolerance(theta, centre)
    dist = np.abs(difference(values, centre_value))
    return dist <= near + tol, dist >= far - tol


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
