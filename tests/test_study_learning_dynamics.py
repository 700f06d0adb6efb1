"""learning_dynamics: its measures on known curves, and its declared claims on synthetic runs
where they must hold and where they must fail."""

import math

import numpy as np
import pytest
import xarray as xr
from scipy.special import i0, i1

from anglesim.claims import evaluate_claims
from anglesim.studies import learning_dynamics as ld
from anglesim.studies.learning_dynamics.measures import (
    alignment,
    claims,
    half_time_gap,
    half_times,
    offset_grid,
    peak_offset,
    quarters,
)

STEPS = [0, 10, 25, 50, 100, 200, 400]


@pytest.mark.parametrize("n", [8, 24, 48])
@pytest.mark.parametrize("centre", [0.0, 22.5, 45.0, 90.0, 135.0])
def test_windows_hold_a_quarter_of_the_angles_each(n, centre):
    angle = offset_grid(n).double().numpy()
    common, rare = quarters(angle, centre)
    assert common.sum() == n // 4 and rare.sum() == n // 4
    assert not np.any(common & rare)
    d = np.degrees(np.abs((angle - math.radians(centre) + math.pi / 2) % math.pi - math.pi / 2))
    assert d[common].max() < 22.5 and d[rare].min() > 67.5


def test_offset_grid_refuses_sizes_whose_windows_would_be_uneven():
    for bad in (4, 12, 25, 8.0):
        with pytest.raises(ValueError, match="n_angles"):
            offset_grid(bad)


def test_half_time_is_exact_for_fi_linear_in_log_steps():
    """J(s) = J_f ln(1 + s)/ln(1 + S) reaches J_f/2 at s = √(1 + S) − 1, which linear
    interpolation on ln(1 + s) recovers exactly, whatever J_f."""
    x = np.log1p(STEPS)
    fisher = np.outer(x / x[-1], [1.0, 30.0, 2e3])  # [step, angle]
    np.testing.assert_allclose(half_times(fisher, STEPS), math.sqrt(401) - 1, rtol=1e-12)
    batch = np.stack([fisher, 2 * fisher])  # leading dims pass through
    assert half_times(batch, STEPS).shape == (2, 3)


def test_half_time_edge_cases():
    # rows: steps; columns: angles. Column 0 has half its final FI at step 0, column 2
    # first reaches it at step 25, dips and ends at 8, column 3 is constant (step 0),
    # column 4 is zero (NaN)
    fisher = np.array([
        [6.0, 1.0, 0.0, 1.0, 0.0],
        [7.0, 2.0, 0.0, 1.0, 0.0],
        [8.0, 1.0, 4.0, 1.0, 0.0],
        [9.0, 2.0, 1.0, 1.0, 0.0],
        [10.0, 4.0, 2.0, 1.0, 0.0],
        [11.0, 6.0, 3.0, 1.0, 0.0],
        [12.0, 8.0, 8.0, 1.0, 0.0],
    ])
    t = half_times(fisher, STEPS)
    assert t[0] == 0.0
    assert t[2] == pytest.approx(25.0)  # J(25) = 4 = J_f/2 exactly
    assert t[3] == 0.0
    assert np.isnan(t[4])
    # column 1: J_f = 8, J = 4 = J_f/2 first at step 100
    assert t[1] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="checkpoints"):
        half_times(fisher[:, 0], STEPS)
    with pytest.raises(ValueError, match="steps"):
        half_times(fisher, STEPS[::-1])


def test_half_time_gap_sign_and_value():
    half = np.array([3.0, 3.0, 15.0, 15.0, 7.0])
    common = np.array([True, True, False, False, False])
    rare = np.array([False, False, True, True, False])
    assert half_time_gap(half, common, rare) == pytest.approx(-2.0)  # log2 4 − log2 16
    assert half_time_gap(half, rare, common) == pytest.approx(2.0)


@pytest.mark.parametrize("kappa", [0.5, 2.0])
def test_alignment_of_fi_proportional_to_a_von_mises_is_its_mean_resultant(kappa):
    """For J ∝ exp(κ cos 2(θ − μ)) on a regular grid, a = I1(κ)/I0(κ) towards μ, −a towards
    μ + 90°, and 0 for a flat J (to the float32 rounding of the grid)."""
    angle = offset_grid(64).double().numpy()
    for centre in (0.0, 22.5, 45.0):
        fisher = np.exp(kappa * np.cos(2 * (angle - math.radians(centre))))
        assert alignment(fisher, angle, centre) == pytest.approx(i1(kappa) / i0(kappa),
                                                                 rel=1e-6)
        assert alignment(fisher, angle, centre + 90) == pytest.approx(-i1(kappa) / i0(kappa),
                                                                      rel=1e-6)
    assert alignment(np.ones_like(angle), angle, 30.0) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("shift", [-40.0, -5.0, 0.0, 10.0, 80.0])
def test_peak_offset_of_a_shifted_curve(shift):
    angle = offset_grid(48).double().numpy()
    for centre in (0.0, 22.5, 90.0):
        peak = math.radians(centre + shift)
        fisher = 5.0 * np.exp(2.0 * np.cos(2 * (angle - peak)))
        assert peak_offset(fisher, angle, centre) == pytest.approx(shift, abs=1e-4)


# ---- the claims on synthetic runs ------------------------------------------------------------


def synthetic(common_first: float, noise_effect: float, peak_shift: float,
              early: bool, n: int = 8, seed: int = 0) -> xr.Dataset:
    """A Dataset shaped like the study's: FI grows as J_f(θ)·s/(s + τ(θ)), with τ = τ_r at
    rare angles and τ_r·2^common_first at common ones (in between by distance), a floor of
    J_f/100, 5% noise per value and noise on the exponent per replicate; the equalised arm's
    exponent is common_first + noise_effect. The final FI peaks ``peak_shift`` degrees from
    the mode; with ``early`` False the FI is flat until step 50 (no alignment gained by
    then)."""
    rng = np.random.default_rng(seed)
    priors = list(ld.PRIORS)
    angle = offset_grid(24).double().numpy()
    steps = np.array(STEPS, dtype=float)
    layers = ["input", "conv1", "conv2", "fc", "head", "output"]
    data = np.empty((n, len(priors), 2, len(steps), len(layers), angle.size))
    for p, prior in enumerate(priors):
        mode = math.radians(ld.CENTRES[prior])
        closeness = np.cos(2 * (angle - mode))  # 1 at the mode, −1 at the anti-mode
        final = 100 * np.exp(np.cos(2 * (angle - mode - math.radians(peak_shift))))
        for r in range(n):
            for a, exponent in enumerate((common_first, common_first + noise_effect)):
                jitter = exponent + 0.3 * rng.standard_normal()
                tau = 60.0 * 2.0 ** (jitter * (closeness + 1) / 2)
                growth = steps[:, None] / (steps[:, None] + tau[None, :])
                if not early:
                    growth = np.where(steps[:, None] <= 50, 0.01, growth)
                fi = final[None, :] * (growth + 0.01) * (1 + 0.05 * rng.random(growth.shape))
                data[r, p, a] = fi[:, None, :]
    ds = xr.Dataset(
        {"fisher": (("replicate", "prior", "labels", "step", "layer", "angle"), data,
                    {"units": "rad-2", "long_name": "FI"}),
         "failed": (("replicate", "prior", "labels"), np.zeros((n, len(priors), 2), bool)),
         "replicate_seed": (("replicate", "prior", "labels"),
                            np.repeat(np.arange(n)[:, None, None], 2 * len(priors), 1)
                            .reshape(n, len(priors), 2))},
        coords={"replicate": np.arange(n), "prior": priors, "labels": list(ld.LABELS),
                "step": STEPS, "layer": layers, "angle": angle},
    )
    return ld.postprocess(ds)


def verdicts(ds: xr.Dataset) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for record in evaluate_claims(ds, claims()):
        out.setdefault(record.contrast, set()).add(record.verdict)
    return out


def test_claims_supported_where_the_synthetic_effects_are_built_in():
    ds = synthetic(common_first=-2.0, noise_effect=2.0, peak_shift=0.0, early=True)
    v = verdicts(ds)
    assert v["common_first"] == {"supported"}
    assert v["equalised_removes_common_first"] == {"supported"}
    assert v["peaks_follow_prior"] == {"supported"}
    assert v["early"] == {"supported"}


def test_claims_fail_where_the_synthetic_effects_are_reversed_or_absent():
    """Rare angles first: common_first contradicted; noise making it worse: the equalised
    contrast contradicted; peaks 40° off: not equivalent; nothing by step 50: not early."""
    ds = synthetic(common_first=2.0, noise_effect=-2.0, peak_shift=40.0, early=False)
    v = verdicts(ds)
    assert v["common_first"] == {"contradicted"}
    assert v["equalised_removes_common_first"] == {"contradicted"}
    assert v["peaks_follow_prior"] == {"contradicted"}
    assert "supported" not in v["early"]


def test_measures_carry_units_and_long_names():
    ds = synthetic(common_first=-1.0, noise_effect=1.0, peak_shift=0.0, early=True, n=3)
    for name in ("half_time", "half_time_gap", "alignment", "alignment_gain", "peak_offset",
                 "common", "rare"):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert ds["half_time_gap"].attrs["units"] == "1"
