"""adapt_loop's convergence measures, declared claims and pairing of the modes."""

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.studies import adapt_loop as al


def synthetic(final: dict, n: int = 10, rounds: int = 8, angles: int = 48, seed: int = 0,
              paired: bool = True) -> xr.Dataset:
    """An adapt_loop-shaped Dataset: every mode starts at the replicate's CV (shared by the
    modes when ``paired``) and falls linearly to ``final[mode]`` plus noise."""
    rng = np.random.default_rng(seed)
    modes = list(al.MODES)
    start = 1.0 + 0.2 * rng.normal(size=(1 if paired else len(modes), n))
    start = np.broadcast_to(start, (len(modes), n))
    end = np.array([final[m] for m in modes])[:, None] + 0.05 * rng.normal(size=(len(modes), n))
    t = np.linspace(0, 1, rounds + 1)
    cv = start[..., None] * (1 - t) + end[..., None] * t
    kl = np.concatenate([np.full((len(modes), n, 1), np.nan),
                         0.01 * rng.lognormal(0, 0.3, (len(modes), n, rounds))], -1)
    theta = np.arange(angles) * np.pi / angles
    fisher = 1000 * np.exp(cv[..., None] * np.cos(2 * theta))
    prior = np.exp(-0.1 * cv[..., None] * np.cos(2 * theta))
    prior /= prior.mean(-1, keepdims=True) * np.pi
    seeds = np.broadcast_to(np.arange(n), (len(modes), n)) if paired else np.arange(
        len(modes) * n).reshape(len(modes), n)
    return xr.Dataset(
        {"fisher": (("mode", "replicate", "round", "angle"), fisher),
         "prior_density": (("mode", "replicate", "round", "angle"), prior),
         "fisher_cv": (("mode", "replicate", "round"), cv),
         "prior_kl": (("mode", "replicate", "round"), kl),
         "stop_round": (("mode", "replicate"), np.full((len(modes), n), np.nan)),
         "replicate_seed": (("mode", "replicate"), seeds),
         "failed": (("mode", "replicate"), np.zeros((len(modes), n), bool))},
        coords={"mode": modes, "replicate": np.arange(n), "round": np.arange(rounds + 1),
                "angle": theta})


def test_convergence_measures():
    ds = al.add_convergence(synthetic({"previous_reset": 0.4, "previous_kept": 0.4,
                                       "original": 0.7}, n=4))
    np.testing.assert_array_equal(ds["fisher_cv_final"], ds["fisher_cv"].isel(round=-1))
    np.testing.assert_allclose(ds["fisher_cv_change"],
                               ds["fisher_cv"].isel(round=-1) - ds["fisher_cv"].isel(round=0))
    assert ds["prior_kl"].attrs["units"] == "nat" and ds["fisher_cv_change"].attrs["units"] == "1"


@pytest.mark.parametrize("final, expected", [
    ({"previous_reset": 0.35, "previous_kept": 0.40, "original": 0.7},
     {"cv_drops[mode=original]": "supported", "previous_flatter_reset": "supported",
      "previous_flatter_kept": "supported", "not_converged[mode=original]": "supported"}),
    # the original network flattens more: the between-mode claims are contradicted
    ({"previous_reset": 0.7, "previous_kept": 0.7, "original": 0.35},
     {"previous_flatter_reset": "contradicted", "previous_flatter_kept": "contradicted",
      "reset_vs_kept": "unresolved"}),
    # converged below the tolerance and no drop where the loop starts flat
    ({"previous_reset": 0.1, "previous_kept": 0.5, "original": 1.0},
     {"not_converged[mode=previous_reset]": "contradicted", "reset_vs_kept": "supported",
      "cv_drops[mode=original]": "unresolved"}),
])
def test_claims_decide_as_the_data_say(final, expected):
    records = evaluate_claims(al.add_convergence(synthetic(final)), al.CLAIMS)
    verdicts = {r.name: r.verdict for r in records}
    assert len(records) == 9 and all(r.n == 10 for r in records)
    for name, verdict in expected.items():
        assert verdicts[name] == verdict, verdicts


def test_paired_claims_need_the_paired_grid():
    """Modes with their own seeds cannot be compared as pairs: the claims layer refuses."""
    ds = al.add_convergence(synthetic({"previous_reset": 0.4, "previous_kept": 0.4,
                                       "original": 0.7}, paired=False))
    with pytest.raises(ValueError, match="paired"):
        evaluate_claims(ds, al.CLAIMS)
    assert al.STUDY.pair_axes == ("mode",)


@pytest.mark.parametrize("n, rounds, angles", [(10, 8, 48), (2, 2, 16)])
def test_figure_meets_the_standard(n, rounds, angles):
    import matplotlib.pyplot as plt

    from anglesim.plotting import check_figure

    ds = al.add_convergence(synthetic({"previous_reset": 0.4, "previous_kept": 0.4,
                                       "original": 0.7}, n=n, rounds=rounds, angles=angles))
    fig = al.plot_adapt_loop(ds)
    try:
        assert check_figure(fig, "double") == []
    finally:
        plt.close(fig)
    text = al.figure_caption(ds)
    assert f"n = {n}" in text and "±" not in text


def test_quick_run_pairs_the_modes_and_labels_everything(tmp_path):
    from anglesim import study as st
    from anglesim.claims import claims_from_dataset

    result = st.run("adapt_loop", quick=True, results=tmp_path, progress=False, draw=False)
    ds = result.dataset
    # one original network per replicate, shared by the three modes
    start = ds["fisher"].isel(round=0)
    for mode in al.MODES[1:]:
        np.testing.assert_array_equal(start.sel(mode=mode), start.sel(mode=al.MODES[0]))
    assert {r.contrast for r in claims_from_dataset(ds)} == {c.name for c in al.CLAIMS}
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert "caption:" in result.summary()
