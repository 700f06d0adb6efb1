"""The figures' look: the print style and figure factory of the figure standard
(:doc:`/user_guide/figures`), and the screen style the studies used before it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt

from .. import validation as check

__all__ = ["DOUBLE_COLUMN", "MIN_TEXT_PT", "PHASE_COLOURS", "PRINT_DPI", "PRINT_STYLE",
           "SINGLE_COLUMN", "STYLE", "print_figure", "print_style", "print_width",
           "width_inches"]

SINGLE_COLUMN = 3.5
"""Printed width of a single-column figure, inches."""
DOUBLE_COLUMN = 7.2
"""Printed width of a double-column (full-page) figure, inches."""
MIN_TEXT_PT = 7.0
"""The smallest text, in points, a figure may carry once printed at its width."""
PRINT_DPI = 300
"""Resolution of a print figure's PNG (dots per inch at its printed width)."""

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
}
"""The screen style of the figures drawn before the standard: 8–9 pt text on figures 8–16 in
wide, so 4–5 pt once printed at 7.2 in. Replaced by :data:`PRINT_STYLE` (through
:func:`print_figure`), whose text is drawn at the printed size."""
PHASE_COLOURS = ("#4d4d4d", "#d6604d", "#4393c3", "#5aae61", "#9970ab")

PRINT_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": PRINT_DPI,
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.titlelocation": "left",
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "errorbar.capsize": 1.5,
}
"""rcParams of a print figure: every text ≥ :data:`MIN_TEXT_PT` at the printed size (the
figure is drawn at that size, so 1 pt in the file is 1 pt on paper), thin lines, no top and
right spines, panel titles on the left (where the panel letter goes)."""

_WIDTHS = {"single": SINGLE_COLUMN, "double": DOUBLE_COLUMN}


def width_inches(width: str | float) -> float:
    """A printed width in inches: ``"single"`` (3.5 in), ``"double"`` (7.2 in) or a number of
    inches between 1 and 7.2."""
    if isinstance(width, str):
        return _WIDTHS[check.choice("width", width, tuple(_WIDTHS))]
    return check.real("width", width, minimum=1.0, maximum=DOUBLE_COLUMN)


@contextlib.contextmanager
def print_style() -> Iterator[None]:
    """Context in which text, ticks and legends take :data:`PRINT_STYLE`'s sizes.

    matplotlib reads most sizes when an artist is made, so draw a print figure's contents
    inside it::

        with print_style():
            fig, axes = print_figure(1, 3)
            ...
    """
    with plt.rc_context(PRINT_STYLE):
        yield


def print_figure(rows: int = 1, cols: int = 1, *, width: str | float = "double",
                 height: float | None = None, aspect: float = 0.75,
                 mosaic: Any = None, **subplots: Any) -> tuple[plt.Figure, Any]:
    """A figure drawn at its printed size: ``width`` (``"single"`` 3.5 in, ``"double"``
    7.2 in, or inches) by ``height`` (default ``rows × width/cols × aspect``), with a grid of
    ``rows × cols`` panels (``fig.subplots``; ``subplots`` go to it, e.g. ``sharex``,
    ``subplot_kw={"projection": "polar"}``) or a ``mosaic`` (``fig.subplot_mosaic``; its
    rows and columns set the grid), constrained layout, and :data:`PRINT_STYLE` (tick labels
    at 7 pt even if drawn outside :func:`print_style`).

    The figure remembers its printed width (:func:`print_width`): :func:`save_figure` saves it
    at exactly that size at :data:`PRINT_DPI`, not cropped to its contents, and
    :func:`check_figure` measures its text at that size. Returns ``(fig, axes)`` as
    ``plt.subplots`` (or ``subplot_mosaic``) does.
    """
    inches = width_inches(width)
    aspect = check.real("aspect", aspect, minimum=0.0, min_open=True)
    if mosaic is not None:
        layout = _mosaic_shape(mosaic)
        rows, cols = layout
    else:
        rows = check.integer("rows", rows, minimum=1)
        cols = check.integer("cols", cols, minimum=1)
    if height is None:
        height = rows * inches / cols * aspect
    height = check.real("height", height, minimum=0.5, maximum=9.7)  # a journal page: ≤ 9.7 in
    with print_style():
        fig = plt.figure(figsize=(inches, height), layout="constrained")
        fig._anglesim_print_width = inches
        axes = (fig.subplot_mosaic(mosaic, **subplots) if mosaic is not None
                else fig.subplots(rows, cols, **subplots))
        for ax in fig.axes:
            ax.tick_params(which="both", labelsize=PRINT_STYLE["xtick.labelsize"])
    return fig, axes


def print_width(fig: plt.Figure) -> float | None:
    """The printed width (inches) :func:`print_figure` made ``fig`` for, or None for a figure
    made otherwise (saved cropped to its contents)."""
    return getattr(fig, "_anglesim_print_width", None)


def _mosaic_shape(mosaic: Any) -> tuple[int, int]:
    if isinstance(mosaic, str):
        rows = [r.strip() for r in mosaic.strip().replace("\n", ";").split(";") if r.strip()]
        return len(rows), max(len(r) for r in rows)
    if isinstance(mosaic, list | tuple) and mosaic and all(
            isinstance(r, list | tuple) for r in mosaic):
        return len(mosaic), max(len(r) for r in mosaic)
    raise check.fail("mosaic", "a mosaic string ('ab;cc') or a list of rows", mosaic)
