"""Declared studies: what a study is, where studies are found, and how one is run.

A study module (built in under :mod:`anglesim.studies`, in a user folder, or any ``.py`` file)
defines one :class:`Study` named ``STUDY``: its question, its grid, its sizes, its replicate
function, its declared configuration (the defaults that command-line overrides are checked
against), its derived measures, figure and summary, whether its conditions share replicate
seeds (``pair_axes``) and which variables may hold NaN. This module finds studies
(:func:`available`, :func:`load`), resolves overrides (:func:`plan`, grammar in
:mod:`anglesim.overrides`), runs them (:func:`run`), reports what their cache holds without
running anything (:func:`status`, :func:`dry_run`) and redraws their figures
(:func:`draw_figure`, :func:`redraw`).

Search order of :func:`available`: the built-in studies, then every folder named in
``$ANGLESIM_STUDIES`` (folders separated by ``os.pathsep``; each ``*.py`` file there not starting
with ``_`` is a study; they add to the built-in list, and a user study of the same name as a
built-in one is refused). ``load("path/to/my_study.py")`` loads a study from a file.

The cache key of every replicate (the config handed to :func:`anglesim.replicates.run_study`)
holds the resolved configuration, the overrides given, the anglesim version and a hash of the
study's code (its module's source files, or its explicit ``version``), so that an edit to a
replicate function recomputes instead of serving old results.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from . import __version__
from . import validation as check
from .overrides import apply_overrides, parse_overrides

__all__ = ["Plan", "Study", "available", "draw_figure", "dry_run", "load", "plan", "redraw",
           "run", "status"]

log = logging.getLogger(__name__)

USER_MODULE_PREFIX = "anglesim_user_study_"
"""Module-name prefix of studies loaded from a file (``anglesim_user_study_<name>``)."""


@dataclasses.dataclass(frozen=True)
class Study:
    """One declared study.

    Attributes:
        name: the study's name (letters, digits, ``_``; the Dataset's ``study`` attribute).
        question: one sentence: what the study asks.
        replicate: ``replicate(condition, replicate, seed, size=params) -> xr.Dataset``, a
            module-level function (workers import or unpickle it). ``params`` is the resolved
            configuration: the size's entries merged with ``defaults``, after overrides. If it
            also takes ``study_seed``, the study seed is handed on (for studies that derive
            shared seeds themselves).
        sizes: ``{"quick": {...}, "full": {...}}``; each holds ``replicates`` (per condition).
        grid: ``{axis: values}``, or ``grid(params) -> {axis: values}`` where the grid follows
            from the configuration.
        defaults: nested configuration shared by both sizes (e.g. ``{"phases": {"finetune":
            {"lr": 1e-3}}}``); together with the size's entries, what overrides may change.
        describe: ``describe(params, grid) -> dict`` of further JSON facts to record in the
            Dataset's config (stimulus, model, phases); they are part of the cache key.
        postprocess: ``postprocess(ds) -> ds`` adding derived measures before saving.
        figure: ``figure(ds) -> matplotlib Figure`` drawing the saved Dataset.
        summary: ``summary(ds) -> str``, a few lines of numbers printed after a run.
        pair_axes: grid axes whose conditions share replicate seeds (one parent, many
            treatments): replicate r of every condition that differs only along these axes
            gets the same seed (:func:`anglesim.replicates.run_study`'s ``pair_axes``).
            Empty: every condition has its own seeds.
        allow_nan: variables allowed to hold NaN in a successful replicate.
        version: an explicit code version; when given it replaces the hash of the module's
            source in the cache key (bump it when results change, keep it across cosmetic
            edits).
        devices: the torch device types the replicate honours through ``params["device"]``
            (``--device``); another device is refused before anything runs.
        module: the Python module that declared it (set by :func:`load`; for a study made
            elsewhere, the replicate function's module).
    """

    name: str
    question: str
    replicate: Callable[..., xr.Dataset]
    sizes: Mapping[str, Mapping[str, Any]]
    grid: Mapping[str, Sequence] | Callable[[dict], Mapping[str, Sequence]]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    describe: Callable[[dict, dict], Mapping[str, Any]] | None = None
    postprocess: Callable[[xr.Dataset], xr.Dataset] | None = None
    figure: Callable[[xr.Dataset], Any] | None = None
    summary: Callable[[xr.Dataset], str] | None = None
    pair_axes: tuple[str, ...] = ()
    allow_nan: tuple[str, ...] = ()
    version: str | None = None
    devices: tuple[str, ...] = ("cpu",)
    module: str | None = None

    def __post_init__(self) -> None:
        name = check.text("name", self.name)
        if not name.replace("_", "").isalnum() or not name[0].isalpha():
            raise ValueError(f"name must be letters, digits and '_' starting with a letter, "
                             f"got {name!r}")
        check.text("question", self.question)
        if not callable(self.replicate):
            raise ValueError(f"replicate must be callable, got {self.replicate!r}")
        if not isinstance(self.sizes, Mapping) or set(self.sizes) != {"quick", "full"}:
            raise ValueError(f"sizes must be a dict with keys 'quick' and 'full', got "
                             f"{self.sizes!r}")
        for size, entries in self.sizes.items():
            if not isinstance(entries, Mapping) or "replicates" not in entries:
                raise ValueError(f"sizes[{size!r}] must be a dict holding 'replicates', got "
                                 f"{entries!r}")
            check.integer(f"sizes[{size!r}]['replicates']", entries["replicates"], minimum=1)
        if not (callable(self.grid) or isinstance(self.grid, Mapping)):
            raise ValueError(f"grid must be a dict or a callable, got {self.grid!r}")
        if not isinstance(self.defaults, Mapping):
            raise ValueError(f"defaults must be a dict, got {self.defaults!r}")
        for field in ("describe", "postprocess", "figure", "summary"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise ValueError(f"{field} must be callable or None, got {value!r}")
        object.__setattr__(self, "pair_axes", tuple(check.name_list("pair_axes",
                                                                    list(self.pair_axes))))
        object.__setattr__(self, "allow_nan", tuple(check.name_list("allow_nan",
                                                                    list(self.allow_nan))))
        if self.version is not None:
            check.text("version", self.version)
        if self.module is None:  # declared outside a study file: the replicate's module
            object.__setattr__(self, "module", getattr(self.replicate, "__module__", None)
                               or "__main__")

    def configuration(self, size: str) -> dict[str, Any]:
        """The declared configuration of ``size``: its entries merged with ``defaults``."""
        size = check.choice("size", size, ("quick", "full"))
        return _merge(json.loads(json.dumps(dict(self.sizes[size]))),
                      json.loads(json.dumps(dict(self.defaults))))

    def grid_for(self, params: Mapping[str, Any]) -> dict[str, list]:
        """The grid of a resolved configuration."""
        grid = self.grid(dict(params)) if callable(self.grid) else self.grid
        return {str(k): list(v) for k, v in grid.items()}


def _merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


# ---- finding studies --------------------------------------------------------------------------


def builtin_names() -> list[str]:
    """Names of the studies shipped in :mod:`anglesim.studies`."""
    import pkgutil

    from . import studies

    return sorted(m.name for m in pkgutil.iter_modules(studies.__path__)
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


def load_module(name_or_path: str | os.PathLike[str]) -> types.ModuleType:
    """The Python module that declares a study (for its helper functions)."""
    study = load(name_or_path)
    return sys.modules[study.module]


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
    a study package), the shared ``anglesim.studies._common``, and other study modules it
    imports from (e.g. one study's estimator used by another)."""
    module = sys.modules.get(study.module)
    if module is None or getattr(module, "__file__", None) is None:
        raise ValueError(f"the code of study {study.name} (module {study.module!r}) has no "
                         f"source file to hash; give the Study an explicit version")
    files = _module_files(module)
    prefix = "anglesim.studies"
    if study.module.startswith(prefix):
        files += _module_files(importlib.import_module(f"{prefix}._common"))
    for value in list(vars(module).values()):
        owner = getattr(value, "__module__", None) or getattr(value, "__name__", None)
        if isinstance(owner, str) and owner.startswith(prefix) and owner in sys.modules:
            files += _module_files(sys.modules[owner])
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


# ---- planning a run ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything that decides a study run's replicates (see :func:`plan`)."""

    study: Study
    size: str
    params: dict[str, Any]
    grid: dict[str, list]
    n_replicates: int
    seed: int
    overrides: dict[str, Any]
    config: dict[str, Any]

    @property
    def cache_name(self) -> str:
        return f"{self.study.name}-{self.size}"

    def results_file(self, results: Path) -> Path:
        name = self.study.name
        return Path(results) / (f"{name}_quick.nc" if self.size == "quick" else f"{name}.nc")


def plan(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
         seed: int = 0, replicates: int | None = None, device: str | None = None) -> Plan:
    """Resolve a study's configuration, grid and replicates for one run.

    ``overrides`` are ``key=value`` strings (see :mod:`anglesim.overrides`) or an already
    parsed ``{dotted key: value}``; ``replicates`` (the ``--replicates`` option) and an
    override ``replicates=N`` mean the same. ``device`` (a torch device type the study
    declares in ``devices``) is handed to the replicate function as ``params["device"]`` when
    it is not the CPU (results on another device differ in their last bits, so it is part of
    the cache key).

    Raises:
        ValueError: an unknown key (listing the valid ones) or a bad value (naming both).
    """
    study = load(study)
    size = "quick" if check.boolean("quick", quick) else "full"
    seed = check.integer("seed", seed, minimum=0)
    given = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    if replicates is not None:
        given.setdefault("replicates", check.integer("replicates", replicates, minimum=1))
    declared = study.configuration(size)
    params, grid_changes = apply_overrides(declared, study.grid_for(declared), given)
    grid = {**study.grid_for(params), **grid_changes}
    if device is not None:
        params.update(_device(study, device))
    n = check.integer("replicates", params["replicates"], minimum=1)
    for axis in study.pair_axes:
        if axis not in grid:
            raise ValueError(f"pair_axes names {axis!r}, which is not a grid axis of study "
                             f"{study.name} (axes: {', '.join(grid) or 'none'})")
    # The number of replicates is not part of the cache key: replicate r of a condition is the
    # same whether 2 or 6 are asked for (the Dataset's replicate axis records how many ran).
    config = {"study": study.name, "size": size,
              "sizes": {**params, "replicates": declared["replicates"]}}
    if study.describe is not None:
        config.update(study.describe(params, grid))
    config["overrides"] = {k: v for k, v in given.items() if k != "replicates"}
    config["code"] = {"study": code_version(study), "anglesim": __version__,
                      "origin": "built-in" if study.module.startswith("anglesim.studies")
                      else Path(getattr(sys.modules.get(study.module), "__file__", None)
                                or study.module).name}
    config["pair_axes"] = list(study.pair_axes)
    return Plan(study, size, params, grid, n, seed, given, config)


def _device(study: Study, device: Any) -> dict[str, str]:
    """``{"device": name}`` for a device other than the CPU (the CPU is the default, so it
    leaves the configuration, and the cache key, as they are)."""
    import torch

    text = check.text("device", device)
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device must be a torch device such as cpu or cuda, got "
                         f"{text!r}") from None
    if parsed.type not in study.devices:
        raise ValueError(f"--device {text}: study {study.name} computes on "
                         f"{', '.join(study.devices)} only")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text}: CUDA is not available on this machine")
    return {} if parsed.type == "cpu" else {"device": str(parsed)}


# ---- running ----------------------------------------------------------------------------------


def task_function(p: Plan) -> Callable[..., xr.Dataset]:
    """The picklable ``fn(condition, replicate, seed)`` that the replicate manager calls."""
    fn = p.study.replicate
    kwargs: dict[str, Any] = {"size": p.params}
    if "study_seed" in inspect.signature(fn).parameters:
        kwargs["study_seed"] = p.seed
    return functools.partial(fn, **kwargs)


def _code_record(p: Plan, cache_dir: Path) -> Path:
    return cache_dir / f"{p.cache_name}.code.json"


def _code_note(p: Plan, cache_dir: Path) -> str | None:
    """A line saying so if the study's code changed since its cache was written."""
    record = _code_record(p, cache_dir)
    now = p.config["code"]
    note = None
    if record.is_file():
        try:
            before = json.loads(record.read_text())
        except (OSError, ValueError):
            before = None
        if isinstance(before, dict) and before != now:
            changed = [k for k in now if before.get(k) != now[k]]
            note = (f"study {p.study.name}: its " + " and ".join(
                "code" if k == "study" else f"{k} version" for k in changed if k != "origin")
                + f" changed since the cache was written ({before.get('study')} → "
                f"{now['study']}); its replicates are recomputed")
    return note


def run(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
        seed: int = 0, replicates: int | None = None, results: str | os.PathLike = "results",
        n_jobs: int = 1, cache: bool = True, retry_failed: bool = False,
        progress: bool = True, device: str | None = None,
        notify: Callable[[str], None] | None = None, **manager: Any) -> Path:
    """Run a study's grid × replicates through the replicate manager and save its Dataset.

    Saves ``results/<name>[_quick].nc`` (attrs ``study`` and ``config``) after
    ``postprocess``; caches replicates under ``results/cache/<name>-<size>/`` unless
    ``cache=False``. ``notify`` gets one line when the study's code changed since its cache
    was written (default: the log). Extra keyword arguments (``backend``, ``scheduler``,
    ``threads_per_worker``) go to :func:`anglesim.replicates.run_study`. Returns the path.
    """
    from .io import save_dataset
    from .replicates import run_study

    p = plan(study, quick, overrides, seed, replicates, device)
    results = Path(results)
    cache_dir = results / "cache" if cache else None
    if cache_dir is not None:
        note = _code_note(p, cache_dir)
        if note:
            (notify or log.warning)(note)
    n_tasks = p.n_replicates * max(1, _n_conditions(p.grid))
    ds = run_study(task_function(p), p.grid, n_replicates=p.n_replicates, seed=p.seed,
                   n_jobs=min(n_jobs, n_tasks) if n_jobs > 0 else n_jobs,
                   cache_dir=cache_dir, name=p.cache_name, config=p.config,
                   progress=progress, retry_failed=retry_failed,
                   code_version=p.config["code"]["study"],
                   code_origin=p.config["code"]["origin"], pair_axes=p.study.pair_axes,
                   allow_nan=p.study.allow_nan, **manager)
    if cache_dir is not None:  # the code version the cache now holds, for the next run
        _code_record(p, cache_dir).write_text(json.dumps(p.config["code"]))
    if p.study.postprocess is not None and not bool(ds["failed"].all()):
        ds = p.study.postprocess(ds)  # when every replicate failed there is nothing to derive
    ds.attrs["study"] = p.study.name
    return save_dataset(ds, p.results_file(results), config=p.config, seed=p.seed)


def _n_conditions(grid: Mapping[str, Sequence]) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def status(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
           seed: int = 0, replicates: int | None = None,
           results: str | os.PathLike = "results", device: str | None = None):
    """The :class:`anglesim.replicates.StudyStatus` of a study's cache; runs nothing."""
    from .replicates import study_status

    p = plan(study, quick, overrides, seed, replicates, device)
    return study_status(p.grid, p.n_replicates, seed=p.seed,
                        cache_dir=Path(results) / "cache", name=p.cache_name, config=p.config,
                        code_version=p.config["code"]["study"], pair_axes=p.study.pair_axes)


def dry_run(study: Study | str, quick: bool = False, overrides: Sequence[str] | Mapping = (),
            seed: int = 0, replicates: int | None = None,
            results: str | os.PathLike = "results", device: str | None = None) -> str:
    """Lines for people: the run's configuration changes, then every cell (condition ×
    replicate) with its seed and whether it is cached, failed or to run."""
    from .replicates import condition_id, iter_conditions, replicate_seed

    p = plan(study, quick, overrides, seed, replicates, device)
    found = status(p.study, quick, p.overrides, seed, None, results, device)
    cached = {(json.dumps(c, sort_keys=True, default=str), r) for c, r in found.cached}
    failed = {(json.dumps(f["condition"], sort_keys=True, default=str), f["replicate"])
              for f in found.failed}
    lines = [f"study {p.study.name} ({p.size}): {_n_conditions(p.grid)} condition(s) × "
             f"{p.n_replicates} replicate(s); {len(found.cached)} cached, "
             f"{len(found.failed)} failed, {len(found.missing)} to run"]
    if p.overrides:
        lines.append("overrides: " + ", ".join(f"{k}={json.dumps(v)}"
                                               for k, v in p.overrides.items()))
    if p.study.pair_axes:
        lines.append(f"conditions along {', '.join(p.study.pair_axes)} share replicate seeds")
    for condition in iter_conditions(p.grid):
        key = json.dumps(condition, sort_keys=True, default=str)
        shared = {k: v for k, v in condition.items() if k not in p.study.pair_axes}
        label = ", ".join(f"{k}={v}" for k, v in condition.items()) or "-"
        for r in range(p.n_replicates):
            s = replicate_seed(p.seed, condition_id(shared if p.study.pair_axes else condition),
                               r)
            state = ("cached" if (key, r) in cached else
                     "failed" if (key, r) in failed else "to run")
            lines.append(f"  {label}, replicate {r} (seed {s}): {state}")
    return "\n".join(lines)


# ---- figures ----------------------------------------------------------------------------------


def draw_figure(ds: xr.Dataset):
    """Draw a saved Dataset's figure, chosen by its ``study`` attribute (built-in and user
    studies). Raises ValueError for a study without a figure."""
    name = ds.attrs.get("study")
    try:
        study = load(str(name))
    except ValueError:
        raise ValueError(f"no study {name!r} to draw this Dataset; known studies: "
                         f"{', '.join(available())}") from None
    if study.figure is None:
        raise ValueError(f"study {name!r} declares no figure")
    return study.figure(ds)


def redraw(results: str | os.PathLike, out: str | os.PathLike,
           echo: Callable[[str], None] = print) -> list[Path]:
    """Redraw the figure of every saved Dataset ``results/*.nc`` into ``out``; no training.

    Datasets of unknown studies or studies without a figure are skipped with a line.
    Returns the files written.
    """
    from .io import load_dataset
    from .plotting import save_figure

    paths = sorted(Path(results).glob("*.nc"))
    if not paths:
        raise FileNotFoundError(f"no saved Datasets (*.nc) in {results}; run a study first")
    known = available()
    written: list[Path] = []
    for path in paths:
        ds = load_dataset(path)
        name = ds.attrs.get("study")
        if name not in known or load(name).figure is None:
            echo(f"skipped {path}: no figure for study {name!r}")
            continue
        for fp in save_figure(draw_figure(ds), Path(out) / path.stem):
            echo(f"figure: {fp}")
            written.append(fp)
    return written
