"""Every study (other than the quickstart, tested on its own) runs end to end in --quick mode.

Each study writes its Dataset with the documented dims and variables, draws its figure, and
``anglesim figures`` redraws that figure from the saved file alone.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

from anglesim import study as st
from anglesim.cli import main
from anglesim.io import load_dataset, unlabelled

# study: (dims the Dataset must have, variables it must hold)
EXPECTED = {
    "prior_specialisation": (
        {"kappa", "replicate", "stage", "layer", "angle", "prior", "epoch"},
        {"fisher", "fisher_error", "abs_error", "prior_density", "measure_specialisation",
         "measure_left_behind", "measure_spread", "measure_error_ratio", "failed",
         "fisher_region", "abs_error_region", "region_angles"},
    ),
    "loss_concentration": (
        {"loss", "kappa", "replicate", "layer", "angle", "epoch"},
        {"fisher", "fisher_error", "abs_error", "prior_density", "alpha", "alpha_predicted",
         "failed",
         "fisher_at_uniform_density", "fisher_at_uniform_level", "budget_ratio_predicted",
         "fit_share", "error_limit"},
    ),
    "pretrain_imprint": (
        {"kappa", "replicate", "state", "child", "layer", "angle"},
        {"fisher", "parent_fisher", "fisher_error", "parent_fisher_error", "imprint_within",
         "imprint_between", "imprint", "failed"},
    ),
    "model_choices": (
        {"nonlinearity", "readout", "data", "replicate", "layer", "angle", "epoch",
         "angle_set", "comb"},
        {"fisher", "fisher_error", "abs_error", "roughness", "n_peaks", "fisher_comb",
         "fisher_comb_mean",
         "error_comb", "failed"},
    ),
    "adapt_loop": (
        {"mode", "replicate", "round", "angle"},
        {"fisher", "prior_density", "fisher_cv", "prior_kl", "stop_round", "failed",
         "fisher_cv_final", "fisher_cv_change"},
    ),
    "reference_replication": (
        {"prior", "dataset_size", "replicate", "angle", "concentrated"},
        {"fisher", "fisher_stderr", "d_prime", "abs_error", "prior_density", "fisher_region",
         "abs_error_region", "gain", "gain_ci", "failed"},
    ),
    "finetune_data_size": (
        {"shift", "replicate", "finetune_size", "frozen", "angle"},
        {"fisher", "abs_error", "parent_fisher", "fisher_region", "abs_error_region",
         "parent_fisher_region", "parent_abs_error_region", "failed"},
    ),
    "finetune_shift": (
        {"shift", "replicate", "strategy", "n_train", "angle", "layer", "block", "region", "lr",
         "severity"},
        {"abs_error", "fisher", "cka", "feature_change", "probe_error", "weight_change",
         "val_loss", "heldout_error", "chosen_lr", "lp_ft_switch_epoch", "parent_error",
         "parent_heldout_error",
         "parent_fisher", "parent_probe_error", "in_distribution", "severity_error",
         "severity_base_error", "shift_value", "shift_reached", "id_error", "ood_error",
         "parent_id_error", "parent_ood_error", "chosen_lr_interior", "failed"},
    ),
    "natural_statistics": (
        {"rotation", "replicate", "network", "layer", "angle", "strategy", "peak"},
        {"fisher", "energy", "photo_accuracy", "pretrain_loss", "finetune_error", "bias_index",
         "bias_following", "energy_match_following", "phase_shift", "phase_shift_error",
         "phase_lag_mean", "failed"},
    ),
    "multitask": (
        {"other", "regime", "replicate", "layer", "angle", "epoch"},
        {"fisher", "fisher_other_only", "fisher_error", "fisher_other_only_error", "abs_error",
         "other_error", "other_error_other_only", "fisher_geomean",
         "other_chance", "probe_error", "log2_fisher", "fisher_log2_ratio",
         "fisher_log2_ratio_ci", "other_only_log2_ratio", "other_only_log2_ratio_ci",
         "angle_error", "other_error_rel", "other_error_other_only_rel", "probe_error_rel",
         "failed"},
    ),
    "learning_dynamics": (
        {"prior", "labels", "replicate", "step", "layer", "angle", "epoch"},
        {"fisher", "prior_density", "label_keep", "half_time", "half_time_gap", "alignment",
         "alignment_gain", "peak_offset", "common", "rare", "failed"},
    ),
}


def test_every_study_is_covered():
    from test_laws_studies import LAW_STUDIES  # the law studies have their own test file

    assert set(st.available()) - {"quickstart"} - set(LAW_STUDIES) == set(EXPECTED)


@pytest.mark.parametrize("study", sorted(EXPECTED))
def test_study_quick_end_to_end(study, tmp_path):
    results = tmp_path / "results"
    code = main(["run", study, "--quick", "--n-jobs", "1", "--results", str(results),
                 "--quiet", "--device", "cpu"])
    assert code == 0
    ds = load_dataset(results / f"{study}_quick.nc")
    dims, variables = EXPECTED[study]
    assert ds.attrs["study"] == study
    assert dims <= set(ds.dims), set(ds.dims)
    assert variables <= set(ds.data_vars), set(ds.data_vars)
    assert not ds["failed"].any()
    assert unlabelled(ds) == []  # what test_published asks of the full run's file
    assert np.isfinite(ds["fisher"]).all()
    if ds["fisher"].attrs.get("method") != "linear_bias_corrected":  # unbiased: may be < 0
        assert (ds["fisher"] >= 0).all()
    assert (results / f"{study}_quick.png").stat().st_size > 1000

    out = tmp_path / "figures"
    assert main(["figures", "--results", str(results), "--out", str(out)]) == 0
    assert (out / f"{study}_quick.png").stat().st_size > 1000
    assert (out / f"{study}_quick.pdf").stat().st_size > 1000


def test_model_choices_roughness_and_peaks_on_known_curves():
    from anglesim.studies import model_choices as mc

    theta = np.arange(64) * np.pi / 64
    assert mc.roughness(np.cos(2 * 3 * theta)) == pytest.approx(0.0, abs=1e-20)
    assert mc.roughness(np.cos(2 * 9 * theta)) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    # white noise spreads its power evenly over the 32 harmonics: 28/32 lie above the 4th
    mean = np.mean([mc.roughness(rng.normal(size=64)) for _ in range(200)])
    assert mean == pytest.approx(28 / 32, abs=0.03)
    for k in (1, 2, 5):
        assert mc.n_peaks(np.cos(2 * k * theta)) == k
    assert mc.n_peaks(0.01 * np.cos(2 * 3 * theta)) == 0  # below the prominence threshold


def test_adapt_loop_update_rule():
    from anglesim.studies import adapt_loop as al

    theta = np.arange(48) * np.pi / 48
    p = np.full(48, 1 / np.pi)
    fisher = np.exp(np.cos(2 * theta))  # smooth: the low-pass keeps it exactly
    new = al.update_prior(p, fisher, damping=1.0)
    assert np.mean(new) * np.pi == pytest.approx(1.0)  # a density on [0, π)
    expected = np.exp(-0.5 * np.cos(2 * theta))
    np.testing.assert_allclose(new, expected / expected.mean() / np.pi, rtol=1e-10)
    # a flat FI leaves the prior unchanged: the rule's fixed point
    np.testing.assert_allclose(al.update_prior(new, np.full(48, 7.0), 0.5), new, rtol=1e-12)
    with pytest.raises(ValueError, match="damping"):
        al.update_prior(p, fisher, damping=0.0)
    assert al.kl_divergence(new, new) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["quickstart"])
def test_every_built_in_study_is_declared_and_plans_both_sizes(name):
    import json

    from anglesim.study._finder import code_files

    declared = st.load(name)
    assert declared.name == name and declared.question.endswith("?")
    assert declared.figure is not None and declared.module.startswith("anglesim.studies.")
    for quick in (True, False):
        p = st.plan(declared, quick=quick)
        assert p.n_replicates == declared.sizes[p.size]["replicates"]
        assert set(declared.pair_axes) <= set(p.grid)
        assert all(len(v) > 0 for v in p.grid.values())
        json.dumps(p.config)  # the cache key is JSON
        assert p.config["code"]["study"] == st.code_version(declared)
    files = {f.name for f in code_files(declared)}
    assert "_recipes.py" in files  # what studies share is part of every study's code


STUDIES = Path(__file__).resolve().parents[1] / "anglesim" / "studies"


@pytest.mark.parametrize("path", sorted(p for p in STUDIES.rglob("*.py")
                                        if p.parent != STUDIES or not p.name.startswith("_")),
                         ids=lambda p: str(p.relative_to(STUDIES)))
def test_no_study_imports_another_or_seeds_or_sizes_by_hand(path):
    """A study imports shared recipes (``_``-modules), never another study; it draws its
    randomness from the replicate context (no ``torch.manual_seed``, no generator seeded
    inline) and gets its configuration from it (no ``resolve_size``)."""
    own = path.relative_to(STUDIES).parts[0].removesuffix(".py")
    others = {p.stem if p.suffix == ".py" else p.name for p in STUDIES.iterdir()
              if not p.name.startswith("_") and p.name != "__pycache__"} - {own}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith("anglesim.studies"):
                targets = module.split(".")[2:3] or [a.name for a in node.names]
            elif node.level and (path.parent == STUDIES or node.level > 1):
                targets = module.split(".")[:1] if module else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[2] for a in node.names
                       if a.name.startswith("anglesim.studies.")]
        assert not set(targets) & others, (path.name, targets)
        if isinstance(node, ast.Attribute) and node.attr == "manual_seed":
            # torch.manual_seed(...) or torch.Generator().manual_seed(...)
            assert not (isinstance(node.value, ast.Name) and node.value.id == "torch"), path
            assert not isinstance(node.value, ast.Call), (path.name, ast.unparse(node))
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("resolve_size", "make_generator"), (path.name, node.attr)
        if isinstance(node, ast.Name):
            assert node.id not in ("resolve_size", "make_generator"), (path.name, node.id)


def test_region_masks_use_the_one_boundary_rule():
    import math

    import xarray as xr

    from anglesim import angles
    from anglesim.studies import prior_specialisation as ps

    theta = np.arange(16) * math.pi / 16  # 45° from A (at 45°) is on the grid: 0° and 90°
    near, far = ps.region_masks(xr.DataArray(theta, dims="angle"), ps.LOC_A)
    expected_near, expected_far = angles.near_far(theta, ps.LOC_A)
    np.testing.assert_array_equal(near.values, expected_near)
    np.testing.assert_array_equal(far.values, expected_far)
    assert far.values[0] and far.values[8]  # exactly 45° away counts as far


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["quickstart"])
def test_every_study_takes_the_device_and_computes_the_same_on_the_cpu(name):
    """A replicate given ``params["device"] = "cpu"`` (what ``--device cuda`` sets, but on the
    CPU) runs through its device paths — train, the Fisher estimators, the generators — and
    gives exactly the replicate computed without a device."""
    import xarray as xr

    declared = st.load(name)
    assert declared.devices == ("cpu", "cuda")
    p = st.plan(declared, quick=True)
    assert "device" not in p.params  # the CPU is the default: it is not handed on
    condition = {axis: values[0] for axis, values in p.grid.items()}
    plain = declared.replicate(st.ReplicateContext(condition, 0, 11, dict(p.params)))
    on_cpu = declared.replicate(st.ReplicateContext(condition, 0, 11,
                                                    {**p.params, "device": "cpu"}))
    xr.testing.assert_identical(plain, on_cpu)
    assert st.plan(declared, quick=True, device="cpu").params == p.params


def test_fisher_variables_keep_each_calls_diagnostics():
    """Two networks' propagated FI in one Dataset: their per-call fisher_error (the float32
    exact solver's rounding estimate) differ, so as coordinates they conflict; fisher_variables
    keeps each as a variable named after its array, the FI values untouched."""
    import torch
    import xarray as xr

    from anglesim.fisher import propagated_fisher
    from anglesim.models import build_model
    from anglesim.studies._recipes import CNN, SPEC, fisher_variables

    angles = torch.tensor([0.3, 1.1, 2.0])
    a, b, c = (propagated_fisher(build_model(CNN, generator=torch.Generator().manual_seed(s)),
                                 SPEC, angles, layers=["fc", "output"], sigma=SPEC.noise_std,
                                 pool_ties="record") for s in (0, 1, 2))
    assert not np.array_equal(a["fisher_error"], b["fisher_error"])
    with pytest.raises(xr.MergeError):
        xr.Dataset({"fisher": a, "parent_fisher": c})

    children = xr.concat([a, b], dim="child")
    ds = xr.Dataset(fisher_variables(fisher=children, parent_fisher=c))
    np.testing.assert_array_equal(ds["fisher"].values, np.stack([a.values, b.values]))
    np.testing.assert_array_equal(ds["parent_fisher"].values, c.values)
    np.testing.assert_array_equal(ds["fisher_error"].sel(child=1), b["fisher_error"])
    np.testing.assert_array_equal(ds["parent_fisher_error"], c["fisher_error"])
    assert list(ds["parent_fisher_error_kind"].values) == list(c["error_kind"].values)
    assert list(ds["fisher_solver"].values) == list(a["solver"].values)
    assert ds["parent_fisher_error"].dims == ("layer", "angle")
    assert ds["parent_fisher_error"].attrs["units"] == "rad^-2"
    assert not set(ds.coords) & {"fisher_error", "error_kind", "iterations", "solver"}
    assert ds["fisher"].attrs == a.attrs
