"""The stimulus and network the benchmark times: the studies' standard ones, defined here.

The benchmark stays outside the studies' import graph (it imports the package, never the
studies or the CLI): the stimulus is the package's :meth:`GratingSpec.standard`, and the CNN
is defined here as the studies define theirs; ``tests/test_bench.py`` checks that both equal
the studies' ``SPEC`` and ``standard_cnn()``, so a change there is caught rather than silently
benchmarked apart.
"""

from __future__ import annotations

from typing import Any

from ..models import CNNConfig
from ..stimuli import GratingSpec

STANDARD_SPEC = GratingSpec.standard()
"""The studies' standard stimulus: 32×32 gratings, 4 cycles per image, fixed phase, soft
circular aperture, additive Gaussian pixel noise σ = 1 (:meth:`GratingSpec.standard`)."""


def standard_cnn(readout: str = "cossin", n_bins: int = 36, **changes: Any) -> CNNConfig:
    """The studies' standard CNN: two 5×5 conv blocks (8, 16 channels), a 64-unit layer."""
    base = dict(image_size=32, channels=(8, 16), kernel_size=5, nonlinearity="relu",
                fc_units=64, readout=readout, n_bins=n_bins)
    base.update(changes)
    return CNNConfig(**base)
