"""The folder layout is the architecture, as README.md promises it: which folder may import which ("Repository
layout and tests") and which may import torch (the folder table's "needs torch" column)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# README, "Repository layout and tests": "`core` imports no other folder; `runtime` ... imports only `core`;
# `models` and `training` import `core`; `export`, `quantize` and `bench` build on `core`, `runtime` and
# `models`; `quantize` on `core` and `runtime` [...] and on `annotate` only inside functions; `annotate` on `core`
# and `runtime`." Anything not listed is a layering error, lazy imports too.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "runtime": {"core"},
    "models": {"core"},
    "training": {"core", "models"},
    "export": {"core", "runtime", "models"},
    "quantize": {"core", "runtime", "annotate"},
    # models and export inside functions only (the README's words; the torch rule below checks "no" folders).
    "bench": {"core", "runtime", "models", "export"},
    "annotate": {"core", "runtime"},
}
# Folders a folder may import only inside functions (the README's "only inside functions").
LAZY_ONLY: dict[str, set[str]] = {"quantize": {"annotate"}}

# README, the folder table's "needs torch" column. "never": no import of torch anywhere in the folder, not
# even inside a function. "no": torch and the folders that need it only inside functions, i.e. optional
# paths that the lean install (no torch) never takes, such as bench's PyTorch eager baseline row.
NEEDS_TORCH: dict[str, str] = {
    "models": "yes",
    "export": "yes",
    "quantize": "no",
    "core": "never",
    "runtime": "never",
    "annotate": "never",
    "bench": "no",
    "training": "yes",
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute and dotted: a relative ``..export`` is ``interformer_edge.export``
    line: int
    lazy: bool  # inside a function: runs only when that function is called


def imports(source: str, package: list[str]) -> list[Import]:
    """Every import statement of a module of ``package`` (e.g. ``["interformer_edge", "runtime"]``), wherever
    it is: module level, ``if``/``try`` blocks, functions."""
    tree = ast.parse(source)
    in_function = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
        if inner is not node
    }
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            prefix = ".".join([*base, *([node.module] if node.module else [])])
            # ``from interformer_edge import models`` imports a folder by the name after ``import``.
            modules = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [Import(module, node.lineno, id(node) in in_function) for module in modules]
    return found


def module_imports(path: Path) -> list[Import]:
    return imports(path.read_text(encoding="utf-8"), ["interformer_edge", *path.relative_to(ROOT).parent.parts])


def folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "interformer_edge" and len(parts) > 1 and parts[1] in ALLOWED else None


def is_torch(module: str) -> bool:
    return module.split(".")[0] == "torch"


def modules_of(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no modules in {folder}/"
    return files


def where(path: Path, found: Import, what: str) -> str:
    return f"{path.relative_to(ROOT)}:{found.line} imports {what}{' (inside a function)' if found.lazy else ''}"


def test_the_checker_sees_absolute_relative_and_lazy_imports() -> None:
    source = (
        "import interformer_edge.models.imsa\nfrom ..export import pipeline\n"
        "from interformer_edge import bench\nfrom . import sibling\nimport torch\n"
        "def f():\n    from torch import nn\n    from .. import training\n"
    )
    found = {
        (folder_of(i.module) or i.module.split(".")[0], i.line, i.lazy)
        for i in imports(source, ["interformer_edge", "runtime"])
    }
    assert found == {
        ("models", 1, False),
        ("export", 2, False),
        ("interformer_edge", 3, False),  # the import root, then the folder named after "import"
        ("bench", 3, False),
        ("runtime", 4, False),
        ("torch", 5, False),
        ("torch", 7, True),
        ("interformer_edge", 8, True),
        ("training", 8, True),
    }
    # From a folder inside a folder (annotate/nuclio/), ``..`` is still the folder and ``...`` the import root.
    nested = imports("from ..errors import E\nfrom ...runtime import x\n", ["interformer_edge", "annotate", "nuclio"])
    assert [folder_of(i.module) for i in nested] == ["annotate", "annotate", "runtime", "runtime"]


def test_the_torch_column_is_the_readmes() -> None:
    rows = re.findall(r"^\| `(\w+)/` \|.*\| ([^|]+) \|$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    column = {folder: cell.strip("* ").split(" (")[0] for folder, cell in rows if folder in ALLOWED}
    assert column == NEEDS_TORCH


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_folder_imports_only_the_folders_the_readme_lists(folder: str) -> None:
    wrong = sorted(
        {
            where(path, found, f"{folder_of(found.module)}/")
            for path in modules_of(folder)
            for found in module_imports(path)
            if folder_of(found.module) not in {None, folder, *ALLOWED[folder]}
            or (folder_of(found.module) in LAZY_ONLY.get(folder, set()) and not found.lazy)
        }
    )
    assert not wrong, "; ".join(wrong)


@pytest.mark.parametrize("folder", sorted(folder for folder, needs in NEEDS_TORCH.items() if needs != "yes"))
def test_torch_is_imported_only_where_the_readme_allows_it(folder: str) -> None:
    torch_folders = {name for name, needs in NEEDS_TORCH.items() if needs == "yes"}
    anywhere = NEEDS_TORCH[folder] == "never"
    wrong = sorted(
        {
            where(path, found, "torch" if is_torch(found.module) else f"{folder_of(found.module)}/")
            for path in modules_of(folder)
            for found in module_imports(path)
            if (is_torch(found.module) or folder_of(found.module) in torch_folders) and (anywhere or not found.lazy)
        }
    )
    assert not wrong, f"{folder}/ needs torch: {NEEDS_TORCH[folder]} (README); " + "; ".join(wrong)
