"""Output-noise models: Fisher information with noise added to a layer's own units."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import xarray as xr
from torch.func import jvp

from .. import validation as check
from ._base import (
    ANGLES,
    DECODE,
    DEFAULT_N_PHASES,
    DEVICE,
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
from ._network import Network
from ._stimulus import STIMULUS, as_stimulus

__all__ = ["OUTPUT_NOISE_MODELS", "output_noise_fisher"]


OUTPUT_NOISE_MODELS = ("gaussian", "poisson")
PARAMETERS = {
    "model": MODEL, "spec": STIMULUS, "angles": ANGLES, "layers": LAYERS,
    "noise": check.Choice(OUTPUT_NOISE_MODELS),
    "sigma": check.Real(minimum=0.0, min_open=True),
    "gain": check.Real(minimum=0.0, min_open=True),
    "baseline": check.Real(),
    "phases": PHASES,
    "chunk_size": check.Integer(minimum=1),
    "device": DEVICE,
    "decode": DECODE,
}


def output_noise_fisher(
    model: torch.nn.Module,
    spec: Any,
    angles: ArrayLike,
    layers: Sequence[str] | None = None,
    noise: str = "gaussian",
    sigma: float = 1.0,
    gain: float = 1.0,
    baseline: float = 0.0,
    phases: ArrayLike | None = None,
    chunk_size: int = 256,
    device: torch.device | str | None = None,
    *,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
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

    The layers are those of `list_layers` but "input": an anglesim model's blocks ("head"
    being the raw output), any module's dotted names, and "output" — for Gaussian noise,
    noise of variance σ² on the decoded angle θ̂ (J = (∂θ̂/∂θ)²/σ²) when the model decodes
    (a ``decode`` method or ``decode=``), else the raw output vector (then Poisson too).
    Default: every block or top-level child (and "output" where it applies). Random phase or
    explicit ``phases``: the phase-conditional FI averaged over phases, as in
    `propagated_fisher`. Noise injected at a layer and propagated downstream is
    `propagated_fisher` with ``noise_at``.
    """
    args = check.validate(locals(), PARAMETERS)
    noise, sigma, gain = args["noise"], args["sigma"], args["gain"]
    baseline, chunk_size = args["baseline"], args["chunk_size"]
    stim = as_stimulus(spec)
    model, dev, dtype = model_on_device(model, device)
    net = Network(model, decode)
    theta = angles_tensor(angles, dev, dtype)
    allowed = net.blocks + ([OUTPUT] if noise == "gaussian" or not net.decoded else [])
    default = [n for n in net.default_layers if n in allowed]
    names = net.resolve(layers, allowed=allowed, default=default)
    if not net.native:
        with eval_mode(model), torch.no_grad():
            net.probe(stim.clean(theta[:1], None if stim.spec is None else
                                 torch.zeros(1, dtype=dtype, device=dev)))
        net.check_measurable(names)
        names = net.order(names)
    if phases is None and stim.random_phase:
        phases = torch.arange(DEFAULT_N_PHASES, dtype=torch.float64) * (
            2 * math.pi / DEFAULT_N_PHASES)
    phi = None if phases is None else angles_tensor(phases, dev, dtype, name="phases")
    n_ph = 1 if phi is None else phi.numel()
    item_theta = theta.repeat_interleave(n_ph)
    item_phase = None if phi is None else phi.repeat(theta.numel())

    rows = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, item_theta.numel(), chunk_size):
            th = item_theta[start:start + chunk_size]
            ph = sliced(item_phase, start, start + chunk_size)

            def run(a: torch.Tensor, ph: torch.Tensor | None = ph) -> tuple[torch.Tensor, ...]:
                return net.outputs(stim.clean(a, ph), names)

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
                    raise check.fail(
                        "baseline", f"large enough that every unit of layer {name!r} that "
                        f"depends on theta has a rate r + baseline > 0 (min "
                        f"{float(rate[moving].min()):.3g}; a Poisson rate must be positive)",
                        baseline)
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
