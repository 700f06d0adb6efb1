"""Saving and loading: one atomic write (temporary file, fsync, rename) for every file, a
checksummed, self-describing netCDF4 write on it, and a verified read."""

from __future__ import annotations

import errno
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._checksum import CHECKSUM_ATTR, CHECKSUM_VERSION, checksum_v2, data_checksum
from ._describe import DEFAULT_TITLE, check_dim_names, describe
from ._encoding import ENGINE, decode_attrs, encode_attrs, is_string_array, require_backend
from ._provenance import provenance


def save_dataset(ds: xr.Dataset, path: str | os.PathLike[str],
                 config: Mapping[str, Any] | None = None, seed: int | None = None) -> Path:
    """Write ``ds`` to ``path`` as netCDF4 (engine h5netcdf), with provenance attributes.

    The Dataset's own attributes are kept and the :func:`provenance` attributes are added
    (they replace same-named ones, except that a ``config`` or ``seed`` already present is
    kept when the corresponding argument is None). Attribute values netCDF cannot store are
    written as JSON (see the package docstring). The file is written by :func:`atomic_write`
    (temporary name, fsync, rename), so readers never see a half-written file and a failed
    write leaves an existing file untouched. Its :func:`dataset_checksum` (data, coordinates
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
            ``[Errno N] <reason>: '<path>'``, with ``filename`` set and the errno where known;
            any file already at ``path`` is left as it was.
        ModuleNotFoundError: if h5py (needed by h5netcdf) is not installed.
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file name, got the directory {path}")
    require_backend()

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
    out.attrs = encode_attrs(attrs, "the Dataset")
    out.encoding = {}
    for name, var in out.variables.items():
        var.attrs = encode_attrs(var.attrs, f"variable {name!r}")
        var.encoding = {}  # stale encodings (chunk sizes, dtypes) from a loaded file break writes
    out.attrs[CHECKSUM_ATTR] = f"v{CHECKSUM_VERSION}:{checksum_v2(out, encoded=True)}"

    atomic_write(path, lambda tmp: out.to_netcdf(tmp, engine=ENGINE))
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write a file so that readers see either the old file or the whole new one.

    ``write(tmp)`` writes the content to a temporary file beside ``path`` (``.<name>.<random
    hex>.tmp``, hidden, in the same folder so the rename cannot cross file systems); the file
    is flushed to disk (``fsync``, so a crash of the machine does not leave an empty file
    under the final name) and renamed over ``path`` with :func:`os.replace`, which is atomic
    on POSIX. Parent folders are created. On any error the temporary file is removed and any
    file already at ``path`` is left as it was. Every file anglesim writes goes through here:
    :func:`save_dataset`, :func:`write_text_atomic`, the replicate cache.

    Returns:
        ``path`` as a Path.

    Raises:
        OSError: if the file cannot be written (a full disk, no permission): one line,
            ``[Errno N] <reason>: '<path>'``, with ``filename`` set to ``path`` and the errno
            where known (HDF5 reports a full disk only inside its message; it is found there).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            fsync(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(exc, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file, fsync, rename
    (:func:`atomic_write`). Returns the path; raises OSError as :func:`atomic_write`."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_error(exc: OSError, path: Path) -> OSError:
    """One OSError naming ``path`` (HDF5 reports a full disk as "errno = 28" inside a message)."""
    code = exc.errno
    if code is None:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    reason = exc.strerror or (os.strerror(code) if code else None) or \
        (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return OSError(code, reason, str(path))  # str(): "[Errno 28] No space left …: '<path>'"


def fsync(path: Path) -> None:
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
    require_backend()
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
        found = checksum_v2(ds, encoded=True)
        if found != stored[3:]:
            raise ValueError(f"{path} is corrupted: its checksum (data, coordinates and "
                             f"attributes) is {found[:16]}…, the file records "
                             f"{stored[3:19]}…")
    ds.attrs = decode_attrs(ds.attrs, str(path))
    strings = {}
    for name, var in ds.variables.items():
        var.attrs = decode_attrs(var.attrs, f"{path}, variable {name!r}")
        if is_string_array(var.values):
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
