"""What the law studies share: a caption fragment saying whether a figure draws bands.

With fewer than :data:`MIN_BAND_REPLICATES` replicates a Student-t band is mostly the t
quantile (t = 12.7 at 2 replicates), so the figures draw the mean alone and say so.
"""

from __future__ import annotations

import xarray as xr

MIN_BAND_REPLICATES = 3
"""The fewest replicates for which a figure draws a 95% interval band."""


def band_note(ds: xr.Dataset) -> str:
    """A caption fragment: what the bands are, or that there are none."""
    n = int(ds.sizes.get("replicate", 1))
    if n < MIN_BAND_REPLICATES:
        return f"{n} replicate(s): means only, no bands (fewer than {MIN_BAND_REPLICATES})"
    return f"bands: 95% t intervals over {n} replicates"
