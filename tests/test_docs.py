"""The README's Python example runs as printed, and gives what the README says it gives."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_python_blocks_finds_fenced_code_only():
    text = "x\n```bash\nmake test\n```\n```python\na = 1\n```\n`b`\n```python\nc = 2\n```\n"
    assert python_blocks(text) == ["a = 1\n", "c = 2\n"]


@pytest.fixture(scope="module")
def readme_example():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    code = blocks[0]
    namespace: dict = {"__name__": "readme_example"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), namespace)
    return code, namespace, printed.getvalue()


def test_readme_example_is_short(readme_example):
    code, _, _ = readme_example
    statements = [line for line in code.splitlines()
                  if line.strip() and not line.startswith(("import ", "from "))]
    assert len(statements) <= 10, statements


def test_readme_example_measures_every_layer(readme_example):
    _, ns, printed = readme_example
    fi = ns["fi"]
    model = ns["model"]
    assert list(fi.dims) == ["layer", "angle"]
    assert list(fi.layer.values) == ["input", *model.block_names, "output"]
    np.testing.assert_allclose(fi.angle.values, np.arange(12) * math.pi / 12, rtol=1e-6)
    values = fi.values
    assert np.isfinite(values).all() and (values > 0).all()
    # data-processing inequality: no layer carries more than the pixels
    assert (values <= values[0] * (1 + 1e-6)).all()
    assert fi.attrs["units"] == "rad^-2"
    assert "fisher" in printed and "angle: 12" in printed


def test_readme_example_trains_both_phases(readme_example):
    _, ns, _ = readme_example
    history = ns["history"]
    assert list(np.unique(history["epoch_phase"].values)) == ["finetune", "pretrain"]
    # trained: far better than chance (π/4) by the end
    assert float(history["eval_error"][-1]) < math.pi / 16
