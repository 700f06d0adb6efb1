"""Priors over grating orientation on the half-circle [0, π), period π.

Every prior has a density ``pdf(θ)`` with respect to dθ that integrates to 1 over [0, π)
(θ is wrapped mod π first), an exact sampler ``sample(n, generator)`` that draws only from the
``torch.Generator`` it is given, and a JSON-able ``to_config()`` that ``prior_from_config``
turns back into an equal prior.

Classes:

* ``Uniform(low, high)`` — flat on a sub-range [low, high) ⊆ [0, π].
* ``VonMises(loc, kappa, convention)`` — concentrated around ``loc``; two conventions
  (von Mises on the doubled angle, or a full-circle von Mises folded onto [0, π)).
* ``Mixture(components, weights)`` — a weighted sum of priors.
* ``Gridded(density)`` (alias ``Empirical``) — a periodic piecewise-linear density given by
  its values on a regular grid; sampled by exact inverse CDF.

Sampling is done in float64 on the generator's device and only the result is cast to float32,
kept strictly below the upper end of the support (π, or ``high`` for ``Uniform``), because
float32(π) > π.
"""


from __future__ import annotations

from typing import Any

from .. import validation as check
from .base import PI, AnglePrior, Mixture, Uniform
from .gridded import Empirical, Gridded
from .von_mises import VON_MISES_NORMAL_KAPPA, VonMises, _von_mises_full_circle

__all__ = [
    "PI",
    "VON_MISES_NORMAL_KAPPA",
    "AnglePrior",
    "Empirical",
    "Gridded",
    "Mixture",
    "Uniform",
    "VonMises",
    "_von_mises_full_circle",
    "as_prior",
    "prior_from_config",
]


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------


def as_prior(value: Any, name: str = "prior") -> AnglePrior:
    """``value`` as a prior: an ``AnglePrior`` as is, a ``to_config()`` dict rebuilt by
    :func:`prior_from_config`; anything else (a string such as ``"uniform"``, None, a number)
    raises a one-line ValueError naming ``name`` and the value. For constructors that take a
    prior (``Phase``, ``draw``, …) to validate it on entry."""
    if isinstance(value, AnglePrior):
        return value
    if isinstance(value, dict):
        return prior_from_config(value)
    raise check.fail(name, "an AnglePrior (Uniform(), VonMises(loc, kappa), …) or a prior "
                     "config dict", value)


def prior_from_config(cfg: dict) -> AnglePrior:
    """Rebuild a prior from ``to_config()`` output (kinds: uniform, von_mises, mixture,
    gridded / empirical). An unknown kind or a malformed config raises ValueError."""
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ValueError(f"cfg must be a dict with a 'kind' key, got {cfg!r}")
    kind = cfg["kind"]
    args = {k: v for k, v in cfg.items() if k != "kind"}
    try:
        if kind == "uniform":
            return Uniform(**args)
        if kind == "von_mises":
            return VonMises(**args)
        if kind == "mixture":
            comps = [prior_from_config(c) for c in args.pop("components")]
            return Mixture(comps, **args)
        if kind in ("gridded", "empirical"):
            return Gridded(**args)
    except (TypeError, KeyError) as err:
        raise ValueError(f"malformed {kind!r} prior config {cfg!r}: {err}") from None
    raise ValueError(f"unknown prior kind {kind!r}")
