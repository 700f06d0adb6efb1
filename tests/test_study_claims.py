"""Declared claims through the one runner: evaluated after a run, stored with the Dataset,
printed by the summary, by ``anglesim status`` and ``anglesim claims``, checked against the grid
when the study is declared, and never at the cost of a finished run's Dataset."""

from __future__ import annotations

import textwrap

import pytest

from anglesim import cli
from anglesim.claims import Contrast, claims_from_dataset
from anglesim.io import load_dataset
from anglesim.study import Study, load, run

STUDY_FILE = textwrap.dedent('''
    import numpy as np
    import xarray as xr

    from anglesim.claims import Contrast
    from anglesim.study import Study

    EFFECT = {"a": 0.0, "b": 1.0, "c": 1.0}


    def replicate(ctx):
        rng = ctx.numpy_generator("data")
        shift = EFFECT[ctx.condition["arm"]]
        return xr.Dataset({"score": ((), shift + 0.1 * rng.standard_normal()),
                           "noise": ((), rng.standard_normal())})


    CLAIMS = [
        Contrast(name="b_above_a", statement="arm b scores higher than arm a",
                 measure="score", arm={"arm": "b"}, against={"arm": "a"}, paired=True,
                 direction="greater"),
        Contrast(name="c_below_a", statement="arm c scores lower than arm a",
                 measure="score", arm={"arm": "c"}, against={"arm": "a"}, paired=True,
                 direction="less"),
        Contrast(name="noise_differs", statement="pure noise differs from zero",
                 measure="noise", arm={"arm": "a"}, against=0.0, direction="differs"),
        MEASURE_CLAIM
    ]

    STUDY = Study(name="claimed", question="Do the declared claims come out right?",
                  replicate=replicate,
                  sizes={"quick": {"replicates": 3}, "full": {"replicates": 8}},
                  grid={"arm": ["a", "b", "c"]}, pair_axes=("arm",), claims=CLAIMS)
''')


def _study_file(tmp_path, measure_claim: str = "") -> str:
    path = tmp_path / "claimed.py"
    path.write_text(STUDY_FILE.replace("MEASURE_CLAIM", measure_claim))
    return str(path)


def test_run_stores_and_prints_the_verdicts(tmp_path, capsys):
    result = run(_study_file(tmp_path), replicates=8, results=tmp_path / "out", progress=False)
    records = {r.name: r for r in result.claims}
    assert records["b_above_a"].verdict == "supported"
    assert records["c_below_a"].verdict == "contradicted"  # c is above a, not below
    assert records["noise_differs"].verdict in ("unresolved", "supported")
    assert records["b_above_a"].n == 8
    # stored with the file, read back the same
    saved = claims_from_dataset(load_dataset(result.path))
    assert [(r.name, r.verdict) for r in saved] == [(r.name, r.verdict) for r in result.claims]
    assert "declared claims:" in result.summary() and "b_above_a" in result.summary()

    assert cli.main(["claims", "--results", str(tmp_path / "out"), "--rst",
                     str(tmp_path / "rst")]) == 0
    table = (tmp_path / "rst" / "claimed.rst").read_text()
    assert ".. list-table::" in table and "supported" in table and "contradicted" in table
    assert cli.main(["status", _study_file(tmp_path), "--replicates", "8", "--results",
                     str(tmp_path / "out")]) == 0
    assert "declared claims in" in capsys.readouterr().out


def test_a_quick_run_marks_what_it_cannot_test(tmp_path):
    result = run(_study_file(tmp_path), quick=True, overrides=["grid.arm=[a,b]"],
                 results=tmp_path / "out", progress=False)
    records = {r.name: r for r in result.claims}
    assert records["c_below_a"].verdict == "unresolved"  # arm c is not in this run
    assert records["b_above_a"].n == 3


def test_a_claim_naming_a_cell_outside_the_grid_fails_at_declaration(tmp_path):
    study = load(_study_file(tmp_path))
    bad = Contrast(name="ghost", statement="arm z scores higher", measure="score",
                   arm={"arm": "z"}, against={"arm": "a"}, paired=True, direction="greater")
    with pytest.raises(ValueError, match=r"contrast 'ghost': arm\['arm'\] must be one of 'a', "
                                         r"'b', 'c', got 'z'"):
        Study(name="claimed", question="q", replicate=study.replicate, sizes=study.sizes,
              grid=study.grid, claims=[bad])
    with pytest.raises(ValueError, match=r"claims must be .*contrasts with distinct names"):
        Study(name="claimed", question="q", replicate=study.replicate, sizes=study.sizes,
              grid=study.grid, claims=[study.claims[0], study.claims[0]])
    with pytest.raises(ValueError, match=r"claims must be a list of anglesim.claims.Contrast"):
        Study(name="claimed", question="q", replicate=study.replicate, sizes=study.sizes,
              grid=study.grid, claims=study.claims[0])


def test_a_claim_that_cannot_be_evaluated_keeps_the_runs_dataset(tmp_path):
    broken = ('Contrast(name="broken", statement="s", measure=lambda ds: ds["absent"], '
              'label="absent", arm={"arm": "b"}, against={"arm": "a"}, paired=True, '
              'direction="greater")')
    with pytest.raises(RuntimeError, match=r"claims could not be evaluated .*saved without "
                                           r"them at"):
        run(_study_file(tmp_path, broken), quick=True, results=tmp_path / "out",
            progress=False)
    saved = load_dataset(tmp_path / "out" / "claimed_quick.nc")
    assert saved["score"].sizes["replicate"] == 3 and not claims_from_dataset(saved)
