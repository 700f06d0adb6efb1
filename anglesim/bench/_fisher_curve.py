"""Section ``fisher_curve``: the whole FI curve of the reference MLP on the reference stimulus.

The FI curve at 100 angles of the reference MLP on the reference stimulus (clamped
Bernoulli–Gaussian noise): the reference research's (lrast/angleFinetuning) smoothed-derivative
recipe
(:func:`anglesim.fisher.savgol_fisher`) against the bias-corrected sampled linear estimator with
far fewer forward passes, each scored by its error against a high-sample ground truth (the same
bias-corrected estimator with many samples). Goal: the same or smaller error in ≥ 100× less
time.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .. import fisher
from ..distributions import Uniform
from ..models import reference_mlp
from ..seeding import torch_generator
from ..stimuli import GratingSpec
from ..training import Phase, train
from ._harness import Context, Goal, torch_threads

CURVE_DTHETA = 0.1
"""Δθ (rad) of the sampled estimators of this section: the central difference's bias is O(Δθ²)
(about 0.7% of FI for a (cos 2θ, sin 2θ) readout at 0.1 rad), while the estimator's variance
grows as Δθ shrinks (its 8/(JΔθ²) term)."""


def _trained_reference_mlp(spec: Any, steps: int, seed: int = 0) -> torch.nn.Module:
    """The reference MLP trained for ``steps`` steps (batch 64, uniform prior, cosine loss)
    on the reference stimulus, so that its FI curve has a trained network's structure."""
    torch.manual_seed(seed)
    model = reference_mlp(spec.size)
    phase = Phase("train", Uniform(), spec, loss="cosine", lr=1e-3, epochs=1,
                  steps_per_epoch=steps, batch_size=64, eval_angles=8, eval_repeats=1)
    train(model, [phase], seed)
    return model.eval()


def bench_fisher_curve(ctx: Context) -> None:
    """The whole FI curve of the reference MLP on the reference stimulus.

    The reference research's recipe (:func:`anglesim.fisher.savgol_fisher` with its raw
    output vector, as the reference did) against the bias-corrected sampled linear estimator
    (:func:`anglesim.fisher.sampled_fisher` of the same output vector) with far fewer forward
    passes, each scored by its relative L2 error over the angles against the same
    bias-corrected estimator with many trials (the ground truth, computed with all cores).
    """
    savgol = getattr(fisher, "savgol_fisher", None)
    sampled = getattr(fisher, "sampled_fisher", None)
    if savgol is None or sampled is None:
        ctx.add("fisher_curve", "not run: anglesim.fisher has no savgol_fisher / "
                "sampled_fisher", math.nan, "", Goal(">=", 100))
        return
    sz = ctx.sizes
    spec = GratingSpec.reference()
    model = _trained_reference_mlp(spec, sz.curve_train_steps)
    layer = model.block_names[-1]  # the raw output vector (cos 2θ, sin 2θ)
    n = sz.curve_angles
    counts = dict(sz.curve_savgol)
    if counts["n_dense"] % n:
        raise ValueError(f"n_dense={counts['n_dense']} must be a multiple of {n} angles")
    angles = np.arange(n) * (math.pi / n)

    started = time.perf_counter()
    sg = savgol(model, spec, generator=torch_generator(1, "bench"), output="raw", **counts)
    t_savgol = time.perf_counter() - started
    every = counts["n_dense"] // n
    sg_values = sg.values[::every]
    sg_corrected = sg_values - float(sg.attrs["derivative_noise_bias"])
    passes_savgol = counts["n_dense"] + counts["n_cov_angles"] * counts["n_cov_samples"]

    def curve(trials: int, seed: int) -> np.ndarray:
        return sampled(model, spec, angles, layers=layer, dtheta=CURVE_DTHETA,
                       n_trials=trials, generator=torch_generator(seed, "bench")).values[0]

    ctx.log(f"  ground truth: {2 * sz.curve_truth_trials * n:,} forward passes …")
    started = time.perf_counter()
    with torch_threads(ctx.cores):
        truth = curve(sz.curve_truth_trials, 2)
    t_truth = time.perf_counter() - started
    truth_se = math.sqrt(float(np.mean(fisher.linear_fisher_variance(
        np.maximum(truth, 0), sz.curve_truth_trials, 2, CURVE_DTHETA) / truth**2)))
    err_savgol = _relative_error(sg_values, truth)
    fast: list[dict[str, Any]] = []
    for trials in sz.curve_fast_trials:
        started = time.perf_counter()
        est = curve(trials, 3)
        seconds = time.perf_counter() - started
        fast.append({"trials": trials, "seconds": seconds, "passes": 2 * trials * n,
                     "error": _relative_error(est, truth)})
        if fast[-1]["error"] <= err_savgol:
            break
    chosen = fast[-1]
    reached = chosen["error"] <= err_savgol
    ctx.add("fisher_curve", f"reference recipe, savgol_fisher ({passes_savgol:,} passes)",
            t_savgol, "s", note=f"error {err_savgol:.2g}")
    for f in fast:
        ctx.add("fisher_curve", f"sampled linear FI, {f['trials']} trials per side "
                f"({f['passes']:,} passes)", f["seconds"], "s", note=f"error {f['error']:.2g}")
    ctx.add("fisher_curve", "time saved at the same or smaller error",
            t_savgol / chosen["seconds"] if reached else math.nan, "×", Goal(">=", 100),
            note=f"{chosen['trials']} trials per side" if reached else
            "no trial count tried reached the recipe's error")
    ctx.details["fisher_curve"] = {
        "model": f"reference_mlp({spec.size}) trained {sz.curve_train_steps} steps",
        "stimulus": "GratingSpec.reference() (clamped Bernoulli-Gaussian noise)",
        "layer": layer, "angles": n, "dtheta": CURVE_DTHETA,
        "savgol": {**counts, "output": "raw", "seconds": t_savgol, "passes": passes_savgol,
                   "error": err_savgol,
                   "error_bias_corrected": _relative_error(sg_corrected, truth),
                   "derivative_noise_bias": float(sg.attrs["derivative_noise_bias"])},
        "truth": {"estimator": "sampled_fisher bias_corrected (Kanitscheider et al. 2015)",
                  "trials_per_side": sz.curve_truth_trials, "seconds": t_truth,
                  "threads": ctx.cores, "relative_standard_error": truth_se,
                  "mean_fisher": float(np.mean(truth))},
        "fast": fast,
        "error_metric": "relative L2 error over the angles against the ground truth; it "
                        "includes the ground truth's own sampling error "
                        "(relative_standard_error)",
        "train_steps": sz.curve_train_steps,
    }


def _relative_error(values: np.ndarray, truth: np.ndarray) -> float:
    """‖values − truth‖₂ / ‖truth‖₂ over the angles."""
    return float(np.sqrt(((values - truth) ** 2).sum() / (truth**2).sum()))
