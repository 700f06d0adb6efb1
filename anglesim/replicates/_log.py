"""The study log: console messages and one appended log file per study."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger("anglesim.replicates")

LOG_NAME = "study.log"
"""File name of a study's log inside its cache folder."""

class QuietFileHandler(logging.FileHandler):
    """A log file that, when it cannot be written (a full disk), says so once on the console
    and stops, instead of printing logging's "--- Logging error ---" traceback per message."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if not self.failed:
            self.failed = True
            error = sys.exc_info()[1]
            logger.warning("cannot append to the study log %s (%s); continuing without it",
                           self.baseFilename, error)
        try:
            self.close()
        except Exception:
            pass

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)


class StudyLog:
    """Messages of one study: to the module logger (console) and, with a path, appended to the
    study's log file with timestamps. Only the file gets DEBUG details (tracebacks)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._file: logging.Logger | None = None
        self._handler: logging.Handler | None = None
        if path is not None:
            # a logger outside logging's hierarchy: nothing propagates to the root's handlers
            self._file = logging.Logger(f"anglesim.study:{path}", level=logging.DEBUG)
            self._handler = QuietFileHandler(path, mode="a", encoding="utf-8", delay=True)
            self._handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)-7s %(message)s"))
            self._file.addHandler(self._handler)

    def log(self, level: int, msg: str, *args: Any, console: bool = True) -> None:
        if self._file is not None:
            self._file.log(level, msg, *args)
        if console:
            logger.log(level, msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self.log(logging.DEBUG, msg, *args, console=False)

    def info(self, msg: str, *args: Any) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            assert self._file is not None
            self._file.removeHandler(self._handler)



PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_caller(message: str, category: type[Warning]) -> None:
    """Warn, naming the first frame outside this package (the code that called
    :func:`~anglesim.replicates.run_study`) as the warning's location, however deep inside
    the package the problem was found."""
    frame, level = inspect.currentframe(), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
