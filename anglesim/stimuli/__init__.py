"""Oriented grating images: pure torch, batched, differentiable in the orientation.

`GratingSpec` fixes everything about the stimulus except its orientation θ (and, when
``phase`` is None, its phase), with presets (``standard()``, ``reference()``); `render` turns a
batch of N angles into N noisy images [N, C, P, P] from an explicit generator, and
`render_clean` gives the noiseless, differentiable x(θ). The formula and the noise model are in
`render`'s docstring.
"""


from ._grating import GratingSpec
from ._natural import (
    PHOTOGRAPHS,
    NaturalPatches,
    PatchBatch,
    load_photograph,
    orientation_energy,
    orientation_harmonic,
    photograph_directory,
    rotate,
)
from ._rendering import render, render_clean

__all__ = ["PHOTOGRAPHS", "GratingSpec", "NaturalPatches", "PatchBatch", "load_photograph",
           "orientation_energy", "orientation_harmonic", "photograph_directory", "render",
           "render_clean", "rotate"]
