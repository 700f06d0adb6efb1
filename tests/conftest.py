"""Shared fixtures: the stand-in tiny study, a folder for user study files, and a helper
that writes a study file."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

TINY = Path(__file__).resolve().parent / "tiny_studies" / "studies"
"""A user study folder holding ``tiny.py`` (a few SGD steps of a tiny MLP)."""


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Point ``$ANGLESIM_STUDIES`` at the stand-in study folder; replicates leave a file each
    in ``tmp_path/calls`` (count them with :func:`calls`). Returns ``tmp_path``."""
    monkeypatch.setenv("ANGLESIM_STUDIES", str(TINY))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("TINY_CALLS", str(tmp_path / "calls"))
    monkeypatch.delenv("TINY_GRID", raising=False)
    monkeypatch.delenv("TINY_REPLICATES", raising=False)
    (tmp_path / "calls").mkdir()
    for name in [m for m in sys.modules if m == "studies" or m.startswith("studies.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def calls(folder: Path, pattern: str = "*") -> int:
    """How many replicates of the tiny or a written study ran (files left in folder/calls)."""
    return len(list((folder / "calls").glob(f"{pattern}.call")))


@pytest.fixture
def write_study(tmp_path):
    """``write_study(name, body, folder=tmp_path/"user")`` writes a study file (``body`` is
    dedented) and returns its path."""

    def write(name: str, body: str, folder: Path | None = None) -> Path:
        folder = folder or tmp_path / "user"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(body))
        return path

    return write


SEED_STUDY = '''
"""A study without training: each replicate draws numbers from its seed."""
import os
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from anglesim.study import Study

VERSION_MARK = 1


def replicate(ctx):
    calls = os.environ.get("SEED_CALLS")
    if calls:
        Path(calls, f"{{ctx.condition}}-r{{ctx.replicate}}-{{uuid.uuid4().hex}}.call").touch()
    draws = ctx.numpy_generator("draws").normal(size=ctx.params["n"])
    draws = draws * ctx.params["scale"] * VERSION_MARK
    return xr.Dataset({{"draws": ("draw", draws), "used_seed": ((), np.int64(ctx.seed))}})


STUDY = Study(
    name="{name}",
    question="Do paired conditions share seeds?",
    replicate=replicate,
    sizes={{"quick": {{"n": 3, "scale": 1.0, "replicates": 2}},
           "full": {{"n": 5, "scale": 1.0, "replicates": 3}}}},
    grid={{"treatment": ["a", "b"], "group": [1, 2]}},
    defaults={{"nested": {{"lr": 0.001, "flag": False}}}},
    pair_axes={pair_axes},
)
'''


def seed_study(name: str = "seeds", pair_axes: tuple = ()) -> str:
    """The text of a training-free study file (``SEED_CALLS`` counts its replicates)."""
    return SEED_STUDY.format(name=name, pair_axes=repr(tuple(pair_axes)))
