"""
Fisher information of a network you wrote
=========================================

The estimators measure any network that follows anglesim's block protocol: an ordered list of
named blocks (``block_names``), ``run_blocks(h, start, stop)`` applying blocks ``start`` …
``stop``, and ``decode(output)`` giving the decoded angle θ̂ ∈ [0, π). Here a two-layer
perceptron is written from scratch and measured at initialisation and after training.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.stimuli import GratingSpec, render


class MyNet(nn.Module):
    """Pixels → 100 tanh units → (cos 2θ, sin 2θ)."""

    block_names = ["hidden", "head"]

    def __init__(self, pixels: int):
        super().__init__()
        self.blocks = nn.ModuleDict({
            "hidden": nn.Sequential(nn.Flatten(), nn.Linear(pixels, 100), nn.Tanh()),
            "head": nn.Linear(100, 2),
        })

    def run_blocks(self, h, start=None, stop=None):
        names = self.block_names
        first = names.index(start) if start else 0
        last = names.index(stop) if stop else len(names) - 1
        for name in names[first:last + 1]:
            h = self.blocks[name](h)
        return h

    def forward(self, x):
        return self.run_blocks(x)

    def decode(self, output):
        return torch.remainder(torch.atan2(output[:, 1], output[:, 0]) / 2, math.pi)


spec = GratingSpec(size=16, frequency=2.0, noise_std=0.5)
torch.manual_seed(0)
net = MyNet(spec.size ** 2)
angles = torch.arange(12) * math.pi / 12
before = propagated_fisher(net, spec, angles)

# %%
# Train it with a plain PyTorch loop on fresh noisy gratings (loss 1 − cos 2(θ̂ − θ)).
generator = torch.Generator().manual_seed(1)
optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
for _ in range(300):
    theta = Uniform().sample(64, generator=generator)
    out = net(render(theta, spec, generator=generator))
    loss = (1 - (out[:, 0] * torch.cos(2 * theta) + out[:, 1] * torch.sin(2 * theta))
            / out.norm(dim=1).clamp_min(1e-6)).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
print(f"final loss {loss.item():.3f}")
after = propagated_fisher(net, spec, angles)

fig, ax = plt.subplots(figsize=(7.5, 3.6))
for fi, style in [(before, ":"), (after, "-")]:
    for layer, colour in zip(fi.layer.values, ["k", "C0", "C1", "C2"], strict=False):
        ax.semilogy(np.degrees(fi.angle), fi.sel(layer=layer), style, color=colour,
                    label=f"{layer} ({'trained' if fi is after else 'initial'})")
ax.set(xlabel="orientation θ (deg)", ylabel="Fisher information (rad⁻²)")
ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
fig.tight_layout()
