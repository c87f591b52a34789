"""The page decoding clicks itself: onnxruntime-web (WebAssembly) in a worker of the page, in Debian's chromium.

On bundled photos of three sizes (chelsea 451x300 encoded at full size; astronaut 512x512 and coffee 512x341,
which the encoder downscales to 500 px), a sequence of positive and negative clicks with an undo. Each mask the
page shows is compared with the Python runtime's for the same clicks, twice:

* the runtime fed the very inputs the page got (the payload's tensors): the browser port of the click protocol
  and onnxruntime-web against the runtime, IoU >= 0.999 per click (observed: 1.0 or within a few pixels);
* the runtime on its own float32 features (``ClickSession(Decoder(export), Encoder(export).encode(photo))``):
  IoU >= 0.999 per click (the payload ships ``feat0`` in float32: in float16 it moved masks, IoU 0.9959 seen
  on coffee.jpg, by the runtime itself on rounded inputs).

No request may reach ``/api/sessions`` meanwhile (counted in the browser and on the server). A 4000x3000 photo
works, and objects on it do not grow the tab. A save sends the
page's mask, which the server writes as it is. ``?decode=server`` still answers clicks on the server. Page
errors and console errors fail every test. With ``-s`` the decode times the page reports are printed.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.parse import quote

import numpy as np
import pytest
from browser_helpers import LoggedServer, iou, page_mask, watch_errors
from PIL import Image
from test_annotate_browser import chromium, click_pixel, settle, wait_status, watch  # noqa: F401 (chromium: fixture)

from interformer_edge.annotate.service import Annotator, Settings
from interformer_edge.assets import PHOTOS_DIR
from interformer_edge.runtime import ClickSession, Decoder, Encoder
from interformer_edge.runtime.features import ImageFeatures

pytestmark = pytest.mark.bundled_model

MAX_SIDE = 500  # astronaut (512x512) and coffee (512x341) are downscaled to it, chelsea (451x300) is not
MIN_IOU = 0.999
# (x, y, positive) as fractions of the photo's width and height; "undo" takes the last click back
SEQUENCE = [(0.5, 0.45, True), (0.12, 0.88, False), (0.62, 0.3, True), "undo", (0.35, 0.6, True), (0.8, 0.7, False)]
BROWSER_STATUS = re.compile(r"decode ([\d.]+) ms \(browser, wasm (fp32|int8), \d+ threads?\)")


def annotator_for(export: Path, tmp_path: Path, names: tuple[str, ...], **options: object) -> Annotator:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in names:
        shutil.copy(PHOTOS_DIR / name, photos / name)
    settings = Settings(images=photos, model=export, out=tmp_path / "masks", threads=2, prefetch=0, **options)
    return Annotator(settings)


def open_page(browser, url: str, problems: list[str], requests: list[str]):
    """A new page on ``url``, its first image open and the decoding mode settled."""
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    watch(page, problems)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_function("window.__interformer && document.getElementById('view').width > 1")
    page.evaluate("window.__interformer.decoding()")  # the mode is settled: the worker loaded, or not
    settle(page)
    return page


def open_image(page, name: str) -> tuple[int, int]:
    page.locator("#images li", has_text=name).click()
    page.wait_for_function(f"document.querySelector('#images li.current').dataset.name === {name!r}")
    page.wait_for_function(
        "document.body.dataset.pending === '0' && !document.getElementById('encoding').classList.contains('show')"
    )
    return page.evaluate("[document.getElementById('view').width, document.getElementById('view').height]")


def pixel_steps(width: int, height: int) -> list[object]:
    return [s if s == "undo" else (int(s[0] * width), int(s[1] * height), s[2]) for s in SEQUENCE]


Shown = list[tuple[np.ndarray, list[list[Any]]]]  # the page's mask and clicks after each step


def click_the_sequence(page, names: tuple[str, ...]) -> tuple[dict[str, Shown], list[tuple[float, str]]]:
    """On each image of ``names``, a new object and :data:`SEQUENCE`'s clicks and undo. Returns what the page shows
    after each step, per image, and each click's decode time and decoder variant from the status line."""
    shown: dict[str, Shown] = {}
    decoded: list[tuple[float, str]] = []
    for name in names:
        width, height = open_image(page, name)
        page.keyboard.press("n")  # one object per image
        shown[name] = []
        for step in pixel_steps(width, height):
            if step == "undo":
                page.keyboard.press("z")
                settle(page)
            else:
                click_pixel(page, step[0], step[1], width, height, negative=not step[2])
                status = page.locator("#status").inner_text()
                found = BROWSER_STATUS.search(status)
                assert found, status
                decoded.append((float(found.group(1)), found.group(2)))
            mask = page_mask(page)
            assert mask is not None, f"{name}: no mask after {step}"
            shown[name].append(mask)
    return shown, decoded


def clicked_steps(shown: Shown, aimed: list[object]) -> list[object]:
    """The steps as the page made them: a CSS-scaled click may land one pixel off the one aimed at, so the runtime
    replays the page's own clicks."""
    return ["undo" if a == "undo" else tuple(shown[k][1][-1]) for k, a in enumerate(aimed)]


def payload_inputs(url: str, name: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The decoder inputs the page gets for ``name`` (as float32) and each tensor's shipped dtype."""
    with urllib.request.urlopen(f"{url}/api/features/{quote(name)}", timeout=60) as response:
        data = response.read()
    assert data[:4] == b"IFE1"
    (length,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + length])
    start = -(-(8 + length) // 8) * 8
    inputs, dtypes = {}, {}
    for t in header["tensors"]:
        dtypes[t["name"]] = t.get("dtype", header["dtype"])
        dtype = {"float16": "<f2", "float32": "<f4"}[dtypes[t["name"]]]
        array = np.frombuffer(data, dtype, count=t["length"], offset=start + t["offset"])
        inputs[t["name"]] = array.astype(np.float32).reshape(t["shape"])
    return inputs, dtypes


def runtime_masks(
    decoder: Decoder, features: ImageFeatures, steps: list[object], inputs: dict[str, np.ndarray] | None = None
) -> list[np.ndarray]:
    """The Python runtime's mask after each step ((x, y, positive) pixels or "undo") on ``features``; ``inputs``:
    decode from these per-image inputs instead of the decoder's own."""
    swapped = patch.object(decoder, "image_inputs", lambda _: inputs) if inputs is not None else nullcontext()
    with swapped:
        session = ClickSession(decoder, features)
    masks = []
    for step in steps:
        if step == "undo":
            session.undo()
        else:
            x, y, positive = step
            session.add_click(y, x, positive)
        masks.append(np.array(session.mask))
    return masks


def test_the_page_decodes_clicks_in_the_browser_like_the_runtime(
    default_export: tuple[Path, str],
    tmp_path: Path,
    chromium,  # noqa: F811
) -> None:
    export = default_export[0]
    names = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    annotator = annotator_for(export, tmp_path, names, max_side=MAX_SIDE)
    problems: list[str] = []
    requests: list[str] = []
    with LoggedServer(annotator) as server:
        page = open_page(chromium, server.url, problems, requests)
        assert page.evaluate("window.__interformer.mode()") == "browser", page.locator("#model").inner_text()
        assert page.evaluate("crossOriginIsolated")
        shown, decoded = click_the_sequence(page, names)
        page.close()
        on_server = server.log.paths("/api/sessions")
        features = server.log.paths("/api/features/")
        shipped = {name: payload_inputs(server.url, name) for name in names}
    annotator.close()
    assert not problems, problems
    assert not on_server and not [u for u in requests if "/api/sessions" in u], on_server
    assert {f.rsplit("/", 1)[1] for f in features} >= set(names)
    assert {variant for _, variant in decoded} == {"fp32"}
    print(f"decode per click in the page: {', '.join(f'{ms:.0f}' for ms, _ in decoded)} ms")

    encoder, decoder = Encoder(export, threads=2, max_side=MAX_SIDE), Decoder(export, threads=2)
    for name in names:
        photo = tmp_path / "photos" / name
        width, height = Image.open(photo).size
        aimed = pixel_steps(width, height)
        steps = clicked_steps(shown[name], aimed)
        for aim, step in zip(aimed, steps, strict=True):
            if aim != "undo":
                assert step[2] == aim[2] and abs(step[0] - aim[0]) <= 1 and abs(step[1] - aim[1]) <= 1, (aim, step)
        inputs, dtypes = shipped[name]
        features = encoder.encode(photo)
        same_inputs = runtime_masks(decoder, features, steps, inputs)
        float32 = runtime_masks(decoder, features, steps)
        assert dtypes["feat0"] == "float32"
        clicks: list[list] = []
        for k, step in enumerate(steps):
            got, got_clicks = shown[name][k]
            clicks = clicks[:-1] if step == "undo" else [*clicks, list(step)]
            assert got_clicks == clicks, f"{name} step {k}: the page holds clicks {got_clicks}, not {clicks}"
            assert got.shape == (height, width)
            port, full = iou(got, same_inputs[k]), iou(got, float32[k])
            print(f"{name} step {k} {step}: IoU {port:.6f} (same inputs), {full:.6f} (float32 runtime), {got.sum()} px")
            assert port >= MIN_IOU, f"{name} step {k} ({step}): IoU {port:.5f} with the runtime on the same inputs"
            assert full >= MIN_IOU, f"{name} step {k} ({step}): IoU {full:.5f} with the float32 runtime"
        assert any(m.any() for m, _ in shown[name]), f"{name}: every mask is empty"


def test_a_browser_decoded_object_is_saved_as_the_page_showed_it(
    default_export: tuple[Path, str],
    tmp_path: Path,
    chromium,  # noqa: F811
) -> None:
    annotator = annotator_for(default_export[0], tmp_path, ("coffee.jpg",))
    problems: list[str] = []
    requests: list[str] = []
    with LoggedServer(annotator) as server:
        page = open_page(chromium, server.url, problems, requests)
        assert page.evaluate("window.__interformer.mode()") == "browser"
        page.fill("#label", "cup")
        for x, y, positive in [(250, 150, True), (60, 300, False), (300, 200, True)]:
            click_pixel(page, x, y, 512, 341, negative=not positive)
        shown, clicks = page_mask(page)
        page.keyboard.press("s")
        wait_status(page, "saved 1 object")
        settle(page)
        assert page.locator("#images li.current").get_attribute("data-status") == "done"
        page.close()
        on_server = server.log.paths("/api/sessions")
    annotator.close()
    assert not problems, problems
    assert not on_server, on_server
    saved = np.asarray(Image.open(tmp_path / "masks/masks/coffee.jpg/00_cup.png")) > 127
    assert shown.any() and np.array_equal(saved, shown)
    coco = json.loads((tmp_path / "masks/annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cup"] and len(coco["annotations"]) == 1
    assert len(clicks) == 3 and [c[2] for c in clicks] == [True, False, True]


def renderer_memory(page) -> int:
    """Bytes held only by the page processes of the browsers this test process started, after a garbage collection
    of ``page`` (the tab: its canvases, its worker and onnxruntime-web's heap; headless chromium draws canvases in
    the page's own process). Only one page should be open."""
    import psutil

    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    cdp.detach()
    total = 0
    for process in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" in " ".join(process.cmdline()):
                total += process.memory_full_info().uss
        except psutil.NoSuchProcess:  # a helper process of the browser ended meanwhile
            pass
    return total


def test_a_12_megapixel_photo_works_and_objects_do_not_grow_the_tab(
    default_export: tuple[Path, str],
    tmp_path: Path,
    chromium,  # noqa: F811
) -> None:
    """A 4000x3000 photo: clicked, its mask at full size like the runtime's, and further objects do not grow the
    tab (a full-size overlay per object cost ~64 MB each: 48 MB of canvas and a 12 MB 0/1 copy)."""
    export = default_export[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(PHOTOS_DIR / "coffee.jpg").convert("RGB").resize((4000, 3000), Image.BILINEAR).save(photos / "big.jpg")
    annotator = Annotator(Settings(images=photos, model=export, out=tmp_path / "masks", threads=2, prefetch=0))
    problems: list[str] = []
    requests: list[str] = []
    clicks = [(0.5, 0.45), (0.3, 0.7), (0.7, 0.3), (0.55, 0.6), (0.2, 0.2), (0.8, 0.8)]  # one object each
    with LoggedServer(annotator) as server:
        page = open_page(chromium, server.url, problems, requests)
        assert page.evaluate("window.__interformer.mode()") == "browser"
        width, height = page.evaluate("[document.getElementById('view').width, document.getElementById('view').height]")
        assert (width, height) == (4000, 3000)
        used = []
        for k, (fx, fy) in enumerate(clicks):
            page.keyboard.press("n")
            click_pixel(page, int(fx * width), int(fy * height), width, height)
            if k == 0:
                first = page_mask(page)
            used.append(renderer_memory(page))
        page.close()
        on_server = server.log.paths("/api/sessions")
        inputs, _ = payload_inputs(server.url, "big.jpg")
    annotator.close()
    assert not problems, problems
    assert not on_server
    assert first is not None
    shown, ((x, y, positive),) = first
    decoder = Decoder(export, threads=2)
    decoder.image_inputs = lambda features: inputs
    expected = ClickSession(decoder, Encoder(export, threads=2).encode(photos / "big.jpg")).add_click(y, x, positive)
    assert shown.shape == expected.shape == (3000, 4000)
    assert iou(shown, expected) >= 0.99, iou(shown, expected)
    growth = np.polyfit(np.arange(len(used)), used, 1)[0]  # a slope: one sample is ±30 MB of garbage timing
    print(f"tab memory after each object: {', '.join(f'{b / 1e6:.0f}' for b in used)} MB")
    assert growth < 24e6, f"each object added {growth / 1e6:.0f} MB to the tab"


def test_decode_server_in_the_address_still_asks_the_server(
    default_export: tuple[Path, str],
    tmp_path: Path,
    chromium,  # noqa: F811
) -> None:
    export = default_export[0]
    annotator = annotator_for(export, tmp_path, ("astronaut.jpg",))
    problems: list[str] = []
    requests: list[str] = []
    with LoggedServer(annotator) as server:
        page = open_page(chromium, server.url + "/?decode=server", problems, requests)
        assert page.evaluate("window.__interformer.mode()") == "server"
        click_pixel(page, 250, 150, 512, 512)
        status = wait_status(page, "(server)")
        shown, clicks = page_mask(page)
        model_line = page.locator("#model").inner_text()
        page.close()
        sessions = server.log.paths("/api/sessions")
        features = server.log.paths("/api/features/")
        decoder_files = server.log.paths("/model/")
    annotator.close()
    assert not problems, problems
    assert sessions and not features and not decoder_files, (sessions, features, decoder_files)
    assert status.startswith("decode") and "clicks: server" in model_line
    session = ClickSession(
        Decoder(export, threads=2), Encoder(export, threads=2).encode(tmp_path / "photos/astronaut.jpg")
    )
    ((x, y, positive),) = clicks
    assert np.array_equal(shown, session.add_click(y, x, positive))


@pytest.mark.parametrize(
    ("why", "prepare"),
    [
        ("this browser has no WebAssembly", lambda page: page.add_init_script("delete globalThis.WebAssembly")),
        ("the browser decoder stopped", lambda page: page.route("**/static/ort/**", lambda route: route.abort())),
    ],
    ids=["no-webassembly", "worker-fails"],
)
def test_the_page_falls_back_to_the_server_and_says_why(
    default_export: tuple[Path, str],
    tmp_path: Path,
    chromium,  # noqa: F811
    why: str,
    prepare,
) -> None:
    annotator = annotator_for(default_export[0], tmp_path, ("astronaut.jpg",))
    problems: list[str] = []
    with LoggedServer(annotator) as server:
        page = chromium.new_page(viewport={"width": 1200, "height": 800})
        watch_errors(page, problems, allowed=("net::ERR_FAILED",))  # the onnxruntime-web file the test refuses
        prepare(page)
        page.goto(server.url)
        page.wait_for_function("document.getElementById('view').width === 512")
        assert page.evaluate("window.__interformer.decoding()") == "server"
        settle(page)
        opened = page.locator("#status").inner_text()
        click_pixel(page, 250, 150, 512, 512)
        clicked = wait_status(page, "(server)")
        model_line = page.locator("#model").inner_text()
        page.close()
        sessions = server.log.paths("/api/sessions")
    annotator.close()
    assert not problems, problems
    assert f"clicks decoded on the server: {why}" in opened, opened
    assert f"clicks: server ({why}" in model_line and clicked.startswith("decode"), (model_line, clicked)
    assert sessions


def test_the_server_serves_the_page_modules(default_export: tuple[Path, str], tmp_path: Path) -> None:
    """The page's own modules come from the product's route (the browser tests above fill in for it until then)."""
    from starlette.testclient import TestClient

    from interformer_edge.annotate.server import build_app

    annotator = annotator_for(default_export[0], tmp_path, ("chelsea.jpg",))
    with TestClient(build_app(annotator), base_url="http://127.0.0.1:8000") as client:
        for name in ("worker.mjs", "clicks.mjs", "session.mjs", "payload.mjs", "png.mjs"):
            response = client.get(f"/static/decode/{name}")
            assert response.status_code == 200, f"/static/decode/{name}: {response.status_code}"
            assert response.headers["content-type"].startswith("text/javascript")
            assert response.headers["cross-origin-embedder-policy"] == "require-corp"
            assert response.content == (Path(__file__).parents[1] / "annotate/static/decode" / name).read_bytes()
        assert client.get("/static/decode/..%2Fserver.py").status_code == 404
