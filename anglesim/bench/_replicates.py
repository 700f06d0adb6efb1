"""Section ``replicates``: the quickstart study on one core against all cores.

Wall time of ``anglesim run quickstart`` (its own replicates, in a subprocess, as a user runs
it: start-up, the replicates, saving the Dataset and drawing its figure) with 1 worker and 1
thread against all cores as workers of 1 thread (loky, and a dask LocalCluster), workers ×
threads = cores, and — in full mode — 1 worker with all cores as threads: parallel efficiency
T₁ / (cores · T). Goal: ≥ 0.85. The study is timed through its command line so that the
benchmark does not import the studies; the Datasets the runs save are compared for
bit-identity across the 1-thread runs. A start-up row times a fresh Python importing torch and
anglesim, which every run and every worker pays. Smoke mode skips the dask run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..io import load_dataset
from ._harness import Context, Goal, measure_command

STUDY = "quickstart"

STARTUP = "import anglesim.training, anglesim.fisher, anglesim.replicates, anglesim.io"
"""What every run and every worker imports before its first replicate."""


def study_command(results: str | Path, *options: str) -> list[str]:
    """``python -m anglesim run quickstart --results … --no-cache --quiet OPTIONS``."""
    return [sys.executable, "-m", "anglesim", "run", STUDY, "--results", str(results),
            "--no-cache", "--quiet", *options]


def saved_fisher(results: Path) -> np.ndarray:
    """The ``fisher`` values of the one Dataset a run saved in ``results`` (not its cache)."""
    paths = sorted(results.glob("*.nc"))
    if len(paths) != 1:
        raise RuntimeError(f"expected one saved Dataset in {results}, found "
                           f"{[p.name for p in paths]}")
    return load_dataset(paths[0])["fisher"].values


def bench_replicates(ctx: Context) -> None:
    """Quickstart replicates on one core against all cores (loky and dask)."""
    sz = ctx.sizes
    cores = ctx.cores
    n = str(sz.n_replicates)
    runs: dict[str, list[str]] = {"1 worker × 1 thread": ["--n-jobs", "1", "--threads", "1"]}
    if ctx.mode == "full":  # on a busy machine threads wait for each other: minutes
        runs[f"1 worker × {cores} threads"] = ["--n-jobs", "1", "--threads", str(cores)]
    runs[f"{cores} loky workers × 1 thread"] = ["--n-jobs", str(cores), "--threads", "1"]
    try:
        import distributed  # noqa: F401

        if ctx.mode != "smoke":  # smoke: one parallel run is enough to see that all runs
            runs[f"{cores} dask workers × 1 thread (LocalCluster)"] = [
                "--n-jobs", str(cores), "--threads", "1", "--backend", "dask"]
    except ImportError:
        ctx.log("dask.distributed is not installed: the dask run is skipped")
    if cores < 2:
        runs = {k: v for k, v in runs.items() if k.startswith("1 worker × 1")}
    seconds: dict[str, float] = {}
    results: dict[str, np.ndarray] = {}
    commands: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="anglesim-bench-") as tmp:
        startup = measure_command([sys.executable, "-c", STARTUP])["seconds"]
        for k, (label, options) in enumerate(runs.items()):
            folder = Path(tmp) / f"run{k}"
            cmd = study_command(folder, *sz.replicate_args, "--replicates", n, *options)
            ctx.log(f"  replicates: {label} …")
            run = measure_command(cmd)
            if run["code"] != 0:
                raise RuntimeError(f"the {label} run failed (exit {run['code']}):\n"
                                   f"{run['output'][-2000:]}")
            seconds[label] = run["seconds"]
            results[label] = saved_fisher(folder)
            commands[label] = cmd[2:]
    serial_label = next(iter(runs))
    serial = seconds[serial_label]
    size = " ".join(sz.replicate_args) or "full size"
    for label, s in seconds.items():
        ctx.add("replicates", f"{sz.n_replicates} replicates ({size}), {label}", s, "s",
                note="anglesim run quickstart, end to end")
    ctx.add("replicates", "start-up: a fresh Python importing torch and anglesim", startup,
            "s", note="paid by every run and every worker")
    for label, s in seconds.items():
        if label == serial_label:
            continue
        goal = Goal(">=", 0.85) if "workers" in label else None
        ctx.add("replicates", f"parallel efficiency, {label}", serial / (cores * s), "",
                goal, note=f"speed-up {serial / s:.2f}× on {cores} cores")
    threaded = f"1 worker × {cores} threads"
    loky = f"{cores} loky workers × 1 thread"
    if threaded in seconds and loky in seconds:
        ctx.add("replicates", f"speed-up of {loky} over {threaded}",
                seconds[threaded] / seconds[loky], "×", note="workers × threads = cores in both")
    identical = all(np.array_equal(results[serial_label], r, equal_nan=True)
                    for label, r in results.items() if "× 1 thread" in label)
    ctx.add("replicates", "1-thread runs bit-identical whatever the workers", float(identical),
            "yes=1")
    details: dict[str, Any] = {"seconds": seconds, "size": size, "startup_seconds": startup,
                               "n_replicates": sz.n_replicates, "cores": cores,
                               "commands": commands,
                               "efficiency": "T(1 worker × 1 thread) / (cores × T)"}
    ctx.details["replicates"] = details
