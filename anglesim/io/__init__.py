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

The package: :mod:`.encoding` (JSON, attribute encoding), :mod:`.provenance`, :mod:`.describe`
(coordinates' units, CF attributes), :mod:`.checksum` and :mod:`.files` (save and load).
"""

from __future__ import annotations

from .checksum import CHECKSUM_ATTR, CHECKSUM_VERSION, data_checksum, dataset_checksum
from .describe import DEFAULT_TITLE, KNOWN_COORDS, SEL_KEYWORDS, check_dim_names, describe
from .encoding import (
    ENGINE,
    JSON_ATTRS_KEY,
    _decode_attrs,
    _encode_attrs,
    _json_default,
    _require_backend,
    config_hash,
    to_json,
)
from .files import load_checked, load_dataset, save_dataset
from .provenance import (
    CONVENTIONS,
    PROVENANCE_KEYS,
    _git,
    _git_revision,
    command_line,
    cpu_model,
    provenance,
    usable_cpus,
)

__all__ = [
    "CHECKSUM_ATTR",
    "CHECKSUM_VERSION",
    "CONVENTIONS",
    "DEFAULT_TITLE",
    "ENGINE",
    "JSON_ATTRS_KEY",
    "KNOWN_COORDS",
    "PROVENANCE_KEYS",
    "SEL_KEYWORDS",
    "_decode_attrs",
    "_encode_attrs",
    "_git",
    "_git_revision",
    "_json_default",
    "_require_backend",
    "check_dim_names",
    "command_line",
    "config_hash",
    "data_checksum",
    "dataset_checksum",
    "describe",
    "load_checked",
    "load_dataset",
    "cpu_model",
    "provenance",
    "usable_cpus",
    "save_dataset",
    "to_json",
]
