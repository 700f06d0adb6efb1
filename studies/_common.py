"""What every study script shares: run a grid through the replicate manager and save it.

A study module defines its replicate function ``replicate(condition, replicate, seed, size)``
at module level (so joblib's worker processes can import it), its grid and sizes, and calls
:func:`run_grid` from its ``run(...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from anglesim.io import save_dataset
from anglesim.models import CNNConfig
from anglesim.plotting import successful  # noqa: F401  (re-exported for the studies)
from anglesim.replicates import run_study
from anglesim.stimuli import GratingSpec

SPEC = GratingSpec(size=32, frequency=4.0, phase=0.0, contrast=1.0, aperture=0.9,
                   aperture_edge=0.1, noise_std=1.0)
"""The studies' standard stimulus: 32×32 gratings, 4 cycles per image, fixed phase, soft
circular aperture, additive Gaussian pixel noise σ = 1 (contrast-to-noise 1), so the propagated
Fisher-information estimator applies exactly to its noise."""


def standard_cnn(readout: str = "cossin", n_bins: int = 36, **changes: Any) -> CNNConfig:
    """The studies' standard CNN: two 5×5 conv blocks (8, 16 channels), a 64-unit layer."""
    base = dict(image_size=32, channels=(8, 16), kernel_size=5, nonlinearity="relu",
                fc_units=64, readout=readout, n_bins=n_bins)
    base.update(changes)
    return CNNConfig(**base)


def run_grid(
    name: str,
    replicate: Callable[..., xr.Dataset],
    grid: Mapping[str, Sequence],
    *,
    quick: bool,
    n_replicates: int,
    config: Mapping[str, Any],
    results: Path = Path("results"),
    seed: int = 0,
    n_jobs: int = 1,
    cache: bool = True,
    retry_failed: bool = False,
    progress: bool = True,
    postprocess: Callable[[xr.Dataset], xr.Dataset] | None = None,
    **manager: Any,
) -> Path:
    """Run ``replicate`` over ``grid`` × ``n_replicates`` and save ``results/<name>[_quick].nc``.

    ``replicate`` is called as ``replicate(condition, replicate_index, seed, size=...)`` with
    size "quick" or "full"; the Dataset gets ``attrs["study"] = name`` so ``anglesim figures``
    knows which figure to draw. ``postprocess(ds)`` may add derived variables (fits, summary
    measures) before saving, so that figures only draw what the Dataset holds. Extra keyword
    arguments (e.g. ``backend``) go to :func:`anglesim.replicates.run_study`. Returns the path
    of the saved file.
    """
    size = "quick" if quick else "full"
    results = Path(results)
    n_tasks = n_replicates * max(1, _n_conditions(grid))
    ds = run_study(
        functools.partial(replicate, size=size),
        grid,
        n_replicates=n_replicates,
        seed=seed,
        n_jobs=min(n_jobs, n_tasks) if n_jobs > 0 else n_jobs,
        cache_dir=results / "cache" if cache else None,
        name=f"{name}-{size}",
        config=dict(config),
        progress=progress,
        retry_failed=retry_failed,
        **{"allow_nan": ["*"], **manager},  # NaN allowed until each study declares its own
    )
    if postprocess is not None and not bool(ds["failed"].all()):
        ds = postprocess(ds)  # when every replicate failed there is nothing to derive
    ds.attrs["study"] = name
    path = results / (f"{name}_quick.nc" if quick else f"{name}.nc")
    return save_dataset(ds, path, config=dict(config), seed=seed)


def _n_conditions(grid: Mapping[str, Sequence]) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n
