"""Self-description: units and long names on coordinates, and dimension names that
``Dataset.sel`` cannot select by keyword."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import xarray as xr

DEFAULT_TITLE = "anglesim Dataset"
"""``title`` of a saved Dataset that has none and no ``study`` attribute."""

KNOWN_COORDS: dict[str, dict[str, str]] = {
    "angle": {"units": "rad", "long_name": "grating orientation θ"},
    "layer": {"units": "1", "long_name": "layer (dotted module path, 'input' or 'output')"},
    "phase": {"units": "1", "long_name": "training phase"},
    "replicate": {"units": "1", "long_name": "replicate index"},
    "epoch": {"units": "1", "long_name": "training epoch"},
}
"""Units and long names :func:`describe` gives the coordinates anglesim names (where a
coordinate has none of its own)."""

SEL_KEYWORDS = ("method", "tolerance", "drop", "indexers")
"""Keywords of ``Dataset.sel``: a dimension so named cannot be selected by keyword
(``ds.sel(method="x")`` is taken as the interpolation method), so :func:`save_dataset` warns."""


# --------------------------------------------------------------------------------------------
# self-description


def describe(ds: xr.Dataset,
             coord_attrs: Mapping[str, Mapping[str, str]] | None = None) -> xr.Dataset:
    """``ds`` (a shallow copy) with units and long names on its coordinates.

    Each coordinate named in ``coord_attrs`` (e.g. a study's grid axes: ``{"kappa": {"units":
    "1", "long_name": "prior concentration κ"}}``) or in :data:`KNOWN_COORDS` gets those
    attributes where it has none of its own; a coordinate's own attributes always win. Dims
    without a coordinate variable are left alone.
    """
    known = dict(KNOWN_COORDS)
    for name, given in (coord_attrs or {}).items():
        known[str(name)] = {**known.get(str(name), {}), **dict(given)}
    out = ds.copy(deep=False)
    for name in out.coords:
        fill = known.get(str(name))
        if fill:
            var = out.coords[name].variable
            missing = {k: v for k, v in fill.items() if k not in var.attrs}
            if missing:
                out.coords[name].attrs = {**var.attrs, **missing}
    return out


def unlabelled(ds: xr.Dataset) -> list[str]:
    """``"name: key"`` for each variable or coordinate of ``ds`` without a non-empty ``units``
    or ``long_name`` attribute (a published Dataset has none: dimensionless and categorical
    quantities say units "1")."""
    return [f"{name}: {key}" for name, var in ds.variables.items()
            for key in ("units", "long_name") if not str(var.attrs.get(key, "")).strip()]


def check_dim_names(ds: xr.Dataset, stacklevel: int = 2) -> list[str]:
    """Warn (UserWarning) about dimensions named like a keyword of ``Dataset.sel``
    (:data:`SEL_KEYWORDS`), which ``ds.sel(name=…)`` silently takes as that keyword; returns
    the names found."""
    clash = [str(d) for d in ds.dims if str(d) in SEL_KEYWORDS]
    if clash:
        warnings.warn(f"dimension {clash[0]!r} has the name of a keyword of Dataset.sel "
                      f"({', '.join(SEL_KEYWORDS)}): ds.sel({clash[0]}=...) does not select "
                      f"along it; rename the dimension (or use ds.isel / ds.loc)", UserWarning,
                      stacklevel=stacklevel + 1)
    return clash


