"""The surgical sweep's declared claims, derived measures and summary."""

from __future__ import annotations

import numpy as np
import xarray as xr

from anglesim.claims import Contrast
from anglesim.plotting import successful
from anglesim.stats import interval

from .._recipes import describe_variables
from .figure import figure_caption

INPUT = ["invert", "blur", "noise"]
OUTLIER_FACTOR = 3.0
"""A full fine-tuning whose test error exceeds this many times the median of its cell
(shift, n) is reported as an outlier in the summary."""


def _against_full(name: str, block: str, statement: str, direction: str,
                  shifts: list[str] | str | None) -> Contrast:
    """Arm ``block`` (a block alone, LP-FT or L2-SP) against full fine-tuning: paired by
    replicate (one parent), the ratio of test errors on the log scale, one member per
    shift × n."""
    where: dict = {}
    over = ["shift", "n_train"]
    if isinstance(shifts, str):
        where, over = {"shift": shifts}, ["n_train"]
    elif shifts is not None:
        where = {"shift": shifts}
    return Contrast(name=name, statement=statement, measure="test_error",
                    arm={"strategy": block}, against={"strategy": "full"}, paired=True,
                    where=where, over=over, scale="ratio", direction=direction)


CLAIMS = [
    _against_full("conv1_input", "conv1",
                  "under an input-level shift, tuning conv1 alone reaches a lower test error "
                  "than full fine-tuning (Lee et al. 2023)", "less", INPUT),
    _against_full("head_output", "head",
                  "under the output-level shift, tuning the head alone reaches a lower test "
                  "error than full fine-tuning (Lee et al. 2023)", "less", "output"),
    _against_full("conv1_output", "conv1",
                  "under the output-level shift, tuning conv1 alone and full fine-tuning "
                  "differ in test error", "differs", "output"),
    _against_full("head_input", "head",
                  "under an input-level shift, tuning the head alone and full fine-tuning "
                  "differ in test error", "differs", INPUT),
    _against_full("conv2", "conv2",
                  "tuning conv2 alone and full fine-tuning differ in test error",
                  "differs", None),
    _against_full("fc", "fc",
                  "tuning fc alone and full fine-tuning differ in test error",
                  "differs", None),
    _against_full("lp_ft", "lp_ft", "LP-FT and full fine-tuning differ in test error",
                  "differs", None),
    _against_full("l2_sp", "l2_sp", "L2-SP and full fine-tuning differ in test error",
                  "differs", None),
    Contrast(name="conv1_vs_head_input",
             statement="under an input-level shift, tuning conv1 alone reaches a lower test "
                       "error than tuning the head alone",
             measure="test_error", arm={"strategy": "conv1"}, against={"strategy": "head"},
             paired=True, where={"shift": INPUT}, over=["shift", "n_train"], scale="ratio",
             direction="less", exploratory=True),
]
"""The declared family (72 members at full size, one per shift × n: conv1 and the head
against full fine-tuning in the direction Lee et al. predict, the other blocks, LP-FT and
L2-SP two-sided; Holm over all 72), then one exploratory comparison outside it."""


ATTRS = {"shift": {"units": "1", "long_name": "distribution shift of the fine-tuning task"}}
"""The grid axis's units and long name (the runner's variables get the recipes' shared
ones)."""


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """``log2_error_ratio`` (each arm's test error over full fine-tuning's, per replicate) and
    ``lr_interior`` (1 where the chosen rate is neither end of the grid, 0 where it is); units
    and long names on every variable (:data:`ATTRS`, then the recipes' shared ones)."""
    ok = successful(ds)
    ratio = np.log2(ok["test_error"] / ok["test_error"].sel(strategy="full"))
    lrs = ds["lr"].values
    chosen = ok["chosen_lr"]
    interior = xr.where((chosen > lrs.min()) & (chosen < lrs.max()), 1.0, 0.0)
    interior = interior.where(np.isfinite(chosen))
    ratio.attrs = {"units": "1", "long_name": "log2 ratio of test error, arm over full "
                                              "fine-tuning of the same parent"}
    interior.attrs = {"units": "1", "long_name": "1 if the chosen rate is interior to the "
                                                 "grid, 0 at either end"}
    return describe_variables(ds.assign(log2_error_ratio=ratio, lr_interior=interior), ATTRS)


def rate_report(ds: xr.Dataset) -> list[str]:
    """The share of interior rate choices, overall and per arm, and of choices at each end."""
    chosen = successful(ds)["chosen_lr"]
    lrs = ds["lr"].values
    valid = int(np.isfinite(chosen).sum())
    low, high = int((chosen == lrs.min()).sum()), int((chosen == lrs.max()).sum())
    inner = valid - low - high
    lines = [f"chosen rates interior to {lrs.min():g} … {lrs.max():g}: {inner}/{valid} "
             f"({inner / max(valid, 1):.0%}); at the lowest {low}, at the highest {high}"]
    parts = []
    for arm in ds["strategy"].values:
        c = chosen.sel(strategy=arm)
        n = int(np.isfinite(c).sum())
        k = int(((c > lrs.min()) & (c < lrs.max())).sum())
        parts.append(f"{arm} {k / max(n, 1):.0%}")
    lines.append("  interior by arm: " + ", ".join(parts))
    late = successful(ds)["best_step_fraction"]
    share = float((late > 0.9).sum()) / max(int(np.isfinite(late).sum()), 1)
    lines.append(f"  best checkpoints in the last 10% of the budget: {share:.0%}")
    return lines


def _geometric(values: xr.DataArray) -> str:
    out = interval(values, log=True)
    m, lo, hi = (float(out[k]) for k in ("mean", "low", "high"))
    if not np.isfinite(lo):
        return f"{m:.3g}"
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def summarise(ds: xr.Dataset) -> str:
    """Per shift: the parent's errors; per n, full fine-tuning's test error (geometric mean
    over replicates with the 95% t interval of the log, degrees) and every arm's paired ratio
    to it (geometric mean [95% paired t interval of the log ratio]), full fine-tuning's
    outliers; then the share of interior rate choices."""
    ok = successful(ds)
    deg = 180 / np.pi
    lines = [f"test error, degrees: geometric mean [95% t interval of the log] over "
             f"{ok.sizes['replicate']} replicates; ratios paired by replicate (one parent)"]
    for shift in ok["shift"].values:
        d = ok.sel(shift=shift)
        head = (f"shift {shift}: parent {_geometric(d['parent_error'] * deg)}°, on source "
                f"images {_geometric(d['parent_source_error'] * deg)}°")
        if np.isfinite(d["undo_error"]).any():
            head += f", exactly undone {_geometric(d['undo_error'] * deg)}°"
        lines.append(head)
        for n in d["n_train"].values:
            c = d.sel(n_train=n)
            full = c["test_error"].sel(strategy="full")
            ratios = ", ".join(
                f"{arm} ×{_geometric(c['test_error'].sel(strategy=arm) / full)}"
                for arm in c["strategy"].values if arm != "full")
            lines.append(f"  n={int(n)}: full {_geometric(full * deg)}°; {ratios}")
            median = float(full.median())
            wild = int((full > OUTLIER_FACTOR * median).sum())
            if wild:
                lines.append(f"    full fine-tuning outliers (> {OUTLIER_FACTOR:g}× the "
                             f"median {median * deg:.3g}°): {wild}; hence ratios on the log "
                             "scale")
    lines += rate_report(ds)
    lines.append("figure: " + figure_caption(ds))
    return "\n".join(lines)
