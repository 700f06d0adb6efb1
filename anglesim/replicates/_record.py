"""The manager's bookkeeping: each outcome as it arrives is kept, counted, logged and shown."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from tqdm import tqdm

from ._cache import CacheWarning, ReplicateCache
from ._grid import Task
from ._locks import Lock
from ._log import StudyLog, warn_caller
from ._outcome import Outcome
from ._space import CacheFullError


@dataclass
class Progress:
    """Counts of replicates done (of which failed, and taken from the cache) and, once
    computing starts, a progress bar with them and an ETA."""

    done: int = 0
    failed: int = 0
    cached: int = 0
    bar: tqdm | None = field(default=None, repr=False)

    def count(self, outcome: Outcome) -> None:
        self.done += 1
        self.cached += outcome.cached
        self.failed += outcome.failed
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix(), refresh=False)
            self.bar.update(1)

    def postfix(self) -> str:
        return f"done={self.done}, failed={self.failed}, cached={self.cached}"

    def start(self, name: str, total: int, shown: bool) -> None:
        """Show the bar from here on, starting at what is done: its rate and ETA then count
        the replicates computed in this run only."""
        self.bar = tqdm(total=total, initial=self.done, desc=name, unit="replicate",
                        disable=not shown, dynamic_ncols=True,
                        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| "
                                   "[{elapsed}, ETA {remaining}{postfix}]")
        self.bar.set_postfix_str(self.postfix(), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Recorder:
    """Takes the outcome of every task, cached or computed, in whatever order they arrive:
    stores a failure no worker could record, releases the task's lock, keeps the outcome,
    counts it, logs it, and stops the study when the cache cannot be written."""

    def __init__(self, tasks: list[Task], cache: ReplicateCache | None, log: StudyLog):
        self.tasks, self.cache, self.log = tasks, cache, log
        self.outcomes: list[Outcome | None] = [None] * len(tasks)
        self.locks: dict[int, Lock] = {}
        self.progress = Progress()
        self.space_checked = False

    def __call__(self, outcome: Outcome) -> None:
        task = self.tasks[outcome.index]
        if outcome.unstored and self.cache is not None:
            self.cache.dump(task, outcome)  # its worker died: the manager records it
        lock = self.locks.pop(task.index, None)
        if lock is not None:
            lock.release()
        self.outcomes[task.index] = outcome
        self.progress.count(outcome)
        self._log(task, outcome)
        self._check_cache(task, outcome)

    def hold(self, task: Task, lock: Lock) -> None:
        """Keep ``task``'s lock until its outcome is recorded."""
        self.locks[task.index] = lock

    def close(self) -> None:
        """Release the locks still held (a study stopped early) and close the bar."""
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()
        self.progress.close()

    def missing(self) -> int:
        return sum(o is None for o in self.outcomes)

    def all(self) -> list[Outcome]:
        """Every task's outcome, in task order (all must be recorded)."""
        done = [o for o in self.outcomes if o is not None]
        assert len(done) == len(self.outcomes), "a task's outcome was never recorded"
        return done

    def _log(self, task: Task, outcome: Outcome) -> None:
        if outcome.failure is not None:
            how = "recorded earlier as failed (retry_failed=True reruns it)" \
                if outcome.cached else "failed"
            self.log.warning("%s %s: %s", task.describe(), how, outcome.failure.error)
            self.log.debug("traceback of %s:\n%s", task.describe(), outcome.failure.traceback)
        elif outcome.computed:
            fn_seconds = outcome.fn_seconds if outcome.fn_seconds is not None else math.nan
            task_seconds = outcome.task_seconds if outcome.task_seconds is not None \
                else math.nan
            self.log.log(logging.INFO, "%s done in %.3f s (manager %.3f s)", task.describe(),
                         fn_seconds, task_seconds - fn_seconds, console=False)

    def _check_cache(self, task: Task, outcome: Outcome) -> None:
        """A write that failed with an OSError (a full disk, a lost folder) stops the study;
        another one is a warning. The first file of a study sets the expected file size, so
        the free space is checked again then."""
        error = outcome.cache_error
        if error is not None:
            if error.is_os_error:
                assert self.cache is not None
                raise CacheFullError(
                    error.errno, f"cannot write the replicate cache ({error.strerror}); the "
                    f"study stops, the {self.cache.n_results()} replicate file(s) cached so "
                    f"far are kept: free space (or fix the folder) and rerun to resume",
                    error.path)
            message = f"{task.describe()} was computed but could not be cached: {error.message}"
            self.log.warning("%s", message)
            warn_caller(message, CacheWarning)
        elif self.cache is not None and not self.space_checked and outcome.result is not None \
                and not outcome.cached:
            self.space_checked = True
            self.cache.check_space(self.missing())


def log_summary(log: StudyLog, name: str, outcomes: list[Outcome], n_run: int, workers: int,
                run_seconds: float, total_seconds: float) -> None:
    """The study's timing, including the manager's own time per computed replicate:
    in-task (thread/seed settings, result checks, writing the cache file) and overall
    (wall time × workers − time inside fn, over the replicates computed)."""
    computed = [o for o in outcomes if o.computed]
    if not computed:
        log.debug("study %s finished in %.2f s, nothing computed", name, total_seconds)
        return
    fn_total = sum(o.fn_seconds or 0.0 for o in computed)
    in_task = sum((o.task_seconds or 0.0) - (o.fn_seconds or 0.0) for o in computed) \
        / len(computed)
    overall = (run_seconds * workers - fn_total) / len(computed)
    log.log(logging.INFO, "study %s: computed %d replicate(s) in %.2f s on %d worker(s); fn "
            "took %.3f s per replicate on average; manager time per replicate: %.4f s inside "
            "the task, %.4f s overall (wall × workers − fn time, including worker start-up "
            "and idle workers); %.2f s in all", name, n_run, run_seconds, workers,
            fn_total / len(computed), in_task, overall, total_seconds, console=False)
