"""The evaluated claims: :class:`ClaimRecord`, and their storage in a Dataset's attributes."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import xarray as xr

from .. import validation as check

__all__ = ["CLAIMS_ATTR", "VERDICTS", "ClaimRecord", "claims_from_dataset", "claims_to_attrs"]

CLAIMS_ATTR = "claims"
"""The Dataset attribute holding the records: a list of dicts (JSON in the file)."""

VERDICTS = ("supported", "contradicted", "unresolved", "exploratory")


@dataclass(frozen=True)
class ClaimRecord:
    """The evaluation of one (expanded) contrast. Numbers are on the reported scale: for
    ratios ``estimate``, ``ci_low``, ``ci_high``, ``mean_arm``, ``mean_against`` and ``mde`` are
    folds (back-transformed from the log scale, where ``statistic`` and ``df`` live); ``None``
    where a number could not be computed (too few valid replicates).

    Fields: ``name`` (the member, ``contrast[axis=value, …]`` when expanded), ``contrast``,
    ``statement``, ``cell`` (the expanded axes' values), ``exploratory``; the declaration
    (``measure``, ``units``, ``scale``, ``direction``, ``margin``, ``arm``, ``against``,
    ``paired``); ``test`` ("paired t", "Welch t" or "one-sample t"); counts: ``n`` (pairs,
    replicates of the arm, or both arms' replicates for Welch), ``n_arm``, ``n_against``
    (None against a reference), ``excluded`` (replicates left out: ``failed``, ``missing``
    (NaN), ``nonpositive`` (ratios)); results: ``estimate``, ``ci_low``, ``ci_high`` (the
    95% interval), ``mean_arm``, ``mean_against``, ``statistic`` (t), ``df``, ``p``,
    ``p_holm``, ``family_size`` (m), ``mde``, ``alpha``, ``alpha_mde``, ``power``,
    ``verdict`` and ``reason`` (one line saying why).
    """

    name: str
    contrast: str
    statement: str
    cell: dict[str, Any]
    exploratory: bool
    measure: str
    units: str
    scale: str
    direction: str
    margin: float | None
    arm: dict[str, Any]
    against: Any
    paired: bool | None
    test: str
    n: int
    n_arm: int
    n_against: int | None
    excluded: dict[str, int]
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    mean_arm: float | None
    mean_against: float | None
    statistic: float | None
    df: float | None
    p: float | None
    p_holm: float | None
    family_size: int | None
    mde: float | None
    alpha: float
    alpha_mde: float | None
    power: float
    verdict: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict of JSON values (NaN and infinities become None)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClaimRecord:
        """The record back from :meth:`to_dict`'s dict (as stored in a file)."""
        if not isinstance(data, Mapping):
            raise check.fail("record", "a dict of a claim record's fields", data)
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(str(k) for k in data if k not in names)
        if missing or unknown:
            raise check.fail("record", f"a dict with the fields {names}",
                             f"missing {missing}, unknown {unknown}")
        record = cls(**{n: data[n] for n in names})
        check.choice("record verdict", record.verdict, VERDICTS)
        return record


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def claims_to_attrs(records: Iterable[ClaimRecord]) -> dict[str, Any]:
    """The attributes that store ``records`` with a Dataset: ``{"claims": [record dicts]}``.

    Use as ``ds.attrs.update(claims_to_attrs(records))`` before saving;
    :func:`anglesim.io.save_dataset` writes the list as JSON text and
    :func:`anglesim.io.load_dataset` gives the list back.
    """
    records = list(records)
    for i, record in enumerate(records):
        check.instance(f"records[{i}]", record, ClaimRecord, "a ClaimRecord")
    return {CLAIMS_ATTR: [r.to_dict() for r in records]}


def claims_from_dataset(ds: xr.Dataset) -> list[ClaimRecord]:
    """The claim records stored with ``ds`` (empty if it has none).

    Accepts a Dataset from :func:`anglesim.io.load_dataset` (the attribute decoded to a list)
    and one opened by plain xarray (the attribute still JSON text).
    """
    check.instance("ds", ds, xr.Dataset, "an xarray.Dataset")
    stored = ds.attrs.get(CLAIMS_ATTR)
    if stored is None:
        return []
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            raise check.fail(f"ds.attrs[{CLAIMS_ATTR!r}]", "a JSON list of claim records",
                             stored) from None
    if not isinstance(stored, list):
        raise check.fail(f"ds.attrs[{CLAIMS_ATTR!r}]", "a list of claim records", stored)
    return [ClaimRecord.from_dict(item) for item in stored]
