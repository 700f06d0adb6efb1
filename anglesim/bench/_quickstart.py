"""Section ``quickstart``: ``anglesim quickstart`` end to end in a subprocess on all cores.

Wall time and peak resident memory (sum over the process tree, sampled; and the largest single
process's maximum, from ``getrusage``). Goals: < 3 min and < 2 GB.
"""

from __future__ import annotations

import sys
import tempfile

from ._harness import Context, Goal, measure_command


def bench_quickstart(ctx: Context) -> None:
    """``anglesim quickstart`` end to end: wall time and peak resident memory."""
    sz = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="anglesim-bench-") as tmp:
        cmd = [sys.executable, "-m", "anglesim", "quickstart", "--n-jobs", str(ctx.cores),
               "--results", tmp, "--no-cache", "--quiet", *sz.quickstart_args]
        ctx.log(f"  quickstart: {' '.join(cmd[2:])} …")
        run = measure_command(cmd)
    if run["code"] != 0:
        raise RuntimeError(f"the quickstart failed (exit {run['code']}):\n{run['output'][-2000:]}")
    size = " ".join(sz.quickstart_args) or "full size"
    ctx.add("quickstart", f"wall time ({size}, --n-jobs {ctx.cores})", run["seconds"], "s",
            Goal("<=", 180))
    if run["peak_tree_bytes"] is not None:
        ctx.add("quickstart", "peak memory, all processes together", run["peak_tree_bytes"]
                / 2**30, "GiB", Goal("<=", 2.0),
                note=f"sum of {run['peak_tree_kind'].upper()} over the process tree, sampled")
    ctx.add("quickstart", "largest single process's peak resident memory",
            run["max_process_bytes"] / 2**30, "GiB",
            None if run["peak_tree_bytes"] is not None else Goal("<=", 2.0),
            note="getrusage(RUSAGE_CHILDREN)")
    ctx.details["quickstart"] = {k: v for k, v in run.items() if k != "output"}
    ctx.details["quickstart"]["command"] = cmd[2:]
