"""The law studies (issue 17) run end to end in --quick mode and redraw from their files."""

import math

import numpy as np
import pytest

from anglesim.cli import main
from anglesim.io import load_dataset
from anglesim.study import available

# study: (dims the Dataset must have, variables it must hold)
LAW_STUDIES = {
    "anisotropy": ({"prior", "replicate", "state", "layer", "angle"},
                   {"fisher", "abs_error", "cardinal_oblique", "failed"}),
    "bias_law": ({"prior", "loss", "replicate", "angle"},
                 {"fisher", "bias", "bias_stderr", "slope", "law_constant", "law_correlation",
                  "law_explained", "law_n_angles", "law_agreement", "prior_density", "failed"}),
    "signal_noise": ({"shift", "replicate", "strategy", "layer", "split_angle", "term"},
                     {"fisher_terms", "delta_total", "delta_signal", "delta_noise",
                      "delta_interaction", "delta_total_prior", "delta_signal_prior",
                      "id_error", "parent_id_error", "failed"}),
    "corruption_shift": ({"corruption", "replicate", "strategy", "n_train", "angle", "layer",
                          "lr"},
                         {"error_id", "error_source", "fisher", "val_loss", "chosen_lr",
                          "parent_fisher", "source_fisher", "level", "reached", "id_error",
                          "ood_error", "id_error_gain", "input_fisher_ratio", "failed"}),
}


def _signal_noise(ds):
    """linear_probe trains only the head: every trunk block's split must be exactly 0."""
    lp = ds.sel(strategy="linear_probe")
    for term in ("delta_total", "delta_signal", "delta_noise", "delta_interaction"):
        np.testing.assert_allclose(lp[term].sel(layer=["conv1", "conv2", "fc"]).values, 0.0,
                                   atol=1e-9)
    assert np.isfinite(ds["delta_total"]).all()


def _anisotropy(ds):
    # the pixels' FI does not depend on the network; no layer can exceed it (data processing)
    fi = ds["fisher"]
    np.testing.assert_allclose(fi.sel(layer="input", state="untrained").values,
                               fi.sel(layer="input", state="trained").values, rtol=1e-6)
    assert (fi <= fi.sel(layer="input") * (1 + 1e-5)).all()
    assert (fi > 0).all()
    assert set(ds["cardinal_oblique"].dims) == {"prior", "replicate", "state", "layer"}
    # the pixels' contrast is the same in every network; the claims cover every later layer
    co = ds["cardinal_oblique"].sel(layer="input")
    np.testing.assert_allclose(co.values, float(co.isel(prior=0, replicate=0, state=0)))
    names = {r["name"].split("[")[0] for r in ds.attrs["claims"]}
    assert names == {"untrained_obliques", "anisotropy"}
    assert len(ds.attrs["claims"]) == 11
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name


def _bias_law(ds):
    assert (np.abs(ds["bias"]) <= np.pi / 2).all()
    assert set(np.unique(ds["law_agreement"].values)) <= {-1.0, 0.0, 1.0}


CHECKS = {"signal_noise": _signal_noise, "anisotropy": _anisotropy, "bias_law": _bias_law}


def test_the_law_studies_are_listed():
    assert set(LAW_STUDIES) <= set(available())


@pytest.mark.parametrize("study", sorted(LAW_STUDIES))
def test_law_study_quick_end_to_end(study, tmp_path):
    results = tmp_path / "results"
    assert main(["run", study, "--quick", "--n-jobs", "1", "--results", str(results),
                 "--quiet"]) == 0
    ds = load_dataset(results / f"{study}_quick.nc")
    dims, variables = LAW_STUDIES[study]
    assert ds.attrs["study"] == study
    assert dims <= set(ds.dims), set(ds.dims)
    assert variables <= set(ds.data_vars), variables - set(ds.data_vars)
    assert not ds["failed"].any()
    assert (results / f"{study}_quick.png").stat().st_size > 1000
    CHECKS.get(study, lambda _: None)(ds)
    out = tmp_path / "figures"
    assert main(["figures", "--results", str(results), "--out", str(out)]) == 0
    assert (out / f"{study}_quick.pdf").stat().st_size > 1000


def test_corruption_phases_and_ladder():
    from anglesim.studies import corruption_shift as cs

    sz = cs.SIZES["full"]
    task = cs.task_for("blur", 1.5)
    assert task.spec.blur == 1.5
    ph = cs.phase_for(task, "surgical_fc", 64, 1e-3, sz)
    assert ph.strategy == "surgical" and ph.strategy_params == {"blocks": ["fc"]}
    assert ph.dataset_size * 8 == 64
    ph = cs.phase_for(task, "ldifs", 64, 1e-3, sz)
    assert ph.strategy == "ldifs"
    assert cs.phase_for(task, "surgical", 64, 1e-3, sz).strategy_params == {"blocks": ["conv1"]}
    # every ladder makes the stimulus harder in order: the pixels' FI falls rung by rung
    from anglesim.fisher import propagated_fisher
    from anglesim.models import reference_mlp

    net = reference_mlp(image_size=32, hidden=(8, 4))
    for kind, ladder in cs.LADDERS.items():
        fi = [float(propagated_fisher(net, cs.corrupt(cs.SPEC, kind, v), [0.5],
                                      ["input"]).mean()) for v in ladder]
        assert all(a > b for a, b in zip(fi, fi[1:], strict=False)), (kind, fi)
    assert math.isclose(fi[0] / fi[-1], (0.8 / 0.2) ** 2, rel_tol=1e-4)  # contrast: c²


@pytest.mark.parametrize("n_rep, bands", [(2, 0), (3, 1), (8, 1)])
def test_replicate_band_draws_an_interval_only_from_three_replicates(n_rep, bands):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    from anglesim.studies._laws_common import band_note, replicate_band

    rng = np.random.default_rng(n_rep)
    da = xr.DataArray(rng.uniform(1, 2, (n_rep, 5)), dims=("replicate", "angle"))
    fig, ax = plt.subplots()
    replicate_band(ax, np.arange(5), da, "C0", "x", log=True)
    assert len(ax.collections) == bands
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.exp(np.log(da).mean("replicate")))
    plt.close(fig)
    note = band_note(xr.Dataset(coords={"replicate": np.arange(n_rep)}))
    assert ("no bands" in note) == (bands == 0)
