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
    from anglesim.claims import claims_from_dataset
    from anglesim.claims._format import interval
    from anglesim.io import load_dataset

    q = quickstart_intervals
    readme = README.read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "getting_started.rst").read_text(encoding="utf-8")
    records = {(r.contrast, r.cell.get("layer")): r
               for r in claims_from_dataset(load_dataset(QUICKSTART))}
    quoted = []  # the declared contrasts the README and the guide quote, as the table prints them
    for key in [("near_gain", "output"), ("far_loss", None)]:
        r = records[key]
        assert r.verdict == "supported", key
        quoted.append(interval(r.estimate, r.ci_low, r.ci_high, r.scale))
    for text in quoted:
        assert text in readme and text in guide, text
    m, h = q["error_ft"]
    assert f"{m:.2f}° [{m - h:.2f}, {m + h:.2f}]" in readme
    for key, unit in [("error_pre", "°"), ("error_ft", "°"), ("near_pre", " rad⁻²"),
                      ("far_pre", " rad⁻²"), ("near_ft", " rad⁻²"), ("far_ft", " rad⁻²")]:
        m, h = q[key]
        digits = 2 if unit == "°" else 0
        assert f"{m:.{digits}f} ± {h:.{digits}f}{unit}" in guide, key
    # the other CPU model's run quoted beside them lies inside the stored intervals
    for key, other in [("error_ft", 2.13), ("near_ft", 2435), ("far_ft", 844)]:
        m, h = q[key]
        assert m - h <= other <= m + h, key


def test_every_published_figure_has_its_results_section():
    """docs/results.rst shows every figure in figures/ (a new study's figure needs its entry)."""
    results = (ROOT / "docs" / "results.rst").read_text(encoding="utf-8")
    figures = sorted(p.name for p in (ROOT / "figures").glob("*.png"))
    assert figures, "no figures in figures/"
    missing = [name for name in figures if f".. image:: ../figures/{name}" not in results]
    assert not missing, f"figures without a section in docs/results.rst: {missing}"


def test_readme_lists_every_published_study():
    """The README's study list names every study whose dataset is published in figures/data."""
    readme = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^- `([a-z_0-9]+)`:", readme, flags=re.M))
    published = {p.stem for p in (ROOT / "figures" / "data").glob("*.nc")}
    assert published and not published - listed, sorted(published - listed)


def test_readme_fisher_of_your_own_network_runs():
    """The README's section "Fisher information of your own network" runs as printed, and its
    numbers obey what the section says: error bounds within rtol, no layer above the pixels."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Fisher information of your own network"):]
    code = python_blocks(section)[0]
    namespace: dict = {"__name__": "readme_fisher"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), namespace)
    fi = namespace["fi"]
    assert "['input', '0', '1', '2', '3', '4', 'output']" in printed.getvalue()
    assert list(fi["layer"].values) == ["input", "2", "4"]
    assert bool((fi["fisher_error"] <= 1e-3 * fi).all())
    assert bool((fi.sel(layer="4") <= fi.sel(layer="input") * (1 + 2e-3)).all())
    assert bool((fi > 0).all())


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def rst_table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the first ``list-table`` in ``text`` whose first column is ``header``."""
    start = text.index(f".. list-table::\n   :header-rows: 1\n\n   * - {header}\n")
    block = text[start:].split("\n\n", 2)[1]  # the rows, up to the first blank line
    rows = [[cell.strip() for cell in row.split("\n     - ")]
            for row in block.split("   * - ")[1:]]
    return rows[1:]  # without the header


def test_rst_table_rows_reads_a_list_table():
    text = ("x\n\n.. list-table::\n   :header-rows: 1\n\n   * - a\n     - b\n   * - 1\n"
            "     - ``two`` 2\n   * - 3\n     - 4\n\nafter\n")
    assert rst_table_rows(text, "a") == [["1", "``two`` 2"], ["3", "4"]]


def test_reproducibility_table_names_each_dataset_s_machine_and_revision():
    """The reproducibility page's table of stored datasets gives each file's own ``created``,
    ``git_rev``, ``cpu`` and replicate count (it went stale once: every row said 2026-11-25)."""
    from anglesim.io import load_dataset

    page = (ROOT / "docs" / "user_guide" / "reproducibility.rst").read_text(encoding="utf-8")
    rows = {row[0]: row[1:] for row in rst_table_rows(page, "dataset")}
    published = sorted(p.name for p in (ROOT / "figures" / "data").glob("*.nc"))
    assert sorted(name.strip("`") for name in rows) == published
    for name in published:
        attrs = load_dataset(ROOT / "figures" / "data" / name).attrs
        created, rev, cpu, replicates = rows[f"``{name}``"]
        assert created == attrs["created"][:16].replace("T", " "), name
        assert rev.startswith(f"``{attrs['git_rev'][:7]}``"), name
        assert cpu == (f"{attrs['cpu']} ({attrs['cpu_count']})" if "cpu" in attrs
                       else "not recorded"), name
        assert replicates == str(attrs["n_replicates"]), name


def test_design_page_names_every_module_of_the_package():
    """The design page's module table lists each module and subpackage of ``anglesim`` (it
    went stale once, naming ``io.py`` and ``bench.py`` after they became packages)."""
    design = (ROOT / "docs" / "design.rst").read_text(encoding="utf-8")
    named = {name for row in rst_table_rows(design, "module")
             for name in re.findall(r"``([a-z_]+(?:\.py|/))``", row[0])}
    package = ROOT / "anglesim"
    present = {p.name + ("/" if p.is_dir() else "") for p in package.iterdir()
               if (p.suffix == ".py" or (p / "__init__.py").is_file())
               and not p.name.startswith("_")}
    assert named == present, (sorted(present - named), sorted(named - present))


def test_readme_layout_lists_every_module_and_is_the_import_contract():
    """The README's layout block places every module of ``anglesim`` on a line, and the
    import-linter contract CI runs (``pyproject.toml``) is that block transcribed, bottom line
    last: what the README claims about the flow of imports is what CI checks."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    text = README.read_text(encoding="utf-8")
    block = text[text.index("## Layout"):].split("```text\n", 1)[1].split("```", 1)[0]
    lines = [set(re.findall(r"\b([a-z_]+)(?:\.py|/)(?=\s)", line))
             for line in block.splitlines()[1:]]
    lines = [line for line in lines if line]
    package = ROOT / "anglesim"
    present = {p.stem if p.suffix == ".py" else p.name for p in package.iterdir()
               if (p.suffix == ".py" or (p / "__init__.py").is_file())
               and not p.name.startswith("_")}
    placed = set().union(*lines)
    assert placed == present, (sorted(present - placed), sorted(placed - present))

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    assert contract["type"] == "layers" and contract["containers"] == ["anglesim"]
    layers = [set(re.split(r"\s*[:|]\s*", layer.strip())) for layer in contract["layers"]]
    assert layers == lines[::-1]
