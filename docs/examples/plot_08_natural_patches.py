"""
Natural patches: orientation statistics and a network pretrained on them
========================================================================

:class:`~anglesim.stimuli.NaturalPatches` cuts patches from the photographs inside
scikit-image's package (nothing is downloaded), turned by any angle behind a circular
aperture, so that the corners do not carry the rotation. A patch turned by φ turns every
grating in it from θ to θ + φ, so the patches' orientation energy spectrum
(:func:`~anglesim.stimuli.orientation_energy`) moves by φ. Upright, these photographs hold
most energy at 90° (a grating of orientation 90° has vertical stripes: their vertical edges)
and more at the cardinals than at the obliques — the cos 4θ component peaks at 0° —; turned by
45°, at the obliques.

A network learns from these patches without orientation labels in a training
:class:`~anglesim.training.Phase` whose ``source`` is the patches: it learns which photograph
each patch was cut from. Afterwards its Fisher information (FI) about the orientation of a
grating is measured layer by layer — the quantity Henderson & Serences (2021, J Vision
21(8):10) found to peak where the training images' orientation energy is.
"""

import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from anglesim.fisher import output_noise_fisher
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import (
    GratingSpec,
    NaturalPatches,
    orientation_energy,
    orientation_harmonic,
)
from anglesim.training import Phase, Task, train

patches = NaturalPatches(size=32)  # grey, every photograph, at half their resolution
print("photographs:", patches.photographs)
rotations = [0.0, 22.5, 45.0]

# %%
# The same six draws at each rotation (the generator state is the same, so the photographs and
# positions are too; only the rotation differs), and the orientation energy of 4000 patches.
fig, axes = plt.subplots(3, 7, figsize=(10, 4.6),
                         gridspec_kw={"width_ratios": [1] * 6 + [2.6]})
for row, degrees in zip(axes, rotations, strict=True):
    shown = patches.draw(6, torch.Generator().manual_seed(3), rotation=math.radians(degrees))
    for ax, image, label in zip(row[:6], shown.images, shown.labels, strict=True):
        ax.imshow(image[0], cmap="gray")
        ax.set(xticks=[], yticks=[], title=patches.photographs[int(label)])
    row[0].set_ylabel(f"{degrees:g}°")
    many = patches.draw(4000, torch.Generator().manual_seed(4), rotation=math.radians(degrees))
    energy = orientation_energy(many.images)
    amplitude, phase = orientation_harmonic(energy, 4)
    row[6].plot(np.degrees(energy.angle), energy, "k-")
    row[6].set(xticks=[0, 45, 90, 135, 180], ylabel="energy (rad⁻¹)",
               title=f"cos 4θ peak at {math.degrees(phase):.1f}°")
row[6].set_xlabel("orientation θ (deg)")
fig.tight_layout()

# %%
# Pretrain the standard small CNN to tell the photographs apart, on upright patches. The
# photograph head is a ``"classes"`` head with one unit per photograph; the main head, an
# orientation readout, is not trained here.
config = {**CNNConfig.standard().to_config(),
          "heads": {"photo": {"readout": "classes", "n_bins": len(patches.photographs)}}}
model = build_model(config, generator=torch.Generator().manual_seed(0))
fresh = copy.deepcopy(model)
pretrain = Phase("pretrain", source=patches, rotation=0.0, lr=2e-3, epochs=10,
                 steps_per_epoch=50, batch_size=64,
                 tasks=[Task(head="photo", target="photograph", loss="cross_entropy")])
history = train(model, [pretrain], seed=0)
print("photograph loss per epoch:", np.round(history.train_loss.values, 2),
      f"(chance: ln {len(patches.photographs)} = {math.log(len(patches.photographs)):.2f})")

# %%
# FI about the orientation of a grating, layer by layer, with Gaussian noise of unit variance
# on each unit of the layer (:func:`~anglesim.fisher.output_noise_fisher`): J(θ) = ‖∂r/∂θ‖²,
# how strongly the layer's units respond to a change of orientation — the resource efficient
# coding allocates — averaged over 8 grating phases (the spec's phase is random). (Pixel noise
# propagated through the network instead would leave ``conv1``, which loses no information
# here, with exactly the pixels' FI, flat in θ.) The cos 4θ component of each curve says where
# it peaks: 0° at the cardinals, 45° at the obliques. A network from one seed and a short
# pretraining is one noisy sample; the study ``natural_statistics`` asks the question with
# replicates and rotations.
spec = GratingSpec.standard().replace(phase=None)
angles = torch.arange(48) * math.pi / 48
layers = ["conv1", "conv2", "fc"]
before = output_noise_fisher(fresh, spec, angles, layers=layers)
after = output_noise_fisher(model, spec, angles, layers=layers)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=True)
for ax, layer in zip(axes, layers, strict=True):
    for fisher, style, when in ((before, ":", "initial"), (after, "-", "pretrained")):
        curve = fisher.sel(layer=layer)
        amplitude, phase = orientation_harmonic(curve, 4)
        ax.plot(np.degrees(angles), curve / curve.mean(), style, color="k",
                label=f"{when}: cos 4θ peak {math.degrees(phase):.0f}°, amplitude {amplitude:.2f}")
    ax.set(xlabel="grating orientation θ (deg)", title=layer, xticks=[0, 45, 90, 135])
    ax.legend(fontsize=7, loc="lower center")
axes[0].set_ylabel("FI / its mean over θ")
fig.tight_layout()
