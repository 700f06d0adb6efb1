"""Skip markers the test modules share."""

import importlib.util

import pytest

needs_h5py = pytest.mark.skipif(
    importlib.util.find_spec("h5py") is None,
    reason="h5netcdf needs h5py to read and write netCDF4 files (Datasets and the replicate "
           "cache), and h5py is not installed",
)
