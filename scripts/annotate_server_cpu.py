"""The annotator server's own CPU time per click, with clicks answered in the browser and on the server.

Starts ``interformer-annotate`` as a separate process on loopback, opens the page in headless chromium,
lets the first image be encoded, then clicks ``--clicks`` times on it: once with the page's own decoder
(``?decode=browser``) and once with server-side clicks (``?decode=server``). Reports, per mode, the
server process's CPU seconds (user + system, its threads included) and the requests it received
during the clicks; and the server's encoding rate (images per second), which bounds how many
annotators one server carries when the clicks cost it nothing.

    python scripts/annotate_server_cpu.py -m interformer_export assets/photos --clicks 10
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from interformer_edge.core.headless import CHROMIUM_ARGS, DEFAULT_CHROMIUM


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def clicks_in(page, mode: str, url: str, clicks: int, server: psutil.Process) -> tuple[float, int, float]:
    """Open the page in ``mode``, wait for the first image, click; returns the clicks' seconds, the requests
    the page sent meanwhile, and the server's CPU seconds meanwhile."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{url}/?decode={mode}")
    page.wait_for_function("document.getElementById('view').width > 0 && document.body.dataset.pending === '0'")
    page.wait_for_timeout(3000)  # the first image's inputs and the next images' prefetch settle
    box = page.locator("#view").bounding_box()
    requests.clear()
    cpu = cpu_seconds(server)
    started = time.perf_counter()
    for k in range(clicks):
        x = box["x"] + box["width"] * (0.3 + 0.4 * ((k * 37) % 10) / 10)
        y = box["y"] + box["height"] * (0.3 + 0.4 * ((k * 53) % 10) / 10)
        page.mouse.click(x, y, button="left" if k % 3 else "right")
        page.wait_for_function("document.body.dataset.pending === '0'")
        page.wait_for_timeout(50)
    return time.perf_counter() - started, len(requests), cpu_seconds(server) - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, help="folder of images to serve")
    parser.add_argument("-m", "--model", type=Path, required=True, help="export folder")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per mode (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="server --threads (default 2)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "interformer_edge.annotate.cli", str(args.images), "-m", str(args.model)]
        command += ["--port", str(port), "--out", out, "--threads", str(args.threads), "--prefetch", "0"]
        command += ["--backend", "onnxruntime", "--variant", "fp32", "--compute", "f32", "--dynamic-shapes"]
        log = Path(out) / "server.log"
        server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2).read()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        sys.exit(f"the server did not start:\n{log.read_text()[-2000:]}")
                    time.sleep(0.2)
            process = psutil.Process(server.pid)
            print(f"load average before: {os.getloadavg()[0]:.2f}; {args.clicks} clicks per mode")
            # the encoding rate first, on a fresh server: each image encoded once (and its context run)
            names = [p.name for p in sorted(args.images.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
            started = time.perf_counter()
            for name in names:
                urllib.request.urlopen(f"{url}/api/features/{name}", timeout=300).read()
            rate = len(names) / (time.perf_counter() - started)
            print(f"encoding: {len(names)} images at {rate:.2f} images/s (encoder + context, payload written)")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(DEFAULT_CHROMIUM), args=CHROMIUM_ARGS)
                for mode in ("browser", "server"):
                    page = browser.new_page(viewport={"width": 1200, "height": 800})
                    seconds, requests, used = clicks_in(page, mode, url, args.clicks, process)
                    page.close()
                    print(
                        f"{mode:>7} mode: {requests} requests and {used:.2f} s of server CPU during {args.clicks} "
                        f"clicks ({used / args.clicks * 1000:.1f} ms per click; the clicks took {seconds:.1f} s)"
                    )
                browser.close()
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
