"""The steps that run *inside* the emulated arm64 root, and where things live there.

harness.py copies the repository to ``SRC`` and runs this file with the root's ``/usr/bin/python3``
(standard library only; Debian bookworm's Python 3.11)::

    python3 /opt/interformer-edge/src/scripts/arm64/in_root.py lean
    python3 .../in_root.py smoke
    python3 .../in_root.py test-venv REQUIREMENT...           # e.g. 'pytest>=8' 'scipy>=1.10'
    python3 .../in_root.py pytest [EXTRA_PYTEST_ARG...]
    python3 .../in_root.py bench LABEL [INTERFORMER_BENCH_ARG...]

Each command stops at the first failing sub-command and exits with its status (like ``set -e``). harness.py imports
the path constants below from this file, so the host and the root agree on the layout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BASE = "/opt/interformer-edge"
SRC = f"{BASE}/src"
VENV = f"{BASE}/venv"  # the lean install: exactly what `pip install .` gives
TEST_VENV = f"{BASE}/venv-test"  # sees VENV through a .pth file, adds the test tools
ARTIFACTS = f"{BASE}/artifacts"
TEST_EXPORTS = f"{BASE}/test-exports"
BENCH_OUT = "/tmp/interformer-bench"
CPUINFO = "/etc/interformer-edge/cpuinfo"
CA_BUNDLE = "/etc/interformer-edge/host-ca.crt"
SCRIPT = f"{SRC}/scripts/arm64/in_root.py"

# A one-line import check before smoke.py's thorough one (the lean venv's python runs it).
IMPORT_CHECK = (
    "import platform, onnxruntime, interformer_edge.runtime; "
    "print('import ok:', platform.machine(), 'onnxruntime', onnxruntime.__version__)"
)
# The test venv must see the lean venv's numpy, and no torch (run by the test venv's python).
TEST_VENV_CHECK = (
    "import importlib.util as u, numpy; assert u.find_spec('torch') is None, 'torch visible'; "
    "print('tests use numpy', numpy.__version__, 'from', numpy.__file__)"
)
PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def run(*argv: str, cwd: str | None = None, env: dict[str, str] | None = None, quiet: bool = False) -> str:
    """Run a command; exit with its status if it fails. Returns its stdout when ``quiet``."""
    sys.stdout.flush()
    result = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=quiet, check=False)
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout + result.stderr)
        status = result.returncode if result.returncode > 0 else 128 - result.returncode  # killed: 128 + signal
        print(f"in_root: {' '.join(argv)}: exit status {status}", file=sys.stderr)
        raise SystemExit(status)
    return result.stdout if quiet else ""


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    raise SystemExit(1)


def python(venv: str) -> str:
    return f"{venv}/bin/python"


def ensure_venv(venv: str) -> None:
    if not os.access(python(venv), os.X_OK):
        run("python3", "-m", "venv", venv)


def installed(venv: str, package: str) -> bool:
    cmd = [python(venv), "-m", "pip", "show", package]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def lean(_: list[str]) -> None:
    """The lean venv: `pip install <repo copy>` from PyPI's aarch64 wheels; torch must not come along."""
    ensure_venv(VENV)
    run(python(VENV), "-m", "pip", "install", "--prefer-binary", SRC)
    print("--- lean venv:", flush=True)
    run(python(VENV), "-m", "pip", "list", "--format=freeze")
    if installed(VENV, "torch"):
        fail("torch is installed in the lean venv")
    print("torch: not installed (good)")


def smoke(_: list[str]) -> None:
    run(python(VENV), "-c", IMPORT_CHECK, cwd="/tmp")
    run(python(VENV), f"{SRC}/scripts/arm64/smoke.py", cwd="/tmp")


def test_venv(extras: list[str]) -> None:
    """The test venv sees the lean venv's packages through a .pth file and adds only the extras."""
    ensure_venv(TEST_VENV)
    site = Path(run(python(TEST_VENV), "-c", PURELIB, quiet=True).strip())
    lean_site = run(python(VENV), "-c", PURELIB, quiet=True).strip()
    (site / "interformer-lean-venv.pth").write_text(lean_site + "\n", encoding="utf-8")
    run(python(TEST_VENV), "-m", "pip", "install", "--prefer-binary", *extras)
    run(python(TEST_VENV), "-c", TEST_VENV_CHECK)
    if (site / "numpy").is_dir():
        fail("pip put a second numpy into the test venv")


def pytest(pytest_args: list[str]) -> None:
    env = dict(os.environ)
    # The lean install's commands (interformer-encode, ...), which the README's snippets call by name.
    env["PATH"] = f"{VENV}/bin:{env.get('PATH', '')}"
    if os.path.isdir(TEST_EXPORTS):
        env["INTERFORMER_TEST_EXPORTS"] = TEST_EXPORTS
    shutil.rmtree("/tmp/pytest-of-root", ignore_errors=True)  # earlier runs' copies of the exports
    basetemp = "/tmp/interformer-pytest"
    try:
        runner = ["scripts/arm64/run_tests.py", "--tests", "tests", "--", f"--basetemp={basetemp}"]
        run(python(TEST_VENV), *runner, *pytest_args, cwd=SRC, env=env)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


def bench(args: list[str]) -> None:
    if not args:
        fail("bench needs the emulation label")
    label, bench_args = args[0], args[1:]
    shutil.rmtree(BENCH_OUT, ignore_errors=True)
    cli = f"{VENV}/bin/interformer-bench"
    run(cli, ARTIFACTS, *bench_args, "--emulated", label, "--out", BENCH_OUT, cwd="/tmp")
    run(python(VENV), f"{SRC}/scripts/arm64/bench_summary.py", f"{BENCH_OUT}/report.json", cwd="/tmp")


COMMANDS = {"lean": lean, "smoke": smoke, "test-venv": test_venv, "pytest": pytest, "bench": bench}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    COMMANDS[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
