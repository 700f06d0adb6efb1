"""A figure's panels in reading order, and their letters a, b, c … (once per figure)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.text import Text

from .. import validation as check

__all__ = ["letter_of", "panel_letters", "panels"]

_LETTER = re.compile(
    r"^\s*(?:\$\\(?:mathbf|bf)\{([a-z])\}\$"   # $\mathbf{a}$ (what panel_letters writes)
    r"|\(([a-z])\)"                            # (a)
    r"|([a-z])[.)](?=\s|$)"                    # a. or a)
    r"|([a-z])(?=\s{2,}|$))"                   # a alone, or "a  title" (two spaces)
)


def letter_of(text: str, alone: bool = False) -> str | None:
    """The panel letter a title or label starts with, else None: ``"a"``, ``"(a)"``,
    ``"a."``, ``"a)"``, ``"$\\mathbf{a}$"``, each alone or before the title, or ``"a"``
    followed by two spaces (``"a  FI per block"``; one space reads as a word). With
    ``alone``, only a text that is nothing but the letter counts."""
    match = _LETTER.match(text)
    if match is None or (alone and text[match.end():].strip()):
        return None
    return next(g for g in match.groups() if g)


def panels(fig: plt.Figure) -> list[Axes]:
    """``fig``'s panels in reading order (rows from the top, left to right within a row).

    A panel is a visible Axes that is not a colorbar and shows an axis or draws something;
    twin axes (``twinx``) drawn on a panel's area are part of that panel, not panels.
    """
    found: list[Axes] = []
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        if not ax.axison and not (ax.lines or ax.collections or ax.patches or ax.images):
            continue  # an empty frame, e.g. one that only holds a legend
        if any(_same_area(ax, other) for other in found):
            continue
        found.append(ax)
    return reading_order(found)


def reading_order(axes: Sequence[Axes]) -> list[Axes]:
    """``axes`` sorted into rows from the top (an Axes joins a row when its top edge lies
    above the middle of the row's first Axes), each row left to right."""
    boxes = sorted(((ax, ax.get_position()) for ax in axes), key=lambda p: (-p[1].y1, p[1].x0))
    rows: list[list] = []
    for ax, box in boxes:
        if rows and box.y1 > 0.5 * (rows[-1][0][1].y0 + rows[-1][0][1].y1):
            rows[-1].append((ax, box))
        else:
            rows.append([(ax, box)])
    return [ax for row in rows for ax, _ in sorted(row, key=lambda p: p[1].x0)]


def _same_area(a: Axes, b: Axes) -> bool:
    spec_a, spec_b = a.get_subplotspec(), b.get_subplotspec()
    if spec_a is not None and spec_b is not None:
        return (spec_a.get_gridspec() is spec_b.get_gridspec()
                and spec_a.rowspan == spec_b.rowspan and spec_a.colspan == spec_b.colspan)
    return tuple(a.get_position().bounds) == tuple(b.get_position().bounds)


def panel_letters(target: plt.Figure | Sequence[Axes], start: str = "a") -> list[str]:
    """Letter every panel, in reading order: a bold lowercase letter at the start of its left
    title (``$\\mathbf{a}$  title``), replacing a letter the title already starts with (so a
    figure lettered by hand, or twice, ends lettered once, in order).

    ``target`` is a Figure (its :func:`panels`) or the panels in the order to letter them;
    ``start`` is the first letter (e.g. ``"e"`` to continue from another figure). One call,
    after the panels have their titles. Returns the letters written.
    """
    axes = panels(target) if isinstance(target, plt.Figure) else list(target)
    start = check.choice("start", start, string.ascii_lowercase)
    first = string.ascii_lowercase.index(start)
    if first + len(axes) > 26:
        raise check.fail("target", f"at most {26 - first} panels from letter {start!r}",
                         f"{len(axes)} panels")
    letters = list(string.ascii_lowercase[first:first + len(axes)])
    for ax, letter in zip(axes, letters, strict=True):
        title = ax.get_title(loc="left")
        old = _left_title(ax)
        keep = {"fontsize": old.get_fontsize(), "color": old.get_color()} if (
            old is not None and title) else {}
        if letter_of(title) is not None:
            title = _LETTER.sub("", title, count=1).lstrip()
        ax.set_title(rf"$\mathbf{{{letter}}}$" + (f"  {title}" if title else ""), loc="left",
                     **keep)
    return letters


def _left_title(ax: Axes) -> Text | None:
    """The Text of ``ax``'s left title (matplotlib lists it right after the centre title,
    ``ax.title``, among the Axes' children), to keep its size when it is rewritten."""
    children = ax.get_children()
    at = next((i for i, c in enumerate(children) if c is ax.title), None)
    if at is None or at + 1 >= len(children):
        return None
    left = children[at + 1]
    return left if isinstance(left, Text) and left.get_horizontalalignment() == "left" else None
