"""Sphinx configuration of anglesim's documentation.

Build with ``make docs`` (warnings are errors). The API pages are generated from the
docstrings by autosummary on every build (``api/generated/``, not stored), and the example
gallery (``examples/`` → ``auto_examples/``) is executed on every build at quick sizes.

Docstrings: anglesim's docstrings are Google style ("Args:", "Returns:", "Raises:"), so they are
rendered by ``sphinx.ext.napoleon`` (part of Sphinx) rather than numpydoc, which parses only the
numpy style ("Parameters\\n----------") and would show Google sections as plain paragraphs.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import os
import pkgutil
import re
import sys
import types
import warnings
from pathlib import Path

from sphinx.util import logging as _sphinx_logging

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's anglesim, also without an editable install
os.environ.setdefault("OMP_NUM_THREADS", "1")



class _NoMainModules:
    """Import finder: ``anglesim.….__main__`` modules load empty while the docs build.

    autosummary imports every submodule of the package to list it, and a ``__main__`` module
    runs its command line on import (with sphinx-build's arguments); the API pages never
    document them.
    """

    def find_spec(self, name, path=None, target=None):
        if name.startswith("anglesim.") and name.endswith(".__main__"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__doc__ = "``python -m`` entry point (not imported by the documentation)."


sys.meta_path.insert(0, _NoMainModules())

import anglesim  # noqa: E402

_log = _sphinx_logging.getLogger(__name__)

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


def _reexports() -> dict[str, list[str]]:
    """Each package's public classes and functions (its ``__all__``), for the package pages."""
    found = {}
    for info in pkgutil.walk_packages(anglesim.__path__, "anglesim."):
        if not info.ispkg or info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        package = importlib.import_module(info.name)
        names = [n for n in getattr(package, "__all__", [])
                 if inspect.isclass(getattr(package, n, None))
                 or inspect.isfunction(getattr(package, n, None))]
        found[info.name] = names
    return found


def _defined_privately(reexports: dict[str, list[str]]) -> dict[str, list[str]]:
    """Of each package's public names, those defined in a private module (``_name.py``, which
    autosummary does not document): they get their own pages under the package's name."""
    found = {}
    for package, names in reexports.items():
        module = importlib.import_module(package)
        # an alias (``Empirical = Gridded``) is documented once, under its own name
        found[package] = [n for n in names if getattr(module, n).__name__ == n and any(
            part.startswith("_") for part in getattr(module, n).__module__.split("."))]
    return found


_REEXPORTS = _reexports()
_PRIVATE = _defined_privately(_REEXPORTS)
autosummary_context = {
    "reexports": {k: [n for n in v if n not in _PRIVATE[k]] for k, v in _REEXPORTS.items()},
    "private": _PRIVATE,
}
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


def _import_dotted(path: str):
    """The object at a dotted path (``anglesim.fisher.propagated_fisher``), or None."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_reexport(app, env, node, contnode):
    """Resolve a reference to a public re-export to the object's own page.

    Each object is documented once, in the module that defines it (``:ignore-module-all:`` in
    the module template), while the prose and docstrings use the public import paths
    (``anglesim.fisher.propagated_fisher``, whatever file of the package defines it); this
    follows the import to ``obj.__module__`` + ``obj.__qualname__``, so pages survive modules
    moving inside a package.
    """
    if node.get("refdomain") != "py" or not node.get("reftarget", "").startswith("anglesim"):
        return None
    obj = _import_dotted(node["reftarget"])
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    found = None
    if obj is not None and module and qualname and not isinstance(obj, types.ModuleType):
        canonical = f"{module}.{qualname}"
        if canonical != node["reftarget"]:
            found = env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder,
                                                      node["reftype"], canonical, node, contnode)
    if found is None and not node["refdoc"].startswith("api/"):
        # the guide's and the examples' own references must all resolve: a name that moved
        # or went away fails the build instead of rendering as plain text
        _log.warning("unresolved reference to %s", node["reftarget"], location=node)
    return found


def setup(app):
    app.connect("autodoc-process-docstring", _literal_bars)
    app.connect("missing-reference", _resolve_reexport)


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
html_css_files = ["anglesim.css"]
# pages without sub-pages need no section navigation
html_sidebars = {page: [] for page in
                 ("getting_started", "results", "performance", "design", "references")}

# torch.func prints a DeprecationWarning (torch's own torch.jit.script) when first imported
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
