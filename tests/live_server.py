"""Our app served for real, for the tests that need a socket (a browser, a real tool, a client that hangs up):
uvicorn in a thread on 127.0.0.1 and a free port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """``app`` (any ASGI app) in uvicorn; ``with LiveServer(app) as url:`` serves it until the block ends."""

    def __init__(self, app: Any) -> None:
        import uvicorn  # the web stack is imported when used, not at collection (the lean run lacks it)

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def annotator_server(annotator: Any, policy: Any = None) -> LiveServer:
    """The annotator's app (``build_app``) as a :class:`LiveServer`."""
    from interformer_edge.annotate.server import build_app

    return LiveServer(build_app(annotator, policy=policy))
