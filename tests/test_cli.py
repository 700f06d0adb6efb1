"""The command line around the replicate manager: failures and --retry-failed, status, the
dask backend, and one-line errors for bad input. Uses the stand-in study in
tests/tiny_studies (a few SGD steps of a tiny MLP; lr=1e30 makes its loss NaN)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from conftest import SEED_STUDY, calls, seed_study  # noqa: F401

from anglesim import io
from anglesim.cli import main
from anglesim.replicates import failure_table


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
    _one_line_error(capsys, f"results {results_file} is a file, not a folder")


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


# version and one-line argument errors -----------------------------------------------------------


def test_version(capsys):
    import anglesim

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"anglesim {anglesim.__version__}"


@pytest.mark.parametrize("argv, message", [
    (["run", "tiny", "--threads", "abc"],
     "anglesim: error: --threads must be an integer >= 1 or one of 'auto', got 'abc'"),
    (["run", "tiny", "--threads", "0"],
     "anglesim: error: --threads must be an integer >= 1 or one of 'auto', got '0'"),
    (["run", "tiny", "--replicates", "0"],
     "anglesim: error: --replicates must be an integer >= 1, got '0'"),
    (["run", "tiny", "--replicates", "2.5"],
     "anglesim: error: --replicates must be an integer >= 1, got '2.5'"),
    (["status", "tiny", "--seed", "-1"],
     "anglesim: error: --seed must be an integer >= 0, got '-1'"),
    (["run", "tiny", "--n-jobs", "0"],
     "anglesim: error: --n-jobs must be a non-zero integer, got '0'"),
    (["run", "tiny", "--device", "warp-drive"],
     "anglesim: error: --device must be a torch device, got 'warp-drive'"),
    (["run", "tiny", "--bogus"], "anglesim: error: unrecognized arguments: --bogus"),
    (["run", "tiny", "--backend", "ray"], "anglesim: error: argument --backend: invalid choice"),
    (["frobnicate"], "anglesim: error: argument command: invalid choice: 'frobnicate'"),
])
def test_argument_errors_are_one_line_without_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err, err
    assert err.startswith(message), err


# studies from user folders and paths -------------------------------------------------------------


def test_user_folder_adds_to_the_built_in_studies(tiny, capsys):
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "tiny" in names and "quickstart" in names and "finetune_shift" in names


def test_user_study_taking_a_built_in_name_is_refused(write_study, monkeypatch, capsys):
    path = write_study("quickstart", seed_study("quickstart"))
    monkeypatch.setenv("ANGLESIM_STUDIES", str(path.parent))
    assert main(["list"]) == 2
    _one_line_error(capsys, "takes the name of the study from built-in")


def test_bad_study_path_is_one_line(tmp_path, write_study, capsys):
    assert main(["run", str(tmp_path / "nope.py")]) == 2
    _one_line_error(capsys, f"study path {tmp_path / 'nope.py'} is not a .py file")
    empty = write_study("empty", "X = 1\n")
    assert main(["run", str(empty), "--quick"]) == 2
    _one_line_error(capsys, "declares no STUDY")


def test_run_by_path_with_loky_workers_from_another_folder(tmp_path, write_study,
                                                          monkeypatch):
    """A study file outside any package runs from another cwd on 2 loky workers (which get
    its functions pickled by value) and gives the Dataset one process gives."""
    path = write_study("seeds", seed_study("seeds"), folder=tmp_path / "elsewhere" / "mine")
    monkeypatch.chdir(tmp_path)
    args = ["run", str(path), "--quick", "--quiet"]
    assert main([*args, "--n-jobs", "2", "--results", "two"]) == 0
    assert main([*args, "--n-jobs", "1", "--results", "one"]) == 0
    a = io.load_dataset(tmp_path / "two" / "seeds_quick.nc")
    b = io.load_dataset(tmp_path / "one" / "seeds_quick.nc")
    xr.testing.assert_identical(data_only(a), data_only(b))
    assert a.attrs["study"] == "seeds" and a.sizes["replicate"] == 2
    assert json.loads(a.attrs["config"])["code"]["origin"] == "seeds.py"


# overrides ------------------------------------------------------------------------------------


def test_overrides_change_grid_and_replicates_and_are_recorded(tiny, capsys):
    results = tiny / "results"
    assert main(["run", "tiny", "grid.lr=[0.05]", "--n-jobs", "1", "--results", str(results),
                 "--quiet", "replicates=1"]) == 0
    ds = io.load_dataset(results / "tiny.nc")
    assert ds["lr"].values.tolist() == [0.05] and ds.sizes["replicate"] == 1
    config = json.loads(ds.attrs["config"])
    assert config["overrides"] == {"grid.lr": [0.05]}  # the replicate count is not in the key
    assert calls(tiny) == 1
    # a bare grid-axis name is a one-value grid; another value is another cache entry
    assert main(["run", "tiny", "lr=0.1", "replicates=1", "--n-jobs", "1", "--results",
                 str(results), "--quiet"]) == 0
    assert io.load_dataset(results / "tiny.nc")["lr"].values.tolist() == [0.1]
    assert calls(tiny) == 2


def test_unknown_override_key_lists_the_valid_ones(tiny, capsys):
    assert main(["run", "tiny", "kapa=8", "--results", str(tiny / "r")]) == 2
    line = _one_line_error(capsys, "unknown override key 'kapa'", "valid keys:", "grid.lr",
                           "replicates")
    assert "lr" in line.split("valid keys:")[1]
    assert main(["run", "quickstart", "phases.finetune.lrr=1", "--dry-run"]) == 2
    _one_line_error(capsys, "unknown override key 'phases.finetune.lrr'",
                    "phases.finetune.lr", "phases.pretrain.lr", "pre_epochs", "grid.kappa")
    assert calls(tiny) == 0


@pytest.mark.parametrize("override, needle", [
    ("replicates=abc", "override replicates must be an integer >= 1, got 'abc'"),
    ("replicates=0", "override replicates must be an integer >= 1, got 0"),
    ("phases.finetune.lr=fast",
     "override phases.finetune.lr must be a real number > 0, got 'fast'"),
    ("phases.finetune.lr=-1e-3", "override phases.finetune.lr must be > 0, got -0.001"),
    ("phases.finetune=1", "override phases.finetune is a group; set one of its keys"),
    ("grid.kappa=[]", "override grid.kappa must be a non-empty list, got []"),
    ("kappa=[2,two]", "override kappa must be a list of numbers, got [2, 'two']"),
    ("kappa", "override must be key=value (e.g. kappa=8), got 'kappa'"),
    ("grid.kappa=[2,8", "is not a closed list"),
])
def test_bad_override_value_names_key_and_value(override, needle, capsys):
    assert main(["run", "quickstart", override, "--dry-run"]) == 2
    _one_line_error(capsys, needle)


def test_dry_run_lists_cells_and_which_are_cached(tiny, capsys):
    results = tiny / "results"
    assert main(["run", "tiny", "replicates=1", "--n-jobs", "1", "--results", str(results),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", "tiny", "replicates=2", "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("study tiny (full): 2 condition(s) × 2 replicate(s); 2 cached, "
                      "0 failed, 2 to run")
    assert out[1] == "overrides: replicates=2"
    cells = [line.strip() for line in out[2:]]
    assert len(cells) == 4
    assert cells[0].startswith("lr=0.05, replicate 0 (seed ") and cells[0].endswith("cached")
    assert cells[1].startswith("lr=0.05, replicate 1") and cells[1].endswith("to run")
    assert calls(tiny) == 2  # the dry run ran nothing


# the cache knows the code, pairing --------------------------------------------------------------


def test_editing_the_replicate_code_recomputes_and_says_why(tmp_path, write_study, monkeypatch,
                                                            capsys):
    monkeypatch.setenv("SEED_CALLS", str(tmp_path / "calls"))
    (tmp_path / "calls").mkdir()
    path = write_study("seeds", seed_study("seeds"))
    args = ["run", str(path), "--quick", "--n-jobs", "1", "--quiet", "--results",
            str(tmp_path / "r")]
    assert main(args) == 0
    assert calls(tmp_path) == 8
    first = io.load_dataset(tmp_path / "r" / "seeds_quick.nc")
    assert main(args) == 0  # unchanged code: all cached
    assert calls(tmp_path) == 8
    capsys.readouterr()
    path.write_text(path.read_text().replace("VERSION_MARK = 1", "VERSION_MARK = 2"))
    with pytest.warns(Warning):  # the replicate manager reports the stale files too
        assert main(args) == 0
    assert calls(tmp_path) == 16
    assert "code changed since the cache was written" in capsys.readouterr().err
    second = io.load_dataset(tmp_path / "r" / "seeds_quick.nc")
    np.testing.assert_array_equal(second["draws"].values, 2 * first["draws"].values)
    assert (json.loads(second.attrs["config"])["code"]["study"]
            != json.loads(first.attrs["config"])["code"]["study"])


@pytest.mark.parametrize("pair_axes", [(), ("treatment",), ("treatment", "group")])
def test_pairing_shares_seeds_along_the_declared_axes_only(tmp_path, write_study, pair_axes):
    path = write_study("seeds", seed_study("seeds", pair_axes))
    assert main(["run", str(path), "--quick", "--n-jobs", "1", "--quiet", "--results",
                 str(tmp_path / "r")]) == 0
    ds = io.load_dataset(tmp_path / "r" / "seeds_quick.nc")
    seeds = ds["used_seed"]  # dims treatment, group, replicate
    for axis in ("treatment", "group"):
        a, b = seeds.isel({axis: 0}), seeds.isel({axis: 1})
        if axis in pair_axes:
            assert (a == b).all(), axis
            np.testing.assert_array_equal(ds["draws"].isel({axis: 0}),
                                          ds["draws"].isel({axis: 1}))
        else:
            assert (a != b).all(), axis
    assert len(np.unique(seeds.isel(treatment=0, group=0))) == ds.sizes["replicate"]


def test_the_command_line_imports_neither_the_benchmark_nor_torch_at_start():
    code = ("import sys, anglesim.cli; print(sorted(m for m in sys.modules if m == 'torch' "
            "or m.startswith('anglesim.bench') or m.startswith('anglesim.studies')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
