#!/usr/bin/env python3
"""The third-party tools the integration tests drive, each in its OWN virtualenv (never the project's).

    python scripts/tool_envs.py                 # make (or reuse) every tool's environment
    python scripts/tool_envs.py label-studio    # one of them; --print: only print its python

=================  ==========================================  ==============================================
tool               what is installed                           used by
=================  ==========================================  ==============================================
``label-studio``   ``label-studio==1.23.2``, ``sentry-sdk<3``  tests/test_label_studio_real.py (the server
                   (3.x breaks its start), and an empty        and its brush converter,
                   migrated database in ``template-data/``     ``label_studio_sdk.converter.brush``)
``x-anylabeling``  ``x-anylabeling-cvhub==4.2.1`` and          tests/test_xanylabeling_real.py (its
                   ``onnxruntime`` (its ``cpu`` extra)         RemoteServer client, offscreen Qt)
=================  ==========================================  ==============================================

The environments live in ``$INTERFORMER_TOOL_ENVS`` (default ``~/.cache/interformer-edge/tool-envs``),
outside the work tree, so a fresh clone (CI) reuses them. One is reused when its stamp records the same
requirements and Python and its smoke import passes; otherwise it is made again from scratch. Label
Studio's database migrations take ~40 s on a fresh sqlite file, so they run here once, into
``label-studio/template-data`` (:data:`LABEL_STUDIO_TEMPLATE`), which a test copies into its own
temporary folder: Label Studio then starts in seconds. Every pip call is bounded (``--timeout`` per
connection, ``INTERFORMER_TOOL_ENV_SECONDS`` for the whole install, default 1200 s); a lock file keeps
two processes (pytest-xdist workers) from building one environment at once. Measured on a 2-core
machine without a pip cache: 73 s for Label Studio (half of it the migrations), 31 s for X-AnyLabeling,
1.0 and 1.4 GB on disk; reusing both: 2 s. Exit status 0: ready; 1: could not be made (the reason on
stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "INTERFORMER_TOOL_ENVS"
SECONDS_ENV = "INTERFORMER_TOOL_ENV_SECONDS"
DEFAULT_SECONDS = 1200
STAMP = "interformer-tool-env.json"
LABEL_STUDIO_TEMPLATE = "template-data"  # inside the label-studio environment: an empty, migrated data folder
# Label Studio without calls home (Sentry, analytics, the PyPI version check): for its runs here.
LABEL_STUDIO_QUIET = {
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
}


@dataclass(frozen=True)
class Tool:
    name: str
    requirements: tuple[str, ...]
    smoke: str  # Python run in the environment: exits 0 when the install is usable


TOOLS = {
    "label-studio": Tool(
        "label-studio",
        ("label-studio==1.23.2", "sentry-sdk<3"),
        "import label_studio, label_studio_sdk.converter.brush, django",
    ),
    "x-anylabeling": Tool(
        "x-anylabeling",
        ("x-anylabeling-cvhub[cpu]==4.2.1",),
        "import PyQt6.QtCore, cv2, anylabeling.config",
    ),
}


class ToolEnvError(RuntimeError):
    """An environment that could not be made; the message says why and what to run."""


def root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "interformer-edge" / "tool-envs"
    return Path(os.environ.get(ROOT_ENV) or default)


def base_python() -> str:
    """The interpreter the environments are made from: this one's base (not a venv's copy)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def python_of(folder: Path) -> Path:
    return folder / "bin" / "python"


def _wanted(tool: Tool) -> dict[str, object]:
    version = ".".join(map(str, sys.version_info[:3]))
    return {"tool": tool.name, "requirements": list(tool.requirements), "python": version}


def _ready(tool: Tool, folder: Path) -> bool:
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp != _wanted(tool) or not python_of(folder).is_file():
        return False
    smoke = subprocess.run(
        [str(python_of(folder)), "-c", tool.smoke], capture_output=True, timeout=120, env=_clean_env()
    )
    return smoke.returncode == 0


def _clean_env() -> dict[str, str]:
    """The environment without this process's virtualenv (a child must not see the project's packages)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], deadline: float, what: str) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ToolEnvError(f"{what}: out of time (the bound is ${SECONDS_ENV}, default {DEFAULT_SECONDS} s)")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=left, env=_clean_env())
    except subprocess.TimeoutExpired:
        raise ToolEnvError(f"{what}: not done after {left:.0f} s (raise ${SECONDS_ENV} on a slow network)") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ToolEnvError(f"{what} failed (exit {done.returncode}):\n{tail}")


def _migrate_template(folder: Path, deadline: float) -> None:
    """An empty Label Studio data folder with every migration applied (``label-studio version`` migrates first)."""
    data = folder / LABEL_STUDIO_TEMPLATE
    shutil.rmtree(data, ignore_errors=True)
    env = {**_clean_env(), **LABEL_STUDIO_QUIET, "LABEL_STUDIO_BASE_DATA_DIR": str(data)}
    left = deadline - time.monotonic()
    try:
        done = subprocess.run(
            [str(folder / "bin" / "label-studio"), "version"], capture_output=True, text=True, timeout=left, env=env
        )
    except subprocess.TimeoutExpired:
        raise ToolEnvError(f"Label Studio's migrations were not done after {left:.0f} s") from None
    if done.returncode != 0 or not (data / "label_studio.sqlite3").is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise ToolEnvError(f"Label Studio's migrations failed (exit {done.returncode}):\n{tail}")


def ensure(name: str, seconds: float | None = None, quiet: bool = False) -> Path:
    """The python of tool ``name``'s environment, made first if it is missing or stale.

    Raises:
        ToolEnvError: it could not be made in time (the message has pip's last lines).
    """
    tool = TOOLS[name]
    folder = root() / name
    with _locked(root() / f".{name}.lock"):
        seconds = seconds if seconds is not None else float(os.environ.get(SECONDS_ENV, DEFAULT_SECONDS))
        deadline = time.monotonic() + seconds
        if _ready(tool, folder):
            if name == "label-studio" and not (folder / LABEL_STUDIO_TEMPLATE / "label_studio.sqlite3").is_file():
                _migrate_template(folder, deadline)
            return python_of(folder)
        started = time.monotonic()
        if not quiet:
            print(f"making the {name} environment in {folder} ({' '.join(tool.requirements)})", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        _run([base_python(), "-m", "venv", str(folder)], deadline, f"python -m venv {folder}")
        pip = [str(python_of(folder)), "-m", "pip", "install", "-q", "--timeout", "60", "--retries", "3"]
        _run([*pip, "--upgrade", "pip"], deadline, "pip install --upgrade pip")
        _run([*pip, *tool.requirements], deadline, f"pip install {' '.join(tool.requirements)}")
        smoke = subprocess.run(
            [str(python_of(folder)), "-c", tool.smoke], capture_output=True, text=True, timeout=300, env=_clean_env()
        )
        if smoke.returncode != 0:
            raise ToolEnvError(f"{name} installed but does not import: {smoke.stderr.strip().splitlines()[-1:]}")
        if name == "label-studio":
            _migrate_template(folder, deadline)
        (folder / STAMP).write_text(json.dumps(_wanted(tool)))
        if not quiet:
            print(f"{name} environment ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return python_of(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tools", nargs="*", metavar="TOOL", help=f"{', '.join(TOOLS)} (default: all)")
    parser.add_argument("--print", action="store_true", help="print each environment's python")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r}: choose from {', '.join(TOOLS)}")
    status = 0
    for name in args.tools or list(TOOLS):
        started = time.monotonic()
        try:
            python = ensure(name)
        except (ToolEnvError, OSError, subprocess.SubprocessError) as err:
            print(f"tool_envs: {name}: {err}", file=sys.stderr)
            status = 1
            continue
        if args.print:
            print(python)
        else:
            print(f"{name}: {python} ({time.monotonic() - started:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
