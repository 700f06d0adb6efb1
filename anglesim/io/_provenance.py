"""Provenance: what made a Dataset (versions, git revision, config, seed, the study's code),
CF ``Conventions`` and a ``history`` line without machine paths."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import validation as check
from ._encoding import to_json

PROVENANCE_KEYS = (
    "anglesim_version", "git_rev", "created", "python", "torch", "numpy", "xarray", "platform",
    "cpu", "cpu_count", "config", "seed", "code_version", "code_origin", "Conventions", "history",
)
"""The attribute names that :func:`provenance` may set."""

CONVENTIONS = "CF-1.10"
"""The CF conventions version written in the ``Conventions`` attribute."""

PACKAGE_DIR = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# provenance


def git(directory: Path, *args: str) -> str | None:
    """Run git in ``directory``; its stripped stdout, or None if git failed or is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=10, env=env, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision(package_dir: Path) -> str:
    """Commit of the git checkout whose tracked files include ``package_dir``/__init__.py.

    Returns the 40-digit hash, with ``-dirty`` appended when tracked files differ from that
    commit, or ``"unknown"`` when the package is not a tracked part of a git checkout (an
    installed copy, a tarball, no git on the machine). Never raises.
    """
    try:
        if not (package_dir / "__init__.py").is_file():
            return "unknown"
        if git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
            return "unknown"
        rev = git(package_dir, "rev-parse", "HEAD")
        if not rev:
            return "unknown"
        status = git(package_dir, "status", "--porcelain", "--untracked-files=no")
        return f"{rev}-dirty" if status else rev
    except Exception:  # provenance must never stop a save
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name, e.g. ``"Intel(R) Xeon(R) Processor"``.

    Read from ``/proc/cpuinfo`` on Linux (its first ``model name``, or ``Hardware``/``Processor``
    line on ARM boards), from ``sysctl machdep.cpu.brand_string`` on macOS, else
    :func:`platform.processor` or the machine type; ``"unknown"`` if none says. Results differ in
    their last bits between CPU models, so a stored number is only comparable bit for bit with one
    made on the same model. Never raises.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            for line in lines:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5, check=False)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    """CPU cores this process may use: joblib's count, which honours the affinity mask and a
    container's CPU quota (cgroups), so it is also how many workers ``--n-jobs`` defaults to
    and what ``anglesim bench`` reports as cores."""
    import joblib

    return int(joblib.cpu_count())


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None,
               code_version: str | None = None,
               code_origin: str | None = None) -> dict[str, str | int]:
    """Attributes recording what made a Dataset.

    Keys: ``anglesim_version``; ``git_rev`` (commit of the source checkout holding the anglesim
    package, ``-dirty`` appended if tracked files are modified, ``"unknown"`` if it is not a git
    checkout); ``created`` (ISO 8601, UTC); ``python``, ``torch``, ``numpy``, ``xarray``
    (versions); ``platform`` (the host's platform string); ``cpu`` (:func:`cpu_model`) and
    ``cpu_count`` (:func:`usable_cpus`), the machine a number was measured on; ``config``
    (canonical JSON, see :func:`to_json`; ``"null"`` without a config); ``Conventions``
    (:data:`CONVENTIONS`); ``history`` (``created`` and the command line, see
    :func:`command_line`); ``seed``, ``code_version`` (e.g. a hash of the study's own code)
    and ``code_origin`` (where that code came from, e.g. a module name or file name) only
    when given.

    Raises:
        ValueError: if ``config`` cannot be encoded as JSON, ``seed`` is not an integer, or
            ``code_version``/``code_origin`` is not a non-empty string.
    """
    import torch

    from .. import __version__

    attrs: dict[str, str | int] = {
        "anglesim_version": __version__,
        "git_rev": git_revision(PACKAGE_DIR),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": usable_cpus(),
        "config": to_json(config),
        "Conventions": CONVENTIONS,
    }
    attrs["history"] = f"{attrs['created']} {command_line()}"
    for key, value in (("code_version", code_version), ("code_origin", code_origin)):
        if value is not None:
            attrs[key] = check.text(key, value)
    if seed is not None:
        attrs["seed"] = check.integer("seed", seed)
    return attrs


_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/=,:]+/)+")


def command_line(argv: list[str] | None = None) -> str:
    """The command that runs this process, without machine paths: the program's file name
    instead of its path (``python -m anglesim`` for ``anglesim/__main__.py``), and every
    absolute path in the arguments shortened to ``…/name``."""
    argv = list(sys.argv if argv is None else argv) or [""]
    program = os.path.basename(argv[0]) or "python"
    if program == "__main__.py":
        program = f"python -m {os.path.basename(os.path.dirname(argv[0])) or 'anglesim'}"
    elif program == "-c" or program.endswith(".py"):
        program = f"python {program}"
    return " ".join([program, *(_ABS_PATH.sub("…/", a) for a in argv[1:])])


