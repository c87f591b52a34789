"""The annotator page in a real browser: Debian's chromium driven by Playwright, against a live server.

Positive and negative clicks on the canvas change the overlay; undo; save with the keyboard. The saved
PNG must equal the runtime's mask for the same clicks, and any JavaScript error on the page fails
the test. A screenshot after three clicks is written to the test's tmp folder (printed with -s).

These tests use server-side clicks (``decode="server"``): the session revival after a restart is theirs;
the page's own decoder is tested in test_annotate_browser_decode.py. What careless users do: click an
image in the list right after typing a label; save the same image
from two tabs; keep a tab open across a server restart; reload with unsaved clicks. One browser serves
the module (a launch costs seconds), each test has its own server and output folder.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from live_server import annotator_server
from PIL import Image

from interformer_edge.annotate.service import Annotator, Settings
from interformer_edge.annotate.sessions import SessionRegistry
from interformer_edge.assets import PHOTOS_DIR
from interformer_edge.core.headless import CHROMIUM_ARGS
from interformer_edge.runtime import ClickSession, Decoder, Encoder

pytestmark = pytest.mark.bundled_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


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


@pytest.fixture(scope="module")
def chromium():
    """One headless chromium for the module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def watch(page, problems: list[str], expected_status: int | None = None) -> None:
    """Record page errors and console errors in ``problems``; ``expected_status``: the browser's own log line
    for a response of that status (a 409 or 404 the test provokes on purpose) is not a problem."""
    expected = () if expected_status is None else (f"the server responded with a status of {expected_status}",)

    def console(msg) -> None:
        if msg.type == "error" and not any(e in msg.text for e in expected):
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", console)


def serve(default_export: tuple[Path, str], tmp_path: Path, names: tuple[str, ...]) -> tuple[Annotator, Path, Path]:
    """An annotator on copies of the bundled ``names``; returns it, the photo folder and the output folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in names:
        shutil.copy(PHOTOS_DIR / name, photos / name)
    out = tmp_path / "masks"
    return (
        Annotator(Settings(images=photos, model=default_export[0], out=out, threads=2, prefetch=0, decode="server")),
        photos,
        out,
    )


def open_page(browser_or_context, url: str, problems: list[str], width: int, expected_status: int | None = None):
    page = browser_or_context.new_page()
    page.set_viewport_size({"width": 1200, "height": 800})
    watch(page, problems, expected_status)
    page.goto(url)
    page.wait_for_function(f"document.getElementById('view').width === {width}")
    settle(page)
    return page


def wait_status(page, text: str) -> str:
    page.wait_for_function(f"document.getElementById('status').textContent.includes({text!r})")
    return page.locator("#status").inner_text()


def wait_clicks(page, count: int) -> None:
    """Until the selected object lists ``count`` clicks (its reply is drawn by then)."""
    page.wait_for_function(
        f"(document.querySelector('#objects li.active .info') || {{}}).textContent === '{count} clicks'"
    )


def object_labels(page) -> list[str]:
    return page.eval_on_selector_all("#objects input", "inputs => inputs.map((i) => i.value)")


def test_browser_clicks_undo_and_save(default_export: tuple[Path, str], tmp_path: Path, chromium) -> None:
    export = default_export[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut.jpg", "chelsea.jpg"):
        shutil.copy(PHOTOS_DIR / name, photos / name)
    out = tmp_path / "masks"
    annotator = Annotator(Settings(images=photos, model=export, out=out, threads=2, prefetch=1, decode="server"))
    clicks = [(250, 150, True), (60, 450, False), (300, 300, True)]  # (x, y, positive) on the 512x512 photo
    problems: list[str] = []
    screenshot = tmp_path / "annotate-three-clicks.png"
    with annotator_server(annotator) as url:
        page = chromium.new_page(viewport={"width": 1200, "height": 800})
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
        page.close()
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


def test_label_box_then_image_list_click_and_the_unsaved_work_warning(
    default_export: tuple[Path, str], tmp_path: Path, chromium
) -> None:
    annotator, _, out = serve(default_export, tmp_path, ("astronaut.jpg", "chelsea.jpg"))
    problems: list[str] = []
    dialogs: list[str] = []
    with annotator_server(annotator) as url:
        page = open_page(chromium, url, problems, 512)
        page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
        click_pixel(page, 250, 150, 512, 512)
        wait_clicks(page, 1)

        # the label trap: type an object's label, then go straight for another image in the list
        page.locator("#objects li.active input").fill("person")
        page.locator("#images li", has_text="chelsea.jpg").click()
        page.wait_for_function("document.getElementById('view').width === 451")
        assert "chelsea.jpg" in page.locator("#images li.current").inner_text()
        page.fill("#label", "cat")  # the new-object label box: the same trap
        page.locator("#images li", has_text="astronaut.jpg").click()
        page.wait_for_function("document.getElementById('view').width === 512")
        settle(page)
        assert object_labels(page) == ["person"]  # the unsaved object came back with its new label
        assert page.locator("#images li.current").get_attribute("data-status") == "progress"

        # unsaved clicks: a reload asks first (the dialog is accepted: the page reloads)
        page.reload()
        assert dialogs == ["beforeunload"]
        page.wait_for_function("document.getElementById('view').width === 512")
        settle(page)
        # clicks saved: nothing to lose, no question
        click_pixel(page, 250, 150, 512, 512)
        wait_clicks(page, 1)
        page.keyboard.press("s")
        wait_status(page, "saved 1 object")
        page.reload()
        page.wait_for_function("document.getElementById('view').width === 512")
        settle(page)
        assert dialogs == ["beforeunload"]
        page.close()
    annotator.close()
    assert not problems, problems
    assert sorted(p.name for p in (out / "masks/astronaut.jpg").iterdir()) == ["00_object.png"]  # after the reload


def test_a_stale_tab_is_told_shows_both_tabs_objects_and_saves_both(
    default_export: tuple[Path, str], tmp_path: Path, chromium
) -> None:
    annotator, _, out = serve(default_export, tmp_path, ("astronaut.jpg",))
    problems: list[str] = []
    with annotator_server(annotator) as url:
        context = chromium.new_context()
        first = open_page(context, url, problems, 512)
        second = open_page(context, url, problems, 512, expected_status=409)  # the conflict it provokes
        for page, label, (x, y) in ((first, "rocket", (250, 150)), (second, "person", (300, 300))):
            page.fill("#label", label)
            click_pixel(page, x, y, 512, 512)
            wait_clicks(page, 1)
        first.keyboard.press("s")
        wait_status(first, "saved 1 object")

        second.keyboard.press("s")
        told = wait_status(second, "someone else saved")
        assert "astronaut.jpg" in told and "save again" in told
        second.wait_for_function("document.querySelectorAll('#objects li').length === 2")
        assert object_labels(second) == ["rocket", "person"]  # theirs (saved) first, then this tab's own
        assert json.loads((out / "annotations.json").read_text())["images"][0]["interformer_revision"] == 1
        second.keyboard.press("s")
        wait_status(second, "saved 2 object")
        context.close()
    annotator.close()
    assert not problems, problems
    coco = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["rocket", "person"]
    assert len(coco["annotations"]) == 2 and coco["images"][0]["interformer_revision"] == 2
    assert sorted(p.name for p in (out / "masks/astronaut.jpg").iterdir()) == ["00_rocket.png", "01_person.png"]


def test_clicks_undo_and_save_go_on_after_a_server_restart(
    default_export: tuple[Path, str], tmp_path: Path, chromium
) -> None:
    annotator, photos, out = serve(default_export, tmp_path, ("astronaut.jpg",))
    clicks = [(250, 150, True), (60, 450, False), (300, 300, True)]  # (x, y, positive) on the 512x512 photo

    def restart() -> None:  # what the tab sees of a restart: every session id it holds is unknown (404)
        annotator.sessions = SessionRegistry(annotator.decoder)

    problems: list[str] = []
    with annotator_server(annotator) as url:
        page = open_page(chromium, url, problems, 512, expected_status=404)
        page.fill("#label", "person")
        for x, y, positive in clicks[:2]:
            click_pixel(page, x, y, 512, 512, negative=not positive)
        wait_clicks(page, 2)
        restart()
        click_pixel(page, *clicks[2][:2], 512, 512)  # the click revives the object's session first
        wait_clicks(page, 3)
        restart()
        page.keyboard.press("z")  # so does an undo
        wait_clicks(page, 2)
        click_pixel(page, *clicks[2][:2], 512, 512)
        wait_clicks(page, 3)
        restart()
        page.keyboard.press("s")  # and a save
        wait_status(page, "saved 1 object")
        page.close()
    annotator.close()
    assert not problems, problems

    session = ClickSession(
        Decoder(default_export[0], threads=2), Encoder(default_export[0], threads=2).encode(photos / "astronaut.jpg")
    )
    for x, y, positive in clicks:
        session.add_click(y, x, positive)
    saved = np.asarray(Image.open(out / "masks/astronaut.jpg/00_person.png")) > 127
    assert session.mask.any()
    assert np.array_equal(saved, session.mask)
