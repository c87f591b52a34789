"""pytest plugin for running the tests in a lean, torch-free install (loaded by run_tests.py with ``-p``).

A stop-gap while ``tests/conftest.py`` imports torch unconditionally (run_tests.py then passes
``--noconftest`` and loads this instead). It provides, without torch:

* the ``torch`` and ``openvino`` markers (so ``-m "not torch"`` works and nothing warns);
* the export fixtures the runtime tests use — ``light_export``, ``tiny_export``, ``default_export`` —
  from prebuilt folders under ``$INTERFORMER_TEST_EXPORTS/<light|tiny|default>`` (made on a machine
  with torch by scripts/arm64/make_test_exports.py with conftest's own helpers), copied to a temporary
  folder per session; without them the test is *skipped* with the reason;
* a test whose own code (the test file, not ``interformer_edge``) imports torch or another
  workstation-only package (``WORKSTATION_MODULES``: onnx, onnxslim, nncf, scikit-image) that is not
  installed is reported as skipped ("needs torch") instead of failed. A ``ModuleNotFoundError`` for
  them raised from inside the package is still a failure: the runtime must never need them.

Once conftest makes torch optional and offers the same prebuilt-export escape hatch, this file is
unnecessary (run_tests.py only loads it together with ``--noconftest``).
"""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Generator
from pathlib import Path

import pytest

EXPORTS_ENV = "INTERFORMER_TEST_EXPORTS"
# Packages of the workstation extra that a test may import for itself (e.g. onnx to build a graph
# variant); harness.py's test venv adds onnx, but ARM64_TEST_EXTRAS can leave it out.
WORKSTATION_MODULES = ("torch", "onnx", "onnxslim", "nncf", "skimage")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "torch: needs PyTorch (the workstation extra); deselected on the lean install")
    config.addinivalue_line("markers", "openvino: needs the openvino package")
    config.addinivalue_line("markers", "bundled_model: needs the export of the bundled default model")


def _prebuilt(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get(EXPORTS_ENV)
    if not root:
        pytest.skip(f"{name}_export is built with torch; set {EXPORTS_ENV} to prebuilt exports to run this here")
    source = Path(root) / name
    if not (source / "manifest.json").is_file():
        pytest.skip(f"no prebuilt export at {source} ({EXPORTS_ENV})")
    target = tmp_path_factory.mktemp(f"prebuilt_{name}") / "export"
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="session")
def light_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _prebuilt("light", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _prebuilt("tiny", tmp_path_factory)


def _has_prebuilt_default() -> bool:
    root = os.environ.get(EXPORTS_ENV)
    return bool(root) and (Path(root) / "default" / "manifest.json").is_file()


@pytest.fixture(scope="session")
def default_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if _has_prebuilt_default():
        return _prebuilt("default", tmp_path_factory), "default"
    return _prebuilt("light", tmp_path_factory), "random small light"


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Checked per test: the session-scoped fixture above cannot see the requesting test's markers.
    if item.get_closest_marker("bundled_model") is not None and not _has_prebuilt_default():
        # A model-quality test: the same graphs are checked on the host; emulating it here would take long.
        pytest.skip(f"needs the bundled model's export ({EXPORTS_ENV}/default); this run has small random models")


def _workstation_import_in_test_code(excinfo: pytest.ExceptionInfo[BaseException], test_file: Path) -> str | None:
    """The workstation module whose ModuleNotFoundError was raised by an import statement in the test
    file itself, or None."""
    if not isinstance(excinfo.value, ModuleNotFoundError):
        return None
    module = (excinfo.value.name or "").split(".")[0]
    if module not in WORKSTATION_MODULES:
        return None
    frames = [f for f in traceback.extract_tb(excinfo.tb) if not f.filename.startswith("<frozen importlib")]
    return module if frames and Path(frames[-1].filename).resolve() == test_file.resolve() else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    module = _workstation_import_in_test_code(call.excinfo, Path(item.path)) if call.excinfo is not None else None
    if report.failed and module:
        report.outcome = "skipped"
        report.longrepr = (
            str(item.path),
            item.location[1] or 0,
            f"Skipped: needs {module} (workstation extra; imported by the test itself)",
        )
