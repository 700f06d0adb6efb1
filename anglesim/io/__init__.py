"""Datasets on disk: netCDF4 files that carry their provenance and a checksum.

:func:`save_dataset` writes a Dataset with what made it (:func:`provenance`: versions, git
revision, config, seed; CF ``Conventions``, ``title``, ``history``; units on known coordinates,
:func:`describe`, and :func:`unlabelled` lists what still lacks them) and a SHA-256 checksum of
data and attributes (:func:`dataset_checksum`), through one atomic write (:func:`atomic_write`:
temporary file, fsync, rename; :func:`write_text_atomic` for text). :func:`load_dataset`
verifies the checksum and gives back what was saved. Attribute values netCDF has no type for
(dicts, lists, None, booleans) are stored as canonical JSON (:func:`to_json`) and decoded on
load; :func:`config_hash` names a config.
"""

from __future__ import annotations

from ._checksum import CHECKSUM_ATTR, CHECKSUM_VERSION, data_checksum, dataset_checksum
from ._describe import (
    DEFAULT_TITLE,
    KNOWN_COORDS,
    SEL_KEYWORDS,
    check_dim_names,
    describe,
    unlabelled,
)
from ._encoding import ENGINE, JSON_ATTRS_KEY, config_hash, require_backend, to_json
from ._files import atomic_write, load_checked, load_dataset, save_dataset, write_text_atomic
from ._provenance import (
    CONVENTIONS,
    PROVENANCE_KEYS,
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
    "atomic_write",
    "check_dim_names",
    "command_line",
    "config_hash",
    "cpu_model",
    "data_checksum",
    "dataset_checksum",
    "describe",
    "load_checked",
    "load_dataset",
    "provenance",
    "require_backend",
    "save_dataset",
    "to_json",
    "unlabelled",
    "usable_cpus",
    "write_text_atomic",
]
