"""Measurements of a trained network's decoding: angular error, a scalar head's error.

:func:`evaluate_error` is the mean absolute angular error |θ̂ − y| over a fixed grid of angles
(chance π/4); :func:`evaluate_target_error` the root-mean-square error of a ``"scalar"`` head
predicting a varied stimulus property, in that property's units, with the regression target
standardised as in training (:func:`standardise`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr
from torch import nn

from . import angles as ang
from . import validation as check
from .data import RENDER_ARG, evaluation_grid
from .stimuli import GratingSpec, render

__all__ = ["evaluate_error", "evaluate_target_error", "standardise"]


def _check_model(model: object, n_angles: object, repeats: object,
                 generator: object) -> tuple[int, int]:
    # a network with readout heads: an AngleNet, or a finetune.ReadoutNet (any nn.Module with
    # a head), both of which read out by forward(x, head), readout_of(head) and decode
    if not isinstance(model, nn.Module) or not all(
            callable(getattr(model, name, None)) for name in ("readout_of", "decode")):
        raise check.fail("model", "an AngleNet (build_model(...)) or a ReadoutNet "
                         "(anglesim.finetune: any nn.Module with a head)", model)
    check.generator("generator", generator)
    return (check.integer("n_angles", n_angles, minimum=1),
            check.integer("repeats", repeats, minimum=1))




@torch.no_grad()
def evaluate_error(
    model: nn.Module,
    spec: GratingSpec,
    n_angles: int = 32,
    repeats: int = 4,
    generator: torch.Generator | None = None,
    head: str = "head",
    target_offset: float = 0.0,
) -> xr.DataArray:
    """Mean absolute angular error |θ̂ − y| (wrapped, radians) at each angle θ of the grid,
    with y = θ, or y = (θ + ``target_offset``) mod π for a head trained on an offset target
    (``Task.target_offset``); the ``angle`` coordinate is θ, the stimulus.

    Each angle is rendered ``repeats`` times with fresh noise; chance is π/4.
    """
    target_offset = check.real("target_offset", target_offset)
    n_angles, repeats = _check_model(model, n_angles, repeats, generator)
    model.readout_of(head)  # ValueError naming the head for one the model lacks
    device = next(model.parameters()).device
    grid = evaluation_grid(n_angles, device=device)
    theta = grid.repeat(repeats)
    was_training = model.training
    model.eval()
    images = render(theta, spec, generator=generator, inplace=True)
    output = model(images, head=head)
    theta_hat = model.decode(output, model.readout_of(head))
    model.train(was_training)
    truth = theta if target_offset == 0 else ang.wrap(theta + target_offset)
    err = ang.difference(theta_hat, truth).abs().reshape(repeats, n_angles).mean(0)
    return xr.DataArray(
        err.cpu().numpy().astype(np.float64),
        dims=("angle",),
        coords={"angle": grid.cpu().numpy().astype(np.float64)},
        name="abs_error",
        attrs={"units": "rad", "long_name": "mean absolute angular error"},
    )


def standardise(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(y − μ)/s with μ = (lo + hi)/2 and s = (hi − lo)/√12, the mean and standard deviation
    of the uniform distribution on [lo, hi] (``Phase.vary``): the regression target of a
    non-angle task, so that always predicting μ gives a mean squared error of 1."""
    return (values - 0.5 * (low + high)) / ((high - low) / math.sqrt(12.0))



@torch.no_grad()
def evaluate_target_error(
    model: nn.Module,
    spec: GratingSpec,
    head: str,
    target: str,
    low: float,
    high: float,
    n_angles: int = 32,
    repeats: int = 8,
    generator: torch.Generator | None = None,
) -> xr.DataArray:
    """Root-mean-square error of a scalar head's estimate of ``target`` at each grid angle.

    At each angle of :func:`evaluation_grid` the property takes ``repeats`` evenly spaced
    values lo + (k + ½)(hi − lo)/repeats (so every angle sees the whole range) with fresh
    noise; the head's standardised output is mapped back, ŷ = μ + s·output (see
    :func:`standardise`). In the property's units; ``attrs["chance"]`` is s = (hi − lo)/√12,
    the error of always predicting the mean.
    """
    n_angles, repeats = _check_model(model, n_angles, repeats, generator)
    check.choice("target", target, list(RENDER_ARG))
    low, high = check.real("low", low), check.real("high", high)
    if not low < high:
        raise ValueError(f"low < high must be finite, got low={low!r}, high={high!r}")
    if model.readout_of(head) != "scalar":
        raise ValueError(
            f"head {head!r} has readout {model.readout_of(head)!r}; a {target} estimate "
            "needs a 'scalar' head"
        )
    device = next(model.parameters()).device
    grid = evaluation_grid(n_angles, device=device)
    theta = grid.repeat(repeats)
    levels = low + (torch.arange(repeats, dtype=torch.float64) + 0.5) * ((high - low) / repeats)
    values = levels.to(device=device, dtype=theta.dtype).repeat_interleave(n_angles)
    was_training = model.training
    model.eval()
    images = render(theta, spec, generator=generator, inplace=True,
                    **{RENDER_ARG[target]: values})
    output = model(images, head=head)[:, 0]
    model.train(was_training)
    scale = (high - low) / math.sqrt(12.0)
    estimate = 0.5 * (low + high) + scale * output
    rmse = ((estimate - values) ** 2).reshape(repeats, n_angles).mean(0).sqrt()
    return xr.DataArray(
        rmse.cpu().numpy().astype(np.float64),
        dims=("angle",),
        coords={"angle": grid.cpu().numpy().astype(np.float64)},
        name=f"{target}_error",
        attrs={"long_name": f"root-mean-square error of the {target} estimate",
               "chance": scale, "low": low, "high": high},
    )

