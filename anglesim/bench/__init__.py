"""``anglesim bench``: how fast anglesim is, as ratios measured in one run.

Every figure is a ratio of two timings taken in the same run, interleaved (A, B, A, B, …
keeping the best of each), so that it holds on a noisy shared machine where absolute timings
do not. Sections (``--only``), each with its goals in its module's docstring: render, train,
fisher and fisher_curve, solvers (the propagated solvers at growing image sizes), resnet (a
ResNet-18-shaped network at 224 px), replicates, quickstart. ``--quick`` runs reduced sizes,
``--smoke`` the smallest (for the tests); ``--json PATH`` writes the numbers with the
machine's description.

`main` (``main(argv) -> exit code``) is ``anglesim bench`` and ``python -m anglesim.bench``;
`run_benchmarks` returns the report. Nothing in anglesim imports this package (the CLI's
``bench`` subcommand, when called), and it imports neither the CLI nor the studies (it times
them through their command line, in subprocesses).
"""

from ._run import SECTIONS, main, run_benchmarks

__all__ = ["SECTIONS", "main", "run_benchmarks"]
