"""What the law studies share: a replicate band drawn only where it means something.

With fewer than :data:`MIN_BAND_REPLICATES` replicates a Student-t band is mostly the t
quantile (t = 12.7 at 2 replicates), so the figures draw the mean alone and say so.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from anglesim.stats import mean_ci

MIN_BAND_REPLICATES = 3
"""The fewest replicates for which a figure draws a 95% interval band."""


def replicate_band(ax, x, da: xr.DataArray, colour, label: str, dim: str = "replicate",
                   log: bool = False, alpha: float = 0.2,
                   clip: tuple[float, float] | None = None) -> None:
    """The mean of ``da`` over ``dim`` against ``x`` and its 95% t band (geometric on a log
    axis: the interval of mean log10); no band below :data:`MIN_BAND_REPLICATES` replicates.
    ``clip`` = (lo, hi) clips the band to the quantity's range (a bias within ±90°)."""
    vals = np.log10(da) if log else da
    mean, half = mean_ci(vals, dim)
    lo, hi = mean - half, mean + half
    if log:
        mean, lo, hi = 10.0**mean, 10.0**lo, 10.0**hi
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    ax.plot(x, mean, color=colour, label=label)
    if int(da.count(dim).min()) >= MIN_BAND_REPLICATES:
        ax.fill_between(x, lo, hi, color=colour, alpha=alpha, linewidth=0)


def band_note(ds: xr.Dataset) -> str:
    """A caption fragment: what the bands are, or that there are none."""
    n = int(ds.sizes.get("replicate", 1))
    if n < MIN_BAND_REPLICATES:
        return f"{n} replicate(s): means only, no bands (fewer than {MIN_BAND_REPLICATES})"
    return f"bands: 95% t intervals over {n} replicates"
