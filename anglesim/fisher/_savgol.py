"""The reference research's smoothed-derivative estimator, `savgol_fisher`.

One noisy sample per angle on a dense grid, a wrapped Savitzky–Golay derivative, the output
covariance from repeated samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.signal import savgol_coeffs, savgol_filter

from .. import angles as ang
from .. import validation as check
from ._base import DECODE, DEVICE, GENERATOR, MODEL, OUTPUT, fisher_dataarray
from ._network import Network
from ._sampled import sample_responses
from ._stimulus import STIMULUS, as_stimulus

__all__ = ["SAVGOL_OUTPUTS", "savgol_fisher"]


SAVGOL_OUTPUTS = ("decoded", "raw")
OPTIONS = {
    "n_dense": check.Integer(minimum=3),
    "n_cov_angles": check.Integer(minimum=1),
    "n_cov_samples": check.Integer(minimum=2),
    "window": check.Integer(minimum=3),
    "polyorder": check.Integer(minimum=1),
    "batch_size": check.Integer(minimum=1),
    "output": check.Choice(SAVGOL_OUTPUTS),
    "bias_corrected": check.Boolean(),
}
"""`savgol_fisher`'s options (``measure_fisher(savgol_options=...)`` takes them)."""
PARAMETERS = {"model": MODEL, "spec": STIMULUS, **OPTIONS, "generator": GENERATOR,
              "decode": DECODE, "device": DEVICE}


def savgol_fisher(
    model: torch.nn.Module,
    spec: Any,
    n_dense: int = 10_000,
    n_cov_angles: int = 500,
    n_cov_samples: int = 500,
    window: int = 501,
    polyorder: int = 3,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    *,
    output: str = "decoded",
    bias_corrected: bool = False,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> xr.DataArray:
    """FI from a Savitzky–Golay derivative of single noisy samples on a dense angle grid.

    The estimator of the research anglesim grows from, for comparison with the others:

    1. one noisy image (the spec's own noise) at each of ``n_dense`` angles
       θ_k = kπ/n_dense, run through the network;
    2. the mean response's derivative f′(θ_k) by a Savitzky–Golay filter (Savitzky & Golay
       1964, Anal Chem 36: 1627) of order ``polyorder`` over ``window`` neighbouring angles
       (odd), with ``mode="wrap"``: the responses are periodic in θ with period π, so the
       filter wraps around from π back to 0 instead of padding;
    3. the response covariance Σ(φ_j) from ``n_cov_samples`` noisy images at each of
       ``n_cov_angles`` angles φ_j = jπ/n_cov_angles, linearly interpolated (periodically)
       to the dense grid — a convex combination of covariance matrices, so it stays positive
       semi-definite;
    4. J(θ_k) = f′ᵀ Σ⁻¹ f′.

    ``output`` says which response:

    * ``"decoded"`` (default): the decoded angle θ̂ = model.decode(...). Its single-sample
      error e = θ̂ − θ, wrapped to [−π/2, π/2), is periodic, so f′ = 1 + e′ with e′ the wrapped
      SG derivative, and Σ is the variance of θ̂ around its circular mean (deviations wrapped
      to [−π/2, π/2)). J = (∂E[θ̂]/∂θ)² / Var(θ̂) is then the output (estimator) FI of
      Cramér–Rao with bias, the quantity a discrimination threshold reflects.
    * ``"raw"``: the network's whole raw output vector (the reference applies the filter to
      its two (cos 2θ, sin 2θ) units) and its D × D covariance: the linear FI of the output
      vector, which is ≥ that of θ̂ for a locally linear decode (data processing). Raw
      outputs are periodic in θ because the images are; an "angle" readout's raw output has a
      jump at its wrap point, which the filter smears, so prefer "decoded" there.

    Biases: single samples make f′ noisy, and E[f̂′ᵀΣ⁻¹f̂′] = J + D Σ_k c_k² for independent
    samples with locally constant covariance (c the filter's derivative coefficients, D the
    response dimension); that excess is stored as attrs["derivative_noise_bias"] and subtracted
    when ``bias_corrected=True`` (the reference does not subtract it). A window wide against the
    curve's structure flattens f′ (smoothing bias); a narrow one raises the noise term. Random
    phases (``spec.phase`` None) make every quantity phase-marginal.

    Returns a DataArray "fisher" over the ``n_dense`` angles (dims ("angle",)), with
    coordinates ``derivative`` and ``variance`` (decoded output only) and attrs method
    "savgol", quantity, window, polyorder, the counts, output and derivative_noise_bias.
    """
    args = check.validate(locals(), PARAMETERS)
    n_dense, n_cov_angles = args["n_dense"], args["n_cov_angles"]
    n_cov_samples, window, polyorder = args["n_cov_samples"], args["window"], args["polyorder"]
    output, bias_corrected = args["output"], args["bias_corrected"]
    if window % 2 == 0 or window > n_dense:
        raise check.fail("window", f"odd and <= n_dense={n_dense}", window)
    if polyorder >= window:
        raise check.fail("polyorder", f"< window={window}", polyorder)
    stim = as_stimulus(spec)
    net = Network(model, decode)
    if output == "decoded" and not net.decoded:
        raise ValueError("decode must be given for output='decoded' on a model without a "
                         "decode method, got None")
    # the raw output vector: an anglesim model's last block, else "output" without decoding
    layer = OUTPUT if output == "decoded" or not net.native else net.blocks[-1]
    dec = decode if output == "decoded" else None
    if output == "raw" and not net.native:
        model = _Raw(model)
    step = math.pi / n_dense
    dense = np.arange(n_dense) * step
    single = sample_responses(model, stim, dense, layer, generator, batch_size, decode=dec,
                              device=device)[layer]
    phi = np.arange(n_cov_angles) * (math.pi / n_cov_angles)
    repeated = sample_responses(model, stim, np.repeat(phi, n_cov_samples), layer, generator,
                                batch_size)[layer].reshape(n_cov_angles, n_cov_samples, -1)
    filt = dict(window_length=window, polyorder=polyorder, deriv=1, delta=step, mode="wrap")
    coeff_sq = float((savgol_coeffs(window, polyorder, deriv=1, delta=step) ** 2).sum())
    coords: dict[str, Any] = {}
    if output == "decoded":
        err = ang.difference(single[:, 0], dense)
        deriv = 1.0 + savgol_filter(err, axis=0, **filt)
        samples = repeated[..., 0]
        centre = ang.circular_mean(samples, axis=1)
        dev = ang.difference(samples, centre[:, None])
        var = (dev**2).sum(1) / (n_cov_samples - 1)
        var_dense = np.interp(dense, phi, var, period=math.pi)
        if (var_dense <= 0).any():
            raise ValueError("the decoded angle does not vary over noise samples somewhere: "
                             "its Fisher information is undefined (noise-free spec?)")
        fisher = deriv**2 / var_dense
        n_dims = 1
        coords = {"derivative": ("angle", deriv), "variance": ("angle", var_dense)}
    else:
        deriv = savgol_filter(single, axis=0, **filt)  # [n_dense, D]
        n_dims = single.shape[1]
        centred = repeated - repeated.mean(1, keepdims=True)
        cov = np.einsum("asi,asj->aij", centred, centred) / (n_cov_samples - 1)
        flat = cov.reshape(n_cov_angles, -1)
        cov_dense = np.stack([np.interp(dense, phi, flat[:, c], period=math.pi)
                              for c in range(flat.shape[1])], axis=1)
        cov_dense = cov_dense.reshape(n_dense, n_dims, n_dims)
        try:
            sol = np.linalg.solve(cov_dense, deriv[..., None])[..., 0]
        except np.linalg.LinAlgError as err:
            raise ValueError("the output covariance is singular at some angle: its linear "
                             "Fisher information is undefined (use output='decoded')") from err
        fisher = (deriv * sol).sum(1)
    bias = n_dims * coeff_sq
    if bias_corrected:
        fisher = fisher - bias
    da = fisher_dataarray(
        fisher, dense, None, "savgol",
        quantity=(
            ("output (estimator) Fisher information of the decoded angle, "
             "(dE[theta_hat]/dtheta)^2 / Var(theta_hat)" if output == "decoded" else
             "linear Fisher information of the raw network output vector, f'^T Sigma^-1 f'")
            + ", with f' a wrapped Savitzky-Golay derivative of single noisy samples on a "
            "dense grid and the covariance from repeated samples, interpolated periodically"
        ),
        output=output, window=window, polyorder=polyorder, n_dense=n_dense,
        n_cov_angles=n_cov_angles, n_cov_samples=n_cov_samples,
        derivative_noise_bias=bias, bias_corrected=int(bias_corrected),
        noise_model=stim.describe(),
    )
    return da.assign_coords(coords)


class _Raw(torch.nn.Module):
    """A module wrapped so that it has no ``decode``: "output" is then its raw vector."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)
