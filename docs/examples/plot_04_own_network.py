"""
Fisher information of a network you wrote
=========================================

Every estimator takes any ``torch.nn.Module``. Its layers are named by their dotted
``named_modules()`` paths, plus ``"input"`` (the pixels) and ``"output"``;
:func:`~anglesim.fisher.list_layers` lists them. ``"output"`` is the decoded angle θ̂ when the
model has a ``decode`` method or you pass ``decode=`` (a function from the model's outputs to θ̂),
and the raw output vector otherwise. Here a plain ``nn.Sequential`` is written, trained with a
plain PyTorch loop and measured before and after.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from anglesim.distributions import Uniform
from anglesim.fisher import list_layers, propagated_fisher
from anglesim.stimuli import GratingSpec, render

spec = GratingSpec(size=16, frequency=2.0, noise_std=0.5)
torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(4 * 8 * 8, 32), nn.Tanh(),
    nn.Linear(32, 2),  # (cos 2θ, sin 2θ)
)


def decode(output: torch.Tensor) -> torch.Tensor:
    """θ̂ ∈ [0, π) from the (cos 2θ, sin 2θ) outputs."""
    return torch.remainder(torch.atan2(output[:, 1], output[:, 0]) / 2, math.pi)


print(list_layers(net))
layers = ["input", "1", "5", "output"]  # pixels, the conv's ReLU, the tanh layer, θ̂
angles = torch.arange(12) * math.pi / 12
before = propagated_fisher(net, spec, angles, layers=layers, decode=decode)

# %%
# Train it on fresh noisy gratings with the loss 1 − cos 2(θ̂ − θ), written on the outputs.
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
after = propagated_fisher(net, spec, angles, layers=layers, decode=decode)

fig, ax = plt.subplots(figsize=(7.5, 3.6))
for fi, style, when in [(before, ":", "initial"), (after, "-", "trained")]:
    for layer, colour in zip(fi.layer.values, ["k", "C0", "C1", "C2"], strict=True):
        ax.semilogy(np.degrees(fi.angle), fi.sel(layer=layer), style, color=colour,
                    label=f"{layer} ({when})")
ax.set(xlabel="orientation θ (deg)", ylabel="Fisher information (rad⁻²)")
ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
fig.tight_layout()
