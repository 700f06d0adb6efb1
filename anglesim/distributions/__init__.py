"""Priors over grating orientation on the half-circle [0, π), period π: ``pdf(θ)``, an exact
sampler ``sample(n, generator)`` drawing only from the generator given, and ``to_config()``.

`Uniform` (on a sub-range), `VonMises` (doubled-angle or folded convention), `Mixture`, and
`Gridded` (alias `Empirical`: a tabulated, periodic piecewise-linear density); `as_prior` and
`prior_from_config` rebuild one from a config.
"""

from __future__ import annotations

from typing import Any

from .. import validation as check
from ._base import AnglePrior, Mixture, Uniform
from ._gridded import Empirical, Gridded
from ._von_mises import VonMises

__all__ = [
    "AnglePrior",
    "Empirical",
    "Gridded",
    "Mixture",
    "Uniform",
    "VonMises",
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
    kinds = ("uniform", "von_mises", "mixture", "gridded", "empirical")
    if not isinstance(cfg, dict) or cfg.get("kind") not in kinds:
        raise check.fail("cfg", f"a prior config: a dict whose 'kind' is one of {kinds}", cfg)
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
        raise check.fail("cfg", f"a well-formed {kind!r} prior config ({err})", cfg) from None
    raise AssertionError(kind)  # pragma: no cover - every kind returns above
