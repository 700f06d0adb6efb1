"""``render`` and ``render_clean``: a batch of angles turned into grating images [N, C, P, P]."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import angles as ang
from .. import validation as check
from ._grating import GratingSpec, aperture_weights, pixel_grid


def _as_angles(angles: Any, dtype: torch.dtype | None) -> torch.Tensor:
    """A 1-D floating tensor of angles (scalars become [1]); keeps the autograd graph."""
    if isinstance(angles, torch.Tensor):
        t = angles
        if dtype is None:
            dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
        t = t.to(dtype)
        _refuse_non_finite(t)
    else:
        try:
            arr = np.asarray(angles, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"angles must be numbers, got {angles!r}") from None
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"angles must be finite, got {angles!r}")
        t = torch.as_tensor(arr, dtype=dtype or torch.float32)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1:
        raise ValueError(f"angles must be 1-D, got shape {tuple(t.shape)}")
    return t


def _refuse_non_finite(t: torch.Tensor) -> None:
    """ValueError naming ``angles`` if a tensor of angles holds NaN or ±inf (a NaN angle would
    render a NaN image). Inside ``torch.func.vmap`` the values cannot be inspected (data-
    dependent control flow is refused there), so the check is skipped under vmap only."""
    try:
        bad = ~torch.isfinite(t.detach())
        if not bool(bad.any()):
            return
    except RuntimeError:  # under vmap: "data-dependent control flow" is not supported
        return
    raise ValueError(f"angles must be finite, got {t.detach()[bad].flatten()[0].item()!r} "
                     f"({int(bad.sum())} of {t.numel()} values non-finite)")


def _check_dtype(dtype: Any) -> None:
    """``dtype`` must be None or a floating torch dtype (ValueError naming it otherwise)."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise check.fail("dtype", "None or a floating torch dtype such as torch.float64", dtype)


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Random numbers are drawn on the generator's device (the output device for None)."""
    return generator.device if generator is not None else device


def _per_image(
    name: str,
    values: Any,
    n: int,
    device: torch.device,
    dtype: torch.dtype,
    positive: bool | None,
    maximum: float | None = None,
) -> torch.Tensor:
    """Per-image stimulus values as a [N, 1, 1, 1] tensor (a scalar is broadcast to N).

    Raises ValueError naming ``name`` for non-numbers, a wrong shape, non-finite values,
    values below 0 (``positive=False``) or at most 0 (``positive=True``), or above
    ``maximum``; ``positive=None`` admits any finite value (phases).
    """
    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numbers, got {values!r}") from None
    v = values.to(device=device, dtype=dtype)
    if v.ndim == 0:
        v = v.expand(n)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like angles, got {tuple(v.shape)}")
    bad = ~torch.isfinite(v)
    if positive is not None:
        bad |= (v <= 0) if positive else (v < 0)
    if maximum is not None:
        bad |= v > maximum
    if bool(bad.any()):
        bound = "" if positive is None else (" and > 0" if positive else " and >= 0")
        if maximum is not None:
            bound += f" and <= {maximum:g}"
        raise ValueError(f"{name} must be finite{bound}, got {v[bad][0].item()!r}")
    return v[:, None, None, None]


def render(
    angles: Any,
    spec: GratingSpec,
    generator: torch.Generator | None = None,
    *,
    phases: Any = None,
    noise: bool = True,
    dtype: torch.dtype | None = None,
    contrasts: Any = None,
    frequencies: Any = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Render N gratings at orientations ``angles``: tensor [N, C, P, P] on angles' device.

    A ``GratingSpec`` fixes everything about the stimulus except its orientation θ (and, when
    ``phase`` is None, its phase); ``render(angles, spec, generator)`` turns a batch of N angles
    into N images [N, C, P, P] (C = ``spec.channels``, 1 by default). The clean grating is

        x_c(θ) = w_c · contrast · cos(k · (Y cos θ' + X sin θ') + φ),
        θ' = θ mod π,  k = π·frequency/extent,

    on the pixel grid x = y = linspace(−extent, extent, P), X, Y = meshgrid(x, y,
    indexing="xy"), so ``frequency`` counts cycles across the full width 2·extent. The channel
    weights w_c are all 1 (a grey grating replicated to C channels) unless ``spec.colour`` gives
    one weight per channel (e.g. (1.0, 0.6, 0.2), an orange grating in RGB). ``frequency`` is at
    most P/2 cycles per image, the Nyquist limit of P samples across the width along the image
    axes: beyond it the pixels show an aliased lower frequency, not the one asked for (and
    k·extent stays finite).

    Orientation has period π. A grating with phase φ ∉ {0, π} rotated by π is cos(−k u + φ),
    which is a different image from cos(k u + φ); using θ' = θ mod π inside the formula makes θ
    and θ + π render the identical image for every phase, by construction. ``torch.remainder``
    has derivative 1, so d x / dθ is the derivative of the formula above; the price is a jump of
    the image at θ ≡ 0 (mod π) when sin φ ≠ 0 (with the default phase 0 the image is smooth in θ
    everywhere). With random phases, φ uniform on [0, 2π), the image distribution at θ and θ + π
    is the same either way, since φ and −φ are equally likely.

    ``render`` can also override the contrast and the spatial frequency per image
    (``contrasts``, ``frequencies``), for training targets other than θ; the spec then fixes
    everything else.

    Noise model (applied only when ``noise=True``), in this order: clean grating → aperture (if
    not ``mask_after_noise``) → additive Gaussian noise N(0, σ²) on each pixel independently
    with probability ``noise_prob`` → shot noise (each pixel independently set to +contrast or
    −contrast, equal odds, with probability ``shot_prob``) → clamp → aperture (if
    ``mask_after_noise``). With C channels every noise draw is independent per channel and pixel
    (the images [N, C, P, P] are drawn in one call, so C = 1 draws exactly what it always has);
    the colour weights scale the clean grating only, not the noise. Random numbers are drawn
    from the given generator, in the order: phases (if random), Gaussian values, Gaussian
    selection (if noise_prob < 1), shot noise; draws a spec does not need (σ = 0, shot_prob = 0,
    …) consume nothing.

    Args:
        angles: 1-D tensor of radians (a scalar, list or numpy array is converted), finite
            (NaN or ±inf raise ValueError in every form, except inside vmap); may require
            grad: the clean part is differentiable (autograd, torch.func.jvp / vmap).
        spec: the stimulus.
        generator: source of every random number (phases if random, noise); None uses torch's
            default generator of the output device. Draws happen on the generator's device
            and are moved to the output device.
        phases: per-image phases [N] (or a scalar), overriding ``spec.phase``; with both None
            the phases are drawn uniformly on [0, 2π).
        noise: False returns the clean image (still multiplied by the aperture).
        dtype: output dtype; None gives float64 for float64 tensor angles, else float32.
        contrasts: per-image contrasts [N] (or a scalar), >= 0, overriding ``spec.contrast``
            (shot noise then uses each image's own ±contrast); None keeps the spec's.
        frequencies: per-image spatial frequencies [N] (or a scalar), > 0 cycles per image,
            overriding ``spec.frequency`` (k_i = π·frequency_i/extent), at most P/2 (Nyquist,
            as ``spec.frequency``); None keeps the spec's.
            Neither consumes random numbers, so with both None the output is unchanged.
        inplace: compute in place, in about half the peak memory (a reference training set of
            16,384 101×101 images: 2.2 instead of 4.3 GB); the same values bit for bit from
            the same generator, but not differentiable: for angles nothing differentiates
            (data drawn for training or sampled estimators). Refused for angles that require
            grad; do not use it inside torch.func transforms.
    """
    check.instance("spec", spec, GratingSpec, "a GratingSpec")
    check.generator("generator", generator)
    _check_dtype(dtype)
    check.boolean("noise", noise)
    check.boolean("inplace", inplace)
    theta = _as_angles(angles, dtype)
    dev, dt, n = theta.device, theta.dtype, theta.shape[0]
    draw_dev = _draw_device(generator, dev)
    xx, yy = pixel_grid(spec.size, spec.extent, str(dev), dt)

    if phases is not None:
        phi = _per_image("phases", phases, n, dev, dt, positive=None)
    elif spec.phase is not None:
        phi = spec.phase
    else:
        u = torch.rand(n, dtype=torch.float64, generator=generator, device=draw_dev)
        phi = (2.0 * math.pi * u).to(device=dev, dtype=dt)[:, None, None, None]

    contrast: float | torch.Tensor = spec.contrast
    if contrasts is not None:
        contrast = _per_image("contrasts", contrasts, n, dev, dt, positive=False)
    wavenumber: float | torch.Tensor = spec.wavenumber
    if frequencies is not None:
        freq = _per_image("frequencies", frequencies, n, dev, torch.float64, positive=True,
                          maximum=spec.size / 2)  # the Nyquist limit, as spec.frequency
        wavenumber = (math.pi * freq / spec.extent).to(dt)  # as spec.wavenumber, in float64

    if inplace and any(isinstance(v, torch.Tensor) and v.requires_grad
                       for v in (theta, phi, contrast, wavenumber)):
        raise ValueError("inplace=True renders are not differentiable, but the angles, phases, "
                         "contrasts or frequencies require grad; use inplace=False")
    t = ang.wrap(theta)[:, None, None, None]
    img = yy * torch.cos(t)  # [N, 1, P, P]
    # In place, every later step writes into this one buffer; out=None is the ordinary op.
    out = img if inplace else None
    img = torch.add(img, xx * torch.sin(t), out=out)  # k (Y cos θ + X sin θ) + φ, then cos
    img = torch.cos(torch.add(torch.mul(img, wavenumber, out=out), phi, out=out), out=out)
    img = torch.mul(img, contrast, out=out)
    if spec.colour is not None or spec.channels > 1:
        # [N, 1, P, P] → [N, C, P, P]: a new buffer (an expanded view cannot be written to)
        if spec.colour is not None:
            weights = torch.tensor(spec.colour, dtype=torch.float64).to(device=dev, dtype=dt)
            img = img * weights[None, :, None, None]
        else:
            img = img.expand(-1, spec.channels, -1, -1).clone()
        out = img if inplace else None

    mask = None
    if spec.aperture is not None:
        mask = aperture_weights(spec.size, spec.extent, spec.aperture, spec.aperture_edge,
                                str(dev), dt)
    if mask is not None and not spec.mask_after_noise:
        img = torch.mul(img, mask, out=out)
    transform = getattr(spec, "clean_transform", None)  # a subclass's, e.g. blur
    if transform is not None:  # (anglesim.corruptions); applied before the noise
        img = transform(img)
        out = img if inplace else None

    if noise:
        shape = (n, spec.channels, spec.size, spec.size)
        if spec.noise_std > 0 and spec.noise_prob > 0:
            # g and keep are fresh, never differentiated: in place in either mode
            g = torch.randn(shape, dtype=dt, generator=generator, device=draw_dev)
            if spec.noise_prob < 1:
                keep = torch.rand(shape, dtype=dt, generator=generator, device=draw_dev)
                g.mul_(keep.lt_(spec.noise_prob))  # keep < p as 1.0 / 0.0
                del keep
            img = torch.add(img, g.mul_(spec.noise_std).to(dev), out=out)
        if spec.shot_prob > 0:
            s = torch.rand(shape, dtype=torch.float64, generator=generator, device=draw_dev)
            s = s.to(dev)
            img = torch.where(s < 0.5 * spec.shot_prob, contrast,
                              torch.where(s < spec.shot_prob, -contrast, img))
        if spec.clamp is not None:
            img = torch.clamp(img, spec.clamp[0], spec.clamp[1], out=out)

    if mask is not None and spec.mask_after_noise:
        img = torch.mul(img, mask, out=out)
    return img


def render_clean(
    angles: Any,
    spec: GratingSpec,
    phases: Any = None,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The noiseless image x(θ) [N, C, P, P] at a fixed phase, for x and ∂x/∂θ (Fisher).

    The phase is ``phases`` if given, else ``spec.phase``, else 0 (never random, so this is a
    deterministic function of θ). Same as ``render(angles, spec, phases=…, noise=False)``.
    """
    check.instance("spec", spec, GratingSpec, "a GratingSpec")
    _check_dtype(dtype)
    if phases is None:
        phases = 0.0 if spec.phase is None else spec.phase
    return render(angles, spec, None, phases=phases, noise=False, dtype=dtype)
