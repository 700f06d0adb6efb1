"""Saving a figure as PNG and PDF, the same bytes for the same Dataset."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ._intervals import band_footnote
from ._style import PRINT_DPI, print_width

__all__ = ["save_figure"]


def save_figure(fig: plt.Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")):
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; return the paths written.

    A :func:`print_figure` figure is saved at exactly its printed size (at :data:`PRINT_DPI`;
    what it says about its bands belongs in its :func:`caption`); any other figure is cropped
    to its contents, with a footnote saying what its bands are (:func:`band_footnote`).
    """
    printed = print_width(fig) is not None
    if not printed:
        band_footnote(fig)  # a figure whose code did not say what its bands are says it here
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        # no creation date in PDFs, so that redrawing an unchanged Dataset leaves the file as it was
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        if printed:
            fig.savefig(path, dpi=PRINT_DPI, metadata=metadata)
        else:
            fig.savefig(path, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths
