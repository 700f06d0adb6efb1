"""Propagated (linearised) Fisher information: pixel (or layer) noise through the Jacobian.

`propagated_fisher` chooses, per layer, the exact solver (:mod:`anglesim.fisher._exact`) or
the matrix-free one (:mod:`anglesim.fisher._krylov`) by estimated cost
(:mod:`anglesim.fisher._cost`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.func import jvp

from .. import validation as check
from ._base import (
    ANGLES,
    DECODE,
    DEFAULT_N_PHASES,
    DEVICE,
    INPUT,
    LAYERS,
    MODEL,
    OUTPUT,
    PHASES,
    ArrayLike,
    angles_tensor,
    eval_mode,
    fisher_dataarray,
    model_on_device,
    sliced,
    to_numpy,
)
from ._cost import available_memory, choose, estimate, guard
from ._exact import jacobian, ridge_fisher
from ._krylov import krylov_fisher
from ._network import Network
from ._stimulus import STIMULUS, Stimulus, as_stimulus
from ._ties import pool_tie_check

__all__ = ["SOLVERS", "propagated_fisher"]

SOLVERS = ("exact", "krylov", "auto")
POOL_TIES = ("warn", "record")
"""What `propagated_fisher` does about tied max-pool windows that receive noise: warn (and
record the counts in attrs), or only record them."""


def float_dtype(name: str, value: Any) -> torch.dtype:
    """``value`` if it is a floating torch dtype."""
    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise check.fail(name, "a floating torch dtype such as torch.float64", value)
    return value


PARAMETERS = {
    "model": MODEL, "spec": STIMULUS, "angles": ANGLES, "layers": LAYERS,
    "sigma": check.Optional(check.Real(minimum=0.0, min_open=True)),
    "eps": check.Real(minimum=0.0, min_open=True),
    "phases": PHASES,
    "chunk_size": check.Integer(minimum=1),
    "device": DEVICE,
    "noise_at": check.Text(),
    "solver": check.Choice(SOLVERS),
    "rtol": check.Real(minimum=0.0, maximum=1.0, min_open=True),
    "maxiter": check.Integer(minimum=1),
    "decode": DECODE,
    "force": check.Boolean(),
    "krylov_dtype": check.Optional(check.Check(float_dtype, "a floating torch dtype")),
    "pool_ties": check.Choice(POOL_TIES),
}
"""`propagated_fisher`'s parameters, declared (checked on entry by `validation.validate`)."""


def propagated_fisher(
    model: torch.nn.Module,
    spec: Any,
    angles: ArrayLike,
    layers: Sequence[str] | None = None,
    sigma: float | None = None,
    eps: float = 1e-6,
    phases: ArrayLike | None = None,
    chunk_size: int = 4,
    device: torch.device | str | None = None,
    noise_at: str = INPUT,
    *,
    solver: str = "auto",
    rtol: float = 1e-3,
    maxiter: int = 5000,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    force: bool = False,
    krylov_dtype: torch.dtype | None = None,
    pool_ties: str = "warn",
) -> xr.DataArray:
    """Linearised Fisher information about θ in each layer, from additive Gaussian noise.

    The image is x(θ) + n, n ~ N(0, Σ_x) with Σ_x = diag(V): for a GratingSpec, V is its
    ``noise_variance_map()`` with noise_std set to σ (σ² on every pixel unless the spec masks
    the noise with its aperture or gates it with noise_prob < 1), broadcast over channels; for
    a callable stimulus, the noise given to :func:`~anglesim.fisher.as_stimulus`. Linearising
    a layer's activations r(x) at the noiseless image x(θ) (A = ∂r/∂x, ẋ = ∂x/∂θ) gives
    r ~ N(r(x(θ)), A Σ_x Aᵀ) locally, whose (linear, mean-term) Fisher information is (Kay
    1993, Fundamentals of Statistical Signal Processing I, §3.9, without the
    covariance-derivative term)

        J(θ) = (A ẋ)ᵀ (A Σ_x Aᵀ + ε D)⁻¹ (A ẋ),   D = diag(A Σ_x Aᵀ).

    The ridge ε D is ε times each unit's own noise variance: extra independent noise on every
    unit at a fraction ε of its variance. It makes rank-deficient layers (dead ReLUs, more
    units than pixels) well posed; J is exactly invariant to rescaling any unit (J(c r_i) =
    J(r_i)), which a ridge relative to the trace is not; as ε → 0, J → ‖P u‖² with
    u = Σ_x^{-1/2} ẋ and P the projector on the row space of A Σ_x^{1/2} — for Σ_x = σ² I
    that is ‖P_row(A) ẋ‖²/σ². Since A Σ_x Aᵀ + εD ⪰ A Σ_x Aᵀ, every layer obeys the
    data-processing inequality J ≤ ẋᵀ Σ_x⁻¹ ẋ (the "input" value) exactly. Units that do
    not respond (D_i = 0) are left out.

    Solvers (``solver``): "exact" forms each layer's Jacobian (reverse mode when N ≤ P/2, else
    forward mode, chunked) and Cholesky-factors the smaller Gram matrix (float64; an
    eigendecomposition is the fallback); "krylov" never forms it: one Golub–Kahan
    bidiagonalisation of B̃ = D^{-1/2} A Σ_x^{1/2} from u = Σ_x^{-1/2} ẋ, one JVP and one VJP
    per iteration, whose Lanczos tridiagonals give Gauss and Gauss–Radau bounds on both
    J = (B̃u)ᵀ(B̃B̃ᵀ + εI)⁻¹(B̃u) (unit space) and J = ‖u‖² − ε uᵀ(B̃ᵀB̃ + εI)⁻¹u (pixel
    space), bracketing J from both sides; D is estimated from
    16 fixed Rademacher probes, and iteration stops when the bracket's half-width is
    ≤ ``rtol`` · J (see :mod:`anglesim.fisher._krylov`); "auto" picks per layer by estimated
    cost (exact for small layers, Krylov for wide ones, see
    :mod:`anglesim.fisher._cost`). Both solvers run the network in its own dtype (the same
    function, so max-pooling ties at the noiseless image resolve alike; ``krylov_dtype``
    runs the Krylov products in another, e.g. torch.float64) and do the linear algebra in
    float64. The result holds, per layer and
    angle, ``fisher_error`` (Krylov's error bound, 0 for exact and closed-form values) and
    ``iterations`` (Golub–Kahan iterations, 0 for exact), and per layer ``solver``.

    Cost guard: before computing, the time (from a timed forward pass) and peak memory of
    the chosen solvers are estimated; above the device's memory (CUDA: free; CPU: total) or
    one hour it
    stops with a ValueError giving the estimate and the cheaper choices (solver="krylov",
    fewer layers, `output_noise_fisher`), unless ``force=True``.

    Noise at a layer (``noise_at`` = a layer name b): the noise is injected into b's
    activations instead of the pixels, h_b(θ) + n with n ~ N(0, σ² I) (``sigma`` must then be
    given), and propagated to the layers computed after b; x, ẋ and A above become h_b(θ),
    ∂h_b/∂θ and ∂r/∂h_b. Layer b itself carries ‖∂h_b/∂θ‖²/σ². Paths that bypass b (a
    residual connection) see the clean image.

    Special layers: "input" is the pixels' own information ẋᵀ Σ_x⁻¹ ẋ = Σ_{V>0} ẋ²/V; "output"
    the decoded angle θ̂ = decode(model(x)) when the model has a ``decode`` or ``decode`` is
    given, J = (∂θ̂/∂θ)² / (∂θ̂/∂x Σ_x ∂θ̂/∂xᵀ) (no ridge; 0 where θ̂ does not depend on the
    image), else the raw output vector, treated as a layer. Pixels with V = 0 are left out.

    Non-Gaussian noise: for a spec whose noise is not additive Gaussian
    (``spec.gaussian_noise_only`` False), pixel noise is replaced by additive Gaussian noise
    of the same per-pixel variance: a UserWarning says so and attrs["noise_model_note"]
    records it; the sampled estimators measure the spec's actual noise.

    Max-pool ties (issue 15): where a max-pool window's largest inputs are exactly tied at a
    non-zero value and the noise reaches them, the network is not differentiable at x(θ) and
    J is not the σ → 0 limit of the noisy network's FI. Their counts, on at most 8 of the
    items, go to attrs (``pool_ties_*``, :func:`anglesim.fisher._ties.pool_tie_check`: two
    forward passes, noise from a stream of its own, so no value moves) and a
    `~anglesim.pool_ties.PoolTieWarning` says when such windows receive noise.

    Random phase (``spec.phase is None``) or explicit ``phases``: J is computed at each phase
    (default 8 evenly spaced in [0, 2π)) and averaged — the phase-conditional FI averaged over
    phase, an upper bound on the FI of the phase-marginal image distribution.

    The model must treat the images of a batch independently (it is switched to eval mode for
    the measurement and restored afterwards).

    Args:
        model: any torch.nn.Module mapping images [N, C, H, W] to outputs.
        spec: a GratingSpec, a :class:`~anglesim.fisher.Stimulus` or a callable
            ``stimulus(theta) -> images`` (then give ``sigma`` or use ``as_stimulus``).
        angles: [A] angles in radians.
        layers: names from :func:`~anglesim.fisher.list_layers` (from ``noise_at`` on);
            default "input", the blocks (anglesim models) or top-level children, "output".
        sigma: noise standard deviation; default the stimulus's own, required for noise at a
            layer.
        eps: relative ridge ε > 0 (see above).
        phases: grating phases to average over (radians).
        chunk_size: images per chunk (memory knob).
        device: where to compute; default the model's device.
        noise_at: "input" (pixels, default) or the layer whose activations receive the noise.
        solver: "exact", "krylov" or "auto".
        rtol: Krylov's relative tolerance on J, in (0, 1).
        maxiter: most Golub–Kahan iterations per layer and chunk.
        decode: callable from the model's outputs to θ̂ [N], for "output".
        force: run even when the cost guard estimates more memory than is free or hours.
        krylov_dtype: dtype of the Krylov solver's network products (default the model's).
        pool_ties: "warn" (default): a `~anglesim.pool_ties.PoolTieWarning` when tied max-pool
            windows receive noise (once per process and set of pooling layers); "record":
            the caller knows (a study's own standard stimulus): the counts go to attrs as
            always, without the warning.

    Returns:
        DataArray "fisher", dims ("layer", "angle"), coordinates fisher_error, iterations,
        solver; attrs method="propagated", sigma, eps, ridge, solver, rtol, quantity,
        noise_at, units "rad^-2", noise_model (and noise_model_note, phase_average), and the
        tied max-pool windows ``pool_ties_<pool layer>``, ``pool_ties_noisy`` (tied non-zero
        windows the noise reaches; −1 when not measured) and ``pool_ties_images``.
    """
    args = check.validate(locals(), PARAMETERS)
    eps, chunk_size, solver = args["eps"], args["chunk_size"], args["solver"]
    rtol, maxiter, force = args["rtol"], args["maxiter"], args["force"]
    sigma = args["sigma"]
    stim = as_stimulus(spec)
    model, dev, dtype = model_on_device(model, device)
    net = Network(model, decode)
    theta = angles_tensor(angles, dev, dtype)
    if noise_at not in net.layers[:-1]:
        raise check.fail("noise_at", f"'input' or a layer name among {net.layers[1:-1]}",
                         noise_at)
    if phases is None and stim.random_phase:
        phases = torch.arange(DEFAULT_N_PHASES, dtype=torch.float64) * (
            2 * math.pi / DEFAULT_N_PHASES)
    if phases is not None and stim.spec is None:
        raise check.fail("phases", "None for a callable stimulus", phases)
    attrs: dict[str, Any] = {"noise_at": noise_at}
    phi = None if phases is None else angles_tensor(phases, dev, dtype, name="phases")
    if phi is not None:
        attrs["phase_average"] = (
            f"phase-conditional Fisher information averaged over {phi.numel()} grating phases "
            "(an upper bound on the Fisher information of the phase-marginal image distribution)")
        attrs["n_phases"] = int(phi.numel())
    n_ph = 1 if phi is None else phi.numel()
    item_theta = theta.repeat_interleave(n_ph)
    item_phase = None if phi is None else phi.repeat(theta.numel())

    with eval_mode(model), torch.no_grad():  # eval: no dropout draws from the global RNG
        x0 = stim.clean(item_theta[:1], sliced(item_phase, 0, 1), dtype=dtype)
        net.probe(x0)
        t_pass = _pass_seconds(model, x0, dev) * min(chunk_size, item_theta.numel())
    names = net.resolve(layers, allowed=net.downstream(noise_at))
    net.check_measurable(names)
    if noise_at == INPUT:
        variance, sigma_used, noise_model = _pixel_variance(stim, sigma, x0.shape[1:], dev)
        where = "pixel noise"
    else:
        if sigma is None:
            raise check.fail("sigma", f"a real number > 0 for noise at layer {noise_at!r}",
                             None)
        sigma_used = float(sigma)
        variance = torch.full((net.units[noise_at],), sigma_used**2, dtype=torch.float64,
                              device=dev)
        noise_model = (f"additive Gaussian noise N(0, {sigma_used:g}^2 I) on the "
                       f"{net.units[noise_at]} activations of layer {noise_at!r}")
        where = f"noise injected at layer {noise_at!r}"

    chosen = _plan(net, names, noise_at, variance, chunk_size, item_theta.numel(), t_pass,
                   dtype, dev, solver, force)
    attrs.update(
        sigma=sigma_used, eps=float(eps), solver=solver, rtol=float(rtol),
        ridge="eps * diag(A Sigma_x A^T) (each unit's own variance) added to A Sigma_x A^T",
        quantity=(
            "linearised Fisher information about the orientation theta carried by each "
            f"layer's activations, for additive Gaussian {where} propagated through the "
            "network's Jacobian at the noiseless image: "
            "J = (A xdot)^T (A Sigma_x A^T + eps diag(A Sigma_x A^T))^-1 (A xdot)"),
        noise_model=noise_model)
    if noise_at == INPUT and not stim.gaussian_noise_only:
        note = (
            "the propagated estimator assumes additive Gaussian pixel noise; this spec's noise "
            "is not (only) additive Gaussian, so it was replaced by Gaussian noise of the same "
            "per-pixel variance: use a sampled estimator (sampled_fisher, decoder_fisher, "
            "estimator_fisher, savgol_fisher) for its actual noise")
        attrs["noise_model_note"] = note
        warnings.warn(note, UserWarning, stacklevel=2)
    attrs.update(pool_tie_check(model, stim, item_theta, item_phase, variance, noise_at,
                                warn=args["pool_ties"] == "warn"))

    out: list[torch.Tensor] = []
    with eval_mode(model), torch.no_grad():
        knet = None  # the network in the Krylov products' dtype (a copy in eval mode)
        kdtype = dtype if krylov_dtype is None else krylov_dtype
        if "krylov" in chosen.values():
            knet = net.with_model(model if dtype == kdtype else
                                  copy.deepcopy(model).to(kdtype))
        for lo in range(0, item_theta.numel(), chunk_size):
            hi = min(lo + chunk_size, item_theta.numel())
            out.append(_chunk(net, knet, stim, item_theta[lo:hi], sliced(item_phase, lo, hi),
                              names, chosen, variance, eps, noise_at, rtol, maxiter))
    res = torch.cat(out, dim=2).reshape(3, len(names), theta.numel(), n_ph)
    values, errors = res[0].mean(-1), res[1].mean(-1)
    iters = res[2].amax(-1)
    not_conv = [n for n, e, v in zip(names, errors, values, strict=True)
                if chosen.get(n) == "krylov" and bool((e > rtol * v.abs() * 1.0001).any())]
    if not_conv:
        warnings.warn(f"Krylov solver did not reach rtol={rtol:g} within maxiter={maxiter} "
                      f"for layers {not_conv}: see fisher_error", UserWarning, stacklevel=2)
    da = fisher_dataarray(values.cpu().numpy(), to_numpy(angles, "angles"), names,
                          "propagated", **attrs)
    return da.assign_coords(
        fisher_error=(("layer", "angle"), errors.cpu().numpy()),
        iterations=(("layer", "angle"), iters.cpu().numpy().astype(np.int64)),
        solver=("layer", np.array([chosen.get(n, "closed_form") for n in names], dtype=object)),
    )


PASS_REPEATS = 5
"""How many timed forward passes :func:`_pass_seconds` takes the best of."""


def _pass_seconds(model: torch.nn.Module, x: torch.Tensor, dev: torch.device) -> float:
    """Seconds of one forward pass of ``x``, for the cost model: the best of
    :data:`PASS_REPEATS` passes (after the probe's), each on the CPU the smaller of its wall
    time and this process's CPU time.

    The CPU time does not count the time the process waits for a core, so a machine loaded by
    other jobs does not inflate the estimate (the best of two wall-clock passes on a 2-core
    machine running three other jobs once made the guard refuse the quickstart's FI, a matter
    of seconds, as "1.1 h"); the wall time bounds it for a multi-threaded pass, whose CPU time
    sums over threads. On other devices the wall time is used (CUDA synchronised around it).
    """
    best = math.inf
    for _ in range(PASS_REPEATS):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall, cpu = time.perf_counter(), time.process_time()
        model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = min(best, min(wall, cpu) if dev.type == "cpu" else wall)
    return best


def _plan(net: Network, names: list[str], site: str, variance: torch.Tensor, n_img: int,
          n_items: int, t_pass: float, dtype: torch.dtype, dev: torch.device, solver: str,
          force: bool) -> dict[str, str]:
    """The solver of each layer that needs one (not the noise site, not a decoded output)."""
    n_in = int((variance > 0).sum())
    order = net.order(list(net.units))
    n_chunks = math.ceil(n_items / n_img)
    memory = available_memory(dev)
    estimates = []
    for name in names:
        if name == site or (name == OUTPUT and net.decoded):
            continue
        upto = order[:order.index(name) + 1] if name in order else order
        through = sum(net.units[n] for n in upto if n not in (INPUT, OUTPUT))
        estimates.append(estimate(name, net.units[name], n_in, through, n_img, n_chunks,
                                        t_pass, torch.finfo(dtype).bits // 8))
    chosen = {c.name: choose(c, solver, memory) for c in estimates}
    if not force:
        guard(estimates, chosen, memory)
    return chosen


def _pixel_variance(stim: Stimulus, sigma: float | None, shape: torch.Size,
                    dev: torch.device) -> tuple[torch.Tensor, float, str]:
    """Per-pixel noise variance V (flat, float64), the σ used, and a description."""
    if sigma is None:
        if not stim.has_noise:
            raise check.fail(
                "sigma", "given (the pixel noise standard deviation): the stimulus has no "
                "pixel noise of its own (spec.noise_std is 0, or a callable without "
                "as_stimulus(..., noise_std=...))", None)
        sigma_used = stim.spec.noise_std if stim.spec is not None else None
    else:
        sigma_used = sigma
    flat = stim.variance(shape, sigma_used, dev)
    if not (torch.isfinite(flat).all() and (flat >= 0).all() and (flat > 0).any()):
        raise ValueError(
            f"the noise variance map must be finite, >= 0 and positive somewhere, got values "
            f"in [{float(flat.min())}, {float(flat.max())}]")
    if sigma_used is None:  # a callable's own map or σ
        sigma_used = math.sqrt(float(flat.max()))
    if float(flat.max() - flat.min()) <= 1e-12 * float(flat.max()):
        return flat, float(sigma_used), (
            f"additive Gaussian pixel noise, variance {float(flat[0]):g} on every pixel")
    return flat, float(sigma_used), (
        f"additive Gaussian pixel noise, per-pixel variance map with scale sigma = "
        f"{sigma_used:g}; pixels with zero variance left out")


def _chunk(
    net: Network, knet: Network | None, stim: Stimulus, theta: torch.Tensor,
    phase: torch.Tensor | None, names: list[str], chosen: dict[str, str],
    variance: torch.Tensor, eps: float, site: str, rtol: float, maxiter: int,
) -> torch.Tensor:
    """[3 (J, error, iterations), len(names), C] (float64) for one chunk of C items.

    x is where the noise enters (the image, or layer ``site``'s activations) and ẋ its
    derivative in θ; every measured layer is a function of x.
    """
    def source(a: torch.Tensor, n: Network) -> torch.Tensor:
        return n.site_activations(stim.clean(a, phase), site)

    x, xdot = jvp(lambda a: source(a, net), (theta,), (torch.ones_like(theta),))
    x = x.contiguous()  # an expanded image (channels by .expand) cannot take tangents
    image = stim.clean(theta, phase) if site != INPUT else x
    n_img, n_pix = x.shape[0], x[0].numel()
    if variance.numel() != n_pix:
        raise ValueError(f"the noise variance has {variance.numel()} elements, the noisy "
                         f"input {n_pix}")
    keep = variance > 0
    all_pixels = bool(keep.all())
    v = variance if all_pixels else variance[keep]
    xd = xdot.reshape(n_img, n_pix).double()
    xd = xd if all_pixels else xd[:, keep]
    u = xd / v.sqrt()  # Σ_x^{-1/2} ẋ
    zeros = torch.zeros(n_img, dtype=torch.float64, device=x.device)
    rows = []
    kx = kxd = kimage = None
    for name in names:
        if name == site:
            rows.append(torch.stack([(u * u).sum(1), zeros, zeros]))
            continue

        def layer(z: torch.Tensor, name: str = name, n: Network = net,
                  img: torch.Tensor = image) -> torch.Tensor:
            return n.outputs(img if site != INPUT else z, [name], site,
                             z if site != INPUT else None)[0]

        if name == OUTPUT and net.decoded:
            jac = jacobian(layer, x, 1, n_pix, _through(net, name, site))[:, 0, :]
            a = jac.double() if all_pixels else jac.double()[:, keep]
            num = (a * xd).sum(1) ** 2
            den = (a * a * v).sum(1)
            j = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
            rows.append(torch.stack([j, zeros, zeros]))
            continue
        if chosen[name] == "exact":
            jac = jacobian(layer, x, net.units[name], n_pix, _through(net, name, site))
            b = jac.double() if all_pixels else jac.double()[:, :, keep]
            del jac
            b.mul_(v.sqrt())  # B = A Σ_x^{1/2}
            rows.append(torch.stack([ridge_fisher(b, u, eps), zeros, zeros]))
            continue
        if kx is None:  # the float64 copy's site, its derivative and the image
            kdtype = next(iter(knet.model.parameters()), theta).dtype
            kth = theta.to(kdtype)
            kx, kxd = jvp(lambda a: source(a, knet), (kth,), (torch.ones_like(kth),))
            kx, kxd = kx.contiguous(), kxd.contiguous()
            kimage = stim.clean(kth, phase, dtype=kdtype) if site != INPUT else kx

        def klayer(z: torch.Tensor, name: str = name, img: torch.Tensor = kimage) -> torch.Tensor:
            return knet.outputs(img if site != INPUT else z, [name], site,
                                z if site != INPUT else None)[0]

        with torch.enable_grad():
            j, err, it, _ = krylov_fisher(klayer, kx, kxd, variance.sqrt(), eps, rtol, maxiter)
        rows.append(torch.stack([j, err, it.double()]))
    return torch.stack(rows, dim=1)


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
