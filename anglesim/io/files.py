"""Saving and loading: one atomic, checksummed, self-describing netCDF4 write; a verified read."""

from __future__ import annotations

import errno
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .checksum import CHECKSUM_ATTR, CHECKSUM_VERSION, _checksum_v2, data_checksum
from .describe import DEFAULT_TITLE, check_dim_names, describe
from .encoding import ENGINE, _decode_attrs, _encode_attrs, _is_string_array, _require_backend
from .provenance import provenance

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
    leave an empty file under the final name. Its :func:`dataset_checksum` (data, coordinates
    and every attribute as written) is stored in :data:`CHECKSUM_ATTR`. Parent directories are
    created. ``ds`` itself is not modified.

    Self-description: coordinates get units and long names (:func:`describe`), the Dataset
    a ``title`` (``"anglesim study <study>"``, or :data:`DEFAULT_TITLE`) when it has none,
    ``Conventions`` and a ``history`` line (time and command, newest first, earlier lines
    kept); a dimension named like a keyword of ``Dataset.sel`` draws a warning
    (:func:`check_dim_names`).

    Returns:
        The path written.

    Raises:
        ValueError: if ``ds`` is not a Dataset, ``path`` is a directory, or an attribute cannot
            be encoded.
        OSError: if the file cannot be written (a full disk, no permission): one line,
            ``cannot write <path>: <reason>``, with ``filename`` set and the errno where known;
            any file already at ``path`` is left as it was.
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
    old_history = ds.attrs.get("history")
    if isinstance(old_history, str) and old_history:
        lines = old_history.splitlines()
        command = str(prov["history"]).split(" ", 1)[1]
        if lines[0].split(" ", 1)[1:] == [command]:
            lines = lines[1:]  # the same command saving again (a run, then its save)
        prov["history"] = "\n".join([str(prov["history"]), *lines])
    check_dim_names(ds, stacklevel=2)
    out = describe(ds)
    attrs = {**ds.attrs, **prov}
    if not attrs.get("title"):
        attrs["title"] = (f"anglesim study {attrs['study']}" if attrs.get("study")
                          else DEFAULT_TITLE)
    out.attrs = _encode_attrs(attrs, "the Dataset")
    out.encoding = {}
    for name, var in out.variables.items():
        var.attrs = _encode_attrs(var.attrs, f"variable {name!r}")
        var.encoding = {}  # stale encodings (chunk sizes, dtypes) from a loaded file break writes
    out.attrs[CHECKSUM_ATTR] = f"v{CHECKSUM_VERSION}:{_checksum_v2(out, encoded=True)}"

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            out.to_netcdf(tmp, engine=ENGINE)
            _fsync(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(exc, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_error(exc: OSError, path: Path) -> OSError:
    """One OSError naming ``path`` (HDF5 reports a full disk as "errno = 28" inside a message)."""
    code = exc.errno
    if code is None:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    reason = exc.strerror or (os.strerror(code) if code else None) or \
        (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    error = OSError(code, f"cannot write {path}: {reason}", str(path))
    return error


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
    (:data:`CHECKSUM_ATTR`), the file is verified against it and the attribute is dropped:
    a version-2 checksum covers data, coordinates and every attribute; a version-1 checksum
    (files written before version 2) the data only.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is a directory, is not a readable netCDF4 file, or has no
            ``anglesim_version`` attribute (not written by anglesim), or does not match its
            checksum.
        ModuleNotFoundError: if h5py (needed by h5netcdf) is not installed.
    """
    return load_checked(path)[0]


def load_checked(path: str | os.PathLike[str]) -> tuple[xr.Dataset, int]:
    """:func:`load_dataset`, also returning the version of the checksum the file was verified
    with (0: the file has none; 1: data only; 2: data, coordinates and attributes)."""
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

    stored = ds.attrs.pop(CHECKSUM_ATTR, None)
    version = 0 if stored is None else 1
    if isinstance(stored, str) and stored.startswith("v2:"):
        version = 2
        found = _checksum_v2(ds, encoded=True)
        if found != stored[3:]:
            raise ValueError(f"{path} is corrupted: its checksum (data, coordinates and "
                             f"attributes) is {found[:16]}…, the file records "
                             f"{stored[3:19]}…")
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
    if version == 1:
        found = data_checksum(ds)
        if found != stored:
            raise ValueError(f"{path} is corrupted: its data's checksum is {found[:16]}…, the "
                             f"file records {str(stored)[:16]}…")
    return ds, version
