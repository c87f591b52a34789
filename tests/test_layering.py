"""The folder layout is the architecture: which folder may import which (see ``package/__init__.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folder -> the other folders its modules may import. Anything not listed is a layering error.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "runtime": {"core"},
    "models": {"core"},
    "training": {"core", "models"},
    "export": {"core", "runtime", "models"},
    "quantize": {"core", "runtime", "export", "models"},
    "bench": {"core", "runtime", "export", "models"},
    "annotate": {"core", "runtime"},
}


def imported_folders(path: Path, folder: str) -> dict[str, int]:
    """The package folders one module imports (absolute ``interformer_edge.X`` or relative ``..X``),
    each with the line of its first import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level >= 2:
            modules = [f"interformer_edge.{node.module or ''}"] + [
                f"interformer_edge.{alias.name}" for alias in node.names if not node.module
            ]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "interformer_edge" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] != folder:
                found.setdefault(parts[1], node.lineno)
    return found


def test_the_checker_sees_absolute_and_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import interformer_edge.models.imsa\nfrom ..export import pipeline\n"
        "from interformer_edge import bench\nfrom . import sibling\nimport torch\n"
    )
    assert imported_folders(module, "runtime") == {"models": 1, "export": 2, "bench": 3}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_folder_imports_only_the_folders_below_it(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no modules in {folder}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {other}"
        for path in files
        for other, line in imported_folders(path, folder).items()
        if other not in ALLOWED[folder]
    ]
    assert not wrong, "; ".join(wrong)
