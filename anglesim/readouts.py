"""Readouts: how a network's output vector is read as an orientation (or a scalar, or a class).

Images are float tensors ``[N, C, P, P]``; orientation θ lies in [0, π) with period π.
The network's output is read in one of five ways (the *readout*):

* ``"angle"``: one unit, θ̂ = output mod π;
* ``"cossin"``: two units estimating (cos 2θ, sin 2θ), θ̂ = atan2(s, c)/2 mod π;
* ``"bins"``: K logits over bins centred at c_k = (k + ½)π/K, θ̂ = the circular mean of the
  softmax posterior over the bin centres (differentiable);
* ``"scalar"``: one unit that is not an angle (auxiliary regression targets such as contrast);
* ``"classes"``: K logits over K classes that are not angles (e.g. the source photograph of a
  natural patch, :class:`anglesim.stimuli.NaturalPatches`); its targets are class indices.

:func:`decode` maps outputs to θ̂, :func:`angle_targets` θ to the training targets of a
readout, :func:`check_output` validates an output's shape; :mod:`anglesim.models` re-exports
them all.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import angles as ang
from . import validation as check

__all__ = ["ANGLE_READOUTS", "READOUTS", "angle_targets", "bin_centres", "check_output",
           "decode", "readout_size"]

READOUTS = ("angle", "cossin", "bins", "scalar", "classes")
"""Ways to read the network output; see the module docstring."""

ANGLE_READOUTS = ("angle", "cossin", "bins")
"""The readouts that decode to an orientation."""


def readout_size(readout: str, n_bins: int | None = None) -> int:
    """Number of output units for ``readout``: angle 1, cossin 2, bins ``n_bins``, scalar 1,
    classes ``n_bins`` (the number of classes)."""
    check.choice("readout", readout, READOUTS)
    if readout in ("bins", "classes"):
        check.integer("n_bins", n_bins, minimum=2)
        return int(n_bins)
    return 2 if readout == "cossin" else 1


# --------------------------------------------------------------------------------------------
# decoding and targets


def bin_centres(
    n_bins: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Centres c_k = (k + ½)π/K, k = 0 … K−1, of K equal orientation bins covering [0, π)."""
    check.integer("n_bins", n_bins, minimum=2)
    k = torch.arange(n_bins, dtype=dtype or torch.get_default_dtype(), device=device)
    return (k + 0.5) * (math.pi / n_bins)


def check_output(output: Any, readout: str, n_bins: int | None = None) -> int:
    """Check that ``output`` is a 2-D tensor [N, D] of the width ``readout`` needs; return D.

    For "bins" and "classes" D must equal ``n_bins`` when given (else any D >= 2). Raises
    ValueError.
    """
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"output must be a 2-D tensor [N, out_dim], got {shape}")
    width = output.shape[1]
    if readout in ("bins", "classes"):
        if n_bins is not None:
            check.integer("n_bins", n_bins, minimum=2)
            if width != n_bins:
                raise ValueError(
                    f"output has {width} columns but n_bins={n_bins} for readout {readout!r}"
                )
        elif width < 2:
            raise ValueError(f"readout {readout!r} needs at least 2 output columns, got {width}")
    else:
        need = readout_size(readout)
        if width != need:
            raise ValueError(
                f"readout {readout!r} needs {need} output column(s), got output of width {width}"
            )
    return width


def decode(output: torch.Tensor, readout: str, n_bins: int | None = None) -> torch.Tensor:
    """Decode network output [N, D] to orientations θ̂ [N] in [0, π) (differentiable).

    * angle:  θ̂ = output[:, 0] mod π
    * cossin: output = (c, s) estimates (cos 2θ, sin 2θ); θ̂ = atan2(s, c)/2 mod π
    * bins:   K logits for bins centred at c_k = (k + ½)π/K;
      θ̂ = arg(Σ_k softmax_k · e^{2i c_k}) / 2 mod π, the circular mean of the class posterior
      on the doubled-angle circle (Mardia & Jupp 2000, §2.2, rescaled for period π).

    ``n_bins`` is optional for "bins" (the number of columns is used); when given it must
    match. The "scalar" and "classes" readouts are not angles and raise ValueError.
    """
    check.choice("readout", readout, READOUTS)
    if readout not in ANGLE_READOUTS:
        raise ValueError(f"readout {readout!r} is not an angle and cannot be decoded to θ̂")
    width = check_output(output, readout, n_bins)
    if readout == "angle":
        return ang.wrap(output[:, 0])
    if readout == "cossin":
        return ang.wrap(torch.atan2(output[:, 1], output[:, 0]) / 2)
    probs = torch.softmax(output, dim=1)
    centres = bin_centres(width, dtype=output.dtype, device=output.device)
    return ang.circular_mean(centres, axis=-1, weights=probs)


def angle_targets(theta: torch.Tensor, readout: str, n_bins: int | None = None) -> torch.Tensor:
    """Training targets for orientations θ [N] under ``readout``.

    * angle:  θ[:, None]
    * cossin: stack(cos 2θ, sin 2θ) → [N, 2]
    * bins:   long class index floor(wrap(θ)·K/π), clipped to K − 1 → [N]
    * scalar: θ[:, None] (the value itself, for auxiliary regression targets)

    "classes" has class indices, not angles, for targets: ValueError.
    """
    check.choice("readout", readout, READOUTS)
    if readout == "classes":
        raise ValueError("readout 'classes' is trained on class indices, not on angles")
    if not isinstance(theta, torch.Tensor) or theta.ndim != 1:
        shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
        raise ValueError(f"theta must be a 1-D tensor [N], got {shape}")
    if readout in ("angle", "scalar"):
        return theta[:, None]
    if readout == "cossin":
        return torch.stack((torch.cos(2 * theta), torch.sin(2 * theta)), dim=1)
    check.integer("n_bins", n_bins, minimum=2)
    index = torch.floor(ang.wrap(theta) * (n_bins / math.pi)).long()
    return index.clamp(0, n_bins - 1)

