"""The fine-tuning-under-shift study's split and its measurements of one network.

The split (Kumar et al. 2022's out-of-distribution test): fine-tuning sees angles in the
in-distribution half ``[0, π/2)`` only (:data:`ID_PRIOR`); the other half ``[π/2, π)``
(:data:`OOD_PRIOR`) is never shown during fine-tuning and is where the out-of-distribution
error is measured. Everything here measures one network on the fine-tuning task's images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from anglesim import angles as ang
from anglesim.distributions import Uniform
from anglesim.models import AngleNet
from anglesim.probe import ridge_readout

from .._recipes import OUTPUT_OFFSET, SPEC, ShiftTask

__all__ = ["ID_PRIOR", "OOD_PRIOR", "REGIONS", "SHIFTS", "decoding_error", "feature_change",
           "probe_error", "region_masks", "split_task"]

SHIFTS = ("input", "prior", "output")
REGIONS = ("id", "ood")
"""The two halves of the circle: ``id`` [0, π/2), where fine-tuning draws its angles, and
``ood`` [π/2, π), never seen in fine-tuning."""
ID_PRIOR = Uniform(0.0, math.pi / 2)
OOD_PRIOR = Uniform(math.pi / 2, math.pi)


def split_task(shift: str, frequency: float | None = None) -> ShiftTask:
    """The fine-tuning task of ``shift``, its angles drawn from :data:`ID_PRIOR`:

    * ``input``: the standard gratings at spatial ``frequency`` (cycles per image; the
      source has 4);
    * ``prior``: the standard gratings and target; only the prior moves (uniform on [0, π)
      in pretraining, uniform on [0, π/2) here);
    * ``output``: the standard gratings with the target y = (θ + π/4) mod π.
    """
    if shift == "input":
        if frequency is None:
            raise ValueError("the input shift needs its frequency, got frequency=None")
        return ShiftTask(ID_PRIOR, dataclasses.replace(SPEC, frequency=float(frequency)))
    if shift == "prior":
        return ShiftTask(ID_PRIOR, SPEC)
    if shift == "output":
        return ShiftTask(ID_PRIOR, SPEC, OUTPUT_OFFSET)
    raise ValueError(f"shift must be one of {list(SHIFTS)}, got {shift!r}")


def region_masks(angle: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of ``angle`` (radians in [0, π)): ``id`` where θ < π/2, ``ood`` where
    θ ≥ π/2, an angle within :func:`anglesim.angles.boundary_tolerance` of π/2 counting as
    ``ood`` whatever the grid's precision (float32 grids hold π/2 rounded)."""
    theta = np.asarray(angle)
    tol = ang.boundary_tolerance(theta, math.pi / 2)
    ood = np.asarray(theta, dtype=np.float64) >= math.pi / 2 - tol
    return {"id": ~ood, "ood": ood}


def decoding_error(net: AngleNet, images: torch.Tensor, target: torch.Tensor) -> float:
    """Mean |θ̂ − y| (rad, wrapped at π) of the network's decoded angle on ``images`` against
    the targets ``target``."""
    with torch.no_grad():
        net.eval()
        est = net.decode(net(images))
    return float(ang.difference(est.double(), target.double()).abs().mean())


def probe_error(net: AngleNet, images: torch.Tensor, target: torch.Tensor,
                block: str = "fc") -> float:
    """Mean |ŷ − y| (rad) of a ridge read-out of (cos 2y, sin 2y) from ``block``, fitted on the
    first half of ``images`` and tested on the second; ŷ = atan2(ŝ, ĉ)/2.

    The read-out is :func:`anglesim.probe.ridge_readout` (λ = 10⁻³). Fitted anew on the
    images' own region, it says how much of the target the block's features still carry
    there, whatever the network's head makes of them.
    """
    with torch.no_grad():
        net.eval()
        feats = net.run_blocks(images, stop=block).flatten(1).double()
    n = feats.shape[0] // 2
    y = torch.stack([torch.cos(2 * target), torch.sin(2 * target)], 1).double()
    pred = ridge_readout(feats[:n], y[:n], feats[n:], ridge=1e-3)
    est = ang.wrap(0.5 * torch.atan2(pred[:, 1], pred[:, 0]))
    return float(ang.difference(est, target[n:].double()).abs().mean())


def feature_change(parent: AngleNet, net: AngleNet, images: torch.Tensor,
                   blocks: Sequence[str]) -> np.ndarray:
    """Relative feature change ‖F − F₀‖_F / ‖F₀‖_F of each block on ``images``, F₀ the
    parent's activations and F the fine-tuned network's (rows: images).

    Kumar et al. (2022, ICLR, "Fine-tuning can distort pretrained features and underperform
    out-of-distribution", Section 3) show for a two-layer linear network that fine-tuning
    changes the features only in the span of the in-distribution inputs, so the features of
    out-of-distribution inputs lag behind the updated head: this measure on ID and on
    OOD images shows how unevenly a strategy moved them.
    """
    out = np.empty(len(blocks))
    with torch.no_grad():
        parent.eval()
        net.eval()
        for i, block in enumerate(blocks):
            f0 = parent.run_blocks(images, stop=block).flatten(1).double()
            f1 = net.run_blocks(images, stop=block).flatten(1).double()
            out[i] = float(torch.linalg.norm(f1 - f0) / torch.linalg.norm(f0))
    return out
