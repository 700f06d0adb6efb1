"""The fine-tuning-under-shift study's declared claims, derived measures (stored in its
Dataset) and summary."""

from __future__ import annotations

import numpy as np
import xarray as xr

from anglesim.claims import Contrast
from anglesim.plotting import successful
from anglesim.stats import mean_ci

from .._recipes import STRATEGIES, describe_variables

__all__ = ["CLAIMS", "KUMAR", "REFERENCE", "add_measures", "interior_share", "measures",
           "summarise"]

REFERENCE = "full"
"""The arm every strategy is compared with."""
KUMAR = ("linear_probe", "lp_ft")
"""The strategies Kumar et al. (2022) predict to err less than full fine-tuning OOD."""
REGION_TEXT = {"id": "in distribution (θ < 90°)", "ood": "out of distribution (θ ≥ 90°)"}


def _claims() -> list[Contrast]:
    """Every strategy against full fine-tuning, ID and OOD, in every shift × n_train cell
    (paired by replicate, log error ratio): Kumar et al.'s direction for linear_probe and
    lp_ft OOD, two-sided otherwise; plus the exploratory mechanism contrast."""
    claims = []
    for region in ("id", "ood"):
        for strategy in (s for s in STRATEGIES if s != REFERENCE):
            kumar = region == "ood" and strategy in KUMAR
            statement = (f"{strategy} errs less than full fine-tuning {REGION_TEXT[region]} "
                         "(Kumar et al. 2022)" if kumar else
                         f"{strategy}'s error differs from full fine-tuning's "
                         f"{REGION_TEXT[region]}")
            claims.append(Contrast(
                name=f"{strategy}_vs_full_{region}", statement=statement,
                measure=f"{region}_error", arm={"strategy": strategy},
                against={"strategy": REFERENCE}, paired=True, over=["shift", "n_train"],
                scale="ratio", direction="less" if kumar else "differs"))
    claims.append(Contrast(
        name="full_features_ood_vs_id",
        statement="full fine-tuning moves fc's features less on OOD images than on ID images "
                  "(Kumar et al.'s mechanism; secondary, outside the family)",
        measure="feature_change", arm={"region": "ood"}, against={"region": "id"},
        paired=True, where={"strategy": REFERENCE, "block": "fc"}, over=["shift", "n_train"],
        scale="ratio", direction="less", exploratory=True))
    return claims


CLAIMS = _claims()
"""The study's declared contrasts: 18 primary (one member per shift × n_train cell: 54 at the
full size's 3 shifts × 1 size, one Holm family) and one exploratory."""


# ---- derived measures -------------------------------------------------------------------------


def region_mean(error: xr.DataArray, in_distribution: xr.DataArray) -> xr.Dataset:
    """Mean of ``error`` over the angles of each half: ``id`` where ``in_distribution``,
    ``ood`` elsewhere (every angle of a half weighted equally: the fine-tuning prior is
    uniform on its half)."""
    inside = in_distribution.astype(bool)
    return xr.Dataset({"id": error.where(inside).mean("angle"),
                       "ood": error.where(~inside).mean("angle")})


def interior_share(chosen: xr.DataArray, grid: np.ndarray) -> float:
    """The share of chosen rates at neither end of ``grid`` (NaN choices left out)."""
    values = np.asarray(chosen).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan")
    edge = np.isclose(values, np.min(grid)) | np.isclose(values, np.max(grid))
    return float(1.0 - edge.mean())


def measures(ds: xr.Dataset) -> xr.Dataset:
    """Per shift, replicate, strategy and n_train: ``id_error`` and ``ood_error`` (mean error
    over each half), the parent's (``parent_id_error``, ``parent_ood_error``), and
    ``chosen_lr_interior`` (1 where the chosen rate lies at neither end of the grid)."""
    inside = ds["in_distribution"].isel({d: 0 for d in ds["in_distribution"].dims
                                         if d != "angle"})
    err = region_mean(ds["abs_error"], inside)
    parent = region_mean(ds["parent_error"], inside)
    lrs = ds["lr"].values
    interior = ((ds["chosen_lr"] > lrs.min() * (1 + 1e-9))
                & (ds["chosen_lr"] < lrs.max() * (1 - 1e-9)))
    out = xr.Dataset({
        "id_error": err["id"], "ood_error": err["ood"],
        "parent_id_error": parent["id"], "parent_ood_error": parent["ood"],
        "chosen_lr_interior": interior.where(ds["chosen_lr"].notnull()).astype(float),
    })
    for region in ("id", "ood"):
        where = "[0, π/2)" if region == "id" else "[π/2, π)"
        out[f"{region}_error"].attrs = {
            "units": "rad", "long_name": f"{region.upper()} error: mean |θ̂ − y| over the "
            f"evaluation angles in {where}"}
        out[f"parent_{region}_error"].attrs = {
            "units": "rad", "long_name": f"the parent's {region.upper()} error"}
    out["chosen_lr_interior"].attrs = {"units": "1", "long_name": "1 where the chosen rate "
                                       "lies at neither end of the rate grid"}
    return out


COORD_ATTRS = {
    "shift": {"units": "1", "long_name": "kind of distribution shift of the fine-tuning task"},
    "replicate": {"units": "1", "long_name": "replicate (one parent network, shared by the "
                  "shifts)"},
    "failed": {"long_name": "1 where the replicate failed"},
    "error": {"long_name": "a failed replicate's error message"},
    "replicate_seed": {"long_name": "the replicate's seed"},
}
"""Units and long names of the grid's coordinates and the runner's variables (the runner's
units come from the recipes' ``SHARED_ATTRS``)."""


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added (from its successful replicates), units and
    long names on the grid's coordinates and the runner's variables."""
    return describe_variables(ds.assign(measures(successful(ds)).data_vars), COORD_ATTRS)


# ---- summary ----------------------------------------------------------------------------------


def _mean_ci_deg(values: xr.DataArray) -> str:
    m, h = mean_ci(np.degrees(values))
    return f"{float(m):6.2f} [{float(m - h):.2f}, {float(m + h):.2f}]°"


def summarise(ds: xr.Dataset) -> str:
    """Per shift and n_train: every strategy's ID and OOD error (mean and 95% t interval over
    replicates, degrees) and its chosen rates; the share of interior rate choices. The
    contrasts against full fine-tuning follow in the claims table."""
    ds = successful(ds)
    share = interior_share(ds["chosen_lr"], ds["lr"].values)
    n = int(ds.sizes["replicate"])
    lines = [f"learning rates: {100 * share:.0f}% of {int(ds['chosen_lr'].count())} choices "
             f"interior to the grid {', '.join(f'{v:g}' for v in ds['lr'].values)} (the "
             "design asks for at least 80%)",
             f"errors: mean [95% t interval] over {n} replicates, degrees; ID θ < 90°, "
             "OOD θ ≥ 90° (never seen in fine-tuning)"]
    for shift in ds["shift"].values:
        d = ds.sel(shift=shift)
        head = f"shift {shift}"
        if shift == "input":
            head += (" (frequency per replicate: "
                     + ", ".join(f"{v:g}" for v in d["shift_value"].values) + ")")
        lines.append(head)
        for n_train in d["n_train"].values:
            c = d.sel(n_train=n_train)
            lines.append(f"  n_train={int(n_train)}: parent ID {_mean_ci_deg(c['parent_id_error'])}"
                         f"  OOD {_mean_ci_deg(c['parent_ood_error'])}")
            for s in c["strategy"].values:
                e = c.sel(strategy=s)
                rates = np.log10(e["chosen_lr"].values)
                lines.append(f"    {s:>14}: ID {_mean_ci_deg(e['id_error'])}  OOD "
                             f"{_mean_ci_deg(e['ood_error'])}  log10 rate "
                             f"{np.nanmedian(rates):+.1f} (median)")
    return "\n".join(lines)
