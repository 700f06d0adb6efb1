"""anglesim.replicates: seeds, grids, parallel runs, the per-replicate cache and failures."""

import functools
import json
import logging
import os
import re
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from markers import needs_h5py

from anglesim import io
from anglesim.replicates import (
    FAILURES_ATTR,
    CacheWarning,
    condition_id,
    condition_key,
    configure_malloc,
    failure_table,
    iter_conditions,
    replicate_jobs,
    replicate_seed,
    run_study,
    study_status,
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


def crashes(condition: dict, replicate: int, seed: int, how: str = "exit",
            where: tuple = (2.0,)) -> xr.Dataset:
    """Kills its worker process for replicate 0 of the kappas ``where`` (only ever run with
    n_jobs=2): ``os._exit(3)``, SIGKILL (as the out-of-memory killer does) or a segfault."""
    if condition["kappa"] in where and replicate == 0:
        if how == "exit":
            os._exit(3)
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "segfault":
            import ctypes

            ctypes.string_at(0)  # reads address 0: SIGSEGV
    return torch_default_rng(condition, replicate, seed)


_HELD: list = []


def grows_memory(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """Keeps 320 MB alive in its worker from the second call on, as a long replicate's caches
    can; loky measures a worker's size after its first task and replaces it once it has grown
    past 300 MB, at most once a second, so each call lasts a little over a second."""
    import time

    _HELD.append(np.ones(40_000_000) if _HELD else None)  # nothing on the first call
    time.sleep(1.1)
    return torch_default_rng(condition, replicate, seed)


def tiny_training(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """A few SGD steps of a tiny MLP on gratings: real float32 training, whose last bits
    depend on the torch thread count."""
    from anglesim.distributions import Uniform
    from anglesim.models import reference_mlp
    from anglesim.stimuli import GratingSpec
    from anglesim.training import Phase, train

    spec = GratingSpec(size=8, frequency=2.0, phase=0.0, contrast=1.0, noise_std=1.0)
    torch.manual_seed(seed)
    model = reference_mlp(image_size=8, hidden=(32, 8))
    phase = Phase("p", Uniform(), spec, loss="cosine", optimizer="adam", lr=condition["kappa"],
                  epochs=2, steps_per_epoch=4, batch_size=64, eval_angles=4, eval_repeats=1)
    history = train(model, [phase], seed)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    return xr.Dataset({"weights": ("w", weights), "loss": ("epoch", history["train_loss"].values),
                       "threads": ((), torch.get_num_threads())})


def page_faults_of_reuse(condition: dict, replicate: int, seed: int) -> xr.Dataset:
    """Minor page faults of 8 rounds of making two 16 MiB tensors, their sum, and freeing them
    (the pattern of a loop over chunks of Jacobians)."""
    import resource

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    n = 4 * 2**20  # float32: 16 MiB
    (torch.ones(n) + torch.ones(n)).sum()  # the first round may grow the heap
    before = faults()
    for _ in range(8):
        x, y = torch.ones(n), torch.ones(n)  # torch.ones touches every page
        (x + y).sum()
        del x, y
    return xr.Dataset({"faults": ((), faults() - before)})


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
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 0, got "
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
    expected = io.describe(noisy(cond, 2, seed))  # with the units a saved file would carry
    picked = ds.drop_vars(META).sel(kappa=4.0, loss="mse", replicate=2, drop=True)
    xr.testing.assert_identical(data_only(picked), data_only(expected))
    assert ds.attrs["study"] == "shape" and ds.attrs["n_replicates"] == 3
    assert ds.attrs["n_failed"] == 0 and ds.attrs["seed"] == 11
    assert json.loads(ds.attrs["grid"]) == GRID and ds.attrs["config"] == '{"note":"test"}'
    assert ds.attrs["units"] == "rad"  # fn's own attrs survive
    assert set(io.PROVENANCE_KEYS) - {"code_version", "code_origin"} <= set(ds.attrs)
    assert ds["angle"].attrs == {"units": "rad", "long_name": "grating orientation θ"}
    assert ds["replicate"].attrs == {"units": "1", "long_name": "replicate index"}
    assert ds["kappa"].attrs == {"long_name": "grid axis kappa"}
    for var in META:  # the runner labels what it adds (test_published asks it of every file)
        assert ds[var].attrs["units"] == "1" and ds[var].attrs["long_name"]


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


def test_a_worker_loky_replaces_for_its_memory_raises_no_warning_and_loses_nothing(recwarn):
    pytest.importorskip("psutil")  # loky measures its workers' memory only with psutil
    ds = run_study(grows_memory, {"kappa": [1.0, 2.0, 3.0]}, 2, seed=5, n_jobs=2,
                   progress=False, threads_per_worker=1)
    assert not bool(ds["failed"].any())
    assert not [w for w in recwarn if "worker stopped" in str(w.message)]


@pytest.mark.parametrize("how", ["exit", "sigkill",
                                 pytest.param("segfault", marks=pytest.mark.slow)])
def test_a_worker_that_dies_fails_only_its_own_replicate(tmp_path, caplog, how):
    grid = {"kappa": [1.0, 2.0]}
    fn = functools.partial(crashes, how=how)
    with caplog.at_level(logging.WARNING, logger="anglesim.replicates"):
        ds = run_study(fn, grid, 2, seed=5, n_jobs=2, progress=False, threads_per_worker=1,
                       cache_dir=tmp_path, name="c")
    expected = {"exit": "exited with code 3", "sigkill": "was killed by signal SIGKILL (-9)",
                "segfault": "was killed by signal SIGSEGV (-11)"}[how]
    assert ds["failed"].sum() == 1 and ds["failed"].sel(kappa=2.0, replicate=0)
    assert ds["error"].sel(kappa=2.0, replicate=0).item() == (
        f"WorkerDied: the worker process computing this replicate {expected}")
    assert "a worker process died" in caplog.text
    # every other replicate completed, and equals a clean run
    clean = run_study(torch_default_rng, grid, 2, seed=5, progress=False, threads_per_worker=1)
    ok = ~ds["failed"]
    xr.testing.assert_identical(data_only(ds["w"].where(ok)), data_only(clean["w"].where(ok)))
    # the culprit's failure is recorded, so a rerun makes progress: it computes nothing
    assert len(list((tmp_path / "c").glob("*.failed.json"))) == 1
    assert len(list((tmp_path / "c").glob("*.nc"))) == 3
    again = run_study(fn, grid, 2, seed=5, n_jobs=2, progress=False, threads_per_worker=1,
                      cache_dir=tmp_path, name="c")
    xr.testing.assert_identical(data_only(again), data_only(ds))


@pytest.mark.slow
def test_two_dying_replicates_are_both_identified():
    grid = {"kappa": [1.0, 2.0, 3.0, 4.0]}
    ds = run_study(functools.partial(crashes, how="exit", where=(2.0, 4.0)), grid, 1, seed=5,
                   n_jobs=2, progress=False)
    assert ds["failed"].values.ravel().tolist() == [False, True, False, True]


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
    (dict(n_replicates=0), "n_replicates must be an integer >= 1, got 0"),
    (dict(n_replicates=2.0), "n_replicates must be an integer >= 1, got 2.0"),
    (dict(grid={"kappa": []}), "grid axis 'kappa' is empty"),
    (dict(grid={"replicate": [1]}), "grid axis name 'replicate' is reserved"),
    (dict(n_jobs=0), "n_jobs must be a non-zero integer"),
    (dict(seed=-2), "seed must be an integer >= 0, got -2"),
    (dict(name=""), "name must be"),
    (dict(name="../up"), "name must be"),
    (dict(threads_per_worker=0), "threads_per_worker must be an integer >= 1, got 0"),
    (dict(backend="threading"), "backend must be one of 'loky', 'dask', 'slurm', got 'threading'"),
    (dict(config={"x": object()}), "cannot be encoded"),
    (dict(fn=42), "fn must be a callable, got 42"),
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
    files = sorted(p.name for p in (tmp_path / "cache" / "s").iterdir()
                   if p.name != "study.log" and p.is_file())
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
def test_resumed_study_says_which_revision_cpu_and_backend_made_each_replicate(tmp_path,
                                                                             monkeypatch):
    import importlib

    prov_module = importlib.import_module("anglesim.io._provenance")
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    run = functools.partial(run_study, fn, cache_dir=tmp_path / "cache", config={"v": 1},
                            progress=False, name="s")
    monkeypatch.setattr(prov_module, "git_revision", lambda _: "a" * 40)
    monkeypatch.setattr(prov_module, "cpu_model", lambda: "CPU one")
    first = run({"kappa": [1.0], "loss": ["a", "b"]}, 2)
    assert first.attrs["replicates_made_by"] == [
        {"git_rev": "a" * 40, "cpu": "CPU one", "backend": "this process", "replicates": 4,
         "first": first.attrs["created"], "last": first.attrs["created"]}]

    monkeypatch.setattr(prov_module, "git_revision", lambda _: "b" * 40)
    monkeypatch.setattr(prov_module, "cpu_model", lambda: "CPU two")
    second = run({"kappa": [1.0], "loss": ["a", "b", "c"]}, 2, n_jobs=2)  # 4 cached, 2 new
    assert calls(log) == 6
    assert second.attrs["git_rev"] == "b" * 40 and second.attrs["cpu"] == "CPU two"
    made = second.attrs["replicates_made_by"]
    assert [(m["git_rev"][0], m["cpu"], m["backend"], m["replicates"]) for m in made] == [
        ("a", "CPU one", "this process", 4), ("b", "CPU two", "loky", 2)]
    assert (replicate_jobs(second) == "").all() and "slurm_jobs" not in made[0]
    assert made[0]["first"] <= made[0]["last"] <= made[1]["first"] == second.attrs["created"]
    saved = tmp_path / "s.nc"
    io.save_dataset(second, saved)
    assert io.load_dataset(saved).attrs["replicates_made_by"] == made  # survives a file


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
    assert sorted(p.suffix for p in (cache / "s").iterdir() if p.is_file()) == [".log", ".nc"]


# determinism across n_jobs and backends, threads, malloc ---------------------------------------


def test_real_training_is_bit_identical_whatever_n_jobs():
    grid = {"kappa": [0.01, 0.02]}
    one = run_study(tiny_training, grid, 2, seed=7, progress=False)
    assert (one["threads"] == 1).all()  # the default is fixed, not derived from n_jobs
    for n_jobs in (2, -1):
        other = run_study(tiny_training, grid, 2, seed=7, n_jobs=n_jobs, progress=False)
        xr.testing.assert_identical(data_only(one), data_only(other))
    # an explicit thread count reaches every task
    two_threads = run_study(tiny_training, grid, 2, seed=7, threads_per_worker=2,
                            progress=False)
    assert (two_threads["threads"] == 2).all()


def test_auto_threads_fill_the_cores():
    auto = run_study(torch_default_rng, {"kappa": [1.0]}, 1, threads_per_worker="auto",
                     progress=False)
    assert auto["threads"].item() == joblib_cpu_count()
    with pytest.raises(ValueError, match="threads_per_worker must be an integer >= 1, got 0"):
        run_study(noisy, GRID, 1, threads_per_worker=0, progress=False)


def joblib_cpu_count() -> int:
    import joblib

    return joblib.cpu_count()


@pytest.mark.skipif(not configure_malloc(), reason="malloc tuning needs Linux with glibc")
def test_tasks_reuse_freed_memory_instead_of_faulting_it_in_again():
    ds = run_study(page_faults_of_reuse, {"kappa": [1.0]}, 1, n_jobs=2, progress=False)
    pages = 16 * 2**20 // 4096
    # untuned, glibc maps and unmaps these blocks each round: measured 53 000 faults (3 tensors
    # × 4096 pages × 8 rounds, less some reuse); tuned, the heap keeps them: measured 8 000
    assert ds["faults"].item() < 8 * pages


def test_dask_local_cluster_in_threads_matches_loky():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            remote = run_study(noisy, GRID, 2, n_jobs=2, backend="dask", progress=False)
    local = run_study(noisy, GRID, 2, n_jobs=2, progress=False)
    xr.testing.assert_identical(data_only(remote), data_only(local))


def test_dask_cluster_by_scheduler_address_gives_loky_results(tmp_path):
    """Two worker processes reached by address (as on a real cluster), real training, each
    replicate cached by the dask worker that computed it."""
    distributed = pytest.importorskip("distributed")
    grid = {"kappa": [0.01, 0.02]}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = run_study(tiny_training, grid, 2, seed=7, n_jobs=2, backend="dask",
                           scheduler=cluster.scheduler_address, progress=False,
                           cache_dir=tmp_path, name="d")
    assert len(list((tmp_path / "d").glob("*.nc"))) == 4
    local = run_study(tiny_training, grid, 2, seed=7, n_jobs=2, progress=False)
    xr.testing.assert_identical(data_only(remote), data_only(local))


def test_scheduler_needs_the_dask_backend():
    with pytest.raises(ValueError, match="scheduler must be a dask scheduler address used with "
                                         "backend='dask'"):
        run_study(noisy, GRID, 1, scheduler="tcp://127.0.0.1:1", progress=False)


def test_unreachable_scheduler_is_a_one_line_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("anglesim.replicates._backends.DASK_CONNECT_TIMEOUT", 1.0)
    with pytest.raises(ValueError, match="cannot connect to the dask scheduler"):
        run_study(noisy, {"kappa": [1.0], "loss": ["a"]}, 2, n_jobs=2, backend="dask",
                  scheduler="tcp://127.0.0.1:9", progress=False)


# failure table, log, progress -------------------------------------------------------------------


@needs_h5py
def test_failure_table_survives_saving(tmp_path):
    fn = functools.partial(failing, log_dir=str(tmp_path))
    ds = run_study(fn, GRID, 2, seed=3, progress=False)
    table = failure_table(ds)
    assert list(table.columns) == ["kappa", "loss", "replicate", "seed", "error", "traceback"]
    assert len(table) == 4 and (table["loss"] == "mse").all()
    pairs = sorted(zip(table["kappa"], table["replicate"], strict=True))
    assert pairs == [(1.0, 0), (1.0, 1), (4.0, 0), (4.0, 1)]
    for _, row in table.iterrows():
        assert row["seed"] == ds["replicate_seed"].sel(kappa=row["kappa"], loss="mse",
                                                        replicate=row["replicate"]).item()
        assert row["error"] == f"RuntimeError: diverged at kappa={row['kappa']}"
        assert "Traceback" in row["traceback"] and "in failing" in row["traceback"]
    loaded = io.load_dataset(io.save_dataset(ds, tmp_path / "s.nc"))
    assert loaded.attrs[FAILURES_ATTR] == ds.attrs[FAILURES_ATTR]
    assert failure_table(loaded).equals(table)
    clean = run_study(noisy, GRID, 1, progress=False)
    assert clean.attrs[FAILURES_ATTR] == [] and failure_table(clean).empty
    with pytest.raises(ValueError, match="made by run_study"):
        failure_table(xr.Dataset())


@needs_h5py
def test_a_nan_loss_is_a_recorded_failure(tmp_path):
    ds = run_study(tiny_training, {"kappa": [0.01, 1e30]}, 1, cache_dir=tmp_path,
                   progress=False, name="nan")
    assert ds["failed"].values.tolist() == [[False], [True]]
    row = failure_table(ds).iloc[0]
    assert row["kappa"] == 1e30
    assert row["error"].startswith("FloatingPointError: loss became nan")
    record = json.loads(next((tmp_path / "nan").glob("*.failed.json")).read_text())
    assert record["error"] == row["error"] and record["traceback"] == row["traceback"]


@needs_h5py
def test_one_log_file_per_study(tmp_path):
    fn = functools.partial(failing, log_dir=str(tmp_path))
    grid = {"kappa": [1.0], "loss": ["cosine", "mse"]}
    ds = run_study(fn, grid, 2, cache_dir=tmp_path / "cache", progress=False, name="s")
    log_path = tmp_path / "cache" / "s" / "study.log"
    assert ds.attrs["log_file"] == "cache/s/study.log"  # relative to the results folder
    text = log_path.read_text()
    assert "2 of 4 replicates failed" in text
    assert text.count(" done in ") == 2  # one line per computed replicate, with its time
    assert text.count("Traceback (most recent call last)") == 2
    assert "manager time per replicate" in text
    run_study(fn, grid, 2, cache_dir=tmp_path / "cache", progress=False, name="s")
    again = log_path.read_text()
    assert again.startswith(text)  # appended, not replaced
    assert "recorded earlier as failed" in again[len(text):]
    assert list((tmp_path / "cache").glob("*/*.log")) == [log_path]
    run_study(fn, grid, 1, cache_dir=tmp_path / "cache", progress=False, name="other")
    assert len(list((tmp_path / "cache").glob("*/*.log"))) == 2


def test_log_file_without_cache(tmp_path):
    path = tmp_path / "run.log"
    ds = run_study(noisy, {"kappa": [1.0], "loss": ["a"]}, 2, progress=False, log_file=path)
    assert ds.attrs["log_file"] == "run.log"  # no machine path
    assert path.read_text().count(" done in ") == 2


@needs_h5py
def test_progress_bar_shows_done_failed_and_eta(tmp_path, capsys):
    fn = functools.partial(failing, log_dir=str(tmp_path))
    grid = {"kappa": [1.0], "loss": ["cosine", "mse"]}
    run_study(fn, grid, 2, progress=True, name="bar", cache_dir=tmp_path / "c")
    err = capsys.readouterr().err
    assert re.search(r"bar: 4/4 \|.*\| \[\d\d:\d\d, ETA 00:00, done=4, failed=2, cached=0\]",
                     err), err
    # a resumed run starts the bar at what is cached, so its ETA counts computed ones only
    run_study(fn, {"kappa": [1.0, 2.0], "loss": ["cosine", "mse"]}, 2, progress=True,
              name="bar", cache_dir=tmp_path / "c")
    err = capsys.readouterr().err
    assert "bar: 4/8 |" in err and "done=8, failed=4, cached=4" in err


# bad input, corrupt files, status --------------------------------------------------------------


@needs_h5py
def test_unwritable_cache_dir_is_a_clear_error_and_deletes_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(ValueError, match=re.escape(f"cache_dir {str(blocker)!r} is not "
                                                   f"writable")):
        run_study(noisy, GRID, 1, cache_dir=blocker, progress=False)
    assert blocker.read_text() == "keep me"
    if os.geteuid() == 0:
        return  # root writes through permission bits; the rest needs an ordinary user
    cache = tmp_path / "cache"
    run_study(noisy, GRID, 1, cache_dir=cache, progress=False, name="s")
    before = sorted(p.name for p in (cache / "s").iterdir())
    (cache / "s").chmod(0o500)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            run_study(noisy, GRID, 1, cache_dir=cache, progress=False, name="s")
    finally:
        (cache / "s").chmod(0o700)
    assert sorted(p.name for p in (cache / "s").iterdir()) == before


@needs_h5py
def test_checksum_mismatch_is_detected_kept_aside_and_recomputed(tmp_path):
    import h5py

    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(counted, log_dir=str(log))
    grid = {"kappa": [1.0], "loss": ["cosine", "vm"]}
    first = run_study(fn, grid, 2, cache_dir=tmp_path / "c", progress=False, name="s")
    victim = next((tmp_path / "c" / "s").glob("*loss=vm*__r0.nc"))
    with h5py.File(victim, "r+") as f:  # a valid netCDF file whose data changed
        f["fisher"][0] = 123.0
    with pytest.warns(CacheWarning, match=re.escape(f"{victim} cannot be used")):
        again = run_study(fn, grid, 2, cache_dir=tmp_path / "c", progress=False, name="s")
    assert calls(log) == 4 + 1 and calls(log, "vm-0-*") == 2
    xr.testing.assert_identical(data_only(first), data_only(again))
    kept = victim.with_name(victim.name + ".corrupt")
    assert kept.exists() and "is corrupted" in (tmp_path / "c" / "s" / "study.log").read_text()
    with h5py.File(kept, "r") as f:
        assert f["fisher"][0] == 123.0


@needs_h5py
def test_status_reports_without_running_or_changing_anything(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    fn = functools.partial(failing, log_dir=str(log))
    grid = {"kappa": [1.0], "loss": ["cosine", "mse", "vm"]}
    kw = dict(cache_dir=tmp_path / "c", name="s", config={"v": 1})
    empty = study_status(grid, 2, **kw)
    assert (len(empty.cached), len(empty.failed), len(empty.missing)) == (0, 0, 6)
    assert not (tmp_path / "c").exists()  # nothing created
    run_study(fn, {"kappa": [1.0], "loss": ["cosine", "mse"]}, 2, progress=False, **kw)
    folder = tmp_path / "c" / "s"
    victim = next(folder.glob("*loss=cosine*__r1.nc"))
    victim.write_bytes(victim.read_bytes()[:100])
    snapshot = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()
                if p.is_file()}
    n_calls = calls(log)

    status = study_status(grid, 2, **kw)
    assert status.total == 6
    assert status.cached == [({"kappa": 1.0, "loss": "cosine"}, 0)]
    assert [(f["condition"]["loss"], f["replicate"]) for f in status.failed] == [("mse", 0),
                                                                                 ("mse", 1)]
    assert status.failed[0]["error"] == "RuntimeError: diverged at kappa=1.0"
    assert status.missing == [({"kappa": 1.0, "loss": "cosine"}, 1),
                              ({"kappa": 1.0, "loss": "vm"}, 0),
                              ({"kappa": 1.0, "loss": "vm"}, 1)]
    assert [p[:2] for p in status.problems] == [("corrupt", victim.name)]
    text = status.summary()
    assert "6 replicates: 1 cached, 2 failed, 3 missing" in text and "1 corrupt file" in text
    # another config: everything stored is stale, so missing
    other = study_status(grid, 2, cache_dir=tmp_path / "c", name="s", config={"v": 2})
    assert len(other.missing) == 6
    assert sorted(p[0] for p in other.problems) == ["corrupt", "stale", "stale", "stale"]
    assert calls(log) == n_calls
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()
            if p.is_file()} == snapshot
