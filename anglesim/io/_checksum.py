"""Checksums of Datasets: version 1 (data and names) and version 2 (also every attribute and
which variables are coordinates)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ._encoding import JSON_ATTRS_KEY, encode_attrs, to_json

CHECKSUM_ATTR = "anglesim_checksum"
"""Attribute of a saved file holding its checksum: ``"v2:"`` + :func:`dataset_checksum` (files
written since the checksum covered attributes), or a bare :func:`data_checksum` (version 1,
data only, in older files)."""

CHECKSUM_VERSION = 2
"""The version of the checksum :func:`save_dataset` writes: 1 covered the variables' data and
names only; 2 also covers every attribute (of the Dataset and of each variable) and which
variables are coordinates."""


# --------------------------------------------------------------------------------------------
# checksum


def _normalised_bytes(values: np.ndarray) -> tuple[str, bytes]:
    """A type tag and the bytes of an array, the same before saving and after loading."""
    kind = values.dtype.kind
    if kind in "USO":
        flat = values.ravel()
        if kind == "O" and not all(isinstance(v, str) for v in flat):
            return "object", repr(flat.tolist()).encode("utf-8")
        parts = []
        for v in flat:
            text = v.decode("utf-8") if isinstance(v, bytes) else str(v)
            raw = text.encode("utf-8")
            parts.append(len(raw).to_bytes(8, "little") + raw)
        return "str", b"".join(parts)
    if kind == "b":
        return "bool", np.ascontiguousarray(values, dtype=np.uint8).tobytes()
    if kind == "M":
        return "datetime64[ns]", np.ascontiguousarray(values.astype("datetime64[ns]")).tobytes()
    if kind == "m":
        return "timedelta64[ns]", np.ascontiguousarray(
            values.astype("timedelta64[ns]")).tobytes()
    little = values.dtype.newbyteorder("<")
    return little.str, np.ascontiguousarray(values, dtype=little).tobytes()


def data_checksum(ds: xr.Dataset) -> str:
    """SHA-256 (hex) of a Dataset's variables: for each variable and coordinate, sorted by name,
    its name, dimensions, shape, a type tag and its values' bytes (little-endian numbers, bools
    as bytes, strings as length-prefixed UTF-8, datetimes as int64 nanoseconds).

    This is version 1 of the checksum, still used to verify files written before version 2.
    Attributes are not included (:func:`dataset_checksum` covers them). The digest is the same
    for a Dataset and for what :func:`load_dataset` gives back after :func:`save_dataset`, and
    changes with any value, dtype family, dimension or name.
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    digest = hashlib.sha256()
    for name in sorted(str(n) for n in ds.variables):
        var = ds.variables[name]
        tag, raw = _normalised_bytes(np.asarray(var.values))
        head = to_json([name, [str(d) for d in var.dims], list(var.shape), tag])
        digest.update(len(head).to_bytes(8, "little") + head.encode("utf-8"))
        digest.update(len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()


def _normalised_attr(value: Any) -> list:
    """A netCDF attribute value in a form that is the same before saving and after loading."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return ["str", value]
    values = np.atleast_1d(np.asarray(value))
    if values.dtype.kind in "iub":
        return ["int", [int(v) for v in values.ravel()]]
    if values.dtype.kind == "f":
        return ["float", [float(v).hex() for v in values.ravel()]]
    return ["repr", repr(value)]


def _attrs_part(attrs: Mapping[str, Any]) -> list:
    """Encoded attributes (as :func:`save_dataset` writes them) in canonical order; the names
    of the JSON-encoded ones are a flag on each attribute, not a list whose order could vary."""
    try:
        json_names = set(json.loads(attrs[JSON_ATTRS_KEY])) if JSON_ATTRS_KEY in attrs else set()
    except (TypeError, ValueError):
        json_names = {"<malformed>"}
    return [[str(k), str(k) in json_names, _normalised_attr(v)]
            for k, v in sorted(attrs.items(), key=lambda kv: str(kv[0]))
            if k not in (JSON_ATTRS_KEY, CHECKSUM_ATTR)]


def checksum_v2(ds: xr.Dataset, encoded: bool) -> str:
    digest = hashlib.sha256()

    def add(part: bytes) -> None:
        digest.update(len(part).to_bytes(8, "little") + part)

    def attrs_of(attrs: Mapping[Any, Any], where: str) -> bytes:
        return to_json(_attrs_part(attrs if encoded else encode_attrs(attrs, where))).encode()

    add(b"anglesim checksum v2")
    add(attrs_of(ds.attrs, "the Dataset"))
    for name in sorted(str(n) for n in ds.variables):
        var = ds.variables[name]
        tag, raw = _normalised_bytes(np.asarray(var.values))
        head = to_json([name, [str(d) for d in var.dims], list(var.shape), tag,
                        name in ds.coords])
        add(head.encode("utf-8"))
        add(attrs_of(var.attrs, f"variable {name!r}"))
        add(raw)
    return digest.hexdigest()


def dataset_checksum(ds: xr.Dataset) -> str:
    """SHA-256 (hex) of a Dataset: its attributes, then for each variable and coordinate,
    sorted by name, its name, dimensions, shape, type tag, whether it is a coordinate, its
    attributes and its values' bytes (as in :func:`data_checksum`).

    Attributes enter in the form netCDF stores them (values netCDF has no type for as their
    canonical JSON, see :func:`to_json`; numbers as their exact binary value), so the digest is
    the same for a Dataset and for what :func:`load_dataset` gives back after
    :func:`save_dataset`, and changes with any byte of any attribute, value or name.
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    return checksum_v2(ds, encoded=False)


