"""Figure helpers: replicate masking and confidence intervals."""

import numpy as np
import pytest
import xarray as xr

from anglesim.plotting import mean_ci, successful


def test_successful_masks_only_failed_replicates_of_per_replicate_floats():
    ds = xr.Dataset(
        {
            "fisher": (("kappa", "replicate", "angle"), np.ones((2, 3, 4))),
            "per_kappa": ("kappa", np.array([1.0, 2.0])),
            "count": (("kappa", "replicate"), np.ones((2, 3), dtype=int)),
            "failed": (("kappa", "replicate"), np.array([[0, 1, 0], [0, 0, 0]], dtype=bool)),
        }
    )
    out = successful(ds)
    assert np.isnan(out["fisher"].isel(kappa=0, replicate=1)).all()
    assert int(np.isnan(out["fisher"]).sum()) == 4
    assert out["per_kappa"].dims == ("kappa",)
    assert out["count"].dtype == ds["count"].dtype


def test_mean_ci_matches_the_t_interval():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    da = xr.DataArray(values, dims="replicate")
    mean, half = mean_ci(da)
    from scipy import stats

    expected = stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    assert float(mean) == pytest.approx(values.mean())
    assert float(half) == pytest.approx(expected)
    _, half_one = mean_ci(da.isel(replicate=[0]))
    assert float(half_one) == 0.0
