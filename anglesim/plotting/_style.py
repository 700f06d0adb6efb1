"""The figures' shared look: the screen style the studies use today and their colours."""

from __future__ import annotations

__all__ = ["PHASE_COLOURS", "STYLE"]

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
PHASE_COLOURS = ("#4d4d4d", "#d6604d", "#4393c3", "#5aae61", "#9970ab")
