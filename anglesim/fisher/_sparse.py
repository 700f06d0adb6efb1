"""The exact sparse solver for layers whose units see a bounded window of pixels.

A convolutional layer near the input (the default CNN's ``conv1``: a 5 × 5 convolution and a
2 × 2 max-pool, so every unit depends on a 6 × 6 window) has a Jacobian A = ∂r/∂x with a few
dozen non-zeros per row. Its exact propagated FI needs neither the dense Jacobian nor an
iteration:

1. **window** — `local_window` finds, for each spatial axis, the stride s and the window
   [s·i + o, s·i + o + K) of pixel rows (columns) that unit row (column) i depends on, from the
   Jacobian's non-zero pattern: one vector–Jacobian product per probed row (column) of units,
   all channels at once, at the (gated) linearisation point;
2. **colouring** — a pixel (c, y, x) gets colour (c, y mod K_y, x mod K_x): two pixels in one
   unit's window never share a colour (Curtis, Powell & Reid 1974, J Inst Math Appl 13: 117;
   Coleman & Moré 1983, SIAM J Numer Anal 20: 187), so one Jacobian–vector product with the
   indicator of a colour gives, for every unit, its one entry of that colour: C·K_y·K_x
   products give all of B = A Σ_x^{1/2} (36 for ``conv1``), which `sparse_jacobian` assembles
   and checks against a product with a random vector;
3. **factorisation** — with B̃ = D^{-1/2}B (D = diag(BBᵀ), as in every solver), J is
   g̃ᵀ(B̃B̃ᵀ + εI)⁻¹g̃ (units ≤ pixels) or uᵀ(B̃ᵀB̃ + εI)⁻¹B̃ᵀB̃u; the smaller matrix is sparse
   (the pixels, or units, of overlapping windows couple), ordered by nested dissection of its
   grid (separators of one window's width, halving the longer side, recursively; the grid's
   channels stay together) and factorised by a multifrontal Cholesky (:mod:`._multifrontal`),
   no iteration.

The products run in float64 through the gates of the model's own pass (:mod:`._gates`), so the
result is the exact solver's to rounding (equal to 1e-10 and better in the tests):
``fisher_error`` 0. Returned with J: the pixel-space solution x = (B̃ᵀB̃ + εI)⁻¹u (a warm start
for the next layer's Krylov solve) and dJ/d log ε = −ε‖B̃x‖².
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.func import jvp, vjp, vmap

from ._multifrontal import cholesky, dissection

__all__ = ["SparseUnavailable", "Window", "local_window", "sparse_fisher", "sparse_jacobian"]

PROBES = 6
"""Rows (and columns) of units probed to find the window."""

MAX_ENTRIES = 2e8
"""Most non-zeros (all images of a chunk) the assembled Jacobian may hold."""

CHECK_RTOL = 1e-9
"""How close the assembled B must reproduce a product with a random vector (float64)."""


class SparseUnavailable(RuntimeError):
    """The layer's Jacobian is not local enough (or not of the assumed shape) for the sparse
    solver."""


@dataclass(frozen=True)
class Window:
    """Unit (row i, column j) depends on pixel rows [sy·i + oy, sy·i + oy + ky) and columns
    [sx·j + ox, sx·j + ox + kx) of every channel."""

    sy: int
    oy: int
    ky: int
    sx: int
    ox: int
    kx: int

    def colours(self, channels: int) -> int:
        """C·K_y·K_x, the Jacobian–vector products one chunk needs."""
        return channels * self.ky * self.kx

    def grown(self) -> Window:
        """One pixel wider on every side (after a failed check)."""
        return Window(self.sy, self.oy - 1, self.ky + 2, self.sx, self.ox - 1, self.kx + 2)


def _extent(grad: torch.Tensor, axis: int) -> tuple[int, int] | None:
    """(first, last) index along ``axis`` (2: rows, 3: columns) where grad [n, C, H, W] is
    non-zero, or None."""
    other = tuple(d for d in range(4) if d != axis)
    hit = torch.nonzero(grad.abs().sum(other) > 0).flatten()
    return None if hit.numel() == 0 else (int(hit[0]), int(hit[-1]))


def _fit(pairs: list[tuple[int, int, int]]) -> tuple[int, int, int] | None:
    """(stride, offset, size) from (unit index i, first, last pixel) of probed rows."""
    if len(pairs) < 2:
        return None
    (i0, a0, _), (i1, a1, _) = pairs[0], pairs[-1]
    stride = round((a1 - a0) / (i1 - i0)) if i1 != i0 else 0
    if stride < 1:
        return None
    lo = min(a - stride * i for i, a, _ in pairs)
    hi = max(b - stride * i for i, _, b in pairs)
    return stride, lo, hi - lo + 1


def local_window(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 unit_shape: tuple[int, ...]) -> Window:
    """The `Window` of ``fn``: x [n, C, H, W] → units [n, c·h·w] (``unit_shape`` (c, h, w)),
    from vector–Jacobian products with whole rows and whole columns of units at the probed
    positions (interior ones, evenly spread). `SparseUnavailable` where the shapes are not
    2-D grids or the window spans half the image or more."""
    if x.dim() != 4 or len(unit_shape) != 3:
        raise SparseUnavailable("the layer or its input is not a 2-D grid of channels")
    n, _, height, width = x.shape
    c_out, h_out, w_out = unit_shape
    if min(h_out, w_out) < 3:
        raise SparseUnavailable("too few unit rows or columns")
    out, pull = vjp(fn, x)
    rows = sorted({round(v) for v in np.linspace(h_out / 6, 5 * h_out / 6, PROBES)})
    cols = sorted({round(v) for v in np.linspace(w_out / 6, 5 * w_out / 6, PROBES)})
    cot = torch.zeros(len(rows) + len(cols), n, c_out, h_out, w_out, dtype=out.dtype,
                      device=out.device)
    for k, i in enumerate(rows):
        cot[k, :, :, i, :] = 1
    for k, j in enumerate(cols):
        cot[len(rows) + k, :, :, :, j] = 1
    grads = vmap(lambda c: pull(c.reshape(n, -1))[0])(cot)
    fits = []
    for probes, axis, grad in ((rows, 2, grads[:len(rows)]), (cols, 3, grads[len(rows):])):
        pairs = []
        for i, g in zip(probes, grad, strict=True):
            span = _extent(g, axis)
            if span is not None:
                pairs.append((i, *span))
        fit = _fit(pairs)
        if fit is None:
            raise SparseUnavailable("no stride could be read from the Jacobian's pattern")
        fits.append(fit)
    (sy, oy, ky), (sx, ox, kx) = fits
    if 2 * ky > height or 2 * kx > width:
        raise SparseUnavailable(f"window {ky} x {kx} spans half the image or more")
    return Window(sy, oy, ky, sx, ox, kx)


def sparse_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    std: torch.Tensor, unit_shape: tuple[int, ...], window: Window,
                    budget: int = 2**24) -> list[sp.csr_matrix]:
    """B = (∂fn/∂x) Σ^{1/2} for every image of x [n, C, H, W], as sparse [units, C·H·W]
    matrices, from one Jacobian–vector product per colour (``std`` [C·H·W]: √V); checked
    against one product with a random vector (`SparseUnavailable` if it does not match)."""
    n, channels, height, width = x.shape
    c_out, h_out, w_out = unit_shape
    units = c_out * h_out * w_out
    ky, kx = window.ky, window.kx
    if n * units * channels * ky * kx > MAX_ENTRIES:
        raise SparseUnavailable(f"{n * units * channels * ky * kx:.3g} entries to assemble")
    s = std.to(x.dtype).reshape(channels, height, width)
    yy = torch.arange(height, device=x.device)[:, None]
    xx = torch.arange(width, device=x.device)[None, :]
    pattern = (yy % ky) * kx + (xx % kx)  # [H, W] colour within a channel
    n_col = window.colours(channels)
    per = max(1, budget // max(1, n * (units + channels * height * width)))
    columns = []
    for start in range(0, n_col, per):
        k = torch.arange(start, min(start + per, n_col), device=x.device)
        tang = ((k[:, None, None, None] // (ky * kx) == torch.arange(channels, device=x.device)
                 [None, :, None, None])
                & (pattern[None, None] == (k % (ky * kx))[:, None, None, None])).to(x.dtype)
        tang = (tang * s).unsqueeze(1).expand(-1, n, -1, -1, -1)
        with torch.no_grad():
            columns.append(vmap(lambda t: jvp(fn, (x,), (t,))[1])(tang).detach())
    cols = torch.cat(columns)  # [colours, n, units]
    # every (unit, channel, window offset): its pixel, colour and value
    co = torch.arange(c_out, device=x.device)[:, None, None, None, None, None]
    i = torch.arange(h_out, device=x.device)[None, :, None, None, None, None]
    j = torch.arange(w_out, device=x.device)[None, None, :, None, None, None]
    c = torch.arange(channels, device=x.device)[None, None, None, :, None, None]
    a = torch.arange(ky, device=x.device)[None, None, None, None, :, None]
    b = torch.arange(kx, device=x.device)[None, None, None, None, None, :]
    py = window.sy * i + window.oy + a
    px = window.sx * j + window.ox + b
    shape = (c_out, h_out, w_out, channels, ky, kx)
    inside = ((py >= 0) & (py < height) & (px >= 0) & (px < width)).expand(shape)
    unit = ((co * h_out + i) * w_out + j).expand(shape)[inside]
    pix = ((c * height + py) * width + px).expand(shape)[inside]
    colour = (c * (ky * kx) + (py % ky) * kx + (px % kx)).expand(shape)[inside]
    mats = []
    rng = torch.Generator(device="cpu").manual_seed(0)
    probe = torch.randn(n, channels * height * width, generator=rng, dtype=torch.float64)
    with torch.no_grad():
        check = jvp(fn, (x,), ((probe.to(x) * s.reshape(-1)).reshape(x.shape),))[1]
    for img in range(n):
        vals = cols[colour, img, unit]
        keep = vals != 0
        mat = sp.csr_matrix((vals[keep].double().cpu().numpy(),
                             (unit[keep].cpu().numpy(), pix[keep].cpu().numpy())),
                            shape=(units, channels * height * width))
        want = check[img].double().cpu().numpy()
        got = mat @ probe[img].numpy()
        if np.abs(got - want).max() > CHECK_RTOL * max(np.abs(want).max(), 1e-300):
            raise SparseUnavailable("the assembled Jacobian does not reproduce a product")
        mats.append(mat)
    return mats


def sparse_fisher(b: sp.csr_matrix, u: np.ndarray, eps: float, unit_shape: tuple[int, ...],
                  input_shape: tuple[int, ...], window: Window
                  ) -> tuple[float, np.ndarray, float]:
    """(J, pixel solution x, dJ/d log ε) for one image from its sparse B [units, pixels] and
    u = Σ^{-1/2}ẋ [pixels] (see the module docstring)."""
    d = np.asarray(b.multiply(b).sum(1)).ravel()
    alive = d > 0
    if not alive.any():
        return 0.0, np.zeros_like(u), 0.0
    scale = np.zeros_like(d)
    scale[alive] = 1.0 / np.sqrt(d[alive])
    bt = sp.diags(scale) @ b  # B̃ (dead rows stay 0)
    g = bt @ u
    channels, height, width = input_shape
    c_out, h_out, w_out = unit_shape
    if int(alive.sum()) <= b.shape[1]:  # N × N: units couple through overlapping windows
        band = max(1, math.ceil((window.ky - 1) / window.sy), math.ceil((window.kx - 1) /
                                                                        window.sx))
        gram = (bt @ bt.T + eps * sp.identity(b.shape[0], format="csr")).tocsr()
        factor = cholesky(gram, dissection(h_out, w_out, c_out, band))
        z = factor.solve(g)
        j = float(g @ z)
        x = (u - bt.T @ z) / eps
        return j, x, -eps * float(z @ z)
    gram = (bt.T @ bt + eps * sp.identity(b.shape[1], format="csr")).tocsr()
    factor = cholesky(gram, dissection(height, width, channels,
                                       max(window.ky, window.kx) - 1))
    sol = factor.solve(np.stack([bt.T @ g, u], axis=1))
    j = float(u @ sol[:, 0])
    x = sol[:, 1]
    bx = bt @ x
    return j, x, -eps * float(bx @ bx)
