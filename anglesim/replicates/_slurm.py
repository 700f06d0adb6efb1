"""Slurm: dask workers inside Slurm jobs (dask-jobqueue's ``SLURMCluster``), configured by a
:class:`SlurmConfig` from Python, the command line or a TOML file a lab shares."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import validation as check
from ._log import StudyLog

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
"""Environment variables set to the task's thread count in worker processes (loky's workers and
Slurm jobs alike)."""

LOST_JOB_SECONDS = 5
"""A worker gone this long counts as a lost job, which the adaptive minimum replaces (dask's
default, 15 s, is meant for workers that may reconnect; a killed Slurm job does not)."""

_MEMORY = re.compile(r"\d+(\.\d+)?\s*([kKMGTP]i?)?B", re.ASCII)
_WALLTIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def _memory(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _MEMORY.fullmatch(value.strip()):
        raise check.fail(name, "an amount of memory such as '4GB' or '500MiB'", value)
    return value.strip()


def _walltime(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _WALLTIME.fullmatch(value.strip()):
        raise check.fail(name, "a Slurm time limit such as '30:00', '04:00:00' or "
                         "'1-12:00:00'", value)
    return value.strip()


def _environment(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise check.fail(name, "a dict of environment variable -> value", value)
    out = {}
    for key, text in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise check.fail(f"{name} key", "an environment variable name", key)
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise check.fail(f"{name}[{key!r}]", "a string or number", text)
        out[key] = str(text)
    return out


CONSTRAINTS: dict[str, check.Constraint] = {
    "partition": check.Optional(check.Text()),
    "account": check.Optional(check.Text()),
    "cores": check.Integer(minimum=1),
    "memory": check.Check(_memory, "an amount of memory such as '4GB'"),
    "walltime": check.Check(_walltime, "a Slurm time limit such as '04:00:00'"),
    "jobs": check.Integer(minimum=1),
    "sbatch": check.Names(),
    "env": check.Check(_environment, "a dict of environment variable -> value"),
    "setup": check.Names(),
    "interface": check.Optional(check.Text()),
    "python": check.Optional(check.Text()),
    "log_directory": check.Optional(check.Text()),
    "local_directory": check.Optional(check.Text()),
}
"""The options of a :class:`SlurmConfig` and what each accepts."""


@dataclass(frozen=True)
class SlurmConfig:
    """How :func:`~anglesim.replicates.run_study` asks Slurm for workers (``backend="slurm"``).

    Each Slurm job holds ``cores`` CPU cores and ``memory`` and runs ``cores ÷ threads``
    single-threaded dask worker processes, one replicate at a time each, with ``threads``
    (``threads_per_worker``, 1 by default) torch threads: one per core it holds, so the
    default gives the same bits as loky. At most ``jobs`` jobs run; they are kept running
    (dask's adaptive minimum) while the study has work, so a job that is killed, preempted or
    reaches its walltime is replaced, and its replicate in progress is computed again.

    Attributes:
        partition: the Slurm partition (``#SBATCH -p``); None: the cluster's default.
        account: the account charged (``#SBATCH -A``); None: the user's default.
        cores: CPU cores per job (``--cpus-per-task``).
        memory: memory per job (``--mem``), e.g. ``"4GB"``; shared by its workers, and a
            worker using more than its share is restarted by dask.
        walltime: each job's time limit (``-t``), e.g. ``"04:00:00"``; a replicate running
            when it expires is computed again in another job, so it must exceed one replicate.
        jobs: Slurm jobs at most (never more than the replicates to compute need).
        sbatch: extra ``#SBATCH`` options, e.g. ``["--qos=normal", "--constraint=avx2"]``.
        env: environment variables exported in each job (``{"PYTHONPATH": "/shared/x"}``).
        setup: shell lines run in each job before its workers start (``module load …``,
            ``source …/activate``).
        interface: the network interface the scheduler and workers use (e.g. ``"ib0"``);
            None: the host's default.
        python: the Python the workers run; None: this one (``sys.executable``).
        log_directory: where the jobs' stdout and stderr go; None: the submit folder.
        local_directory: the workers' scratch folder; None: dask's default.
    """

    partition: str | None = None
    account: str | None = None
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "04:00:00"
    jobs: int = 4
    sbatch: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    interface: str | None = None
    python: str | None = None
    log_directory: str | None = None
    local_directory: str | None = None

    def __post_init__(self) -> None:
        checked = check.validate({f.name: getattr(self, f.name) for f in fields(self)},
                                 CONSTRAINTS, owner="slurm")
        for name in ("sbatch", "setup"):
            checked[name] = tuple(checked[name])
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SlurmConfig:
        """The ``[slurm]`` table of a TOML file (keys as the attributes)::

            [slurm]
            partition = "cpu"
            cores = 4
            memory = "16GB"
            walltime = "12:00:00"
            jobs = 16
            sbatch = ["--qos=normal"]
            setup = ["source /shared/anglesim/.venv/bin/activate"]
            env = { PYTHONPATH = "/shared/anglesim" }

        Raises:
            ValueError: one line naming the file and what is wrong in it.
        """
        path = Path(path)
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise ValueError(f"reading {path} needs Python 3.11 or the tomli package "
                                 f"(pip install tomli)") from None
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read the Slurm config {path}: {exc}") from None
        table = data.get("slurm")
        if not isinstance(table, dict):
            raise ValueError(f"the Slurm config {path} must hold a [slurm] table, found "
                             f"{sorted(data) or 'nothing'}")
        try:
            return cls.from_options(table)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SlurmConfig:
        """A config from a dict of options (unknown names refused, listing the known)."""
        unknown = sorted(str(k) for k in options if k not in CONSTRAINTS)
        if unknown:
            raise ValueError(f"slurm: unknown option(s) {unknown}; the options are "
                             f"{sorted(CONSTRAINTS)}")
        return cls(**options)

    @classmethod
    def of(cls, cluster: Any) -> SlurmConfig:
        """``cluster`` as a config: a SlurmConfig, a dict of options, a TOML file's path, or
        None (the defaults)."""
        if cluster is None:
            return cls()
        if isinstance(cluster, SlurmConfig):
            return cluster
        if isinstance(cluster, Mapping):
            return cls.from_options(cluster)
        if isinstance(cluster, str | os.PathLike):
            return cls.from_file(cluster)
        raise check.fail("cluster", "a SlurmConfig, a dict of its options or the path of a "
                         "TOML file with a [slurm] table", cluster)

    def updated(self, **options: Any) -> SlurmConfig:
        """A copy with the options given (not None) over these: values replaced, except that
        ``sbatch`` and ``setup`` lines are added after these and ``env`` entries merged in
        (the command line's options over a lab's file)."""
        given = {k: v for k, v in options.items() if v is not None}
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("sbatch", "setup"):
            if name in given:
                given[name] = [*current[name], *check.name_list(name, given[name])]
        if "env" in given:
            given["env"] = {**current["env"], **_environment("env", given["env"])}
        return self.from_options({**current, **given})

    def workers_per_job(self, threads: int) -> int:
        """Worker processes per job with ``threads`` torch threads each."""
        if threads > self.cores:
            raise check.fail("threads_per_worker", f"at most the cores per Slurm job "
                             f"({self.cores})", threads)
        return self.cores // threads

    def prologue(self, threads: int) -> list[str]:
        """The job script's lines before the workers start: one malloc arena per process
        (see :func:`~anglesim.replicates.configure_malloc`), the thread count, the user's
        environment and setup lines."""
        lines = ["export MALLOC_ARENA_MAX=1"]
        lines += [f"export {name}={threads}" for name in THREAD_ENV]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in self.env.items()]
        return lines + list(self.setup)


@contextlib.contextmanager
def slurm_client(config: SlurmConfig, threads: int, workers: int, log: StudyLog
                 ) -> Iterator[Any]:
    """A dask Client on a ``SLURMCluster`` with enough jobs for ``workers`` workers (at most
    ``config.jobs``), kept at that number while it is open; every job is cancelled on exit."""
    try:
        import dask
        import distributed
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ValueError("backend 'slurm' needs dask-jobqueue: pip install "
                         "'anglesim[distributed]'") from exc
    per_job = config.workers_per_job(threads)
    jobs = max(1, min(config.jobs, math.ceil(workers / per_job)))
    options: dict[str, Any] = dict(
        queue=config.partition, account=config.account, cores=per_job, processes=per_job,
        job_cpu=config.cores, memory=config.memory, walltime=config.walltime,
        job_extra_directives=list(config.sbatch), job_script_prologue=config.prologue(threads),
        interface=config.interface, python=config.python or sys.executable,
        log_directory=config.log_directory, local_directory=config.local_directory,
        job_name="anglesim", scheduler_options={"dashboard": False})
    with dask.config.set({"distributed.deploy.lost-worker-timeout": f"{LOST_JOB_SECONDS}s"}), \
            SLURMCluster(**{k: v for k, v in options.items() if v is not None}) as cluster:
        log.info("submitting %d Slurm job(s) of %d core(s) and %s each (%d worker(s) per job, "
                 "partition %s, walltime %s); the scheduler is at %s", jobs, config.cores,
                 config.memory, per_job, config.partition or "default", config.walltime,
                 cluster.scheduler_address)
        log.debug("Slurm job script:\n%s", cluster.job_script())
        # adapt, not scale: a job that ends (scancel, walltime, preemption) is replaced
        cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
        with distributed.Client(cluster, set_as_default=False) as client:
            yield client
