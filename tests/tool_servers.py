"""Helpers of the tests that drive real annotation tools (Label Studio, X-AnyLabeling) against the server:
their own virtualenvs (``scripts/tool_envs.py``), our server on a loopback port, the runtime's mask."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool_envs():
    """``scripts/tool_envs.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tool_envs", ROOT / "scripts" / "tool_envs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tool_envs", module)
    spec.loader.exec_module(module)
    return module


def tool_python(name: str) -> Path:
    """The python of tool ``name``'s own environment, made now if missing (bounded); a clear failure, never a
    skip, when it cannot be made."""
    envs = tool_envs()
    started = time.monotonic()
    try:
        python = envs.ensure(name, quiet=True)
    except (envs.ToolEnvError, OSError) as err:
        pytest.fail(
            f"the {name} environment could not be made ({err}); make it with "
            f"'python scripts/tool_envs.py {name}' (it needs PyPI) and run the test again",
            pytrace=False,
        )
    if time.monotonic() - started > 5:
        print(f"\n{name} environment made in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return python


def runtime_mask(runtime, image, clicks: list[tuple[int, int, bool]]) -> np.ndarray:
    """The runtime's own mask for ``clicks`` (x, y, positive) on ``image``; ``runtime``: an (Encoder, Decoder)
    with the server's thread count."""
    from interformer_edge.runtime import ClickSession

    encoder, decoder = runtime
    session = ClickSession(decoder, encoder.encode(image))
    for x, y, positive in clicks:
        session.add_click(y, x, positive)
    return np.array(session.mask)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
