"""Datasets on disk: netCDF4 files (written with h5netcdf) that carry their own provenance.

Every file written by :func:`save_dataset` records which code and which configuration made it
(anglesim version, git revision of the source checkout, library versions, the config as JSON,
the seed). :func:`load_dataset` refuses netCDF files that lack this record.

netCDF cannot store every Python attribute value. Attributes that are dicts, lists, tuples,
``None``, booleans or anything else netCDF has no type for are written as canonical JSON
strings, and the names of the attributes so encoded are listed (as JSON) in the attribute
:data:`JSON_ATTRS_KEY` of the Dataset or variable that held them; :func:`load_dataset` decodes
them and removes the list again, so a round trip gives back the same values (tuples come back
as lists). Boolean variables are stored as int8 with xarray's ``dtype="bool"`` marker and come
back as bool; unicode string variables are stored as variable-length strings and come back
as fixed-width numpy unicode arrays (dtype kind ``"U"``).

Integrity: :func:`save_dataset` stores a SHA-256 digest of the data (:func:`data_checksum`) in
the attribute :data:`CHECKSUM_ATTR`, writes to a temporary file, flushes it to disk and renames
it into place; :func:`load_dataset` recomputes the digest and refuses a file whose data no
longer match it (a flipped bit, a partly overwritten file), then drops the attribute, so a
loaded Dataset equals the saved one. Files without the attribute (written before it existed)
load unchecked.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import hashlib
import importlib.util
import json
import numbers
import os
import platform
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import xarray as xr

ENGINE = "h5netcdf"
"""The xarray engine used for reading and writing (netCDF4 format, HDF5 underneath)."""

JSON_ATTRS_KEY = "anglesim_json_attrs"
"""Attribute listing (as a JSON array) the attributes stored as JSON strings by save_dataset."""

PROVENANCE_KEYS = (
    "anglesim_version", "git_rev", "created", "python", "torch", "numpy", "xarray", "platform",
    "config", "seed",
)
"""The attribute names that :func:`provenance` may set."""

CHECKSUM_ATTR = "anglesim_checksum"
"""Attribute of a saved file holding :func:`data_checksum` of its Dataset."""

_PACKAGE_DIR = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------------
# JSON


def _json_default(obj: Any) -> Any:
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
                          default=_json_default)
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
# provenance


def _git(directory: Path, *args: str) -> str | None:
    """Run git in ``directory``; its stripped stdout, or None if git failed or is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=10, env=env, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_revision(package_dir: Path) -> str:
    """Commit of the git checkout whose tracked files include ``package_dir``/__init__.py.

    Returns the 40-digit hash, with ``-dirty`` appended when tracked files differ from that
    commit, or ``"unknown"`` when the package is not a tracked part of a git checkout (an
    installed copy, a tarball, no git on the machine). Never raises.
    """
    try:
        if not (package_dir / "__init__.py").is_file():
            return "unknown"
        if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
            return "unknown"
        rev = _git(package_dir, "rev-parse", "HEAD")
        if not rev:
            return "unknown"
        status = _git(package_dir, "status", "--porcelain", "--untracked-files=no")
        return f"{rev}-dirty" if status else rev
    except Exception:  # provenance must never stop a save
        return "unknown"


def provenance(config: Mapping[str, Any] | None = None,
               seed: int | None = None) -> dict[str, str | int]:
    """Attributes recording what made a Dataset.

    Keys: ``anglesim_version``; ``git_rev`` (commit of the source checkout holding the anglesim
    package, ``-dirty`` appended if tracked files are modified, ``"unknown"`` if it is not a git
    checkout); ``created`` (ISO 8601, UTC); ``python``, ``torch``, ``numpy``, ``xarray``
    (versions); ``platform`` (the host's platform string); ``config`` (canonical JSON, see
    :func:`to_json`; ``"null"`` without a config); ``seed`` (only when a seed is given).

    Raises:
        ValueError: if ``config`` cannot be encoded as JSON or ``seed`` is not an integer.
    """
    import torch

    from . import __version__

    attrs: dict[str, str | int] = {
        "anglesim_version": __version__,
        "git_rev": _git_revision(_PACKAGE_DIR),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "platform": platform.platform(),
        "config": to_json(config),
    }
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        attrs["seed"] = int(seed)
    return attrs


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


def _encode_attrs(attrs: Mapping[Any, Any], where: str) -> dict[str, Any]:
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


def _decode_attrs(attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Inverse of :func:`_encode_attrs`."""
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


def _is_string_array(values: np.ndarray) -> bool:
    return values.dtype == object and all(isinstance(v, str) for v in values.ravel())


def _require_backend() -> None:
    """Fail early, and say what to install, when h5netcdf has no HDF5 library to write with."""
    if importlib.util.find_spec("h5py") is None:
        raise ModuleNotFoundError(
            "anglesim.io reads and writes netCDF4 files with h5netcdf, which needs the h5py "
            "package to do so; recent h5netcdf releases install it only as the extra "
            "'h5netcdf[h5py]'. Install h5py (pip install h5py)."
        )


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

    Attributes are not included (they are metadata, and netCDF re-encodes some of them); the
    digest is the same for a Dataset and for what :func:`load_dataset` gives back after
    :func:`save_dataset`, and changes with any value, dtype family, dimension or name.
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


# --------------------------------------------------------------------------------------------
# save / load


def save_dataset(ds: xr.Dataset, path: str | os.PathLike[str],
                 config: Mapping[str, Any] | None = None, seed: int | None = None) -> Path:
    """Write ``ds`` to ``path`` as netCDF4 (engine h5netcdf), with provenance attributes.

    The Dataset's own attributes are kept and the :func:`provenance` attributes are added
    (they replace same-named ones, except that a ``config`` or ``seed`` already present is
    kept when the corresponding argument is None). Attribute values netCDF cannot store are
    written as JSON (see the module docstring). The file is written to a temporary name in the
    target directory and moved into place with :func:`os.replace`, so readers never see a
    half-written file and a failed write leaves an existing file untouched; the temporary
    file is flushed to disk (``fsync``) before the rename, so a crash of the machine does not
    leave an empty file under the final name. The data's :func:`data_checksum` is stored in
    :data:`CHECKSUM_ATTR`. Parent directories are created. ``ds`` itself is not modified.

    Returns:
        The path written.

    Raises:
        ValueError: if ``ds`` is not a Dataset, ``path`` is a directory, or an attribute cannot
            be encoded.
        ModuleNotFoundError: if h5py (needed by h5netcdf) is not installed.
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file name, got the directory {path}")
    _require_backend()

    prov = provenance(config, seed)
    if config is None and "config" in ds.attrs:
        del prov["config"]
    out = ds.copy(deep=False)
    prov[CHECKSUM_ATTR] = data_checksum(ds)
    out.attrs = _encode_attrs({**ds.attrs, **prov}, "the Dataset")
    out.encoding = {}
    for name, var in out.variables.items():
        var.attrs = _encode_attrs(var.attrs, f"variable {name!r}")
        var.encoding = {}  # stale encodings (chunk sizes, dtypes) from a loaded file break writes

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        out.to_netcdf(tmp, engine=ENGINE)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _fsync(path: Path) -> None:
    """Flush a written file's data to disk (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a Dataset written by :func:`save_dataset` fully into memory and close the file.

    JSON-encoded attributes are decoded and string variables come back as numpy unicode
    arrays, so the result equals what was saved. If the file holds a checksum
    (:data:`CHECKSUM_ATTR`), the data are verified against it and the attribute is dropped.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is a directory, is not a readable netCDF4 file, or has no
            ``anglesim_version`` attribute (not written by anglesim), or its data do not match
            its checksum.
        ModuleNotFoundError: if h5py (needed by h5netcdf) is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such anglesim Dataset file", str(path))
    if path.is_dir():
        raise ValueError(f"path must be a netCDF file, got the directory {path}")
    _require_backend()
    try:
        ds = xr.load_dataset(path, engine=ENGINE)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"cannot read {path} as an anglesim Dataset: not a readable netCDF4 "
                         f"file (truncated, or another format?): {type(exc).__name__}: "
                         f"{first_line}") from exc
    if "anglesim_version" not in ds.attrs:
        raise ValueError(f"{path} is not an anglesim Dataset (no anglesim_version attribute)")

    ds.attrs = _decode_attrs(ds.attrs, str(path))
    strings = {}
    for name, var in ds.variables.items():
        var.attrs = _decode_attrs(var.attrs, f"{path}, variable {name!r}")
        if _is_string_array(var.values):
            strings[name] = var
    for name, var in strings.items():
        values = var.values.astype(str) if var.size else np.zeros(var.shape, dtype=str)
        restored = xr.Variable(var.dims, values, var.attrs)
        if name in ds.coords:
            ds = ds.assign_coords({name: restored})
        else:
            ds[name] = restored
    stored = ds.attrs.pop(CHECKSUM_ATTR, None)
    if stored is not None:
        found = data_checksum(ds)
        if found != stored:
            raise ValueError(f"{path} is corrupted: its data's checksum is {found[:16]}…, the "
                             f"file records {str(stored)[:16]}…")
    return ds
