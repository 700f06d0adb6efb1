"""A decoder known to obey the bias law: the posterior mean on a Gaussian encoding.

:class:`GaussianEncoding` is the population code r | θ ~ N(f(θ), Σ) with a smooth mean f and a
fixed covariance Σ; its Fisher information is J(θ) = f′(θ)ᵀ Σ⁻¹ f′(θ) (Kay 1993, §3.9) and,
with a flat prior, its posterior-mean decoder has bias b = d/dθ[1/J] to first order in 1/J
(c = 1; the derivation is in :mod:`anglesim.laws._bias`'s text). :func:`layer_encoding` builds
one from a network's layer: f(θ) the layer's response to the noiseless image x(θ) (the mean
the propagated estimator linearises about) and Σ the propagated pixel-noise covariance
A diag(V) Aᵀ (:func:`~anglesim.laws.layer_moments`) averaged over a grid of angles, so the
control decodes the network's own tuning curves under noise of the network's own size.

:func:`posterior_mean_decode` samples that encoding and decodes every sample by its posterior
mean on the half-circle, computed on an evenly spaced grid of ``n_grid`` angles (the
trapezoid rule, spectrally accurate for a smooth periodic posterior).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.func import jvp

from .. import angles as ang
from .. import validation as check
from ..distributions import AnglePrior
from ..stimuli import GratingSpec, render_clean
from ._signal_noise import layer_moments

__all__ = ["GaussianEncoding", "layer_encoding", "posterior_mean_decode"]


class GaussianEncoding:
    """r | θ ~ N(f(θ), Σ + ε·diag Σ): a Gaussian population code with a fixed covariance.

    Args:
        mean: f, a function from angles θ [A] (a float tensor, radians) to responses [A, N],
            differentiable in θ (:func:`torch.func.jvp` gives f′).
        covariance: Σ [N, N], symmetric positive semi-definite. Units with zero variance are
            left out of the encoding (their response would be noiseless; for a network's
            layer they are units that never respond).
        ridge: ε, each kept unit's variance times ε added to the diagonal (as the propagated
            estimator's ridge), so a singular Σ still has an inverse.
    """

    def __init__(self, mean: Callable[[torch.Tensor], torch.Tensor],
                 covariance: np.ndarray | torch.Tensor, ridge: float = 1e-6) -> None:
        self._mean = check.function("mean", mean)
        cov = check.finite_array("covariance", covariance, ndim=2)
        if cov.shape[0] != cov.shape[1] or not np.allclose(cov, cov.T, rtol=1e-6,
                                                           atol=1e-12 * np.abs(cov).max()):
            raise check.fail("covariance", "a symmetric [N, N] matrix", cov.shape)
        self.ridge = check.real("ridge", ridge, minimum=0, min_open=True)
        self.units = np.flatnonzero(np.diag(cov) > 0)
        if self.units.size == 0:
            raise check.fail("covariance", "a matrix with some positive variance", "all 0")
        kept = cov[np.ix_(self.units, self.units)]
        kept = kept + self.ridge * np.diag(np.diag(kept))
        try:
            chol = np.linalg.cholesky(kept)
        except np.linalg.LinAlgError:
            raise check.fail("covariance", "positive semi-definite", "a matrix with negative "
                             "eigenvalues") from None
        self.covariance = kept
        self._whiten = np.linalg.inv(chol)  # W = L⁻¹: W Σ Wᵀ = I

    def _angles(self, angles) -> torch.Tensor:
        return torch.as_tensor(check.finite_array("angles", angles, ndim=1),
                               dtype=torch.float32)

    def mean(self, angles) -> np.ndarray:
        """W f(θ) [A, N] (float64), the whitened mean responses (W Σ Wᵀ = I)."""
        with torch.no_grad():
            f = self._mean(self._angles(angles))
        return f.detach().double().cpu().numpy()[:, self.units] @ self._whiten.T

    def fisher(self, angles) -> np.ndarray:
        """J(θ) = f′ᵀ Σ⁻¹ f′ = ‖W f′‖² (rad⁻²) at each angle, f′ by forward differentiation."""
        theta = self._angles(angles)
        _, fprime = jvp(self._mean, (theta,), (torch.ones_like(theta),))
        u = fprime.detach().double().cpu().numpy()[:, self.units] @ self._whiten.T
        return (u * u).sum(1)


def layer_encoding(model: torch.nn.Module, spec: GratingSpec, layer: str,
                   angles: np.ndarray | torch.Tensor, sigma: float | None = None,
                   ridge: float = 1e-6) -> GaussianEncoding:
    """The Gaussian encoding of block ``layer``: mean f(θ) = r(x(θ)), the block's response to
    the noiseless image (``render_clean``), and Σ = mean over ``angles`` of the propagated
    covariance A diag(V) Aᵀ (:func:`~anglesim.laws.layer_moments`, pixel noise ``sigma``,
    default the spec's). The model is run in eval mode (its mode is restored after each call);
    the encoding keeps a reference to it, so it follows later changes to its weights.
    """
    theta = check.finite_array("angles", angles, ndim=1)
    if theta.size == 0:
        raise check.fail("angles", "at least one angle", theta)
    cov = sum(layer_moments(model, spec, float(t), layer, sigma)[1].cpu() for t in theta)
    first = next(model.parameters())

    def mean(t: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            x = render_clean(t.to(device=first.device, dtype=first.dtype), spec)
            return model.run_blocks(x, stop=layer).flatten(1)
        finally:
            model.train(was_training)

    return GaussianEncoding(mean, (cov / theta.size).numpy(), ridge)


def posterior_mean_decode(encoding: GaussianEncoding, angles: np.ndarray | torch.Tensor,
                          n_trials: int, generator: np.random.Generator,
                          n_grid: int = 2048, prior: AnglePrior | None = None,
                          chunk_size: int = 1 << 21) -> np.ndarray:
    """Sample the encoding at each angle and decode each sample by its posterior mean.

    For each θ, ``n_trials`` responses r = f(θ) + L z (Σ = L Lᵀ, z standard normal from
    ``generator``) are decoded on the grid φ_j = jπ/``n_grid``: log posterior
    ℓ_j = −½‖W(r − f(φ_j))‖² + log π(φ_j) (π = ``prior``, flat when None), weights
    w_j ∝ e^{ℓ_j}, and θ̂ = φ* + Σ_j w_j Δ(φ_j, φ*) / Σ_j w_j with φ* the grid's maximum and
    Δ the difference wrapped to [−π/2, π/2): the posterior mean of θ under squared error on
    the half-circle, for a posterior concentrated well within ±90° of its mode. The grid must
    resolve the posterior (spacing below its width 1/√J). Returns θ̂ [angle, trial] (radians,
    in [0, π)).
    """
    check.instance("encoding", encoding, GaussianEncoding, "a GaussianEncoding")
    theta = check.finite_array("angles", angles, ndim=1)
    n_trials = check.integer("n_trials", n_trials, minimum=1)
    generator = check.generator("generator", generator, kind="numpy", allow_none=False)
    n_grid = check.integer("n_grid", n_grid, minimum=8)
    chunk_size = check.integer("chunk_size", chunk_size, minimum=1)
    if prior is not None:
        check.instance("prior", prior, AnglePrior, "an AnglePrior or None (flat)")
    grid = np.arange(n_grid) * (math.pi / n_grid)
    means = encoding.mean(grid)  # [G, N] whitened
    offset = -0.5 * (means * means).sum(1)
    if prior is not None:
        with np.errstate(divide="ignore"):
            offset = offset + np.log(np.asarray(prior.pdf(grid), dtype=np.float64))
    centres = encoding.mean(theta)  # [A, N]
    per_chunk = max(1, chunk_size // n_grid)
    out = np.empty((theta.size, n_trials))
    for a in range(theta.size):
        for start in range(0, n_trials, per_chunk):
            stop = min(n_trials, start + per_chunk)
            r = centres[a] + generator.standard_normal((stop - start, means.shape[1]))
            log_post = r @ means.T + offset  # −½‖r − m_j‖² + log π_j, up to a constant in j
            mode = log_post.argmax(1)
            rows = np.arange(stop - start)
            weights = np.exp(log_post - log_post[rows, mode][:, None])
            delta = ang.difference(grid[None, :], grid[mode][:, None])
            out[a, start:stop] = grid[mode] + (weights * delta).sum(1) / weights.sum(1)
    return ang.wrap(out)
