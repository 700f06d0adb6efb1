"""Propagated (linearised) Fisher information: pixel (or layer) noise through the Jacobian.

`propagated_fisher` plans each layer's route (exact, sparse or Krylov) by estimated cost
(:mod:`._plan`, :mod:`._cost`) and solves the layers chunk by chunk (:mod:`._solve`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import validation as check
from ._base import (
    ANGLES,
    DECODE,
    DEFAULT_N_PHASES,
    DEVICE,
    INPUT,
    LAYERS,
    MODEL,
    PHASES,
    ArrayLike,
    angles_tensor,
    eval_mode,
    fisher_dataarray,
    model_on_device,
    sliced,
    to_numpy,
)
from ._krylov import MAXITER
from ._network import Network
from ._plan import make_plan, pass_seconds, pixel_variance
from ._solve import Solver
from ._stimulus import STIMULUS, as_stimulus
from ._ties import pool_tie_check

__all__ = ["POOL_TIES", "PRECISIONS", "SOLVERS", "propagated_fisher"]

SOLVERS = ("auto", "exact", "sparse", "krylov")
PRECISIONS = ("auto", "model", "float64")
POOL_TIES = ("warn", "record")
"""What `propagated_fisher` does about tied max-pool windows that receive noise: warn (and
record the counts in attrs), or only record them."""

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
    "precision": check.Choice(PRECISIONS),
    "certify": check.Boolean(),
    "warm_start": check.Boolean(),
    "reorthogonalize": check.Boolean(),
    "sensitivity": check.Boolean(),
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
    maxiter: int = MAXITER,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    force: bool = False,
    precision: str = "auto",
    certify: bool = True,
    warm_start: bool = True,
    reorthogonalize: bool = True,
    sensitivity: bool = False,
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
    eigendecomposition is the fallback); "sparse", for layers whose units see a bounded
    window of pixels (convolutions near the input), finds the window from the Jacobian's
    non-zero pattern, takes one Jacobian–vector product per colour of pixels and factorises
    the sparse matrix in a nested-dissection order, exact with no iteration
    (:mod:`anglesim.fisher._sparse`); "krylov" never forms the Jacobian: one Golub–Kahan
    bidiagonalisation of B̃ = D^{-1/2} A Σ_x^{1/2}, one JVP and one VJP per iteration, whose
    Lanczos tridiagonals give Gauss and Gauss–Radau bounds on both J = (B̃u)ᵀ(B̃B̃ᵀ + εI)⁻¹(B̃u)
    (unit space) and J = ‖u‖² − ε uᵀ(B̃ᵀB̃ + εI)⁻¹u (pixel space), bracketing J from both
    sides, D estimated from 16 fixed Rademacher probes, stopped when the bracket's half-width
    is ≤ ``rtol`` · J (:mod:`anglesim.fisher._krylov`); each layer's bidiagonalisation starts
    from the previous layer's pixel-space solution where the layer has at least as many units
    as that one (``warm_start``, the bounds shifted so they stay rigorous), reorthogonalises
    where memory and the cost of a product allow (``reorthogonalize``), and with
    ``certify=False`` stops on an error estimate instead of the bracket. "auto" keeps small
    layers on the exact solver and otherwise picks the route of the smallest predicted cost
    (:mod:`anglesim.fisher._cost`).

    Precision (``precision``): where float32 rounding could exceed ``rtol`` ("auto": from
    4,096 noisy inputs, i.e. 64² pixels, for a float32 model; "float64" always; "model"
    never), the products run in float64 through the gates (ReLU masks, pooling winners) of the
    model's own pass at each image (:mod:`anglesim.fisher._gates`), so they linearise the
    same network. What ``fisher_error`` is, per layer, is the coordinate ``error_kind``:
    "exact" (closed forms; exact and sparse solves with float64 products: rounding of float64
    only), "bound" (the Krylov bracket's half-width with float64 products: a bound on the
    distance to the linearised network's J, up to float64 rounding) or "estimate" (the
    first-order effect of float32 products' rounding, times four, added to any bracket; or
    ``certify=False``). No ``fisher_error`` covers what the linearisation itself leaves out
    (the noise's size, ties at kinks, the ridge ε: ``sensitivity=True`` gives dJ/d log ε).

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
        solver: "exact", "sparse", "krylov" or "auto".
        rtol: Krylov's relative tolerance on J, in (0, 1).
        maxiter: most Golub–Kahan iterations per layer and chunk (`MAXITER`, 20,000: the
            deepest solves measured, ResNet layer2 and layer3 at 224 px, took 5,079 and 3,677).
        decode: callable from the model's outputs to θ̂ [N], for "output".
        force: run even when the cost guard estimates more memory than is free or hours.
        precision: "auto", "model" (the model's dtype) or "float64": the products' dtype.
        certify: True: Krylov stops on the certified bracket; False: on an error estimate.
        warm_start: start each Krylov solve from the previous layer's pixel-space solution
            (where the layer has at least as many units as that one).
        reorthogonalize: reorthogonalise Krylov vectors where memory and cost allow.
        sensitivity: also give dJ/d log ε (coordinate ``dfisher_dlog_eps``).
        pool_ties: "warn" (default): a `~anglesim.pool_ties.PoolTieWarning` when tied max-pool
            windows receive noise (once per process and set of pooling layers); "record":
            the caller knows (a study's own standard stimulus): the counts go to attrs as
            always, without the warning.

    Returns:
        DataArray "fisher", dims ("layer", "angle"), coordinates fisher_error, iterations,
        solver (the route each layer took), error_kind (and dfisher_dlog_eps); attrs
        method="propagated", sigma, eps, ridge, solver, rtol, (precision,) quantity,
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
        t_pass = pass_seconds(model, x0, dev) * min(chunk_size, item_theta.numel())
        site0 = net.site_activations(x0, noise_at)
    names = net.resolve(layers, allowed=net.downstream(noise_at))
    net.check_measurable(names)
    if noise_at == INPUT:
        variance, sigma_used, noise_model = pixel_variance(stim, sigma, x0.shape[1:], dev)
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

    with eval_mode(model), torch.enable_grad():
        plan = make_plan(net, names, noise_at, variance, site0.detach(), x0, chunk_size,
                         item_theta.numel(), t_pass, dtype, dev, solver, args["precision"],
                         args["reorthogonalize"], maxiter, force)
    attrs.update(
        sigma=sigma_used, eps=float(eps), solver=solver, rtol=float(rtol),
        ridge="eps * diag(A Sigma_x A^T) (each unit's own variance) added to A Sigma_x A^T",
        quantity=(
            "linearised Fisher information about the orientation theta carried by each "
            f"layer's activations, for additive Gaussian {where} propagated through the "
            "network's Jacobian at the noiseless image: "
            "J = (A xdot)^T (A Sigma_x A^T + eps diag(A Sigma_x A^T))^-1 (A xdot)"),
        noise_model=noise_model)
    if args["precision"] != "auto" or plan.products64:
        attrs["precision"] = ("float64 products through the model's own gates"
                              if plan.products64 else "products in the model's dtype")
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
        solve = Solver(net, stim, names, plan.routes, variance, eps, rtol, maxiter, noise_at,
                       plan.products64, certify=args["certify"],
                       warm_start=args["warm_start"], reorthogonalize=plan.reorthogonalize,
                       sensitivity=args["sensitivity"], windows=dict(plan.windows))
        for lo in range(0, item_theta.numel(), chunk_size):
            hi = min(lo + chunk_size, item_theta.numel())
            out.append(solve.chunk(item_theta[lo:hi], sliced(item_phase, lo, hi)))
    res = torch.cat(out, dim=2).reshape(4, len(names), theta.numel(), n_ph)
    values, errors = res[0].mean(-1), res[1].mean(-1)
    iters = res[2].amax(-1)
    used = {n: solve.used.get(n, plan.routes.get(n, "closed_form")) for n in names}
    not_conv = [n for n in names if n in solve.stalled]
    if not_conv:
        warnings.warn(f"Krylov solver did not reach rtol={rtol:g} within maxiter={maxiter} "
                      f"for layers {not_conv}: see fisher_error", UserWarning, stacklevel=2)
    da = fisher_dataarray(values.cpu().numpy(), to_numpy(angles, "angles"), names,
                          "propagated", **attrs)
    coords: dict[str, Any] = {
        "fisher_error": (("layer", "angle"), errors.cpu().numpy()),
        "iterations": (("layer", "angle"), iters.cpu().numpy().astype(np.int64)),
        "solver": ("layer", np.array([used[n] for n in names], dtype=object)),
        "error_kind": ("layer", np.array([solve.kinds.get(n, "exact") for n in names],
                                         dtype=object)),
    }
    if args["sensitivity"]:
        coords["dfisher_dlog_eps"] = (("layer", "angle"), res[3].mean(-1).cpu().numpy())
    return da.assign_coords(coords)
