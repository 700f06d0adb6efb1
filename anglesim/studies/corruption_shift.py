"""Fine-tuning under input corruptions: which block's tuning wins for blur, noise, contrast?

Lee et al. (2023, ICLR, surgical fine-tuning) found that for input-level shifts (CIFAR-C's
pixel corruptions) tuning only the first block beats tuning everything. This study asks the
same of the studies' CNN, with the fine-tuning-under-shift study's recipes (its parent, its
fine-tuning phases, its strategies and its learning-rate choice by validation loss), on four
pixel-level corruptions of the standard stimulus (:func:`anglesim.corruptions.corrupt`), the
grid axis ``corruption``:

* ``blur`` — Gaussian blur of the clean image, σ pixels, before the pixel noise;
* ``noise`` — the pixel noise's σ times a factor;
* ``contrast`` — the grating's contrast times a factor < 1;
* ``invert`` — contrast inversion x → −x (for the fixed-phase grating, phase + π).

Blur, noise and contrast have a severity ladder (:data:`LADDERS`), climbed as the shift study
climbs its frequency ladder: the first rung at which the parent's mean error is at least
``ERROR_FACTOR`` (2) times its source error is used (``level``, with
``reached``). Noise and contrast (and the blur, which mostly lowers a grating's contrast)
remove information from the pixels (``input_fisher_ratio`` says how much: the pixels' FI on
the corrupted over the source stimulus, 1/c² for contrast c, 1/k² for noise factor k), which
no strategy can recover; inversion removes none.

Strategies: every strategy of the shift study's table (``surgical`` tunes conv1), the same
surgical rule on each other block alone (``surgical_conv2``, ``surgical_fc``,
``surgical_head``) to say which block's tuning wins, and LDIFS (Mukhoti et al. 2024: an ℓ2
penalty on the distance of the features from the pretrained ones) beside L2-SP (the distance of
the weights). Measured after each fine-tuning: ``error_id`` on the corrupted task,
``error_source`` on the clean source task (what fine-tuning forgot) and the output FI on the
corrupted stimulus.

Run: ``anglesim run corruption_shift [--quick]``.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.corruptions import corrupt
from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.plotting import STYLE, successful
from anglesim.stats import mean_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import evaluate_error, train

from ._laws_common import MIN_BAND_REPLICATES, band_note
from ._recipes import (
    CNN,
    ERROR_FACTOR,
    SHIFT_SIZES,
    SPEC,
    ShiftTask,
    expects_aperture_ties,
    finetune_phase,
    pretrain_phase,
    pretrained_parent,
)
from ._recipes import (
    STRATEGIES as SHIFT_STRATEGIES,
)

NAME = "corruption_shift"
CORRUPTIONS = ("blur", "noise", "contrast", "invert")
LADDERS: dict[str, tuple[float, ...]] = {
    "blur": (0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
    "noise": (1.25, 1.5, 2.0, 2.5, 3.0, 4.0),
    "contrast": (0.8, 0.6, 0.5, 0.4, 0.3, 0.2),
}
"""Severities tried in order: the blur's σ (pixels), the noise's and the contrast's factor."""
BLOCK_TUNING = {f"surgical_{b}": b for b in ("conv2", "fc", "head")}
"""Surgical fine-tuning of one other block (the shift study's ``surgical`` is conv1)."""
STRATEGIES = (*SHIFT_STRATEGIES, *BLOCK_TUNING, "ldifs")
"""Every strategy the study knows; a size's ``strategies`` picks the ones it runs."""
SURGICAL = {"surgical": "conv1", **BLOCK_TUNING}

SIZES = {
    "full": dict(SHIFT_SIZES["full"], n_train=[64], lrs=[1e-3], layers=["input", "output"],
                 strategies=list(STRATEGIES), replicates=3),
    "quick": dict(SHIFT_SIZES["quick"], strategies=list(STRATEGIES), replicates=2),
}
"""The shift study's sizes (its parent, steps, batch) and every strategy at n_train 64, one
learning rate and 3 replicates: its full grid (3 n_train × 3 rates × 6 replicates) for 4
corruptions would take about an hour on one core, against this study's budget of 8 minutes on
a shared one (``n_train=[...]``, ``lrs=[...]`` and ``replicates=6`` override it)."""


def task_for(kind: str, level: float | None):
    """The fine-tuning task: the uniform prior on the corrupted standard stimulus."""
    return ShiftTask(Uniform(), corrupt(SPEC, kind, level))


def phase_for(task, strategy: str, n_train: int, lr: float, sz: dict):
    """The shift study's fine-tuning phase; the extra strategies change only the strategy."""
    if strategy in SHIFT_STRATEGIES:
        return finetune_phase(task, strategy, n_train, lr, sz)
    base = finetune_phase(task, "full", n_train, lr, sz)
    if strategy in BLOCK_TUNING:
        return dataclasses.replace(base, strategy="surgical",
                                   strategy_params={"blocks": [BLOCK_TUNING[strategy]]})
    return dataclasses.replace(base, strategy=strategy, strategy_params={})


def choose_level(parent, kind: str, ctx: ReplicateContext
                 ) -> tuple[float, bool, float, float]:
    """The first rung of ``kind``'s ladder at which the parent's mean error reaches
    ``ERROR_FACTOR`` × its source error (the same noise draws, the replicate's stream
    "eval", at every rung); the last rung if none does. Returns (level, reached, the parent's
    error there, its source error)."""
    sz = ctx.params

    def mean_error(spec) -> float:
        return float(evaluate_error(parent, spec, sz["n_angles"], sz["error_repeats"],
                                    ctx.generator("eval")).mean())

    base = mean_error(SPEC)
    err = math.nan
    for level in LADDERS[kind]:
        err = mean_error(corrupt(SPEC, kind, level))
        if err >= ERROR_FACTOR * base:
            return level, True, err, base
    return LADDERS[kind][-1], False, err, base


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Pretrain the replicate's parent (the same for every corruption), pick the corruption's
    severity, fine-tune with every strategy, n_train and rate, keep the best rate by
    validation loss, measure."""
    sz = ctx.params
    kind = str(ctx.condition["corruption"])
    # the seed is shared by the corruptions (pair_axes): one parent per replicate
    parent = pretrained_parent(ctx, sz, ctx.stream_seed("init"))
    if kind == "invert":
        level, reached = math.nan, math.nan
        severity_base = float(evaluate_error(parent, SPEC, sz["n_angles"], sz["error_repeats"],
                                             ctx.generator("eval")).mean())
        task = task_for(kind, None)
        severity_error = float(evaluate_error(
            parent, task.spec, sz["n_angles"], sz["error_repeats"],
            ctx.generator("eval")).mean())
    else:
        level, reached, severity_error, severity_base = choose_level(parent, kind, ctx)
        task = task_for(kind, level)
    grid = ctx.angles.double().numpy()
    layers = list(sz["layers"])

    def errors(net) -> tuple[np.ndarray, np.ndarray]:
        e_id = evaluate_error(net, task.spec, sz["n_angles"], sz["error_repeats"],
                              ctx.generator("eval")).values
        # the source task's noise: the "eval" stream's seed + 1 (kept as published)
        e_src = evaluate_error(net, SPEC, sz["n_angles"], sz["error_repeats"],
                               ctx.generator("eval", offset=1)).values
        return e_id, e_src

    def fisher(net, spec=task.spec, input_fi=None) -> np.ndarray:
        """FI at ``layers``; the pixels' own ("input", the same for every network) reused
        from ``input_fi`` when given."""
        todo = [n for n in layers if input_fi is None or n != "input"]
        fi = propagated_fisher(net, spec, grid, layers=todo, sigma=spec.noise_std)
        return np.stack([input_fi if n not in todo else fi.sel(layer=n).values
                         for n in layers])

    parent_fi = fisher(parent)
    input_fi = parent_fi[layers.index("input")] if "input" in layers else None

    names, sizes, lrs = list(sz["strategies"]), list(sz["n_train"]), list(sz["lrs"])
    shape = (len(names), len(sizes))
    out = {"error_id": np.empty(shape + (grid.size,)),
           "error_source": np.empty(shape + (grid.size,)),
           "fisher": np.empty(shape + (len(layers), grid.size)),
           "val_loss": np.empty(shape + (len(lrs),)), "chosen_lr": np.empty(shape)}
    for j, n_train in enumerate(sizes):
        ft_seed = ctx.stream_seed("data", j)  # the same data for every strategy and rate
        for i, name in enumerate(names):
            best = None
            for k, lr in enumerate(lrs):
                net = copy.deepcopy(parent)
                history = train(net, [phase_for(task, name, n_train, lr, sz)], ft_seed)
                val = float(np.nanmin(history["val_loss"].values))
                out["val_loss"][i, j, k] = val
                if best is None or val < best[0]:
                    best = (val, net)
                    out["chosen_lr"][i, j] = lr
            net = best[1]
            out["error_id"][i, j], out["error_source"][i, j] = errors(net)
            out["fisher"][i, j] = fisher(net, input_fi=input_fi)
    parent_id, parent_src = errors(parent)
    dims = ("strategy", "n_train")
    ds = xr.Dataset(
        {
            "error_id": (dims + ("angle",), out["error_id"], {
                "units": "rad", "long_name": "error |θ̂ − θ| on the corrupted task"}),
            "error_source": (dims + ("angle",), out["error_source"], {
                "units": "rad", "long_name": "error on the clean source task"}),
            "fisher": (dims + ("layer", "angle"), out["fisher"], {
                "units": "rad^-2", "method": "propagated",
                "long_name": "propagated FI on the corrupted stimulus"}),
            "val_loss": (dims + ("lr",), out["val_loss"],
                         {"long_name": "best validation loss at each learning rate"}),
            "chosen_lr": (dims, out["chosen_lr"],
                          {"long_name": "learning rate with the lowest validation loss"}),
            "parent_error_id": (("angle",), parent_id, {"units": "rad"}),
            "parent_error_source": (("angle",), parent_src, {"units": "rad"}),
            "parent_fisher": (("layer", "angle"), parent_fi, {"units": "rad^-2"}),
            "source_fisher": (("layer", "angle"), fisher(parent, SPEC), {
                "units": "rad^-2", "long_name": "the parent's FI on the clean stimulus"}),
            "level": ((), float(level), {"long_name": "severity: blur sigma (px), or the "
                                         "noise's or contrast's factor; NaN for invert"}),
            "reached": ((), float(reached), {"long_name": "1 if the level at least "
                                             "doubled the parent's error"}),
            "severity_error": ((), severity_error, {"units": "rad", "long_name":
                                                    "the parent's error at the level"}),
            "severity_base_error": ((), severity_base, {"units": "rad"}),
        },
        coords={"strategy": names, "n_train": sizes, "angle": grid, "layer": layers,
                "lr": lrs},
    )
    return ds


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """Mean errors over angles (``id_error``, ``ood_error``, the parent's), the pixels' FI
    ratio corrupted / clean (``input_fisher_ratio``) and ``id_error_gain`` log₂(parent /
    fine-tuned ID error)."""
    ok = successful(ds)
    out = {
        "id_error": ok["error_id"].mean("angle"),
        "ood_error": ok["error_source"].mean("angle"),
        "parent_id_error": ok["parent_error_id"].mean("angle"),
        "parent_ood_error": ok["parent_error_source"].mean("angle"),
    }
    out["id_error_gain"] = np.log2(out["parent_id_error"] / out["id_error"])
    if "input" in ok["layer"].values:
        out["input_fisher_ratio"] = (ok["parent_fisher"].sel(layer="input")
                                     / ok["source_fisher"].sel(layer="input")).mean("angle")
    return ds.assign(out)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    example = phase_for(task_for("blur", 1.0), "ldifs", params["n_train"][0],
                        params["lrs"][0], params)
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "strategies": list(params["strategies"]), "shift_strategies": SHIFT_STRATEGIES,
            "block_tuning": BLOCK_TUNING, "ladders": {k: list(v) for k, v in LADDERS.items()},
            "error_factor": ERROR_FACTOR, "pretrain": pretrain_phase(params).to_config(),
            "finetune_example": example.to_config()}


def _paired(a: xr.DataArray, b: xr.DataArray) -> tuple[float, float]:
    m, h = mean_ci(a - b)
    return float(m), float(h)


def summarise(ds: xr.Dataset) -> str:
    """Per corruption and n_train: the severity, each strategy's ID/OOD error, the best block
    to tune alone (paired against full fine-tuning) and LDIFS against L2-SP."""
    lines = []
    for kind in ds["corruption"].values:
        d = ds.sel(corruption=kind)
        head = f"corruption {kind}"
        if kind != "invert":
            head += (f" (level {', '.join(f'{v:g}' for v in d['level'].values)}; reached "
                     f"{int(np.nansum(d['reached'].values))}/{d.sizes['replicate']})")
        if "input_fisher_ratio" in d:
            head += f", pixels' FI ×{float(d['input_fisher_ratio'].mean()):.2f} of the clean"
        lines.append(head)
        for n in d["n_train"].values:
            c = d.sel(n_train=n)
            pm, ph = mean_ci(np.degrees(c["parent_id_error"]))
            lines.append(f"  n_train={int(n)} (parent: ID {float(pm):.2f} ± {float(ph):.2f}°)")
            order = c["id_error"].mean("replicate").sortby(c["id_error"].mean("replicate"))
            for s in order["strategy"].values:
                m, h = mean_ci(np.degrees(c["id_error"].sel(strategy=s)))
                om, oh = mean_ci(np.degrees(c["ood_error"].sel(strategy=s)))
                lines.append(f"    {s:>15}: ID {float(m):6.2f} ± {float(h):5.2f}°  "
                             f"OOD {float(om):6.2f} ± {float(oh):5.2f}°")
            surg = c["id_error"].sel(strategy=list(SURGICAL)).mean("replicate")
            best = str(surg["strategy"].values[int(np.nanargmin(surg.values))])
            m, h = _paired(np.degrees(c["id_error"].sel(strategy=best)),
                           np.degrees(c["id_error"].sel(strategy="full")))
            lines.append(f"    best single block: {SURGICAL[best]} ({best}), "
                         f"{m:+.2f} ± {h:.2f}° vs full (paired)")
            m, h = _paired(np.degrees(c["id_error"].sel(strategy="ldifs")),
                           np.degrees(c["id_error"].sel(strategy="l2_sp")))
            om, oh = _paired(np.degrees(c["ood_error"].sel(strategy="ldifs")),
                             np.degrees(c["ood_error"].sel(strategy="l2_sp")))
            lines.append(f"    ldifs − l2_sp: ID {m:+.2f} ± {h:.2f}°, OOD {om:+.2f} ± {oh:.2f}°")
    return "\n".join(lines)


def figure(ds: xr.Dataset) -> plt.Figure:
    """Per corruption: ID error of every strategy (bars; the parent's as a line), the single
    blocks highlighted, and OOD error as points."""
    ok = successful(ds).isel(n_train=-1)
    strategies = list(ok["strategy"].values)
    enough = ok.sizes["replicate"] >= MIN_BAND_REPLICATES
    colours = ["C1" if s in SURGICAL else ("C2" if s in ("ldifs", "l2_sp") else "C0")
               for s in strategies]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(ok.sizes["corruption"], 1,
                                 figsize=(7.5, 1.9 * ok.sizes["corruption"]),
                                 constrained_layout=True, sharex=True, squeeze=False)
        pos = np.arange(len(strategies))
        for ax, kind in zip(axes[:, 0], ok["corruption"].values, strict=True):
            c = ok.sel(corruption=kind)
            m, h = mean_ci(np.degrees(c["id_error"]))
            ax.bar(pos, m.values, 0.6, color=colours, yerr=h.values if enough else None,
                   capsize=1.5)
            om, oh = mean_ci(np.degrees(c["ood_error"]))
            ax.errorbar(pos + 0.3, om.values, yerr=oh.values if enough else None, fmt="k.",
                        ms=3, capsize=1.5, lw=0.6, label="OOD (clean source)")
            pm, _ = mean_ci(np.degrees(c["parent_id_error"]))
            ax.axhline(float(pm), color="k", ls="--", lw=0.7, label="parent on the corruption")
            ax.set_ylabel(f"{kind}\nerror (deg)")
            ax.set_yscale("log")
        axes[0, 0].legend(frameon=False, fontsize=7, loc="upper right")
        axes[-1, 0].set_xticks(pos, strategies, rotation=60, fontsize=7)
        fig.suptitle(f"Fine-tuning under input corruptions (n_train = {int(ok['n_train'])}): "
                     f"bars ID error (orange: one block tuned; green: L2-SP, LDIFS); "
                     f"{band_note(ok)}", fontsize=8)
    return fig



STUDY = Study(
    name=NAME,
    question="Under pixel-level corruptions (blur, noise, contrast, inversion), which block's "
             "tuning wins, and does LDIFS beat L2-SP?",
    replicate=replicate,
    sizes=SIZES,
    grid={"corruption": list(CORRUPTIONS)},
    describe=describe,
    postprocess=add_measures,
    figure=figure,
    summary=summarise,
    pair_axes=("corruption",),  # replicate r of every corruption fine-tunes one parent
    allow_nan=("level", "reached"),  # inversion has no severity
)
