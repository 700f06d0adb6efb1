"""anglesim.replicates on Slurm: the configuration (a file, a dict, the command line), and the
stand-in tiny study run with ``--backend slurm`` on a real Slurm.

The tests marked ``slurm`` need a reachable Slurm (``sudo bash scripts/slurm.sh start`` starts
a one-node one on this machine) and dask-jobqueue, and are skipped with a one-line reason
otherwise. Their studies run in subprocesses (``python -m anglesim run tiny``), whose
environment the Slurm jobs inherit."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from anglesim import io
from anglesim.replicates import SlurmConfig, replicate_jobs, run_study

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny_studies" / "studies"
WORKER_COMMAND = "distributed.cli.dask_worker"


def _slurm_missing() -> str | None:
    """Why the Slurm tests cannot run here (None: they can)."""
    if importlib.util.find_spec("dask_jobqueue") is None:
        return "dask-jobqueue is not installed (pip install 'anglesim[distributed]')"
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return "no Slurm here (no sinfo); start one with `sudo bash scripts/slurm.sh start`"
    try:
        done = subprocess.run([sinfo, "-h", "-o", "%t"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Slurm is not reachable: {exc}"
    states = done.stdout.split()
    if done.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in states):
        said = " ".join((done.stderr or done.stdout).split()) or "no node"
        return f"no Slurm node is up (sinfo: {said}); `sudo bash scripts/slurm.sh start`"
    return None


MISSING = _slurm_missing()
def needs_slurm(test):
    return pytest.mark.slurm(pytest.mark.skipif(MISSING is not None, reason=MISSING or "")(test))


def _config(tmp_path: Path) -> Path:
    """A lab's config file as a user would write it (every job on the loopback interface, so
    the test touches no other address)."""
    path = tmp_path / "slurm.toml"
    path.write_text('[slurm]\nmemory = "2GB"\nwalltime = "00:10:00"\njobs = 1\n'
                    'interface = "lo"\nenv = { ANGLESIM_TEST_MARK = "from the config" }\n')
    return path


def _env(tmp_path: Path, grid: dict, replicates: int, sleep: float) -> dict:
    calls = tmp_path / "calls"
    calls.mkdir(exist_ok=True)
    return {**os.environ, "ANGLESIM_STUDIES": str(TINY), "TINY_GRID": json.dumps(grid),
            "TINY_REPLICATES": str(replicates), "TINY_CALLS": str(calls),
            "TINY_SLEEP": str(sleep), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(TINY.parent),
                                           os.environ.get("PYTHONPATH", "")])}


def _launch(tmp_path: Path, env: dict, results: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "anglesim", "run", "tiny", "--quick",
                             "--results", str(results), "--quiet", *options],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 150) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out + err
    return err


def _jobs() -> dict[str, str]:
    """anglesim's Slurm jobs in the queue: {job id: state}."""
    done = subprocess.run(["squeue", "-h", "-n", "anglesim", "-o", "%i %t"],
                          capture_output=True, text=True, timeout=10)
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def _workers() -> list[int]:
    """Processes running a dask worker (in or out of Slurm jobs)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and WORKER_COMMAND in command:
            found.append(int(proc.name))
    return found


def _assert_torn_down(timeout: float = 30) -> None:
    """No anglesim job left in squeue, no dask worker process left."""
    deadline = time.monotonic() + timeout
    while (_jobs() or _workers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _jobs(), f"Slurm jobs left: {_jobs()}"
    assert not _workers(), f"dask worker processes left: {_workers()}"


def _data_only(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {}
    return out


@needs_slurm
def test_a_study_on_slurm_is_bit_identical_to_loky_and_records_its_jobs(tmp_path):
    env = _env(tmp_path, {"lr": [0.05, 0.1]}, replicates=2, sleep=0)
    slurm = _launch(tmp_path, env, tmp_path / "slurm", "--slurm-config",
                    str(_config(tmp_path)))  # implies --backend slurm
    loky = _launch(tmp_path, env, tmp_path / "loky", "--backend", "loky", "--n-jobs", "2",
                   "--no-cache")
    _finish(slurm)
    _finish(loky)
    on_slurm = io.load_dataset(tmp_path / "slurm" / "tiny_quick.nc")
    on_loky = io.load_dataset(tmp_path / "loky" / "tiny_quick.nc")
    xr.testing.assert_identical(_data_only(on_slurm), _data_only(on_loky))
    assert not on_slurm["failed"].any()

    jobs = replicate_jobs(on_slurm)
    assert jobs.dims == ("lr", "replicate") and all(j.isdigit() for j in jobs.values.ravel())
    (made,) = on_slurm.attrs["replicates_made_by"]
    assert made["backend"] == "slurm" and made["replicates"] == 4
    assert set(made["slurm_jobs"]) == set(jobs.values.ravel())
    # each of those jobs really ran a worker: its output sits beside the study's log
    logs = tmp_path / "slurm" / "cache" / "tiny-quick" / "slurm-logs"
    assert {f"anglesim-{job}.err" for job in made["slurm_jobs"]} <= {p.name for p in
                                                                       logs.iterdir()}
    assert on_loky.attrs["replicates_made_by"][0]["backend"] == "loky"
    assert (replicate_jobs(on_loky) == "").all()
    _assert_torn_down()


@needs_slurm
def test_a_cancelled_job_loses_nothing_and_a_second_launch_waits(tmp_path):
    """scancel of a job mid-study: no finished replicate is computed again, a replacement job
    is submitted, the study completes; a second launch on the same results meanwhile
    computes nothing (the replicates' locks), and ends with the same Dataset."""
    grid = {"lr": [0.05, 0.1, 0.15]}
    env = _env(tmp_path, grid, replicates=3, sleep=2.0)
    results = tmp_path / "r"
    cache = results / "cache" / "tiny-quick"
    first = _launch(tmp_path, env, results, "--backend", "slurm", "--slurm-config",
                    str(_config(tmp_path)), "--jobs", "2")
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and first.poll() is None:
        running = {job for job, state in _jobs().items() if state == "R"}
        seen |= running
        if len(running) == 2 and len(list(cache.glob("*.nc"))) >= 1:
            break
        time.sleep(0.1)
    else:
        first.kill()
        pytest.fail(f"the study did not get going on Slurm: {first.communicate()[1]}")
    second = _launch(tmp_path, env, tmp_path / "r", "--backend", "slurm", "--slurm-config",
                     str(_config(tmp_path)))
    finished = {p.name for p in cache.glob("*.nc")}
    victim = sorted(running)[0]
    subprocess.run(["scancel", victim], check=True, timeout=10)
    while first.poll() is None:  # the adaptive minimum submits a replacement
        seen |= set(_jobs())
        time.sleep(0.2)
    err = _finish(first, timeout=10)
    assert len(seen - {victim}) >= 2, f"no replacement job was submitted: {seen}"
    err2 = _finish(second)
    assert "being computed by another run" in err2

    ds = io.load_dataset(results / "tiny_quick.nc")
    assert not ds["failed"].any(), err
    n = len(grid["lr"]) * 3
    calls = [p.name.rsplit("-", 1)[0] for p in (tmp_path / "calls").glob("*.call")]
    assert len(set(calls)) == n  # every replicate computed
    assert len(calls) <= n + 1  # at most the one the cancelled job was computing, again
    for name in finished:  # nothing finished before the scancel was computed again
        lr, r = name.split("-")[0], name.rsplit("__r", 1)[1].removesuffix(".nc")
        assert calls.count(f"{lr}-r{r}") == 1, name
    assert set(replicate_jobs(ds).values.ravel()) <= seen  # all computed in these jobs
    _assert_torn_down()


@needs_slurm
def test_nothing_slurm_started_is_left():
    _assert_torn_down(timeout=5)


# the configuration (no Slurm needed) -------------------------------------------------------


def test_a_labs_config_file_is_read_and_checked(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[other]\nx = 1\n[slurm]\npartition = "cpu"\ncores = 4\nmemory = "16GB"\n'
                    'walltime = "1-12:00:00"\njobs = 8\nsbatch = ["--qos=normal"]\n'
                    'setup = ["module load python"]\nenv = { PYTHONPATH = "/shared/x" }\n')
    config = SlurmConfig.from_file(path)
    assert (config.partition, config.cores, config.memory, config.walltime, config.jobs) == (
        "cpu", 4, "16GB", "1-12:00:00", 8)
    assert config.sbatch == ("--qos=normal",) and config.env == {"PYTHONPATH": "/shared/x"}
    assert SlurmConfig.of(path) == config == SlurmConfig.of(str(path))
    assert config.updated(cores=2, memory=None).cores == 2  # None keeps the file's value
    assert config.updated(cores=2).memory == "16GB"
    lines = config.prologue(threads=2)
    assert lines[0] == "export MALLOC_ARENA_MAX=1" and "export OMP_NUM_THREADS=2" in lines
    assert "export PYTHONPATH=/shared/x" in lines and lines[-1] == "module load python"
    assert config.workers_per_job(1) == 4 and config.workers_per_job(2) == 2
    with pytest.raises(ValueError, match="threads_per_worker must be at most the cores per "
                                         "Slurm job \\(4\\), got 8"):
        config.workers_per_job(8)


@pytest.mark.parametrize(("text", "message"), [
    ("x = 1\n", "must hold a \\[slurm\\] table, found \\['x'\\]"),
    ("[slurm]\ncores = 0\n", "slurm: cores must be an integer >= 1, got 0"),
    ("[slurm]\nmemory = \"lots\"\n", "slurm: memory must be an amount of memory"),
    ("[slurm]\nwalltime = \"1h\"\n", "slurm: walltime must be a Slurm time limit"),
    ("[slurm]\nqueue = \"cpu\"\n", "slurm: unknown option\\(s\\) \\['queue'\\]"),
    ("[slurm]\nsbatch = \"--qos=x\"\n", "slurm: sbatch must be a list of names"),
    ("[slurm]\nenv = { 1X = \"a\" }\n", "env key must be an environment variable name"),
    ("[slurm\n", "cannot read the Slurm config"),
])
def test_a_bad_config_file_is_one_line_naming_file_and_option(tmp_path, text, message):
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        SlurmConfig.from_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cluster_options_go_with_the_slurm_backend_only():
    def fn(condition, replicate, seed):
        return xr.Dataset()

    with pytest.raises(ValueError, match="cluster must be a Slurm configuration used with "
                                         "backend='slurm' \\(backend is 'loky'\\)"):
        run_study(fn, {}, 1, cluster={"cores": 2})
    with pytest.raises(ValueError, match="cluster must be a SlurmConfig"):
        run_study(fn, {}, 1, n_jobs=2, backend="slurm", cluster=42)
    with pytest.raises(ValueError, match="slurm: jobs must be an integer >= 1, got 0"):
        run_study(fn, {}, 1, n_jobs=2, backend="slurm", cluster={"jobs": 0})
    with pytest.raises(ValueError, match="threads_per_worker must be at most the cores"):
        run_study(fn, {}, 1, n_jobs=2, backend="slurm", threads_per_worker=2)


def test_options_given_later_go_over_a_files(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[slurm]\npartition = "cpu"\nsbatch = ["--qos=a"]\nmemory = "8GB"\n'
                    'env = { A = "0", C = "c" }\n')
    cluster = SlurmConfig.of(path).updated(cores=2, memory=None, sbatch=["--exclusive"],
                                          env={"A": 1, "B": "x=y"}, walltime="02:00:00")
    assert (cluster.partition, cluster.cores, cluster.memory, cluster.walltime) == (
        "cpu", 2, "8GB", "02:00:00")
    assert cluster.sbatch == ("--qos=a", "--exclusive")  # lines are added
    assert cluster.env == {"A": "1", "C": "c", "B": "x=y"}  # variables merged
    with pytest.raises(ValueError, match="slurm: walltime must be a Slurm time limit"):
        cluster.updated(walltime="soon")


@pytest.mark.parametrize(("options", "message"), [
    (["--backend", "loky", "--jobs", "3"], "the Slurm options need --backend slurm, got "
                                          "--backend loky"),
    (["--job-env", "novalue"], "--job-env must be KEY=VALUE, got 'novalue'"),
    (["--memory", "lots"], "slurm: memory must be an amount of memory such as '4GB'"),
])
def test_bad_slurm_options_on_the_command_line_are_one_line(tiny, capsys, options, message):
    from anglesim.cli import main

    assert main(["run", "tiny", "--results", str(tiny / "r"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tiny / "calls").exists() or not list((tiny / "calls").iterdir())
