"""What every Fisher-information module shares: the result builder, the declared constraints
of the arguments they have in common, devices and eval mode."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import validation as check
from ..data import resolve_device

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]

UNITS = "rad^-2"
INPUT = "input"
OUTPUT = "output"
DEFAULT_N_PHASES = 8


def fisher_dataarray(
    values: ArrayLike,
    angles: ArrayLike,
    layers: Sequence[str] | None,
    method: str,
    **attrs: Any,
) -> xr.DataArray:
    """Wrap Fisher-information values in a DataArray named "fisher", the same way everywhere.

    ``values`` has shape [len(layers), len(angles)] with dims ("layer", "angle"), or
    [len(angles)] with dims ("angle",) when ``layers`` is None. The angle coordinate is float64
    radians, the layer coordinate str. attrs: ``method``, units "rad^-2", long_name
    "Fisher information", then any extra ``attrs`` (which may override the defaults).
    """
    vals = to_numpy(values, "values")
    ang = to_numpy(angles, "angles")
    if ang.ndim != 1:
        raise ValueError(f"angles must be 1-D, got shape {ang.shape}")
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a non-empty string, got {method!r}")
    base = {"method": method, "units": UNITS, "long_name": "Fisher information"}
    base.update(attrs)
    if layers is None:
        if vals.shape != ang.shape:
            raise ValueError(f"values has shape {vals.shape}, expected {ang.shape} (angle,)")
        return xr.DataArray(vals, dims=("angle",), coords={"angle": ang}, name="fisher",
                            attrs=base)
    names = [str(n) for n in layers]
    if vals.shape != (len(names), ang.size):
        raise ValueError(
            f"values has shape {vals.shape}, expected {(len(names), ang.size)} (layer, angle)"
        )
    return xr.DataArray(
        vals,
        dims=("layer", "angle"),
        coords={"layer": np.array(names, dtype=object), "angle": ang},
        name="fisher",
        attrs=base,
    )


def to_numpy(values: Any, name: str) -> np.ndarray:
    """``values`` (numpy, torch or a sequence) as a float64 numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {type(values).__name__}") from err
    return arr


def dtheta_step(name: str, value: Any) -> float:
    """``value`` as a float, 0 < Δθ < π/4 (see `DTHETA`)."""
    try:
        return check.real(name, value, minimum=0.0, maximum=math.pi / 4, min_open=True,
                          max_open=True)
    except ValueError:
        raise check.fail(name, "a real number > 0 and < pi/4 (0.785)", value) from None


DTHETA = check.Check(dtheta_step, "a real number > 0 and < pi/4")
"""Δθ of the finite differences, 0 < Δθ < π/4: they compare gratings at θ ∓ Δθ/2, and
orientation has period π, so a step near π compares a grating with itself (θ ± π/2 is the same
grating) and any step past π/4 (a quarter of the period) measures a chord of the tuning curve,
not its derivative."""

LEVEL = check.Real(0.0, 1.0, min_open=True, max_open=True)
"""A confidence level, 0 < level < 1."""

MODEL = check.Instance(torch.nn.Module, "a torch.nn.Module")
DECODE = check.Optional(check.Function())
DEVICE = check.Device()
GENERATOR = check.Generator("torch")
LAYERS = check.Optional(check.AnyOf(check.Text(), check.Names(allow_empty=False)))
"""None (the estimator's default), one layer name, or a non-empty list of names."""


def angle_array(name: str, value: Any) -> np.ndarray:
    """``value`` (numbers, numpy or torch) as a non-empty finite 1-D float64 array."""
    arr = check.finite_array(name, value, ndim=1)
    if arr.size == 0:
        raise check.fail(name, "a non-empty 1-D array of angles (radians)", value)
    return arr


ANGLES = check.Check(angle_array, "a non-empty 1-D array of angles in radians")
PHASES = check.Optional(ANGLES)


def model_on_device(
    model: torch.nn.Module, device: torch.device | str | None
) -> tuple[torch.nn.Module, torch.device, torch.dtype]:
    """The model (a copy when it must move), the device and dtype to compute with; a device
    this machine does not have is a ValueError naming ``device``."""
    model = MODEL("model", model)
    want = None if device is None else resolve_device(DEVICE("device", device))
    param = next(iter(model.parameters()), None)
    current = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    dev = want if want is not None else current
    if dev != current:
        model = copy.deepcopy(model).to(dev)
    return model, dev, dtype


def angles_tensor(
    values: ArrayLike, dev: torch.device, dtype: torch.dtype, name: str = "angles"
) -> torch.Tensor:
    """A non-empty finite 1-D tensor of angles on ``dev``."""
    if isinstance(values, torch.Tensor):
        t = values.detach().to(device=dev, dtype=dtype)
    else:
        t = torch.as_tensor(to_numpy(values, name).copy(), device=dev, dtype=dtype)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t


class eval_mode:
    """Context manager: every module in eval mode inside, the original modes restored after."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.modes: dict[torch.nn.Module, bool] = {}

    def __enter__(self) -> torch.nn.Module:
        self.modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for module, mode in self.modes.items():
            module.training = mode


def sliced(t: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if t is None else t[start:stop]
