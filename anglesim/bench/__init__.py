"""``anglesim bench``: how fast anglesim is, as ratios measured in one run.

anglesim studies are many small trainings, so speed decides how many replicates a researcher can
afford. Every figure here is a ratio of two timings taken in the same run, interleaved (A, B, A,
B, … keeping the best of each), so that it holds on a noisy shared machine where absolute
timings do not. One module per section, each with its goals in its docstring:

1. **render** (:mod:`.render`) — images/s of :func:`anglesim.stimuli.render` against a
   per-image NumPy renderer and the machine's write limit. Goals: ≥ 50×; within 10×.
2. **train** (:mod:`.train`) — the default CNN's training step and its model-FLOP
   utilisation. Goal: ≥ 0.4.
3. **fisher** (:mod:`.fisher`) — the propagated estimator against finite differences at
   equal accuracy. Goal: ≥ 20×. **fisher_curve** (:mod:`.fisher_curve`) — the reference MLP's
   whole FI curve: the reference recipe against the bias-corrected sampled estimator. Goal:
   the same or smaller error in ≥ 100× less time.
4. **solvers** (:mod:`.solvers`) — every-layer propagated FI at 32, 64 and 128 px, exact
   against Krylov: time per angle, peak memory, error. Goals: Krylov ≥ 20× at 64 px at ≤ 1e-3
   error; time ∝ (pixels)^≤1.2; ≤ 1 GiB at 128 px. **resnet** (:mod:`.resnet`) — a
   ResNet-18-shaped network on 3-channel 224 px gratings: stem, stages and output with the
   Krylov solver. Goal: ≤ 3 min per angle.
5. **replicates** (:mod:`.replicates`) — ``anglesim run quickstart`` with 1 worker against all
   cores (loky, dask): parallel efficiency. Goal: ≥ 0.85.
6. **quickstart** (:mod:`.quickstart`) — ``anglesim quickstart`` end to end: wall time and
   peak memory. Goals: < 3 min and < 2 GB.

``--quick`` runs everything at reduced sizes (fewer timing rounds and angles, fisher_curve on
20 angles with the recipe's counts divided by 5, the replicates and quickstart sections on the
study's ``--quick`` sizes, the solvers and resnet sections at their full image sizes on one
angle); at those sizes worker start-up dominates and the curve's errors are noisy, so the goals
of fisher_curve, replicates and quickstart are not judged. ``--smoke`` is smaller still, for
the test suite (nothing at the goals' sizes). Numbers are printed as a table; ``--json PATH``
writes them with the machine's description (cores, threads, versions, date, load). Run
``anglesim bench`` or ``python -m anglesim.bench``; the entry point is
:func:`anglesim.bench.main` (``main(argv) -> exit code``).

The package sits outside the import graph of the studies and the command line: nothing in
anglesim imports it (the CLI's ``bench`` subcommand imports it when called), and it imports
neither :mod:`anglesim.cli` nor the studies — it times the studies through their command line
in subprocesses and carries its own copy of their standard stimulus and CNN
(:mod:`.workloads`).
"""

from .fisher import finite_difference_fisher
from .harness import (
    MODES,
    SIZES,
    Context,
    Goal,
    Row,
    Sizes,
    format_table,
    machine_info,
    measure_command,
    peak_memory,
    race,
    torch_threads,
)
from .render import numpy_render
from .run import BENCHES, SECTIONS, build_parser, main, run_benchmarks, run_from_args
from .workloads import STANDARD_SPEC, standard_cnn

__all__ = [
    "BENCHES",
    "MODES",
    "SECTIONS",
    "SIZES",
    "STANDARD_SPEC",
    "Context",
    "Goal",
    "Row",
    "Sizes",
    "build_parser",
    "finite_difference_fisher",
    "format_table",
    "machine_info",
    "main",
    "measure_command",
    "numpy_render",
    "peak_memory",
    "race",
    "run_benchmarks",
    "run_from_args",
    "standard_cnn",
    "torch_threads",
]
