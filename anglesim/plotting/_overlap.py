"""Geometry of a drawn figure for the checker: what data lies under a legend's box, and
whether two texts, turned as drawn, collide."""

from __future__ import annotations

from collections import Counter

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import Collection, LineCollection, PathCollection
from matplotlib.container import BarContainer
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import Bbox

__all__ = ["covered", "separated", "turned_box"]


def covered(legend: Legend, axes, renderer) -> list[str]:
    """What data of ``axes`` lies under ``legend``'s box (shrunk by half a pixel)."""
    box = legend.get_window_extent(renderer).padded(-0.5)
    hits = Counter()
    for ax in axes:
        for line in ax.get_lines():
            if line.get_visible() and line.get_transform() == ax.transData and _line_hits(
                    line, box, ax.figure.dpi):
                hits[_what(line, "line")] += 1
        for coll in ax.collections:
            if coll.get_visible() and _collection_hits(coll, ax, box):
                hits[_what(coll, type(coll).__name__)] += 1
        for patch in ax.patches:
            if patch.get_visible() and patch.get_data_transform() == ax.transData:
                path = patch.get_path().transformed(patch.get_transform())
                if path.intersects_bbox(box, filled=True):
                    hits["bar" if _is_bar(patch, ax) else "patch"] += 1
        for image in ax.images:
            if image.get_visible() and image.get_window_extent(renderer).overlaps(box):
                hits["image"] += 1
    return [(f"{count} {name}s" if count > 1 else f"1 {name}") if name in ("bar", "patch", "image")
            else name + (f" (×{count})" if count > 1 else "") for name, count in hits.items()]


def _what(artist, kind: str) -> str:
    label = artist.get_label()
    named = label and not label.startswith("_")
    if isinstance(artist, Line2D):
        kind = "line" if artist.get_linestyle() not in ("None", "", " ") else "points"
    elif isinstance(artist, LineCollection):
        kind = "error bars"
    elif isinstance(artist, PathCollection):
        kind = "points"
    elif isinstance(artist, Collection):
        kind = "band"
    return f"{kind} {label!r}" if named else kind


def _is_bar(patch, ax: Axes) -> bool:
    return any(isinstance(c, BarContainer) and patch in c.patches for c in ax.containers)


def _line_hits(line: Line2D, box: Bbox, dpi: float) -> bool:
    data = np.ma.filled(np.ma.asarray(line.get_xydata(), float), np.nan).reshape(-1, 2)
    if not len(data):
        return False
    xy = line.get_transform().transform(data)
    finite = np.isfinite(xy).all(axis=1)
    if line.get_marker() not in (None, "None", "", " ", ","):
        radius = 0.5 * line.get_markersize() * dpi / 72.0
        pts = xy[finite]
        if np.any((pts[:, 0] >= box.x0 - radius) & (pts[:, 0] <= box.x1 + radius)
                  & (pts[:, 1] >= box.y0 - radius) & (pts[:, 1] <= box.y1 + radius)):
            return True
    if line.get_linestyle() in ("None", "", " ") or len(xy) < 2:
        return False
    both = finite[:-1] & finite[1:]
    return bool(_segments_hit(xy[:-1][both], xy[1:][both], box).any())


def _collection_hits(coll: Collection, ax: Axes, box: Bbox) -> bool:
    if isinstance(coll, PathCollection):  # scatter: the offsets are the data
        if coll.get_offset_transform() != ax.transData:
            return False
        offsets = np.ma.filled(np.ma.asarray(coll.get_offsets(), float), np.nan).reshape(-1, 2)
        if not len(offsets):
            return False
        xy = coll.get_offset_transform().transform(offsets)
        xy = xy[np.isfinite(xy).all(axis=1)]
        return bool(np.any((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1)
                           & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)))
    if coll.get_transform() != ax.transData:
        return False
    if isinstance(coll, LineCollection):  # error bars, vlines
        for seg in coll.get_segments():
            seg = np.ma.filled(np.ma.asarray(seg, float), np.nan).reshape(-1, 2)
            if len(seg) < 2:
                continue
            xy = ax.transData.transform(seg)
            finite = np.isfinite(xy).all(axis=1)
            both = finite[:-1] & finite[1:]
            if _segments_hit(xy[:-1][both], xy[1:][both], box).any():
                return True
        return False
    for path in coll.get_paths():  # bands (fill_between) and other filled shapes
        shown = path.transformed(ax.transData)
        vertices = shown.vertices
        if len(vertices) and np.isfinite(vertices).all() and shown.intersects_bbox(
                box, filled=True):
            return True
    return False


def _segments_hit(p0: np.ndarray, p1: np.ndarray, box: Bbox) -> np.ndarray:
    """Whether each segment p0→p1 meets ``box`` (Liang & Barsky 1984, ACM TOG 3: 1–22)."""
    d = p1 - p0
    t0, t1 = np.zeros(len(p0)), np.ones(len(p0))
    keep = np.ones(len(p0), bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q in ((-d[:, 0], p0[:, 0] - box.x0), (d[:, 0], box.x1 - p0[:, 0]),
                     (-d[:, 1], p0[:, 1] - box.y0), (d[:, 1], box.y1 - p0[:, 1])):
            keep &= ~((p == 0) & (q < 0))
            r = q / p
            t0 = np.where(p < 0, np.maximum(t0, r), t0)
            t1 = np.where(p > 0, np.minimum(t1, r), t1)
    return keep & (t0 <= t1)


def turned_box(text: Text, renderer, shrink: float) -> np.ndarray:
    """The corners (4 × 2, display pixels) of ``text``'s box turned with it: the axis-aligned
    extent of a turned rectangle is centred on it, so the centre comes from the drawn extent
    and the sides from the text's extent unturned."""
    box = text.get_window_extent(renderer)
    angle = np.deg2rad(text.get_rotation())
    if np.isclose(np.sin(angle), 0.0, atol=1e-9) or np.isclose(np.cos(angle), 0.0, atol=1e-9):
        w, h = box.width, box.height
        angle = 0.0
    else:
        text.set_rotation(0.0)
        flat = text.get_window_extent(renderer)
        text.set_rotation(np.rad2deg(angle))
        w, h = flat.width, flat.height
    w, h = max(w - 2 * shrink, 0.0), max(h - 2 * shrink, 0.0)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return corners @ turn.T + [0.5 * (box.x0 + box.x1), 0.5 * (box.y0 + box.y1)]


def separated(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quadrilaterals are apart along one of their sides' normals."""
    for poly in (a, b):
        for k in range(4):
            edge = poly[(k + 1) % 4] - poly[k]
            normal = np.array([-edge[1], edge[0]])
            pa, pb = a @ normal, b @ normal
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return True
    return False
