"""Sphinx configuration of anglesim's documentation.

Build with ``make docs`` (warnings are errors). The API pages are generated from the
docstrings by autosummary on every build (``api/generated/``, not stored), and the example
gallery (``examples/`` → ``auto_examples/``) is executed on every build at quick sizes.

Docstrings: anglesim's docstrings are Google style ("Args:", "Returns:", "Raises:"), so they are
rendered by ``sphinx.ext.napoleon`` (part of Sphinx) rather than numpydoc, which parses only the
numpy style ("Parameters\\n----------") and would show Google sections as plain paragraphs.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's anglesim, also without an editable install
os.environ.setdefault("OMP_NUM_THREADS", "1")

import anglesim  # noqa: E402

project = "anglesim"
author = "the anglesim developers"
copyright = "2026, the anglesim developers"
release = anglesim.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "examples", "**.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]

# -- API reference -------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # dataclass "Attributes:" as fields, not duplicates of the members
napoleon_use_rtype = False



def _literal_bars(app, what, name, obj, options, lines):
    """Read "|x|" in a docstring as an absolute value, not a reST substitution reference.

    anglesim's docstrings write formulas in plain text (|θ̂ − θ|, ‖x‖, Σ, …) and use no reST
    substitutions or line blocks, so every "|" outside a grid-table line is escaped.
    """
    for i, line in enumerate(lines):
        stripped = line.strip()
        table = stripped.startswith(("+-", "+=")) or (
            stripped.startswith("|") and stripped.endswith("|") and stripped.count("|") >= 3)
        if "|" in line and not table:
            lines[i] = re.sub(r"(?<!\\)\|", r"\\|", line)


def setup(app):
    app.connect("autodoc-process-docstring", _literal_bars)


# -- example gallery ------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "run_stale_examples": True,  # execute every example on every build: nothing is cached
    "remove_config_comments": True,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "show_memory": False,
    "min_reported_time": 1,
}

# -- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"anglesim {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False

# torch.func prints a DeprecationWarning (torch's own torch.jit.script) when first imported
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
