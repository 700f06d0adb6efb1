"""Cardinal against oblique FI on curves with a known answer."""

import math

import numpy as np
import pytest
import xarray as xr

from anglesim.laws import cardinal_oblique


@pytest.mark.parametrize("n", [8, 48])
def test_cardinal_oblique_of_known_curves(n):
    theta = np.arange(n) * math.pi / n
    cos4 = xr.DataArray(np.stack([3 + np.cos(4 * theta), np.full(n, 2.0), 3 - np.cos(4 * theta)]),
                        dims=("replicate", "angle"), coords={"angle": theta})
    out = cardinal_oblique(cos4)
    np.testing.assert_allclose(out.values, [1.0, 0.0, -1.0], atol=1e-12)  # log2(4/2), 0, log2(2/4)
    # a curve peaked at one cardinal only: mean over both cardinals against both obliques
    peak = xr.DataArray(1 + np.exp(np.cos(2 * theta)), dims="angle", coords={"angle": theta})
    expected = np.log2((2 + np.e + np.exp(-1)) / 4)
    assert float(cardinal_oblique(peak)) == pytest.approx(expected)


def test_cardinal_oblique_needs_the_four_angles():
    theta = np.arange(6) * math.pi / 6  # no 45°
    da = xr.DataArray(np.ones(6), dims="angle", coords={"angle": theta})
    with pytest.raises(ValueError, match="angle must be a grid holding 45"):
        cardinal_oblique(da)
