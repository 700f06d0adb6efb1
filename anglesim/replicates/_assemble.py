"""Gathering: per-replicate outcomes stacked into one Dataset; the failure table and the
replicates' origins."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ._outcome import Outcome

FAILURES_ATTR = "failures"
"""Dataset attribute holding the failure table: a list of records (see :func:`failure_table`)."""

def filled_like(template: xr.Dataset) -> xr.Dataset:
    """A Dataset shaped like ``template`` whose data variables hold 'missing' values:
    NaN for floats (and for integers, which become float64), False for booleans, "" for
    strings, NaT for datetimes."""
    filled = template.copy(deep=False)
    for name, var in template.data_vars.items():
        kind = var.dtype.kind
        if kind in "fc":
            filled[name] = xr.full_like(var, np.nan)
        elif kind in "iu":
            filled[name] = xr.full_like(var, np.nan, dtype=np.float64)
        elif kind == "b":
            filled[name] = xr.full_like(var, False)
        elif kind in "US":
            filled[name] = xr.full_like(var, "")
        elif kind in "mM":
            filled[name] = xr.full_like(var, np.datetime64("NaT") if kind == "M"
                                        else np.timedelta64("NaT"))
        else:
            filled[name] = xr.full_like(var, "", dtype=object)
    return filled


def concat(items: list[xr.Dataset], dim: str) -> xr.Dataset:
    try:
        return xr.concat(items, dim=dim, data_vars="all", coords="different", compat="equals",
                         join="exact", combine_attrs="drop_conflicts")
    except (ValueError, KeyError) as exc:
        raise ValueError(f"the replicates' Datasets do not share one structure (variables, "
                         f"dimensions and coordinate values must match): {exc}") from exc


def assemble(outcomes: Sequence[Outcome], seeds: Sequence[int], axes: dict[str, list],
             n_replicates: int) -> xr.Dataset:
    """The replicates' results stacked along the grid axes and ``replicate`` (in the order of
    :meth:`~._grid.StudySpec.tasks`), failed ones filled with missing values, plus
    ``failed``, ``error`` and ``replicate_seed``."""
    sizes = [len(v) for v in axes.values()] + [n_replicates]
    dims = [*axes, "replicate"]
    ok = [o.result for o in outcomes if o.result is not None]
    if ok:
        failed_any = len(ok) < len(outcomes)
        if failed_any:
            # integers cannot hold NaN: every replicate's integer variables become float64
            def widen(ds: xr.Dataset) -> xr.Dataset:
                ints = [k for k, v in ds.data_vars.items() if v.dtype.kind in "iu"]
                return ds.assign({k: ds[k].astype(np.float64) for k in ints}) if ints else ds

            filler = filled_like(ok[0])
            items = [widen(o.result) if o.result is not None else filler for o in outcomes]
        else:
            items = [o.result for o in outcomes]

        def combine(flat: list[xr.Dataset], level: int) -> xr.Dataset:
            if level == len(sizes):
                return flat[0]
            step = len(flat) // sizes[level]
            parts = [combine(flat[i * step:(i + 1) * step], level + 1)
                     for i in range(sizes[level])]
            return concat(parts, dims[level])

        ds = combine(items, 0)
        ds = ds.transpose(*dims, ...)
    else:
        ds = xr.Dataset()
    shape = tuple(sizes)
    failed = np.array([o.failed for o in outcomes]).reshape(shape)
    errors = np.array([o.failure.error if o.failure is not None else "" for o in outcomes],
                      dtype=str).reshape(shape)
    seed_array = np.array(list(seeds), dtype=np.int64).reshape(shape)
    ds["failed"] = (dims, failed)
    ds["error"] = (dims, errors)
    ds["replicate_seed"] = (dims, seed_array)
    ds["failed"].attrs = {"units": "1", "long_name": "the replicate's computation raised an error"}
    ds["error"].attrs = {"units": "1", "long_name": "error message of a failed replicate ('' if "
                         "none)"}
    ds["replicate_seed"].attrs = {"units": "1", "long_name": "seed passed to the replicate's "
                                  "function"}
    coords = {name: np.asarray(values) for name, values in axes.items()}
    coords["replicate"] = np.arange(n_replicates, dtype=np.int64)
    return ds.assign_coords(coords)


def failure_entries(outcomes: Sequence[Outcome]) -> list[dict]:
    """The failure table's records (condition, replicate, seed, error, traceback)."""
    return [o.failure.entry() for o in outcomes if o.failure is not None]


MADE_BY_ATTR = "replicates_made_by"
"""The Dataset attribute listing which code revision, CPU and backend computed its replicates,
and the Slurm jobs (see :func:`made_by_summary`)."""


def made_by_summary(made_by: Sequence[tuple[int, dict]]) -> list[dict]:
    """Group the replicates' origins ``(flat index, origin)`` by (git revision, CPU,
    backend): one entry per group with the number of replicates and the first and last
    ``created`` time, in order of first use; a group computed in Slurm jobs also has
    ``slurm_jobs``, ``{job id: [flat indices of its replicates]}`` (flat: the position in
    the Dataset's (grid axes…, replicate) order; :func:`replicate_jobs` unflattens it).

    A study resumed after a commit, or on another machine or backend, holds replicates from
    more than one of each; the Dataset's own ``git_rev`` and ``cpu`` name only the assembly,
    so this list says what computed each part.
    """
    groups: dict[tuple[str, str, str], dict] = {}
    for index, origin in made_by:
        key = (origin["git_rev"], origin["cpu"], origin.get("backend", "not recorded"))
        entry = groups.setdefault(key, {"git_rev": key[0], "cpu": key[1], "backend": key[2],
                                        "replicates": 0, "first": origin["created"],
                                        "last": origin["created"]})
        entry["replicates"] += 1
        entry["first"] = min(entry["first"], origin["created"])
        entry["last"] = max(entry["last"], origin["created"])
        if origin.get("slurm_job"):
            entry.setdefault("slurm_jobs", {}).setdefault(origin["slurm_job"], []).append(index)
    return list(groups.values())


def replicate_jobs(ds: xr.Dataset) -> xr.DataArray:
    """The Slurm job that computed each replicate of a study Dataset, as strings over (grid
    axes…, ``replicate``): the job id, or ``""`` for a replicate computed outside Slurm (or
    failed, or from a cache file older than the record).

    Raises:
        ValueError: if ``ds`` is not a Dataset made by :func:`run_study`.
    """
    if not isinstance(ds, xr.Dataset) or MADE_BY_ATTR not in ds.attrs or "failed" not in ds:
        raise ValueError(f"ds must be a Dataset made by run_study (attr {MADE_BY_ATTR!r} or "
                         f"variable 'failed' is missing)")
    flat = np.full(ds["failed"].size, "", dtype=object)
    for entry in ds.attrs[MADE_BY_ATTR]:
        for job, indices in entry.get("slurm_jobs", {}).items():
            flat[list(indices)] = str(job)
    return xr.DataArray(flat.astype(str).reshape(ds["failed"].shape), ds["failed"].coords,
                        ds["failed"].dims, name="slurm_job",
                        attrs={"long_name": "Slurm job that computed the replicate"})


def failure_table(ds: xr.Dataset):
    """The failed replicates of a study Dataset as a pandas DataFrame.

    One row per failed replicate, columns: the grid axes (the condition), ``replicate``,
    ``seed`` (the replicate's seed), ``error`` (exception type and message) and ``traceback``.
    Empty (with those columns) if nothing failed. Works on the Dataset :func:`run_study`
    returns and on one loaded with :func:`anglesim.io.load_dataset`.

    Raises:
        ValueError: if ``ds`` is not a Dataset made by :func:`run_study`.
    """
    import pandas as pd

    if not isinstance(ds, xr.Dataset) or FAILURES_ATTR not in ds.attrs or "grid" not in ds.attrs:
        raise ValueError("ds must be a Dataset made by run_study (it has no failure table: "
                         f"attrs {FAILURES_ATTR!r} and 'grid' are missing)")
    axes = list(json.loads(ds.attrs["grid"]))
    columns = [*axes, "replicate", "seed", "error", "traceback"]
    rows = [{**e["condition"], "replicate": e["replicate"], "seed": e["seed"],
             "error": e["error"], "traceback": e["traceback"]} for e in ds.attrs[FAILURES_ATTR]]
    return pd.DataFrame(rows, columns=columns)

