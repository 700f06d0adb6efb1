"""The claims table: an RST list-table for the results page, plain text for a summary."""

from __future__ import annotations

from collections.abc import Iterable

from .. import validation as check
from ._format import effect, interval, number, p_value
from ._records import ClaimRecord

__all__ = ["HEADER", "claims_table"]

HEADER = ("claim", "cell", "estimate [95% CI]", "p", "Holm p", "MDE", "n", "verdict")
"""The table's columns (the first, ``claim``, is what a test reading the page looks for)."""


def claims_table(records: Iterable[ClaimRecord], format: str = "rst") -> str:  # noqa: A002
    """The claims of a study as text: for each declared contrast its statement (with the
    measure, the test, the scale and the asserted direction), one table row per member —
    estimate with its 95% interval, p, Holm p, MDE, n and verdict — and a line stating the
    family (Holm over m, α, the MDE's power and level); then the exploratory comparisons,
    apart, under their own heading.

    ``format="rst"`` gives bullet lists and ``list-table`` directives for the results page;
    ``format="text"`` gives aligned plain text for a study's printed summary. Numbers use
    three significant digits (p-values two, "< 0.001" below); ratios print as folds (×);
    a difference's units are in its statement line.
    """
    format = check.choice("format", format, ("rst", "text"))  # noqa: A001
    records = list(records)
    for i, record in enumerate(records):
        check.instance(f"records[{i}]", record, ClaimRecord, "a ClaimRecord")
    declared = [r for r in records if not r.exploratory]
    exploratory = [r for r in records if r.exploratory]
    parts = []
    if declared:
        parts.append(_block(declared, format))
        first = declared[0]
        parts.append(
            f"Holm-adjusted over the family of {first.family_size} declared contrasts at "
            f"α = {first.alpha:g}; MDE: the effect detected with "
            f"{first.power:.0%} power at level α/m = {number(first.alpha_mde)}.")
    else:
        parts.append("No declared claims.")
    if exploratory:
        title = ("Exploratory comparisons (post hoc; not in the Holm family; p unadjusted; "
                 f"MDE at level α = {exploratory[0].alpha:g})")
        parts.append(f"**{title}**" if format == "rst" else title)
        parts.append(_block(exploratory, format))
    return "\n\n".join(parts) + "\n"


def _block(records: list[ClaimRecord], format: str) -> str:  # noqa: A002
    statements, seen = [], set()
    for r in records:
        if r.contrast not in seen:
            seen.add(r.contrast)
            name = f"``{r.contrast}``" if format == "rst" else r.contrast
            statements.append(f"{'* ' if format == 'rst' else '- '}{name}: {r.statement} "
                              f"({_how(r)})")
    rows = [_row(r, format) for r in records]
    table = _rst(rows) if format == "rst" else _text(rows)
    return "\n".join(statements) + "\n\n" + table


def _how(r: ClaimRecord) -> str:
    units = f", {r.units}" if r.units and r.scale == "difference" else ""
    asserted = {"greater": "greater", "less": "less", "differs": "different",
                "equivalent": f"equivalent within {effect(r.margin, r.scale)}; p: TOST; "
                              "MDE: smallest margin shown"}[r.direction]
    against = (_selection(r.against) if isinstance(r.against, dict)
               else number(r.against) if isinstance(r.against, float) else str(r.against))
    compared = f"{_selection(r.arm)} vs {against}" if r.arm else f"vs {against}"
    return (f"{r.measure}{units}; {compared}; {r.test} on the "
            f"{'log ratio' if r.scale == 'ratio' else 'difference'}; claimed {asserted}")


def _selection(selection: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in selection.items())


def _row(r: ClaimRecord, format: str) -> list[str]:  # noqa: A002
    name = f"``{r.contrast}``" if format == "rst" else r.contrast
    estimate = interval(r.estimate, r.ci_low, r.ci_high, r.scale)
    n = f"{r.n_arm} + {r.n_against}" if r.test == "Welch t" else str(r.n)
    left_out = sum(r.excluded.values())
    if left_out:
        n += f" ({left_out} excluded)"
    return [name, _selection(r.cell) or "—", estimate, p_value(r.p),
            p_value(r.p_holm), effect(r.mde, r.scale), n, r.verdict]


def _rst(rows: list[list[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [list(HEADER), *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines)


def _text(rows: list[list[str]]) -> str:
    table = [list(HEADER), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
