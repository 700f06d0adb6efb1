"""How a study runs (workers, backend, threads, progress, retries), checked once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import validation as check
from ._slurm import SlurmConfig

BACKENDS = ("loky", "dask", "slurm")
"""Backends run_study accepts for n_jobs != 1. All run tasks in separate processes, which the
per-task torch settings (thread count, global seed) need; "dask" uses the scheduler given as
``scheduler``, else the current dask.distributed Client, else a LocalCluster; "slurm" starts
dask workers in Slurm jobs as its ``cluster`` (a :class:`SlurmConfig`) says."""

DEFAULT_THREADS = 1
"""torch threads per task unless ``threads_per_worker`` says otherwise. Fixed (not derived from
the number of workers) so that results do not depend on ``n_jobs``: the thread count changes
the order of floating-point sums. Small networks gain little from more threads; run more
workers instead (workers × threads = cores)."""


@dataclass(frozen=True)
class RunSettings:
    """How :func:`~anglesim.replicates.run_study` runs a study's tasks; nothing here changes
    a result (except ``threads_per_worker="auto"``, see run_study)."""

    n_jobs: int = 1
    backend: str = "loky"
    scheduler: str | None = None
    threads_per_worker: int | str | None = None
    progress: bool = True
    retry_failed: bool = False
    cluster: SlurmConfig | None = None

    @classmethod
    def checked(cls, n_jobs: Any = 1, backend: Any = "loky", scheduler: Any = None,
                threads_per_worker: Any = None, progress: Any = True,
                retry_failed: Any = False, cluster: Any = None) -> RunSettings:
        """The settings of run_study's arguments of these names.

        Raises:
            ValueError: one line naming the argument and its value.
        """
        n_jobs = check.integer("n_jobs", n_jobs)
        if n_jobs == 0:
            raise check.fail("n_jobs", "a non-zero integer (1: in this process; negative: "
                             "counted back from the number of cores)", n_jobs)
        if threads_per_worker is not None and threads_per_worker != "auto":
            threads_per_worker = check.integer("threads_per_worker", threads_per_worker,
                                               minimum=1)
        check.choice("backend", backend, BACKENDS)
        if scheduler is not None and (backend != "dask" or not isinstance(scheduler, str)
                                      or not scheduler):
            raise check.fail("scheduler", f"a dask scheduler address used with "
                             f"backend='dask' (backend is {backend!r})", scheduler)
        if backend == "slurm":
            cluster = SlurmConfig.of(cluster)
            if isinstance(threads_per_worker, int):
                cluster.workers_per_job(threads_per_worker)  # no more threads than cores
        elif cluster is not None:
            raise check.fail("cluster", f"a Slurm configuration used with backend='slurm' "
                             f"(backend is {backend!r})", cluster)
        return cls(n_jobs, backend, scheduler, threads_per_worker, bool(progress),
                   bool(retry_failed), cluster)

    @property
    def in_process(self) -> bool:
        """Tasks run one after another in this process (``n_jobs=1``)."""
        return self.n_jobs == 1

    def where(self) -> str:
        """Where tasks run, for the log: ``"this process"`` or the backend's name."""
        return "this process" if self.in_process else self.backend
