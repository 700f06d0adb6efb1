"""Section ``render``: :func:`anglesim.stimuli.render` against a per-image NumPy renderer and
against the machine's limit for writing the same bytes.

Images/s for the studies' standard stimulus (32×32 and 64×64, batches of 256, with and
without its Gaussian pixel noise, in place or not). Goals: ≥ 50× the NumPy renderer; within
10× of the write.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..stimuli import render
from ._harness import Context, Goal, race
from ._workloads import STANDARD_SPEC


def numpy_render(angles: np.ndarray, spec: Any, rng: np.random.Generator | None,
                 noise: bool = True) -> np.ndarray:
    """A straightforward renderer: one image at a time with NumPy, [N, 1, P, P] float32.

    The same gratings as :func:`anglesim.stimuli.render` for one-channel specs with a fixed
    phase, additive Gaussian noise on every pixel, no shot noise, no clamp and the aperture
    applied before the noise (the studies' standard stimulus): x = contrast · cos(k (Y cos θ +
    X sin θ) + φ) · mask + σ · N(0, 1). The baseline of the rendering benchmark.
    """
    if spec.phase is None or spec.noise_prob != 1.0 or spec.shot_prob > 0 or \
            spec.clamp is not None or spec.mask_after_noise or spec.channels != 1 or \
            spec.colour is not None:
        raise ValueError("numpy_render covers one-channel fixed-phase specs with additive "
                         f"Gaussian noise and the aperture before the noise, got {spec!r}")
    x = np.linspace(-spec.extent, spec.extent, spec.size)
    xx, yy = np.meshgrid(x, x, indexing="xy")
    if spec.aperture is None:
        mask = np.ones_like(xx)
    elif spec.aperture_edge == 0:
        mask = (xx**2 + yy**2 < (spec.aperture * spec.extent) ** 2).astype(np.float64)
    else:
        rho = np.sqrt(xx**2 + yy**2) / spec.extent
        t = np.clip((rho - (spec.aperture - spec.aperture_edge)) / spec.aperture_edge, 0, 1)
        mask = 0.5 * (1 + np.cos(np.pi * t))
    out = np.empty((len(angles), 1, spec.size, spec.size), dtype=np.float32)
    for i, theta in enumerate(angles):
        t = theta % np.pi
        img = spec.contrast * np.cos(spec.wavenumber * (yy * np.cos(t) + xx * np.sin(t))
                                     + spec.phase) * mask
        if noise and spec.noise_std > 0:
            img = img + spec.noise_std * rng.standard_normal((spec.size, spec.size))
        out[i, 0] = img
    return out


def bench_render(ctx: Context) -> None:
    """Rendering against a per-image NumPy renderer and against the write limit."""
    sz = ctx.sizes
    details: dict[str, Any] = {}
    for size in sz.render_sizes:
        spec = STANDARD_SPEC.replace(size=size)
        n = sz.render_batch
        angles = torch.linspace(0, math.pi, n + 1)[:-1]
        angles_np = angles.double().numpy()
        gen = torch.Generator().manual_seed(0)
        rng = np.random.default_rng(0)
        clean_np = numpy_render(angles_np, spec, None, noise=False)
        clean_torch = render(angles, spec, noise=False).numpy()
        mismatch = float(np.abs(clean_np - clean_torch).max())
        if mismatch > 1e-4:
            raise RuntimeError(f"the NumPy baseline draws other gratings (max difference "
                               f"{mismatch:g}); the comparison would be meaningless")
        buf = torch.empty(n, 1, size, size)
        t = race({
            "render": lambda spec=spec, angles=angles, gen=gen: render(angles, spec, gen),
            "render_clean": lambda spec=spec, angles=angles: render(angles, spec, noise=False),
            "render_inplace": lambda spec=spec, angles=angles, gen=gen: render(
                angles, spec, gen, inplace=True),
            "render_clean_inplace": lambda spec=spec, angles=angles: render(
                angles, spec, noise=False, inplace=True),
            "numpy": lambda spec=spec, a=angles_np, rng=rng: numpy_render(a, spec, rng),
            "numpy_clean": lambda spec=spec, a=angles_np: numpy_render(a, spec, None, False),
            "noise_draw": lambda buf=buf, gen=gen: torch.randn(buf.shape, generator=gen),
            "write": lambda buf=buf: buf.fill_(0.5),
        }, sz.rounds, sz.min_seconds)
        label = f"{size}×{size}"
        details[label] = {"seconds_per_batch": t, "batch": n, "clean_max_difference": mismatch,
                          "bytes": buf.numel() * 4}
        # in place is what training data and the sampled estimators use (same images)
        for kind, ours, base in (("noisy", "render", "numpy"),
                                 ("noisy, in place", "render_inplace", "numpy"),
                                 ("clean", "render_clean", "numpy_clean"),
                                 ("clean, in place", "render_clean_inplace", "numpy_clean")):
            ctx.add("render", f"{label} {kind}: anglesim.render", n / t[ours], "img/s")
            ctx.add("render", f"{label} {kind}: per-image NumPy baseline", n / t[base], "img/s")
            ctx.add("render", f"{label} {kind}: speed-up over NumPy", t[base] / t[ours], "×",
                    Goal(">=", 50))
            ctx.add("render", f"{label} {kind}: time ÷ write time of the same bytes",
                    t[ours] / t["write"], "×", Goal("<=", 10))
        ctx.add("render", f"{label}: write limit (fill of the same bytes)", n / t["write"],
                "img/s", note=f"{buf.numel() * 4 / t['write'] / 1e9:.1f} GB/s")
        ctx.add("render", f"{label}: share of the noisy render spent drawing the noise",
                t["noise_draw"] / t["render"], "", note="torch.randn with a CPU generator")
    ctx.details["render"] = details
