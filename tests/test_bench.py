"""The benchmark (`anglesim bench`) runs, and its parts compute what they claim.

The benchmark runs once in smoke mode (the smallest sizes; every section but the replicates
one, which starts several study processes and is a slow test); the tests check the table and
the JSON report's structure, never the timings. The baselines it compares against are checked
for correctness: the NumPy renderer draws the same gratings, the finite-difference Fisher
information agrees with the propagated estimator, the ResNet's Fisher information obeys the
data-processing inequality, and the memory probe sees what is allocated. The package stays
outside the studies' and the CLI's import graph.
"""

import ast
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import anglesim.bench._harness as harness
import anglesim.bench._resnet_rows as resnet_rows
import anglesim.bench._solvers as solvers
from anglesim import bench
from anglesim.bench import resnet
from anglesim.bench._fisher import finite_difference_fisher
from anglesim.bench._render import numpy_render
from anglesim.bench._workloads import STANDARD_SPEC, standard_cnn
from anglesim.cli import main as cli_main
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.stimuli import render

ROW_KEYS = {"section", "measure", "value", "unit", "goal", "met", "verdict", "note"}
MACHINE_KEYS = {"date", "cores", "cpu", "torch_threads", "torch", "python", "numpy",
                "anglesim", "load_average_at_start"}
FAST = [s for s in bench.SECTIONS if s != "replicates"]
PACKAGE = Path(bench.__file__).resolve().parent


def _check_report(report, sections):
    assert report["mode"] == "smoke"
    assert MACHINE_KEYS <= set(report["machine"])
    assert report["machine"]["cores"] >= 1
    assert set(report["seconds"]) == set(sections)
    rows = report["rows"]
    assert {r["section"] for r in rows} == set(sections)
    for row in rows:
        assert ROW_KEYS <= set(row), row
        assert row["value"] is None or math.isfinite(row["value"])
        if row["goal"] is not None:
            assert row["goal"]["op"] in (">=", "<=")
            assert row["verdict"], row
        if row["section"] in harness.SIZES["smoke"].unjudged and row["goal"]:
            assert row["met"] is None and row["verdict"] == "not judged at this size"
    return rows


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`python -m anglesim.bench --smoke --only <all but replicates> --json PATH`, once."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = bench.main(["--smoke", "--only", *FAST, "--json", str(path)])
    return code, path


def test_smoke_run_writes_a_complete_report(smoke):
    code, path = smoke
    assert code == 0
    report = json.loads(path.read_text())
    rows = _check_report(report, FAST)
    # every goal of the issues has its row
    goals = {(r["section"], r["goal"]["target"]) for r in rows if r["goal"] is not None}
    assert {("render", 50), ("render", 10), ("train", 0.4), ("fisher", 20),
            ("fisher_curve", 100), ("quickstart", 180), ("quickstart", 2.0),
            ("solvers", 1.1), ("solvers", 1.0), ("resnet", 180)} <= goals
    details = report["details"]
    assert details["fisher"]["propagated_error"] < 1e-3
    # the solver rows: auto at every size, the float32 exact solver where it fits, and no
    # fisher_error below its true error (against the float64 network solved exactly)
    sizes = harness.SIZES["smoke"]
    for size in sizes.solver_sizes:
        auto = [r for r in rows if r["measure"] == f"{size} px: auto, every layer"]
        assert len(auto) == 1 and auto[0]["value"] > 0
        exact = [r for r in rows if r["measure"].startswith(f"{size} px: exact")
                 and r["unit"] == "ms/angle"]
        assert len(exact) == (1 if size <= sizes.solver_exact_max else 0)
        ratios = [r for r in rows if r["measure"].startswith(f"{size} px:")
                  and "true error" in r["measure"]]
        assert ratios and all(r["value"] <= 1.0 for r in ratios), ratios
    # the ResNet rows: every layer, with the products of a Krylov iteration
    for layer in resnet_rows.LAYERS:
        assert any(r["section"] == "resnet" and r["measure"].endswith(f"up to {layer}")
                   and r["value"] > 0 for r in rows)
    assert set(details["resnet"]["networks"]["trained"]) == set(resnet_rows.LAYERS)
    assert set(details["resnet"]["warm_start"]["iterations"]) == {"warm", "cold"}


def test_table_lists_every_row(smoke):
    _, path = smoke
    report = json.loads(path.read_text())
    table = harness.format_table(report)
    lines = table.splitlines()
    assert lines[0].startswith("anglesim bench (smoke)")
    assert f"{report['machine']['cores']} cores" in lines[0]
    assert len(lines) == 3 + len(report["rows"])  # header, column names, rule, rows
    for row in report["rows"]:
        assert row["measure"] in table


@pytest.mark.slow
def test_smoke_replicates_section_runs_the_study_and_compares_its_datasets(tmp_path):
    path = tmp_path / "replicates.json"
    assert bench.main(["--smoke", "--only", "replicates", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    rows = _check_report(report, ["replicates"])
    assert ("replicates", 0.85) in {(r["section"], r["goal"]["target"]) for r in rows
                                    if r["goal"]}
    identical = [r for r in rows if r["measure"].startswith("1-thread runs bit-identical")]
    assert identical and identical[0]["value"] == 1.0
    assert report["details"]["replicates"]["seconds"]


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


def test_workloads_are_the_studies_standard_stimulus_and_cnn():
    from anglesim.models import CNNConfig
    from anglesim.studies._recipes import CNN, SPEC

    assert STANDARD_SPEC == SPEC
    assert standard_cnn() == CNN
    assert standard_cnn("bins", 12, image_size=64) == CNNConfig.standard("bins", 12,
                                                                          image_size=64)


def test_the_package_imports_neither_the_cli_nor_the_studies():
    """Statically (every import statement of every module) and at run time (a fresh
    interpreter importing the package loads neither)."""
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert node.module != "cli" and "studies" not in (node.module or ""), \
                    (path.name, names)
                assert not (node.level == 2 and "cli" in [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name != "anglesim.cli" and not alias.name.startswith(
                        "studies"), (path.name, alias.name)
    code = ("import sys, anglesim.bench; print([m for m in sys.modules if m in "
            "('anglesim.cli', 'anglesim.study') or m.startswith(('studies', 'anglesim.studies'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    # and nothing in anglesim imports the benchmark (the CLI only when `bench` is called)
    code = ("import sys, anglesim, anglesim.cli, anglesim.training, anglesim.replicates, "
            "anglesim.fisher; print([m for m in sys.modules if m.startswith('anglesim.bench')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_numpy_baseline_draws_the_same_gratings():
    spec0 = STANDARD_SPEC
    angles = np.linspace(0, math.pi, 7, endpoint=False) + 0.05
    for size in (32, 64):
        spec = spec0.replace(size=size)
        ours = render(torch.as_tensor(angles, dtype=torch.float32), spec, noise=False).numpy()
        base = numpy_render(angles, spec, None, noise=False)
        np.testing.assert_allclose(base, ours, atol=2e-5)
        noisy = numpy_render(angles, spec, np.random.default_rng(0))
        resid = noisy - base
        assert abs(resid.std() - spec.noise_std) < 0.05  # σ = 1 pixel noise
    for bad in (spec0.replace(clamp=(-1.0, 1.0)), spec0.replace(channels=3)):
        with pytest.raises(ValueError, match="numpy_render"):
            numpy_render(angles, bad, None)


def test_finite_differences_agree_with_the_propagated_estimator():
    spec = STANDARD_SPEC.replace(aperture=None, size=16)
    torch.manual_seed(3)
    model = build_model(standard_cnn(image_size=16)).eval()
    angles = [0.3, 1.9]
    fd = finite_difference_fisher(model, spec, angles)
    reference = propagated_fisher(copy.deepcopy(model).double(), spec,
                                  torch.tensor(angles, dtype=torch.float64)).values
    np.testing.assert_allclose(fd, reference, rtol=1e-5)
    # with a large ridge the two agree only if the ridge is the same (ε times each unit's own
    # noise variance): a trace-relative ridge would differ by far more than 1e-5 here
    fd = finite_difference_fisher(model, spec, angles, eps=0.1)
    reference = propagated_fisher(copy.deepcopy(model).double(), spec,
                                  torch.tensor(angles, dtype=torch.float64), eps=0.1,
                                  solver="exact").values
    np.testing.assert_allclose(fd, reference, rtol=1e-5)
    with pytest.raises(ValueError, match="additive Gaussian"):
        finite_difference_fisher(model, spec.replace(clamp=(-1.0, 1.0)), angles)


def test_resnet_fisher_obeys_data_processing_with_the_exact_solver():
    net = resnet.resnet_model(width=4, seed=0)
    spec = STANDARD_SPEC.replace(size=32, channels=3)
    run = solvers.propagated(net, spec, torch.tensor([0.4, 1.3]), "exact",
                             layers=["input", "maxpool", "layer2", "output"])
    fi = run["values"]
    assert fi.shape == (4, 2) and np.isfinite(fi).all() and (fi >= 0).all()
    assert (fi[1:] <= fi[0] * (1 + 1e-4)).all()  # no layer above the pixels
    assert run["seconds"] > 0 and run["peak_bytes"] >= 0
    krylov = solvers.propagated(net, spec, torch.tensor([0.4, 1.3]), "krylov",
                                layers=["maxpool", "layer2"], rtol=1e-4)
    np.testing.assert_allclose(krylov["values"], fi[1:3], rtol=1e-3)
    assert len(krylov["info"]["iterations"]) == 2  # the estimator's counts reach the report


@pytest.mark.parametrize("mib", [16, 200])
def test_peak_memory_sees_what_is_allocated(mib):
    n = mib * 2**20 // 4

    def allocate():
        x = torch.ones(n)  # written, so the pages are real
        time.sleep(0.25)  # alive for 100 sampling intervals: the sampler is a thread, and on a
        return float(x[-1])  # loaded machine it may not run during a 2 ms allocation

    value, seconds, peak, kind = harness.peak_memory(allocate)
    assert value == 1.0 and seconds >= 0 and kind
    assert peak >= 0.9 * mib * 2**20
    _, _, idle, _ = harness.peak_memory(lambda: None)
    assert idle < 8 * 2**20


def test_goal_verdicts():
    at_least = harness.Goal(">=", 50)
    assert at_least.met(60) and not at_least.met(25)
    assert at_least.shortfall(25) == pytest.approx(2.0)
    at_most = harness.Goal("<=", 10)
    assert at_most.met(10) and not at_most.met(40)
    assert at_most.shortfall(40) == pytest.approx(4.0)
    row = harness.Row("render", "x", 25.0, "×", at_least)
    assert row.met is False and row.verdict() == "short 2.00×"
    unjudged = harness.Row("quickstart", "x", 1.0, "s", at_most, judged=False)
    assert unjudged.met is None and unjudged.verdict() == "not judged at this size"
    missing = harness.Row("solvers", "x", math.nan, "s", at_most)
    assert missing.met is None and missing.verdict() == "not measured"


def test_race_keeps_the_best_interleaved_time():
    calls = {"a": 0, "b": 0}

    def count(name):
        calls[name] += 1

    best = harness.race({"a": lambda: count("a"), "b": lambda: count("b")}, rounds=3,
                      min_seconds=0.0)
    assert set(best) == {"a", "b"} and all(t >= 0 for t in best.values())
    assert calls == {"a": 5, "b": 5}  # warm-up, calibration, three rounds of one call


def test_bad_mode_and_section_raise():
    with pytest.raises(ValueError, match="mode"):
        bench.run_benchmarks("huge")
    with pytest.raises(ValueError, match="unknown section"):
        bench.run_benchmarks("smoke", only=["nonsense"])
