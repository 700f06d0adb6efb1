"""The fully-connected reference network of the research anglesim grows from
(lrast/angleFinetuning): flattened pixels P² → P → 20 → readout, with ReLU."""

from __future__ import annotations

import torch
from torch import nn

from .. import seeding
from .. import validation as check
from ..readouts import READOUTS, readout_size
from ._anglenet import AngleNet

__all__ = ["reference_mlp"]


def reference_mlp(
    image_size: int = 101,
    readout: str = "cossin",
    hidden: tuple[int, int] | None = None,
    n_bins: int = 36,
    generator: torch.Generator | None = None,
) -> AngleNet:
    """The fully-connected reference network for a P×P single-channel image.

    Flattened pixels P² → P → 20 → out with ReLU, as in the research anglesim grows from
    (lrast/angleFinetuning):
    ``fc1`` (Flatten, Linear P²→P, ReLU), ``fc2`` (Linear P→20, ReLU), ``head`` (Linear 20→out,
    out = 2 for the default (cos 2θ, sin 2θ) readout). ``hidden=(h1, h2)`` overrides (P, 20);
    ``n_bins`` sets the output size for the "bins" readout. ``generator`` (a CPU
    ``torch.Generator``) draws the initial weights; without it torch's global generator does.
    """
    if generator is not None:
        with seeding.drawing_from(generator):
            return reference_mlp(image_size, readout, hidden, n_bins)
    image_size = check.integer("image_size", image_size, minimum=1)
    check.choice("readout", readout, READOUTS)
    n_bins = check.integer("n_bins", n_bins, minimum=2)
    if hidden is None:
        hidden = (image_size, 20)
    if not isinstance(hidden, tuple | list) or len(hidden) != 2:
        raise check.fail("hidden", "two integers >= 1", hidden)
    try:
        h1, h2 = (check.integer("hidden", h, minimum=1) for h in hidden)
    except ValueError:
        raise check.fail("hidden", "two integers >= 1", hidden) from None
    out_dim = readout_size(readout, n_bins)
    blocks = {
        "fc1": nn.Sequential(nn.Flatten(), nn.Linear(image_size**2, h1), nn.ReLU()),
        "fc2": nn.Sequential(nn.Linear(h1, h2), nn.ReLU()),
        "head": nn.Sequential(nn.Linear(h2, out_dim)),
    }
    config = {
        "kind": "mlp",
        "image_size": image_size,
        "in_channels": 1,
        "readout": readout,
        "n_bins": n_bins,
        "hidden": [h1, h2],
    }
    return AngleNet(blocks, readout, n_bins, config)
