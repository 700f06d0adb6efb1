"""The fine-tuning-under-shift study's derived measures (stored in its Dataset) and its
summary."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from anglesim.plotting import successful
from anglesim.stats import mean_ci, paired_ci

# ---- derived measures -------------------------------------------------------------------------


def measures(ds: xr.Dataset) -> xr.Dataset:
    """Per shift, replicate, strategy and n_train: ``id_error`` (error_id weighted by the
    fine-tuning prior), ``ood_error`` (error_source averaged over the uniform source prior), the
    parent's (``parent_id_error``, ``parent_ood_error``), ``id_error_gain`` log₂(parent /
    fine-tuned ID error) and ``fisher_change`` (mean over angles of log₂ FI / parent FI, per
    layer), and the rank of each strategy's mean ID error within (shift, n_train)."""
    ok = successful(ds)
    w = ok["finetune_density"]
    id_error = (ok["error_id"] * w).sum("angle") / w.sum("angle")
    parent_id = (ok["parent_error_id"] * w).sum("angle") / w.sum("angle")
    out = xr.Dataset({
        "id_error": id_error,
        "ood_error": ok["error_source"].mean("angle"),
        "parent_id_error": parent_id,
        "parent_ood_error": ok["parent_error_source"].mean("angle"),
        "id_error_gain": np.log2(parent_id / id_error),
        "fisher_change": np.log2(ok["fisher"] / ok["parent_fisher"]).mean("angle"),
    })
    mean_id = out["id_error"].mean("replicate")
    out["id_error_rank"] = xr.apply_ufunc(
        lambda v: stats.rankdata(v, axis=-1, nan_policy="omit"), mean_id,
        input_core_dims=[["strategy"]], output_core_dims=[["strategy"]]
    ).transpose(*mean_id.dims)
    out["id_error"].attrs = {"units": "rad", "long_name": "in-distribution error, mean "
                             "|θ̂ − y| under the fine-tuning prior"}
    out["ood_error"].attrs = {"units": "rad", "long_name": "out-of-distribution error, mean "
                              "|θ̂ − θ| on the pretraining task"}
    out["parent_id_error"].attrs = {"units": "rad", "long_name": "the parent's ID error"}
    out["parent_ood_error"].attrs = {"units": "rad", "long_name": "the parent's OOD error"}
    out["id_error_gain"].attrs = {"units": "1", "long_name": "log2(parent / fine-tuned ID error)"}
    out["fisher_change"].attrs = {"units": "1", "long_name": "mean over angles of log2(FI / "
                                  "parent FI), on the fine-tuning stimulus"}
    out["id_error_rank"].attrs = {"long_name": "rank of the mean ID error over replicates "
                                  "(1 = lowest) within shift and n_train"}
    return out


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added."""
    return ds.assign(measures(ds).data_vars)


def summarise(ds: xr.Dataset) -> str:
    """Per shift and n_train: every strategy's ID and OOD error (mean ± 95% CI, degrees), the
    winner by mean ID error and its paired difference from the runner-up and from ``full``."""

    lines = []
    for shift in ds["shift"].values:
        d = ds.sel(shift=shift)
        head = f"shift {shift}"
        if shift == "input":
            head += f" (frequency {float(d['shift_value'].mean()):g}, chosen per replicate: " + \
                ", ".join(f"{v:g}" for v in d["shift_value"].values) + ")"
        lines.append(head)
        for n in d["n_train"].values:
            c = d.sel(n_train=n)
            pid, pid_h = mean_ci(np.degrees(c["parent_id_error"]))
            lines.append(f"  n_train={int(n)} (parent: ID {float(pid):.2f}±{float(pid_h):.2f}°)")
            order = c["id_error"].mean("replicate").sortby(c["id_error"].mean("replicate"))
            for s in order["strategy"].values:
                m, h = mean_ci(np.degrees(c["id_error"].sel(strategy=s)))
                om, oh = mean_ci(np.degrees(c["ood_error"].sel(strategy=s)))
                lines.append(f"    {s:>14}: ID {float(m):6.2f}±{float(h):.2f}°  "
                             f"OOD {float(om):6.2f}±{float(oh):.2f}°")
            first, second = [str(s) for s in order["strategy"].values[:2]]
            diff, half = paired_ci(np.degrees(c["id_error"].sel(strategy=first)),
                                   np.degrees(c["id_error"].sel(strategy=second)))
            text = (f"    winner {first}: {diff:+.2f}±{half:.2f}° vs {second} (paired)")
            if first != "full":
                diff, half = paired_ci(np.degrees(c["id_error"].sel(strategy=first)),
                                       np.degrees(c["id_error"].sel(strategy="full")))
                text += f", {diff:+.2f}±{half:.2f}° vs full"
            lines.append(text)
    return "\n".join(lines)
