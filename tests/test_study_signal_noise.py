"""signal_noise's derived measures and declared claims on Datasets with known answers."""

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.studies import signal_noise as sn


def _dataset(signal: float, noise: float, n: int = 8, seed: int = 0, spread: float = 0.2):
    """A signal_noise-shaped Dataset whose head terms are ``signal`` and ``noise`` (log₂) at
    every angle, with replicate noise of sd ``spread``; the total is their sum."""
    rng = np.random.default_rng(seed)
    strategies, layers, angles = list(sn.STRATEGIES), list(sn.LAYERS), [0.0, np.pi / 2]
    shape = (1, n, len(strategies), len(layers), len(angles))
    sig = np.full(shape, signal) + rng.normal(0, spread, shape)
    noi = np.full(shape, noise) + rng.normal(0, spread, shape)
    dims = ("shift", "replicate", "strategy", "layer", "split_angle")
    ds = xr.Dataset(
        {"delta_signal": (dims, sig), "delta_noise": (dims, noi),
         "delta_interaction": (dims, np.zeros(shape)), "delta_total": (dims, sig + noi),
         "id_error": (dims[:3], np.full(shape[:3], 0.02)),
         "parent_id_error": (dims[:2], np.full(shape[:2], 0.03)),
         "failed": (dims[:2], np.zeros(shape[:2], bool))},
        coords={"shift": ["prior"], "replicate": np.arange(n), "strategy": strategies,
                "layer": layers, "split_angle": angles, "term": ["pretrained"]})
    return sn.add_measures(ds)


def test_prior_split_stacks_the_prior_weighted_terms():
    ds = _dataset(1.0, -0.5, spread=0.0)
    split = sn.prior_split(ds)
    assert list(split["part"].values) == list(sn.PARTS)
    np.testing.assert_allclose(split.sel(part="signal").values, 1.0)
    np.testing.assert_allclose(split.sel(part="noise").values, -0.5)
    np.testing.assert_allclose(split.sel(part="total").values, 0.5)
    # the prior weights average: a term that differs by angle lands between its values
    ds2 = ds.copy()
    ds2["delta_signal"] = ds["delta_signal"] + xr.DataArray([0.0, 2.0], dims="split_angle")
    weighted = sn.add_measures(ds2)["delta_signal_prior"]
    assert ((weighted > 1.0) & (weighted < 3.0)).all()  # the peak at 90° weighs more: > 2
    assert (weighted > 2.0).all()


@pytest.mark.parametrize(("signal", "noise", "verdict"), [
    (0.2, 1.5, "supported"),      # Cheng et al.: the covariance term carries the gain
    (1.5, 0.2, "contradicted"),   # the tuning term does
    (0.8, 0.8, "unresolved"),     # no difference
])
def test_noise_over_signal_verdicts(signal, noise, verdict):
    records = evaluate_claims(_dataset(signal, noise, n=10), sn.CLAIMS)
    members = [r for r in records if r.name.startswith("noise_over_signal[")]
    assert len(members) == len(sn.STRATEGIES)
    if verdict == "unresolved":  # Holm over 7 at n = 10: most members stay unresolved
        assert sum(r.verdict == "unresolved" for r in members) >= 4
    else:
        assert all(r.verdict == verdict for r in members), [r.verdict for r in members]
    rises = [r for r in records if r.name.startswith("fi_rises[")]
    assert len(rises) == 2 and all(r.verdict == "supported" for r in rises)


def test_every_variable_is_labelled():
    ds = _dataset(1.0, 0.0)
    own = [*sn.LABELS, *(f"{t}_prior" for t in sn.TERMS)]  # the rest: replicate, runner
    unlabelled = [v for v in own if not {"units", "long_name"} <= set(ds[v].attrs)]
    assert unlabelled == []
    assert "rad" not in ds["delta_total_prior"].attrs["units"]
    assert ds["delta_total_prior"].attrs["long_name"].startswith("log2 ratio")
