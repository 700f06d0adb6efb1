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
    "bias_law": ({"kappa", "loss", "replicate", "angle"},
                 {"fisher", "output_fisher", "bias", "bias_stderr", "squared_error", "slope",
                  "law_constant", "law_constant_stderr", "law_correlation", "law_explained",
                  "law_n_angles", "law_agreement", "prior_density", "control_fisher",
                  "control_bias", "control_bias_stderr", "control_squared_error",
                  "control_slope", "control_constant", "control_constant_stderr",
                  "control_n_angles", "failed"}),
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
    assert (np.abs(ds["control_bias"]) <= np.pi / 2).all()
    assert set(np.unique(ds["law_agreement"].values)) <= {-1.0, 0.0, 1.0}
    # the fits use only angles whose MSE is within twice the Cramér-Rao bound
    fitted = (ds["squared_error"] <= 2 / ds["fisher"]).sum("angle")
    np.testing.assert_array_equal(ds["law_n_angles"].values, fitted.values)
    assert len(ds.attrs["claims"]) == 24
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name


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


@pytest.mark.parametrize("n_rep", [2, 3, 8])
def test_band_note_says_whether_bands_are_drawn(n_rep):
    import xarray as xr

    from anglesim.studies._laws_common import MIN_BAND_REPLICATES, band_note

    note = band_note(xr.Dataset(coords={"replicate": np.arange(n_rep)}))
    assert ("no bands" in note) == (n_rep < MIN_BAND_REPLICATES)
    assert str(n_rep) in note


@pytest.mark.parametrize("c_true", [1.0, 0.4, -0.8])
def test_bias_law_fit_uses_only_efficient_angles(c_true):
    """law_fit recovers c from a bias c·d/dθ[1/J] at the angles whose MSE is within twice the
    Cramér-Rao bound, ignoring the inefficient ones whatever their bias; a negative c (an
    attraction, where the claim c > 0 must fail) comes out negative; the control's prefix."""
    import xarray as xr

    from anglesim.laws import inverse_fisher_slope
    from anglesim.studies.bias_law import CRB_FACTOR, law_fit

    theta = np.arange(48) * np.pi / 48
    fisher = xr.DataArray(400 * (1.5 + np.cos(2 * theta - 0.3)), dims="angle",
                          coords={"angle": theta})
    slope = inverse_fisher_slope(fisher, 4, fit="inverse")
    efficient = np.arange(48) % 3 != 0
    mse = np.where(efficient, 1.2, 5 * CRB_FACTOR) / fisher
    bias = xr.where(xr.DataArray(efficient, dims="angle"), c_true * slope, 0.3)
    network = xr.Dataset({"bias": bias, "squared_error": mse,
                          "bias_stderr": xr.full_like(fisher, 1e-4)})
    sz = {"n_harmonics": 4}
    fit = law_fit("", network, fisher, sz)
    assert int(fit["law_n_angles"]) == int(efficient.sum())
    np.testing.assert_allclose(float(fit["law_constant"]), c_true, rtol=1e-6)
    assert float(fit["law_constant_stderr"]) < 1e-2
    control = law_fit("control_", network, fisher, sz)
    assert "control_constant" in control and "law_constant" not in control
    assert control["control_constant"].attrs["long_name"].startswith("control: ")
