"""The law studies (issue 17) run end to end in --quick mode and redraw from their files."""

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
    "surgical_sweep": ({"shift", "replicate", "n_train", "strategy", "lr"},
                       {"test_error", "chosen_lr", "best_step_fraction", "val_loss",
                        "finetune_steps", "parent_error", "parent_source_error", "undo_error",
                        "log2_error_ratio", "lr_interior", "failed"}),
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


def _bias_law(ds):
    assert (np.abs(ds["bias"]) <= np.pi / 2).all()
    assert set(np.unique(ds["law_agreement"].values)) <= {-1.0, 0.0, 1.0}


def _surgical_sweep(ds):
    assert set(np.unique(ds["chosen_lr"].values)) <= set(ds["lr"].values)
    assert ((ds["best_step_fraction"] > 0) & (ds["best_step_fraction"] <= 1)).all()
    assert (ds["log2_error_ratio"].sel(strategy="full") == 0).all()
    assert (ds["test_error"] > 0).all() and (ds["test_error"] < np.pi / 2).all()
    assert not [k for k, v in ds.variables.items()
                if not {"units", "long_name"} <= set(v.attrs)]  # issue 22's metadata


CHECKS = {"signal_noise": _signal_noise, "anisotropy": _anisotropy, "bias_law": _bias_law,
          "surgical_sweep": _surgical_sweep}


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
