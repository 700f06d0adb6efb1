"""End to end: the quickstart study through the command line, and figure regeneration."""

import math
import subprocess
import sys

import numpy as np
import pytest

from anglesim.cli import main
from anglesim.io import load_dataset


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    code = main(["quickstart", "--quick", "--n-jobs", "1", "--results", str(results), "--quiet"])
    return code, results


def test_quickstart_quick_writes_dataset_and_figure(quick_run):
    code, results = quick_run
    assert code == 0
    ds = load_dataset(results / "quickstart_quick.nc")
    assert ds.attrs["study"] == "quickstart"
    assert {"kappa", "replicate", "phase", "layer", "angle", "epoch"} <= set(ds.dims)
    assert ds.sizes["replicate"] == 2 and ds.sizes["angle"] == 8
    assert list(ds["phase"].values) == ["pretrain", "finetune"]
    assert {"input", "conv1", "conv2", "fc", "head", "output"} <= set(ds["layer"].values)
    assert not ds["failed"].any()
    fi = ds["fisher"]
    assert np.isfinite(fi).all() and (fi > 0).all()
    # no layer can carry more information than the pixels themselves (data processing)
    assert (fi <= fi.sel(layer="input") * (1 + 1e-3)).all()
    err = ds["abs_error"]
    assert ((err >= 0) & (err <= math.pi / 2)).all()
    for suffix in (".png", ".pdf"):
        assert (results / f"quickstart_quick{suffix}").stat().st_size > 1000
    # replicates differ (distinct seeds), and the prior is the same for both
    assert not np.allclose(fi.isel(replicate=0), fi.isel(replicate=1))
    np.testing.assert_allclose(ds["prior_density"].isel(replicate=0),
                               ds["prior_density"].isel(replicate=1))


def test_rerun_uses_the_cache(quick_run, capsys):
    _, results = quick_run
    before = load_dataset(results / "quickstart_quick.nc")
    code = main(["quickstart", "--quick", "--n-jobs", "1", "--results", str(results), "--quiet"])
    assert code == 0
    after = load_dataset(results / "quickstart_quick.nc")
    np.testing.assert_array_equal(before["fisher"].values, after["fisher"].values)


def test_figures_redraws_from_saved_datasets(quick_run, tmp_path):
    _, results = quick_run
    assert main(["figures", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "quickstart_quick.png").stat().st_size > 1000


def test_unknown_study_is_a_one_line_error(capsys):
    assert main(["run", "no_such_study", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "no_such_study" in err and "quickstart" in err


def test_figures_without_results_is_an_error(tmp_path, capsys):
    assert main(["figures", "--results", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "anglesim", "list"], capture_output=True,
                         text=True, check=True)
    assert "quickstart" in out.stdout.split()


@pytest.mark.slow
def test_full_quickstart_decodes_well_below_chance(tmp_path):
    code = main(["quickstart", "--n-jobs", "2", "--results", str(tmp_path), "--quiet"])
    assert code == 0
    ds = load_dataset(tmp_path / "quickstart.nc")
    err = ds["abs_error"].mean(["angle", "replicate"])
    assert (err < math.pi / 16).all(), err.values  # chance is π/4
