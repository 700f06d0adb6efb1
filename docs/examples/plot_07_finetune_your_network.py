"""
Fine-tune your own network
==========================

Training, the fine-tuning strategies and the Fisher information (FI) estimators take any
``torch.nn.Module``. Here a ResNet-18-shaped network of :mod:`anglesim.models` (torchvision's
module names, at an eighth of its width and 32 px) is trained on gratings from a prior centred
at 90°, then fine-tuned *surgically* on a prior centred at 45°: only the modules matching the
pattern ``"layer1.*"`` (the first residual stage) train. The FI about orientation of every
stage is measured before and after.

A network trains once it says how it is read out: a
:class:`~anglesim.finetune.ReadoutNet` reads the ResNet's own two outputs as (cos 2θ, sin 2θ);
``ReadoutNet(net, input_shape, layer="layer3", readout="cossin")`` would instead attach a
linear head at a named layer. Module paths and glob patterns over them name what a strategy
trains (:class:`~anglesim.finetune.Parts`).
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from anglesim.distributions import VonMises
from anglesim.finetune import Parts, ReadoutNet
from anglesim.fisher import propagated_fisher
from anglesim.models import build_model
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, train

spec = GratingSpec(size=32, frequency=4.0, noise_std=0.5, mask_after_noise=True)
resnet = build_model({"kind": "resnet18", "image_size": 32, "in_channels": 1, "width": 0.125,
                      "readout": "cossin"}, generator=torch.Generator().manual_seed(0))
model = ReadoutNet(resnet, input_shape=(1, 32, 32), readout="cossin")
parts = Parts(model)
print("blocks:", parts.blocks)
print('"layer1.*" selects:', parts.outermost(parts.resolve(["layer1.*"])))

# %%
# Pretrain on orientations near 90°, every parameter training.
history = train(model, [Phase("pretrain", VonMises(math.pi / 2, 2.0), spec, lr=3e-3, epochs=6,
                              steps_per_epoch=25, batch_size=32)], seed=0)
print("decoding error per epoch (deg):", np.round(np.degrees(history.eval_error.values), 1))

stages = ["input", "conv1", "layer1", "layer2", "layer3", "layer4", "output"]
angles = torch.arange(16) * math.pi / 16
before = propagated_fisher(resnet, spec, angles, layers=stages)  # "output": the decoded θ̂
weights = {k: v.clone() for k, v in resnet.state_dict().items()}

# %%
# Fine-tune on orientations near 45° with the ``surgical`` strategy: only ``layer1`` trains.
# Every other parameter stays bit for bit, and so do the running statistics of the frozen
# stages' batch norms (they train in eval mode), so the frozen stages compute what they did.
history = train(model, [Phase("finetune", VonMises(math.pi / 4, 2.0), spec, lr=1e-3, epochs=4,
                              steps_per_epoch=25, batch_size=32, strategy="surgical",
                              strategy_params={"blocks": ["layer1.*"]})], seed=1)
print("decoding error per epoch (deg):", np.round(np.degrees(history.eval_error.values), 1))
changed = sorted({k.split(".")[0] for k, v in resnet.state_dict().items()
                  if not torch.equal(v, weights[k])})
print("stages whose parameters or statistics changed:", changed)
after = propagated_fisher(resnet, spec, angles, layers=stages)

# %%
# FI of every stage before (dotted) and after (solid) fine-tuning, and the change
# log₂(after / before). ``conv1`` is frozen and keeps its information exactly; ``layer1``, which
# trained, is still close to invertible and keeps nearly all of the pixels'; the change shows
# in the stages it feeds. The decoded angle θ̂ (``output``) carries far less than the last stage
# — one number read out by a linear head that a short training has not made efficient — and
# swings from angle to angle; the right panel shows the stages.
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
deg = np.degrees(angles.numpy())
for stage, colour in zip(stages, plt.cm.viridis(np.linspace(0, 0.9, len(stages))), strict=True):
    a.semilogy(deg, before.sel(layer=stage), ":", color=colour)
    a.semilogy(deg, after.sel(layer=stage), "-", color=colour, label=stage)
    if stage not in ("input", "output"):
        b.plot(deg, np.log2(after.sel(layer=stage) / before.sel(layer=stage)), "-",
               color=colour, label=stage)
a.set(xlabel="orientation θ (deg)", ylabel="Fisher information (rad⁻²)",
      title="before (dotted) and after (solid)")
a.legend(fontsize=7, ncol=2)
b.axhline(0, color="grey", lw=0.8)
b.axvline(45, color="k", ls="--", lw=0.8)
b.legend(fontsize=7)
b.set(xlabel="orientation θ (deg)", ylabel="log₂ FI after / before",
      title="surgical fine-tuning of layer1.*")
fig.tight_layout()
