"""Evaluating declared contrasts on a study's Dataset: selection, exclusion, the tests, Holm
over the family, the MDE and the verdict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .. import validation as check
from ._contrast import Contrast, matches
from ._format import effect, p_value
from ._records import ClaimRecord
from ._statistics import TTest, holm, minimum_detectable_effect, one_sample, welch

__all__ = ["evaluate_claims"]

LEVEL = 0.95  # the level of every reported interval


@dataclass
class _Member:
    """One expanded contrast, its values picked out (on the test's scale) and counted."""

    contrast: Contrast
    cell: dict[str, Any]
    units: str
    x: np.ndarray  # the arm's valid values (paired: the valid pairs' arm values)
    y: np.ndarray | None  # the other arm's valid values, or the reference's
    excluded: dict[str, int]
    test: TTest | None = None
    p: float = math.nan
    absent: str | None = None  # why the cell is not in the Dataset (missing="unresolved")

    @property
    def name(self) -> str:
        if not self.cell:
            return self.contrast.name
        inside = ", ".join(f"{k}={v}" for k, v in self.cell.items())
        return f"{self.contrast.name}[{inside}]"


def evaluate_claims(ds: xr.Dataset, contrasts: Sequence[Contrast], alpha: float = 0.05,
                    power: float = 0.8, *, missing: str = "raise") -> list[ClaimRecord]:
    """Evaluate a study's declared contrasts on its Dataset; one record per family member.

    For each contrast (each of its cells, when it expands ``over`` axes): the replicates the
    arm (and the other arm, or the reference) select, minus failed ones (a ``failed``
    variable, broadcast over the measure), NaNs and, on the ratio scale, values ≤ 0, each
    count reported in ``excluded``; then

    * the test: the paired t test on the differences (two arms, ``paired=True``), Welch's t
      test (``paired=False``), or the one-sample t test of arm − reference (a fixed value or
      a per-cell/per-replicate reference); on the ratio scale of the natural logs;
    * the estimate and its 95% t interval (back-transformed for ratios: a fold and its
      interval); the arms' means (geometric for ratios);
    * ``p``: two-sided, of H0: no difference (ratio 1), for every direction but
      ``"equivalent"``, whose p is the TOST p of H0: ``|effect| ≥ margin``;
    * ``p_holm``: Holm's adjustment over the family, which is every member of every contrast
      not marked exploratory (a member that cannot be tested counts as p = 1);
    * ``mde``: :func:`minimum_detectable_effect` for the observed SDs and counts at the
      Bonferroni level α/m (m the family size; a Holm rejection follows whenever p < α/m, so
      the power at the MDE is at least ``power``), on the reported scale (a fold > 1 for
      ratios); for equivalence claims the smallest margin shown with that power at a true
      effect of 0;
    * the verdict (documented in ``docs/user_guide/claims.rst``): ``supported`` where
      p_holm < α and the estimate lies on the asserted side (``differs``: either side;
      ``equivalent``: the TOST's p_holm < α); ``contradicted`` where p_holm < α on the
      opposite side of a ``greater``/``less`` claim, or, for ``equivalent``, the effect is
      shown beyond the margin (two-sided p against the margin on the estimate's side, times m,
      < α); ``unresolved`` otherwise; ``exploratory`` for exploratory contrasts (unadjusted,
      MDE at α).

    Args:
        ds: the study's Dataset (dims ``replicate`` and the grid axes, a ``failed`` variable
            where the study runner made one).
        contrasts: the study's declared (and any exploratory) contrasts; names unique.
        alpha: the family-wise level.
        power: the power the MDE is computed for, in [0.5, 1).
        missing: what a selection naming a coordinate value the Dataset lacks does:
            ``"raise"`` (a typo in a declaration) or ``"unresolved"`` (a reduced run, e.g.
            ``--quick`` with fewer grid values: the member is recorded as untested,
            "not in this run", and still counts in the family).

    Returns:
        The records, declared members first in declaration and cell order, then exploratory.

    Raises:
        ValueError: one line naming the contrast, for a measure or selection the Dataset
            does not have, arms that do not share seeds but are declared paired, or a
            measure left with dimensions other than ``replicate`` after the selections.
    """
    check.instance("ds", ds, xr.Dataset, "an xarray.Dataset")
    alpha = check.real("alpha", alpha, minimum=0, maximum=1, min_open=True, max_open=True)
    power = check.real("power", power, minimum=0.5, maximum=1, max_open=True)
    missing = check.choice("missing", missing, ("raise", "unresolved"))
    if isinstance(contrasts, Contrast) or not isinstance(contrasts, Sequence):
        raise check.fail("contrasts", "a list of Contrast", contrasts)
    names: set[str] = set()
    for i, contrast in enumerate(contrasts):
        check.instance(f"contrasts[{i}]", contrast, Contrast, "a Contrast")
        if contrast.name in names:
            raise check.fail(f"contrasts[{i}].name", "a name unique in the study",
                             contrast.name)
        names.add(contrast.name)

    members = [m for c in contrasts for m in _members(ds, c, missing == "raise")]
    for member in members:
        _test(member)
    declared = [m for m in members if not m.contrast.exploratory]
    exploratory = [m for m in members if m.contrast.exploratory]
    adjusted = holm([m.p for m in declared])
    m = len(declared)
    records = [_record(mem, float(q), m, alpha, power) for mem, q in zip(declared, adjusted,
                                                                          strict=True)]
    records += [_record(mem, None, None, alpha, power) for mem in exploratory]
    return records


# --------------------------------------------------------------------------------------------
# picking the values out of the Dataset


class _Absent(ValueError):
    """A selection names a coordinate value the Dataset does not have."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        self.short = short


def _members(ds: xr.Dataset, c: Contrast, strict: bool) -> list[_Member]:
    owner = f"contrast {c.name!r}"
    measure = _measure(ds, c.measure, f"{owner}: measure", c.measure_name)
    units = str(measure.attrs.get("units", ""))
    failed = _failed(ds, measure)
    try:
        measure = _select(measure, c.where, f"{owner}: where")
    except _Absent as exc:
        if strict:
            raise
        return [_absent(c, {}, units, exc)]
    failed = _select(failed, c.where, f"{owner}: where", partial=True)
    for dim in c.over:
        if dim not in measure.dims:
            raise check.fail(f"{owner}: over", f"dimensions of the measure {list(measure.dims)}",
                             list(c.over))
    axes = [[_python(v) for v in measure[dim].values] for dim in c.over]
    out = []
    for values in itertools.product(*axes):
        cell = dict(zip(c.over, values, strict=True))
        try:
            out.append(_pick(ds, c, owner, measure, failed, cell, units))
        except _Absent as exc:
            if strict:
                raise
            out.append(_absent(c, cell, units, exc))
    return out


def _absent(c: Contrast, cell: dict[str, Any], units: str, exc: _Absent) -> _Member:
    empty = np.empty(0)
    return _Member(c, cell, units, empty, empty if c.two_arms else None,
                   {"failed": 0, "missing": 0, "nonpositive": 0}, absent=exc.short)


def _pick(ds: xr.Dataset, c: Contrast, owner: str, measure: xr.DataArray, failed: xr.DataArray,
          cell: dict[str, Any], units: str) -> _Member:
    arm_sel = {**cell, **c.arm}
    x = _vector(_select(measure, arm_sel, f"{owner}: arm"), owner)
    fx = _vector(_select(failed, arm_sel, f"{owner}: arm", partial=True), owner, broadcast=x)
    log = c.scale == "ratio"
    if c.two_arms:
        other_sel = {**cell, **c.against}
        y = _vector(_select(measure, other_sel, f"{owner}: against"), owner)
        fy = _vector(_select(failed, other_sel, f"{owner}: against", partial=True), owner,
                     broadcast=y)
        if c.paired:
            _check_seeds(ds, c, owner, arm_sel, other_sel)
            bad_failed = fx | fy
            bad_missing = ~bad_failed & (np.isnan(x) | np.isnan(y))
            bad_sign = (~bad_failed & ~bad_missing & ((x <= 0) | (y <= 0)) if log
                        else np.zeros_like(bad_failed))
            ok = ~(bad_failed | bad_missing | bad_sign)
            excluded = _counts(bad_failed, bad_missing, bad_sign)
            return _Member(c, cell, units, _scale(x[ok], log), _scale(y[ok], log), excluded)
        okx, ex = _valid(x, fx, log)
        oky, ey = _valid(y, fy, log)
        excluded = {k: ex[k] + ey[k] for k in ex}
        return _Member(c, cell, units, _scale(x[okx], log), _scale(y[oky], log), excluded)
    reference = _reference(ds, c, owner, cell, x)
    bad_failed = fx
    bad_missing = ~bad_failed & (np.isnan(x) | np.isnan(reference))
    bad_sign = (~bad_failed & ~bad_missing & ((x <= 0) | (reference <= 0)) if log
                else np.zeros_like(bad_failed))
    ok = ~(bad_failed | bad_missing | bad_sign)
    return _Member(c, cell, units, _scale(x[ok], log), _scale(reference[ok], log),
                   _counts(bad_failed, bad_missing, bad_sign))


def _measure(ds: xr.Dataset, measure: Any, what: str, label: str) -> xr.DataArray:
    if isinstance(measure, str):
        if measure not in ds.data_vars:
            raise check.fail(what, "a data variable of the Dataset "
                             f"({', '.join(sorted(map(str, ds.data_vars)))})", measure)
        da = ds[measure]
    else:
        try:
            da = measure(ds)
        except Exception as exc:  # noqa: BLE001 - reported in one line, with its cause
            raise ValueError(f"{what}: {label} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(da, xr.DataArray):
            raise check.fail(what, f"a callable returning a DataArray ({label})", da)
    if "replicate" not in da.dims:
        raise check.fail(what, "a measure with a 'replicate' dimension",
                         f"{label} with dims {tuple(da.dims)}")
    if da.dtype.kind not in "iufb":
        raise check.fail(what, "a numeric measure", f"{label} of dtype {da.dtype}")
    return da.astype(np.float64)


def _failed(ds: xr.Dataset, measure: xr.DataArray) -> xr.DataArray:
    """The ``failed`` flags on the measure's dims (any over dims the measure lacks)."""
    if "failed" not in ds.variables:
        return xr.zeros_like(measure, dtype=bool)
    failed = ds["failed"].astype(bool)
    extra = [d for d in failed.dims if d not in measure.dims]
    if extra:
        failed = failed.any(extra)
    return failed


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _select(da: xr.DataArray, selection: dict[str, Any], what: str, *,
            partial: bool = False) -> xr.DataArray:
    """``da`` at the selection: one value drops its dim, a list keeps it; ``partial`` skips
    dims ``da`` lacks (for the failed flags and the seeds)."""
    for key, value in selection.items():
        if key not in da.dims:
            if partial:
                continue
            raise check.fail(f"{what}[{key!r}]", f"a selection over a dimension of the measure "
                             f"{list(map(str, da.dims))}", key)
        coord = da[key].values
        options = [_python(v) for v in coord]
        wanted = value if isinstance(value, list) else [value]
        index = []
        for item in wanted:
            hits = [i for i, option in enumerate(options) if matches(item, option)]
            if not hits:
                error = check.fail(f"{what}[{key!r}]",
                                   "one of " + ", ".join(repr(o) for o in options), item)
                raise _Absent(str(error), f"{key}={item!r} is not in the Dataset")
            if len(hits) > 1:
                raise check.fail(f"{what}[{key!r}]", "a value that names one coordinate", item)
            index.append(hits[0])
        da = da.isel({key: index if isinstance(value, list) else index[0]})
    return da


def _vector(da: xr.DataArray, owner: str, broadcast: np.ndarray | None = None) -> np.ndarray:
    """The values over ``replicate`` as a 1-D array (the failed flags broadcast to the arm)."""
    if broadcast is not None:
        if da.ndim == 0:
            return np.full(broadcast.shape, bool(da))
        return np.asarray(da.transpose("replicate").values, dtype=bool)
    extra = [str(d) for d in da.dims if d != "replicate"]
    if extra:
        raise ValueError(f"{owner}: the selections must leave only the 'replicate' dimension "
                         "(select the others in arm or where, expand them with over, or "
                         f"reduce them in a callable measure), got {extra} left over")
    return np.asarray(da.values, dtype=np.float64)


def _reference(ds: xr.Dataset, c: Contrast, owner: str, cell: dict[str, Any],
               x: np.ndarray) -> np.ndarray:
    """The reference value per replicate of the arm (a number broadcast, or a variable /
    callable selected like the measure on the dims it has)."""
    if isinstance(c.against, float):
        return np.full(x.shape, c.against)
    label = c.against_label
    ref = _measure_reference(ds, c.against, f"{owner}: against", label)
    ref = _select(ref, {**c.where, **cell, **c.arm}, f"{owner}: against", partial=True)
    extra = [str(d) for d in ref.dims if d != "replicate"]
    if extra:
        raise ValueError(f"{owner}: against must be a reference with one value per cell or "
                         f"per replicate after the selections, got {label} with {extra} "
                         "left over")
    if "replicate" in ref.dims:
        return np.asarray(ref.values, dtype=np.float64)
    return np.full(x.shape, float(ref.values))


def _measure_reference(ds: xr.Dataset, against: Any, what: str, label: str) -> xr.DataArray:
    if isinstance(against, str):
        if against not in ds.variables:
            raise check.fail(what, "a variable of the Dataset "
                             f"({', '.join(sorted(map(str, ds.data_vars)))})", against)
        da = ds[against]
    else:
        try:
            da = against(ds)
        except Exception as exc:  # noqa: BLE001 - reported in one line, with its cause
            raise ValueError(f"{what}: {label} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(da, xr.DataArray):
            raise check.fail(what, f"a callable returning a DataArray ({label})", da)
    if da.dtype.kind not in "iuf":
        raise check.fail(what, "a numeric reference", f"{label} of dtype {da.dtype}")
    return da.astype(np.float64)


def _check_seeds(ds: xr.Dataset, c: Contrast, owner: str, arm_sel: dict, other_sel: dict) -> None:
    """Refuse a paired contrast whose arms' replicates have different seeds (different
    networks: pairing them by index would be a false pairing)."""
    if "replicate_seed" not in ds.variables:
        return
    seeds = ds["replicate_seed"]
    a = _select(seeds, {**c.where, **arm_sel}, f"{owner}: arm", partial=True)
    b = _select(seeds, {**c.where, **other_sel}, f"{owner}: against", partial=True)
    if a.dims != ("replicate",) or b.dims != ("replicate",):
        return  # the measure reduced over a grid axis: no one seed per replicate
    if not np.array_equal(a.values, b.values):
        raise check.fail(f"{owner}: paired", "False for arms whose replicates do not share "
                         "seeds (declare the axis as paired in the grid, or paired=False)", True)


def _valid(x: np.ndarray, failed: np.ndarray, log: bool) -> tuple[np.ndarray, dict[str, int]]:
    bad_missing = ~failed & np.isnan(x)
    bad_sign = ~failed & ~bad_missing & (x <= 0) if log else np.zeros_like(failed)
    return ~(failed | bad_missing | bad_sign), _counts(failed, bad_missing, bad_sign)


def _counts(failed: np.ndarray, missing: np.ndarray, sign: np.ndarray) -> dict[str, int]:
    return {"failed": int(failed.sum()), "missing": int(missing.sum()),
            "nonpositive": int(sign.sum())}


def _scale(x: np.ndarray, log: bool) -> np.ndarray:
    return np.log(x) if log else x


# --------------------------------------------------------------------------------------------
# testing and judging


def _test(member: _Member) -> None:
    c = member.contrast
    x, y = member.x, member.y
    if c.two_arms and not c.paired:
        if x.size >= 2 and y.size >= 2:
            member.test = welch(x, y)
    elif x.size >= 2:
        member.test = one_sample(x - y)
    if member.test is None:
        return
    margin = _margin(c)
    member.p = (member.test.p_equivalence(margin) if c.direction == "equivalent"
                else member.test.p_two_sided())


def _margin(c: Contrast) -> float:
    if c.margin is None:
        return math.nan
    return math.log(c.margin) if c.scale == "ratio" else c.margin


def _record(member: _Member, p_holm: float | None, m: int | None, alpha: float,
            power: float) -> ClaimRecord:
    c = member.contrast
    log = c.scale == "ratio"
    back = math.exp if log else (lambda v: v)
    t = member.test
    welch_test = c.two_arms and not c.paired
    n_arm = int(member.x.size)
    n_against = int(member.y.size) if c.two_arms else None
    n = n_arm + n_against if welch_test else n_arm
    alpha_mde = alpha / m if m else alpha
    estimate = ci_low = ci_high = statistic = df = p = mde = None
    if t is not None:
        lo, hi = t.interval(LEVEL)
        estimate, ci_low, ci_high = _num(back(t.estimate)), _num(back(lo)), _num(back(hi))
        statistic, df, p = _num(t.statistic()), _num(t.df), _num(member.p)
        mde = _num(back(minimum_detectable_effect(
            t.sd_a, t.n_a, alpha_mde, power, sd_b=t.sd_b, n_b=t.n_b,
            equivalence=c.direction == "equivalent")))
    elif welch_test and member.x.size and member.y.size:
        estimate = _num(back(float(np.mean(member.x) - np.mean(member.y))))
    elif not welch_test and member.x.size:
        estimate = _num(back(float(np.mean(member.x - member.y))))
    mean_arm = _mean(member.x, log)
    mean_against = _mean(member.y, log) if member.y is not None else None
    verdict, reason = _verdict(member, p_holm, m, alpha, mde, n)
    return ClaimRecord(
        name=member.name, contrast=c.name, statement=c.statement, cell=dict(member.cell),
        exploratory=c.exploratory, measure=c.measure_name, units=member.units, scale=c.scale,
        direction=c.direction, margin=c.margin, arm=dict(c.arm),
        against=dict(c.against) if c.two_arms else c.against_label, paired=c.paired,
        test="Welch t" if welch_test else ("paired t" if c.two_arms else "one-sample t"),
        n=n, n_arm=n_arm, n_against=n_against, excluded=dict(member.excluded),
        estimate=estimate, ci_low=ci_low, ci_high=ci_high, mean_arm=mean_arm,
        mean_against=mean_against, statistic=statistic, df=df, p=p,
        p_holm=_num(p_holm) if p_holm is not None else None, family_size=m, mde=mde,
        alpha=alpha, alpha_mde=alpha_mde, power=power, verdict=verdict, reason=reason)


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: np.ndarray, log: bool) -> float | None:
    if values.size == 0:
        return None
    mean = float(np.mean(values))
    return _num(math.exp(mean) if log else mean)


def _verdict(member: _Member, p_holm: float | None, m: int | None, alpha: float,
             mde: float | None, n: int) -> tuple[str, str]:
    c, t = member.contrast, member.test
    if member.absent:
        return "unresolved", f"not in this run: {member.absent}"
    if c.exploratory:
        return "exploratory", "exploratory (post hoc): not in the Holm family; p unadjusted"
    if t is None or p_holm is None or math.isnan(member.p):
        why = ("fewer than 2 valid replicates in an arm" if t is None
               else "no variation between replicates")
        return "unresolved", f"not tested at n = {n}: {why}"
    size = effect(mde, c.scale) + (f" {member.units}" if member.units and c.scale != "ratio"
                                   else "")
    level = f"< {alpha:g}"
    if c.direction == "equivalent":
        if p_holm < alpha:
            return "supported", f"within the margin: TOST Holm p {p_value(p_holm)} {level}"
        beyond = min(1.0, (m or 1) * t.p_beyond(_margin(c)))
        if beyond < alpha:
            return "contradicted", f"beyond the margin: Bonferroni p {p_value(beyond)} {level}"
        return "unresolved", f"not resolved at n = {n}; smallest margin shown {size}"
    if p_holm >= alpha:
        return "unresolved", f"not resolved at n = {n}; MDE {size}"
    asserted = {"greater": 1.0, "less": -1.0}.get(c.direction)
    if asserted is None or np.sign(t.estimate) == asserted:
        return "supported", f"Holm p {p_value(p_holm)} {level}, on the claimed side"
    return "contradicted", f"Holm p {p_value(p_holm)} {level}, on the opposite side"
