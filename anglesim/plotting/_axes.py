"""Axes the figures share: orientation in degrees, FI against orientation, a marked angle,
a polar panel's labelled radius."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

__all__ = ["angle_axis", "fi_vs_angle_axis", "mark_angle", "radius_axis"]


def angle_axis(ax: Axes) -> None:
    """Orientation on the x axis: 0–180° (orientation wraps at 180°), ticks every 45°."""
    ax.set_xlim(0, 180)
    ax.set_xticks([0, 45, 90, 135, 180])
    ax.set_xlabel("orientation θ (deg)")


def fi_vs_angle_axis(ax: Axes) -> None:
    """Log FI of the decoded angle against orientation: the axes of every FI-curve panel."""
    ax.set_yscale("log")
    ax.set_ylabel("FI of θ̂ (rad⁻²)")
    angle_axis(ax)


def mark_angle(ax: Axes, theta: float, text: str, colour: str = "0.5") -> None:
    """A dashed vertical line at angle ``theta`` (radians) with ``text`` above the axes."""
    deg = float(np.degrees(theta))
    ax.axvline(deg, color=colour, lw=0.8, ls="--")
    ax.annotate(text, (deg, 1.0), xycoords=("data", "axes fraction"), ha="center",
                va="bottom", fontsize=7, color=colour)


def radius_axis(ax: Axes, label: str, *, angle: float = 90.0, ticks: int = 3) -> None:
    """Label a polar panel's radius (its quantity and unit, e.g. "linear FI (rad⁻²)"), with
    at most ``ticks`` radius tick labels along the ray at ``angle`` degrees (90: stacked
    vertically, clear of one another) and the label set clear of the 180° angle label."""
    ax.set_rlabel_position(angle)
    ax.yaxis.set_major_locator(MaxNLocator(ticks))
    size = ax.yaxis.get_ticklabels()[0].get_fontsize() if ax.yaxis.get_ticklabels() else 7.0
    ax.set_ylabel(label, labelpad=3.2 * size + 4.0)
