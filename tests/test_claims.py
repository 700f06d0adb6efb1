"""Declared claims: the tests against scipy, Holm by hand, the MDE against simulated power,
the verdict in each regime, selection and expansion, exclusion, storage and rendering.

Power simulations: S simulated studies per case; at a true power of 0.8 the Monte Carlo
standard error of a rejection rate is √(0.8·0.2/S) = 0.0028 at S = 20 000, so a tolerance of
0.012 is over 4 standard errors from a correct MDE, while the noncentral-t shortcut for
Welch's test at n = 3 per arm (true power 0.70) is far outside it.
"""

import json
import math

import numpy as np
import pytest
import xarray as xr
from markers import needs_h5py
from scipy import stats as st

from anglesim.claims import (
    CLAIMS_ATTR,
    ClaimRecord,
    Contrast,
    claims_from_dataset,
    claims_table,
    claims_to_attrs,
    detection_power,
    evaluate_claims,
    holm,
    minimum_detectable_effect,
)

S = 20_000
TOL = 0.012


# --------------------------------------------------------------------------------------------
# a study-shaped Dataset


def study(rng, n=8, effect=0.0, sd=1.0, shared=1.0, log=False):
    """Dims (shift, n_train, replicate, strategy): 'full' and 'conv1' share each replicate's
    parent (the ``shared`` part); conv1 = full + effect + noise. ``log``: values are exp of
    that (a positive error whose ratio is the claim)."""
    shifts, sizes = ["blur", "noise", "invert"], [16, 64]
    parent = rng.normal(0, shared, (3, 2, n, 1))
    full = parent + rng.normal(0, sd, (3, 2, n, 1))
    conv1 = parent + effect + rng.normal(0, sd, (3, 2, n, 1))
    head = rng.normal(0, sd, (3, 2, n, 1))
    values = np.concatenate([full, conv1, head], axis=-1)
    if log:
        values = np.exp(values)
    return xr.Dataset(
        {"error": (("shift", "n_train", "replicate", "strategy"), values, {"units": "rad"}),
         "failed": (("shift", "n_train", "replicate"), np.zeros((3, 2, n), bool))},
        coords={"shift": shifts, "n_train": sizes, "replicate": np.arange(n),
                "strategy": ["full", "conv1", "head"]})


def contrast(**kw):
    base = dict(name="c", statement="conv1 beats full", measure="error",
                arm={"strategy": "conv1"}, against={"strategy": "full"}, paired=True,
                where={"shift": "blur", "n_train": 16}, direction="less")
    base.update(kw)
    return Contrast(**base)


def one(ds, c, **kw):
    records = evaluate_claims(ds, [c], **kw)
    assert len(records) == 1
    return records[0]


# --------------------------------------------------------------------------------------------
# the tests against scipy


@pytest.mark.parametrize("seed,n", [(0, 3), (1, 5), (2, 8), (3, 20)])
def test_paired_contrast_matches_scipy_ttest_rel(seed, n):
    ds = study(np.random.default_rng(seed), n=n, effect=0.4)
    r = one(ds, contrast())
    a = ds["error"].sel(shift="blur", n_train=16, strategy="conv1").values
    b = ds["error"].sel(shift="blur", n_train=16, strategy="full").values
    ref = st.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert r.test == "paired t" and r.n == n and r.df == n - 1
    assert r.estimate == pytest.approx(np.mean(a - b), rel=1e-12)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert r.p_holm == pytest.approx(r.p, rel=1e-12)  # a family of one


@pytest.mark.parametrize("seed,n", [(4, 3), (5, 5), (6, 8), (7, 20)])
def test_welch_contrast_matches_scipy_ttest_ind_unequal_var(seed, n):
    rng = np.random.default_rng(seed)
    ds = study(rng, n=n, effect=0.4)
    ds["error"].loc[{"strategy": "head"}] *= 3.0  # unequal spreads
    r = one(ds, contrast(arm={"strategy": "head"}, paired=False, direction="differs"))
    a = ds["error"].sel(shift="blur", n_train=16, strategy="head").values
    b = ds["error"].sel(shift="blur", n_train=16, strategy="full").values
    ref = st.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert r.test == "Welch t" and (r.n_arm, r.n_against, r.n) == (n, n, 2 * n)
    assert r.estimate == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert r.df == pytest.approx(ref.df, rel=1e-10)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_ratio_contrasts_are_tested_on_the_log_scale_and_reported_as_folds():
    ds = study(np.random.default_rng(8), n=6, effect=-0.5, log=True)
    sel = ds["error"].sel(shift="noise", n_train=64)
    a, b = sel.sel(strategy="conv1").values, sel.sel(strategy="full").values
    where = {"shift": "noise", "n_train": 64}
    paired = one(ds, contrast(where=where, scale="ratio"))
    ref = st.ttest_rel(np.log(a), np.log(b))
    ci = ref.confidence_interval()
    assert paired.estimate == pytest.approx(np.exp(np.mean(np.log(a / b))), rel=1e-12)
    assert (paired.ci_low, paired.ci_high) == pytest.approx(np.exp([ci.low, ci.high]))
    assert paired.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert paired.mean_arm == pytest.approx(st.gmean(a))  # geometric means
    assert paired.mde > 1  # a fold
    unpaired = one(ds, contrast(where=where, scale="ratio", paired=False))
    ref = st.ttest_ind(np.log(a), np.log(b), equal_var=False)
    assert unpaired.estimate == pytest.approx(st.gmean(a) / st.gmean(b), rel=1e-12)
    assert unpaired.p == pytest.approx(ref.pvalue, rel=1e-10)


def test_one_arm_against_a_fixed_value_is_the_one_sample_t_test():
    ds = study(np.random.default_rng(9), n=7)
    x = ds["error"].sel(shift="blur", n_train=16, strategy="head").values
    r = one(ds, contrast(arm={"strategy": "head"}, against=0.3, paired=None,
                         direction="greater"))
    ref = st.ttest_1samp(x, 0.3)
    assert r.test == "one-sample t" and r.n == 7 and r.n_against is None
    assert r.estimate == pytest.approx(x.mean() - 0.3, rel=1e-12)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.mean_against == 0.3 and r.against == 0.3


def test_one_arm_against_a_per_cell_prediction_and_a_callable_reference():
    """A law's prediction stored per cell (alpha_predicted per loss) and one computed by a
    callable; each member is tested against its own cell's value."""
    rng = np.random.default_rng(10)
    losses, n = ["L1", "L2", "L4"], 9
    predicted = np.array([1.0, 2 / 3, 0.4])
    alpha = predicted[:, None] + rng.normal(0, 0.05, (3, n))
    ds = xr.Dataset({"alpha": (("loss", "replicate"), alpha),
                     "alpha_predicted": (("loss",), predicted)},
                    coords={"loss": losses, "replicate": np.arange(n), "p": ("loss", [1, 2, 4])})
    law = Contrast(name="law", statement="alpha = 2/(p+1)", measure="alpha",
                   against="alpha_predicted", direction="equivalent", margin=0.1,
                   over=["loss"])
    by_call = Contrast(name="law2", statement="alpha = 2/(p+1)", measure="alpha",
                       against=lambda d: 2 / (d["p"] + 1), label="two_over_p_plus_1",
                       direction="equivalent", margin=0.1, over=["loss"])
    records = evaluate_claims(ds, [law, by_call])
    assert [r.name for r in records] == [f"{c}[loss={x}]" for c in ("law", "law2")
                                         for x in losses]
    for i, r in enumerate(records[:3]):
        assert r.estimate == pytest.approx(np.mean(alpha[i] - predicted[i]), rel=1e-12)
        assert r.mean_against == pytest.approx(predicted[i])
        assert r.verdict == "supported"
    for r, s in zip(records[:3], records[3:], strict=True):
        assert s.estimate == pytest.approx(r.estimate, abs=1e-12)
    assert records[3].against == "two_over_p_plus_1"


# --------------------------------------------------------------------------------------------
# Holm


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max so far 0.06
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # clipped at 1; a NaN counts in m as p = 1; ties keep their order
    assert holm([0.3, 0.6, math.nan]) == pytest.approx([0.9, 1.0, 1.0])
    assert holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])
    assert holm([]).size == 0


def test_holm_p_in_the_records_runs_over_every_declared_member():
    ds = study(np.random.default_rng(11), n=8, effect=-0.8)
    expanded = contrast(name="e", where={}, over=["shift", "n_train"])
    second = contrast(name="f", arm={"strategy": "head"}, paired=False, direction="differs")
    records = evaluate_claims(ds, [expanded, second])
    assert len(records) == 7 and all(r.family_size == 7 for r in records)
    assert [r.p_holm for r in records] == pytest.approx(list(holm([r.p for r in records])))


# --------------------------------------------------------------------------------------------
# the MDE against simulated power


def _paired_rate(rng, n, alpha, effect, sd):
    d = rng.normal(effect, sd, (S, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    return float(np.mean(t > st.t.ppf(1 - alpha / 2, n - 1)))


def _welch(a, b):
    va, vb = a.var(1, ddof=1) / a.shape[1], b.var(1, ddof=1) / b.shape[1]
    nu = (va + vb) ** 2 / (va**2 / (a.shape[1] - 1) + vb**2 / (b.shape[1] - 1))
    return a.mean(1) - b.mean(1), np.sqrt(va + vb), nu


@pytest.mark.parametrize("n", [3, 5, 8, 20])
@pytest.mark.parametrize("alpha", [0.05, 0.005])
def test_paired_mde_is_detected_with_80_percent_power(n, alpha):
    rng = np.random.default_rng(100 + n)
    mde = minimum_detectable_effect(2.0, n, alpha)
    assert abs(_paired_rate(rng, n, alpha, mde, 2.0) - 0.8) < TOL
    assert _paired_rate(rng, n, alpha, 0.8 * mde, 2.0) < 0.8 - 4 * TOL  # and not less


@pytest.mark.parametrize("n_a,n_b,sd_b", [(3, 3, 1.0), (3, 3, 2.5), (5, 5, 2.0), (5, 8, 3.0),
                                          (8, 8, 0.5), (20, 20, 2.0)])
def test_welch_mde_is_detected_with_80_percent_power(n_a, n_b, sd_b):
    rng = np.random.default_rng(200 + n_a + n_b)
    alpha = 0.05
    mde = minimum_detectable_effect(1.0, n_a, alpha, sd_b=sd_b, n_b=n_b)
    diff, se, nu = _welch(rng.normal(mde, 1.0, (S, n_a)), rng.normal(0, sd_b, (S, n_b)))
    rate = float(np.mean(diff / se > st.t.ppf(1 - alpha / 2, nu)))
    assert abs(rate - 0.8) < TOL, rate
    assert detection_power(mde, 1.0, n_a, alpha, sd_b=sd_b, n_b=n_b) == pytest.approx(0.8)


@pytest.mark.parametrize("n", [3, 8, 20])
def test_equivalence_mde_is_the_smallest_margin_shown_with_80_percent_power(n):
    rng = np.random.default_rng(300 + n)
    alpha = 0.05
    margin = minimum_detectable_effect(1.5, n, alpha, equivalence=True)
    x = rng.normal(0, 1.5, (S, n))
    m, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(n)
    c = st.t.ppf(1 - alpha, n - 1)
    rate = float(np.mean(((m + margin) / se > c) & ((m - margin) / se < -c)))
    assert abs(rate - 0.8) < TOL, rate
    welch_margin = minimum_detectable_effect(1.0, n, alpha, sd_b=2.0, n_b=n, equivalence=True)
    diff, se, nu = _welch(rng.normal(0, 1.0, (S, n)), rng.normal(0, 2.0, (S, n)))
    c = st.t.ppf(1 - alpha, nu)
    rate = float(np.mean(((diff + welch_margin) / se > c) & ((diff - welch_margin) / se < -c)))
    assert abs(rate - 0.8) < TOL, rate


def test_mde_edge_cases_and_arguments():
    assert minimum_detectable_effect(0.0, 5) == 0.0
    assert minimum_detectable_effect(0.0, 5, sd_b=0.0, n_b=4) == 0.0
    assert math.isnan(minimum_detectable_effect(math.nan, 5))
    assert minimum_detectable_effect(1.0, 5, 0.005) > minimum_detectable_effect(1.0, 5, 0.05)
    assert minimum_detectable_effect(1.0, 5, power=0.9) > minimum_detectable_effect(1.0, 5)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 2, got 1$"):
        minimum_detectable_effect(1.0, 1)
    with pytest.raises(ValueError, match=r"^power must be >= 0.5 and < 1, got 0.3$"):
        minimum_detectable_effect(1.0, 5, power=0.3)
    with pytest.raises(ValueError, match=r"^sd_b must be given together with n_b"):
        minimum_detectable_effect(1.0, 5, sd_b=1.0)
    with pytest.raises(ValueError, match=r"^sd must be a real number >= 0, got 'x'$"):
        minimum_detectable_effect("x", 5)


def test_record_mde_is_at_the_bonferroni_level_from_the_observed_spread():
    ds = study(np.random.default_rng(12), n=5, effect=-0.3)
    records = evaluate_claims(ds, [contrast(where={}, over=["shift", "n_train"]),
                                   contrast(name="w", paired=False)], power=0.9)
    for r in records:
        assert r.alpha_mde == pytest.approx(0.05 / 7) and r.power == 0.9
    sel = ds["error"].sel(shift="blur", n_train=16)
    d = (sel.sel(strategy="conv1") - sel.sel(strategy="full")).values
    assert records[0].mde == pytest.approx(
        minimum_detectable_effect(d.std(ddof=1), 5, 0.05 / 7, 0.9))
    a, b = sel.sel(strategy="conv1").values, sel.sel(strategy="full").values
    assert records[-1].mde == pytest.approx(minimum_detectable_effect(
        a.std(ddof=1), 5, 0.05 / 7, 0.9, sd_b=b.std(ddof=1), n_b=5))


# --------------------------------------------------------------------------------------------
# verdicts


def test_verdicts_in_each_regime():
    rng = np.random.default_rng(13)
    clear = study(rng, n=10, effect=-2.0, sd=0.5)
    opposite = study(rng, n=10, effect=2.0, sd=0.5)
    null = study(rng, n=4, effect=0.0, sd=1.0)
    assert one(clear, contrast()).verdict == "supported"
    assert one(clear, contrast(direction="greater")).verdict == "contradicted"
    assert one(opposite, contrast()).verdict == "contradicted"
    assert one(clear, contrast(direction="differs")).verdict == "supported"
    assert one(opposite, contrast(direction="differs")).verdict == "supported"
    r = one(null, contrast())
    assert r.verdict == "unresolved" and r.p_holm >= 0.05
    assert r.reason.startswith("not resolved at n = 4; MDE ") and r.reason.endswith(" rad")


def test_holm_turns_a_nominal_success_into_unresolved():
    """p = 0.019 alone is supported; as the smallest of three, its Holm p = 0.057 is not."""
    ds = study(np.random.default_rng(14), n=8, effect=-0.45, sd=0.5)
    alone = one(ds, contrast())
    assert alone.p < 0.05 and alone.verdict == "supported"
    with_others = evaluate_claims(ds, [contrast()] + [
        contrast(name=f"o{i}", arm={"strategy": "head"}, paired=False, direction="differs",
                 where={"shift": s, "n_train": 64}) for i, s in enumerate(["blur", "noise"])])
    first = with_others[0]
    assert 0.05 / 3 < alone.p < 0.05  # the regime this test is about (seeded data)
    assert first.p == alone.p and first.p_holm == pytest.approx(3 * alone.p)
    assert first.verdict == "unresolved" and first.reason.startswith("not resolved at n = 8")


def test_equivalence_verdicts():
    rng = np.random.default_rng(15)
    near = study(rng, n=12, effect=0.0, sd=0.05, shared=0.0)
    far = study(rng, n=12, effect=1.0, sd=0.05, shared=0.0)
    wide = study(rng, n=3, effect=0.0, sd=1.0, shared=0.0)
    eq = {"direction": "equivalent", "margin": 0.2}
    assert one(near, contrast(**eq)).verdict == "supported"
    far_r = one(far, contrast(**eq))
    assert far_r.verdict == "contradicted" and far_r.reason.startswith("beyond the margin")
    wide_r = one(wide, contrast(**eq))
    assert wide_r.verdict == "unresolved" and "smallest margin shown" in wide_r.reason
    assert wide_r.mde > 0.2


def test_an_arm_with_fewer_than_two_valid_replicates_is_untested_and_counts_in_the_family():
    ds = study(np.random.default_rng(16), n=3, effect=-3.0, sd=0.1)
    ds["error"].loc[{"shift": "blur", "n_train": 16, "strategy": "conv1",
                     "replicate": [0, 1]}] = np.nan
    other = contrast(name="other", where={"shift": "noise", "n_train": 16})
    bad, good = evaluate_claims(ds, [contrast(), other])
    assert bad.p is None and bad.p_holm == 1.0 and bad.ci_low is None
    assert bad.verdict == "unresolved" and bad.reason.startswith("not tested at n = 1")
    assert bad.excluded == {"failed": 0, "missing": 2, "nonpositive": 0}
    assert good.family_size == 2 and good.p_holm == pytest.approx(min(1, 2 * good.p))


# --------------------------------------------------------------------------------------------
# selection, expansion, exclusion


def test_expansion_gives_one_member_per_cell_each_as_if_declared_alone():
    ds = study(np.random.default_rng(17), n=6, effect=-0.5)
    records = evaluate_claims(ds, [contrast(name="x", where={"n_train": 64}, over=["shift"])])
    assert [r.name for r in records] == ["x[shift=blur]", "x[shift=noise]", "x[shift=invert]"]
    assert [r.cell for r in records] == [{"shift": s} for s in ("blur", "noise", "invert")]
    for r in records:
        alone = one(ds, contrast(where={"n_train": 64, **r.cell}))
        assert (r.estimate, r.p, r.ci_low) == (alone.estimate, alone.p, alone.ci_low)
    subset = evaluate_claims(ds, [contrast(where={"n_train": 64, "shift": ["noise", "blur"]},
                                           over=["shift"])])
    assert [r.cell["shift"] for r in subset] == ["noise", "blur"]
    both = evaluate_claims(ds, [contrast(where={}, over=["shift", "n_train"])])
    assert [tuple(r.cell.values()) for r in both] == [
        (s, n) for s in ("blur", "noise", "invert") for n in (16, 64)]


def test_failed_and_nan_replicates_are_excluded_and_counted():
    ds = study(np.random.default_rng(18), n=8, effect=-0.5)
    ds["failed"].loc[{"shift": "blur", "n_train": 16, "replicate": 2}] = True
    ds["error"].loc[{"shift": "blur", "n_train": 16, "replicate": 5, "strategy": "full"}] = np.nan
    r = one(ds, contrast())
    assert r.n == 6 and r.excluded == {"failed": 1, "missing": 1, "nonpositive": 0}
    kept = ds.isel(replicate=[0, 1, 3, 4, 6, 7])
    clean = one(kept, contrast())
    assert (r.estimate, r.p, r.ci_high) == pytest.approx((clean.estimate, clean.p,
                                                          clean.ci_high), rel=1e-12)
    welch_r = one(ds, contrast(paired=False))  # each arm counts its own
    assert (welch_r.n_arm, welch_r.n_against) == (7, 6)
    assert welch_r.excluded == {"failed": 2, "missing": 1, "nonpositive": 0}


def test_ratio_contrasts_exclude_nonpositive_values():
    ds = study(np.random.default_rng(19), n=6, log=True)
    ds["error"].loc[{"shift": "blur", "n_train": 16, "replicate": 0, "strategy": "conv1"}] = 0.0
    r = one(ds, contrast(scale="ratio"))
    assert r.n == 5 and r.excluded["nonpositive"] == 1


def test_a_callable_measure_reduces_extra_dimensions():
    rng = np.random.default_rng(20)
    fi = np.exp(rng.normal(0, 0.2, (2, 5, 6)))
    fi[1] *= 2.0
    ds = xr.Dataset({"fisher": (("phase", "replicate", "angle"), fi)},
                    coords={"phase": ["pretrain", "finetune"], "replicate": np.arange(5),
                            "angle": np.linspace(0, np.pi, 6, endpoint=False)})

    def near_log2_fi(d):
        return np.log2(d["fisher"]).isel(angle=slice(0, 3)).mean("angle")

    r = one(ds, Contrast(name="gain", statement="FI near the peak doubles",
                         measure=near_log2_fi, arm={"phase": "finetune"},
                         against={"phase": "pretrain"}, paired=True, direction="greater"))
    assert r.measure == "near_log2_fi" and r.estimate == pytest.approx(1.0, abs=0.3)
    assert r.verdict == "supported"


def test_paired_arms_must_share_replicate_seeds():
    ds = study(np.random.default_rng(21), n=4)
    seeds = np.arange(3 * 2 * 4).reshape(3, 2, 4)
    ds["replicate_seed"] = (("shift", "n_train", "replicate"), seeds)
    across = dict(arm={"shift": "noise"}, against={"shift": "blur"},
                  where={"n_train": 16, "strategy": "full"})
    with pytest.raises(ValueError, match=r"^contrast 'c': paired must be False for arms whose "
                                         r"replicates do not share seeds"):
        evaluate_claims(ds, [contrast(**across)])
    assert one(ds, contrast(paired=False, **across)).test == "Welch t"
    ds["replicate_seed"] = (("shift", "n_train", "replicate"), np.broadcast_to(
        np.arange(4), (3, 2, 4)).copy())  # a paired axis: one seed per replicate
    assert one(ds, contrast(**across)).test == "paired t"
    assert one(ds, contrast()).test == "paired t"  # within a replicate: always shared


@pytest.mark.parametrize("kw,message", [
    ({"measure": "err"}, r"^contrast 'c': measure must be a data variable of the Dataset "
                         r"\(error, failed\), got 'err'$"),
    ({"arm": {"strategy": "surgical"}, "against": {"strategy": "full"}},
     r"^contrast 'c': arm\['strategy'\] must be one of 'full', 'conv1', 'head', "
     r"got 'surgical'$"),
    ({"where": {"n_train": 16}}, r"^contrast 'c': the selections must leave only the "
                                 r"'replicate' dimension .*, got \['shift'\] left over$"),
    ({"where": {"shift": "blur", "n_train": 16, "lr": 1e-3}},
     r"^contrast 'c': where\['lr'\] must be a selection over a dimension of the measure"),
    ({"over": ["lr"], "where": {}}, r"^contrast 'c': over must be dimensions of the measure"),
])
def test_evaluation_errors_are_one_line_and_name_the_contrast(kw, message):
    ds = study(np.random.default_rng(22), n=3)
    with pytest.raises(ValueError, match=message) as info:
        evaluate_claims(ds, [contrast(**kw)])
    assert "\n" not in str(info.value)


def test_a_reduced_run_records_absent_cells_as_unresolved_when_asked():
    """A --quick grid without n_train = 16: by default an error (a typo looks the same);
    with missing="unresolved" the member is untested, says why, and stays in the family."""
    ds = study(np.random.default_rng(28), n=4, effect=-2.0, sd=0.2).sel(n_train=[64])
    declared = [contrast(), contrast(name="d", where={"n_train": 64}, over=["shift"]),
                contrast(name="e", arm={"strategy": "lora"}, against={"strategy": "full"},
                         where={"shift": "blur", "n_train": 64})]
    with pytest.raises(ValueError, match=r"^contrast 'c': where\['n_train'\] must be one of "
                                         r"64, got 16$"):
        evaluate_claims(ds, declared)
    records = evaluate_claims(ds, declared, missing="unresolved")
    assert [r.name for r in records] == ["c", "d[shift=blur]", "d[shift=noise]",
                                         "d[shift=invert]", "e"]
    absent = [records[0], records[-1]]
    assert [r.reason for r in absent] == ["not in this run: n_train=16 is not in the Dataset",
                                          "not in this run: strategy='lora' is not in the "
                                          "Dataset"]
    assert all(r.verdict == "unresolved" and r.p is None and r.n == 0 for r in absent)
    assert all(r.family_size == 5 for r in records)
    p = [math.nan if r.p is None else r.p for r in records]
    assert [r.p_holm for r in records] == pytest.approx(list(holm(p)))
    assert records[1].verdict == "supported"
    with pytest.raises(ValueError, match="^missing must be one of 'raise', 'unresolved'"):
        evaluate_claims(ds, declared, missing="skip")


def test_float_coordinates_match_within_float32_rounding():
    ds = xr.Dataset({"x": (("kappa", "replicate"), np.arange(8.0).reshape(2, 4))},
                    coords={"kappa": np.array([0.1, 2.0], np.float32),
                            "replicate": np.arange(4)})
    r = one(ds, Contrast(name="k", statement="s", measure="x", arm={"kappa": 2.0},
                         against={"kappa": 0.1}, paired=False, direction="greater"))
    assert r.estimate == pytest.approx(4.0)


# --------------------------------------------------------------------------------------------
# declarations


@pytest.mark.parametrize("kw,message", [
    ({"name": ""}, "contrast: name must be a non-empty string, got ''"),
    ({"name": "a[b]"}, "contrast 'a[b]': name must be a name without brackets"),
    ({"statement": "two\nlines"}, "contrast 'c': statement must be one line of text"),
    ({"direction": "lower"}, "contrast 'c': direction must be one of 'greater', 'less', "
                             "'differs', 'equivalent', got 'lower'"),
    ({"scale": "log"}, "contrast 'c': scale must be one of 'difference', 'ratio', got 'log'"),
    ({"paired": None}, "contrast 'c': paired must be True or False for a contrast between two "
                       "arms, got None"),
    ({"paired": "yes"}, "contrast 'c': paired must be None or True or False, got 'yes'"),
    ({"against": 0.0}, "contrast 'c': paired must be None against a reference value"),
    ({"against": {"strategy": "conv1"}}, "contrast 'c': against must be an arm different "
                                         "from arm"),
    ({"against": {"shift": "blur"}}, "contrast 'c': against must be an arm selecting the same "
                                     "dimensions as arm ['strategy']"),
    ({"against": [1, 2]}, "contrast 'c': against must be an arm (a dict of selections), a "
                          "number, the name of a data variable or a callable"),
    ({"arm": {}}, "contrast 'c': arm must be a non-empty selection for a contrast between two "
                  "arms, got {}"),
    ({"arm": {"strategy": ["a", "b"]}}, "contrast 'c': arm['strategy'] must be a coordinate "
                                        "value"),
    ({"arm": {"strategy": math.nan}}, "contrast 'c': arm['strategy'] must be a coordinate"),
    ({"direction": "equivalent"}, "contrast 'c': margin must be a positive number for an "
                                  "equivalence claim, got None"),
    ({"margin": 0.1}, "contrast 'c': margin must be None unless direction is 'equivalent', "
                      "got 0.1"),
    ({"direction": "equivalent", "margin": -1.0}, "contrast 'c': margin must be None or a real "
                                                  "number > 0, got -1.0"),
    ({"direction": "equivalent", "margin": 0.9, "scale": "ratio"},
     "contrast 'c': margin must be a fold > 1 on the ratio scale, got 0.9"),
    ({"against": -1.0, "paired": None, "scale": "ratio"},
     "contrast 'c': against must be a positive reference on the ratio scale, got -1.0"),
    ({"over": "shift"}, "contrast 'c': over must be a list of names (a bare string is not "
                        "split into characters), got 'shift'"),
    ({"over": ["shift"]}, "contrast 'c': over must be dimensions not fixed by arm or where"),
    ({"where": {"shift": ["blur"]}}, "contrast 'c': where['shift'] must be one value (a list "
                                     "is only for an 'over' dimension)"),
    ({"where": {"strategy": "x"}}, "contrast 'c': where must be selections of dimensions "
                                   "other than arm's ['strategy']"),
    ({"measure": 3}, "contrast 'c': measure must be a non-empty string or a callable, got 3"),
    ({"measure": lambda d: d["error"]}, "contrast 'c': label must be a name for the callable "
                                        "measure (a lambda has none), got None"),
    ({"exploratory": 1}, "contrast 'c': exploratory must be True or False, got 1"),
    ({"colour": "red"}, None),
])
def test_bad_declarations_raise_one_line_naming_the_parameter_and_value(kw, message):
    with pytest.raises((ValueError, TypeError)) as info:
        contrast(**kw)
    text = str(info.value)
    assert "\n" not in text
    if message is not None:
        assert text.startswith(message), text


def test_check_grid_checks_selections_on_grid_axes_only():
    c = contrast(where={"shift": "blur", "n_train": 16})
    c.check_grid({"shift": ["blur", "noise"], "n_train": [16, 64]})
    with pytest.raises(ValueError, match=r"^contrast 'c': where\['n_train'\] must be one of "
                                         r"16, 64, got 32$"):
        contrast(where={"shift": "blur", "n_train": 32}).check_grid({"n_train": [16, 64]})


def test_contrast_names_must_be_unique_and_contrasts_a_list():
    ds = study(np.random.default_rng(23), n=3)
    with pytest.raises(ValueError, match=r"^contrasts\[1\]\.name must be a name unique in the "
                                         r"study, got 'c'$"):
        evaluate_claims(ds, [contrast(), contrast()])
    with pytest.raises(ValueError, match="^contrasts must be a list of Contrast"):
        evaluate_claims(ds, contrast())
    with pytest.raises(ValueError, match="^alpha must be"):
        evaluate_claims(ds, [contrast()], alpha=1.5)


# --------------------------------------------------------------------------------------------
# exploratory, storage, rendering


def test_exploratory_contrasts_stay_out_of_the_family():
    ds = study(np.random.default_rng(24), n=8, effect=-1.0)
    declared = [contrast(), contrast(name="d", where={"shift": "noise", "n_train": 16})]
    alone = evaluate_claims(ds, declared)
    post_hoc = contrast(name="x", where={}, over=["shift", "n_train"], exploratory=True)
    mixed = evaluate_claims(ds, [post_hoc, *declared])
    assert [r.name for r in mixed[:2]] == ["c", "d"]  # declared first
    assert [r.p_holm for r in mixed[:2]] == [r.p_holm for r in alone]
    assert all(r.family_size == 2 for r in mixed[:2])
    for r in mixed[2:]:
        assert r.exploratory and r.verdict == "exploratory"
        assert r.p_holm is None and r.family_size is None and r.alpha_mde == 0.05


@needs_h5py
def test_records_survive_save_and_load(tmp_path):
    from anglesim.io import load_dataset, save_dataset

    ds = study(np.random.default_rng(25), n=5, effect=-0.7, log=True)
    ds["failed"].loc[{"shift": "invert", "n_train": 64, "replicate": 1}] = True
    records = evaluate_claims(ds, [
        contrast(where={}, over=["shift", "n_train"], scale="ratio"),
        contrast(name="eq", direction="equivalent", margin=1.5, scale="ratio",
                 where={"shift": "noise", "n_train": 64}),
        contrast(name="v", arm={"strategy": "head"}, against=1.0, paired=None,
                 direction="differs", exploratory=True),
    ])
    ds.attrs.update(claims_to_attrs(records))
    path = save_dataset(ds, tmp_path / "study.nc")
    assert claims_from_dataset(load_dataset(path)) == records
    with xr.open_dataset(path, engine="h5netcdf") as raw:  # plain xarray: the JSON text
        assert isinstance(raw.attrs[CLAIMS_ATTR], str)
        assert claims_from_dataset(raw) == records


def test_record_dicts_are_plain_json_and_come_back():
    ds = study(np.random.default_rng(26), n=2)
    ds["error"].loc[{"strategy": "conv1", "replicate": 1}] = np.nan
    records = evaluate_claims(ds, [contrast()])
    text = json.dumps(claims_to_attrs(records)[CLAIMS_ATTR], allow_nan=False)
    assert [ClaimRecord.from_dict(d) for d in json.loads(text)] == records
    assert claims_from_dataset(xr.Dataset()) == []
    with pytest.raises(ValueError, match="^record must be a dict with the fields"):
        ClaimRecord.from_dict({"name": "x"})


def test_claims_table_rst_and_text():
    ds = study(np.random.default_rng(27), n=8, effect=-0.6, log=True)
    records = evaluate_claims(ds, [
        contrast(where={"n_train": 64}, over=["shift"], scale="ratio"),
        contrast(name="x", arm={"strategy": "head"}, paired=False, direction="differs",
                 exploratory=True)])
    rst = claims_table(records)
    start = rst.index(".. list-table::\n   :header-rows: 1\n\n   * - claim\n")
    block = rst[start:].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in row.split("\n     - ")]
            for row in block.split("   * - ")[1:]]
    assert rows[0] == ["claim", "cell", "estimate [95% CI]", "p", "Holm p", "MDE", "n",
                       "verdict"]
    first = records[0]
    assert rows[1][:2] == ["``c``", "shift=blur"]
    assert rows[1][2].startswith("×") and rows[1][2].count("[") == 1
    assert rows[1][6] == "8" and rows[1][7] == first.verdict
    assert "* ``c``: conv1 beats full (error; strategy=conv1 vs strategy=full" in rst
    assert "Holm-adjusted over the family of 3 declared contrasts at α = 0.05" in rst
    declared, exploratory = rst.split("**Exploratory comparisons")
    assert "``x``" not in declared and "``x``" in exploratory and "8 + 8" in exploratory
    text = claims_table(records, format="text")
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("claim"))
    assert set(lines[header + 1]) <= {"-", " "}
    assert lines[header + 2].split()[:2] == ["c", "shift=blur"]
    assert "Exploratory comparisons" in text and "``" not in text
    assert claims_table(records) == rst  # deterministic
    with pytest.raises(ValueError, match="^format must be one of 'rst', 'text', got 'md'$"):
        claims_table(records, format="md")


def test_numbers_are_formatted_to_significant_digits():
    from anglesim.claims._format import effect, interval, number, p_value

    assert [number(x) for x in (0.123456, 12.345, -0.0012345, 1234567.0, 0.0, 2.0)] == [
        "0.123", "12.3", "−0.00123", "1.23e+06", "0", "2.00"]
    assert [p_value(p) for p in (0.0004, 0.0123, 0.5, 0.996, 1.0, None)] == [
        "< 0.001", "0.012", "0.50", "> 0.99", "1", "—"]
    assert effect(2.7449, "ratio") == "×2.74" and effect(None, "difference") == "—"
    # an interval shows its width to two significant digits, each number at least three
    assert interval(1.00291, 1.00123, 1.00457, "ratio") == "×1.0029 [1.0012, 1.0046]"
    assert interval(2.94, 0.0015, 5780.0, "ratio") == "×2.94 [0.00150, 5780]"
    assert interval(-0.678, -0.909, -0.446, "difference") == "−0.678 [−0.909, −0.446]"
    assert interval(0.25, None, None, "difference") == "0.250"


@needs_h5py
def test_the_user_guide_s_declarations_run():
    """The code blocks of docs/user_guide/claims.rst construct their contrasts, and the
    derived-measure example evaluates on the published quickstart Dataset."""
    from pathlib import Path

    from anglesim.io import load_dataset

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "user_guide" / "claims.rst").read_text(encoding="utf-8")
    blocks = []
    for chunk in page.split(".. code-block:: python\n\n")[1:]:
        lines = []
        for line in chunk.splitlines():
            if line and not line.startswith("   "):
                break
            lines.append(line[3:])
        blocks.append("\n".join(lines))
    assert len(blocks) == 3
    namespace: dict = {}
    exec(blocks[0], namespace)
    exec(blocks[1], namespace)
    assert [c.name for c in namespace["claims"]] == ["surgical_vs_full", "alpha_law"]
    namespace.update(ds=load_dataset(root / "figures" / "data" / "quickstart.nc"),
                     claims=[namespace["near_gain"]])
    exec(blocks[2], namespace)
    records = namespace["records"]
    assert [r.cell["layer"] for r in records] == list(namespace["ds"]["layer"].values)
    assert records[-1].units == "log2 rad^-2" and records[-1].verdict == "supported"
    assert namespace["rst"].startswith("* ``near_gain``: fine-tuning on a concentrated prior")
