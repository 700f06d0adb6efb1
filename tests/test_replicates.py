"""anglesim.replicates: seeds, grids, parallel runs, the per-replicate cache and failures."""

import functools
import importlib.util
import json
import logging
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim import io
from anglesim.replicates import (
    CacheWarning,
    condition_id,
    condition_key,
    iter_conditions,
    replicate_seed,
    run_study,
)

needs_h5py = pytest.mark.skipif(
    importlib.util.find_spec("h5py") is None,
    reason="the cache writes netCDF4 files with h5netcdf, which needs h5py (not installed)",
)

GRID = {"kappa": [1.0, 4.0], "loss": ["cosine", "mse", "vm"]}
META = ["failed", "error", "replicate_seed"]


# module-level (picklable) replicate functions --------------------------------------------------


def noisy(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """Small Dataset of several dtypes, random only through ``seed``."""
    rng = np.random.default_rng(seed)
    angle = np.linspace(0, np.pi, 4, endpoint=False)
    return xr.Dataset(
        {
            "fisher": ("angle", condition["kappa"] * rng.random(4)),
            "steps": ((), np.int64(rng.integers(1000))),
            "good": ("angle", rng.random(4) > 0.5),
            "note": ((), f"{condition['loss']}#{replicate}"),
        },
        coords={"angle": angle},
        attrs={"units": "rad"},
    )


def counted(condition: dict, replicate: int, seed: int, log_dir: str) -> xr.Dataset:
    """``noisy``, leaving one file per call in ``log_dir`` so tests can count calls."""
    Path(log_dir, f"{condition['loss']}-{replicate}-{uuid.uuid4().hex}.call").touch()
    return noisy(condition, replicate, seed)


def failing(condition: dict, replicate: int, seed: int, log_dir: str) -> xr.Dataset:
    """``counted``, but raising for the condition loss='mse'."""
    if condition["loss"] == "mse":
        Path(log_dir, f"mse-{replicate}-{uuid.uuid4().hex}.call").touch()
        raise RuntimeError(f"diverged at kappa={condition['kappa']}")
    return counted(condition, replicate, seed, log_dir)


def torch_default_rng(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """Draws from torch's global generator (deterministic only thanks to run_study's guard)."""
    weights = torch.nn.Linear(3, 2).weight.detach().numpy().ravel()
    return xr.Dataset({"w": ("k", weights.astype(np.float64) * condition["kappa"]),
                       "threads": ((), torch.get_num_threads())})


def crashes(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """Kills its worker process for kappa=2.0, replicate 0 (only ever run with n_jobs=2)."""
    if condition["kappa"] == 2.0 and replicate == 0:
        os._exit(3)
    return torch_default_rng(condition, replicate, seed)


def returns_array(condition: dict, replicate: int, seed: int) -> np.ndarray:
    return np.zeros(3)


def uses_reserved(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    return xr.Dataset({"x": ("replicate", [1.0])})


def calls(log_dir: Path, pattern: str = "*") -> int:
    return len(list(log_dir.glob(f"{pattern}.call")))


def data_only(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {}
    return out


# seeds and conditions --------------------------------------------------------------------------


def test_replicate_seed_is_deterministic_distinct_and_int64():
    seeds = [replicate_seed(0, c, r) for c in range(20) for r in range(20)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert seeds == [replicate_seed(0, c, r) for c in range(20) for r in range(20)]
    assert replicate_seed(1, 0, 0) != replicate_seed(0, 0, 0)
    assert replicate_seed(0, 1, 0) != replicate_seed(0, 0, 1)
    expected = np.random.SeedSequence(5, spawn_key=(2, 3)).generate_state(1, np.uint64)[0]
    assert replicate_seed(5, 2, 3) == int(expected) >> 1
    for bad in (dict(seed=-1), dict(condition_index=1.5), dict(replicate=True)):
        args = {"seed": 0, "condition_index": 0, "replicate": 0, **bad}
        name, value = next(iter(bad.items()))
        with pytest.raises(ValueError, match=f"{name} must be a non-negative integer, got "
                                             f"{re.escape(repr(value))}"):
            replicate_seed(**args)


def test_iter_conditions_order_and_types():
    conds = iter_conditions({"a": [2, 1], "b": ["x", "y"], "c": [True]})
    assert conds == [{"a": 2, "b": "x", "c": True}, {"a": 2, "b": "y", "c": True},
                     {"a": 1, "b": "x", "c": True}, {"a": 1, "b": "y", "c": True}]
    assert iter_conditions({}) == [{}]
    numpy_values = iter_conditions({"k": np.array([1.5, 2.5])})
    assert numpy_values == [{"k": 1.5}, {"k": 2.5}] and type(numpy_values[0]["k"]) is float


@pytest.mark.parametrize(("grid", "message"), [
    ({"kappa": []}, "grid axis 'kappa' is empty"),
    ({"loss": "cosine"}, "grid axis 'loss' must be a list"),
    ({"k": [1, None]}, "grid axis 'k': values must be str, int, float or bool, got None"),
    ({"k": [1.0, float("nan")]}, "NaN"),
    ({"k": [1, "a"]}, "grid axis 'k' mixes value types"),
    ({"k": [1, 1.0]}, "grid axis 'k' has the value 1.0 more than once"),
    ({"": [1]}, "non-empty strings"),
    ([("k", [1])], "grid must be a dict"),
])
def test_iter_conditions_rejects_bad_grids(grid, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        iter_conditions(grid)


def test_condition_key_is_readable_safe_and_unique():
    key = condition_key({"kappa": 4.0, "loss": "cosine"})
    assert re.fullmatch(r"kappa=4\.0,loss=cosine-[0-9a-f]{8}", key)
    odd = condition_key({"path": "a/b c"})
    assert "/" not in odd and " " not in odd
    assert condition_key({"path": "a/b c"}) != condition_key({"path": "a_b_c"})
    assert condition_key({"k": 1}) != condition_key({"k": 1.0})
    assert len(condition_key({"x": "y" * 500})) < 100


# run_study: shape, determinism, parallelism -------------------------------------------------


def test_assembled_dataset_dims_coords_and_seeds():
    ds = run_study(noisy, GRID, n_replicates=3, seed=11, progress=False, name="shape",
                   config={"note": "test"})
    assert dict(ds.sizes) == {"kappa": 2, "loss": 3, "replicate": 3, "angle": 4}
    assert ds["fisher"].dims == ("kappa", "loss", "replicate", "angle")
    for var in META + ["steps", "note"]:
        assert ds[var].dims == ("kappa", "loss", "replicate")
    assert ds["kappa"].values.tolist() == [1.0, 4.0] and ds["kappa"].dtype == np.float64
    assert ds["loss"].values.tolist() == ["cosine", "mse", "vm"]
    assert ds["replicate"].values.tolist() == [0, 1, 2]
    assert ds["steps"].dtype == np.int64 and ds["good"].dtype == bool
    assert ds["note"].sel(loss="vm", replicate=2, kappa=4.0).item() == "vm#2"
    assert not ds["failed"].any() and (ds["error"] == "").all()
    seeds = ds["replicate_seed"]
    assert seeds.dtype == np.int64 and len(np.unique(seeds)) == seeds.size
    cond = {"kappa": 4.0, "loss": "mse"}
    seed = replicate_seed(11, condition_id(cond), 2)
    assert seeds.sel(kappa=4.0, loss="mse", replicate=2) == seed
    # each replicate really used its own seed
    expected = noisy(cond, 2, seed)
    picked = ds.drop_vars(META).sel(kappa=4.0, loss="mse", replicate=2, drop=True)
    xr.testing.assert_identical(data_only(picked), data_only(expected))
    assert ds.attrs["study"] == "shape" and ds.attrs["n_replicates"] == 3
    assert ds.attrs["n_failed"] == 0 and ds.attrs["seed"] == 11
    assert json.loads(ds.attrs["grid"]) == GRID and ds.attrs["config"] == '{"note":"test"}'
    assert ds.attrs["units"] == "rad"  # fn's own attrs survive
    assert set(io.PROVENANCE_KEYS) <= set(ds.attrs)


def test_same_seed_same_dataset_other_seed_differs():
    a = run_study(noisy, GRID, 2, seed=3, progress=False)
    b = run_study(noisy, GRID, 2, seed=3, progress=False)
    c = run_study(noisy, GRID, 2, seed=4, progress=False)
    xr.testing.assert_identical(data_only(a), data_only(b))
    assert not np.array_equal(a["fisher"], c["fisher"])


def test_extending_a_grid_keeps_existing_conditions_results():
    small = run_study(noisy, {"kappa": [4.0], "loss": ["mse", "vm"]}, 2, seed=2, progress=False)
    big = run_study(noisy, {"kappa": [8.0, 4.0], "loss": ["vm", "cosine", "mse"]}, 2, seed=2,
                    progress=False)
    xr.testing.assert_identical(data_only(big.sel(kappa=[4.0], loss=["mse", "vm"])),
                                data_only(small))


def test_condition_id_depends_on_values_only():
    assert condition_id({"a": 1, "b": "x"}) == condition_id({"b": "x", "a": 1})
    assert condition_id({"a": 1}) != condition_id({"a": 1.0})
    assert 0 <= condition_id({"a": 1}) < 2**64


def test_empty_grid_gives_replicates_only():
    ds = run_study(functools.partial(_fixed_condition, kappa=2.0), {}, 2, progress=False)
    assert dict(ds.sizes) == {"replicate": 2, "angle": 4}
    assert ds["replicate_seed"].values.tolist() == [replicate_seed(0, condition_id({}), 0),
                                                     replicate_seed(0, condition_id({}), 1)]


def _fixed_condition(condition: dict, replicate: int, seed: int, kappa: float) -> xr.Dataset:
    return noisy({**condition, "kappa": kappa, "loss": "fixed"}, replicate, seed)


def test_torch_global_generator_is_seeded_and_threads_set():
    before_threads = torch.get_num_threads()
    before_state = torch.random.get_rng_state()
    a = run_study(torch_default_rng, {"kappa": [1.0, 2.0]}, 2, progress=False,
                  threads_per_worker=1)
    b = run_study(torch_default_rng, {"kappa": [1.0, 2.0]}, 2, progress=False,
                  threads_per_worker=1)
    xr.testing.assert_identical(data_only(a), data_only(b))
    assert (a["threads"] == 1).all()
    assert not np.array_equal(a["w"].isel(kappa=0, replicate=0), a["w"].isel(kappa=0,
                                                                               replicate=1))
    # the caller's torch settings are left as they were
    assert torch.get_num_threads() == before_threads
    assert torch.equal(torch.random.get_rng_state(), before_state)


def test_two_workers_match_one():
    grid = {"kappa": [1.0, 2.0, 3.0]}
    one = run_study(torch_default_rng, grid, 2, seed=5, progress=False, threads_per_worker=1)
    two = run_study(torch_default_rng, grid, 2, seed=5, n_jobs=2, progress=False,
                    threads_per_worker=1)
    xr.testing.assert_identical(data_only(one), data_only(two))


def test_a_killed_worker_loses_only_unfinished_replicates(caplog):
    grid = {"kappa": [1.0, 2.0, 3.0]}
    with caplog.at_level(logging.ERROR, logger="anglesim.replicates"):
        ds = run_study(crashes, grid, 2, seed=5, n_jobs=2, progress=False, threads_per_worker=1)
    assert ds["failed"].sel(kappa=2.0, replicate=0)
    assert "worker pool stopped" in ds["error"].sel(kappa=2.0, replicate=0).item()
    assert "TerminatedWorkerError" in caplog.text
    # whatever finished is kept, and equals a clean run
    ok = ~ds["failed"]
    assert int(ok.sum()) >= 1
    clean = run_study(torch_default_rng, grid, 2, seed=5, progress=False, threads_per_worker=1)
    xr.testing.assert_identical(data_only(ds["w"].where(ok, drop=True)),
                                data_only(clean["w"].where(ok, drop=True)))


@pytest.mark.slow
def test_dask_backend_matches_sequential():
    distributed = pytest.importorskip("distributed")
    grid = {"kappa": [1.0, 2.0]}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            remote = run_study(torch_default_rng, grid, 2, n_jobs=2, backend="dask",
                               progress=False, threads_per_worker=1)
    local = run_study(torch_default_rng, grid, 2, progress=False, threads_per_worker=1)
    xr.testing.assert_identical(data_only(remote), data_only(local))


def test_progress_bar_shows_counts(capsys):
    run_study(noisy, {"kappa": [1.0], "loss": ["a"]}, 2, progress=True, name="bar")
    err = capsys.readouterr().err
    assert "bar" in err and "done=2" in err and "failed=0" in err


# run_study: validation -------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(n_replicates=0), "n_replicates must be >= 1, got 0"),
    (dict(n_replicates=2.0), "n_replicates must be an integer, got 2.0"),
    (dict(grid={"kappa": []}), "grid axis 'kappa' is empty"),
    (dict(grid={"replicate": [1]}), "grid axis name 'replicate' is reserved"),
    (dict(n_jobs=0), "n_jobs must be a non-zero integer"),
    (dict(seed=-2), "seed must be >= 0, got -2"),
    (dict(name=""), "name must be"),
    (dict(name="../up"), "name must be"),
    (dict(threads_per_worker=0), "threads_per_worker must be >= 1, got 0"),
    (dict(backend="threading"), "backend must be one of ['loky', 'dask']"),
    (dict(config={"x": object()}), "cannot be encoded"),
    (dict(fn=42), "fn must be callable, got 42"),
])
def test_run_study_validates_arguments(kwargs, message):
    args = dict(fn=noisy, grid=GRID, n_replicates=1, progress=False, cache_dir=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        run_study(**args)


# failures --------------------------------------------------------------------------------------


def test_failures_are_recorded_and_others_kept(tmp_path, caplog):
    fn = functools.partial(failing, log_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="anglesim.replicates"):
        ds = run_study(fn, GRID, 2, progress=False)
    bad = ds.sel(loss="mse")
    assert bad["failed"].all() and not ds.sel(loss=["cosine", "vm"])["failed"].any()
    assert ds.attrs["n_failed"] == 4
    assert bad["error"].sel(kappa=4.0, replicate=1).item() == "RuntimeError: diverged at kappa=4.0"
    assert (ds.sel(loss="vm")["error"] == "").all()
    # fills: NaN for floats (integers widened to float), False for bools, "" for strings
    assert bad["fisher"].isnull().all() and ds.sel(loss="vm")["fisher"].notnull().all()
    assert ds["steps"].dtype == np.float64 and bad["steps"].isnull().all()
    assert not bad["good"].any() and (bad["note"] == "").all()
    # the successful replicates are exactly what fn computed
    ok = noisy({"kappa": 1.0, "loss": "vm"}, 1, int(ds["replicate_seed"].sel(
        kappa=1.0, loss="vm", replicate=1)))
    np.testing.assert_array_equal(ds["fisher"].sel(kappa=1.0, loss="vm", replicate=1),
                                  ok["fisher"])
    messages = [r.getMessage() for r in caplog.records]
    assert any("'loss': 'mse'" in m and "diverged" in m for m in messages)


def test_all_failed_gives_only_bookkeeping(tmp_path):
    ds = run_study(functools.partial(failing, log_dir=str(tmp_path)), {"kappa": [1.0],
                   "loss": ["mse"]}, 2, progress=False)
    assert set(ds.data_vars) == set(META)
    assert ds["failed"].all() and ds.attrs["n_failed"] == 2
    assert dict(ds.sizes) == {"kappa": 1, "loss": 1, "replicate": 2}


@pytest.mark.parametrize(("fn", "message"), [
    (returns_array, "fn must return an xarray.Dataset, got ndarray"),
    (uses_reserved, "reserved"),
])
def test_bad_fn_results_are_failures(fn, message):
    ds = run_study(fn, {"kappa": [1.0]}, 1, progress=False)
    assert ds["failed"].all()
    assert message in ds["error"].item()


# cache -----------------------------------------------------------------------------------------


@needs_h5py
def test_cache_skips_finished_replicates(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    first = run_study(fn, GRID, 2, cache_dir=tmp_path / "cache", config={"v": 1},
                      progress=False, name="s")
    assert calls(log) == 12
    files = sorted(p.name for p in (tmp_path / "cache" / "s").iterdir())
    assert len(files) == 12 and all(re.fullmatch(r".+-[0-9a-f]{8}__r[01]\.nc", f) for f in files)
    assert "kappa=4.0,loss=mse-" in " ".join(files)
    second = run_study(fn, GRID, 2, cache_dir=tmp_path / "cache", config={"v": 1},
                       progress=False, name="s")
    assert calls(log) == 12  # nothing recomputed
    xr.testing.assert_identical(data_only(first), data_only(second))
    bigger = {"kappa": [1.0, 4.0, 9.0], "loss": ["cosine", "mse", "vm", "l1"]}
    third = run_study(fn, bigger, 2, cache_dir=tmp_path / "cache", config={"v": 1},
                      progress=False, name="s")
    assert calls(log) == 12 + 2 * (12 - 6)  # only the new conditions ran
    xr.testing.assert_identical(data_only(third.sel(kappa=[1.0, 4.0],
                                                    loss=["cosine", "mse", "vm"])),
                                data_only(first))


@needs_h5py
def test_cache_recomputes_corrupt_and_changed(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    grid = {"kappa": [1.0], "loss": ["cosine", "vm"]}
    run = functools.partial(run_study, fn, grid, 2, cache_dir=tmp_path / "cache",
                            progress=False, name="s")
    first = run(config={"v": 1})
    victim = next((tmp_path / "cache" / "s").glob("*loss=vm*__r1.nc"))
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.warns(CacheWarning, match=re.escape(str(victim))):
        again = run(config={"v": 1})
    assert calls(log) == 4 + 1 and calls(log, "vm-1-*") == 2
    xr.testing.assert_identical(data_only(first), data_only(again))
    assert io.load_dataset(victim)  # rewritten whole

    with pytest.warns(CacheWarning, match="4 cached file.s. .* another config"):
        changed = run(config={"v": 2})
    assert calls(log) == 5 + 4
    assert changed.attrs["config"] == '{"v":2}'
    with pytest.warns(CacheWarning, match="another config"):
        run(config={"v": 2}, seed=1)  # the seed is part of the key too
    assert calls(log) == 9 + 4


@needs_h5py
def test_cache_rejects_other_anglesim_version(tmp_path, monkeypatch):
    import anglesim

    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    run_study(fn, {"kappa": [1.0], "loss": ["a"]}, 1, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(anglesim, "__version__", "99.0")
    with pytest.warns(CacheWarning, match="99.0"):
        run_study(fn, {"kappa": [1.0], "loss": ["a"]}, 1, cache_dir=tmp_path, progress=False)
    assert calls(log) == 2


@needs_h5py
def test_cached_failures_are_skipped_unless_retried(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(failing, log_dir=str(log))
    grid = {"kappa": [1.0], "loss": ["cosine", "mse"]}
    run = functools.partial(run_study, fn, grid, 2, cache_dir=tmp_path / "cache",
                            progress=False, name="s")
    first = run()
    records = sorted((tmp_path / "cache" / "s").glob("*.failed.json"))
    assert len(records) == 2 and calls(log, "mse-*") == 2
    rec = json.loads(records[0].read_text())
    assert rec["condition"] == {"kappa": 1.0, "loss": "mse"} and rec["replicate"] == 0
    assert rec["error"] == "RuntimeError: diverged at kappa=1.0"
    assert "Traceback" in rec["traceback"] and "diverged" in rec["traceback"]
    assert rec["seed"] == int(first["replicate_seed"].sel(kappa=1.0, loss="mse", replicate=0))

    second = run()
    assert calls(log, "mse-*") == 2 and calls(log, "cosine-*") == 2
    xr.testing.assert_identical(data_only(first), data_only(second))

    third = run(retry_failed=True)
    assert calls(log, "mse-*") == 4 and calls(log, "cosine-*") == 2
    assert third["failed"].sel(loss="mse").all()


@needs_h5py
def test_retry_that_succeeds_replaces_the_failure_record(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    grid = {"kappa": [1.0], "loss": ["mse"]}
    cache = tmp_path / "cache"
    run_study(functools.partial(failing, log_dir=str(log)), grid, 1, cache_dir=cache,
              progress=False, name="s")
    assert len(list((cache / "s").glob("*.failed.json"))) == 1
    fixed = run_study(functools.partial(counted, log_dir=str(log)), grid, 1, cache_dir=cache,
                      progress=False, name="s", retry_failed=True)
    assert not fixed["failed"].any()
    assert [p.suffix for p in (cache / "s").iterdir()] == [".nc"]
