"""Cardinal against oblique: how much FI structure a network has before any prior shapes it.

The pixel grid is not rotation invariant: a grating at 0° or 90° lies along the grid's rows or
columns, one at 45° or 135° along its diagonals, so sampled images, and the features of a
network with square kernels and pooling, can carry different information at cardinal and
oblique orientations without any training prior (the "oblique effect" of human vision has a
prior explanation, Girshick, Landy & Simoncelli 2011, Nat Neurosci 14:926; this is the
baseline it must be read against).

:func:`cardinal_oblique` gives log₂ of mean J at the cardinals over mean J at the obliques.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .. import angles as ang
from .. import validation as check

__all__ = ["CARDINAL", "OBLIQUE", "cardinal_oblique"]

CARDINAL = (0.0, math.pi / 2)
OBLIQUE = (math.pi / 4, 3 * math.pi / 4)


def cardinal_oblique(fisher: xr.DataArray, dim: str = "angle",
                     tolerance: float = 1e-6) -> xr.DataArray:
    """log₂( mean J(0°, 90°) / mean J(45°, 135°) ) along ``dim`` for every other index.

    The grid along ``dim`` must hold all four angles (within ``tolerance`` radians, distances
    wrapped at π); positive values mean more information at the cardinals.
    """
    if not isinstance(fisher, xr.DataArray) or dim not in fisher.dims:
        raise check.fail("fisher", f"a DataArray with a {dim!r} dim",
                         getattr(fisher, "dims", type(fisher).__name__))
    tolerance = check.real("tolerance", tolerance, minimum=0, min_open=True)
    grid = check.finite_array(dim, fisher[dim].values, ndim=1)

    def index(target: float) -> int:
        dist = np.abs(ang.difference(grid, target))
        k = int(np.argmin(dist))
        if dist[k] > tolerance:
            raise check.fail(dim, f"a grid holding {math.degrees(target):g} degrees",
                             f"nearest {math.degrees(grid[k]):g}")
        return k

    card = fisher.isel({dim: [index(t) for t in CARDINAL]}).mean(dim)
    obl = fisher.isel({dim: [index(t) for t in OBLIQUE]}).mean(dim)
    out = np.log2(card / obl)
    return out.assign_attrs(units="1", long_name="log2 mean FI at 0 and 90 degrees over mean "
                            "FI at 45 and 135 degrees")
