"""The benchmark (`anglesim bench`) runs, and its parts compute what they claim.

The whole benchmark runs once in smoke mode (the smallest sizes, every section); the tests
check the table and the JSON report's structure, never the timings. The baselines it compares
against are checked for correctness: the NumPy renderer draws the same gratings, and the
finite-difference Fisher information agrees with the propagated estimator.
"""

import copy
import json
import math

import numpy as np
import pytest
import torch

from anglesim import bench
from anglesim.cli import main as cli_main
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.stimuli import render

ROW_KEYS = {"section", "measure", "value", "unit", "goal", "met", "verdict", "note"}
MACHINE_KEYS = {"date", "cores", "cpu", "torch_threads", "torch", "python", "numpy",
                "anglesim", "load_average_at_start"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`python -m anglesim.bench --smoke --json PATH`, run once for the module."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = bench.main(["--smoke", "--json", str(path)])
    return code, path


def test_smoke_run_writes_a_complete_report(smoke, capsys):
    code, path = smoke
    assert code == 0
    report = json.loads(path.read_text())
    assert report["mode"] == "smoke"
    assert MACHINE_KEYS <= set(report["machine"])
    assert report["machine"]["cores"] >= 1
    assert set(report["seconds"]) == set(bench.SECTIONS)
    rows = report["rows"]
    assert {r["section"] for r in rows} == set(bench.SECTIONS)
    for row in rows:
        assert ROW_KEYS <= set(row), row
        assert row["value"] is None or math.isfinite(row["value"])
        if row["goal"] is not None:
            assert row["goal"]["op"] in (">=", "<=")
            assert row["verdict"], row
    # every goal of the issue has its row
    goals = {(r["section"], r["goal"]["target"]) for r in rows if r["goal"] is not None}
    assert {("render", 50), ("render", 10), ("train", 0.4), ("fisher", 20),
            ("fisher_curve", 100), ("replicates", 0.85), ("quickstart", 180),
            ("quickstart", 2.0)} <= goals
    # smoke sizes cannot judge the replicate, curve and quickstart goals
    for row in rows:
        if row["section"] in ("replicates", "quickstart", "fisher_curve") and row["goal"]:
            assert row["met"] is None and row["verdict"] == "not judged at this size"
    details = report["details"]
    assert details["fisher"]["propagated_error"] < 1e-3
    assert details["replicates"]["seconds"]
    identical = [r for r in rows if r["measure"].startswith("1-thread runs bit-identical")]
    assert identical and identical[0]["value"] == 1.0


def test_table_lists_every_row(smoke):
    _, path = smoke
    report = json.loads(path.read_text())
    table = bench.format_table(report)
    lines = table.splitlines()
    assert lines[0].startswith("anglesim bench (smoke)")
    assert f"{report['machine']['cores']} cores" in lines[0]
    assert len(lines) == 3 + len(report["rows"])  # header, column names, rule, rows
    for row in report["rows"]:
        assert row["measure"] in table


def test_cli_runs_a_section_and_rejects_bad_options(tmp_path, capsys):
    path = tmp_path / "render.json"
    assert cli_main(["bench", "--smoke", "--only", "render", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "speed-up over NumPy" in out
    report = json.loads(path.read_text())
    assert {r["section"] for r in report["rows"]} == {"render"}
    assert bench.main(["--smoke", "--threads", "0"]) == 2
    with pytest.raises(SystemExit):
        bench.main(["--only", "nonsense"])


def test_numpy_baseline_draws_the_same_gratings():
    from anglesim.studies._common import SPEC

    angles = np.linspace(0, math.pi, 7, endpoint=False) + 0.05
    for size in (32, 64):
        spec = SPEC.replace(size=size)
        ours = render(torch.as_tensor(angles, dtype=torch.float32), spec, noise=False).numpy()
        base = bench.numpy_render(angles, spec, None, noise=False)
        np.testing.assert_allclose(base, ours, atol=2e-5)
        noisy = bench.numpy_render(angles, spec, np.random.default_rng(0))
        resid = noisy - base
        assert abs(resid.std() - spec.noise_std) < 0.05  # σ = 1 pixel noise
    with pytest.raises(ValueError, match="numpy_render"):
        bench.numpy_render(angles, SPEC.replace(clamp=(-1.0, 1.0)), None)


def test_finite_differences_agree_with_the_propagated_estimator():
    from anglesim.studies._common import SPEC, standard_cnn

    spec = SPEC.replace(aperture=None, size=16)
    torch.manual_seed(3)
    model = build_model(standard_cnn(image_size=16)).eval()
    angles = [0.3, 1.9]
    fd = bench.finite_difference_fisher(model, spec, angles)
    reference = propagated_fisher(copy.deepcopy(model).double(), spec,
                                  torch.tensor(angles, dtype=torch.float64)).values
    np.testing.assert_allclose(fd, reference, rtol=1e-5)
    with pytest.raises(ValueError, match="additive Gaussian"):
        bench.finite_difference_fisher(model, spec.replace(clamp=(-1.0, 1.0)), angles)


def test_goal_verdicts():
    at_least = bench.Goal(">=", 50)
    assert at_least.met(60) and not at_least.met(25)
    assert at_least.shortfall(25) == pytest.approx(2.0)
    at_most = bench.Goal("<=", 10)
    assert at_most.met(10) and not at_most.met(40)
    assert at_most.shortfall(40) == pytest.approx(4.0)
    row = bench.Row("render", "x", 25.0, "×", at_least)
    assert row.met is False and row.verdict() == "short 2.00×"
    unjudged = bench.Row("quickstart", "x", 1.0, "s", at_most, judged=False)
    assert unjudged.met is None and unjudged.verdict() == "not judged at this size"


def test_race_keeps_the_best_interleaved_time():
    calls = {"a": 0, "b": 0}

    def count(name):
        calls[name] += 1

    best = bench.race({"a": lambda: count("a"), "b": lambda: count("b")}, rounds=3,
                      min_seconds=0.0)
    assert set(best) == {"a", "b"} and all(t >= 0 for t in best.values())
    assert calls == {"a": 5, "b": 5}  # warm-up, calibration, three rounds of one call


def test_bad_mode_and_section_raise():
    with pytest.raises(ValueError, match="mode"):
        bench.run_benchmarks("huge")
    with pytest.raises(ValueError, match="unknown section"):
        bench.run_benchmarks("smoke", only=["nonsense"])
