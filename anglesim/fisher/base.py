"""What every Fisher-information module shares: the result builder and argument checks.

Private to the package: the public names are re-exported by :mod:`anglesim.fisher`.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

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


def check_dtheta(dtheta: float) -> float:
    """Δθ as a float, or ValueError unless 0 < Δθ < π/4.

    The finite differences compare gratings at θ ∓ Δθ/2; orientation has period π, so a step
    near π compares a grating with itself (θ ± π/2 is the same grating) and any step past
    π/4 (a quarter of the period) measures a chord of the tuning curve, not its derivative.
    """
    if isinstance(dtheta, bool) or not isinstance(dtheta, numbers.Real) \
            or not (math.isfinite(dtheta) and 0 < dtheta < math.pi / 4):
        raise ValueError(f"dtheta must be a finite number > 0 and < pi/4 (0.785), got "
                         f"{dtheta!r}")
    return float(dtheta)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or ValueError naming ``name`` unless it is an integer >= minimum."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_device(device: Any) -> torch.device | None:
    """``device`` as a torch.device (None stays None); ValueError naming it otherwise."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ValueError(f"device must be a torch.device or a string such as 'cpu' or "
                         f"'cuda:0', got {device!r}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"device must be a torch.device or a string such as 'cpu' or "
                         f"'cuda:0', got {device!r}") from err


def check_generator(generator: Any) -> torch.Generator | None:
    """``generator`` if it is None or a torch.Generator, else ValueError naming it."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {generator!r}")
    return generator


def model_on_device(
    model: torch.nn.Module, device: torch.device | str | None
) -> tuple[torch.nn.Module, torch.device, torch.dtype]:
    """The model (a copy when it must move), the device and dtype to compute with."""
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {model!r}")
    want = check_device(device)
    param = next(iter(model.parameters()), None)
    current = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    dev = want if want is not None else current
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device must be available on this machine, got {device!r} (no CUDA)")
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


def block_order(model: torch.nn.Module) -> list[str]:
    """"input", the model's blocks in order, "output"."""
    return [INPUT, *list(model.block_names), OUTPUT]


def _sl(t: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if t is None else t[start:stop]
