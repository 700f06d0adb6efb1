"""Resume after SIGKILL: a study killed mid-replicate recomputes only the replicates that had
not finished, and ends with the same Dataset as an uninterrupted run.

The study runs in a subprocess (`python -m anglesim run tiny`, the stand-in study in
tests/tiny_studies) that is killed with SIGKILL, with its worker processes, while a replicate
is in progress; the rerun and an uninterrupted reference run in this process."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import xarray as xr

from anglesim import io
from anglesim.cli import main
from anglesim.replicates import CacheWarning

TINY = Path(__file__).resolve().parent / "tiny_studies" / "studies"
GRID = {"lr": [0.05, 0.1]}
REPLICATES = 4


def _env(calls: Path, sleep: float) -> dict:
    calls.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ANGLESIM_STUDIES": str(TINY), "TINY_GRID": json.dumps(GRID),
            "TINY_REPLICATES": str(REPLICATES), "TINY_CALLS": str(calls),
            "TINY_SLEEP": str(sleep), "PYTHONUNBUFFERED": "1"}


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


def _run_and_kill(tmp_path: Path, n_jobs: int) -> tuple[int, int, Path]:
    """Start the study, SIGKILL it (and its workers) once at least two replicates are cached
    and more replicates have started than finished. Returns (replicates finished, replicates
    started) at the kill, and the results folder."""
    results = tmp_path / "results"
    cache = results / "cache" / "tiny-full"
    calls = tmp_path / "calls-killed"
    proc = subprocess.Popen([sys.executable, "-m", "anglesim", "run", "tiny", "--n-jobs",
                             str(n_jobs), "--results", str(results), "--quiet"],
                            env=_env(calls, sleep=0.4), cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            finished = _count(cache, "*.nc")
            if finished >= 2 and _count(calls, "*.call") > finished:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the study did not get far enough to be killed: {proc.stderr.read()}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the main process and its loky workers
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # let killed workers go
    return _count(cache, "*.nc"), _count(calls, "*.call"), results


def _run_here(results: Path, calls: Path, monkeypatch) -> xr.Dataset:
    """Run the study in this process (the repository's own `studies` package is taken out of
    sys.modules meanwhile, so `studies.tiny` resolves to the stand-in); return its Dataset."""
    for key, value in _env(calls, sleep=0).items():
        monkeypatch.setenv(key, value)
    for name in [m for m in sys.modules if m == "studies" or m.startswith("studies.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(TINY.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # nothing half-written may be found
        assert main(["run", "tiny", "--n-jobs", "1", "--results", str(results), "--quiet"]) == 0
    return io.load_dataset(results / "tiny.nc")


def _data_only(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {}
    return out


def _check_resume(tmp_path: Path, monkeypatch, n_jobs: int) -> None:
    total = len(GRID["lr"]) * REPLICATES
    finished, started, results = _run_and_kill(tmp_path, n_jobs)
    assert 2 <= finished < total and started > finished  # killed mid-replicate
    assert not (results / "tiny.nc").exists()

    calls = tmp_path / "calls-resumed"
    resumed = _run_here(results, calls, monkeypatch)
    assert _count(calls, "*.call") == total - finished  # only the unfinished ones ran
    assert not resumed["failed"].any()
    reference = _run_here(tmp_path / "reference", tmp_path / "calls-reference", monkeypatch)
    xr.testing.assert_identical(_data_only(resumed), _data_only(reference))


def test_sigkill_mid_replicate_then_rerun_recomputes_only_unfinished(tmp_path, monkeypatch):
    _check_resume(tmp_path, monkeypatch, n_jobs=1)


@pytest.mark.slow
def test_sigkill_with_two_loky_workers(tmp_path, monkeypatch):
    _check_resume(tmp_path, monkeypatch, n_jobs=2)
