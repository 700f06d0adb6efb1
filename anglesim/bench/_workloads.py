"""The stimulus and network the benchmark times: the studies' standard ones,
:meth:`GratingSpec.standard` and :meth:`CNNConfig.standard` (defined once, in the package)."""

from __future__ import annotations

from typing import Any

from ..models import CNNConfig
from ..stimuli import GratingSpec

STANDARD_SPEC = GratingSpec.standard()
"""The studies' standard stimulus: 32×32 gratings, 4 cycles per image, fixed phase, soft
circular aperture, additive Gaussian pixel noise σ = 1 (:meth:`GratingSpec.standard`)."""


def standard_cnn(readout: str = "cossin", n_bins: int = 36, **changes: Any) -> CNNConfig:
    """The studies' standard CNN (:meth:`CNNConfig.standard`)."""
    return CNNConfig.standard(readout, n_bins, **changes)
