"""The figure standard's checkable rules, as a function that lists a figure's violations.

:func:`check_figure` draws the figure once with a renderer that notes every text it draws
(and its size), then applies the rules of :doc:`/user_guide/figures` that a drawing can show:
text size at the printed width, bars on a log axis, a legend on the data, the number of
panels, panel letters, axis labels, and (for a figure made at its printed size) text cut off
by the figure's edge. The rules that need the data or the claim (pairing, pooling, the
caption) are the author's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.projections.polar import PolarAxes
from matplotlib.text import Text

from ._overlap import covered, separated, turned_box
from ._panels import letter_of, panels
from ._style import MIN_TEXT_PT, print_width, width_inches

__all__ = ["MAX_PANELS", "RULES", "Violation", "check_figure"]

MAX_PANELS = 8
"""The most panels a figure may have; a denser figure is split."""

RULES = {
    "text-size": f"text smaller than {MIN_TEXT_PT:g} pt at the printed width",
    "bars-on-log-axis": "bars on a log-scaled value axis",
    "legend-on-data": "a legend over data points, lines, bars or bands of its axes",
    "too-many-panels": f"more than {MAX_PANELS} panels",
    "missing-panel-letter": "a panel without its letter",
    "duplicate-panel-letter": "a letter used on more than one panel",
    "panel-letter-order": "letters not a, b, c … in reading order",
    "unlabelled-axis": "an axis with tick labels but no label",
    "text-overlap": "two texts drawn over each other (colliding labels)",
    "text-outside-figure": "text cut off by the edge of a figure saved at its printed size",
}
"""Every rule :func:`check_figure` reports, by name."""

_TOL_PT = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``rule`` (a key of :data:`RULES`), ``where`` ("figure", or
    "panel 3 (c)": the panel's place in reading order and its letter) and ``detail``."""

    rule: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule}: {self.detail}"


def check_figure(fig: Figure, width: str | float = "double") -> list[Violation]:
    """The figure standard's violations in ``fig`` printed ``width`` wide (``"single"``
    3.5 in, ``"double"`` 7.2 in, or inches); an empty list when it meets every rule checked.

    The figure's printed scale is width / (its width as saved): the figure's own width for a
    :func:`print_figure` figure (saved at its size), else the width :func:`save_figure`
    saves, the tight bounding box of its contents plus ``savefig.pad_inches`` on each side.
    Every text drawn must reach :data:`MIN_TEXT_PT` at that scale. Panels are those of
    :func:`anglesim.plotting.panels`; a figure of two or more needs a letter on each (a left
    title or text starting with one, :func:`anglesim.plotting.letter_of`), each letter once,
    in reading order. Bars (``bar``/``barh``/``hist``) may not stand on a log value axis; a
    legend's box may not cover a data point, line segment, error bar, bar or band of its axes
    (lines and spans in axes coordinates, such as ``axhline``, are not data); an axis whose
    tick labels are drawn needs a label (on polar axes the radius; the angle's ticks carry
    their unit).

    The figure is drawn once, which runs its layout as any draw does; matplotlib's
    constrained layout can settle a little differently on a second draw, so a figure saved
    after being checked may differ by a pixel from one saved without (check a separate
    drawing where the saved bytes matter). Nothing else is changed.
    """
    width_in = width_inches(width)
    renderer, drawn = _draw(fig)
    where = _places(fig)
    saved = print_width(fig)
    if saved is None:
        pad = float(_rc("savefig.pad_inches"))
        saved = fig.get_tightbbox(renderer).width + 2 * pad
    scale = width_in / saved
    out: list[Violation] = []
    out += _text_size(drawn, where, scale, width_in)
    out += _bars_on_log(fig, where)
    out += _legends(fig, renderer, where)
    out += _panel_count(fig)
    out += _letters(fig, renderer, where)
    out += _labels(fig, drawn, where)
    out += _collisions(fig, renderer, drawn, where)
    if print_width(fig) is not None:
        out += _outside(fig, renderer, drawn, where)
    return out


# ---- drawing -----------------------------------------------------------------------------------


def _draw(fig: Figure) -> tuple[RendererAgg, dict[int, tuple[Text, float]]]:
    """Draw ``fig`` with an Agg renderer that notes each Text it draws and its size (pt).

    A Text hands the renderer its own FontProperties (one copy per Text; a multi-line Text
    draws line by line without naming itself), so the drawn Texts are found by those."""
    width, height = fig.get_size_inches() * fig.dpi
    renderer = RendererAgg(int(round(width)), int(round(height)), fig.dpi)
    props: dict[int, tuple[object, float]] = {}
    draw_text = renderer.draw_text

    def noting(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            props[id(prop)] = (prop, float(prop.get_size_in_points()))
        return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = noting
    fig.draw(renderer)
    drawn = {}
    for text in fig.findobj(Text):
        found = props.get(id(text.get_fontproperties()))
        if found is not None and text.get_visible():
            drawn[id(text)] = (text, found[1])
    return renderer, drawn


def _rc(key: str):
    import matplotlib as mpl

    return mpl.rcParams[key]


def _places(fig: Figure) -> dict[int, str]:
    """Where each Axes is, by id: "panel i (letter)" for panels and the axes on them,
    "colorbar i" for colorbars."""
    found = panels(fig)
    names = {}
    letters = {id(ax): _panel_letter(ax) for ax in found}
    for i, ax in enumerate(found, 1):
        letter = letters[id(ax)]
        names[id(ax)] = f"panel {i}" + (f" ({letter})" if letter else "")
    colorbars = 0
    for ax in fig.axes:
        if id(ax) in names:
            continue
        if ax.get_label() == "<colorbar>":
            colorbars += 1
            names[id(ax)] = f"colorbar {colorbars}"
            continue
        twin = next((p for p in found if _overlaps(ax, p)), None)
        names[id(ax)] = names[id(twin)] if twin is not None else f"axes {fig.axes.index(ax) + 1}"
    return names


def _overlaps(a: Axes, b: Axes) -> bool:
    return tuple(a.get_position().bounds) == tuple(b.get_position().bounds)


def _owner(text: Text, fig: Figure) -> Axes | None:
    for ax in fig.axes:
        if text in ax.findobj(Text):
            return ax
    return None


# ---- the rules -------------------------------------------------------------------------------


def _text_size(drawn, where, scale: float, width_in: float) -> list[Violation]:
    small: dict[str, list[tuple[float, str]]] = {}
    fig_texts = None
    for text, size in drawn.values():
        printed = size * scale
        if printed >= MIN_TEXT_PT - _TOL_PT:
            continue
        if fig_texts is None:
            fig_texts = {id(ax): {id(t) for t in ax.findobj(Text)}
                         for ax in text.figure.axes}
        place = next((where[a] for a, ids in fig_texts.items() if id(text) in ids), "figure")
        small.setdefault(place, []).append((printed, text.get_text()))
    out = []
    for place, items in small.items():
        items.sort()
        shown = ", ".join(repr(t[:20]) for _, t in items[:3]) + (" …" if len(items) > 3 else "")
        out.append(Violation("text-size", place,
                             f"{len(items)} text(s) below {MIN_TEXT_PT:g} pt at "
                             f"{width_in:g} in (smallest {items[0][0]:.1f} pt: {shown})"))
    return out


def _bars_on_log(fig: Figure, where) -> list[Violation]:
    out = []
    for ax in fig.axes:
        bars: Counter = Counter()
        for container in ax.containers:
            if not isinstance(container, BarContainer):
                continue
            horizontal = getattr(container, "orientation", "vertical") == "horizontal"
            scale = ax.get_xscale() if horizontal else ax.get_yscale()
            if scale in ("log", "symlog", "logit"):
                bars[(scale, "x" if horizontal else "y")] += len(container.patches)
        out += [Violation("bars-on-log-axis", where[id(ax)],
                          f"{count} bars on a {scale} {axis} axis (draw points with "
                          "intervals: ratio_points)")
                for (scale, axis), count in bars.items()]
    return out


def _legends(fig: Figure, renderer, where) -> list[Violation]:
    out = []
    found = panels(fig)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        area = [a for a in fig.axes if a is ax or (where.get(id(a)) == where[id(ax)]
                                                     and a.get_label() != "<colorbar>")]
        hits = covered(legend, area, renderer)
        if hits:
            out.append(Violation("legend-on-data", where[id(ax)],
                                 "the legend covers " + ", ".join(hits)))
    for legend in fig.legends:
        hits = covered(legend, found, renderer)
        if hits:
            out.append(Violation("legend-on-data", "figure",
                                 "the figure legend covers " + ", ".join(hits)))
    return out


def _panel_count(fig: Figure) -> list[Violation]:
    count = len(panels(fig))
    if count <= MAX_PANELS:
        return []
    return [Violation("too-many-panels", "figure",
                      f"{count} panels (at most {MAX_PANELS}: split the figure)")]


def _panel_letter(ax: Axes) -> str | None:
    for loc in ("left", "center", "right"):
        letter = letter_of(ax.get_title(loc=loc))
        if letter:
            return letter
    for text in ax.texts:
        letter = letter_of(text.get_text())
        if letter and text.get_visible():
            return letter
    return None


def _letters(fig: Figure, renderer, where) -> list[Violation]:
    found = panels(fig)
    if len(found) < 2:
        return []
    letters = [_panel_letter(ax) for ax in found]
    # a letter written as figure text belongs to the panel whose top-left corner is nearest
    for text in fig.texts:
        letter = letter_of(text.get_text(), alone=True)
        if not letter or not text.get_visible():
            continue
        box = text.get_window_extent(renderer)
        corners = [ax.get_window_extent(renderer) for ax in found]
        nearest = int(np.argmin([np.hypot(box.x0 - c.x0, box.y1 - c.y1) for c in corners]))
        if letters[nearest] is None:
            letters[nearest] = letter
    out = []
    missing = [i for i, letter in enumerate(letters) if letter is None]
    if len(missing) == len(found):
        return [Violation("missing-panel-letter", "figure",
                          f"none of the {len(found)} panels has a letter")]
    for i in missing:
        out.append(Violation("missing-panel-letter", where[id(found[i])], "no panel letter"))
    counts = Counter(letter for letter in letters if letter)
    for letter, count in sorted(counts.items()):
        if count > 1:
            on = [str(i + 1) for i, x in enumerate(letters) if x == letter]
            out.append(Violation("duplicate-panel-letter", "figure",
                                 f"letter {letter!r} on panels {', '.join(on)}"))
    if not out:
        expected = [chr(ord("a") + i) for i in range(len(found))]
        if letters != expected:
            out.append(Violation("panel-letter-order", "figure",
                                 f"letters read {', '.join(letters)} in reading order, "
                                 f"not {', '.join(expected)}"))
    return out


def _labels(fig: Figure, drawn, where) -> list[Violation]:
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if isinstance(ax, PolarAxes) and name == "x":
                continue  # the angle's tick labels carry their unit (°)
            ticked = any(id(t) in drawn for t in axis.get_ticklabels(which="both"))
            labelled = axis.label.get_visible() and axis.label.get_text().strip()
            if ticked and not labelled:
                what = "radius" if isinstance(ax, PolarAxes) else f"{name} axis"
                out.append(Violation("unlabelled-axis", where[id(ax)],
                                     f"the {what} has tick labels but no label"))
    return out


def _collisions(fig: Figure, renderer, drawn, where) -> list[Violation]:
    """Pairs of drawn texts whose boxes, turned with the text and shrunk by half a point on
    every side, intersect (separating-axis test on the turned rectangles)."""
    texts = [text for text, _ in drawn.values()]
    if len(texts) < 2:
        return []
    shrink = 0.5 * fig.dpi / 72.0
    boxes = [turned_box(text, renderer, shrink) for text in texts]
    lo = np.array([b.min(axis=0) for b in boxes])
    hi = np.array([b.max(axis=0) for b in boxes])
    near = ((lo[:, None, 0] < hi[None, :, 0]) & (lo[None, :, 0] < hi[:, None, 0])
            & (lo[:, None, 1] < hi[None, :, 1]) & (lo[None, :, 1] < hi[:, None, 1]))
    pairs = np.argwhere(np.triu(near, k=1))
    owners = {}
    for ax in fig.axes:
        for text in ax.findobj(Text):
            owners.setdefault(id(text), where[id(ax)])
    hits: dict[str, list[str]] = {}
    for i, j in pairs:
        if separated(boxes[i], boxes[j]):
            continue
        places = sorted({owners.get(id(texts[i]), "figure"), owners.get(id(texts[j]), "figure")})
        hits.setdefault(" and ".join(places), []).append(
            f"{texts[i].get_text()[:20]!r} on {texts[j].get_text()[:20]!r}")
    return [Violation("text-overlap", place,
                      f"{len(items)} overlapping text pair(s): " + ", ".join(items[:3])
                      + (" …" if len(items) > 3 else ""))
            for place, items in hits.items()]


def _outside(fig: Figure, renderer, drawn, where) -> list[Violation]:
    edge = fig.bbox.padded(1.0)
    cut: dict[str, list[str]] = {}
    for text, _ in drawn.values():
        box = text.get_window_extent(renderer)
        if box.x0 < edge.x0 or box.x1 > edge.x1 or box.y0 < edge.y0 or box.y1 > edge.y1:
            owner = _owner(text, fig)
            cut.setdefault(where[id(owner)] if owner is not None else "figure",
                           []).append(text.get_text())
    return [Violation("text-outside-figure", place,
                      f"{len(items)} text(s) cut off by the figure's edge: "
                      + ", ".join(repr(t[:20]) for t in items[:3]))
            for place, items in cut.items()]
