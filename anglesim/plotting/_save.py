"""Saving a figure as PNG and PDF, the same bytes for the same Dataset."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ._intervals import band_footnote

__all__ = ["save_figure"]


def save_figure(fig: plt.Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")):
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; return the paths written."""
    band_footnote(fig)  # a figure whose code did not say what its bands are says it here
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        # no creation date in PDFs, so that redrawing an unchanged Dataset leaves the file as it was
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths
