"""The learning-dynamics measures (half-times, their common − rare gap, prior alignment, peak
offset) and the study's declared claims. Formulas in the study's docstring."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from anglesim import angles as ang
from anglesim.claims import Contrast

__all__ = ["EARLY_STEP", "PEAK_MARGIN", "QUARTER", "add_measures", "alignment", "claims",
           "half_time_gap", "half_times", "offset_grid", "peak_offset", "quarters"]

QUARTER = math.pi / 8
"""Half-width of the common and rare windows (22.5°): each is a quarter of the half-circle."""
EARLY_STEP = 50
"""The checkpoint of the "early" claim: an eighth of the full run's 400 steps."""
PEAK_MARGIN = 11.25
"""Equivalence margin (deg) of the peak-offset claim: half the spacing of the von Mises
centres (22.5°), so a peak within it is nearer its own prior's mode than any other's."""


def offset_grid(n: int) -> torch.Tensor:
    """θ_k = (k + ½)π/n, k = 0 … n−1 (float32): no angle on a multiple of π/8 when n is a
    multiple of 8, so the common and rare windows hold n/4 angles each whatever the mode."""
    if not isinstance(n, int) or n < 8 or n % 8:
        raise ValueError(f"n_angles must be a multiple of 8, at least 8, got {n!r}")
    return ((torch.arange(n, dtype=torch.float64) + 0.5) * math.pi / n).to(torch.float32)


def quarters(angle: np.ndarray, centre_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(common, rare): angles within 22.5° of the mode, and within 22.5° of the anti-mode
    (strictly; float64 after the float32 grid, whose angles lie ≥ 3° from any boundary)."""
    angle = np.asarray(angle, dtype=np.float64)
    mode = math.radians(centre_deg)
    common = np.abs(ang.difference(angle, mode)) < QUARTER
    rare = np.abs(ang.difference(angle, mode + math.pi / 2)) < QUARTER
    return common, rare


def half_times(fisher: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """Steps to half the final FI along the last axis but one (``fisher[..., step, angle]``
    → ``[..., angle]``).

    The final FI is the last checkpoint's, J_f. t½ is the first crossing of J_f/2, with the
    FI interpolated linearly between the checkpoints s_{i−1} and s_i on x = ln(1 + s):
    x½ = x_{i−1} + (J_f/2 − J_{i−1}) / (J_i − J_{i−1}) · (x_i − x_{i−1}), t½ = e^{x½} − 1;
    0 when J(0) ≥ J_f/2 already, NaN where J_f is not positive or not finite.
    """
    fisher = np.asarray(fisher, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.float64)
    if fisher.ndim < 2 or fisher.shape[-2] != steps.size or steps.size < 2:
        raise ValueError(f"fisher must have the checkpoints ({steps.size}) on its last axis but "
                         f"one, got shape {fisher.shape}")
    if steps[0] < 0 or np.any(np.diff(steps) <= 0):
        raise ValueError(f"steps must increase from 0 or more, got {steps.tolist()}")
    x = np.log1p(steps)
    j = np.moveaxis(fisher, -2, -1)  # [..., angle, step]
    half = j[..., -1:] / 2
    above = j >= half
    first = np.argmax(above, axis=-1)  # the last step is always above: J_f ≥ J_f/2
    i = np.maximum(first, 1)
    j0 = np.take_along_axis(j, (i - 1)[..., None], -1)[..., 0]
    j1 = np.take_along_axis(j, i[..., None], -1)[..., 0]
    frac = np.clip((half[..., 0] - j0) / np.where(j1 > j0, j1 - j0, np.inf), 0.0, 1.0)
    out = np.expm1(x[i - 1] + frac * (x[i] - x[i - 1]))
    out = np.where(first == 0, 0.0, out)
    bad = ~np.isfinite(j[..., -1]) | (j[..., -1] <= 0) | ~np.isfinite(j).all(-1)
    return np.where(bad, np.nan, out)


def half_time_gap(half: np.ndarray, common: np.ndarray, rare: np.ndarray) -> np.ndarray:
    """mean over common angles of log₂(1 + t½) − mean over rare ones (last axis: angle)."""
    logs = np.log2(1.0 + np.asarray(half, dtype=np.float64))
    return logs[..., common].mean(-1) - logs[..., rare].mean(-1)


def alignment(fisher: np.ndarray, angle: np.ndarray, centre_deg: float) -> np.ndarray:
    """a = Σ_θ J(θ) cos 2(θ − μ) / Σ_θ J(θ) over the last axis (angle): the FI's lean towards
    the mode μ, in [−1, 1] (0 for a flat FI)."""
    fisher = np.asarray(fisher, dtype=np.float64)
    weight = np.cos(2.0 * (np.asarray(angle, dtype=np.float64) - math.radians(centre_deg)))
    return (fisher * weight).sum(-1) / fisher.sum(-1)


def peak_offset(fisher: np.ndarray, angle: np.ndarray, centre_deg: float) -> np.ndarray:
    """½ arg Σ_θ J(θ) e^{2iθ} − μ, wrapped to [−90°, 90°), in degrees (last axis: angle)."""
    angle = np.asarray(angle, dtype=np.float64)
    fisher = np.asarray(fisher, dtype=np.float64)
    mean = 0.5 * np.angle((fisher * np.exp(2j * angle)).sum(-1))
    return np.degrees(ang.difference(mean, math.radians(centre_deg)))


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` (dims replicate, prior, labels, step, layer, angle; coordinate ``centre`` over
    prior) with ``half_time``, ``half_time_gap``, ``alignment``, ``alignment_gain``,
    ``peak_offset`` and the windows ``common``/``rare`` added."""
    fisher = ds["fisher"].transpose(..., "step", "angle").drop_vars("centre", errors="ignore")
    steps = ds["step"].values
    angle = ds["angle"].values
    half = xr.apply_ufunc(lambda f: half_times(f, steps), fisher,
                          input_core_dims=[["step", "angle"]], output_core_dims=[["angle"]],
                          keep_attrs=False)
    gaps, aligns, offsets, commons, rares = [], [], [], [], []
    for prior in ds["prior"].values:
        centre = float(ds["centre"].sel(prior=prior))
        common, rare = quarters(angle, centre)
        commons.append(common)
        rares.append(rare)
        h = half.sel(prior=prior)
        gaps.append(xr.apply_ufunc(lambda v, c=common, r=rare: half_time_gap(v, c, r), h,
                                   input_core_dims=[["angle"]], keep_attrs=False))
        f = fisher.sel(prior=prior)
        aligns.append(xr.apply_ufunc(lambda v, c=centre: alignment(v, angle, c), f,
                                     input_core_dims=[["angle"]], keep_attrs=False))
        offsets.append(xr.apply_ufunc(lambda v, c=centre: peak_offset(v, angle, c),
                                      f.isel(step=-1, drop=True), input_core_dims=[["angle"]],
                                      keep_attrs=False))
    align = xr.concat(aligns, dim="prior", coords="minimal")
    out = ds.assign(
        half_time=half.assign_attrs(units="1", long_name="optimiser steps to half the final FI"),
        half_time_gap=xr.concat(gaps, dim="prior", coords="minimal").assign_attrs(
            units="1", long_name="log2 ratio of (1 + half-time), common over rare angles "
                                 "(geometric means)"),
        alignment=align.assign_attrs(
            units="1", long_name="prior alignment of FI, sum J cos 2(θ − mode) / sum J"),
        alignment_gain=(align - align.isel(step=0)).assign_attrs(
            units="1", long_name="prior alignment of FI gained since step 0"),
        peak_offset=xr.concat(offsets, dim="prior", coords="minimal").assign_attrs(
            units="deg", long_name="circular mean of the final FI minus the prior's mode"),
        common=(("prior", "angle"), np.array(commons),
                {"units": "1", "long_name": "angle within 22.5° of the prior's mode"}),
        rare=(("prior", "angle"), np.array(rares),
              {"units": "1", "long_name": "angle within 22.5° of the prior's anti-mode"}),
    )
    return out


def claims() -> list[Contrast]:
    """The declared contrasts (one family; one member per prior each) and the exploratory
    ones (see the study's docstring)."""
    output = {"layer": "output"}
    clean = {"labels": "clean", **output}
    return [
        Contrast(name="common_first",
                 statement="with clean labels, common angles reach half their final output FI "
                           "before rare ones (half-time gap < 0)",
                 measure="half_time_gap", where=clean, against=0.0, direction="less",
                 over=["prior"]),
        Contrast(name="equalised_removes_common_first",
                 statement="label noise that equalises the informative labels per angle makes "
                           "the half-time gap greater (less negative) than with clean labels",
                 measure="half_time_gap", arm={"labels": "equalised"},
                 against={"labels": "clean"}, paired=True, where=output, direction="greater",
                 over=["prior"]),
        Contrast(name="peaks_follow_prior",
                 statement=f"with clean labels, the final output FI peaks within "
                           f"±{PEAK_MARGIN}° of the prior's mode",
                 measure="peak_offset", where=clean, against=0.0, direction="equivalent",
                 margin=PEAK_MARGIN, over=["prior"]),
        Contrast(name="early",
                 statement=f"with clean labels, the output FI's prior alignment has grown by "
                           f"step {EARLY_STEP}",
                 measure="alignment_gain", where={**clean, "step": EARLY_STEP}, against=0.0,
                 direction="greater", over=["prior"]),
        Contrast(name="equalised_gap", exploratory=True,
                 statement="with equalised labels, the half-time gap differs from 0",
                 measure="half_time_gap", where={"labels": "equalised", **output},
                 against=0.0, direction="differs", over=["prior"]),
        Contrast(name="gap_by_layer", exploratory=True,
                 statement="with clean labels, each layer's half-time gap differs from 0",
                 measure="half_time_gap",
                 where={"labels": "clean", "layer": ["fc", "head"]},
                 against=0.0, direction="differs", over=["prior", "layer"]),
        Contrast(name="alignment_by_depth", exploratory=True,
                 statement="with clean labels, the final prior alignment is greater at fc "
                           "than at conv1",
                 measure="alignment", arm={"layer": "fc"}, against={"layer": "conv1"},
                 paired=True, where={"labels": "clean", "step": 400}, direction="greater",
                 over=["prior"]),
    ]
