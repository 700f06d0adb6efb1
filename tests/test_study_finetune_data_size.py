"""finetune_data_size's regions, measures and declared claims on known answers."""

import math

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.data import evaluation_grid
from anglesim.studies import finetune_data_size as fd

ANGLE = evaluation_grid(36).double().numpy()  # the float32 grid as the study stores it


def synthetic(whole: float, kept: float, n: int = 8, seed: int = 0,
              sizes=tuple(fd.CLAIM_SIZES)) -> xr.Dataset:
    """A study-shaped Dataset: parents with FI 5000 near the old peak and 5 near the new one,
    error 1° and 78°; children fine-tuned with fc1 frozen reach FI 50 and error 8° near the new
    peak, whole-network children ``whole`` times that FI and 1/``whole`` times that error,
    falling with D_ft; both keep ``kept`` times the parent's FI near the old peak;
    log-normal noise per parent and child."""
    rng = np.random.default_rng(seed)
    near_new = fd.region_masks(xr.DataArray(ANGLE, dims="angle")).sel(region="near_new").values
    parent_fi = np.where(near_new, 5.0, 5000.0) * rng.lognormal(0, 0.2, (1, n, ANGLE.size))
    parent_err = np.where(near_new, math.radians(78), math.radians(1)) * rng.lognormal(
        0, 0.1, (1, n, ANGLE.size))
    fisher = np.empty((1, n, len(sizes), 2, ANGLE.size))
    error = np.empty_like(fisher)
    for i, d in enumerate(sizes):
        for j, mode in enumerate(fd.FROZEN):
            fold = whole if mode == "none" else 1.0
            new_fi = 50.0 * fold * (d / 16) ** 0.3
            fisher[:, :, i, j] = np.where(near_new, new_fi, kept * parent_fi)
            error[:, :, i, j] = np.where(near_new, math.radians(8) / fold / (d / 16) ** 0.3,
                                         parent_err)
    fisher *= rng.lognormal(0, 0.2, fisher.shape)
    error *= rng.lognormal(0, 0.2, error.shape)
    return xr.Dataset(
        {"fisher": (("shift", "replicate", "finetune_size", "frozen", "angle"), fisher),
         "abs_error": (("shift", "replicate", "finetune_size", "frozen", "angle"), error),
         "parent_fisher": (("shift", "replicate", "angle"), parent_fi),
         "parent_abs_error": (("shift", "replicate", "angle"), parent_err),
         "failed": (("shift", "replicate"), np.zeros((1, n), bool))},
        coords={"shift": [fd.SHIFT], "replicate": np.arange(n), "finetune_size": list(sizes),
                "frozen": list(fd.FROZEN), "angle": ANGLE})


def test_regions_hold_9_angles_around_each_peak():
    masks = fd.region_masks(xr.DataArray(ANGLE, dims="angle"))
    assert masks.sum("angle").values.tolist() == [9, 9]
    deg = np.degrees(ANGLE)
    np.testing.assert_allclose(deg[masks.sel(region="near_new").values][[0, -1]], [70, 110],
                               rtol=1e-6)
    assert sorted(deg[masks.sel(region="near_old").values].round()) == [
        0, 5, 10, 15, 20, 160, 165, 170, 175]


def test_measures_match_their_definitions():
    ds = fd.add_measures(synthetic(10.0, 0.5, n=4))
    masks = fd.region_masks(ds["angle"])
    for region in masks["region"].values:
        mask = masks.sel(region=region)
        np.testing.assert_allclose(ds["fisher_region"].sel(region=region),
                                   ds["fisher"].where(mask).mean("angle"))
        np.testing.assert_allclose(ds["parent_abs_error_region"].sel(region=region),
                                   ds["parent_abs_error"].where(mask).mean("angle"))
    for name in list(ds.data_vars) + list(ds.coords):
        if name != "failed":  # the runner's, labelled by it
            assert {"units", "long_name"} <= set(ds[name].attrs), name


@pytest.mark.parametrize("whole, kept, expected", [
    (10.0, 0.5, {"whole_error": "supported", "whole_fisher": "supported",
                 "old_fisher_lost": "supported"}),
    (0.1, 2.0, {"whole_error": "contradicted", "whole_fisher": "contradicted",
                "old_fisher_lost": "contradicted"}),
])
def test_claims_decide_as_the_data_say(whole, kept, expected):
    records = evaluate_claims(fd.add_measures(synthetic(whole, kept)), fd.CLAIMS)
    declared = [r for r in records if not r.exploratory]
    assert len(declared) == 3 * len(fd.CLAIM_SIZES) + 1 and {r.n for r in declared} == {8}
    for r in declared:
        if r.contrast in expected:
            assert r.verdict == expected[r.contrast], r
    # the error falls with D_ft in both cases (a factor 16^0.3 = 2.3 from 16 to 256 images)
    assert [r.verdict for r in declared if r.contrast == "more_data"] == ["supported"]


def test_no_difference_is_unresolved():
    records = evaluate_claims(fd.add_measures(synthetic(1.0, 1.0, seed=3)), fd.CLAIMS)
    verdicts = {r.contrast: r.verdict for r in records
                if r.contrast in ("whole_error", "whole_fisher", "old_fisher_lost")}
    assert set(verdicts.values()) == {"unresolved"}


@pytest.mark.parametrize("shape", ["full", "quick"])
def test_figure_meets_the_standard(shape):
    import matplotlib.pyplot as plt

    from anglesim.plotting import check_figure

    if shape == "full":
        ds = synthetic(10.0, 0.5)
    else:
        ds = synthetic(10.0, 0.5, n=2, sizes=(16, 32)).isel(angle=slice(None, None, 4))
    ds = fd.add_measures(ds)
    fig = fd.plot_finetune_data_size(ds)
    try:
        assert check_figure(fig, "double") == []
    finally:
        plt.close(fig)
    text = fd.figure_caption(ds)
    n = 8 if shape == "full" else 2
    assert f"n = {n} replicates" in text and f"n = {n} pairs" in text and "±" not in text


def test_quick_run_stores_claims_and_labels_everything(tmp_path):
    from anglesim import study as st
    from anglesim.claims import claims_from_dataset

    result = st.run("finetune_data_size", quick=True, results=tmp_path, progress=False,
                    draw=False)
    ds = result.dataset
    records = claims_from_dataset(ds)
    assert {r.contrast for r in records} == {c.name for c in fd.CLAIMS}
    assert all(r.verdict in ("unresolved", "exploratory") for r in records)
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds["region_angles"].values.tolist() == [3, 3]  # 8 angles: 0° and 90° ± 22.5°
    assert "caption:" in result.summary()
