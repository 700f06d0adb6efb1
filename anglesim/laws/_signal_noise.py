"""Signal or noise: split a layer's change of linear Fisher information after fine-tuning.

A layer's linear (Gaussian, mean-term) Fisher information about θ is

    J(f′, Σ) = f′ᵀ (Σ + ε_abs I)⁻¹ f′,   ε_abs = ε · tr(Σ) / N,

with f′ = ∂E[r]/∂θ the derivative of the mean response and Σ its covariance (the relative
ridge ε as in :func:`anglesim.fisher.propagated_fisher`). Fine-tuning changes both. Holding
one at its pretrained value (Cheng et al. 2025, Nat Hum Behav 9:1023, who found perceptual
learning in a CNN acts mainly through Σ) splits the change, in log₂ units,

    Δ_total  = log₂ J(f′_ft, Σ_ft)  − log₂ J(f′_pre, Σ_pre)
    Δ_signal = log₂ J(f′_ft, Σ_pre) − log₂ J(f′_pre, Σ_pre)     (tuning changed, noise kept)
    Δ_noise  = log₂ J(f′_pre, Σ_ft) − log₂ J(f′_pre, Σ_pre)     (noise changed, tuning kept)
    Δ_interaction = Δ_total − Δ_signal − Δ_noise.

The moments are the propagated ones of pixel noise n ~ N(0, diag V) through the network's
Jacobian at the clean image: f′ = A ẋ and Σ = A diag(V) Aᵀ, A = ∂r/∂x (torch.func), so they
are exact for the linearised network; pixels with V = 0 carry no information (their ẋ is
dropped), as in the propagated estimator. The two networks must have the same units (a
fine-tuned copy of the pretrained one). The ridge matters where a layer has more units than
pixels: Σ is then singular and f′_ft need not lie in the span of Σ_pre, so J(f′_ft, Σ_pre) is
ridge-limited; ε is a parameter and is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch.func import jacfwd, jacrev, jvp

from .. import validation as check
from ..stimuli import GratingSpec, render_clean

__all__ = ["TERMS", "layer_moments", "linear_fisher", "signal_noise_split", "split_terms"]

TERMS = ("pretrained", "finetuned", "signal_only", "noise_only")
"""The four J values of a split: J(f′_pre, Σ_pre), J(f′_ft, Σ_ft), J(f′_ft, Σ_pre),
J(f′_pre, Σ_ft)."""


def linear_fisher(fprime: torch.Tensor, cov: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """J = f′ᵀ (Σ + ε tr(Σ)/N · I)⁻¹ f′ for a batch: f′ [..., N], Σ [..., N, N]; float64.

    Solved by Cholesky; where it fails (Σ not positive definite after the ridge) by an
    eigendecomposition with eigenvalues clipped at 0 before the ridge is added.
    """
    eps = check.real("eps", eps, minimum=0, min_open=True)
    f = torch.as_tensor(fprime, dtype=torch.float64)
    s = torch.as_tensor(cov, dtype=torch.float64)
    if s.shape[-2:] != (f.shape[-1], f.shape[-1]) or s.shape[:-2] != f.shape[:-1]:
        raise check.fail("cov", f"shape {(*f.shape[:-1], f.shape[-1], f.shape[-1])} to match "
                         "fprime", tuple(s.shape))
    return _factor(s, eps)(f[..., None, :])[..., 0]


def _factor(cov: torch.Tensor, eps: float):
    """A function f [..., K, N] ↦ fᵀ(Σ + ridge)⁻¹f [..., K] with Σ factored once."""
    n = cov.shape[-1]
    ridge = eps * torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) / n
    eye = torch.eye(n, dtype=torch.float64, device=cov.device)
    chol, info = torch.linalg.cholesky_ex(cov + ridge[..., None, None] * eye)
    if bool((info == 0).all()):
        def quad(f: torch.Tensor) -> torch.Tensor:
            z = torch.cholesky_solve(f.mT, chol)  # [..., N, K]
            return (f.mT * z).sum(-2)
        return quad
    vals, vecs = torch.linalg.eigh((cov + cov.mT) / 2)
    vals = vals.clamp_min(0) + ridge[..., None]

    def quad_eig(f: torch.Tensor) -> torch.Tensor:
        proj = vecs.mT @ f.mT  # [..., N, K]
        return (proj * proj / vals[..., None]).sum(-2)
    return quad_eig


def layer_moments(
    model: torch.nn.Module,
    spec: GratingSpec,
    theta: float,
    layer: str,
    sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f′ [N], Σ [N, N]) of block ``layer`` at angle θ, float64: f′ = A ẋ, Σ = A diag(V) Aᵀ.

    x(θ) = ``render_clean(θ, spec)``, ẋ by forward-mode differentiation of the renderer,
    A = ∂r/∂x by :func:`torch.func.jacrev` (layers with at most half as many units as
    pixels) or :func:`torch.func.jacfwd` of ``model.run_blocks(x, stop=layer)`` (flattened);
    V = the spec's ``noise_variance_map`` with its noise_std set to ``sigma`` (default the
    spec's own). The model is run in eval mode, on its own device (the moments stay there).
    """
    if layer not in list(model.block_names):
        raise check.fail("layer", f"one of {list(model.block_names)}", layer)
    theta = check.real("theta", theta)
    if sigma is not None:
        spec = spec.replace(noise_std=check.real("sigma", sigma, minimum=0, min_open=True))
    first = next(model.parameters())
    t0 = torch.tensor([theta], dtype=first.dtype, device=first.device)  # on the model's device
    x, xdot = jvp(lambda t: render_clean(t, spec), (t0,), (torch.ones_like(t0),))
    var = spec.noise_variance_map(device=first.device, dtype=torch.float64).flatten()
    was_training = model.training
    model.eval()
    def response(z: torch.Tensor) -> torch.Tensor:
        return model.run_blocks(z[None], stop=layer).flatten()

    try:
        with torch.no_grad():
            n_units = response(x[0]).numel()
        # reverse mode (one pass per unit) for small layers, forward (one per pixel) otherwise
        jac = (jacrev if 2 * n_units <= x[0].numel() else jacfwd)(response)(x[0])
    finally:
        model.train(was_training)
    a = jac.detach().reshape(jac.shape[0], -1).double()  # [N, P²]
    xd = torch.where(var > 0, xdot.detach().flatten().double(),
                     torch.zeros((), dtype=torch.float64, device=var.device))
    return a @ xd, (a * var) @ a.T


def split_terms(f_pre: torch.Tensor, s_pre: torch.Tensor, f_ft: torch.Tensor,
                s_ft: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The four J values of :data:`TERMS` (a last axis of 4) from the moments; each Σ is
    factored once."""
    eps = check.real("eps", eps, minimum=0, min_open=True)
    f = torch.stack([torch.as_tensor(f_pre, dtype=torch.float64),
                     torch.as_tensor(f_ft, dtype=torch.float64)], -2)  # [..., 2, N]
    on_pre = _factor(torch.as_tensor(s_pre, dtype=torch.float64), eps)(f)
    on_ft = _factor(torch.as_tensor(s_ft, dtype=torch.float64), eps)(f)
    return torch.stack([on_pre[..., 0], on_ft[..., 1], on_pre[..., 1], on_ft[..., 0]], -1)


def signal_noise_split(
    pretrained: torch.nn.Module,
    finetuned: torch.nn.Module | Mapping[str, torch.nn.Module],
    spec: GratingSpec,
    angles: np.ndarray | torch.Tensor | Sequence[float],
    layers: Sequence[str],
    sigma: float | None = None,
    eps: float = 1e-6,
    dim: str = "model",
) -> xr.Dataset:
    """The signal/noise split of each layer's FI change at each angle (see the module text).

    ``finetuned`` is one fine-tuned copy, or a mapping {name: copy} (then every variable has a
    leading dim ``dim`` over the names; the pretrained moments are computed once per layer
    and angle). Returns a Dataset over ([``dim``,] ``layer``, ``angle``) with
    ``fisher_terms`` (dim ``term``: :data:`TERMS`, rad⁻²) and the log₂ changes
    ``delta_total``, ``delta_signal``, ``delta_noise``, ``delta_interaction``. Moments are
    computed one angle at a time: memory is that of two N × N covariances.
    """
    theta = check.finite_array("angles", angles, ndim=1)
    layers = check.name_list("layers", layers, allow_empty=False)
    eps = check.real("eps", eps, minimum=0, min_open=True)
    single = isinstance(finetuned, torch.nn.Module)
    nets = {"": finetuned} if single else dict(finetuned)
    if not nets:
        raise check.fail("finetuned", "a module or a non-empty mapping of modules", finetuned)
    values = np.empty((len(nets), len(layers), theta.size, len(TERMS)))
    for i, layer in enumerate(layers):
        for k, th in enumerate(theta):
            f_pre, s_pre = layer_moments(pretrained, spec, float(th), layer, sigma)
            on_pre = _factor(s_pre, eps)  # factored once for every fine-tuned network
            for m, net in enumerate(nets.values()):
                f_ft, s_ft = layer_moments(net, spec, float(th), layer, sigma)
                f = torch.stack([f_pre, f_ft])
                a, b = on_pre(f), _factor(s_ft, eps)(f)
                values[m, i, k] = torch.stack([a[0], b[1], a[1], b[0]]).cpu().numpy()
    terms = xr.DataArray(values, dims=(dim, "layer", "angle", "term"),
                         coords={dim: list(nets), "layer": np.array(layers, dtype=object),
                                 "angle": theta, "term": list(TERMS)},
                         attrs={"units": "rad^-2", "eps": eps, "long_name":
                                "linear FI f'^T (Sigma + ridge)^-1 f' with f' and Sigma from "
                                "the pretrained or fine-tuned network"})
    out = split_dataset(terms)
    return out.isel({dim: 0}, drop=True) if single else out


def split_dataset(terms: xr.DataArray) -> xr.Dataset:
    """``fisher_terms`` (with a ``term`` dim of :data:`TERMS`) and its four log₂ changes."""
    log = np.log2(terms.where(terms > 0))
    pre = log.sel(term="pretrained", drop=True)
    total = log.sel(term="finetuned", drop=True) - pre
    signal = log.sel(term="signal_only", drop=True) - pre
    noise = log.sel(term="noise_only", drop=True) - pre
    out = xr.Dataset({"fisher_terms": terms, "delta_total": total, "delta_signal": signal,
                      "delta_noise": noise, "delta_interaction": total - signal - noise})
    for name, text in (("delta_total", "log2 J_ft / J_pre"),
                       ("delta_signal", "log2 J(f'_ft, Sigma_pre) / J_pre"),
                       ("delta_noise", "log2 J(f'_pre, Sigma_ft) / J_pre"),
                       ("delta_interaction", "total - signal - noise")):
        out[name].attrs = {"units": "1", "long_name": text}
    return out
