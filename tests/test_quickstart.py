"""End to end: the quickstart study through the command line, and figure regeneration."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from anglesim.cli import main
from anglesim.io import load_dataset
from anglesim.pool_ties import PoolTieWarning


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main(["quickstart", "--quick", "--n-jobs", "1", "--results", str(results),
                     "--quiet"])
    return code, results, [w for w in seen if issubclass(w.category, PoolTieWarning)]


def test_quickstart_quick_writes_dataset_and_figure(quick_run):
    code, results, ties = quick_run
    assert code == 0
    assert ties == []  # no warning about the study's own stimulus (said in its summary)
    ds = load_dataset(results / "quickstart_quick.nc")
    assert ds.attrs["study"] == "quickstart"
    assert {"kappa", "replicate", "phase", "layer", "angle", "epoch"} <= set(ds.dims)
    assert ds.sizes["replicate"] == 2 and ds.sizes["angle"] == 8
    assert list(ds["phase"].values) == ["pretrain", "finetune"]
    assert {"input", "conv1", "conv2", "fc", "head", "output"} <= set(ds["layer"].values)
    assert not ds["failed"].any()
    fi = ds["fisher"]
    assert np.isfinite(fi).all() and (fi > 0).all()
    # no layer can carry more information than the pixels themselves (data processing)
    assert (fi <= fi.sel(layer="input") * (1 + 1e-3)).all()
    err = ds["abs_error"]
    assert ((err >= 0) & (err <= math.pi / 2)).all()
    for suffix in (".png", ".pdf"):
        assert (results / f"quickstart_quick{suffix}").stat().st_size > 1000
    # replicates differ (distinct seeds), and the prior is the same for both
    assert not np.allclose(fi.isel(replicate=0), fi.isel(replicate=1))
    np.testing.assert_allclose(ds["prior_density"].isel(replicate=0),
                               ds["prior_density"].isel(replicate=1))


def test_quickstart_quick_stores_windows_claims_and_metadata(quick_run):
    from anglesim.claims import claims_from_dataset
    from anglesim.plotting import check_figure
    from anglesim.studies import quickstart as qs

    _, results, _ = quick_run
    ds = load_dataset(results / "quickstart_quick.nc")
    # 8 angles, every 22.5°: near 67.5°, 90°, 112.5° (boundaries included), far 5 of 8
    assert ds["window_angles"].sel(window=["near", "far", "all"]).values.tolist() == [3, 5, 8]
    fi = ds["fisher"].sel(layer="output")
    near = fi.sel(angle=ds["angle"][[3, 4, 5]]).mean("angle")
    np.testing.assert_allclose(ds["fisher_window"].sel(window="near", layer="output"), near,
                               rtol=1e-6)
    np.testing.assert_allclose(
        ds["fisher_gain"].sel(window="near"),
        np.log2(ds["fisher_window"].sel(window="near", phase="finetune")
                / ds["fisher_window"].sel(window="near", phase="pretrain")), rtol=1e-12)
    records = claims_from_dataset(ds)
    declared = [r for r in records if not r.exploratory]
    assert len(declared) == 8 and {r.contrast for r in records} == {c.name for c in qs.CLAIMS}
    assert all(r.n == 2 for r in records)
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds["fisher_gain"].attrs["units"] == "1"
    fig = qs.plot_quickstart(ds)
    assert check_figure(fig, "double") == []
    text = qs.figure_caption(ds)
    assert "near, 3 of 8 angles" in text and "n = 2" in text


def synthetic(angle: np.ndarray, near_fold: float, far_fold: float, n: int = 8,
              seed: int = 0):
    """A quickstart-shaped Dataset whose FI after fine-tuning is the FI before times
    ``near_fold`` within 22.5° of 90° and ``far_fold`` beyond (log-normal replicate noise)."""
    import xarray as xr

    from anglesim.distributions import VonMises
    from anglesim.studies import quickstart as qs

    rng = np.random.default_rng(seed)
    layers = ["input", "conv1", "conv2", "fc", "head", "output"]
    dist = np.abs((angle - math.pi / 2 + math.pi / 2) % math.pi - math.pi / 2)
    fold = np.where(dist <= math.pi / 8 + 1e-6, near_fold, far_fold)
    depth = np.linspace(0, 1, len(layers))[:, None]  # the change grows with depth
    before = 1000 * rng.lognormal(0, 0.1, (n, len(layers), angle.size))
    after = before * fold ** depth * rng.lognormal(0, 0.05, before.shape)
    density = VonMises(math.pi / 2, 4.0).pdf(angle)
    error = 0.02 * rng.lognormal(0, 0.1, (n, 2, angle.size))
    error[:, 1] *= np.where(dist >= math.pi / 4, 1 / far_fold, 1.0)
    ds = xr.Dataset(
        {"fisher": (("kappa", "replicate", "phase", "layer", "angle"),
                    np.stack([before, after], 1)[None]),
         "abs_error": (("kappa", "replicate", "phase", "angle"), error[None]),
         "prior_density": (("kappa", "replicate", "phase", "angle"),
                           np.broadcast_to(np.stack([np.full_like(density, 1 / math.pi),
                                                     density]), (1, n, 2, angle.size))),
         "failed": (("kappa", "replicate"), np.zeros((1, n), bool))},
        coords={"kappa": [4.0], "replicate": np.arange(n), "phase": ["pretrain", "finetune"],
                "layer": layers, "angle": angle})
    return qs.add_windows(ds)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_quickstart_windows_on_the_full_grid_hold_13_and_25_angles(precision):
    """The fixed boundary rule: on the 48-angle grid, float32 as the study stores it or
    float64, ±22.5° around 90° holds 13 angles and ≥ 45° holds 25."""
    from anglesim.data import evaluation_grid
    from anglesim.studies import quickstart as qs

    angle = (evaluation_grid(48).double().numpy() if precision == "float32"
             else np.arange(48) * math.pi / 48)
    ds = synthetic(angle, 3.0, 0.8)
    masks = qs.window_masks(ds)
    assert masks.sum("angle").values.tolist() == [13, 25, 48]
    assert ds["window_angles"].values.tolist() == [13, 25, 48]
    near = np.degrees(angle[masks.sel(window="near").values])
    np.testing.assert_allclose(near[[0, -1]], [67.5, 112.5], rtol=1e-6)


def test_quickstart_claims_on_known_answers():
    """Declared claims decide as the data say: supported where FI moves to the peak,
    contradicted where it moves away, unresolved where nothing changes."""
    from anglesim.claims import evaluate_claims
    from anglesim.studies import quickstart as qs

    angle = np.arange(48) * math.pi / 48

    def verdicts(near_fold, far_fold):
        records = evaluate_claims(synthetic(angle, near_fold, far_fold), qs.CLAIMS)
        return {r.name: r.verdict for r in records if not r.exploratory}

    moved = verdicts(3.0, 0.7)
    assert set(moved.values()) == {"supported"}, moved
    assert len(moved) == 8
    away = verdicts(0.4, 1.5)
    assert away["near_gain[layer=output]"] == "contradicted"
    assert away["far_loss"] == "contradicted" and away["gain_grows"] == "contradicted"
    assert away["error_rises_far"] == "contradicted"
    still = verdicts(1.0, 1.0)
    assert still["near_gain[layer=output]"] == "unresolved" and still["far_loss"] == "unresolved"


def test_rerun_uses_the_cache(quick_run, capsys):
    _, results, _ = quick_run
    before = load_dataset(results / "quickstart_quick.nc")
    code = main(["quickstart", "--quick", "--n-jobs", "1", "--results", str(results), "--quiet"])
    assert code == 0
    after = load_dataset(results / "quickstart_quick.nc")
    np.testing.assert_array_equal(before["fisher"].values, after["fisher"].values)


def test_figures_redraws_from_saved_datasets(quick_run, tmp_path):
    _, results, _ = quick_run
    assert main(["figures", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "quickstart_quick.png").stat().st_size > 1000


def test_unknown_study_is_a_one_line_error(capsys):
    assert main(["run", "no_such_study", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "no_such_study" in err and "quickstart" in err


def test_figures_without_results_is_an_error(tmp_path, capsys):
    assert main(["figures", "--results", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "anglesim", "list"], capture_output=True,
                         text=True, check=True)
    assert "quickstart" in out.stdout.split()


@pytest.mark.slow
def test_full_quickstart_decodes_well_below_chance(tmp_path):
    code = main(["quickstart", "--n-jobs", "2", "--results", str(tmp_path), "--quiet"])
    assert code == 0
    ds = load_dataset(tmp_path / "quickstart.nc")
    err = ds["abs_error"].mean(["angle", "replicate"])
    assert (err < math.pi / 16).all(), err.values  # chance is π/4


def test_non_editable_install_runs_every_study_from_another_folder(tmp_path):
    """`pip install --target` (no checkout on the path) lists every built-in study, and runs
    the quickstart from an unrelated folder with the package's own copy of the study."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "anglesim", src / "anglesim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                           "--no-build-isolation", "--target", str(target), "-q", str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if k != "ANGLESIM_STUDIES"}
    env["PYTHONPATH"] = str(target)

    def anglesim(*args):
        return subprocess.run([sys.executable, "-m", "anglesim", *args], capture_output=True,
                              text=True, cwd=elsewhere, env=env, timeout=300)

    listed = anglesim("list")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {"quickstart", "finetune_shift", "reference_replication"} <= names
    ran = anglesim("run", "quickstart", "--quick", "replicates=1", "--n-jobs", "1", "--quiet",
                   "--results", "out")
    assert ran.returncode == 0, ran.stderr
    ds = load_dataset(elsewhere / "out" / "quickstart_quick.nc")
    assert ds.sizes["replicate"] == 1 and not ds["failed"].any()
    assert (elsewhere / "out" / "quickstart_quick.png").is_file()
    import json

    assert json.loads(ds.attrs["config"])["code"]["origin"] == "built-in"
    code = subprocess.run([sys.executable, "-c", "import anglesim.study as s; "
                           "from anglesim.study._finder import code_files; "
                           "print(code_files(s.load('quickstart'))[-1])"],
                          capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
    assert code.stdout.strip().startswith(str(target)), code.stdout + code.stderr
