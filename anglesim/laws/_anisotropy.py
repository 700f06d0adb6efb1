"""Cardinal against oblique: how much FI structure a network has before any prior shapes it.

The pixel grid is not rotation invariant: a grating at 0° or 90° lies along the grid's rows or
columns, one at 45° or 135° along its diagonals, so sampled images, and the features of a
network with square kernels and pooling, can carry different information at cardinal and
oblique orientations without any training prior (the "oblique effect" of human vision has a
prior explanation, Girshick, Landy & Simoncelli 2011, Nat Neurosci 14:926; this is the
baseline it must be read against).

:func:`cardinal_oblique` measures it from every angle of the grid: the cos 4θ component of
log₂ J(θ), whose peaks are the cardinals and troughs the obliques. Four angles alone (mean J
at 0° and 90° over mean J at 45° and 135°) alias every harmonic cos 4kθ into the contrast and
rest on four noisy values; the component over all angles is orthogonal to the others.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import validation as check
from ..fisher._smoothing import fourier_design

__all__ = ["cardinal_oblique"]


def cardinal_oblique(fisher: xr.DataArray, dim: str = "angle") -> xr.DataArray:
    """2·a₄, the cardinal-minus-oblique difference of the cos 4θ component of log₂ J, along
    ``dim`` for every other index.

    log₂ J(θ) ≈ a₀ + a₂ cos 2θ + b₂ sin 2θ + a₄ cos 4θ + b₄ sin 4θ is fitted by least squares
    over every angle of the grid (radians, period π; at least 5 angles); on an evenly spaced
    grid a₄ = (2/n) Σ log₂ J(θᵢ) cos 4θᵢ, the discrete Fourier coefficient, which no other
    harmonic below the grid's Nyquist limit enters. The result, 2a₄ = log₂ of the component's
    J at 0° and 90° over its J at 45° and 135°, is a log₂ ratio: positive values mean more
    information at the cardinals. A curve with J ≤ 0 anywhere gets NaN (its log is undefined).
    """
    if not isinstance(fisher, xr.DataArray) or dim not in fisher.dims:
        raise check.fail("fisher", f"a DataArray with a {dim!r} dim",
                         getattr(fisher, "dims", type(fisher).__name__))
    theta = check.finite_array(dim, fisher[dim].values, ndim=1)
    if theta.size < 5:
        raise check.fail(dim, "a grid of at least 5 angles (the fit has 5 terms)", theta.size)
    moved = fisher.transpose(..., dim)
    values = np.asarray(moved.values, dtype=np.float64).reshape(-1, theta.size)
    valid = np.isfinite(values).all(1) & (values > 0).all(1)
    logs = np.log2(np.where(valid[:, None], values, 1.0)).T  # [angle, curves]
    coef, *_ = np.linalg.lstsq(fourier_design(theta, 2), logs, rcond=None)
    out = np.where(valid, 2 * coef[3], np.nan).reshape(moved.shape[:-1])
    return xr.DataArray(out, dims=moved.dims[:-1],
                        coords={k: v for k, v in moved.coords.items() if dim not in v.dims},
                        name="cardinal_oblique",
                        attrs={"units": "1", "long_name": "log2 ratio of FI at the cardinals "
                               "over the obliques, 2 x the cos 4 theta coefficient of log2 FI "
                               "over all angles"})
