"""Run the project's torch-free tests with pytest, skipping what needs torch when torch is absent.

Usage (inside the arm64 root, from the repository copy)::

    python scripts/arm64/run_tests.py [--tests DIR] [--list] [-- extra pytest args]

Selection, when ``torch`` is not importable (the lean install):

* a test file whose module-level code imports ``torch`` *unconditionally* (``import torch``,
  ``from torch ...`` as a top-level statement; guarded imports inside ``if``/``try`` do not count) —
  directly or through a helper module next to the tests — is passed to pytest as ``--ignore`` (it
  cannot even be collected);
* so is a test file that imports a workstation-only sub-package (``interformer_edge.models``,
  ``.export``, ``.quantize``, ``.training``): those are installed by ``pip install .`` but need the
  ``workstation`` extra (torch, scipy, scikit-image ...), which the lean install does not promise.
  ``--include-workstation`` keeps the torch-free ones;
* ``-m "not torch"`` is passed, so tests marked ``torch`` (conftest marks each test whose own code
  imports torch) are deselected.

``tests/conftest.py`` itself needs no torch: without it, its export fixtures (``light_export``,
``tiny_export``, ``default_export``) copy prebuilt exports from ``$INTERFORMER_TEST_EXPORTS`` (built on a
host with torch by make_test_exports.py) or skip the test; it also skips the bundled model's tests (unless
a prebuilt ``default/`` is there) and tests whose own code imports a missing workstation-only module
(``tests/lean_install.py``).

Files that use ``pytest.importorskip("torch")`` are collected and skipped by pytest itself. Nothing
else is left out: a torch-free test that fails to import (e.g. because a runtime module imports
torch) is a real failure. The test files are never modified.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

WORKSTATION_PACKAGES = ("models", "export", "quantize", "training")


def module_level_imports(path: Path) -> set[str]:
    """Dotted module names imported by code that runs when ``path`` is imported (plus their parents)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.With):  # runs unconditionally; if/try blocks are guards: skipped
                visit(node.body)
                continue
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for module in modules:
                parts = module.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))

    visit(tree.body)
    return names


def skip_reason(path: Path, local: dict[str, Path], workstation: bool, seen: set[Path] | None = None) -> str | None:
    """Why ``path`` cannot run in the lean install (None: it can), following imports of helpers beside the tests."""
    seen = set() if seen is None else seen
    if path in seen:
        return None
    seen.add(path)
    imports = module_level_imports(path)
    if "torch" in imports:
        return "imports torch at module level; torch is not installed"
    if workstation:
        used = sorted(p for p in WORKSTATION_PACKAGES if f"interformer_edge.{p}" in imports)
        if used:
            return f"imports workstation-only interformer_edge.{'/'.join(used)} (not part of the lean runtime)"
    for name in sorted(imports):
        if name in local:
            reason = skip_reason(local[name], local, workstation, seen)
            if reason:
                return f"via {name}.py: {reason}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=Path, default=Path("tests"), help="the tests directory (default: tests)")
    parser.add_argument("--list", action="store_true", help="print the selection and the pytest command, run nothing")
    parser.add_argument(
        "--include-workstation",
        action="store_true",
        help="also run torch-free tests of the workstation sub-packages (models, export, quantize, training)",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    tests_dir: Path = args.tests
    if not tests_dir.is_dir():
        print(f"run_tests: no tests directory at {tests_dir.resolve()}", file=sys.stderr)
        return 2
    have_torch = importlib.util.find_spec("torch") is not None
    local = {p.stem: p for p in tests_dir.glob("*.py")}
    test_files = sorted(tests_dir.glob("test_*.py"))

    pytest_args = ["-q", "-p", "no:cacheprovider"]
    selected: list[Path] = []
    if have_torch:
        print("run_tests: torch is installed; running every test file")
        selected = test_files
    else:
        pytest_args += ["-m", "not torch"]
        for path in test_files:
            reason = skip_reason(path, local, workstation=not args.include_workstation)
            if reason:
                print(f"run_tests: skip {path}: {reason}")
                pytest_args += ["--ignore", str(path)]
            else:
                selected.append(path)
    if not selected:
        print("run_tests: no torch-free test files found", file=sys.stderr)
        return 2
    print(f"run_tests: running {len(selected)} of {len(test_files)} test files: {' '.join(p.name for p in selected)}")
    command = [*pytest_args, *args.pytest_args, str(tests_dir)]
    print("run_tests: pytest " + " ".join(command), flush=True)
    if args.list:
        return 0

    import pytest

    return int(pytest.main(command))


if __name__ == "__main__":
    sys.exit(main())
