"""What the built-in studies share: the standard stimulus and CNN, the fine-tuning shift
tasks and phases, a pretrained parent per replicate, the reference recipe's output FI, and the
one warning about the standard stimulus the studies expect.

No study imports another study; what two studies use lives here.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from anglesim.distributions import AnglePrior, Uniform, VonMises
from anglesim.fisher import linear_fisher_from_samples, linear_fisher_variance
from anglesim.models import AngleNet, CNNConfig, build_model
from anglesim.pool_ties import PoolTieWarning
from anglesim.stimuli import GratingSpec, render
from anglesim.study import ReplicateContext
from anglesim.training import Phase, Task, train

__all__ = ["APERTURE_TIES", "CNN", "DTHETA", "ERROR_FACTOR", "OUTPUT_OFFSET", "PRIOR_SHIFT",
           "SHIFTS", "SHIFT_SIZES", "SOURCE", "SPEC", "STRATEGIES", "ShiftTask",
           "RUN_LABELS", "describe_variables", "expects_aperture_ties", "finetune_phase",
           "fisher_variables", "labelled", "output_fisher",
           "pretrain_phase", "pretrained_parent", "reference_spec", "shifted_task"]

SPEC = GratingSpec.standard()
"""The studies' standard stimulus: 32×32 gratings, 4 cycles per image, fixed phase, soft
circular aperture, additive Gaussian pixel noise σ = 1 (contrast-to-noise 1), so the propagated
Fisher-information estimator applies exactly to its noise."""
CNN = CNNConfig.standard("cossin")
"""The studies' standard CNN with a (cos 2θ, sin 2θ) readout."""


# ---- the one expected warning -----------------------------------------------------------------

APERTURE_TIES = r"(?s).*the spec adds noise where the aperture masks the signal"
"""What the :class:`~anglesim.pool_ties.PoolTieWarning` says when its ties come from pixel noise
outside the stimulus's aperture (``mask_after_noise=False``): the case of :data:`SPEC`."""


def expects_aperture_ties(replicate: Callable) -> Callable:
    """A replicate function that measures propagated FI on :data:`SPEC` (or a variant of it),
    without the warning about the aperture's pool ties.

    The standard stimulus adds its pixel noise outside the aperture too, where the clean image
    is 0: max-pool windows there tie and receive noise, so the propagated FI is the linearised
    value, not the σ → 0 limit of the noisy network's FI (docs: user guide, "Studies", pool
    ties). That is a known property of the studies' stimulus, said once in the docs and the
    quickstart's summary; every FI result still carries its ``pool_ties_*`` attrs, and a
    warning about ties of any other cause is still shown.
    """
    @functools.wraps(replicate)
    def quiet(ctx: ReplicateContext):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", APERTURE_TIES, PoolTieWarning)
            return replicate(ctx)

    return quiet


# ---- units and long names --------------------------------------------------------------------

RUN_LABELS: dict[str, tuple[str, str]] = {
    "failed": ("1", "the replicate's computation raised an error (1) or not (0)"),
    "error": ("1", "error message of a failed replicate ('' if none)"),
    "replicate_seed": ("1", "seed passed to the replicate's function"),
    "layer": ("1", "layer (dotted module path, 'input' or 'output')"),
    "phase": ("1", "training phase"),
    "epoch_phase": ("1", "training phase of the epoch"),
    "epoch_in_phase": ("1", "epoch within its training phase"),
    "fisher_error": ("rad^-2", "bound on the numerical error of the propagated FI"),
    "iterations": ("1", "Golub-Kahan iterations of the FI solver (0: exact)"),
    "solver": ("1", "solver of the propagated FI"),
    "error_kind": ("1", "what fisher_error is (a bound or an estimate)"),
    "train_loss": ("1", "training loss, in the loss's own units"),
    "val_loss": ("1", "validation loss, in the loss's own units (finite-dataset phases only)"),
}
"""Units and long names of the variables and coordinates the runner, training and the FI
estimators add to a study's Dataset, for :func:`labelled` (categorical and count variables are
dimensionless, units "1")."""


def labelled(ds: xr.Dataset, labels: dict[str, tuple[str, str]]) -> xr.Dataset:
    """``ds`` with ``units`` and ``long_name`` on each variable or coordinate named in
    :data:`RUN_LABELS` or ``labels`` (``{name: (units, long_name)}``, which win over
    RUN_LABELS), where it lacks them: attributes a variable already has are kept."""
    out = ds.copy()
    for name, (units, long_name) in {**RUN_LABELS, **labels}.items():
        if name in out.variables:
            attrs = out[name].attrs
            out[name].attrs = {"units": units, "long_name": long_name, **attrs}
    return out


def describe_variables(ds: xr.Dataset, attrs: dict[str, dict[str, str]]) -> xr.Dataset:
    """``ds`` with ``attrs[name]`` (a study's own attributes, which replace any the variable
    has) set on each variable or coordinate so named, then :func:`labelled`'s run labels where
    a variable still lacks them."""
    out = ds.copy()
    for name, given in attrs.items():
        if name in out.variables:
            out[name].attrs = {**out[name].attrs, **given}
    return labelled(out, {})


# ---- FI results of several calls in one Dataset -----------------------------------------------

SOLVER_DIAGNOSTICS: dict[str, tuple[str, str, str]] = {
    "fisher_error": ("{}_error", "rad^-2", "numerical error of {} (a bound or an estimate: see "
                     "{}_error_kind)"),
    "error_kind": ("{}_error_kind", "1", "what {}_error is ('exact', 'bound' or 'estimate')"),
    "iterations": ("{}_iterations", "1", "Golub-Kahan iterations of the solver of {} (0: exact)"),
    "solver": ("{}_solver", "1", "route of the solver of {}"),
    "dfisher_dlog_eps": ("d{}_dlog_eps", "rad^-2", "derivative of {} with respect to the log "
                         "of the Krylov solver's ridge"),
}
"""The per-call coordinates of :func:`anglesim.fisher.propagated_fisher`'s result: for each,
the name (a format of the FI variable's name), units and long name it takes as a variable of
its own in :func:`fisher_variables`."""


def fisher_variables(**arrays: xr.DataArray) -> dict[str, xr.DataArray]:
    """Data variables for one Dataset from FI DataArrays of several calls of
    :func:`~anglesim.fisher.propagated_fisher` (``name=array``): each array without its
    per-call solver diagnostics (the coordinates fisher_error, error_kind, iterations, solver,
    dfisher_dlog_eps), and each diagnostic as a variable of its own named after the array
    (``fisher_error`` of ``parent_fisher`` → ``parent_fisher_error``; ``error_kind`` →
    ``parent_fisher_error_kind``, ``iterations`` → ``parent_fisher_iterations``, ``solver`` →
    ``parent_fisher_solver``, ``dfisher_dlog_eps`` → ``dparent_fisher_dlog_eps``), with units and
    a long name.

    The diagnostics belong to one call: the float32 exact solver's rounding estimate and a
    Krylov solve's iterations differ between networks, so as coordinates of two arrays in one
    Dataset they conflict (xarray's MergeError), and a coordinate would not say which array it
    describes. An array concatenated from several calls (``xr.concat``) keeps each call's
    diagnostics along the new dimension.
    """
    out: dict[str, xr.DataArray] = {}
    for name, array in arrays.items():
        present = [c for c in SOLVER_DIAGNOSTICS if c in array.coords]
        values = array.drop_vars(present)
        out[name] = values
        for coord in present:
            var = array.coords[coord].variable
            pattern, units, long_name = SOLVER_DIAGNOSTICS[coord]
            out[pattern.format(name)] = xr.DataArray(
                var.copy(), dims=var.dims,
                coords={k: v for k, v in values.coords.items() if set(v.dims) <= set(var.dims)},
                attrs={"units": units, "long_name": long_name.format(name, name)})
    return out


# ---- fine-tuning under shift ------------------------------------------------------------------

SHIFTS = ("input", "prior", "output")
PRIOR_SHIFT = VonMises(math.pi / 2, 4.0)
OUTPUT_OFFSET = math.pi / 4
ERROR_FACTOR = 2.0
"""A severity ladder's chosen rung is the first at which the parent's error is at least this
many times its error on the source images."""

STRATEGIES: dict[str, dict[str, Any]] = {
    "full": {},
    "linear_probe": {"lr_scale": 10.0},
    "lp_ft": {"probe_lr_scale": 10.0},  # probe_epochs: half the phase's epochs (see below)
    "surgical": {"blocks": ["conv1"]},
    "freeze": {"blocks": ["conv1"]},
    "auto_rgn": {},
    "discriminative": {},
    "l2_sp": {},
    "tpgm": {},
    "lora": {},
}
"""Every registered strategy, with the parameters the shift studies set (the rest are
defaults)."""

SHIFT_SIZES = {
    "full": dict(pre_epochs=8, pre_steps=50, pre_batch=64, pre_lr=2e-3, n_train=[16, 64, 256],
                 steps=128, batch=16, lrs=[3e-4, 1e-3, 3e-3], tpgm_every=10, n_angles=24,
                 error_repeats=16, cka_images=256, probe_images=512,
                 layers=["input", "fc", "output"], replicates=6),
    "quick": dict(pre_epochs=1, pre_steps=4, pre_batch=16, pre_lr=2e-3, n_train=[16],
                  steps=4, batch=16, lrs=[1e-3], tpgm_every=2, n_angles=4, error_repeats=2,
                  cka_images=32, probe_images=64, layers=["input", "output"], replicates=2),
}
"""The fine-tuning-under-shift sizes the shift studies start from: the parent's pretraining
(``pre_*``), the fine-tunings (``n_train`` images, ``steps`` batches of ``batch``, rates
``lrs``) and the measurements; ``layers``: where FI is measured (the quick size skips ``fc``,
half its cost)."""


@dataclasses.dataclass(frozen=True)
class ShiftTask:
    """A fine-tuning task: its prior, stimulus and target offset (radians)."""

    prior: AnglePrior
    spec: GratingSpec
    offset: float = 0.0


SOURCE = ShiftTask(Uniform(), SPEC)
"""The pretraining task."""


def shifted_task(shift: str, frequency: float | None = None) -> ShiftTask:
    """The fine-tuning task of ``shift``: ``input`` the standard gratings at spatial
    ``frequency``, ``prior`` :data:`PRIOR_SHIFT`, ``output`` the target θ +
    :data:`OUTPUT_OFFSET`."""
    if shift == "input":
        if frequency is None:
            raise ValueError("the input shift needs its frequency, got frequency=None")
        return ShiftTask(Uniform(), dataclasses.replace(SPEC, frequency=float(frequency)))
    if shift == "prior":
        return ShiftTask(PRIOR_SHIFT, SPEC)
    if shift == "output":
        return ShiftTask(Uniform(), SPEC, OUTPUT_OFFSET)
    raise ValueError(f"shift must be one of {list(SHIFTS)}, got {shift!r}")


def pretrain_phase(sz: dict) -> Phase:
    """The parent's training on the source task (fresh images every batch)."""
    return Phase("pretrain", SOURCE.prior, SOURCE.spec, loss="cosine", lr=sz["pre_lr"],
                 epochs=sz["pre_epochs"], steps_per_epoch=sz["pre_steps"],
                 batch_size=sz["pre_batch"], eval_angles=8, eval_repeats=1)


def finetune_phase(task: ShiftTask, strategy: str, n_train: int, lr: float, sz: dict,
                   params: dict[str, Any] | None = None) -> Phase:
    """Fine-tuning on ``n_train`` images of ``task`` with ``strategy`` at rate ``lr``: the same
    number of optimiser steps (``steps`` batches of ``batch``) whatever n_train, no early stop
    (patience = epochs), the best validation checkpoint kept. The strategy's parameters are
    :data:`STRATEGIES`' (``params`` replaces them)."""
    if n_train % 8 or n_train < 8:
        raise ValueError(f"n_train must be a positive multiple of 8 (8D images), got {n_train}")
    epochs = max(1, sz["steps"] * sz["batch"] // n_train)
    params = copy.deepcopy(STRATEGIES[strategy] if params is None else params)
    if strategy == "lp_ft":
        params["probe_epochs"] = max(1, epochs // 2)
        if epochs < 2:
            raise ValueError(f"lp_ft needs at least 2 epochs, got {epochs} (n_train {n_train})")
    if strategy == "tpgm":
        params["update_every"] = sz["tpgm_every"]
    return Phase("finetune", task.prior, task.spec, lr=lr, epochs=epochs,
                 batch_size=sz["batch"], dataset_size=n_train // 8, patience=epochs,
                 eval_angles=8, eval_repeats=1, strategy=strategy, strategy_params=params,
                 tasks=[Task(loss="cosine", target_offset=task.offset)])


_PARENTS: dict[tuple, AngleNet] = {}


def pretrained_parent(ctx: ReplicateContext, sz: dict, train_seed: int) -> AngleNet:
    """The replicate's parent: :data:`CNN` with initial weights from the replicate's stream
    ``"init"``, trained by :func:`pretrain_phase` with ``train_seed`` on ``ctx.device``, in
    eval mode.

    Conditions that share the replicate's seed (``pair_axes``) share its parent: it is trained
    once per process and copied, which gives the weights training it again would.
    """
    phase = pretrain_phase(sz)
    key = (ctx.stream_seed("init"), train_seed, json.dumps(phase.to_config(), sort_keys=True),
           ctx.device)
    if key not in _PARENTS:
        _PARENTS.clear()  # one parent at a time: a replicate's conditions arrive together
        parent = build_model(CNN, generator=ctx.generator("init", device="cpu"))
        train(parent, [phase], train_seed, **ctx.on_device)
        _PARENTS[key] = parent.eval()
    return copy.deepcopy(_PARENTS[key])


# ---- the reference recipe ---------------------------------------------------------------------

DTHETA = math.pi / 90
"""2°: the pair of orientations whose discrimination d′ the reference studies describe."""


def reference_spec(image_size: int) -> GratingSpec:
    """The reference stimulus (``GratingSpec.reference()``; a smaller grid for quick runs)."""
    spec = GratingSpec.reference()
    return spec if image_size == spec.size else spec.replace(size=image_size)


def output_fisher(model: AngleNet, spec: GratingSpec, angles: torch.Tensor, n_trials: int,
                  dtheta: float, generator: torch.Generator, chunk: int = 4) -> tuple:
    """Bias-corrected linear FI of the model's output at each angle, and its standard error.

    For each θ, ``n_trials`` images at θ − Δθ/2 and at θ + Δθ/2 (the spec's own noise) are run
    through the network; the [T, 2] outputs go to
    :func:`anglesim.fisher.linear_fisher_from_samples` (Kanitscheider et al. 2015), the
    standard error to :func:`anglesim.fisher.linear_fisher_variance` (at the estimate, floored
    at 0), for all angles at once.
    """
    values: list[float] = []
    n_units = 0
    device = next(model.parameters()).device  # the grid and the renders follow the model
    model.eval()
    with torch.no_grad():
        for start in range(0, angles.numel(), chunk):
            theta = angles[start:start + chunk].to(device)
            pair = torch.stack([theta - dtheta / 2, theta + dtheta / 2], 1)  # [c, 2]
            batch = pair[:, None, :].expand(-1, n_trials, -1).reshape(-1)  # ordered (c, T, ±)
            out = model(render(batch, spec, generator=generator, dtype=torch.float32))
            out = out.reshape(theta.numel(), n_trials, 2, -1).double().cpu().numpy()
            n_units = out.shape[-1]
            values += [linear_fisher_from_samples(out[k, :, 0], out[k, :, 1], dtheta)
                       for k in range(theta.numel())]
    fisher = np.array(values)
    if fisher.size == 0:
        return fisher, fisher.copy()
    var = linear_fisher_variance(np.maximum(fisher, 0.0), n_trials, n_units, dtheta)
    return fisher, np.sqrt(var)
