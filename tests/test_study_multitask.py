"""multitask's derived measures and declared claims on Datasets with known answers."""

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.studies import multitask as mt


def _dataset(log2_ratios: dict[str, float], n: int = 8, seed: int = 0, spread: float = 0.2,
             shared: float = 1.0):
    """A multitask-shaped Dataset whose output FI is 2^(log2_ratios[regime]) times the
    angle-only network's of the same replicate (seed): each replicate has a shared log-FI
    offset of sd ``shared`` (what pairing removes) plus per-regime noise of sd ``spread``."""
    rng = np.random.default_rng(seed)
    others, regimes = ["contrast", "frequency"], list(mt.regimes([1.0, 10.0]))
    layers, angles = ["fc", "output"], np.arange(4) * np.pi / 4
    base = rng.normal(10.0, shared, (1, n, 1, 1))  # log2 FI of each replicate's angle_only
    shift = np.array([log2_ratios.get(r, 0.0) for r in regimes])[None, None, :, None]
    log2fi = (base + shift + rng.normal(0, spread, (len(others), n, len(regimes), 1))
              + np.zeros((1, 1, 1, len(layers))))
    fisher = np.broadcast_to((2.0 ** log2fi)[..., None],
                             (len(others), n, len(regimes), len(layers), len(angles)))
    dims = ("other", "replicate", "regime", "layer", "angle")
    ones = np.ones((len(others), n, len(regimes), len(angles)))
    first = np.where(np.array(regimes)[None, None, :, None, None] == "sequential",
                     fisher / 4.0, np.nan)
    ds = xr.Dataset(
        {"fisher": (dims, fisher.copy()), "fisher_other_only": (dims, first),
         "abs_error": (dims[:3] + ("angle",), 0.02 * ones),
         "other_error": (dims[:3] + ("angle",), 0.1 * ones),
         "other_error_other_only": (dims[:3] + ("angle",), 0.2 * ones),
         "other_chance": (dims[:3], np.full(ones.shape[:3], 0.3)),
         "probe_error": (dims[:3], np.full(ones.shape[:3], 0.15)),
         "failed": (dims[:3], np.zeros(ones.shape[:3], bool))},
        coords={"other": others, "replicate": np.arange(n), "regime": regimes,
                "layer": layers, "angle": angles})
    return mt.add_measures(ds)


def test_measures_are_paired_log2_ratios_against_angle_only():
    ds = _dataset({"joint_10": -2.0, "sequential": 0.5}, spread=0.0)
    ratio = ds["fisher_log2_ratio"].sel(layer="output")
    np.testing.assert_allclose(ratio.sel(regime="joint_10"), -2.0, atol=1e-12)
    np.testing.assert_allclose(ratio.sel(regime="sequential"), 0.5, atol=1e-12)
    np.testing.assert_allclose(ratio.sel(regime="angle_only"), 0.0)
    # no spread around each replicate's own angle_only: the paired interval is 0 although
    # the replicates differ (sd 1 in log2), which a Welch interval would not remove
    np.testing.assert_allclose(ds["fisher_log2_ratio_ci"].sel(regime="joint_10"), 0.0,
                               atol=1e-9)
    np.testing.assert_allclose(ds["other_only_log2_ratio"], -2.0 + 0.5, atol=1e-12)
    geo = ds["fisher_geomean"].sel(regime="joint_10") / ds["fisher_geomean"].sel(
        regime="angle_only")
    np.testing.assert_allclose(geo, 0.25)
    assert ds["fisher_log2_ratio"].attrs["units"] == "1"
    assert ds["fisher_geomean"].attrs["units"] == "rad^-2"


@pytest.mark.parametrize(("w1", "w10", "verdict", "more"), [
    (-0.5, -1.5, "supported", "supported"),   # both lower FI, w = 10 by 2^-1 more
    (1.5, 1.5, "contradicted", None),         # both raise it
    (-1.5, -0.5, "supported", "contradicted"),  # w = 10 lowers it less
])
def test_joint_lowers_verdicts(w1, w10, verdict, more):
    ds = _dataset({"joint_1": w1, "joint_10": w10})
    records = {r.name: r for r in evaluate_claims(ds, mt.CLAIMS)}
    for w in mt.WEIGHTS:
        for other in ("contrast", "frequency"):
            assert records[f"joint_lowers_w{w}[other={other}]"].verdict == verdict
            if more is not None:
                assert records[f"weight_lowers_more[other={other}]"].verdict == more


def test_pairing_resolves_what_the_shared_spread_hides():
    """A 10% drop under a replicate spread of sd 1 log2 is found paired (the claims'
    test), with every replicate's angle-only twin as its reference."""
    ds = _dataset({"joint_1": -0.3, "joint_10": -0.3}, n=8, spread=0.05, shared=1.0)
    records = {r.name: r for r in evaluate_claims(ds, mt.CLAIMS)}
    assert records["joint_lowers_w1[other=contrast]"].verdict == "supported"
    assert records["sequential_changes[other=contrast]"].verdict == "unresolved"
