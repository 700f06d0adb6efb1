"""Axes the figures share: orientation in degrees, FI against orientation, a marked angle."""

from __future__ import annotations

import numpy as np

__all__ = ["angle_axis", "fi_vs_angle_axis", "mark_angle"]


def angle_axis(ax):
    ax.set_xlim(0, 180)
    ax.set_xticks([0, 45, 90, 135, 180])
    ax.set_xlabel("orientation θ (deg)")


def fi_vs_angle_axis(ax):
    """Log FI of the decoded angle against orientation: the axes of every FI-curve panel."""
    ax.set_yscale("log")
    ax.set_ylabel("FI of θ̂ (rad⁻²)")
    angle_axis(ax)



def mark_angle(ax, theta: float, text: str, colour: str = "0.5") -> None:
    deg = float(np.degrees(theta))
    ax.axvline(deg, color=colour, lw=0.8, ls="--")
    ax.annotate(text, (deg, 1.0), xycoords=("data", "axes fraction"), ha="center",
                va="bottom", fontsize=7, color=colour)

