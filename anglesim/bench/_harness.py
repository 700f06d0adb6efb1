"""The benchmark's harness: sizes per mode, rows and goals, interleaved timing, peak memory,
the machine's description, and the table.

Every figure of ``anglesim bench`` is a ratio of two timings taken in the same run, interleaved
(A, B, A, B, … keeping the best of each, :func:`race`), so that it holds on a noisy shared
machine where absolute timings do not.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODES = ("smoke", "quick", "full")


# --------------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is in one mode."""

    render_batch: int
    render_sizes: tuple[int, ...]
    rounds: int  # interleaved timing rounds; the best of each is kept
    min_seconds: float  # shortest single timed measurement (calls are repeated to reach it)
    matmul_n: int  # side of the square float32 matmul that measures the peak
    train_batch: int
    fisher_train_steps: int  # training steps of the CNN before its FI is measured
    fisher_angles: int
    fd_steps: tuple[tuple[str, float], ...]  # finite-difference variants (dtype, pixel step)
    curve_angles: int  # fisher_curve: angles of the FI curve (divides curve_savgol's n_dense)
    curve_savgol: dict  # savgol_fisher's counts
    curve_truth_trials: int  # ground truth: trials per side per angle
    curve_fast_trials: tuple[int, ...]  # the fast estimator's trial counts, smallest first
    curve_train_steps: int
    replicate_args: tuple[str, ...]  # replicates: options of `anglesim run quickstart`
    n_replicates: int
    quickstart_args: tuple[str, ...]  # quickstart: options of `anglesim quickstart`
    solver_sizes: tuple[int, ...]  # solvers: image sizes P of the scaled default CNN
    solver_exact_max: int  # solvers: the largest P the float32 exact solver runs at (memory)
    solver_krylov_max: int  # solvers: the largest P every layer is also timed with Krylov
    solver_angles: int
    resnet_size: int  # resnet: image size P of the 3-channel gratings
    resnet_width: int  # resnet: channels of the first stage (64 for ResNet-18)
    resnet_angles: int
    resnet_train_steps: int  # resnet: steps of the briefly trained network (batch 16)
    resnet_solver: str = "krylov"  # resnet: the propagated solver timed ("exact" only if tiny)
    unjudged: frozenset[str] = frozenset()  # sections whose sizes cannot judge their goals


SIZES: dict[str, Sizes] = {
    "full": Sizes(
        render_batch=256, render_sizes=(32, 64), rounds=7, min_seconds=0.05, matmul_n=2048,
        train_batch=256, fisher_train_steps=400, fisher_angles=8,
        fd_steps=(("float32", 1e-2), ("float32", 1e-3), ("float64", 1e-6)),
        curve_angles=100,
        curve_savgol=dict(n_dense=10_000, n_cov_angles=500, n_cov_samples=500, window=501),
        curve_truth_trials=2_000, curve_fast_trials=(25, 50, 100, 200, 400, 800),
        curve_train_steps=600, replicate_args=(), n_replicates=4,
        quickstart_args=(),
        solver_sizes=(32, 64, 96, 128, 224), solver_exact_max=64, solver_krylov_max=128,
        solver_angles=1, resnet_size=224, resnet_width=64, resnet_angles=1,
        resnet_train_steps=50,
    ),
    "quick": Sizes(
        render_batch=256, render_sizes=(32, 64), rounds=4, min_seconds=0.02, matmul_n=1024,
        train_batch=256, fisher_train_steps=100, fisher_angles=2,
        fd_steps=(("float32", 1e-2), ("float64", 1e-6)),
        curve_angles=20,
        curve_savgol=dict(n_dense=2_000, n_cov_angles=100, n_cov_samples=100, window=101),
        curve_truth_trials=1_000, curve_fast_trials=(10, 25, 50, 100),
        curve_train_steps=100, replicate_args=("--quick",), n_replicates=4,
        quickstart_args=("--quick",),
        solver_sizes=(32, 64, 128), solver_exact_max=64, solver_krylov_max=64,
        solver_angles=1, resnet_size=64, resnet_width=64, resnet_angles=1,
        resnet_train_steps=10,
        unjudged=frozenset({"replicates", "quickstart", "fisher_curve"}),
    ),
    "smoke": Sizes(
        render_batch=32, render_sizes=(32,), rounds=2, min_seconds=0.002, matmul_n=256,
        train_batch=256, fisher_train_steps=5, fisher_angles=1,
        fd_steps=(("float64", 1e-6),),
        curve_angles=10,
        curve_savgol=dict(n_dense=200, n_cov_angles=10, n_cov_samples=20, window=21),
        curve_truth_trials=100, curve_fast_trials=(10, 25),
        curve_train_steps=5, replicate_args=("--quick",), n_replicates=2,
        quickstart_args=("--quick", "--replicates", "1"),
        solver_sizes=(12, 16), solver_exact_max=12, solver_krylov_max=16, solver_angles=1,
        resnet_size=32, resnet_width=4, resnet_angles=1, resnet_train_steps=2,
        resnet_solver="exact",
        unjudged=frozenset({"replicates", "quickstart", "fisher_curve", "solvers", "resnet"}),
    ),
}
"""Sizes per mode. ``unjudged`` lists the sections whose goals are not judged in that mode
(their sizes differ from the ones the goal is defined for)."""


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Goal:
    """A target for one measured value: ``value >= target`` (op ">=") or ``<=``."""

    op: str
    target: float

    def met(self, value: float) -> bool:
        return value >= self.target if self.op == ">=" else value <= self.target

    def shortfall(self, value: float) -> float:
        """By what factor ``value`` misses the target (1.0 when met)."""
        if self.met(value) or value == 0 or not math.isfinite(value):
            return 1.0 if self.met(value) else math.inf
        return self.target / value if self.op == ">=" else value / self.target

    def text(self) -> str:
        return f"{'≥' if self.op == '>=' else '<'} {fmt(self.target)}"


@dataclass
class Row:
    """One line of the benchmark's table."""

    section: str
    measure: str
    value: float
    unit: str
    goal: Goal | None = None
    judged: bool = True  # False: the goal exists but this mode's sizes cannot judge it
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or not self.judged or not math.isfinite(self.value):
            return None
        return self.goal.met(self.value)

    def verdict(self) -> str:
        if self.goal is None:
            return ""
        if not self.judged:
            return "not judged at this size"
        if not math.isfinite(self.value):
            return "not measured"
        if self.met:
            return "met"
        return f"short {fmt(self.goal.shortfall(self.value))}×"

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section, "measure": self.measure,
            "value": self.value if math.isfinite(self.value) else None, "unit": self.unit,
            "goal": None if self.goal is None else {"op": self.goal.op,
                                                    "target": self.goal.target},
            "met": self.met, "verdict": self.verdict(), "note": self.note,
        }


@dataclass
class Context:
    """What every section gets: the mode's sizes, threads, and where to report."""

    mode: str
    sizes: Sizes
    threads: int
    cores: int
    rows: list[Row] = field(default_factory=list)
    device: str = "cpu"  # where the solvers and resnet sections compute
    details: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def add(self, section: str, measure: str, value: float, unit: str,
            goal: Goal | None = None, note: str = "") -> None:
        self.rows.append(Row(section, measure, float(value), unit, goal,
                             judged=section not in self.sizes.unjudged, note=note))


def fmt(value: float) -> str:
    """A number with about 3 significant digits, thousands separated."""
    if value is None or not math.isfinite(value):
        return "—"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    if a == 0:
        return "0"
    return f"{value:.3g}"


# --------------------------------------------------------------------------------------------
# timing and memory


def race(fns: Mapping[str, Callable[[], Any]], rounds: int, min_seconds: float) -> dict[str, float]:
    """Best seconds per call of each function, timed interleaved.

    Each function is called once to warm up and once to calibrate how many calls make one
    measurement of at least ``min_seconds``; then ``rounds`` rounds time every function in
    turn, so that a change of the machine's load affects all of them alike, and the best
    (smallest) per-call time of each is returned.
    """
    numbers = {}
    for name, fn in fns.items():
        fn()
        started = time.perf_counter()
        fn()
        once = max(time.perf_counter() - started, 1e-9)
        numbers[name] = max(1, math.ceil(min_seconds / once))
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(numbers[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / numbers[name])
    return best


def top_ops(fn: Callable[[], Any], n: int = 6) -> list[dict[str, Any]]:
    """The ``n`` torch operators with the most self CPU time in one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count}
            for e in events[:n]]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _heap_reader() -> tuple[Callable[[], int], str]:
    """A function giving this process's memory in use in bytes, and what it counts.

    glibc's ``mallinfo2()``: bytes handed out by malloc and not yet freed (``uordblks``, in
    the heap, + ``hblkhd``, in mmapped blocks), whatever malloc keeps for reuse
    (:func:`anglesim.replicates.configure_malloc` keeps freed memory, so resident size would
    not fall after a peak). Elsewhere the resident size from ``/proc/self/statm``.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
        fn.restype = _MallInfo2

        def in_use() -> int:
            info = fn()
            return int(info.uordblks + info.hblkhd)

        in_use()
        return in_use, "malloc in use (mallinfo2)"
    except (OSError, AttributeError):
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

        def resident() -> int:
            try:
                return int(Path("/proc/self/statm").read_text().split()[1]) * page
            except (OSError, IndexError, ValueError):
                return 0

        return resident, "resident size (/proc/self/statm)"


def peak_memory(fn: Callable[[], Any], interval: float = 0.002) -> tuple[Any, float, int, str]:
    """Call ``fn`` once: (its result, seconds, peak bytes above the memory in use before the
    call, what the bytes count). Memory is sampled every ``interval`` seconds by a thread (torch
    releases the GIL in its kernels), so allocations shorter than that may be missed."""
    read, kind = _heap_reader()
    base = read()
    peak = base
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, read())
            time.sleep(interval)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        thread.join()
    peak = max(peak, read())
    return result, seconds, max(0, peak - base), kind


_RUSAGE_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('BENCH-RUSAGE ' + json.dumps({'code': code, 'maxrss_kib': usage.ru_maxrss}))\n"
)


def measure_command(cmd: Sequence[str], poll_seconds: float = 0.1,
                    cwd: str | Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` in a subprocess: its wall time, exit code and peak memory.

    ``peak_tree_bytes`` is the largest total memory of the process and all its descendants,
    sampled every ``poll_seconds``: the sum of their proportional set sizes (PSS: each shared
    page, such as torch's libraries, counted once over the processes that share it) where the
    system reports it, else of their resident sizes; ``peak_tree_kind`` says which (None
    without psutil). ``max_process_bytes`` is the largest maximum resident size of any one
    descendant, from ``getrusage(RUSAGE_CHILDREN)`` in a wrapper process.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _RUSAGE_WRAPPER, *cmd], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, kind = 0, None
    if psutil is not None:
        root = psutil.Process(proc.pid)
        kind = "pss"
        while proc.poll() is None:
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        if kind == "pss":
                            try:
                                total += p.memory_full_info().pss
                                continue
                            except (AttributeError, psutil.AccessDenied):
                                kind = "rss"
                        total += p.memory_info().rss
            peak = max(peak, total)
            time.sleep(poll_seconds)
    output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    usage: dict[str, Any] = {}
    lines = []
    for line in output.splitlines():
        if line.startswith("BENCH-RUSAGE "):
            usage = json.loads(line.split(" ", 1)[1])
        else:
            lines.append(line)
    return {"seconds": seconds, "code": usage.get("code", proc.returncode),
            "peak_tree_bytes": peak if psutil is not None else None, "peak_tree_kind": kind,
            "max_process_bytes": usage.get("maxrss_kib", 0) * 1024, "output": "\n".join(lines)}


# --------------------------------------------------------------------------------------------
# the machine and the table


def machine_info(threads: int) -> dict[str, Any]:
    """The machine and software the numbers come from."""
    from .. import __version__
    from ..io import cpu_model, provenance, usable_cpus

    cpu = cpu_model()
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": usable_cpus(),
        "logical_cpus": os.cpu_count(),
        "cpu": cpu,
        "torch_threads": threads,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "anglesim": __version__,
        "git_rev": provenance()["git_rev"],
        "platform": platform.platform(),
    }


def format_table(report: Mapping[str, Any]) -> str:
    """The report's rows as an aligned text table, with a header naming the machine."""
    m = report["machine"]
    gpu = f", device {report['device']} ({m['gpu']})" if m.get("gpu") else ""
    head = (f"anglesim bench ({report['mode']}{gpu}) — {m['date']}, {m['cores']} cores "
            f"({m['cpu']}), "
            f"torch {m['torch']}, {m['torch_threads']} torch thread(s) in process, "
            f"load average {m['load_average_at_start']} at start, "
            f"{report.get('load_average_at_end')} at end")
    table = [("section", "measure", "value", "unit", "goal", "verdict", "note")]
    for r in report["rows"]:
        goal = "" if r["goal"] is None else Goal(r["goal"]["op"], r["goal"]["target"]).text()
        value = fmt(r["value"]) if r["value"] is not None else "—"
        table.append((r["section"], r["measure"], value, r["unit"], goal, r["verdict"],
                      r["note"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [head]
    for k, row in enumerate(table):
        cells = [row[i].rjust(widths[i]) if i == 2 else row[i].ljust(widths[i])
                 for i in range(len(row))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
