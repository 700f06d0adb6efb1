"""The tests behind a claim: t statistics (one-sample/paired and Welch), two-sided and
equivalence p-values, Holm's step-down adjustment, the power of each test and the minimum
detectable effect.

Everything here works on plain numpy vectors on the scale the test is made on (the log scale
for ratios); :mod:`._evaluate` picks the vectors out of a Dataset and transforms back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as st

from .. import validation as check

__all__ = [
    "NODES",
    "TTest",
    "detection_power",
    "holm",
    "minimum_detectable_effect",
    "one_sample",
    "welch",
    "welch_df",
]


@dataclass(frozen=True)
class TTest:
    """A t statistic's ingredients: the estimate (a mean, or a difference of means), its
    standard error and degrees of freedom, and the counts and SDs it came from."""

    estimate: float
    se: float
    df: float
    n_a: int
    n_b: int | None = None
    sd_a: float = math.nan
    sd_b: float | None = None

    def statistic(self, null: float = 0.0) -> float:
        """t = (estimate − null)/se (±inf where se = 0 and the estimate differs from null)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(self.estimate - null) / np.float64(self.se))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """estimate ∓ t_{df, (1+level)/2} · se."""
        half = st.t.ppf(0.5 + level / 2, self.df) * self.se
        return self.estimate - half, self.estimate + half

    def p_two_sided(self, null: float = 0.0) -> float:
        """``2 · P(T_df > |t|)`` for H0: effect = null (NaN for 0/0)."""
        t = self.statistic(null)
        return math.nan if math.isnan(t) else float(2 * st.t.sf(abs(t), self.df))

    def p_equivalence(self, margin: float) -> float:
        """Schuirmann's two one-sided tests (TOST; Schuirmann 1987, J Pharmacokinet Biopharm
        15: 657–680) of H0: ``|effect| ≥ margin``:
        ``max(P(T > (x̄ + Δ)/se), P(T < (x̄ − Δ)/se))``."""
        low = self.statistic(-margin)
        high = self.statistic(margin)
        if math.isnan(low) or math.isnan(high):
            return math.nan
        return float(max(st.t.sf(low, self.df), st.t.cdf(high, self.df)))

    def p_beyond(self, margin: float) -> float:
        """Two-sided p of H0: effect = ±margin on the side of the estimate, where the estimate
        lies beyond it (1 where it lies within ±margin): the evidence that the effect exceeds
        the margin."""
        if abs(self.estimate) <= margin:
            return 1.0
        return self.p_two_sided(math.copysign(margin, self.estimate))


def one_sample(d: np.ndarray) -> TTest:
    """The one-sample t test of the mean of ``d`` (paired differences, or values minus a
    reference): x̄, se = s/√n, df = n − 1 (Student 1908). Needs n ≥ 2."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    sd = float(d.std(ddof=1))
    return TTest(float(d.mean()), sd / math.sqrt(n), n - 1, n, sd_a=sd)


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom (Welch 1947, Biometrika 34: 28–35):

        ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)).
    """
    va, vb = var_a / n_a, var_b / n_b
    denominator = va**2 / (n_a - 1) + vb**2 / (n_b - 1)
    if denominator == 0:
        return float(n_a + n_b - 2)  # both arms constant: no spread to weigh
    return float((va + vb) ** 2 / denominator)


def welch(a: np.ndarray, b: np.ndarray) -> TTest:
    """Welch's t test of mean(a) − mean(b) for independent samples of unequal variance:
    se = √(s_a²/n_a + s_b²/n_b), df by :func:`welch_df`. Needs n_a, n_b ≥ 2."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    sa, sb = float(a.std(ddof=1)), float(b.std(ddof=1))
    se = math.sqrt(sa**2 / a.size + sb**2 / b.size)
    return TTest(float(a.mean() - b.mean()), se, welch_df(sa**2, a.size, sb**2, b.size),
                 a.size, b.size, sa, sb)


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979, Scand J Statist 6: 65–70).

    With the m p-values sorted, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value of the i-th is

        p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1) · p₍ⱼ₎),

    and rejecting where p̃ < α controls the family-wise error rate at α. A NaN (a contrast that
    could not be tested) counts in m as p = 1.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return p.copy()
    filled = np.where(np.isnan(p), 1.0, p)
    if ((filled < 0) | (filled > 1)).any():
        raise check.fail("p", "p-values in [0, 1]", p.tolist())
    order = np.argsort(filled, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * filled[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


NODES = 128
"""Quadrature nodes per sample variance in :func:`detection_power` (midpoints in probability
of the χ² distribution of each variance; the power is a bounded smooth function of them)."""


def detection_power(effect: float, sd: float, n: int, alpha: float = 0.05, *,
                    sd_b: float | None = None, n_b: int | None = None,
                    equivalence: bool = False) -> float:
    """The probability that the claim's test succeeds when the true effect is ``effect`` and
    the true SDs are ``sd`` (and ``sd_b``).

    * One-sample or paired t test (``sd_b`` None; ``sd`` the SD of the differences, ``n`` the
      pairs): P(T′ > t_{n−1, 1−α/2}) for the noncentral t T′ with n − 1 df and noncentrality
      λ = effect·√n/sd — the exact power of rejecting H0: δ = 0 two-sided on the side of the
      effect (Cohen 1988, *Statistical Power Analysis for the Behavioral Sciences*, ch. 2).
    * Welch's test (``sd_b``, ``n_b`` given): exact up to quadrature, by integrating over the
      two sample variances s_a² ~ σ_a²χ²_{n_a−1}/(n_a−1), s_b² likewise: given them, the test
      rejects on the effect's side with probability Φ((δ − t_{ν̂, 1−α/2}·ŝe)/se), where ŝe and
      the Welch–Satterthwaite ν̂ come from the sample variances and se from the true ones (the
      numerical approach Moser, Stevens & Watts 1989, Commun Stat Theory Methods 18:
      3963–3975, used for the power of Satterthwaite's test). The noncentral t with ν
      computed from the true variances overstates it at small n (0.70 instead of 0.80 at
      n = 3 per arm), hence the integral.
    * ``equivalence=True``: the power of Schuirmann's TOST at level α with margin
      ``effect`` when the true effect is 0: ``P(|x̄| + t_{ν̂, 1−α}·ŝe < Δ)``, integrated the same
      way (over s² alone for one sample).
    """
    alpha = check.real("alpha", alpha, minimum=0, maximum=1, min_open=True, max_open=True)
    effect = check.real("effect", effect, minimum=0)
    return _power_function(sd, n, alpha, sd_b, n_b, equivalence)(effect)


def _power_function(sd: Any, n: Any, alpha: float, sd_b: Any, n_b: Any,
                    equivalence: bool) -> Callable[[float], float]:
    """effect ↦ power of the test (:func:`detection_power`), its quadrature nodes computed
    once."""
    sd = check.real("sd", sd, minimum=0)
    n = check.integer("n", n, minimum=2)
    if (sd_b is None) != (n_b is None):
        raise check.fail("sd_b", "given together with n_b (Welch) or both None", sd_b)
    welch_test = sd_b is not None
    if welch_test:
        sd_b = check.real("sd_b", sd_b, minimum=0)
        n_b = check.integer("n_b", n_b, minimum=2)
    se = math.sqrt(sd**2 / n + (sd_b**2 / n_b if welch_test else 0.0))
    if se == 0:
        return lambda effect: 1.0 if effect > 0 else 0.0
    if not welch_test and not equivalence:
        critical = st.t.ppf(1 - alpha / 2, n - 1)
        return lambda effect: float(st.nct.sf(critical, n - 1, effect / se))
    se_hat, critical = _sampled_se(sd, n, sd_b, n_b, alpha if equivalence else alpha / 2)
    margin = critical * se_hat
    if equivalence:
        return lambda effect: float(np.mean(np.clip(
            st.norm.cdf((effect - margin) / se) - st.norm.cdf((margin - effect) / se), 0, 1)))
    return lambda effect: float(np.mean(st.norm.cdf((effect - margin) / se)))


def _sampled_se(sd: float, n: int, sd_b: float | None, n_b: int | None,
                tail: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes (equal weights) of the estimated standard error and the critical value
    t_{ν̂, 1−tail} the test would use."""
    if sd_b is None:  # one variance: a finer 1-d rule costs little
        u = (np.arange(8 * NODES) + 0.5) / (8 * NODES)
        var_a = sd**2 * st.chi2.ppf(u, n - 1) / (n - 1)
        return np.sqrt(var_a / n), np.full(var_a.shape, st.t.ppf(1 - tail, n - 1))
    u = (np.arange(NODES) + 0.5) / NODES
    var_a = sd**2 * st.chi2.ppf(u, n - 1) / (n - 1)
    var_b = sd_b**2 * st.chi2.ppf(u, n_b - 1) / (n_b - 1)
    va, vb = np.meshgrid(var_a / n, var_b / n_b, indexing="ij")
    va, vb = va.ravel(), vb.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n_b - 1))
    nu = np.where(np.isfinite(nu), nu, n + n_b - 2)
    return np.sqrt(va + vb), st.t.ppf(1 - tail, nu)


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8, *,
                              sd_b: float | None = None, n_b: int | None = None,
                              equivalence: bool = False) -> float:
    """The smallest true effect the claim's test detects with probability ``power``: the δ ≥ 0
    at which :func:`detection_power` equals ``power`` (the paired/one-sample test from the SD
    of the differences ``sd`` over ``n`` pairs; Welch's from both arms' ``sd``, ``n`` and
    ``sd_b``, ``n_b``). With ``equivalence=True``, the smallest margin Δ that the TOST shows
    with that probability when the true effect is 0.

    "Detects" means rejects H0: δ = 0 at the two-sided level ``alpha`` on the side of the
    effect, which is what a directional verdict needs. ``power`` must lie in [0.5, 1). The MDE
    is 0 where every SD is 0, and NaN where an SD is NaN.
    """
    alpha = check.real("alpha", alpha, minimum=0, maximum=1, min_open=True, max_open=True)
    power = check.real("power", power, minimum=0.5, maximum=1, max_open=True)
    if any(isinstance(v, float) and math.isnan(v) for v in (sd, sd_b)):
        return math.nan
    power_of = _power_function(sd, n, alpha, sd_b, n_b, equivalence)
    scale = math.sqrt(sd**2 / n + (sd_b**2 / n_b if sd_b is not None else 0.0))
    if scale == 0:
        return 0.0

    def shortfall(effect: float) -> float:
        return power_of(effect) - power

    high = 4.0 * scale
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-9 * scale, rtol=1e-10))
