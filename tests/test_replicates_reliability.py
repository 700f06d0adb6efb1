"""anglesim.replicates under faults: NaN results, code changes, paired seeds, edited and old
cache files, a full disk, a second run on the same cache, and a killed study process."""

import errno
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from markers import needs_h5py

from anglesim import io
from anglesim.replicates import (
    CacheFullError,
    CacheWarning,
    condition_id,
    replicate_seed,
    run_study,
    study_status,
)

HERE = Path(__file__).resolve().parent


def counted(condition: dict, replicate: int, seed: int, log_dir: str,
            sleep: float = 0.0) -> xr.Dataset:
    """A small Dataset random only through ``seed``; leaves ``<pid>-<uuid>.call`` in
    ``log_dir`` so tests can count calls and find the processes that made them."""
    Path(log_dir, f"{os.getpid()}-{uuid.uuid4().hex}.call").touch()
    time.sleep(sleep)
    rng = np.random.default_rng(seed)
    ds = xr.Dataset({"fisher": ("angle", condition.get("kappa", 1.0) * rng.random(4))},
                    coords={"angle": np.linspace(0, np.pi, 4, endpoint=False)})
    ds["fisher"].attrs = {"long_name": "Fisher information", "units": "rad-2"}
    return ds


def with_bad_values(condition: dict, replicate: int, seed: int, bad: float) -> xr.Dataset:
    """``fisher`` holds ``bad`` (NaN or inf) for kappa=2.0; ``clean`` never does."""
    values = np.arange(4.0)
    if condition["kappa"] == 2.0:
        values[1] = bad
    return xr.Dataset({"fisher": ("angle", values), "clean": ((), 1.0)})


def calls(log_dir: Path) -> int:
    return len(list(log_dir.glob("*.call")))


def data_only(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {}
    return out


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*.nc"))


# NaN and inf -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_inf_result_is_a_failure_naming_the_variable(bad):
    grid = {"kappa": [1.0, 2.0, 3.0]}
    ds = run_study(functools.partial(with_bad_values, bad=bad), grid, 2, progress=False)
    assert ds["failed"].values.tolist() == [[False, False], [True, True], [False, False]]
    error = ds["error"].sel(kappa=2.0, replicate=0).item()
    assert error.startswith("FloatingPointError: variable 'fisher' holds NaN or inf (1 of 4")
    assert "allow_nan" in error
    assert np.isfinite(ds["fisher"].sel(kappa=[1.0, 3.0])).all()


def test_allow_nan_keeps_the_named_variables_values():
    grid = {"kappa": [1.0, 2.0]}
    ds = run_study(functools.partial(with_bad_values, bad=np.nan), grid, 2, progress=False,
                   allow_nan=["fisher"])
    assert not ds["failed"].any()
    assert np.isnan(ds["fisher"].sel(kappa=2.0).isel(angle=1)).all()
    assert np.isfinite(ds["fisher"].sel(kappa=1.0)).all()
    with pytest.raises(ValueError, match="allow_nan must be a list of names"):
        run_study(with_bad_values, grid, 1, allow_nan="fisher")
    for patterns in (["fish*"], ["*"]):
        fn = functools.partial(with_bad_values, bad=np.inf)
        assert not run_study(fn, grid, 1, progress=False, allow_nan=patterns)["failed"].any()
    fn = functools.partial(with_bad_values, bad=np.inf)
    assert run_study(fn, grid, 1, progress=False, allow_nan=["clean", "f"])["failed"].any()


def raises_inside_numpy(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    np.linalg.inv(np.zeros((2, 2)))  # LinAlgError, raised from numpy's own files
    raise AssertionError("not reached")


def test_failure_tracebacks_name_no_machine_paths():
    ds = run_study(raises_inside_numpy, {"kappa": [1.0]}, 1, progress=False)
    (entry,) = ds.attrs["failures"]
    assert "LinAlgError" in entry["traceback"]
    files = re.findall(r'File "([^"]+)"', entry["traceback"])
    assert files and not [f for f in files if f.startswith("/")]
    assert any(f.startswith("anglesim/replicates/") for f in files)
    assert any(f.startswith("…/linalg/") for f in files)
    assert str(HERE) not in entry["traceback"]


@needs_h5py
def test_a_nan_failure_is_recorded_in_the_cache(tmp_path):
    fn = functools.partial(with_bad_values, bad=np.nan)
    run_study(fn, {"kappa": [2.0]}, 1, progress=False, cache_dir=tmp_path, name="n")
    records = list((tmp_path / "n").glob("*.failed.json"))
    assert len(records) == 1 and "'fisher'" in json.loads(records[0].read_text())["error"]
    assert not list((tmp_path / "n").glob("*.nc"))


# code_version ----------------------------------------------------------------------------------


@needs_h5py
def test_another_code_version_recomputes_and_says_the_code_changed(tmp_path, caplog):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    grid = {"kappa": [1.0, 2.0]}
    kw = dict(cache_dir=tmp_path / "c", name="s", progress=False)
    first = run_study(fn, grid, 2, code_version="abc123", code_origin="my_study.py", **kw)
    assert calls(log) == 4
    assert first.attrs["code_version"] == "abc123"
    assert first.attrs["code_origin"] == "my_study.py"
    run_study(fn, grid, 2, code_version="abc123", **kw)
    assert calls(log) == 4  # the same code: everything from the cache
    with pytest.warns(CacheWarning, match=r"the replicate code changed: 4 cached file\(s\)") \
            as record, caplog.at_level(logging.WARNING, logger="anglesim.replicates"):
        run_study(fn, grid, 2, code_version="def456", **kw)
    assert calls(log) == 8
    assert "'abc123'" in str(record[0].message) and "'def456'" in str(record[0].message)
    assert "the replicate code changed" in caplog.text
    status = study_status(grid, 2, code_version="def456", cache_dir=tmp_path / "c", name="s")
    assert len(status.cached) == 4
    assert len(study_status(grid, 2, code_version="abc123", cache_dir=tmp_path / "c",
                            name="s").missing) == 4


def test_code_version_and_origin_are_validated():
    with pytest.raises(ValueError, match="code_version must be a non-empty string, got 3"):
        run_study(counted, {}, 1, code_version=3)
    with pytest.raises(ValueError, match="code_origin must be a non-empty string, got ''"):
        run_study(counted, {}, 1, code_origin="")


def test_without_code_version_the_cache_key_is_unchanged():
    """Existing caches stay valid: the key has no code_version entry unless one is given."""
    from anglesim.replicates._grid import StudySpec

    plain = StudySpec.checked({"kappa": [1.0]}, 2, 3, "s", {"v": 1}).tasks()
    versioned = StudySpec.checked({"kappa": [1.0]}, 2, 3, "s", {"v": 1},
                                  code_version="x").tasks()
    assert all("code_version" not in t.key for t in plain)
    assert [t.config_hash for t in plain] == [io.config_hash(
        {"config": {"v": 1}, "condition": t.condition, "replicate": t.replicate, "seed": 3,
         "replicate_seed": t.seed}) for t in plain]
    assert {t.config_hash for t in plain}.isdisjoint(t.config_hash for t in versioned)
    assert [t.seed for t in plain] == [t.seed for t in versioned]


# pairing ---------------------------------------------------------------------------------------


def test_pair_axes_share_seeds_across_treatments_only():
    grid = {"strategy": ["full", "lora", "frozen"], "kappa": [1.0, 4.0]}
    paired = run_study(counted_quiet, grid, 3, seed=9, progress=False, pair_axes=["strategy"])
    seeds = paired["replicate_seed"]
    for s in grid["strategy"]:  # one parent per (kappa, replicate), whatever the strategy
        assert (seeds.sel(strategy=s) == seeds.sel(strategy="full")).all()
    assert (seeds.sel(kappa=1.0) != seeds.sel(kappa=4.0)).all()
    assert len(np.unique(seeds.sel(strategy="full"))) == 6
    assert int(seeds.sel(strategy="lora", kappa=4.0, replicate=2)) == replicate_seed(
        9, condition_id({"kappa": 4.0}), 2)
    assert paired.attrs["pair_axes"] == ["strategy"]
    # the results of one parent are those of the same seed
    xr.testing.assert_identical(paired["fisher"].sel(strategy="full", drop=True),
                                paired["fisher"].sel(strategy="frozen", drop=True))
    unpaired = run_study(counted_quiet, grid, 3, seed=9, progress=False)
    assert (unpaired["replicate_seed"].sel(strategy="full")
            != unpaired["replicate_seed"].sel(strategy="lora")).all()


def counted_quiet(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({"fisher": ("angle", rng.random(3))})


def test_pair_axes_must_be_grid_axes():
    with pytest.raises(ValueError,
                       match="pair_axes must be a list of grid axes \\(kappa\\), got 'lr'"):
        run_study(counted_quiet, {"kappa": [1.0]}, 1, pair_axes=["lr"])
    with pytest.raises(ValueError, match="pair_axes must be a list of names"):
        run_study(counted_quiet, {"kappa": [1.0]}, 1, pair_axes="kappa")


# cached files ----------------------------------------------------------------------------------


@needs_h5py
def test_an_edited_long_name_in_a_cached_file_is_quarantined_and_recomputed(tmp_path):
    import h5py

    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    kw = dict(cache_dir=tmp_path / "c", name="s", progress=False)
    first = run_study(fn, {"kappa": [1.0]}, 2, **kw)
    victim = sorted((tmp_path / "c" / "s").glob("*.nc"))[0]
    with h5py.File(victim, "r+") as f:
        f["fisher"].attrs["long_name"] = "Fisher informatioN"  # one byte
    with pytest.warns(CacheWarning, match="checksum \\(data, coordinates and attributes\\)"):
        again = run_study(fn, {"kappa": [1.0]}, 2, **kw)
    assert calls(log) == 3  # that one replicate recomputed
    assert victim.with_name(victim.name + ".corrupt").exists()
    xr.testing.assert_identical(data_only(again), data_only(first))
    assert again["fisher"].attrs["long_name"] == "Fisher information"


@needs_h5py
def test_a_cached_file_with_the_old_checksum_is_recomputed_with_a_reason(tmp_path):
    import h5py

    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    kw = dict(cache_dir=tmp_path / "c", name="s", progress=False)
    run_study(fn, {"kappa": [1.0]}, 1, **kw)
    (victim,) = (tmp_path / "c" / "s").glob("*.nc")
    with h5py.File(victim, "r+") as f:  # as version 1 wrote it: a bare data-only digest
        f.attrs[io.CHECKSUM_ATTR] = io.data_checksum(io.load_dataset(victim))
    with pytest.warns(CacheWarning, match="written with checksum version 1, which does not "
                                          "cover attributes"):
        run_study(fn, {"kappa": [1.0]}, 1, **kw)
    assert calls(log) == 2 and io.load_checked(victim)[1] == io.CHECKSUM_VERSION


def test_a_grid_axis_named_like_a_sel_keyword_warns():
    with pytest.warns(UserWarning, match="dimension 'method' has the name of a keyword"):
        run_study(counted_quiet, {"method": ["a", "b"]}, 1, progress=False)


def test_grid_axes_get_declared_units_and_long_names():
    ds = run_study(counted_quiet, {"kappa": [1.0], "loss": ["mse"]}, 1, progress=False,
                   coord_attrs={"kappa": {"units": "1", "long_name": "prior concentration κ"}})
    assert ds["kappa"].attrs == {"units": "1", "long_name": "prior concentration κ"}
    assert ds["loss"].attrs == {"long_name": "grid axis loss"}
    with pytest.raises(ValueError, match="coord_attrs\\['kappa'\\] must be a map"):
        run_study(counted_quiet, {"kappa": [1.0]}, 1, coord_attrs={"kappa": {"units": 1}})


# a full disk -----------------------------------------------------------------------------------


@needs_h5py
def test_too_little_free_space_stops_before_computing(tmp_path, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    kw = dict(cache_dir=tmp_path / "c", name="s", progress=False)
    run_study(fn, {"kappa": [1.0]}, 2, **kw)
    size = max(p.stat().st_size for p in (tmp_path / "c" / "s").glob("*.nc"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 3 * size))
    with pytest.raises(CacheFullError) as info:
        run_study(fn, {"kappa": [1.0]}, 6, **kw)  # 4 more files need more than 3 files' space
    assert calls(log) == 2  # nothing computed
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "c" / "s")
    assert "not enough free space" in str(info.value) and "\n" not in str(info.value)
    run_study(fn, {"kappa": [1.0]}, 3, **kw)  # one more fits
    assert calls(log) == 3


@needs_h5py
def test_the_first_file_of_a_study_sets_the_expected_size(tmp_path, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 20_000))
    with pytest.raises(CacheFullError, match="still to compute"):
        run_study(functools.partial(counted, log_dir=str(log)), {"kappa": [1.0]}, 8,
                  cache_dir=tmp_path / "c", name="s", progress=False)
    assert calls(log) == 1 and len(cached_files(tmp_path / "c" / "s")) == 1


@needs_h5py
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failed_write_stops_the_study_keeping_what_is_cached(tmp_path, monkeypatch, n_jobs):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    kw = dict(cache_dir=tmp_path / "c", name="s", progress=False, n_jobs=n_jobs)
    grid = {"kappa": [1.0, 2.0, 3.0]}
    if n_jobs == 1:
        real = xr.Dataset.to_netcdf
        written = []

        def full_after_two(self, path, *args, **kwargs):
            if len(written) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(path)
            return real(self, path, *args, **kwargs)

        monkeypatch.setattr(xr.Dataset, "to_netcdf", full_after_two)
    else:  # in the workers: a cache folder that refuses new files after two
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "FULL").touch()
        fn = functools.partial(fills_disk, log_dir=str(log), cache=str(tmp_path / "c" / "s"))
    with pytest.raises(CacheFullError) as info:
        run_study(fn, grid, 2, **kw)
    assert info.value.filename.startswith(str(tmp_path / "c" / "s"))
    assert info.value.filename.endswith(".nc") and "\n" not in str(info.value)
    assert "No space left on device" in str(info.value) and "rerun to resume" in str(info.value)
    kept = cached_files(tmp_path / "c" / "s")
    assert len(kept) >= 2
    assert not list((tmp_path / "c" / "s").glob(".*.tmp"))
    monkeypatch.undo()
    (tmp_path / "c" / "FULL").unlink(missing_ok=True)
    before = calls(log)
    done = run_study(functools.partial(counted, log_dir=str(log)), grid, 2, **kw)
    assert calls(log) - before == 6 - len(kept) and not done["failed"].any()


def fills_disk(condition: dict, replicate: int, seed: int, log_dir: str,
               cache: str) -> xr.Dataset:
    """``counted``, in a worker process whose writes fail (ENOSPC) while the file ``FULL``
    exists next to ``cache`` and two replicate files are cached."""
    if not getattr(xr.Dataset.to_netcdf, "fills_disk", False):
        real = xr.Dataset.to_netcdf

        def to_netcdf(self, path, *args, **kwargs):
            folder = Path(path).parent
            if (folder.parent / "FULL").exists() and len(list(folder.glob("*.nc"))) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, path, *args, **kwargs)

        to_netcdf.fills_disk = True
        xr.Dataset.to_netcdf = to_netcdf  # in this worker process only
    return counted(condition, replicate, seed, log_dir)


@needs_h5py
def test_a_log_that_cannot_be_written_prints_no_logging_tracebacks(tmp_path, monkeypatch,
                                                                  capsys):
    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(logging.FileHandler, "flush", full)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("anglesim.replicates").addHandler(handler)
    try:
        ds = run_study(counted_quiet, {"kappa": [1.0]}, 2, cache_dir=tmp_path, name="s",
                       progress=False)
    finally:
        logging.getLogger("anglesim.replicates").removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.count("cannot append to the study log") == 1
    assert not ds["failed"].any()


@pytest.mark.slow
@needs_h5py
def test_a_real_full_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root): the first files fit, then the write fails or the space
    check stops the study; either way one CacheFullError naming the path, files kept."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with pytest.raises(CacheFullError) as info:
            run_study(big_result, {"kappa": [1.0]}, 40, cache_dir=mount, name="s",
                      progress=False)
        assert info.value.filename.startswith(str(mount / "s"))
        kept = cached_files(mount / "s")
        assert kept and all(io.load_dataset(mount / "s" / name) for name in kept)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def big_result(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """About 100 kB of random (incompressible) float64."""
    return xr.Dataset({"x": ("i", np.random.default_rng(seed).random(12_500))})


# a second run on the same cache ----------------------------------------------------------------

_LAUNCH = textwrap.dedent("""
    import functools, sys
    sys.path.insert(0, {tests!r})
    from test_replicates_reliability import counted
    from anglesim.replicates import run_study
    ds = run_study(functools.partial(counted, log_dir={log!r}, sleep={sleep!r}),
                   {{"kappa": [1.0, 2.0]}}, {n!r}, cache_dir={cache!r}, name="s",
                   progress=False, n_jobs={n_jobs!r})
    ds.attrs = {{}}
    ds.to_netcdf({out!r}, engine="h5netcdf")
""")


def _launch(tmp_path: Path, tag: str, n: int, sleep: float, n_jobs: int = 1,
            log: Path | None = None) -> subprocess.Popen:
    log = log or tmp_path / "log"
    log.mkdir(exist_ok=True)
    code = _LAUNCH.format(tests=str(HERE), log=str(log), sleep=sleep, n=n,
                          cache=str(tmp_path / "c"), n_jobs=n_jobs,
                          out=str(tmp_path / f"{tag}.nc"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@needs_h5py
def test_a_second_run_on_the_same_cache_computes_nothing_twice(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    first = _launch(tmp_path, "first", n=3, sleep=2.0)
    deadline = time.monotonic() + 120
    while calls(log) == 0 and time.monotonic() < deadline:  # the first run holds its locks
        time.sleep(0.05)  # (started together, a slow start of the second under load could
    second = _launch(tmp_path, "second", n=3, sleep=2.0)  # find the first run finished)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert calls(log) == 6  # every replicate computed once, by one of the two runs
    assert len(cached_files(tmp_path / "c" / "s")) == 6
    a, b = (xr.load_dataset(tmp_path / f"{t}.nc", engine="h5netcdf") for t in ("first",
                                                                                "second"))
    xr.testing.assert_identical(a, b)
    assert not a["failed"].any()
    said = [line for line in (err1 + err2).splitlines() if "being computed by another run" in
            line]
    assert len(said) == 1 and "pid " in said[0]


@needs_h5py
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_locks_are_taken_in_rounds_of_bounded_size(tmp_path, monkeypatch, n_jobs):
    """Each held lock is an open file: a big study takes them a few hundred at a time."""
    monkeypatch.setattr("anglesim.replicates._run.MAX_LOCKS", 2)
    log = tmp_path / "log"
    log.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        ds = run_study(functools.partial(counted, log_dir=str(log)), {"kappa": [1.0, 2.0]}, 5,
                       cache_dir=tmp_path / "c", name="s", progress=False, n_jobs=n_jobs)
    assert calls(log) == 10 and not ds["failed"].any()
    assert len(cached_files(tmp_path / "c" / "s")) == 10


# the study process killed ----------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's reaping is left


@needs_h5py
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_when_the_study_process_is_killed(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    main = _launch(tmp_path, "killed", n=4, sleep=3.0, n_jobs=2, log=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and main.poll() is None:
        pids = {int(p.name.split("-")[0]) for p in log.glob("*.call")}
        if len(pids) >= 2:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the workers did not start: {main.communicate()[1]}")
    os.kill(main.pid, signal.SIGKILL)  # the main process alone, not its workers
    main.wait(timeout=30)
    written = cached_files(tmp_path / "c" / "s")
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]
    time.sleep(3.5)  # longer than the replicates still had to run
    assert cached_files(tmp_path / "c" / "s") == written  # nothing written after the kill
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        resumed = run_study(functools.partial(counted, log_dir=str(log)),
                            {"kappa": [1.0, 2.0]}, 4, cache_dir=tmp_path / "c", name="s",
                            progress=False)
    assert not resumed["failed"].any()


def test_a_worker_rerunning_a_stored_task_returns_it_without_computing(tmp_path):
    """dask reschedules every task of a worker that died, including one it finished and
    stored but had not handed back: the rerun returns the stored result, fn is not called."""
    from anglesim.replicates._cache import ReplicateCache
    from anglesim.replicates._grid import StudySpec
    from anglesim.replicates._worker import TaskSettings, run_task

    calls = []

    def fn(condition, replicate, seed):
        calls.append(replicate)
        return xr.Dataset({"x": ((), float(seed % 97))})

    tasks = StudySpec.checked({"a": [1]}, 2, 0, "rerun", {}).tasks()
    cache = ReplicateCache.open(tmp_path, "rerun")
    settings = TaskSettings(threads=1, forbidden=frozenset(), cache=cache)
    first = run_task(fn, tasks[0], settings)
    assert calls == [0] and first.result is not None and not first.cached
    again = run_task(fn, tasks[0], settings)  # the rerun after its worker died
    assert calls == [0] and again.cached
    xr.testing.assert_identical(again.result, first.result)
    run_task(fn, tasks[1], settings)  # a task not stored is computed
    assert calls == [0, 1]
    # a stored file that is not this task's (another config) is recomputed, not returned
    other = StudySpec.checked({"a": [1]}, 2, 0, "rerun", {"changed": 1}).tasks()[0]
    run_task(fn, other, settings)
    assert calls == [0, 1, 0]
