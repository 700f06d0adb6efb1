"""Label noise that sets which angles' labels carry information (``Task.informative_prior``).

Each training image's angle label θ is kept with probability k(θ) and otherwise replaced by an
angle drawn uniformly on [0, π), independent of the image. With p the density of the images'
angles and q the *informative prior*,

    k(θ) = m · q(θ) / p(θ),   m = min over θ with q(θ) > 0 of p(θ) / q(θ),

so k ≤ 1 everywhere, k = 1 where p/q is smallest, and the angles whose labels are kept have
density p(θ) k(θ) = m q(θ): they follow q, a fraction m of all samples. A replaced label is
independent of θ, so it carries no information about it; with q uniform every orientation gets
the same number of informative labels per unit angle however common its images are — the
balance of label noise against frequency in Benjamin et al. 2022 (Nat Commun 13:7972, Fig. 6d,
where the labels were dropped at an orientation-dependent rate).

For a loss linear in the target's embedding (the cosine loss, 1 − û·(cos 2y, sin 2y)), a label
drawn uniformly has zero expected gradient, so the expected gradient at θ is k(θ) p(θ) = m q(θ)
times the clean one: the images still arrive with density p, but the label signal arrives as
if the images' angles followed q.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..distributions import AnglePrior, Uniform

__all__ = ["KEEP_GRID", "keep_probability", "kept_fraction", "relabel"]

KEEP_GRID = 3600
"""Points of the midpoint grid on [0, π) over which m = min p/q is taken."""


def kept_fraction(prior: AnglePrior, informative: AnglePrior) -> float:
    """m = min over θ with q(θ) > 0 of p(θ)/q(θ): the fraction of labels kept (p = ``prior``,
    q = ``informative``), taken on :data:`KEEP_GRID` midpoints of [0, π).

    Raises:
        ValueError: when m is 0 (p vanishes somewhere q does not, so no angle could keep
            every label and q cannot be reached) or q is 0 on the whole grid.
    """
    theta = (np.arange(KEEP_GRID) + 0.5) * math.pi / KEEP_GRID
    p = np.asarray(prior.pdf(theta), dtype=np.float64)
    q = np.asarray(informative.pdf(theta), dtype=np.float64)
    inside = q > 0
    if not inside.any():
        raise ValueError(f"informative_prior must have a positive density somewhere, got "
                         f"{informative.to_config()}")
    m = float(np.min(p[inside] / q[inside]))
    if not m > 0:
        raise ValueError(f"informative_prior must be 0 wherever the images' prior is 0 (the "
                         f"images' prior {prior.to_config()} vanishes where informative_prior "
                         f"{informative.to_config()} does not), got a kept fraction of {m!r}")
    return m


def keep_probability(theta: torch.Tensor | np.ndarray, prior: AnglePrior,
                     informative: AnglePrior, m: float | None = None) -> np.ndarray:
    """k(θ) = m q(θ)/p(θ), clipped to [0, 1] (0 where p(θ) = 0), as float64 numpy.

    ``m`` defaults to :func:`kept_fraction` (pass it to skip recomputing it)."""
    if m is None:
        m = kept_fraction(prior, informative)
    if isinstance(theta, torch.Tensor):
        theta = theta.detach().to("cpu", torch.float64).numpy()
    theta = np.asarray(theta, dtype=np.float64)
    p = np.asarray(prior.pdf(theta), dtype=np.float64)
    q = np.asarray(informative.pdf(theta), dtype=np.float64)
    k = np.divide(m * q, p, out=np.zeros_like(p), where=p > 0)
    return np.clip(k, 0.0, 1.0)


def relabel(theta: torch.Tensor, prior: AnglePrior, informative: AnglePrior, m: float,
            generator: torch.Generator) -> torch.Tensor:
    """The labels of images at angles ``theta``: θ kept with probability k(θ)
    (:func:`keep_probability`, with the kept fraction ``m``), else an angle drawn uniformly on
    [0, π) (``Uniform().sample``), in ``theta``'s dtype and device.

    Draws 2·len(theta) uniforms from ``generator`` whatever is kept (the keep draws, then the
    replacement angles), so the stream advances the same way every step.
    """
    n = theta.shape[0]
    keep = torch.as_tensor(keep_probability(theta, prior, informative, m),
                           dtype=torch.float64, device=theta.device)
    u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    fresh = Uniform().sample(n, generator, device=theta.device).to(theta.dtype)
    return torch.where(u.to(theta.device) < keep, theta, fresh)
