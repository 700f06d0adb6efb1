"""Section ``fisher``: the propagated estimator against finite differences at equal accuracy.

The propagated estimator's time per angle (:func:`anglesim.fisher.propagated_fisher` with its
exact, Jacobian-forming solver, every layer of a briefly trained default CNN, standard
stimulus without its aperture, see :func:`bench_fisher`) against a per-angle loop that gets
the same Jacobians by central finite differences, at equal or better accuracy: both are scored
against the propagated estimator run in float64, and the cheapest finite-difference variant at
least as accurate as the float32 estimator is the baseline. Goal: ≥ 20×.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import angles as ang
from ..data import evaluation_grid
from ..distributions import Uniform
from ..fisher import propagated_fisher
from ..models import build_model
from ..stimuli import render_clean
from ..training import Phase, train
from ._harness import Context, Goal, top_ops
from ._workloads import STANDARD_SPEC, standard_cnn


def trained_cnn(steps: int, seed: int = 0) -> torch.nn.Module:
    """The default CNN after ``steps`` training steps on the standard stimulus (uniform prior),
    so that its Fisher information has the structure of a trained network."""
    torch.manual_seed(seed)
    model = build_model(standard_cnn())
    phase = Phase("pretrain", Uniform(), STANDARD_SPEC, loss="cosine", lr=2e-3, epochs=1,
                  steps_per_epoch=steps, batch_size=64, eval_angles=8, eval_repeats=1)
    train(model, [phase], seed)
    return model.eval()


def _ridge_fisher(a: torch.Tensor, xdot: torch.Tensor, variance: float, eps: float) -> float:
    """J = (Aẋ)ᵀ(σ²AAᵀ + ε D)⁻¹(Aẋ), D = diag(σ²AAᵀ), in float64 (A: [N, P]).

    The same quantity as :func:`anglesim.fisher.propagated_fisher` for pixel noise σ²I, written
    out plainly: the ridge is ε times each unit's own noise variance, and units with D_i = 0
    (no response to any pixel) are left out. With B̃ = D^{-1/2}σA and u = ẋ/σ,
    J = (B̃u)ᵀ(B̃B̃ᵀ + εI)⁻¹(B̃u): the N × N system for N ≤ P, else the P × P one
    uᵀ(B̃ᵀB̃ + εI)⁻¹B̃ᵀB̃u (push-through identity).
    """
    sigma = math.sqrt(variance)
    b = a.double() * sigma
    u = xdot.double() / sigma
    d = (b * b).sum(1)
    b = b[d > 0] / d[d > 0].sqrt()[:, None]
    n_units, n_pix = b.shape
    if n_units == 0:
        return 0.0
    if n_units <= n_pix:
        gram = b @ b.T
        left = right = b @ u
    else:
        gram = b.T @ b
        left, right = u, gram @ u
    shifted = gram + eps * torch.eye(gram.shape[0], dtype=gram.dtype)
    return float(left @ torch.linalg.solve(shifted, right))


def finite_difference_fisher(model: torch.nn.Module, spec: Any, angles: Sequence[float],
                             dtype: torch.dtype = torch.float64, step: float = 1e-6,
                             eps: float = 1e-6, chunk: int = 256) -> np.ndarray:
    """Propagated Fisher information with every derivative from central finite differences.

    The baseline of the Fisher benchmark: for each angle in turn, ẋ = (x(θ + h) − x(θ − h))/2h
    and each layer's Jacobian column j = (r(x + δeⱼ) − r(x − δeⱼ))/2δ from 2P perturbed images
    (P pixels, run through the network in batches of ``chunk``, every layer read from the same
    passes), then the same formula as :func:`anglesim.fisher.propagated_fisher` with pixel
    noise σ²I (``spec.noise_std``): "input" ẋᵀẋ/σ², each block (Aẋ)ᵀ(σ²AAᵀ + ε D)⁻¹(Aẋ),
    "output" (aᵀẋ)²/(σ² aᵀa) for the decoded angle. Returns [layers, angles] in the order
    input, blocks, output. The network runs in ``dtype``; δ = ``step``, h = 10⁻⁵ (float64) or
    10⁻³ (float32). One-channel specs only.
    """
    if not spec.gaussian_noise_only or spec.mask_after_noise:
        raise ValueError("finite_difference_fisher needs additive Gaussian noise on every pixel")
    if spec.channels != 1:
        raise ValueError(f"finite_difference_fisher covers one-channel specs, got "
                         f"channels={spec.channels}")
    net = copy.deepcopy(model).to(dtype).eval()
    names = list(net.block_names)
    variance = spec.noise_std**2
    p = spec.size**2
    h_theta = 1e-5 if dtype == torch.float64 else 1e-3
    out = np.zeros((len(names) + 2, len(angles)))
    with torch.no_grad():
        for k, theta in enumerate(angles):
            t = torch.tensor([float(theta)], dtype=torch.float64)
            x0 = render_clean(t, spec, dtype=dtype).reshape(1, p)
            xdot = ((render_clean(t + h_theta, spec, dtype=torch.float64)
                     - render_clean(t - h_theta, spec, dtype=torch.float64))
                    / (2 * h_theta)).reshape(p)
            columns: dict[str, list[torch.Tensor]] = {name: [] for name in names}
            decoded: list[torch.Tensor] = []
            for start in range(0, p, chunk):
                stop = min(start + chunk, p)
                bump = torch.zeros(stop - start, p, dtype=dtype)
                bump[torch.arange(stop - start), torch.arange(start, stop)] = step
                plus = net.activations((x0 + bump).reshape(-1, 1, spec.size, spec.size))
                minus = net.activations((x0 - bump).reshape(-1, 1, spec.size, spec.size))
                for name in names:
                    columns[name].append(((plus[name] - minus[name]).reshape(stop - start, -1)
                                          / (2 * step)).double())
                diff = ang.difference(net.decode(plus[names[-1]]), net.decode(minus[names[-1]]))
                decoded.append(diff.double() / (2 * step))
            out[0, k] = float(xdot @ xdot) / variance
            for i, name in enumerate(names, start=1):
                jac = torch.cat(columns[name]).T  # [N, P]
                out[i, k] = _ridge_fisher(jac, xdot, variance, eps)
            a = torch.cat(decoded)
            den = variance * float(a @ a)
            out[-1, k] = float(a @ xdot) ** 2 / den if den > 0 else 0.0
    return out


def curve_error(values: np.ndarray, reference: np.ndarray) -> float:
    """Largest, over layers, relative L2 error over angles: ‖J − J_ref‖ / ‖J_ref‖."""
    return float(np.max(layer_errors(values, reference)))


def layer_errors(values: np.ndarray, reference: np.ndarray) -> list[float]:
    """Per layer (rows), the relative L2 error over angles (columns) against ``reference``."""
    num = np.sqrt(((values - reference) ** 2).sum(-1))
    den = np.sqrt((reference**2).sum(-1))
    return [float(x) for x in num / np.where(den > 0, den, 1.0)]


def bench_fisher(ctx: Context) -> None:
    """The propagated estimator against a finite-difference loop, at equal accuracy."""
    sz = ctx.sizes
    # Without the aperture: at the noiseless image the aperture's blank corners are exactly 0,
    # every first-layer unit there equals its bias, and max-pooling meets exact ties, where the
    # network is not differentiable; autodiff then takes the first maximum's one-sided
    # derivative and central differences the mean of both sides, so neither would score
    # against the other. Without blank pixels the derivatives exist and both are scored
    # against the float64 reference. Timings do not depend on it (same sizes).
    spec = STANDARD_SPEC.replace(aperture=None)
    model = trained_cnn(sz.fisher_train_steps)
    grid = evaluation_grid(sz.fisher_angles) + 0.1  # off the grid's symmetric points
    angles = grid.double().numpy()
    exact = {"solver": "exact"}  # the Jacobian-forming estimator
    propagated_fisher(model, spec, grid[:1], **exact)  # warm-up
    reps = 1 if ctx.mode != "full" else 2
    t_prop = math.inf
    for _ in range(reps):
        started = time.perf_counter()
        prop = propagated_fisher(model, spec, grid, **exact)
        t_prop = min(t_prop, (time.perf_counter() - started) / len(angles))
    started = time.perf_counter()
    reference = propagated_fisher(copy.deepcopy(model).double(), spec, grid.double(), **exact)
    t_ref = (time.perf_counter() - started) / len(angles)
    layers = [str(v) for v in reference["layer"].values]
    ref = reference.values
    err_prop = curve_error(prop.values, ref)
    variants: list[dict[str, Any]] = []
    for dtype_name, step in sz.fd_steps:
        dtype = getattr(torch, dtype_name)
        started = time.perf_counter()
        fd = finite_difference_fisher(model, spec, angles, dtype=dtype, step=step)
        seconds = (time.perf_counter() - started) / len(angles)
        variants.append({"dtype": dtype_name, "step": step, "seconds_per_angle": seconds,
                         "error": curve_error(fd, ref),
                         "error_by_layer": dict(zip(layers, layer_errors(fd, ref),
                                                    strict=True))})
    good = [v for v in variants if v["error"] <= err_prop]
    chosen = min(good, key=lambda v: v["seconds_per_angle"]) if good else \
        min(variants, key=lambda v: v["error"])
    ctx.add("fisher", "propagated (float32), every layer", t_prop * 1e3, "ms/angle",
            note=f"error {err_prop:.2g}")
    for v in variants:
        ctx.add("fisher", f"finite differences ({v['dtype']}, δ = {v['step']:g})",
                v["seconds_per_angle"] * 1e3, "ms/angle", note=f"error {v['error']:.2g}")
    ctx.add("fisher", "speed-up over finite differences at equal accuracy",
            chosen["seconds_per_angle"] / t_prop, "×", Goal(">=", 20),
            note=f"baseline: {chosen['dtype']}, δ = {chosen['step']:g}"
                 + ("" if good else " (none as accurate: the most accurate one)"))
    details = {
        "angles": angles.tolist(), "layers": layers,
        "propagated_seconds_per_angle": t_prop, "propagated_error": err_prop,
        "propagated_error_by_layer": dict(zip(layers, layer_errors(prop.values, ref),
                                              strict=True)),
        "reference": "propagated_fisher on a float64 copy of the model",
        "reference_seconds_per_angle": t_ref, "finite_differences": variants,
        "chosen_baseline": {k: chosen[k] for k in ("dtype", "step")},
        "train_steps": sz.fisher_train_steps,
        "error_metric": "max over layers of the relative L2 error over angles against the "
                        "float64 reference",
    }
    if ctx.mode != "smoke":
        details["profile_propagated"] = top_ops(
            lambda: propagated_fisher(model, spec, grid[:1], **exact))
    ctx.details["fisher"] = details
