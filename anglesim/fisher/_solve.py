"""One chunk of `propagated_fisher`: every requested layer solved by its route, in network order.

For a chunk of C items (angle, phase) the noise source x (the image, or a layer's activations)
and its θ-derivative ẋ are computed once; each layer r = f(x) is then solved by the route the
plan gave it (:mod:`._cost`):

* ``"exact"`` — the dense Jacobian and a Cholesky solve (:mod:`._exact`) in the model's dtype,
  as before; when the products run in the model's float32, ``fisher_error`` is a first-order
  estimate of what that rounding costs (below), not 0;
* ``"sparse"`` — the coloured sparse Jacobian and a sparse factorisation (:mod:`._sparse`);
* ``"krylov"`` — the Golub–Kahan bidiagonalisation (:mod:`._krylov`), warm-started from the
  previous layer's pixel-space solution where the layer has at least as many units as that
  one (a layer with fewer is lossy relative to it, and the start measurably costs it a few
  percent more iterations), and only with float64 products (the start's offsets computed by
  float32 products would carry rounding the estimate below does not cover).

**Products in float64.** Where float32 rounding could exceed the tolerance (``precision``,
decided by the plan), the sparse and Krylov products, and the exact solver's Jacobian, are
computed by a float64 copy of the network that replays the gates (ReLU masks, pooling winners)
the model's own pass took at this chunk's images (:mod:`._gates`): the float64 products
linearise the same network the model computes. The image and ẋ are then rendered in float64.

**Rounding estimate of float32 products.** With z the unit-space solution, r = u − B̃ᵀz the
pixel-space residual and E = B̃₃₂ − B̃₆₄ the rounding of the Jacobian (and δu that of u),
J moves by 2zᵀEr + 2zᵀB̃δu to first order (the derivative of g̃ᵀ(B̃B̃ᵀ + εI)⁻¹g̃ in B̃ and u);
Er and δu come from one float64 product through the replayed gates, and their effect is
added to ``fisher_error`` (`ROUNDING_SAFETY` times it), labelled an estimate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.func import jvp, vjp, vmap

from ._base import INPUT, OUTPUT
from ._exact import JACOBIAN_BUDGET, jacobian, ridge_fisher
from ._gates import GateMismatch, record_gates
from ._krylov import N_PROBES, krylov_fisher
from ._network import Network
from ._sparse import SparseUnavailable, Window, sparse_fisher, sparse_jacobian
from ._stimulus import Stimulus

__all__ = ["ERROR_KINDS", "ROUNDING_SAFETY", "Solver", "layer_function"]

EXACT_DIAG_UNITS = 256
"""Up to this many units a Krylov solve gets D = diag(A Σ Aᵀ) itself, by reverse mode (one
vector–Jacobian product per unit), instead of the probes' estimate."""

ROUNDING_FLOOR = 64 * torch.finfo(torch.float64).eps
"""Relative rounding of a float64 solve per unit of the system's condition 1/ε, added to a
Krylov bound (the bracket can close to rounding when the Krylov space is exhausted)."""

ROUNDING_SAFETY = 4.0

FLOAT32_FLOOR = 16 * torch.finfo(torch.float32).eps
"""Relative error below which no estimate of float32 products' rounding goes (a few ulps of
each product reach J however well conditioned the layer)."""
"""Factor on the first-order rounding estimate of float32 products."""

ERROR_KINDS = ("exact", "bound", "estimate")
"""What ``fisher_error`` is for a layer: 0 for a value exact to float64 rounding (closed
forms, float64 exact and sparse solves), a certified bound (Krylov with float64 products), or
an estimate (float32 products, estimate mode)."""


def layer_function(net: Network, name: str, site: str,
                   image: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """z ↦ layer ``name``'s flattened activations with z at the noise site (the image itself
    for pixel noise; a layer's activations otherwise, the other paths seeing ``image``)."""
    def layer(z: torch.Tensor) -> torch.Tensor:
        return net.outputs(image if site != INPUT else z, [name], site,
                           z if site != INPUT else None)[0]

    return layer


def _flat(u: torch.Tensor) -> torch.Tensor:
    return u.reshape(u.shape[0], -1)


@dataclass
class Solver:
    """What every chunk shares: the network (and its float64 copy), the plan and options."""

    net: Network
    stim: Stimulus
    names: list[str]
    routes: dict[str, str]
    variance: torch.Tensor  # flat float64 noise variance at the site
    eps: float
    rtol: float
    maxiter: int
    site: str
    products64: bool  # sparse/Krylov/exact products in float64 (gates replayed)
    certify: bool = True
    warm_start: bool = True
    reorthogonalize: dict[str, int] = field(default_factory=dict)
    sensitivity: bool = False
    windows: dict[str, Window] = field(default_factory=dict)
    net64: Network | None = None
    used: dict[str, str] = field(default_factory=dict)  # the route each layer ended up with
    kinds: dict[str, str] = field(default_factory=dict)
    stalled: set[str] = field(default_factory=set)  # Krylov layers that hit maxiter

    def __post_init__(self) -> None:
        model_dtype = next(iter(self.net.model.parameters()), torch.empty(0)).dtype
        self.model_dtype = model_dtype
        if model_dtype != torch.float64 and self.routes:
            model64 = copy.deepcopy(self.net.model).to(torch.float64)
            self.net64 = self.net.with_model(model64)

    # -- one chunk ------------------------------------------------------------------------

    def chunk(self, theta: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        """[4 (J, error, iterations, dJ/d log ε), len(names), C] float64 for one chunk."""
        net, site, stim = self.net, self.site, self.stim

        def source(a: torch.Tensor) -> torch.Tensor:
            return net.site_activations(stim.clean(a, phase), site)

        x, xdot = jvp(source, (theta,), (torch.ones_like(theta),))
        x = x.contiguous()  # an expanded image (channels by .expand) cannot take tangents
        image = stim.clean(theta, phase) if site != INPUT else x
        n_img, n_pix = x.shape[0], x[0].numel()
        if self.variance.numel() != n_pix:
            raise ValueError(f"the noise variance has {self.variance.numel()} elements, the "
                             f"noisy input {n_pix}")
        keep = self.variance > 0
        all_pixels = bool(keep.all())
        v = self.variance if all_pixels else self.variance[keep]
        xd = _flat(xdot).double()
        xd = xd if all_pixels else xd[:, keep]
        u = xd / v.sqrt()  # Σ_x^{-1/2} ẋ over the noisy elements
        hi = ({"x": x.detach(), "xdot": xdot.detach(), "image": image} if self.net64 is None
              else self._float64_source(theta, phase, x, image))
        zeros = torch.zeros(n_img, dtype=torch.float64, device=x.device)
        nan = torch.full_like(zeros, float("nan"))
        rows = []
        start: torch.Tensor | None = None  # the last pixel-space solution (full length)
        start_units = 0  # units per image of the layer it solves
        for name in self.names:
            if name == site:
                self.kinds[name] = "exact"
                rows.append(torch.stack([(u * u).sum(1), zeros, zeros, zeros]))
                continue
            fn = layer_function(net, name, site, image)
            if name == OUTPUT and net.decoded:
                jac = jacobian(fn, x, 1, n_pix, _through(net, name, site))[:, 0, :]
                a = jac.double() if all_pixels else jac.double()[:, keep]
                num = (a * xd).sum(1) ** 2
                den = (a * a * v).sum(1)
                j = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
                self.kinds[name] = "exact"
                rows.append(torch.stack([j, zeros, zeros, zeros]))
                continue
            route = self.routes[name]
            units = net.units.get(name, 0)
            if route == "sparse":
                row, start = self._sparse(name, fn, x, hi, start)
                if row is not None:
                    rows.append(row)
                    start_units = units
                    continue
                route = "krylov"  # not local after all: the matrix-free solver
            if route == "exact":
                row, start = self._exact(name, fn, x, u, keep, all_pixels, v, hi)
            else:  # warm only from a layer with no more units (one with more it is lossy to)
                warm = start if units >= start_units else None
                row, start = self._krylov(name, fn, x, xdot, hi, warm, nan)
            start_units = units
            rows.append(row)
        return torch.stack(rows, dim=1)

    # -- float64 through the recorded gates -------------------------------------------------

    def _float64_source(self, theta: torch.Tensor, phase: torch.Tensor | None,
                        x: torch.Tensor, image: torch.Tensor) -> dict[str, Any]:
        """The float64 noise source x64, ẋ64 and image64 (gates of the site's own pass)."""
        net64, site, stim = self.net64, self.site, self.stim
        th = theta.to(torch.float64)
        ph = None if phase is None else phase.to(torch.float64)
        if site == INPUT:
            def source(a: torch.Tensor) -> torch.Tensor:
                return stim.clean(a, ph, dtype=torch.float64)
        else:
            _, gates = record_gates(lambda img: self.net.site_activations(img, site), image)
            site64 = gates.replay(lambda img: net64.site_activations(img, site))

            def source(a: torch.Tensor) -> torch.Tensor:
                return site64(stim.clean(a, ph, dtype=torch.float64))
        x64, xdot64 = jvp(source, (th,), (torch.ones_like(th),))
        x64 = x64.contiguous()
        image64 = stim.clean(th, ph, dtype=torch.float64) if site != INPUT else x64
        return {"x": x64.detach(), "xdot": xdot64.detach(), "image": image64.detach()}

    def _gated(self, name: str, fn: Callable, x: torch.Tensor,
               hi: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Layer ``name`` in float64 through the gates ``fn`` takes at x (None if the replay
        does not match the recorded pass); ``fn`` itself for a float64 model."""
        if self.net64 is None:
            return fn
        _, gates = record_gates(fn, x)
        fn64 = gates.replay(layer_function(self.net64, name, self.site, hi["image"]))
        try:
            with torch.no_grad():
                fn64(hi["x"])
        except GateMismatch:
            return None
        return fn64

    # -- routes -----------------------------------------------------------------------------

    def _exact(self, name, fn, x, u, keep, all_pixels, v, hi):  # noqa: ANN001, ANN202
        net = self.net
        n_pix = x[0].numel()
        sqrt_v = v.sqrt()
        zeros = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        if self.products64 and self.net64 is not None:
            fn64 = self._gated(name, fn, x, hi)
            if fn64 is not None:
                jac = jacobian(fn64, hi["x"], net.units[name], n_pix,
                               _through(net, name, self.site))
                b = jac if all_pixels else jac[:, :, keep]
                del jac
                b.mul_(sqrt_v)
                u64 = _flat(hi["xdot"]) if all_pixels else _flat(hi["xdot"])[:, keep]
                j, z, xs = ridge_fisher(b, u64 / sqrt_v, self.eps, solutions=True)
                self.used[name], self.kinds[name] = "exact", "exact"
                dlog = -self.eps * (z * z).sum(1)
                return torch.stack([j, zeros, zeros, dlog]), self._full(xs, keep)
        jac = jacobian(fn, x, net.units[name], n_pix, _through(net, name, self.site))
        b = jac.double() if all_pixels else jac.double()[:, :, keep]
        del jac
        b.mul_(sqrt_v)  # B = A Σ_x^{1/2}
        estimate = self.net64 is not None
        norms = (b * b).sum(2) if estimate else None  # D, before b becomes B̃ in place
        j, z, xs = ridge_fisher(b, u, self.eps, solutions=True)
        error = zeros
        self.used[name], self.kinds[name] = "exact", "exact"
        fn64 = self._gated(name, fn, x, hi) if estimate else None
        if estimate:
            self.kinds[name] = "estimate"
            error = torch.full_like(zeros, float("nan"))
        if fn64 is not None:
            scale = torch.where(norms > 0, norms.clamp_min(1e-300).rsqrt(), 0.0)  # D^{-1/2}
            r = self.eps * xs  # u − B̃ᵀz, the pixel-space residual
            w = (self._full(r * sqrt_v, keep)).reshape(hi["x"].shape)
            b64r = _flat(jvp(fn64, (hi["x"],), (w,))[1]).double() * scale
            u64 = _flat(hi["xdot"]).double()
            du = u - (u64 if all_pixels else u64[:, keep]) / sqrt_v
            both = torch.einsum("cnp,kcp->kcn", b, torch.stack([r, du]))  # B̃₃₂ r, B̃₃₂ δu
            first = 2 * (z * (both[0] - b64r)).sum(1) + 2 * (z * both[1]).sum(1)
            error = ROUNDING_SAFETY * first.abs() + FLOAT32_FLOOR * j.abs()
        dlog = -self.eps * (z * z).sum(1)
        return torch.stack([j, error, zeros, dlog]), self._full(xs, keep)

    def _sparse(self, name, fn, x, hi, start):  # noqa: ANN001, ANN202
        fn64 = self._gated(name, fn, x, hi)
        window = self.windows.get(name)
        shape = self.net.shapes.get(name)
        if fn64 is None or window is None or shape is None:
            return None, start
        std = self._std_full()
        mats = None
        for _ in range(3):  # grow the window if the check fails (a unit the probes missed)
            try:
                mats = sparse_jacobian(fn64, hi["x"], std, shape, window)
                break
            except SparseUnavailable:
                window = window.grown()
        if mats is None:
            return None, start
        self.windows[name] = window
        u64 = torch.where(std > 0, _flat(hi["xdot"]) / torch.where(std > 0, std, 1.0), 0.0)
        out, sols = [], []
        for k, mat in enumerate(mats):
            j, xs, dlog = sparse_fisher(mat, u64[k].cpu().numpy(), self.eps, shape,
                                        tuple(hi["x"].shape[1:]), window)
            out.append((j, dlog))
            sols.append(torch.as_tensor(xs, device=x.device))
        vals = torch.tensor(out, dtype=torch.float64, device=x.device)
        zeros = torch.zeros(len(mats), dtype=torch.float64, device=x.device)
        self.used[name], self.kinds[name] = "sparse", "exact"
        return torch.stack([vals[:, 0], zeros, zeros, vals[:, 1]]), torch.stack(sols)

    def _krylov(self, name, fn, x, xdot, hi, start, nan):  # noqa: ANN001, ANN202
        fn_k, x_k, xdot_k = fn, x, xdot
        rounding = False
        if self.products64 and self.net64 is not None:
            fn64 = self._gated(name, fn, x, hi)
            if fn64 is not None:
                fn_k, x_k, xdot_k = fn64, hi["x"], hi["xdot"]
        rounding = fn_k is fn and self.net64 is not None
        std = self._std_full().to(x.device)
        diag = self._diag(name, fn_k, x_k, std)
        with torch.enable_grad():
            res = krylov_fisher(fn_k, x_k, xdot_k, std, self.eps, self.rtol, self.maxiter,
                                start=start if self.warm_start and not rounding else None,
                                certify=self.certify,
                                reorthogonalize=self.reorthogonalize.get(name, 0),
                                sensitivity=self.sensitivity, diag=diag)
        error = res.error + res.ridge_error + ROUNDING_FLOOR / self.eps * res.fisher.abs()
        if not bool(res.converged.all()):
            self.stalled.add(name)
        if rounding:
            fn64 = self._gated(name, fn, x, hi)
            error = error + (torch.full_like(error, float("nan")) if fn64 is None else
                             self._krylov_rounding(fn, fn64, x, xdot, hi, res, std))
        self.used[name] = "krylov"
        self.kinds[name] = "bound" if self.certify and not rounding else "estimate"
        dlog = res.dlog_eps if res.dlog_eps is not None else nan
        return (torch.stack([res.fisher, error, res.iterations.double(), dlog]),
                res.solution)

    def _krylov_rounding(self, fn, fn64, x, xdot, hi, res, std):  # noqa: ANN001, ANN202
        """ROUNDING_SAFETY · |2zᵀEr + 2zᵀB̃δu| for the float32 products of a Krylov solve, at
        its pixel-space solution x (z = B̃x, r = u − B̃ᵀz − εx): a first-order estimate."""
        shape, sol, scale = x.shape, res.solution, res.scale

        def prod(f, xx, w):  # noqa: ANN001, ANN202 - D̂^{-1/2} A Σ^{1/2} w
            tangent = (w * std).to(xx.dtype).reshape(shape)
            return _flat(jvp(f, (xx,), (tangent,))[1]).double() * scale

        def quotient(d: torch.Tensor) -> torch.Tensor:
            return torch.where(std > 0, _flat(d).double() / torch.where(std > 0, std, 1.0),
                               0.0)

        u, u64 = quotient(xdot), quotient(hi["xdot"])
        z = prod(fn, x, sol)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            out = fn(leaf.clone())
            btz = torch.autograd.grad(out, leaf, (z * scale).to(out.dtype))[0]
        r = u - _flat(btz).double() * std - self.eps * sol
        er = prod(fn, x, r) - prod(fn64, hi["x"], r)
        first = 2 * (z * er).sum(1) + 2 * (z * prod(fn, x, u - u64)).sum(1)
        return ROUNDING_SAFETY * first.abs() + FLOAT32_FLOOR * res.fisher.abs()

    def _diag(self, name, fn, x, std):  # noqa: ANN001, ANN202
        """D = diag(A Σ Aᵀ) itself where it is cheap: by reverse mode for at most
        `EXACT_DIAG_UNITS` units, from the coloured sparse Jacobian for a local layer of at
        most four times as many colours as the probes; else None (the Krylov solver
        estimates it from its probes)."""
        units = self.net.units[name]
        window, shape = self.windows.get(name), self.net.shapes.get(name)
        channels = x.shape[1] if x.dim() == 4 else 0
        if window is not None and shape is not None and \
                window.colours(channels) <= 4 * N_PROBES:
            try:
                mats = sparse_jacobian(fn, x, std, shape, window)
                return torch.stack([torch.as_tensor(
                    np.asarray(m.multiply(m).sum(1)).ravel()) for m in mats]).to(x.device)
            except SparseUnavailable:
                pass
        if units > EXACT_DIAG_UNITS:
            return None
        n_img = x.shape[0]
        out, pull = vjp(fn, x)
        budget = max(1, JACOBIAN_BUDGET // (n_img * max(x[0].numel(), 1)))
        parts = []
        for lo in range(0, units, budget):
            idx = torch.arange(lo, min(lo + budget, units), device=x.device)
            cot = (idx[:, None] == torch.arange(units, device=x.device)[None]).to(out.dtype)
            rows = vmap(lambda c: pull(c.expand(n_img, -1))[0])(cot)  # [k, C, ...]
            rows = rows.reshape(len(idx), n_img, -1).double() * std
            parts.append((rows * rows).sum(-1).T)
        return torch.cat(parts, dim=1).detach()

    # -- helpers -----------------------------------------------------------------------------

    def _std_full(self) -> torch.Tensor:
        return self.variance.sqrt()

    def _full(self, reduced: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """A pixel-space vector over the noisy elements, back to every element (0 elsewhere)."""
        if bool(keep.all()):
            return reduced
        out = torch.zeros(reduced.shape[0], keep.numel(), dtype=reduced.dtype,
                          device=reduced.device)
        out[:, keep] = reduced
        return out


def _through(net: Network, name: str, site: str) -> int:
    """Activations per image the computation from ``site`` to ``name`` passes through (sizes
    the vmap chunks of the Jacobian)."""
    if net.native:
        blocks = net.blocks
        after = blocks if site == INPUT else blocks[blocks.index(site) + 1:]
        upto = after if name == OUTPUT else after[:after.index(name) + 1]
        return sum(net.units[b] for b in upto)
    order = net.order([n for n in net.units if n not in (INPUT, OUTPUT)])
    upto = order if name not in order else order[:order.index(name) + 1]
    return sum(net.units[n] for n in upto)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array on the CPU."""
    return t.detach().double().cpu().numpy()
