"""The tests in a lean install (``pip install .``: no torch), e.g. the emulated arm64 run of
``scripts/arm64/run_tests.py``: where the export fixtures come from there, and which tests are skipped.

conftest.py uses these only when torch is not installed: with torch, nothing here skips anything.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# Folders light/, tiny/ (and optionally default/) of exports made on a host with torch by
# scripts/arm64/make_test_exports.py, with conftest's own helpers: the export fixtures build them with torch.
EXPORTS_ENV = "INTERFORMER_TEST_EXPORTS"
# Packages of the workstation extra that a test may import in its own body (e.g. onnx to build a graph
# variant). The arm64 test venv adds onnx, but ARM64_TEST_EXTRAS can leave it out.
WORKSTATION_MODULES = frozenset({"torch", "onnx", "onnxslim", "nncf", "skimage"})


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def has_prebuilt(name: str) -> bool:
    root = os.environ.get(EXPORTS_ENV)
    return bool(root) and (Path(root) / name / "manifest.json").is_file()


def prebuilt_export(name: str, factory: pytest.TempPathFactory) -> Path:
    """A copy for this session (tests may write into it) of ``$INTERFORMER_TEST_EXPORTS/<name>``; without
    one, the test that asked for it is skipped with the reason."""
    root = os.environ.get(EXPORTS_ENV)
    if not root:
        pytest.skip(f"{name}_export is built with torch, which is not installed; set {EXPORTS_ENV} to prebuilt exports")
    if not has_prebuilt(name):
        pytest.skip(f"no prebuilt export at {Path(root) / name} ({EXPORTS_ENV})")
    target = factory.mktemp(f"prebuilt_{name}") / "export"
    shutil.copytree(Path(root) / name, target)
    return target


@functools.cache
def imported_by(function: Callable[..., object]) -> frozenset[str]:
    """Top-level names of the modules a test function's own code imports (not its module's, not its callees')."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):  # no source to read: nothing to detect
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return frozenset(names)


def imports_torch(item: pytest.Item) -> bool:
    return isinstance(item, pytest.Function) and "torch" in imported_by(item.function)


def skip_reason(item: pytest.Item) -> str | None:
    """Why ``item`` cannot run in this torch-free install, or None. A workstation module missing from inside
    ``interformer_edge`` is not a reason: the runtime must never need one, so that stays a failure."""
    if item.get_closest_marker("torch") is not None:
        return "needs torch (the workstation extra), which is not installed"
    own = imported_by(item.function) if isinstance(item, pytest.Function) else frozenset()
    missing = sorted(module for module in own & WORKSTATION_MODULES if not installed(module))
    if missing:
        return f"imports {', '.join(missing)} (the workstation extra), which is not installed"
    if item.get_closest_marker("bundled_model") is not None and not has_prebuilt("default"):
        # A model-quality test: the same graphs are checked where torch can export the bundled model.
        return f"needs the bundled model's export ({EXPORTS_ENV}/default); without torch only prebuilt small models"
    return None
