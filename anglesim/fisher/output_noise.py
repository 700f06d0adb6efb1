"""Output-noise models: Fisher information with noise added to a layer's own units.

Re-exported by :mod:`anglesim.fisher`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import xarray as xr
from torch.func import jvp

from ..stimuli import render_clean
from .base import (
    DEFAULT_N_PHASES,
    OUTPUT,
    ArrayLike,
    _sl,
    angles_tensor,
    eval_mode,
    fisher_dataarray,
    model_on_device,
    to_numpy,
)

if TYPE_CHECKING:
    from ..stimuli import GratingSpec

__all__ = ["OUTPUT_NOISE_MODELS", "output_noise_fisher"]


OUTPUT_NOISE_MODELS = ("gaussian", "poisson")


def output_noise_fisher(
    model: torch.nn.Module,
    spec: GratingSpec,
    angles: ArrayLike,
    layers: Sequence[str] | None = None,
    noise: str = "gaussian",
    sigma: float = 1.0,
    gain: float = 1.0,
    baseline: float = 0.0,
    phases: ArrayLike | None = None,
    chunk_size: int = 256,
    device: torch.device | str | None = None,
) -> xr.DataArray:
    """FI of each layer when the noise is added to that layer's own units (noiseless input).

    With v = ∂r/∂θ = A ẋ the derivative of the layer's activations r(x(θ)) (one jvp through
    the renderer and the network, no Jacobian):

    * ``noise="gaussian"``: r + n, n ~ N(0, σ² I) — J = ‖A ẋ‖² / σ²;
    * ``noise="poisson"``: Poisson-like, independent units with variance equal to
      ``gain`` × mean, the mean being the rate f = r + ``baseline`` — J = Σ_i v_i² / (gain f_i)
      (Seung & Sompolinsky 1993, PNAS 90: 10749, for gain 1). Units with v_i = 0 add nothing
      (silent ReLUs); a unit with f_i ≤ 0 and v_i ≠ 0 is an error (raise ``baseline``): a
      Poisson rate must be positive. The mean-term (linear) FI: the full Gaussian FI of a
      variance that follows the mean adds ½ Σ (v_i/f_i)², see `gaussian_fisher`.

    The layers are the model's blocks ("head" being the raw output) and, for Gaussian noise
    only, "output" (noise of variance σ² on the decoded angle θ̂: J = (∂θ̂/∂θ)²/σ²). Default:
    every block (and "output" for Gaussian noise). Random phase or explicit ``phases``: the
    phase-conditional FI averaged over phases, as in `propagated_fisher`. Noise injected at a
    block and propagated downstream is `propagated_fisher` with ``noise_at``.
    """
    if noise not in OUTPUT_NOISE_MODELS:
        raise ValueError(f"noise must be one of {list(OUTPUT_NOISE_MODELS)}, got {noise!r}")
    for name, val, low in (("sigma", sigma, 0.0), ("gain", gain, 0.0)):
        if not (isinstance(val, int | float) and math.isfinite(val) and val > low):
            raise ValueError(f"{name} must be a finite number > 0, got {val!r}")
    if not (isinstance(baseline, int | float) and math.isfinite(baseline)):
        raise ValueError(f"baseline must be a finite number, got {baseline!r}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    model, dev, dtype = model_on_device(model, device)
    theta = angles_tensor(angles, dev, dtype)
    blocks = list(model.block_names)
    allowed = blocks + ([OUTPUT] if noise == "gaussian" else [])
    if layers is None:
        names = allowed
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise ValueError(f"layers {names!r} must be a non-empty subset of {allowed} for "
                             f"noise={noise!r}")
        names = [n for n in allowed if n in set(names)]
    if phases is None and spec.phase is None:
        phases = torch.arange(DEFAULT_N_PHASES, dtype=torch.float64) * (
            2 * math.pi / DEFAULT_N_PHASES)
    phi = None if phases is None else angles_tensor(phases, dev, dtype, name="phases")
    n_ph = 1 if phi is None else phi.numel()
    item_theta = theta.repeat_interleave(n_ph)
    item_phase = None if phi is None else phi.repeat(theta.numel())
    last = len(blocks) if OUTPUT in names else blocks.index(names[-1]) + 1

    rows = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, item_theta.numel(), chunk_size):
            th = item_theta[start:start + chunk_size]
            ph = _sl(item_phase, start, start + chunk_size)

            def run(a: torch.Tensor, ph: torch.Tensor | None = ph) -> tuple[torch.Tensor, ...]:
                h, outs = render_clean(a, spec, ph), []
                for name in blocks[:last]:
                    h = model.blocks[name](h)
                    if name in names:
                        outs.append(h.reshape(h.shape[0], -1))
                if OUTPUT in names:
                    outs.append(model.decode(h).reshape(-1, 1))
                return tuple(outs)

            values, derivs = jvp(run, (th,), (torch.ones_like(th),))
            chunk = []
            for name, r, v in zip(names, values, derivs, strict=True):
                r, v = r.double(), v.double()
                if noise == "gaussian":
                    chunk.append((v * v).sum(1) / sigma**2)
                    continue
                rate = r + baseline
                moving = v != 0
                if (moving & (rate <= 0)).any():
                    raise ValueError(
                        f"layer {name!r} has units with rate r + baseline <= 0 (min "
                        f"{float(rate[moving].min()):.3g}) that depend on theta: a Poisson "
                        f"rate must be positive, raise baseline (got {baseline!r})")
                safe = torch.where(moving, rate, 1.0)
                chunk.append(torch.where(moving, v * v / safe, 0.0).sum(1) / gain)
            rows.append(torch.stack(chunk))
    values = torch.cat(rows, 1).reshape(len(names), theta.numel(), n_ph).mean(-1)
    attrs: dict[str, Any] = {"noise_model": noise}
    if noise == "gaussian":
        attrs.update(sigma=float(sigma), quantity=(
            "Fisher information of each layer with isotropic Gaussian noise N(0, sigma^2 I) "
            "added to its own units (noiseless image): J = |A xdot|^2 / sigma^2"))
    else:
        attrs.update(gain=float(gain), baseline=float(baseline), quantity=(
            "linear Fisher information of each layer with independent Poisson-like noise on "
            "its own units, variance gain * rate, rate = activation + baseline: "
            "J = sum_i v_i^2 / (gain f_i)"))
    if phi is not None:
        attrs["phase_average"] = (
            f"phase-conditional Fisher information averaged over {phi.numel()} grating phases")
        attrs["n_phases"] = int(phi.numel())
    return fisher_dataarray(values.cpu().numpy(), to_numpy(angles, "angles"), names,
                            f"output_{noise}", **attrs)
