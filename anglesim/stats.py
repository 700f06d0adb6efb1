"""Intervals the studies and figures rest on: one module, so every band means the same thing.

Today: the Student-t interval of a mean over replicates (:func:`mean_ci`). Bands over trials
within one network come from :mod:`anglesim.fisher_stats` and the estimators' own variance
formulas.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats as _st

__all__ = ["mean_ci"]


def mean_ci(da: xr.DataArray, dim: str = "replicate", level: float = 0.95):
    """Mean over ``dim`` and the half-width of its Student-t confidence interval (NaN-aware).

    With one valid replicate the half-width is 0 (no band is drawn).
    """
    mean = da.mean(dim, skipna=True)
    n = da.count(dim)
    sem = da.std(dim, ddof=1, skipna=True) / np.sqrt(n)
    t = xr.apply_ufunc(lambda k: _st.t.ppf(0.5 + level / 2, np.maximum(k - 1, 1)), n)
    half = (t * sem).where(n > 1, 0.0)
    return mean, half
