"""Build the small exports the runtime tests use, on the host (needs torch), for a torch-free test run.

The runtime tests get their model folders from the ``light_export`` / ``tiny_export`` fixtures in
``tests/conftest.py``, which *build* them with torch. The arm64 root has no torch, so ``harness.py`` builds
them here with the very same conftest functions and copies them in (``INTERFORMER_TEST_EXPORTS``)::

    PYTHON_WITH_TORCH scripts/arm64/make_test_exports.py OUT_DIR   # → OUT_DIR/light, OUT_DIR/tiny

Writes nothing into the repository. Exits non-zero if conftest no longer offers the helpers.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# (fixture name, neck preset, seed) exactly as in tests/conftest.py's light_export / tiny_export.
EXPORTS = (("light", "light", 0), ("tiny", "tiny", 2))


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = Path(sys.argv[1]).resolve()
    if out == REPO or REPO in out.parents:
        print(f"make_test_exports: {out} is inside the repository; pick a folder outside it", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO / "tests"))
    spec = importlib.util.spec_from_file_location("interformer_tests_conftest", REPO / "tests" / "conftest.py")
    assert spec and spec.loader
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    for helper in ("small_checkpoint", "export_for_runtime"):
        if not hasattr(conftest, helper):
            print(f"make_test_exports: tests/conftest.py lacks {helper}(); update this script", file=sys.stderr)
            return 1
    out.mkdir(parents=True, exist_ok=True)
    for name, neck, seed in EXPORTS:
        start = time.perf_counter()
        target = out / name
        with tempfile.TemporaryDirectory(prefix=f"interformer-{name}-") as tmp:
            checkpoint = conftest.small_checkpoint(Path(tmp) / f"{name}.pth", neck, seed=seed)
            built = conftest.export_for_runtime(checkpoint, Path(tmp) / "export")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(built, target)
        print(f"make_test_exports: {target} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
