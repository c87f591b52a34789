"""No import cycles among the package's modules, counting imports behind ``if TYPE_CHECKING:`` too.

A cycle held only by type hints still ties two modules into one (neither can be read, moved or tested
without the other), so it counts. Imports inside function bodies do not: they run once both modules
are loaded, and are how a module defers a heavy or optional dependency (torch, openvino).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "interformer_edge"


def installed_folders() -> dict[str, Path]:
    """Package name → its folder, for every root folder of the repository that is a sub-package
    (``package/`` is ``interformer_edge`` itself); checked against where Python finds each."""
    folders = {}
    for init in sorted(ROOT.glob("*/__init__.py")):
        folder = init.parent
        name = PACKAGE if folder.name == "package" else f"{PACKAGE}.{folder.name}"
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            continue
        assert [Path(p).resolve() for p in spec.submodule_search_locations] == [folder], (name, folder)
        folders[name] = folder
    return folders


def module_files(folders: dict[str, Path]) -> dict[str, Path]:
    """Module name → file, for every ``.py`` file of the packages in ``folders``."""
    modules = {}
    for package, folder in folders.items():
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is loaded or type-checked: at top level and inside ``if``
    (``TYPE_CHECKING`` included), ``try``, ``with`` and class bodies; not inside functions."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        else:
            for block in ("body", "orelse", "finalbody"):
                yield from _module_level(getattr(node, block, None) or [])
            for handler in getattr(node, "handlers", None) or []:
                yield from _module_level(handler.body)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The package's modules that module ``name`` (file ``path``) imports, each with its first line."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in _module_level(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                found.setdefault(target, node.lineno)
    return found


def find_cycles(modules: dict[str, Path]) -> dict[tuple[str, ...], list[str]]:
    """Each group of modules that import each other (strongly connected, sorted) → one cycle through its
    first module, ``[a, b, ..., a]``."""
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in graph:
        if node not in index:
            connect(node)
    return {tuple(sorted(group)): _cycle_in(min(group), group, graph) for group in groups}


def _cycle_in(start: str, group: set[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``group``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node]):
                if other == start:
                    return [*paths[node], start]
                if other in group and other not in paths:
                    paths[other] = [*paths[node], other]
                    following.append(other)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def cycle_text(cycle: list[str], modules: dict[str, Path]) -> str:
    """``pkg.a:12 -> pkg.b:3 -> pkg.a``: each module with the line of its import of the next."""
    steps = []
    for here, there in pairwise(cycle):
        line = imports_of(here, modules[here], modules)[there]
        steps.append(f"{here}:{line}")
    return " -> ".join([*steps, cycle[-1]])


def test_the_checker_sees_cycles_behind_type_checking_and_not_in_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    files = {
        "__init__.py": "",
        "a.py": "from .b import B\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\nB = 1\n",
        "c.py": "import pkg.d\n",
        "d.py": "def later():\n    from . import c\n",
        "e.py": "class E:\n    from pkg import f\n",
        "f.py": "try:\n    from .e import E\nexcept ImportError:\n    pass\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    modules = module_files({"pkg": pkg})
    assert imports_of("pkg.b", pkg / "b.py", modules) == {"pkg.a": 3}
    assert imports_of("pkg.d", pkg / "d.py", modules) == {}  # inside a function: not counted
    assert find_cycles(modules) == {
        ("pkg.a", "pkg.b"): ["pkg.a", "pkg.b", "pkg.a"],
        ("pkg.e", "pkg.f"): ["pkg.e", "pkg.f", "pkg.e"],
    }


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    folders = installed_folders()
    assert {PACKAGE, f"{PACKAGE}.core", f"{PACKAGE}.runtime", f"{PACKAGE}.bench"} <= set(folders)
    modules = module_files(folders)
    cycles = find_cycles(modules)
    assert not cycles, "; ".join(
        f"{', '.join(group)} import each other, e.g. {cycle_text(cycle, modules)}" for group, cycle in cycles.items()
    )
