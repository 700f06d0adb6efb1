"""Every published Dataset (figures/data) is self-describing and carries its claims, and the
results page's claims tables are those files' claims, regenerated here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anglesim.claims import claims_from_dataset, claims_table
from anglesim.io import load_dataset, unlabelled

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "figures" / "data"
TABLES = ROOT / "docs" / "claims"
FILES = sorted(DATA.glob("*.nc"))


@pytest.fixture(scope="module", params=FILES, ids=lambda p: p.stem)
def published(request):
    return request.param, load_dataset(request.param)


def test_every_variable_and_coordinate_has_units_and_a_long_name(published):
    path, ds = published
    assert unlabelled(ds) == [], path.name


def test_no_ratio_or_log_ratio_is_labelled_in_radians(published):
    """A ratio of two FIs (or its log) is dimensionless: units "1", never rad or rad⁻² (a log
    of FI itself may say "log2 rad^-2")."""
    path, ds = published
    wrong = []
    for name, var in ds.variables.items():
        label = f"{name} {var.attrs.get('long_name', '')}".lower()
        units = str(var.attrs.get("units", ""))
        if re.search(r"ratio|fold|gain", label) and re.search(r"rad", units):
            wrong.append(f"{name} ({var.attrs.get('long_name')}) in {units}")
    assert wrong == [], f"{path.name}: {wrong}"


def test_published_from_a_clean_tree(published):
    path, ds = published
    assert not str(ds.attrs.get("git_rev", "")).endswith("-dirty"), path.name


def test_results_page_claims_tables_are_the_files_claims(published):
    path, ds = published
    records = claims_from_dataset(ds)
    assert records, f"{path.name} carries no declared claims"
    table = TABLES / f"{path.stem}.rst"
    assert table.is_file(), (f"{table} missing: anglesim claims --results figures/data "
                             "--rst docs/claims")
    assert table.read_text(encoding="utf-8") == claims_table(records, "rst") + "\n"
    results = (ROOT / "docs" / "results.rst").read_text(encoding="utf-8")
    assert f"claims/{path.stem}.rst" in results, f"results page does not include {path.stem}"


def test_published_figure_meets_the_figure_standard(published):
    """The study's figure, redrawn from the stored file as ``make figures`` draws it, passes
    the written figure standard's automatic checks (docs: user guide, "Figures fit to print")."""
    import matplotlib.pyplot as plt

    from anglesim.plotting import check_figure
    from anglesim.study import load

    path, ds = published
    fig = load(ds.attrs["study"]).figure(ds)
    try:
        width = "double" if fig.get_size_inches()[0] > 3.5 else "single"
        assert check_figure(fig, width) == [], path.name
        assert (ROOT / "figures" / f"{path.stem}.png").is_file(), path.name
    finally:
        plt.close(fig)
