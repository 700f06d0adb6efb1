"""The command line around the replicate manager: failures and --retry-failed, status, the
dask backend, and one-line errors for bad input. Uses the stand-in study in
tests/tiny_studies (a few SGD steps of a tiny MLP; lr=1e30 makes its loss NaN)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from anglesim import io
from anglesim.cli import main
from anglesim.replicates import failure_table

TINY = Path(__file__).resolve().parent / "tiny_studies" / "studies"


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Point the CLI at the stand-in studies folder, in this process.

    The repository's own ``studies`` package may already be imported by other tests; it is
    taken out of sys.modules (and put back afterwards) so that ``studies.tiny`` resolves here.
    """
    monkeypatch.setenv("ANGLESIM_STUDIES", str(TINY))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("TINY_CALLS", str(tmp_path / "calls"))
    (tmp_path / "calls").mkdir()
    for name in [m for m in sys.modules if m == "studies" or m.startswith("studies.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(TINY.parent))
    return tmp_path


def calls(folder: Path, pattern: str = "*") -> int:
    return len(list((folder / "calls").glob(f"{pattern}.call")))


def data_only(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {}
    return out


def test_failures_exit_nonzero_with_summary_and_retry_reruns_only_them(tiny, monkeypatch,
                                                                       capsys):
    monkeypatch.setenv("TINY_GRID", json.dumps({"lr": [0.05, 1e30]}))
    results = tiny / "results"
    args = ["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 of 4 replicate(s) failed:" in err
    assert "lr=1e+30, replicate 0 (seed" in err and "FloatingPointError: loss became nan" in err
    assert "--retry-failed" in err and "study.log" in err
    ds = io.load_dataset(results / "tiny.nc")
    table = failure_table(ds)
    assert len(table) == 2 and (table["lr"] == 1e30).all()
    assert "raise FloatingPointError" in table["traceback"].iloc[0]
    assert calls(tiny) == 4

    assert main(args) == 1  # failures are cached: nothing runs again
    assert calls(tiny) == 4
    assert main([*args, "--retry-failed"]) == 1  # only the failed ones run again
    assert calls(tiny) == 6 and calls(tiny, "lr=1e+30-*") == 4

    assert main(["status", "tiny", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 replicates: 2 cached, 2 failed, 0 missing" in out
    assert "failed: replicate 0 of {'lr': 1e+30}" in out


def test_status_counts_cached_failed_missing_and_runs_nothing(tiny, monkeypatch, capsys):
    results = tiny / "results"
    monkeypatch.setenv("TINY_GRID", json.dumps({"lr": [0.05, 1e30]}))
    assert main(["status", "tiny", "--results", str(results)]) == 0
    assert "4 replicates: 0 cached, 0 failed, 4 missing" in capsys.readouterr().out
    assert not results.exists() and calls(tiny) == 0
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]) == 1
    monkeypatch.setenv("TINY_GRID", json.dumps({"lr": [0.05, 1e30, 0.1]}))
    n = calls(tiny)
    listing = sorted(p.name for p in (results / "cache" / "tiny-full").iterdir())
    assert main(["status", "tiny", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "6 replicates: 2 cached, 2 failed, 2 missing" in out
    assert "missing: replicate 0 of {'lr': 0.1}" in out
    assert calls(tiny) == n
    assert sorted(p.name for p in (results / "cache" / "tiny-full").iterdir()) == listing
    # other replicate counts and seeds are other replicates
    assert main(["status", "tiny", "--results", str(results), "--seed", "1"]) == 0
    assert "0 cached, 0 failed, 6 missing" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_backends_give_identical_datasets(tiny, monkeypatch):
    """--n-jobs 1 in this process and --backend dask (a local cluster of 2 worker processes)
    started by a separate `anglesim` process give the same Dataset."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("TINY_GRID", json.dumps({"lr": [0.05, 0.1]}))
    local = tiny / "local"
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(local), "--quiet"]) == 0
    remote = tiny / "dask"
    done = subprocess.run([sys.executable, "-m", "anglesim", "run", "tiny", "--backend", "dask",
                           "--n-jobs", "2", "--results", str(remote), "--quiet"],
                          capture_output=True, text=True, cwd=tiny, env=os.environ, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = io.load_dataset(local / "tiny.nc"), io.load_dataset(remote / "tiny.nc")
    xr.testing.assert_identical(data_only(a), data_only(b))
    assert (a["threads"] == 1).all()
    assert "on 2 worker(s) (dask)" in (remote / "cache" / "tiny-full" / "study.log").read_text()


# bad input ------------------------------------------------------------------------------------


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("anglesim: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_unknown_study(capsys):
    assert main(["run", "no_such_study", "--quick"]) == 2
    _one_line_error(capsys, "unknown study 'no_such_study'", "quickstart")
    assert main(["status", "no_such_study"]) == 2
    _one_line_error(capsys, "unknown study 'no_such_study'")


def test_grid_with_an_empty_axis(tiny, monkeypatch, capsys):
    monkeypatch.setenv("TINY_GRID", json.dumps({"lr": []}))
    results = tiny / "results"
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]) == 2
    _one_line_error(capsys, "grid axis 'lr' is empty")
    assert main(["status", "tiny", "--results", str(results)]) == 2
    _one_line_error(capsys, "grid axis 'lr' is empty")
    assert calls(tiny) == 0


def test_unwritable_cache_dir_deletes_nothing(tiny, capsys):
    results = tiny / "results"
    results.mkdir()
    (results / "cache").write_text("a file where the cache folder should be")
    keep = results / "notes.txt"
    keep.write_text("mine")
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]) == 2
    _one_line_error(capsys, "is not writable", str(results / "cache"))
    assert sorted(p.name for p in results.iterdir()) == ["cache", "notes.txt"]
    assert keep.read_text() == "mine" and calls(tiny) == 0


def test_results_file_that_is_not_an_anglesim_dataset(tiny, capsys):
    results = tiny / "results"
    results.mkdir()
    foreign = results / "tiny.nc"
    xr.Dataset({"x": ("t", [1.0, 2.0])}).to_netcdf(foreign, engine="h5netcdf")
    before = foreign.read_bytes()
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]) == 2
    _one_line_error(capsys, f"results file {foreign} is not an anglesim Dataset")
    assert foreign.read_bytes() == before and calls(tiny) == 0
    assert main(["figures", "--results", str(results), "--out", str(tiny / "f")]) == 2
    _one_line_error(capsys, str(foreign), "not an anglesim Dataset")
    junk = results / "tiny.nc"
    junk.write_text("not netCDF at all")
    assert main(["figures", "--results", str(results), "--out", str(tiny / "f")]) == 2
    _one_line_error(capsys, str(junk), "cannot read")
    results_file = tiny / "plain-file"
    results_file.write_text("x")
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results_file)]) == 2
    _one_line_error(capsys, f"--results {results_file} is a file")


def test_scheduler_with_loky_backend_is_an_error(tiny, capsys):
    assert main(["run", "tiny", "--backend", "loky", "--scheduler", "tcp://x:1",
                 "--results", str(tiny / "r")]) == 2
    _one_line_error(capsys, "--scheduler tcp://x:1 needs --backend dask")


def test_failed_replicates_keep_their_nan_fill(tiny, monkeypatch):
    monkeypatch.setenv("TINY_GRID", json.dumps({"lr": [0.05, 1e30]}))
    results = tiny / "results"
    assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]) == 1
    ds = io.load_dataset(results / "tiny.nc")
    assert np.isnan(ds["weights"].sel(lr=1e30)).all()
    assert np.isfinite(ds["weights"].sel(lr=0.05)).all()


def test_load_study_is_not_shadowed_by_a_studies_package_from_elsewhere(monkeypatch):
    """A `studies` package imported earlier from another folder (here the stand-in one) must
    not hide the folder load_study resolved: CI once failed this way after the CLI tests."""
    from anglesim.cli import load_study, studies_dir

    for name in [m for m in sys.modules if m == "studies" or m.startswith("studies.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.syspath_prepend(str(TINY.parent))
    import studies  # the stand-in package, as an earlier test leaves it

    assert Path(studies.__file__).resolve().parent == TINY
    monkeypatch.delenv("ANGLESIM_STUDIES", raising=False)
    module = load_study("quickstart")
    assert Path(module.__file__).resolve().parent == studies_dir()
    assert studies_dir() != TINY
