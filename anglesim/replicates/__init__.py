"""Run a grid of conditions × replicate seeds and gather the results in one Dataset.

A study is a function ``fn(condition, replicate, seed) -> xr.Dataset`` that computes one
replicate of one condition, a grid ``{axis: values}`` whose Cartesian product gives the
conditions, and a number of replicates. :func:`run_study` runs every (condition, replicate)
pair as its own task, in this process or in joblib workers (loky locally, dask.distributed on a
cluster), and stacks the per-replicate Datasets along new dimensions named after the grid axes
and ``replicate``.

* Seeds: replicate ``r`` of condition ``c`` gets ``replicate_seed(seed, condition_id(c), r)``,
  derived with :class:`numpy.random.SeedSequence`, so results depend neither on the number of
  workers, nor on the backend, nor on the order in which tasks finish, nor on the other
  conditions in the grid (extending or reordering a grid keeps every existing condition's seeds
  and cached files). Axes named in ``pair_axes`` are left out of ``c`` there: conditions that
  differ only in them share their replicates' seeds (one parent, many treatments).
* Determinism: each task runs with a fixed torch thread count (``threads_per_worker``, 1 by
  default) and torch's global generator seeded with the replicate's seed, so on a CPU the same
  study seed gives bit-identical results whatever ``n_jobs`` and backend. (A different thread
  count changes the order of floating-point reductions and hence the last bits.) On a GPU,
  cuDNN's algorithm choice and atomic-add kernels (e.g. the backward of convolutions,
  ``index_add``/``scatter_add``) are not deterministic unless
  ``torch.use_deterministic_algorithms(True)`` is set (with ``CUBLAS_WORKSPACE_CONFIG=:4096:8``)
  and ``torch.backends.cudnn.benchmark`` is off; results also differ between GPU models and
  between GPU and CPU.
* Cache: with ``cache_dir`` each finished replicate is written to its own netCDF file as soon
  as it is done (to a temporary name, flushed, then renamed; with a checksum of its data and the
  hash of everything that determined it), so a study killed at any moment resumes where it
  stopped. A cached file that is truncated, corrupted (checksum of data, coordinates and
  attributes), written with an older checksum, or made by another config, seed, code_version or
  anglesim version is reported (a :class:`CacheWarning` and the study log) and recomputed,
  never merged; a corrupted file is kept aside as ``<file>.corrupt``. Each replicate being
  computed holds a lock, so a second run on the same cache computes only the others and waits
  for those. Free space is checked before computing; a cache file that cannot be written stops
  the study (:class:`CacheFullError`) with everything cached so far kept.
* Failures: an exception in ``fn`` (training raises ``FloatingPointError`` when a loss becomes
  NaN), a NaN or inf in its result (outside the variables of ``allow_nan``), or the death of
  the worker process computing it (with the signal or exit code) marks that replicate as failed
  (NaN-filled) without stopping the others; its condition, seed, message and traceback go to
  the Dataset's failure table (:func:`failure_table`) and, with a cache, to a ``.failed.json``
  record that later runs reuse unless ``retry_failed``. Workers end when the study process
  dies.
* Progress and logs: a progress bar counts replicates done, failed and cached, with an ETA from
  the replicates computed in this run; with a cache, every run appends to one log file per
  study, ``<cache_dir>/<name>/study.log``. :func:`study_status` reports what is cached, failed
  and missing without running anything.

The package, by concern: :mod:`.grid` (conditions, seeds, tasks), :mod:`.cache` (the cache
format: file names, hash key, verification, quarantine, failure records), :mod:`.worker` (one
task with its torch settings), :mod:`.backends` (loky, dask), :mod:`.assemble` (gathering and
the failure table), :mod:`.log` (the study log), :mod:`.status` (what the cache holds) and
:mod:`.run` (:func:`run_study`).
"""

from __future__ import annotations

from .assemble import FAILURES_ATTR, failure_table
from .backends import BACKENDS, DASK_CONNECT_TIMEOUT, DEFAULT_THREADS
from .cache import (
    CACHE_HASH_ATTR,
    MADE_BY_ATTR,
    STALE_TEMP_SECONDS,
    CacheFullError,
    CacheWarning,
    made_by_summary,
)
from .grid import RESERVED_NAMES, condition_id, condition_key, iter_conditions, replicate_seed
from .log import LOG_NAME, logger
from .run import run_study
from .status import StudyInspected, StudyStatus, inspecting, study_status
from .worker import configure_malloc

__all__ = [
    "BACKENDS",
    "CACHE_HASH_ATTR",
    "DASK_CONNECT_TIMEOUT",
    "DEFAULT_THREADS",
    "FAILURES_ATTR",
    "LOG_NAME",
    "MADE_BY_ATTR",
    "RESERVED_NAMES",
    "STALE_TEMP_SECONDS",
    "CacheFullError",
    "CacheWarning",
    "StudyInspected",
    "StudyStatus",
    "condition_id",
    "condition_key",
    "configure_malloc",
    "failure_table",
    "inspecting",
    "iter_conditions",
    "logger",
    "made_by_summary",
    "replicate_seed",
    "run_study",
    "study_status",
]
