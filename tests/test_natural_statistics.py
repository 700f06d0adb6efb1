"""The natural-statistics study's measures on curves whose answer is known: the bias index of
Henderson & Serences, the cos 4θ phases and their shifts (taken near the rotation's own), the
measures against the other rotations (what every rotation shares cancels), and the study's
declaration (paired rotations, phases of the right kind)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("skimage")

from anglesim.studies import natural_statistics as ns  # noqa: E402
from anglesim.studies.natural_statistics import analysis  # noqa: E402

ROTATIONS = [0.0, 22.5, 45.0]
ANGLES = np.arange(48) * math.pi / 48


def curve(peak_deg: float, depth: float = 0.5, base: float = 1.0,
          extra: np.ndarray | float = 0.0) -> np.ndarray:
    """A positive curve over ANGLES with cos 4θ peaks at ``peak_deg`` (and + 90°)."""
    return base * (1 + depth * np.cos(4 * (ANGLES - math.radians(peak_deg)))) + extra


def dataset(fisher: np.ndarray, energy: np.ndarray) -> xr.Dataset:
    """A gathered Dataset of the study's shape: fisher [rotation, replicate, network, layer,
    angle], energy [rotation, replicate, angle]."""
    n_rep = fisher.shape[1]
    return xr.Dataset(
        {"fisher": (("rotation", "replicate", "network", "layer", "angle"), fisher),
         "energy": (("rotation", "replicate", "angle"), energy)},
        coords={"rotation": ROTATIONS, "replicate": np.arange(n_rep),
                "network": ["pretrained"], "layer": ["fc"], "angle": ANGLES})


def test_bias_index_on_known_curves():
    peaks = xr.DataArray(np.stack([curve(0.0), curve(45.0), np.ones(48)]), dims=("k", "angle"),
                         coords={"angle": ANGLES})
    index = analysis.bias_index(peaks, [0.0, 22.5, 45.0])
    assert index.dims == ("k", "peak")
    cardinal, oblique, flat = index.values
    # 1 + d cos 4Δ: the peak bins (|Δ| < 10°) average 1 + 0.933 d, the flanks (±22.5°) 1
    expected = 0.5 * 0.9330 / (2 + 0.5 * 0.9330)
    assert cardinal[0] == pytest.approx(expected, rel=1e-3)
    assert oblique[2] == pytest.approx(expected, rel=1e-3)  # each high at its own peaks
    assert cardinal[2] == pytest.approx(oblique[0]) and cardinal[2] < 0  # low at the other's
    assert cardinal[1] == pytest.approx(0.0, abs=1e-12)  # 22.5° sits between: its flanks are
    np.testing.assert_allclose(flat, 0.0, atol=1e-15)   # 0° and 45° themselves
    # a cos 2θ component (one preferred orientation) cancels between the peaks ψ, ψ + 90°
    with_cos2 = peaks + 0.3 * np.cos(2 * (ANGLES - 0.4))
    np.testing.assert_allclose(analysis.bias_index(with_cos2, [0.0]).sel(k=2), 0.0,
                               atol=1e-12)
    with pytest.raises(ValueError, match="no angle within"):
        analysis.bias_index(peaks.isel(angle=[1, 2]), [0.0])


def test_harmonic_and_the_period_90_helpers():
    curves = xr.DataArray(np.stack([curve(10.0, 0.4), np.zeros(48)]), dims=("k", "angle"),
                          coords={"angle": ANGLES})
    amplitude, phase = analysis.harmonic(curves)
    assert amplitude.values[0] == pytest.approx(0.4, rel=1e-9)
    assert phase.values[0] == pytest.approx(10.0, abs=1e-9)
    assert np.isnan(amplitude.values[1]) and np.isnan(phase.values[1])  # not a density
    np.testing.assert_allclose(analysis.wrap90(np.array([0.0, 45.0, 46.0, -45.0, 90.0, 134.0])),
                               [0.0, 45.0, -44.0, 45.0, 0.0, 44.0])
    angles = xr.DataArray([40.0, -40.0, 44.0], dims="r")  # around ±45°, which are one angle
    assert abs(float(analysis.circular_mean90(angles, "r"))) > 40.0


def test_measures_follow_a_rotating_component_and_cancel_a_fixed_one():
    """Networks whose FI is a fixed structure (the pixel grid's, the initial weights') plus a
    component that turns with the training patches: the measures against the other rotations
    see only the turning part, and the cos 4θ phase shifts come out as the rotations."""
    rng = np.random.default_rng(0)
    n_rep = 5
    fisher = np.empty((3, n_rep, 1, 1, 48))
    energy = np.empty((3, n_rep, 48))
    for r in range(n_rep):
        fixed = 0.3 * np.cos(4 * ANGLES - 1.1) + 0.2 * np.cos(2 * ANGLES + rng.normal())
        for i, phi in enumerate(ROTATIONS):
            fisher[i, r, 0, 0] = curve(phi, 0.15, extra=fixed + 0.5)
            energy[i, r] = curve(phi, 0.3)
    out = analysis.measures(dataset(fisher, energy))
    assert (out["bias_following"] > 0.02).all()
    assert (out["energy_match_following"] > 0).all()
    np.testing.assert_allclose(out["energy_phase_shift"].isel(replicate=0), ROTATIONS,
                               atol=1e-9)
    # 45°: the energy's shift is exactly the wrap point, taken as +45 (near the rotation)
    assert float(out["energy_phase_shift"].sel(rotation=45.0).min()) == pytest.approx(45.0)
    # the fixed cos 4θ structure pulls the FI's phase away from the energy's, the same in every
    # replicate (the cos 2θ part, random per replicate, does not touch a cos 4θ phase)
    lag = out["phase_lag"].sel(rotation=0.0, network="pretrained", layer="fc")
    assert float(abs(lag).min()) > 1.0 and float(lag.max() - lag.min()) < 1e-9
    # the fixed structure drags the FI's phase towards its own: the shift is less than φ
    assert float(abs(out["phase_shift_error"].sel(rotation=45.0)).max()) > 1.0
    # with no turning part at all, nothing follows
    still = np.broadcast_to(fisher[:1], fisher.shape).copy()
    flat = analysis.measures(dataset(still, energy))
    np.testing.assert_allclose(flat["bias_following"], 0.0, atol=1e-12)
    np.testing.assert_allclose(flat["energy_match_following"], 0.0, atol=1e-12)
    np.testing.assert_allclose(flat["phase_shift"].sel(rotation=22.5), 0.0, atol=1e-9)


def test_the_declaration():
    assert ns.STUDY.pair_axes == ("rotation",)
    assert ns.STUDY.grid == {"rotation": [0.0, 22.5, 45.0]}
    sz = ns.SIZES["full"]
    assert sz["replicates"] >= 8
    pre = ns.pretrain_phase(22.5, sz)
    assert pre.source == ns.PATCHES and pre.rotation == pytest.approx(math.radians(22.5))
    assert pre.prior is None and [t.target for t in pre.task_list()] == ["photograph"]
    for strategy in ns.STRATEGIES:
        ft = ns.finetune_phase(45.0, strategy, sz)
        assert ft.prior.loc == pytest.approx(math.radians(90.0))  # 45° from the peak at 45°
        assert "photo" not in ft.trainable
    assert ns.finetune_phase(0.0, "lp_ft", sz).strategy_params["probe_epochs"] == 4
    assert ns.FISHER_SPEC.phase is None  # FI averaged over grating phases
    names = [c.name for c in ns.STUDY.claims]
    assert len(names) == len(set(names)) >= 6
