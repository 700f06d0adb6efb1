"""
Fisher information of every layer
=================================

:func:`~anglesim.fisher.propagated_fisher` propagates the stimulus's additive Gaussian pixel
noise through the network's Jacobian and returns the linearised Fisher information (FI) about θ
of every layer, from the pixels ("input") to the decoded angle ("output"), in rad⁻². By the
data-processing inequality no layer carries more than the pixels.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from anglesim.distributions import VonMises
from anglesim.fisher import discrimination_threshold, propagated_fisher
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, train

spec = GratingSpec(size=32, frequency=4.0, noise_std=1.0)
torch.manual_seed(0)
model = build_model(CNNConfig(image_size=32, channels=(8, 16), fc_units=64, readout="cossin"))
prior = VonMises(math.pi / 2, 2.0)  # training angles concentrated at 90°
train(model, [Phase("train", prior, spec, lr=2e-3, epochs=3, steps_per_epoch=30,
                    batch_size=64)], seed=0)

angles = torch.arange(16) * math.pi / 16
fi = propagated_fisher(model, spec, angles)  # dims (layer, angle)
print(fi.layer.values)
print(fi.attrs["quantity"])

# %%
# FI of each layer against orientation, with the training prior's density for comparison.
fig, (a, b) = plt.subplots(1, 2, figsize=(9.5, 3.6))
for layer in fi.layer.values:
    a.semilogy(np.degrees(fi.angle), fi.sel(layer=layer), "o-", ms=3, label=layer)
a.set(xlabel="orientation θ (deg)", ylabel="Fisher information (rad⁻²)")
a.legend(fontsize=8, ncol=2)
b.plot(np.degrees(fi.angle), prior.pdf(fi.angle.values), "k-")
b.set(xlabel="orientation θ (deg)", ylabel="prior density (1/rad)", title="training prior")
fig.tight_layout()

# %%
# The discrimination threshold at d′ = 1 is 1/√J (radians): the smallest change of
# orientation that the decoded angle tells apart from noise.
threshold = np.degrees(discrimination_threshold(fi.sel(layer="output")))
print("threshold of θ̂ (deg):", np.round(threshold.values, 2))
