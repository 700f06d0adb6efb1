"""Finding studies and hashing their code: the built-in ones, user folders, files by path.

Search order of :func:`available`: the built-in studies (:mod:`anglesim.studies`), then every
folder named in ``$ANGLESIM_STUDIES`` (folders separated by ``os.pathsep``; each ``*.py`` file
there not starting with ``_`` is a study; a user study of a built-in study's name is refused).
:func:`load` also takes a path to a ``.py`` file, imported afresh as module
``anglesim_user_study_<stem>`` and registered with cloudpickle by value, so that workers get
its functions without importing it. :func:`code_version` is what the cache key holds of a
study's code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

from ._declaration import Study

__all__ = ["USER_MODULE_PREFIX", "available", "builtin_names", "code_files", "code_version",
           "load", "user_folders"]

_BUILTIN = "anglesim.studies"
USER_MODULE_PREFIX = "anglesim_user_study_"
"""Module-name prefix of studies loaded from a file (``anglesim_user_study_<name>``)."""


BUILTIN_FOLDER = Path(__file__).resolve().parents[1] / "studies"
"""Where the built-in studies live. The finder looks them up by name (``importlib`` at call
time), never importing :mod:`anglesim.studies` itself, so the study package stays below the
studies that import it."""


# ---- finding studies --------------------------------------------------------------------------


def builtin_names() -> list[str]:
    """Names of the studies shipped in :mod:`anglesim.studies`."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules([str(BUILTIN_FOLDER)])
                  if not m.name.startswith("_"))


def user_folders() -> list[Path]:
    """The folders named in ``$ANGLESIM_STUDIES`` (``os.pathsep``-separated; may be unset)."""
    raw = os.environ.get("ANGLESIM_STUDIES", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def available() -> dict[str, str]:
    """``{name: origin}`` of every study: built-in ones (origin "built-in"), then each user
    folder's ``*.py`` files (origin: the file's path).

    Raises:
        ValueError: if a user folder does not exist, or a user study takes a built-in name.
    """
    found = {name: "built-in" for name in builtin_names()}
    for folder in user_folders():
        if not folder.is_dir():
            raise ValueError(f"ANGLESIM_STUDIES names {folder}, which is not a folder")
        for path in sorted(folder.glob("*.py")):
            if path.stem.startswith("_"):
                continue
            if path.stem in found and found[path.stem] != str(path.resolve()):
                raise ValueError(f"study {path.stem!r} in {path} takes the name of the study "
                                 f"from {found[path.stem]}; rename one of them")
            found[path.stem] = str(path.resolve())
    return found


def load(name_or_path: str | os.PathLike[str] | Study) -> Study:
    """The :class:`Study` of a built-in or user study by name, or of a ``.py`` file by path.

    Raises:
        ValueError: an unknown name (the message lists the known ones), a path that is not a
            ``.py`` file, or a module without a ``STUDY`` declaration.
    """
    if isinstance(name_or_path, Study):
        return name_or_path
    text = os.fspath(name_or_path)
    if text.endswith(".py") or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file() or path.suffix != ".py":
            raise ValueError(f"study path {text} is not a .py file")
        return _declared(_import_file(path.resolve()), str(path))
    known = available()
    if text not in known:
        raise ValueError(f"unknown study {text!r}; available studies: {', '.join(known)}")
    if known[text] == "built-in":
        return _declared(importlib.import_module(f"anglesim.studies.{text}"), text)
    return _declared(_import_file(Path(known[text])), text)


def _declared(module: types.ModuleType, what: str) -> Study:
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ValueError(f"study {what} declares no STUDY = anglesim.study.Study(...) "
                         f"(found {type(study).__name__})")
    if study.module != module.__name__:
        study = dataclasses.replace(study, module=module.__name__)
        module.STUDY = study
    return study


def _import_file(path: Path) -> types.ModuleType:
    """Import a study file (afresh, so that an edit is seen) as module
    ``anglesim_user_study_<stem>``; register it with
    cloudpickle by value, so that loky and dask workers get its functions without importing
    the file (they need not see the file at all)."""
    name = USER_MODULE_PREFIX + path.stem.replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"study path {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    import cloudpickle  # loky (joblib's default backend) and dask pickle with it

    cloudpickle.register_pickle_by_value(module)
    return module


# ---- the code in the cache key ----------------------------------------------------------------


def code_files(study: Study) -> list[Path]:
    """The source files whose text is the study's code: its module's file(s) (every file of
    a study package) and, for a built-in study or one using their recipes, the shared modules
    of :mod:`anglesim.studies` (its ``_*.py`` files)."""
    module = sys.modules.get(study.module)
    if module is None or getattr(module, "__file__", None) is None:
        raise ValueError(f"the code of study {study.name} (module {study.module!r}) has no "
                         f"source file to hash; give the Study an explicit version")
    files = _module_files(module)
    owners = {getattr(v, "__module__", None) or getattr(v, "__name__", None)
              for v in list(vars(module).values())}
    if study.module.startswith(_BUILTIN) or any(
            isinstance(o, str) and o.startswith(_BUILTIN) for o in owners):
        files += [p.resolve() for p in BUILTIN_FOLDER.glob("_*.py") if p.name != "__init__.py"]
    return sorted(set(files))


def _module_files(module: types.ModuleType) -> list[Path]:
    path = Path(module.__file__).resolve()
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))
    return [path]


def code_version(study: Study) -> str:
    """The study's explicit version, or the first 16 hex digits of SHA-256 over its code
    files' contents (names and bytes, in sorted order)."""
    if study.version is not None:
        return study.version
    digest = hashlib.sha256()
    for path in code_files(study):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
