"""Running the benchmark: its sections in order, the command line, the JSON report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._fisher import bench_fisher
from ._fisher_curve import bench_fisher_curve
from ._harness import MODES, SIZES, Context, format_table, machine_info, torch_threads
from ._quickstart import bench_quickstart
from ._render import bench_render
from ._replicates import bench_replicates
from ._resnet_rows import bench_resnet
from ._solvers import bench_solvers
from ._train import bench_train

BENCHES: dict[str, Callable[[Context], None]] = {
    "render": bench_render,
    "train": bench_train,
    "fisher": bench_fisher,
    "fisher_curve": bench_fisher_curve,
    "solvers": bench_solvers,
    "resnet": bench_resnet,
    "replicates": bench_replicates,
    "quickstart": bench_quickstart,
}
"""Every section's function, in the order they run."""

SECTIONS = tuple(BENCHES)
"""The benchmark's sections, in the order they run (``--only`` picks some)."""

IN_PROCESS = ("render", "train", "fisher", "fisher_curve", "solvers", "resnet")
"""Sections timed in this process with ``--threads`` torch threads (the others run
subprocesses with their own workers)."""


def run_benchmarks(mode: str = "full", only: Sequence[str] | None = None,
                   threads: int = 1, log: Callable[[str], None] = print,
                   device: str = "cpu") -> dict[str, Any]:
    """Run the benchmark's sections (all, or ``only``) in ``mode``; return the report dict.

    The report holds ``machine`` (:func:`~anglesim.bench._harness.machine_info`), ``mode``,
    ``rows`` (one dict per table line: section, measure, value, unit, goal, met, verdict,
    note), ``details`` (raw timings, errors and profiles per section), ``seconds`` per section
    and the load average at the end. The in-process sections (`IN_PROCESS`) run with
    ``threads`` torch threads (1, as each study worker does, by default); the solvers and
    resnet sections compute on ``device`` ("cpu", or e.g. "cuda" for the GPU rows).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    chosen = list(SECTIONS) if not only else list(only)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    import joblib

    from ..replicates import configure_malloc

    configure_malloc()  # as every study worker does
    from ..data import resolve_device

    ctx = Context(mode=mode, sizes=SIZES[mode], threads=threads, cores=joblib.cpu_count(),
                  log=log, device=str(resolve_device(device)))
    report: dict[str, Any] = {"benchmark": "anglesim bench", "mode": mode, "device": ctx.device,
                              "machine": machine_info(threads), "seconds": {}}
    if ctx.device.startswith("cuda"):
        import torch

        report["machine"]["gpu"] = torch.cuda.get_device_name(torch.device(ctx.device))
    for name in SECTIONS:
        if name not in chosen:
            continue
        log(f"[{name}] …")
        started = time.perf_counter()
        with torch_threads(threads):
            BENCHES[name](ctx)
        report["seconds"][name] = time.perf_counter() - started
    try:
        report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        report["load_average_at_end"] = None
    report["rows"] = [r.to_json() for r in ctx.rows]
    report["details"] = ctx.details
    return report


def build_parser() -> argparse.ArgumentParser:
    """The options of ``anglesim bench`` / ``python -m anglesim.bench``."""
    from . import __doc__ as package_doc

    p = argparse.ArgumentParser(prog="anglesim bench",
                                description=(package_doc or "").split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="reduced sizes, a few minutes (fisher_curve, replicates and "
                           "quickstart not judged)")
    size.add_argument("--smoke", action="store_true",
                      help="smallest sizes, only to check that everything runs (tests)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the numbers, with the machine's description, as JSON")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION",
                   help=f"run only these sections ({', '.join(SECTIONS)})")
    p.add_argument("--device", default="cpu",
                   help="device of the solvers and resnet sections (default cpu; e.g. cuda)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the in-process sections (default 1, as each "
                        "study worker uses)")
    return p


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments; print the table; write JSON if asked."""
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    report = run_benchmarks(mode, args.only, args.threads,
                            log=lambda s: print(s, file=sys.stderr, flush=True),
                            device=args.device)
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        print(f"json: {args.json}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    """``anglesim bench [--quick | --smoke] [--json PATH] [--only …] [--threads N]
    [--device D]``."""
    args = build_parser().parse_args(argv)
    try:
        return run_from_args(args)
    except ValueError as err:
        print(f"anglesim bench: error: {err}", file=sys.stderr)
        return 2
