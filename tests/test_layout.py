"""The package's shape, checked on its source: private names stay private, imports flow one way.

* no module imports another module's underscore name (``from .cache import _store``, or
  ``cache._store`` through an imported module): internals live in ``_module.py`` files whose
  names are public inside, and the package ``__init__`` exports the user API;
* no import cycle between anglesim's modules, counting imports inside functions and
  ``importlib.import_module("anglesim.…")`` with a literal name (a cycle an import linter cannot
  see);
* no study imports another study (what studies share lives in their recipes module) and no
  study seeds a random generator by hand (its replicate context hands it named streams).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anglesim"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = _module_name(path).split(".")
    if not _is_package(path):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> Iterator[tuple[str, ast.AST]]:
    """Every anglesim module ``path`` imports (statically, anywhere in the file, or through
    ``importlib.import_module`` with a literal name), with the node that imports it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "anglesim":
                    yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            if module.split(".")[0] != "anglesim":
                continue
            yield module, node
            for alias in node.names:  # `from pkg import submodule`
                if f"{module}.{alias.name}" in MODULES:
                    yield f"{module}.{alias.name}", node
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            name = node.args[0].value
            if name.startswith("."):
                pkg = _module_name(path) if _is_package(path) else _module_name(path).rsplit(
                    ".", 1)[0]
                name = pkg + name
            if name.split(".")[0] == "anglesim":
                yield name, node


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _underscore_imports(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name -> anglesim module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = _resolve(path, node)
                if module.split(".")[0] != "anglesim":
                    continue
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    if full in MODULES:  # a module, private or not, may be imported
                        aliases[alias.asname or alias.name] = full
                    elif _private(alias.name):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                                     f"{alias.name} from {module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "anglesim" and alias.asname:
                        aliases[alias.asname] = alias.name
        own = _module_name(path) if path.is_relative_to(PACKAGE) else None
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and aliases[node.value.id] != own
                    and f"{aliases[node.value.id]}.{node.attr}" not in MODULES):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                             f"{node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_module_s_underscore_name():
    paths = list(MODULES.values()) + sorted((ROOT / "tests").rglob("*.py"))
    assert _underscore_imports(paths) == []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in _imports(path):
            while target and target not in MODULES:  # `from pkg.mod import Class`
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycle_between_modules_even_through_importlib():
    """A package's ``__init__`` importing its own submodules is not a cycle (Python runs it
    first whichever submodule is asked for); every other loop is."""
    graph = _graph()
    for name in graph:  # a submodule importing its own package's __init__ is the package
        graph[name] = {t for t in graph[name] if t not in _parents(name)}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


STUDIES = [p for p in sorted((PACKAGE / "studies").rglob("*.py"))]


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_study_imports_another_study_or_seeds_by_hand(path):
    own = _module_name(path).split(".")[:3]  # anglesim.studies.<study>
    others = sorted({t for t, _ in _imports(path)
                     if t.startswith("anglesim.studies.") and t.split(".")[:3] != own
                     and not t.split(".")[2].startswith("_")})
    assert others == [], f"{path.name} imports other studies {others}"
    seeds = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in ("manual_seed", "seed")]
    assert seeds == [], f"{path.name} seeds a generator by hand at lines {seeds}"
