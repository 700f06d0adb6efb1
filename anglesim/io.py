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

Integrity: :func:`save_dataset` stores a SHA-256 digest of the Dataset as written
(:func:`dataset_checksum`: data, coordinates and every attribute) in the attribute
:data:`CHECKSUM_ATTR`, writes to a temporary file, flushes it to disk and renames it into
place; :func:`load_dataset` recomputes the digest and refuses a file whose data or attributes
no longer match it (a flipped bit, a partly overwritten file, one edited character of a
``long_name``), then drops the attribute, so a loaded Dataset equals the saved one. Files from
before version 2 of the checksum (:data:`CHECKSUM_VERSION`) hold a data-only digest
(:func:`data_checksum`), which is still verified; files without one load unchecked
(:func:`load_checked` says which version a file had).

Self-description: saved files follow CF 1.10 where it applies: ``Conventions``, ``title``,
``history`` (time and command line, without machine paths), units and long names on the
coordinates anglesim names (:data:`KNOWN_COORDS`, :func:`describe`).
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
import re
import subprocess
import sys
import uuid
import warnings
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
    "config", "seed", "code_version", "code_origin", "Conventions", "history",
)
"""The attribute names that :func:`provenance` may set."""

CHECKSUM_ATTR = "anglesim_checksum"
"""Attribute of a saved file holding its checksum: ``"v2:"`` + :func:`dataset_checksum` (files
written since the checksum covered attributes), or a bare :func:`data_checksum` (version 1,
data only, in older files)."""

CHECKSUM_VERSION = 2
"""The version of the checksum :func:`save_dataset` writes: 1 covered the variables' data and
names only; 2 also covers every attribute (of the Dataset and of each variable) and which
variables are coordinates."""

CONVENTIONS = "CF-1.10"
"""The CF conventions version written in the ``Conventions`` attribute."""

DEFAULT_TITLE = "anglesim Dataset"
"""``title`` of a saved Dataset that has none and no ``study`` attribute."""

KNOWN_COORDS: dict[str, dict[str, str]] = {
    "angle": {"units": "rad", "long_name": "grating orientation θ"},
    "layer": {"long_name": "layer (dotted module path, 'input' or 'output')"},
    "phase": {"long_name": "training phase"},
    "replicate": {"units": "1", "long_name": "replicate index"},
    "epoch": {"units": "1", "long_name": "training epoch"},
}
"""Units and long names :func:`describe` gives the coordinates anglesim names (where a
coordinate has none of its own)."""

SEL_KEYWORDS = ("method", "tolerance", "drop", "indexers")
"""Keywords of ``Dataset.sel``: a dimension so named cannot be selected by keyword
(``ds.sel(method="x")`` is taken as the interpolation method), so :func:`save_dataset` warns."""

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


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None,
               code_version: str | None = None,
               code_origin: str | None = None) -> dict[str, str | int]:
    """Attributes recording what made a Dataset.

    Keys: ``anglesim_version``; ``git_rev`` (commit of the source checkout holding the anglesim
    package, ``-dirty`` appended if tracked files are modified, ``"unknown"`` if it is not a git
    checkout); ``created`` (ISO 8601, UTC); ``python``, ``torch``, ``numpy``, ``xarray``
    (versions); ``platform`` (the host's platform string); ``config`` (canonical JSON, see
    :func:`to_json`; ``"null"`` without a config); ``Conventions`` (:data:`CONVENTIONS`);
    ``history`` (``created`` and the command line, see :func:`command_line`); ``seed``,
    ``code_version`` (e.g. a hash of the study's own code) and ``code_origin`` (where that
    code came from, e.g. a module name or file name) only when given.

    Raises:
        ValueError: if ``config`` cannot be encoded as JSON, ``seed`` is not an integer, or
            ``code_version``/``code_origin`` is not a non-empty string.
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
        "Conventions": CONVENTIONS,
    }
    attrs["history"] = f"{attrs['created']} {command_line()}"
    for key, value in (("code_version", code_version), ("code_origin", code_origin)):
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string or None, got {value!r}")
            attrs[key] = value
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        attrs["seed"] = int(seed)
    return attrs


_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/=,:]+/)+")


def command_line(argv: list[str] | None = None) -> str:
    """The command that runs this process, without machine paths: the program's file name
    instead of its path (``python -m anglesim`` for ``anglesim/__main__.py``), and every
    absolute path in the arguments shortened to ``…/name``."""
    argv = list(sys.argv if argv is None else argv) or [""]
    program = os.path.basename(argv[0]) or "python"
    if program == "__main__.py":
        program = f"python -m {os.path.basename(os.path.dirname(argv[0])) or 'anglesim'}"
    elif program == "-c" or program.endswith(".py"):
        program = f"python {program}"
    return " ".join([program, *(_ABS_PATH.sub("…/", a) for a in argv[1:])])


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


def _checksum_v2(ds: xr.Dataset, encoded: bool) -> str:
    digest = hashlib.sha256()

    def add(part: bytes) -> None:
        digest.update(len(part).to_bytes(8, "little") + part)

    def attrs_of(attrs: Mapping[Any, Any], where: str) -> bytes:
        return to_json(_attrs_part(attrs if encoded else _encode_attrs(attrs, where))).encode()

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
    return _checksum_v2(ds, encoded=False)


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
