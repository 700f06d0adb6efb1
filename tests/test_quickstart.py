"""End to end: the quickstart study through the command line, and figure regeneration."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from anglesim.cli import main
from anglesim.io import load_dataset
from anglesim.pool_ties import PoolTieWarning


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main(["quickstart", "--quick", "--n-jobs", "1", "--results", str(results),
                     "--quiet"])
    return code, results, [w for w in seen if issubclass(w.category, PoolTieWarning)]


def test_quickstart_quick_writes_dataset_and_figure(quick_run):
    code, results, ties = quick_run
    assert code == 0
    assert ties == []  # no warning about the study's own stimulus (said in its summary)
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
    _, results, _ = quick_run
    before = load_dataset(results / "quickstart_quick.nc")
    code = main(["quickstart", "--quick", "--n-jobs", "1", "--results", str(results), "--quiet"])
    assert code == 0
    after = load_dataset(results / "quickstart_quick.nc")
    np.testing.assert_array_equal(before["fisher"].values, after["fisher"].values)


def test_figures_redraws_from_saved_datasets(quick_run, tmp_path):
    _, results, _ = quick_run
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


def test_non_editable_install_runs_every_study_from_another_folder(tmp_path):
    """`pip install --target` (no checkout on the path) lists every built-in study, and runs
    the quickstart from an unrelated folder with the package's own copy of the study."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "anglesim", src / "anglesim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                           "--no-build-isolation", "--target", str(target), "-q", str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if k != "ANGLESIM_STUDIES"}
    env["PYTHONPATH"] = str(target)

    def anglesim(*args):
        return subprocess.run([sys.executable, "-m", "anglesim", *args], capture_output=True,
                              text=True, cwd=elsewhere, env=env, timeout=300)

    listed = anglesim("list")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {"quickstart", "finetune_shift", "reference_replication"} <= names
    ran = anglesim("run", "quickstart", "--quick", "replicates=1", "--n-jobs", "1", "--quiet",
                   "--results", "out")
    assert ran.returncode == 0, ran.stderr
    ds = load_dataset(elsewhere / "out" / "quickstart_quick.nc")
    assert ds.sizes["replicate"] == 1 and not ds["failed"].any()
    assert (elsewhere / "out" / "quickstart_quick.png").is_file()
    import json

    assert json.loads(ds.attrs["config"])["code"]["origin"] == "built-in"
    code = subprocess.run([sys.executable, "-c", "import anglesim.study as s; "
                           "from anglesim.study._finder import code_files; "
                           "print(code_files(s.load('quickstart'))[-1])"],
                          capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
    assert code.stdout.strip().startswith(str(target)), code.stdout + code.stderr
