"""reference_replication's regions, measures and declared claims on known answers."""

import math

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.data import evaluation_grid
from anglesim.studies import reference_replication as rr

ANGLE = evaluation_grid(36).double().numpy()  # the float32 grid as the study stores it


def synthetic(near: float, far: float, n: int = 8, seed: int = 0, sizes=(512,),
              priors=("uniform", *rr.CLAIM_PRIORS)) -> xr.Dataset:
    """A study-shaped Dataset: uniform networks have FI 3000 and error 1° everywhere; a
    concentrated prior's networks have FI × ``near`` within 22.5° of its peak and × ``far``
    45° or more from it, and error × 1/``far`` there; log-normal replicate noise."""
    rng = np.random.default_rng(seed)
    fisher = np.empty((len(priors), len(sizes), n, ANGLE.size))
    error = np.empty_like(fisher)
    for i, prior in enumerate(priors):
        fold = np.ones(ANGLE.size)
        if prior != "uniform":
            is_near, is_far = rr.ang.near_far(ANGLE, rr.peak(prior))
            fold = np.where(is_near, near, np.where(is_far, far, 1.0))
        noise = rng.lognormal(0, 0.3, (len(sizes), n, ANGLE.size))
        fisher[i] = 3000 * fold * noise
        error[i] = math.radians(1) / fold * rng.lognormal(0, 0.2, (len(sizes), n, ANGLE.size))
    dims = ("prior", "dataset_size", "replicate", "angle")
    return xr.Dataset(
        {"fisher": (dims, fisher), "abs_error": (dims, error),
         "d_prime": (dims, np.sqrt(fisher) * rr.DTHETA),
         "failed": (dims[:3], np.zeros(fisher.shape[:3], bool))},
        coords={"prior": list(priors), "dataset_size": list(sizes), "replicate": np.arange(n),
                "angle": ANGLE})


def test_regions_hold_9_and_19_of_36_angles_around_each_peak():
    masks = rr.region_masks(xr.DataArray(ANGLE, dims="angle"), ["vm4_0", "vm8_60", "vm8_90"])
    assert masks.sum("angle").values.tolist() == [[9, 19]] * 3
    deg = np.degrees(ANGLE)
    np.testing.assert_allclose(deg[masks.sel(concentrated="vm8_90", region="near").values]
                               [[0, -1]], [70, 110], rtol=1e-6)
    # around 0° the near region wraps: 160°–175° and 0°–20°
    near0 = deg[masks.sel(concentrated="vm4_0", region="near").values]
    assert near0.min() == 0 and near0.max() == pytest.approx(175)


def test_measures_match_their_definitions():
    ds = rr.add_measures(synthetic(2.0, 0.1, n=5, sizes=(512, 2048)))
    masks = rr.region_masks(ds["angle"], list(rr.CLAIM_PRIORS))
    for label in rr.CLAIM_PRIORS:
        near = masks.sel(concentrated=label, region="near")
        fi = ds["fisher"].where(near).mean("angle")
        np.testing.assert_allclose(
            ds["fisher_region"].sel(concentrated=label, region="near"), fi)
        log2 = np.log2(fi)
        expected = (log2.sel(prior=label).mean("replicate")
                    - log2.sel(prior="uniform").mean("replicate"))
        np.testing.assert_allclose(ds["gain"].sel(concentrated=label, region="near"), expected)
    assert (ds["gain"].sel(region="near") > 0).all() and (ds["gain"].sel(region="far") < 0).all()
    assert (ds["gain_ci"] > 0).all()
    for name in list(ds.data_vars) + list(ds.coords):
        if name != "failed":  # the runner's, labelled by it
            assert {"units", "long_name"} <= set(ds[name].attrs), name


@pytest.mark.parametrize("near, far, verdict", [
    (2.0, 0.1, {"near_gain": "supported", "far_loss": "supported", "error_far": "supported"}),
    (0.5, 4.0, {"near_gain": "contradicted", "far_loss": "contradicted",
                "error_far": "contradicted"}),
])
def test_claims_decide_as_the_data_say(near, far, verdict):
    records = evaluate_claims(rr.add_measures(synthetic(near, far)), rr.CLAIMS)
    declared = [r for r in records if not r.exploratory]
    assert len(declared) == 6 and {r.n for r in declared} == {16}
    for r in declared:
        assert r.verdict == verdict[r.contrast.rsplit("_vm", 1)[0]], r
    assert {r.verdict for r in records if r.exploratory} == {"exploratory"}


def test_no_difference_is_unresolved_and_other_sizes_are_not_in_the_family():
    records = evaluate_claims(rr.add_measures(synthetic(1.0, 1.0, seed=1, sizes=(512, 2048))),
                              rr.CLAIMS)
    declared = [r for r in records if not r.exploratory]
    assert len(declared) == 6  # D = 2048 adds no member
    assert {r.verdict for r in declared} == {"unresolved"}
    missing = evaluate_claims(rr.add_measures(synthetic(2.0, 0.1, sizes=(1024,))), rr.CLAIMS,
                              missing="unresolved")
    assert {r.verdict for r in missing if not r.exploratory} == {"unresolved"}


@pytest.mark.parametrize("shape", ["full", "quick"])
def test_figure_meets_the_standard(shape):
    import matplotlib.pyplot as plt

    from anglesim.plotting import check_figure

    if shape == "full":
        ds = synthetic(1.3, 0.05)
    else:
        ds = synthetic(1.3, 0.05, n=2, priors=("uniform", "vm8_90")).isel(
            angle=slice(None, None, 4))
    ds = rr.add_measures(ds)
    fig = rr.plot_reference_replication(ds)
    try:
        assert check_figure(fig, "double") == []
    finally:
        plt.close(fig)
    text = rr.figure_caption(ds)
    n = 8 if shape == "full" else 2
    assert f"n = {n} replicates" in text and "±" not in text


def test_quick_run_stores_claims_and_labels_everything(tmp_path):
    from anglesim import study as st
    from anglesim.claims import claims_from_dataset

    result = st.run("reference_replication", quick=True, results=tmp_path, progress=False,
                    draw=False)
    ds = result.dataset
    records = claims_from_dataset(ds)
    assert {r.contrast for r in records} == {c.name for c in rr.CLAIMS}
    assert all(r.verdict in ("unresolved", "exploratory") for r in records)  # D = 16 only
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds["region_angles"].values.tolist() == [[3, 5]]  # 8 angles around 90°
    assert "caption:" in result.summary()
