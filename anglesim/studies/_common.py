"""What the built-in studies share: the standard stimulus and CNN, and size resolution.

Each study module declares ``STUDY = anglesim.study.Study(...)``; its replicate function
``replicate(condition, replicate, seed, size)`` gets ``size`` as the resolved configuration
(a dict: the size's entries and the study's defaults, after command-line overrides) or, for
callers outside the study machinery, as the name "quick" or "full".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anglesim.models import CNNConfig
from anglesim.stimuli import GratingSpec

SPEC = GratingSpec.standard()
"""The studies' standard stimulus: 32×32 gratings, 4 cycles per image, fixed phase, soft
circular aperture, additive Gaussian pixel noise σ = 1 (contrast-to-noise 1), so the propagated
Fisher-information estimator applies exactly to its noise."""


def standard_cnn(readout: str = "cossin", n_bins: int = 36, **changes: Any) -> CNNConfig:
    """The studies' standard CNN (:meth:`CNNConfig.standard`)."""
    return CNNConfig.standard(readout, n_bins, **changes)


def resolve_size(sizes: Mapping[str, Mapping[str, Any]], size: str | Mapping[str, Any]
                 ) -> Mapping[str, Any]:
    """A replicate's configuration: ``sizes[size]`` for a size name, else ``size`` itself."""
    if isinstance(size, str):
        if size not in sizes:
            raise ValueError(f"size must be one of {sorted(sizes)} or a dict, got {size!r}")
        return sizes[size]
    if not isinstance(size, Mapping):
        raise ValueError(f"size must be a size name or a dict, got {size!r}")
    return size


def on_device(sz: Mapping[str, Any]) -> dict[str, Any]:
    """``{"device": d}`` for a replicate configuration that names a device (``--device``;
    :func:`anglesim.study.plan` sets it only when it is not the CPU), else ``{}``: the keyword
    arguments for ``train``, the Fisher estimators and ``torch_generator``, so that a CPU run
    calls them exactly as before ``--device`` existed."""
    device = sz.get("device") if isinstance(sz, Mapping) else None
    return {} if device is None else {"device": device}
