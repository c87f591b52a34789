"""The annotator page in a real browser: Debian's chromium driven by Playwright, against a live server.

Positive and negative clicks on the canvas change the overlay; undo; save with the keyboard. The saved
PNG must equal the runtime's mask for the same clicks, and any JavaScript error on the page fails
the test. A screenshot after three clicks is written to the test's tmp folder (printed with -s).
"""

from __future__ import annotations

import itertools
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interformer_edge.annotate.service import Annotator, Settings
from interformer_edge.assets import PHOTOS_DIR
from interformer_edge.runtime import ClickSession, Decoder, Encoder

pytestmark = pytest.mark.bundled_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """uvicorn in a thread on 127.0.0.1 and a free port."""

    def __init__(self, annotator: Annotator) -> None:
        import uvicorn  # the web stack is imported when used, not at collection (the lean arm64 run lacks it)

        from interformer_edge.annotate.server import build_app

        self.port = free_port()
        config = uvicorn.Config(build_app(annotator), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def overlay_signature(page) -> float:
    """Sum of the canvas pixels: changes when the mask overlay changes."""
    return page.evaluate("""() => {
        const c = document.getElementById('view');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) { s += d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7; }
        return s; }""")


def click_pixel(page, x: int, y: int, width: int, height: int, negative: bool = False) -> None:
    """Click the centre of image pixel (x, y) on the (CSS-scaled) canvas, then wait for the answer."""
    box = page.locator("#view").bounding_box()
    page.mouse.click(
        box["x"] + (x + 0.5) * box["width"] / width,
        box["y"] + (y + 0.5) * box["height"] / height,
        button="right" if negative else "left",
    )
    settle(page)


def settle(page) -> None:
    page.wait_for_function("document.body.dataset.pending === '0'")
    page.wait_for_timeout(100)  # the reply's mask is drawn after the request count drops


def test_browser_clicks_undo_and_save(default_export: tuple[Path, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    export = default_export[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut.jpg", "chelsea.jpg"):
        shutil.copy(PHOTOS_DIR / name, photos / name)
    out = tmp_path / "masks"
    annotator = Annotator(Settings(images=photos, model=export, out=out, threads=2, prefetch=1))
    clicks = [(250, 150, True), (60, 450, False), (300, 300, True)]  # (x, y, positive) on the 512x512 photo
    problems: list[str] = []
    screenshot = tmp_path / "annotate-three-clicks.png"
    with LiveServer(annotator) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        page.on(
            "console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        )
        page.goto(url)
        page.wait_for_function("document.getElementById('view').width === 512")
        settle(page)
        assert page.locator("#images li").count() == 2
        assert page.locator("#images li.current").get_attribute("data-status") == "untouched"
        page.fill("#label", "person")
        signatures = [overlay_signature(page)]
        for x, y, positive in clicks:
            click_pixel(page, x, y, 512, 512, negative=not positive)
            signatures.append(overlay_signature(page))
        page.screenshot(path=str(screenshot))
        assert "decode" in page.locator("#status").inner_text() and "ms" in page.locator("#status").inner_text()
        assert page.locator("#images li.current").get_attribute("data-status") == "progress"
        page.keyboard.press("z")  # undo the third click
        settle(page)
        after_undo = overlay_signature(page)
        page.keyboard.press("s")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('saved')")
        settle(page)
        assert page.locator("#images li.current").get_attribute("data-status") == "done"
        browser.close()
    annotator.close()
    print(f"screenshot after three clicks: {screenshot}")
    assert not problems, problems
    assert all(a != b for a, b in itertools.pairwise(signatures)), signatures  # each click redraws
    assert after_undo == signatures[2]  # undo shows the two-click overlay again

    session = ClickSession(Decoder(export, threads=2), Encoder(export, threads=2).encode(photos / "astronaut.jpg"))
    for x, y, positive in clicks[:2]:
        session.add_click(y, x, positive)
    saved = np.asarray(Image.open(out / "masks/astronaut.jpg/00_person.png")) > 127
    assert session.mask.any()
    assert np.array_equal(saved, session.mask)
    assert screenshot.stat().st_size > 10_000
