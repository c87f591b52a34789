"""Helpers of the browser-decoding tests: a live annotate server whose requests are logged, and reading the
page's masks.

The server is the product's app (``build_app``) behind a thin ASGI layer that records each request's method
and path, so a test can check what reached the server (e.g. no ``/api/sessions`` while the page decodes).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import numpy as np
from live_server import LiveServer

from interformer_edge.annotate.service import Annotator


class RequestLog:
    """ASGI middleware: ``(method, path)`` of every HTTP request, in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            with self._lock:
                self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)

    def paths(self, prefix: str) -> list[str]:
        with self._lock:
            return [path for _, path in self.requests if path.startswith(prefix)]


class LoggedServer(LiveServer):
    """``annotator``'s app behind a :class:`RequestLog`, served for real; ``with`` gives the server itself."""

    def __init__(self, annotator: Annotator) -> None:
        from interformer_edge.annotate.server import build_app

        self.log = RequestLog(build_app(annotator))
        super().__init__(self.log)

    def __enter__(self) -> LoggedServer:
        super().__enter__()
        return self


def page_mask(page) -> tuple[np.ndarray, list[list[Any]]] | None:
    """The selected object's mask as the page holds it ((H, W) bool) and its clicks [[x, y, positive], ...]."""
    found = page.evaluate("window.__interformer.currentMask()")
    if found is None:
        return None
    bits = np.frombuffer(base64.b64decode(found["bits"]), np.uint8)
    return bits.reshape(found["height"], found["width"]).astype(bool), found["clicks"]


def watch_errors(page, problems: list[str], allowed: tuple[str, ...] = ()) -> None:
    """Record page errors and console errors in ``problems``, except console lines containing one of ``allowed``
    (the browser's own line for a load the test makes fail on purpose)."""

    def console(msg) -> None:
        if msg.type == "error" and not any(a in msg.text for a in allowed):
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", console)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union
