"""Cardinal against oblique FI: the cos 4θ component of log₂ J over all angles, on curves with
known answers."""

import math

import numpy as np
import pytest
import xarray as xr

from anglesim.laws import cardinal_oblique


@pytest.mark.parametrize("n", [8, 24, 48, 96])
@pytest.mark.parametrize("a4", [0.7, 0.0, -1.3])
def test_the_cos4_component_of_log2_fisher(n, a4):
    theta = np.arange(n) * math.pi / n
    rng = np.random.default_rng(n)
    # log2 J = 3 + a4 cos 4θ + other harmonics the estimate must ignore
    log2j = (3 + a4 * np.cos(4 * theta) + 0.4 * np.sin(4 * theta) + 0.9 * np.cos(2 * theta)
             - 0.5 * np.sin(2 * theta) + (0.3 * np.cos(6 * theta) if n > 12 else 0.0))
    da = xr.DataArray(2.0**log2j, dims="angle", coords={"angle": theta})
    assert float(cardinal_oblique(da)) == pytest.approx(2 * a4, abs=1e-10)
    # per replicate and layer at once; extra dims and their coordinates kept
    stacked = xr.DataArray(2.0 ** (log2j[None, None, :] + rng.normal(0, 1, (3, 2, 1))),
                           dims=("replicate", "layer", "angle"),
                           coords={"angle": theta, "layer": ["fc", "output"]})
    out = cardinal_oblique(stacked.transpose("angle", "layer", "replicate"))
    assert out.dims == ("layer", "replicate")
    assert list(out["layer"].values) == ["fc", "output"]
    np.testing.assert_allclose(out.values, 2 * a4, atol=1e-10)  # a constant factor drops out
    assert out.attrs["units"] == "1" and "log2 ratio" in out.attrs["long_name"]


def test_the_four_angle_ratio_and_the_cos4_component_can_disagree_in_sign():
    """The old rule (mean J at 0° and 90° over mean J at 45° and 135°) reads four angles, where
    every harmonic cos 4kθ is ±1: a cos 12θ term flips it, while the cos 4θ component over all
    angles is the same with it or without it."""
    theta = np.arange(48) * math.pi / 48
    four = [0, 24], [12, 36]  # the cardinals' and the obliques' indices

    def old_rule(log2j):
        return np.log2(np.mean(2.0 ** log2j[four[0]]) / np.mean(2.0 ** log2j[four[1]]))

    smooth = 0.5 * np.cos(4 * theta)
    rough = smooth - 1.5 * np.cos(12 * theta)  # −1.5 at the cardinals, +1.5 at the obliques
    for log2j in (smooth, rough):
        da = xr.DataArray(2.0**log2j, dims="angle", coords={"angle": theta})
        assert float(cardinal_oblique(da)) == pytest.approx(1.0)
    assert old_rule(smooth) == pytest.approx(1.0)
    assert old_rule(rough) == pytest.approx(-2.0)


def test_nonpositive_fisher_gives_nan_and_bad_grids_are_refused():
    theta = np.arange(8) * math.pi / 8
    da = xr.DataArray(np.stack([np.ones(8), np.r_[0.0, np.ones(7)]]), dims=("replicate", "angle"),
                      coords={"angle": theta})
    out = cardinal_oblique(da)
    assert out.values[0] == pytest.approx(0.0) and np.isnan(out.values[1])
    with pytest.raises(ValueError, match="angle must be a grid of at least 5 angles"):
        cardinal_oblique(da.isel(angle=slice(0, 4)))
    with pytest.raises(ValueError, match="fisher must be a DataArray with a 'angle' dim"):
        cardinal_oblique(np.ones(8))
