"""Losses on the half-circle, registered by name.

A loss *factory* takes the readout (and the bin count, and its own parameters) and returns a
function ``loss(output, theta) -> scalar`` that averages over the batch; ``output`` is the
network output [N, D] for that readout and ``theta`` the true orientations [N] in radians
(period π) — or, for the "scalar" readout, the regression targets. Every distance between
angles goes through :func:`anglesim.angles.difference`, so all angle losses are invariant
under θ → θ + π and continuous across the wrap at 0/π.

Add a loss with the :func:`register_loss` decorator::

    @register_loss("my_loss", readouts=("cossin",))
    def my_loss(readout, n_bins=None, scale=1.0):
        return lambda output, theta: ...

and get it by name with :func:`get_loss`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import angles as ang
from . import validation as check
from .readouts import ANGLE_READOUTS, READOUTS, angle_targets, check_output, decode

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossFactory = Callable[..., LossFn]

LOSSES: dict[str, LossFactory] = {}
"""Registered loss factories by name."""

LOSS_READOUTS: dict[str, tuple[str, ...] | None] = {}
"""Readouts each registered loss accepts (None: any)."""

TARGET_READOUTS: dict[str, tuple[str, ...]] = {"angle": ANGLE_READOUTS,
                                                "photograph": ("classes",)}
"""The readouts a training target needs; any other target (a stimulus property regressed,
e.g. "contrast") needs the "scalar" readout."""

_LOG_PI = math.log(math.pi)


def register_loss(
    name: str, readouts: Sequence[str] | None = None, replace: bool = False
) -> Callable[[LossFactory], LossFactory]:
    """Decorator registering a loss factory under ``name``.

    The factory is called as ``factory(readout, n_bins=n_bins, **params)`` and must return
    ``loss(output, theta) -> scalar tensor``. ``readouts`` lists the readouts it supports
    (None: any); :func:`get_loss` enforces it. Registering an existing name raises ValueError
    unless ``replace=True``.
    """
    check.text("name", name)
    if readouts is not None:
        readouts = tuple(readouts)
        bad = [r for r in readouts if r not in READOUTS]
        if bad or not readouts:
            raise ValueError(
                f"readouts must be a non-empty subset of {list(READOUTS)}, got {readouts!r}"
            )
    if name in LOSSES and not replace:
        raise ValueError(f"loss {name!r} is already registered; pass replace=True to override it")

    def decorator(factory: LossFactory) -> LossFactory:
        if not callable(factory):
            raise ValueError(f"a loss factory must be callable, got {factory!r}")
        LOSSES[name] = factory
        LOSS_READOUTS[name] = readouts
        return factory

    return decorator


def loss_names() -> list[str]:
    """Names of the registered losses, sorted."""
    return sorted(LOSSES)


def get_loss(name: str, readout: str, n_bins: int | None = None, **params) -> LossFn:
    """The loss ``name`` for ``readout``: a function (output [N, D], theta [N]) -> mean loss.

    Raises ValueError for an unknown name (listing the known ones), an unknown readout, a
    readout the loss does not support (naming both), a bad ``n_bins``, and parameters the
    loss does not take or whose values are out of range.
    """
    check.choice("loss", name, loss_names())
    check.choice("readout", readout, READOUTS)
    allowed = LOSS_READOUTS.get(name)
    if allowed is not None and readout not in allowed:
        raise ValueError(
            f"loss {name!r} does not support readout {readout!r}; it needs one of {list(allowed)}"
        )
    if n_bins is not None:
        n_bins = check.integer("n_bins", n_bins, minimum=2)
    factory = LOSSES[name]
    sig = inspect.signature(factory)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not takes_any:
        accepted = [
            p.name
            for p in list(sig.parameters.values())[1:]
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and p.name != "n_bins"
        ]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(
                f"loss {name!r} got unknown parameter(s) {unknown}; it accepts {accepted}"
            )
    return factory(readout, n_bins=n_bins, **params)


def check_loss(name: Any, params: Any = None, *, target: str | None = None,
               param: str = "loss") -> str:
    """Validate a loss choice before any model exists: ``name`` registered, ``params`` a dict
    of parameters the loss takes with valid values, and (``target`` "angle" or a scalar
    property, or "photograph") a loss that supports an angle readout, the "scalar" readout,
    or the "classes" readout (:data:`TARGET_READOUTS`). Returns
    ``name``; the ValueError names ``param`` (``"loss"``, ``"loss_params"``) and the value.
    """
    check.choice(param, name, loss_names())
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise check.fail(f"{param}_params", "a dict of the loss's parameters", params)
    allowed = LOSS_READOUTS.get(name) or READOUTS
    readouts = list(allowed)
    if target is not None:
        wanted = TARGET_READOUTS.get(target, ("scalar",))
        readouts = [r for r in allowed if r in wanted]
        if not readouts:
            need = "an angle readout" if target == "angle" else f"the {wanted[0]!r} readout"
            raise check.fail(param, f"a loss for {need} (target {target!r}); "
                             f"{name!r} supports {list(allowed)}", name)
    get_loss(name, readouts[0], **dict(params))  # unknown parameters and bad values raise
    return name


# --------------------------------------------------------------------------------------------
# helpers


def _theta(output: torch.Tensor, theta: torch.Tensor, readout: str, n_bins: int | None):
    """Validate shapes; return theta as a 1-D tensor in output's dtype/device."""
    check_output(output, readout, n_bins)
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"theta must be a tensor, got {type(theta).__name__}")
    if theta.ndim == 2 and theta.shape[1] == 1:
        theta = theta[:, 0]
    if theta.ndim != 1 or theta.shape[0] != output.shape[0]:
        raise ValueError(
            f"theta must have shape [{output.shape[0]}] to match output {tuple(output.shape)}, "
            f"got {tuple(theta.shape)}"
        )
    return theta.to(dtype=output.dtype, device=output.device)


def _labels(output: torch.Tensor, labels: torch.Tensor, n_bins: int | None) -> torch.Tensor:
    """Validate class indices [N] for a "classes" output [N, K]; return them as long."""
    check_output(output, "classes", n_bins)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or \
            labels.shape[0] != output.shape[0] or labels.is_floating_point() or \
            labels.is_complex() or labels.dtype == torch.bool:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"class labels must be an integer tensor [{output.shape[0]}], "
                         f"got {shape}")
    return labels.to(device=output.device, dtype=torch.long)


# --------------------------------------------------------------------------------------------
# built-in losses


@register_loss("wrapped_mse", readouts=ANGLE_READOUTS)
def wrapped_mse(readout: str, n_bins: int | None = None) -> LossFn:
    """Wrapped squared error: L = mean_i Δ_i², Δ = difference(θ̂, θ) ∈ [−π/2, π/2).

    θ̂ = decode(output, readout), so any angle readout works.
    """

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        theta = _theta(output, theta, readout, n_bins)
        delta = ang.difference(decode(output, readout, n_bins), theta)
        return (delta**2).mean()

    return loss


@register_loss("cosine", readouts=ANGLE_READOUTS)
def cosine(readout: str, n_bins: int | None = None) -> LossFn:
    """Cosine loss on the doubled angle: L = mean_i [1 − cos 2(θ̂_i − θ_i)].

    For the cossin readout it is computed as 1 − û·(cos 2θ, sin 2θ) with û = output/‖output‖,
    which equals 1 − cos 2(θ̂ − θ) exactly (û = (cos 2θ̂, sin 2θ̂)) without the atan2; for other
    readouts θ̂ = decode(output, readout).
    """

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        theta = _theta(output, theta, readout, n_bins)
        if readout == "cossin":
            u = F.normalize(output, dim=1, eps=1e-12)
            return (1 - (u * angle_targets(theta, "cossin")).sum(1)).mean()
        theta_hat = decode(output, readout, n_bins)
        return (1 - torch.cos(2 * ang.difference(theta_hat, theta))).mean()

    return loss


@register_loss("vector_mse", readouts=("cossin",))
def vector_mse(readout: str, n_bins: int | None = None) -> LossFn:
    """Squared error of the output vector: L = mean_i ‖output_i − (cos 2θ_i, sin 2θ_i)‖².

    cossin readout only; penalises the norm of the output as well as its direction.
    """

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        theta = _theta(output, theta, readout, n_bins)
        return ((output - angle_targets(theta, "cossin")) ** 2).sum(1).mean()

    return loss


@register_loss("lp", readouts=ANGLE_READOUTS)
def lp(readout: str, n_bins: int | None = None, p: float = 2.0, eps: float = 1e-3) -> LossFn:
    """Lp loss of the wrapped error: L = mean_i |Δ_i|^p, Δ = difference(θ̂, θ), p > 0.

    For p < 1, |Δ|^p has an infinite gradient at Δ = 0, so the smoothed form
    (Δ² + ε²)^{p/2} − ε^p is used instead (ε = ``eps``, default 1e-3): it is 0 at Δ = 0, has a
    finite (zero) gradient there, and differs from |Δ|^p by at most ε^p. For p >= 1 the exact
    |Δ|^p is used (its gradient at 0 is finite).
    """
    p = check.real("p", p, minimum=0, min_open=True)
    eps = check.real("eps", eps, minimum=0, min_open=True)

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        theta = _theta(output, theta, readout, n_bins)
        delta = ang.difference(decode(output, readout, n_bins), theta)
        if p < 1:
            return ((delta**2 + eps**2) ** (p / 2) - eps**p).mean()
        return (delta.abs() ** p).mean()

    return loss


@register_loss("vonmises_nll", readouts=("cossin",))
def vonmises_nll(readout: str, n_bins: int | None = None) -> LossFn:
    """Von Mises negative log-likelihood with the output as natural parameters on 2θ.

    The output v = κ(cos 2μ, sin 2μ) gives concentration κ = ‖v‖ and mean μ = arg(v)/2 of
    p(θ) = exp(κ cos 2(θ − μ)) / (π I0(κ)) on [0, π) (Mardia & Jupp 2000, §3.5.4, for the
    doubled angle 2θ; the density of φ = 2θ on the circle times the Jacobian dφ/dθ = 2). So

        NLL = −v·(cos 2θ, sin 2θ) + log I0(‖v‖) + log π,

    with log I0(k) = log i0e(k) + k for numerical stability. cossin readout only.
    """

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        theta = _theta(output, theta, readout, n_bins)
        # ‖v‖ with a floor so the gradient at v = 0 is 0 (d log I0/dκ = I1/I0 → 0), not NaN
        kappa = (output**2).sum(1).clamp_min(1e-24).sqrt()
        log_i0 = torch.log(torch.special.i0e(kappa)) + kappa
        fit = (output * angle_targets(theta, "cossin")).sum(1)
        return (-fit + log_i0 + _LOG_PI).mean()

    return loss


@register_loss("cross_entropy", readouts=("bins", "classes"))
def cross_entropy(
    readout: str, n_bins: int | None = None, label_smoothing: float = 0.0
) -> LossFn:
    """Cross-entropy over K orientation bins or K classes: L = −mean_i log softmax(output_i)[k_i].

    bins readout: k_i = floor(θ_i K/π) (clipped to K − 1) is the true bin
    (:func:`angle_targets`); classes readout: ``theta`` holds the class indices k_i themselves
    (integers in [0, K)). With label smoothing α the target puts 1 − α on k_i and α/K on every
    class (Szegedy et al. 2016). K is the output width (it must equal ``n_bins`` when given).
    """
    label_smoothing = check.real("label_smoothing", label_smoothing, minimum=0.0, maximum=1.0,
                                 max_open=True)

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        if readout == "classes":
            target = _labels(output, theta, n_bins)
        else:
            theta = _theta(output, theta, readout, n_bins)
            target = angle_targets(theta, "bins", output.shape[1])
        return F.cross_entropy(output, target, label_smoothing=float(label_smoothing))

    return loss


@register_loss("mse", readouts=("scalar",))
def mse(readout: str, n_bins: int | None = None) -> LossFn:
    """Plain squared error for the "scalar" readout: L = mean_i (output_i − y_i)².

    Here ``theta`` holds the scalar targets y (e.g. contrast in a multitask phase), not angles.
    """

    def loss(output: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        target = _theta(output, theta, readout, n_bins)
        return ((output[:, 0] - target) ** 2).mean()

    return loss
