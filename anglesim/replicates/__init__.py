"""Run a grid of conditions × replicate seeds and gather the results in one Dataset.

:func:`run_study` runs ``fn(condition, replicate, seed) -> xr.Dataset`` for every condition of
a grid (the Cartesian product of its axes, :func:`iter_conditions`) and every replicate, each
with its own seed (:func:`replicate_seed` of the study seed and :func:`condition_id`), in this
process or in loky, dask.distributed or Slurm workers (:class:`SlurmConfig`), and stacks the
results along the grid axes and ``replicate``. The same seed gives bit-identical results
whatever the workers and backend. With a cache each finished replicate is kept in its own
checksummed file, so a stopped study resumes where it stopped; :func:`study_status` says what
is cached, failed and missing. A replicate that raises, returns NaN or kills its worker is
recorded as failed without stopping the others (:func:`failure_table`); which Slurm job
computed each replicate is recorded too (:func:`replicate_jobs`).
"""

from __future__ import annotations

from ._assemble import FAILURES_ATTR, failure_table, replicate_jobs
from ._cache import CacheWarning
from ._grid import RESERVED_NAMES, condition_id, condition_key, iter_conditions, replicate_seed
from ._run import run_study
from ._settings import BACKENDS, DEFAULT_THREADS
from ._slurm import SlurmConfig
from ._space import CacheFullError
from ._status import StudyStatus, study_status
from ._worker import configure_malloc

__all__ = [
    "BACKENDS",
    "DEFAULT_THREADS",
    "FAILURES_ATTR",
    "RESERVED_NAMES",
    "SlurmConfig",
    "CacheFullError",
    "CacheWarning",
    "StudyStatus",
    "condition_id",
    "condition_key",
    "configure_malloc",
    "failure_table",
    "iter_conditions",
    "replicate_jobs",
    "replicate_seed",
    "run_study",
    "study_status",
]
