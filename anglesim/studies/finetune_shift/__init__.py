"""Fine-tuning under shift: which strategy adapts best to which kind of distribution shift?

One parent CNN per replicate is pretrained on the source task — θ of the standard gratings
(``SPEC``: 4 cycles per image, σ = 1) under a uniform prior. Copies of it are fine-tuned with
each registered strategy (:mod:`anglesim.finetune`) on a small finite dataset from one of three
shifted tasks, the grid axis ``shift``:

* ``input`` — an input-level shift: the gratings' spatial frequency rises from 4 to f cycles
  per image, everything else kept. f is scaled up a ladder (:data:`FREQUENCY_LADDER`) until
  the parent's mean error on the shifted images is at least twice its error on the source
  images, and the first such f is used (recorded as ``shift_value``, with the parent's error
  at every rung in ``severity_error``). A higher frequency gives the pixels *more* information
  about θ (∂x/∂θ grows with it), so the error a fine-tuned network cannot recover is not lost
  information but mismatched features. (Lower contrast plus noise was tried first and left
  out: in a pilot the parent's error doubled at a contrast-to-noise ratio 1/1.75 of the
  source's, where an ideal observer's error grows 1.75-fold too — most of the doubling was
  information the images no longer carry, leaving little for any strategy to recover.)
* ``prior`` — a prior shift: angles from a von Mises prior on 2θ at 90° with κ = 4 instead of
  the uniform prior; images and target unchanged.
* ``output`` — an output-level shift: the target becomes y = (θ + π/4) mod π
  (``Task(target_offset=π/4)``), a different function of the same images.

Each fine-tuning uses the reference protocol's finite datasets (``Phase(dataset_size=D)``):
8D training images, 2D validation images (for early stopping / checkpoint selection, TPGM's
radii and the learning-rate choice) and 2D test images (unused); ``n_train`` = 8D is the number
of *training* images, so n_train = 16 comes with 4 validation images. Every strategy gets the
same data, batches (16 images) and number of optimiser steps (``steps``, so fewer epochs for
larger n_train), Adam, and the best-validation-loss checkpoint is kept. Each strategy's
learning rate is chosen per replicate, shift and n_train from a small grid (``lrs``) by the
lowest validation loss — as a practitioner with only these images would. The heads-only
strategies train 10× faster than the grid's rate (``linear_probe`` lr_scale 10, ``lp_ft``
probe_lr_scale 10): a 64 → 2 linear head at trunk rates does not converge within the step budget
(pilot, output shift, n_train = 256: 8.8° at 1×, 1.3° at 10×), and Kumar et al. (2022) fit
their probe to convergence. ``surgical`` trains only ``conv1`` (Lee et al. 2023's choice for
input-level shifts) and ``freeze`` everything but ``conv1``; the other strategies use their
defaults (:data:`STRATEGIES`).

Measured after each fine-tuning, on images with fresh noise that are the same for every
strategy of a replicate:

* ``error_id`` — in-distribution error: |θ̂ − y| at each angle of a grid on the fine-tuning
  task's images (weighted by its prior in ``id_error``);
* ``error_source`` — out-of-distribution error: the *pretraining* task (standard images,
  uniform prior, target θ), i.e. what fine-tuning forgot (for the output shift a network that
  learned the new target is π/4 off here by construction; ``probe_error`` then says whether
  the features still carry θ);
* ``probe_error`` — a ridge read-out of (cos 2θ, sin 2θ) from the last trunk block (``fc``) on
  source images, fitted anew: the source information left in the features;
* ``fisher`` — propagated Fisher information about θ of ``input``, ``fc`` and the decoded
  output, on the fine-tuning task's stimulus (the shifted frequency for ``input``, ``SPEC``
  otherwise); the convolutional blocks are left out because their Jacobians cost about 7 s
  per network against about 0.3 s for a whole fine-tuning;
* ``cka`` — linear CKA (Kornblith et al. 2019) of every block against the parent on 256 fixed
  images of the fine-tuning task, and ``weight_change`` ‖θ − θ₀‖/‖θ₀‖ per block;
* what the adaptive strategies chose: Auto-RGN's per-block rate weights (mean over its
  updates), TPGM's learned radii per block (√Σγᵢ² over the block's tensors, also relative to
  the block's pretrained norm), LoRA's update norms per block, LP-FT's switch epoch.

Run: ``anglesim run finetune_shift [--quick]``.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import xarray as xr

from anglesim import angles as ang
from anglesim.data import draw
from anglesim.finetune import Strategy
from anglesim.fisher import propagated_fisher
from anglesim.models import AngleNet
from anglesim.probe import ridge_readout
from anglesim.representation import cka_drift, weight_distance
from anglesim.stimuli import GratingSpec
from anglesim.study import ReplicateContext, Study
from anglesim.training import evaluate_error, train

from .._recipes import (
    CNN,
    ERROR_FACTOR,
    OUTPUT_OFFSET,
    PRIOR_SHIFT,
    SHIFT_SIZES,
    SHIFTS,
    SOURCE,
    SPEC,
    STRATEGIES,
    expects_aperture_ties,
    finetune_phase,
    pretrain_phase,
    pretrained_parent,
    shifted_task,
)
from .analysis import add_measures, summarise
from .figure import plot_finetune_shift

NAME = "finetune_shift"
FREQUENCY_LADDER = (4.25, 4.5, 4.75, 5.0, 5.5, 6.0, 7.0)
"""Spatial frequencies (cycles per image) tried in order for the input shift; the source is 4."""
BLOCKS = ("conv1", "conv2", "fc", "head")
SIZES = SHIFT_SIZES


# ---- measurements -----------------------------------------------------------------------------


def probe_error(net: AngleNet, images: torch.Tensor, theta: torch.Tensor) -> float:
    """Mean |θ̂ − θ| (rad) of a ridge read-out of (cos 2θ, sin 2θ) from block ``fc``, fitted on
    the first half of ``images`` and tested on the second; θ̂ = atan2(ŝ, ĉ)/2.

    The read-out is :func:`anglesim.probe.ridge_readout` (λ = 10⁻³).
    """
    with torch.no_grad():
        net.eval()
        feats = net.run_blocks(images, stop="fc").flatten(1).double()
    n = feats.shape[0] // 2
    y = torch.stack([torch.cos(2 * theta), torch.sin(2 * theta)], 1).double()
    pred = ridge_readout(feats[:n], y[:n], feats[n:], ridge=1e-3)
    est = ang.wrap(0.5 * torch.atan2(pred[:, 1], pred[:, 0]))
    return float(ang.difference(est, theta[n:].double()).abs().mean())


def block_norms(values: np.ndarray, blocks: list[str]) -> np.ndarray:
    """√Σ values² over each block of :data:`BLOCKS` (NaN for a block with no entry)."""
    out = np.full(len(BLOCKS), np.nan)
    for i, b in enumerate(BLOCKS):
        mask = np.array([x == b for x in blocks], dtype=bool)
        if mask.any():
            out[i] = float(np.sqrt(np.sum(np.asarray(values)[mask] ** 2)))
    return out


def strategy_summary(strategy: Strategy, parent_norm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-block diagnostics of the adaptive strategies (NaN-filled for the others):
    Auto-RGN's mean rate weight per block, TPGM's last learned radii (√Σγ² per block, and over
    the parent's block norm), LoRA's update norm per block, LP-FT's switch epoch."""
    nan = np.full(len(BLOCKS), np.nan)
    out = {"rgn_weight": nan.copy(), "tpgm_radius": nan.copy(), "lora_update_norm": nan.copy(),
           "lp_ft_switch_epoch": np.array(np.nan)}
    diag = strategy.diagnostics()
    if strategy.name == "auto_rgn" and diag.sizes.get("rgn_update", 0):
        mean = diag["rgn_weight_block"].mean("rgn_update")
        out["rgn_weight"] = np.array([float(mean.sel(block=b)) if b in mean["block"] else np.nan
                                      for b in BLOCKS])
    elif strategy.name == "tpgm" and diag.sizes.get("tpgm_update", 0):
        last = diag["tpgm_radius"].isel(tpgm_update=-1)
        out["tpgm_radius"] = block_norms(last.values, list(diag["parameter_block"].values))
    elif strategy.name == "lora":
        out["lora_update_norm"] = block_norms(diag["lora_update_norm"].values,
                                              list(diag["lora_block"].values))
    elif strategy.name == "lp_ft":
        out["lp_ft_switch_epoch"] = np.array(float(diag["lp_ft_switch_epoch"]))
    out["tpgm_radius_rel"] = out["tpgm_radius"] / parent_norm
    return out


def choose_frequency(parent: AngleNet, ctx: ReplicateContext
                     ) -> tuple[float, np.ndarray, float, bool]:
    """Walk up :data:`FREQUENCY_LADDER` until the parent's mean error is at least
    :data:`ERROR_FACTOR` × its source error (the same noise, the replicate's stream
    "severity", at every rung).
    Returns the chosen frequency (the last rung if none doubled), the parent's error at every
    rung (NaN beyond the chosen one), its source error, and whether the factor was reached."""
    sz = ctx.params

    def mean_error(spec: GratingSpec) -> float:
        return float(evaluate_error(parent, spec, sz["n_angles"], sz["error_repeats"],
                                    ctx.generator("severity")).mean())

    base = mean_error(SPEC)
    errors = np.full(len(FREQUENCY_LADDER), np.nan)
    for i, f in enumerate(FREQUENCY_LADDER):
        errors[i] = mean_error(dataclasses.replace(SPEC, frequency=f))
        if errors[i] >= ERROR_FACTOR * base:
            return f, errors, base, True
    return FREQUENCY_LADDER[-1], errors, base, False


# ---- one replicate ----------------------------------------------------------------------------


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Pretrain the replicate's parent, fine-tune it with every strategy, n_train and learning
    rate on the condition's shift, keep each strategy's best rate by validation loss, measure."""
    sz, on = ctx.params, ctx.on_device
    shift = str(ctx.condition["shift"])
    # the seed is shared by the shifts (pair_axes): one parent
    parent = pretrained_parent(ctx, sz, ctx.stream_seed("init"))

    is_input = shift == "input"
    sev_value = np.array(FREQUENCY_LADDER, dtype=float)
    if is_input:
        frequency, severity_error, severity_base, reached = choose_frequency(parent, ctx)
    else:
        frequency, reached, severity_base = math.nan, math.nan, math.nan
        severity_error = np.full(len(sev_value), np.nan)
    task = shifted_task(shift, frequency if is_input else None)
    grid = ctx.angles
    angle = grid.double().numpy()
    density = task.prior.pdf(angle)
    cka_images, _ = draw(task.prior, task.spec, sz["cka_images"], ctx.generator("cka"), **on)
    probe_images, probe_theta = draw(SOURCE.prior, SOURCE.spec, sz["probe_images"],
                                     ctx.generator("probe"), **on)
    parent_norm = weight_distance(parent, parent)["reference_norm"].sel(layer=list(BLOCKS)).values

    def errors(net: AngleNet) -> tuple[np.ndarray, np.ndarray]:
        e_id = evaluate_error(net, task.spec, sz["n_angles"], sz["error_repeats"],
                              ctx.generator("eval"), target_offset=task.offset)
        e_src = evaluate_error(net, SOURCE.spec, sz["n_angles"], sz["error_repeats"],
                               ctx.generator("eval_source"))
        return e_id.values, e_src.values

    def fisher(net: AngleNet) -> np.ndarray:
        return propagated_fisher(net, task.spec, grid, layers=layers,
                                 sigma=task.spec.noise_std, **on).sel(layer=layers).values

    names, sizes, lrs = list(STRATEGIES), list(sz["n_train"]), list(sz["lrs"])
    layers = list(sz["layers"])
    shape = (len(names), len(sizes))
    out: dict[str, np.ndarray] = {
        "error_id": np.empty(shape + (len(angle),)),
        "error_source": np.empty(shape + (len(angle),)),
        "fisher": np.empty(shape + (len(layers), len(angle))),
        "cka": np.empty(shape + (len(BLOCKS),)),
        "weight_change": np.empty(shape + (len(BLOCKS),)),
        "probe_error": np.empty(shape),
        "val_loss": np.empty(shape + (len(lrs),)),
        "chosen_lr": np.empty(shape),
    }
    diag_keys = ("rgn_weight", "tpgm_radius", "tpgm_radius_rel", "lora_update_norm")
    diag = {k: np.full((len(sizes), len(BLOCKS)), np.nan) for k in diag_keys}
    switch = np.full(len(sizes), np.nan)
    for j, n_train in enumerate(sizes):
        ft_seed = ctx.stream_seed("data", j)  # the same data for every strategy and rate
        for i, name in enumerate(names):
            best: tuple[float, AngleNet, Strategy] | None = None
            for k, lr in enumerate(lrs):
                net = copy.deepcopy(parent)
                kept: list[Strategy] = []
                history = train(net, [finetune_phase(task, name, n_train, lr, sz)], ft_seed,
                                on_strategy_end=lambda _p, s, kept=kept: kept.append(s), **on)
                val = float(np.nanmin(history["val_loss"].values))
                out["val_loss"][i, j, k] = val
                if best is None or val < best[0]:
                    best = (val, net, kept[0])
                    out["chosen_lr"][i, j] = lr
            _, net, strategy = best
            out["error_id"][i, j], out["error_source"][i, j] = errors(net)
            out["fisher"][i, j] = fisher(net)
            out["cka"][i, j] = cka_drift(parent, net, cka_images, list(BLOCKS)).values
            out["weight_change"][i, j] = weight_distance(net, parent)["relative_change"].sel(
                layer=list(BLOCKS)).values
            out["probe_error"][i, j] = probe_error(net, probe_images, probe_theta)
            summary = strategy_summary(strategy, parent_norm)
            for key in diag_keys:
                if np.isfinite(summary[key]).any():
                    diag[key][j] = summary[key]
            if name == "lp_ft":
                switch[j] = float(summary["lp_ft_switch_epoch"])

    parent_id, parent_src = errors(parent)
    dims = ("strategy", "n_train")
    ds = xr.Dataset(
        {
            "error_id": (dims + ("angle",), out["error_id"]),
            "error_source": (dims + ("angle",), out["error_source"]),
            "fisher": (dims + ("layer", "angle"), out["fisher"]),
            "cka": (dims + ("block",), out["cka"]),
            "weight_change": (dims + ("block",), out["weight_change"]),
            "probe_error": (dims, out["probe_error"]),
            "val_loss": (dims + ("lr",), out["val_loss"]),
            "chosen_lr": (dims, out["chosen_lr"]),
            **{k: (("n_train", "block"), v) for k, v in diag.items()},
            "lp_ft_switch_epoch": (("n_train",), switch),
            "parent_error_id": (("angle",), parent_id),
            "parent_error_source": (("angle",), parent_src),
            "parent_fisher": (("layer", "angle"), fisher(parent)),
            "parent_probe_error": ((), probe_error(parent, probe_images, probe_theta)),
            "finetune_density": (("angle",), density),
            "severity_error": (("severity",), severity_error),
            "severity_base_error": ((), float(severity_base)),
            "shift_value": ((), float(frequency)),
            "shift_reached": ((), float(reached)),
        },
        coords={"strategy": names, "n_train": sizes, "angle": angle, "layer": layers,
                "block": list(BLOCKS), "lr": lrs, "severity": np.arange(len(sev_value)),
                "severity_frequency": ("severity", sev_value)},
    )
    _annotate(ds)
    return ds


def _annotate(ds: xr.Dataset) -> None:
    """Units and long names of a replicate's variables."""
    rad = {"units": "rad"}
    attrs = {
        "error_id": dict(rad, long_name="in-distribution error |θ̂ − y| on the fine-tuning task"),
        "error_source": dict(rad, long_name="out-of-distribution error |θ̂ − θ| on the "
                             "pretraining task (standard images, uniform prior)"),
        "fisher": {"units": "rad^-2", "method": "propagated", "long_name":
                   "propagated FI about θ on the fine-tuning task's stimulus"},
        "parent_fisher": {"units": "rad^-2", "method": "propagated",
                          "long_name": "the parent's FI on the fine-tuning task's stimulus"},
        "cka": {"units": "1", "long_name": "linear CKA of each block, parent vs fine-tuned"},
        "weight_change": {"units": "1", "long_name": "‖θ − θ₀‖/‖θ₀‖ per block"},
        "probe_error": dict(rad, long_name="error of a ridge probe of θ from fc, source task"),
        "parent_probe_error": dict(rad, long_name="the parent's probe error"),
        "val_loss": {"long_name": "best validation loss at each learning rate"},
        "chosen_lr": {"long_name": "learning rate with the lowest validation loss"},
        "rgn_weight": {"units": "1", "long_name": "Auto-RGN rate / phase rate, mean over "
                       "updates and over the block's tensors"},
        "tpgm_radius": {"long_name": "TPGM's last learned radii, √Σγ² over the block"},
        "tpgm_radius_rel": {"units": "1", "long_name": "TPGM radius / parent block norm"},
        "lora_update_norm": {"long_name": "LoRA ‖ΔW‖_F, √Σ over the block's adapters"},
        "lp_ft_switch_epoch": {"long_name": "LP-FT's first full fine-tuning epoch"},
        "parent_error_id": dict(rad, long_name="the parent's error on the fine-tuning task"),
        "parent_error_source": dict(rad, long_name="the parent's error on the pretraining task"),
        "finetune_density": {"units": "1/rad", "long_name": "fine-tuning prior density"},
        "severity_error": dict(rad, long_name="the parent's mean error at each rung of the "
                               "input shift's frequency ladder (NaN beyond the chosen rung)"),
        "severity_base_error": dict(rad, long_name="the parent's source error the ladder's "
                                    "rule compares with (same noise draws)"),
        "shift_value": {"units": "cycles per image",
                        "long_name": "the input shift's chosen spatial frequency"},
        "shift_reached": {"long_name": "1 if the chosen rung at least doubled the error"},
    }
    for name, a in attrs.items():
        ds[name].attrs = a


# ---- the study --------------------------------------------------------------------------------


def describe(sz: dict, grid: dict) -> dict:
    """Everything besides the sizes and the code that determines the results (the cache
    key)."""
    example = {s: finetune_phase(shifted_task(s, FREQUENCY_LADDER[0]), "lp_ft",
                                 sz["n_train"][0], sz["lrs"][0], sz).to_config()
               for s in SHIFTS}
    return {"spec": SPEC.to_config(),
            "model": CNN.to_config(), "strategies": STRATEGIES,
            "prior_shift": PRIOR_SHIFT.to_config(), "output_offset": OUTPUT_OFFSET,
            "frequency_ladder": list(FREQUENCY_LADDER), "error_factor": ERROR_FACTOR,
            "pretrain": pretrain_phase(sz).to_config(), "finetune_example": example}


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question="Which fine-tuning strategy adapts best to which kind of distribution shift?",
    replicate=replicate,
    sizes=SIZES,
    grid={"shift": list(SHIFTS)},
    describe=describe,
    postprocess=add_measures,
    figure=plot_finetune_shift,
    summary=summarise,
    # Paired: the three shifts of replicate r share its seed, so they fine-tune one parent
    # (and see the same fine-tuning data draws and evaluation noise where their tasks agree).
    pair_axes=("shift",),
    # NaN by design: diagnostics of the strategies that have them; the severity ladder only
    # for the input shift
    allow_nan=("rgn_weight", "tpgm_radius", "tpgm_radius_rel", "lora_update_norm",
               "lp_ft_switch_epoch", "severity_error", "severity_base_error", "shift_value",
               "shift_reached"),
)
