"""The README's Python example runs as printed, and the numbers the README and the docs quote
from the stored quickstart Dataset are the ones it holds."""

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


ROOT = README.parent
QUICKSTART = ROOT / "figures" / "data" / "quickstart.nc"


@pytest.fixture(scope="module")
def quickstart_intervals():
    """The quickstart's quoted numbers recomputed from its stored Dataset (mean ± 95% CI)."""
    from anglesim.angles import near_far_masks
    from anglesim.io import load_dataset
    from anglesim.stats import mean_ci

    ds = load_dataset(QUICKSTART).isel(kappa=0)
    near, far = near_far_masks(ds["prior_density"].sel(phase="finetune").isel(replicate=0))
    out = ds["fisher"].sel(layer="output")
    fi_near, fi_far = out.where(near).mean("angle"), out.where(far).mean("angle")
    error = np.degrees(ds["abs_error"].mean("angle"))
    pairs = {
        "error_pre": mean_ci(error.sel(phase="pretrain")),
        "error_ft": mean_ci(error.sel(phase="finetune")),
        "near_pre": mean_ci(fi_near.sel(phase="pretrain")),
        "near_ft": mean_ci(fi_near.sel(phase="finetune")),
        "far_pre": mean_ci(fi_far.sel(phase="pretrain")),
        "far_ft": mean_ci(fi_far.sel(phase="finetune")),
        "gain_near": mean_ci(fi_near.sel(phase="finetune") / fi_near.sel(phase="pretrain")),
        "loss_far": mean_ci(100 * (1 - fi_far.sel(phase="finetune")
                                   / fi_far.sel(phase="pretrain"))),
    }
    return {k: (float(m), float(h)) for k, (m, h) in pairs.items()}


def test_quoted_quickstart_intervals_match_the_stored_dataset(quickstart_intervals):
    q = quickstart_intervals
    readme = README.read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "getting_started.rst").read_text(encoding="utf-8")
    both = [f"{q['gain_near'][0]:.2f} ± {q['gain_near'][1]:.2f}-fold",
            f"by {q['loss_far'][0]:.0f} ± {q['loss_far'][1]:.0f}%",
            f"{q['error_ft'][0]:.2f} ± {q['error_ft'][1]:.2f}°"]
    for text in both:
        assert text in readme and text in guide, text
    for key, unit in [("error_pre", "°"), ("near_pre", " rad⁻²"), ("far_pre", " rad⁻²"),
                      ("near_ft", " rad⁻²"), ("far_ft", " rad⁻²")]:
        m, h = q[key]
        digits = 2 if unit == "°" else 0
        assert f"{m:.{digits}f} ± {h:.{digits}f}{unit}" in guide, key
    # the other CPU model's run quoted beside them lies inside the stored intervals
    for key, other in [("error_ft", 2.13), ("near_ft", 2435), ("far_ft", 844)]:
        m, h = q[key]
        assert m - h <= other <= m + h, key
