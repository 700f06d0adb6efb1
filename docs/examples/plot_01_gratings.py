"""
Render and show gratings
========================

A :class:`~anglesim.stimuli.GratingSpec` holds everything about a stimulus except its
orientation; :func:`~anglesim.stimuli.render` draws a batch of images at given angles.
Angles are radians, and orientation has period π: θ and θ + π are the same grating.
"""

import math

import matplotlib.pyplot as plt
import torch

from anglesim.stimuli import GratingSpec, render

spec = GratingSpec(size=32, frequency=4.0, aperture=0.9, noise_std=1.0)
angles = torch.tensor([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
generator = torch.Generator().manual_seed(0)  # every random number comes from a generator

clean = render(angles, spec, noise=False)  # [N, channels, P, P]
noisy = render(angles, spec, generator=generator)
print(clean.shape, clean.dtype)

fig, axes = plt.subplots(2, len(angles), figsize=(8, 4.2))
for j, theta in enumerate(angles):
    for i, (images, what) in enumerate([(clean, "clean"), (noisy, "noise σ = 1")]):
        ax = axes[i, j]
        ax.imshow(images[j, 0], cmap="gray", vmin=-2.5, vmax=2.5)
        ax.set_title(f"θ = {math.degrees(theta):.0f}°, {what}", fontsize=8)
        ax.axis("off")
fig.tight_layout()

# %%
# Period π: the grating at θ + π is the same image (to float32 rounding: θ is reduced mod π
# before the cosine).
shifted = render(angles + math.pi, spec, noise=False)
print("max |render(θ) − render(θ + π)|:", float((clean - shifted).abs().max()))

# %%
# The reference research's stimulus (101 × 101 pixels, noise on 80% of the pixels, clamped to
# [−1, 1]) is a preset, as is a small spec for quick tests.
reference = GratingSpec.reference()
img = render(torch.tensor([math.pi / 3]), reference, generator=generator)
fig, ax = plt.subplots(figsize=(3, 3))
ax.imshow(img[0, 0], cmap="gray")
ax.set_title("GratingSpec.reference(), θ = 60°", fontsize=9)
ax.axis("off")
print(reference)

# %%
# Three channels, for networks that expect RGB images: here a grating that is red and blue but
# not green (one weight per channel), with noise drawn independently in each channel.
rgb = GratingSpec(size=32, frequency=4.0, channels=3, colour=(1.0, 0.0, 0.5), noise_std=0.2)
img = render(torch.tensor([math.pi / 6]), rgb, generator=generator)
print(img.shape)
fig, ax = plt.subplots(figsize=(3, 3))
ax.imshow(((img[0].permute(1, 2, 0) + 1.5) / 3).clamp(0, 1))
ax.set_title("channels=3, colour=(1, 0, 0.5)", fontsize=9)
ax.axis("off")
