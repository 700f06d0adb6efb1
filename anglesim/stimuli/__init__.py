"""Oriented grating images: pure torch, batched, differentiable in the orientation.

A ``GratingSpec`` fixes everything about the stimulus except its orientation θ (and, when
``phase`` is None, its phase); ``render(angles, spec, generator)`` turns a batch of N angles into
N images [N, C, P, P] (C = ``spec.channels``, 1 by default). The clean grating is

    x_c(θ) = w_c · contrast · cos(k · (Y cos θ' + X sin θ') + φ),
    θ' = θ mod π,  k = π·frequency/extent,

on the pixel grid x = y = linspace(−extent, extent, P), X, Y = meshgrid(x, y, indexing="xy"),
so ``frequency`` counts cycles across the full width 2·extent. The channel weights w_c are all
1 (a grey grating replicated to C channels) unless ``spec.colour`` gives one weight per channel
(e.g. (1.0, 0.6, 0.2), an orange grating in RGB). ``frequency`` is at most P/2 cycles per image,
the Nyquist limit of P samples across the width along the image axes: beyond it the pixels
show an aliased lower frequency, not the one asked for (and k·extent stays finite).

Orientation has period π. A grating with phase φ ∉ {0, π} rotated by π is cos(−k u + φ), which is
a different image from cos(k u + φ); using θ' = θ mod π inside the formula makes θ and θ + π
render the identical image for every phase, by construction. ``torch.remainder`` has derivative
1, so d x / dθ is the derivative of the formula above; the price is a jump of the image at
θ ≡ 0 (mod π) when sin φ ≠ 0 (with the default phase 0 the image is smooth in θ everywhere).
With random phases, φ uniform on [0, 2π), the image distribution at θ and θ + π is the same
either way, since φ and −φ are equally likely.

``render`` can also override the contrast and the spatial frequency per image (``contrasts``,
``frequencies``), for training targets other than θ; the spec then fixes everything else.

Noise model (applied only when ``noise=True``), in this order:
clean grating → aperture (if not ``mask_after_noise``) → additive Gaussian noise N(0, σ²) on each
pixel independently with probability ``noise_prob`` → shot noise (each pixel independently set
to +contrast or −contrast, equal odds, with probability ``shot_prob``) → clamp → aperture
(if ``mask_after_noise``). With C channels every noise draw is independent per channel and
pixel (the images [N, C, P, P] are drawn in one call, so C = 1 draws exactly what it always
has); the colour weights scale the clean grating only, not the noise. Random numbers are drawn
from the given generator, in the order: phases (if random), Gaussian values, Gaussian selection
(if noise_prob < 1), shot noise; draws a spec does not need (σ = 0, shot_prob = 0, …) consume
nothing.
"""


from ._grating import GratingSpec
from ._rendering import render, render_clean

__all__ = ["GratingSpec", "render", "render_clean"]
