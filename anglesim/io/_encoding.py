"""JSON for configs and attributes: canonical text, hashes, and the encoding of attribute
values netCDF has no type for.

Attributes that are dicts, lists, tuples, ``None``, booleans or anything else netCDF has no
type for are written as canonical JSON strings, and their names are listed (as JSON) in the
attribute :data:`JSON_ATTRS_KEY` of the Dataset or variable that held them; loading decodes
them and removes the list again, so a round trip gives back the same values (tuples come back
as lists). Boolean variables are stored as int8 with xarray's ``dtype="bool"`` marker; unicode
string variables as variable-length strings, coming back as numpy unicode arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

ENGINE = "h5netcdf"
"""The xarray engine used for reading and writing (netCDF4 format, HDF5 underneath)."""

JSON_ATTRS_KEY = "anglesim_json_attrs"
"""Attribute listing (as a JSON array) the attributes stored as JSON strings by save_dataset."""

# --------------------------------------------------------------------------------------------
# JSON


def json_default(obj: Any) -> Any:
    """Turn the non-JSON types that configs commonly hold into JSON-encodable ones."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # shallow, field by field: nested values come back through this function
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            raise TypeError(f"a set of mixed, unorderable values {obj!r}") from None
    tolist = getattr(obj, "tolist", None)  # torch tensors and other array types
    if callable(tolist):
        return tolist()
    raise TypeError(f"value {obj!r} of type {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: keys sorted, compact separators, unicode kept.

    Besides the JSON types it encodes numpy scalars and arrays (as numbers and nested lists),
    tuples and sets (as lists; sets sorted), paths (as strings), dataclass instances (as
    objects of their fields) and objects with a ``tolist()`` method (e.g. torch tensors).
    Equal configs built in any key order give the same text, so the text can be hashed.

    Raises:
        ValueError: if ``obj`` holds a value of any other type.
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"to_json: obj cannot be encoded as JSON: {exc}") from exc


def config_hash(config: Mapping[str, Any]) -> str:
    """Short, stable identifier of a config: the first 16 hex digits of SHA-256(to_json(config)).

    Raises:
        ValueError: if ``config`` is not a mapping or holds a value :func:`to_json` rejects.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, got {type(config).__name__}: {config!r}")
    return hashlib.sha256(to_json(config).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# attribute and variable encoding


def _is_native_attr(value: Any) -> bool:
    """Whether netCDF4 stores ``value`` as an attribute and gives the same value back."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, str):
        return bool(value) and "\x00" not in value  # HDF5 handles empty strings unevenly
    if isinstance(value, (int, np.integer)):
        return -(2**63) <= int(value) < 2**63
    if isinstance(value, (float, np.floating)):
        return True
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and value.size > 0 and value.dtype.kind in "iuf"
    return False


def encode_attrs(attrs: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """Attributes netCDF can hold: non-native values become JSON strings, listed by name."""
    out: dict[str, Any] = {}
    encoded: list[str] = []
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attribute names must be non-empty strings; {where} has {key!r}")
        if key == JSON_ATTRS_KEY:
            continue  # stale list from an earlier load; rebuilt below
        if _is_native_attr(value):
            out[key] = value
        else:
            try:
                out[key] = to_json(value)
            except ValueError as exc:
                raise ValueError(f"attribute {key!r} of {where} cannot be saved: {exc}") from exc
            encoded.append(key)
    if encoded:
        out[JSON_ATTRS_KEY] = to_json(encoded)
    return out


def decode_attrs(attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Inverse of :func:`encode_attrs`."""
    if JSON_ATTRS_KEY not in attrs:
        return dict(attrs)
    out = dict(attrs)
    try:
        names = json.loads(out.pop(JSON_ATTRS_KEY))
        for name in names:
            out[name] = json.loads(out[name])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where}: malformed {JSON_ATTRS_KEY} attribute: {exc}") from exc
    return out


def is_string_array(values: np.ndarray) -> bool:
    return values.dtype == object and all(isinstance(v, str) for v in values.ravel())


def require_backend() -> None:
    """Fail early, and say what to install, when h5netcdf has no HDF5 library to write with."""
    if importlib.util.find_spec("h5py") is None:
        raise ModuleNotFoundError(
            "anglesim.io reads and writes netCDF4 files with h5netcdf, which needs the h5py "
            "package to do so; recent h5netcdf releases install it only as the extra "
            "'h5netcdf[h5py]'. Install h5py (pip install h5py)."
        )

