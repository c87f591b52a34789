"""interformer-annotate with the bundled model: the page's API, saving, bad input, concurrency (the CVAT and
Label Studio endpoints: test_annotate_tools.py).

Masks are compared with the runtime's own :class:`ClickSession` for the same clicks; encoded masks
are read back with ``annotation_decoders`` (written from the formats, not the package's).
"""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from annotation_decoders import coco_to_mask
from PIL import Image

from interformer_edge.annotate.service import Annotator, Settings
from interformer_edge.annotate.sessions import SessionRegistry
from interformer_edge.assets import PHOTOS_DIR
from interformer_edge.runtime import ClickSession, Decoder, Encoder, save_features

pytestmark = pytest.mark.bundled_model

LS_CONFIG = """
<View>
    <Image name="image" value="$image" zoom="true"/>
    <BrushLabels name="tag" toName="image">
        <Label value="Cat" background="#FF0000"/>
    </BrushLabels>
    <KeyPointLabels name="tag2" toName="image" smart="true">
        <Label value="Cat" background="#000000" showInline="true"/>
    </KeyPointLabels>
</View>
"""


# ------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


@pytest.fixture(scope="module")
def runtime(export: Path) -> tuple[Encoder, Decoder]:
    # the server under test runs with the same thread count, so both compute with the same partitioning
    return Encoder(export, threads=2), Decoder(export, threads=2)


def runtime_mask(
    runtime: tuple[Encoder, Decoder],
    image: Path | np.ndarray,
    clicks: list[tuple[int, int, bool]],
    max_side: int | None = None,
) -> np.ndarray:
    """The runtime's mask for ``clicks`` given as (x, y, positive)."""
    encoder, decoder = runtime
    session = ClickSession(decoder, encoder.encode(image, max_side=max_side))
    for x, y, positive in clicks:
        session.add_click(y, x, positive)
    return np.array(session.mask)


def make_client(export: Path, images: Path, out: Path, **options: object):
    # the web stack is imported here, not at collection: the lean (arm64) run collects this file without it
    from starlette.testclient import TestClient

    from interformer_edge.annotate.server import build_app

    annotator = Annotator(Settings(images=images, model=export, out=out, threads=2, prefetch=0, **options))
    return TestClient(build_app(annotator), base_url="http://127.0.0.1:8000")  # a Host the server answers to


def png_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def test_page_api_saves_the_runtime_mask_and_reopens_it(export: Path, runtime, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    clicks = [(220, 150, True), (60, 40, False), (300, 200, True)]
    with make_client(export, photos, out) as client:
        assert client.get("/").text.startswith("<!doctype html>")
        listing = client.get("/api/images").json()
        assert [(i["name"], i["status"]) for i in listing["images"]] == [
            ("chelsea.jpg", "untouched"),
            ("coffee.jpg", "untouched"),
        ]
        opened = client.post("/api/open", json={"image": "chelsea.jpg"}).json()
        assert (opened["width"], opened["height"], opened["saved"]) == (451, 300, [])
        cat = client.post("/api/sessions", json={"image": "chelsea.jpg", "label": "cat"}).json()["session"]
        rug = client.post("/api/sessions", json={"image": "chelsea.jpg", "label": "rug"}).json()["session"]
        for x, y, positive in clicks:
            reply = client.post(f"/api/sessions/{cat}/click", json={"x": x, "y": y, "positive": positive}).json()
            assert reply["decode_ms"] > 0
        assert client.post(f"/api/sessions/{cat}/undo", json={}).json()["clicks"] == [list(c) for c in clicks[:2]]
        statuses = {i["name"]: i["status"] for i in client.get("/api/images").json()["images"]}
        assert statuses == {"chelsea.jpg": "progress", "coffee.jpg": "untouched"}
        client.post(f"/api/sessions/{rug}/click", json={"x": 20, "y": 280, "positive": True})
        saved = client.post(
            "/api/save",
            json={
                "image": "chelsea.jpg",
                "objects": [{"session": cat, "label": "cat"}, {"session": rug, "label": "rug"}],
                "revision": 0,
            },
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["revision"] == 1
    expected_cat = runtime_mask(runtime, photos / "chelsea.jpg", clicks[:2])
    expected_rug = runtime_mask(runtime, photos / "chelsea.jpg", [(20, 280, True)])
    assert expected_cat.any() and not np.array_equal(expected_cat, expected_rug)
    assert np.array_equal(png_mask(out / "masks/chelsea.jpg/00_cat.png"), expected_cat)
    assert np.array_equal(png_mask(out / "masks/chelsea.jpg/01_rug.png"), expected_rug)
    coco = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "rug"]
    assert coco["images"] == [
        {"id": 1, "file_name": "chelsea.jpg", "width": 451, "height": 300, "interformer_revision": 1}
    ]
    first = coco["annotations"][0]
    assert np.array_equal(coco_to_mask(first["segmentation"]), expected_cat)
    assert first["area"] == int(expected_cat.sum())
    rows, cols = np.nonzero(expected_cat)
    assert first["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
    assert (out / "annotations.json").stat().st_mode & 0o044 == 0o044  # group/other readable as usual (umask 022)

    with make_client(export, photos, out) as client:  # reopening the folder shows what was saved
        listing = client.get("/api/images").json()
        assert listing["images"][0] == {"name": "chelsea.jpg", "status": "done", "objects": 2}
        assert listing["done"] == 1
        saved = client.post("/api/open", json={"image": "chelsea.jpg"}).json()["saved"]
        assert [s["label"] for s in saved] == ["cat", "rug"]
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(saved[0]["mask"]))))
        assert np.array_equal(shown.astype(bool), expected_cat)
        # keep the cat, drop the rug: its PNG goes
        kept = {"image": "chelsea.jpg", "objects": [{"saved": 0, "label": "cat"}], "revision": 1}
        assert client.post("/api/save", json=kept).status_code == 200
    assert sorted(p.name for p in (out / "masks/chelsea.jpg").iterdir()) == ["00_cat.png"]


def test_large_photo_is_encoded_bounded_and_masked_at_full_size(export: Path, runtime, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    photo = Image.open(PHOTOS_DIR / "coffee.jpg").resize((1200, 800))
    photo.save(folder / "big.png")
    with make_client(export, folder, tmp_path / "out", max_side=400) as client:
        opened = client.post("/api/open", json={"image": "big.png"}).json()
        assert (opened["width"], opened["height"], opened["encoded"]) == (1200, 800, [267, 400])
        sid = client.post("/api/sessions", json={"image": "big.png", "label": "cup"}).json()["session"]
        client.post(f"/api/sessions/{sid}/click", json={"x": 600, "y": 400, "positive": True})
        cup = {"image": "big.png", "objects": [{"session": sid, "label": "cup"}], "revision": 0}
        assert client.post("/api/save", json=cup).status_code == 200
    saved = png_mask(tmp_path / "out/masks/big.png/00_cup.png")
    assert saved.shape == (800, 1200)
    assert np.array_equal(saved, runtime_mask(runtime, folder / "big.png", [(600, 400, True)], max_side=400))


def test_feature_store_is_used_and_another_models_features_refused(
    export: Path, runtime, photos: Path, tmp_path: Path
) -> None:
    encoder, _ = runtime
    store = tmp_path / "store"
    save_features(encoder.encode(photos / "chelsea.jpg"), store / "chelsea.jpg.npz")
    foreign = encoder.encode(photos / "coffee.jpg")
    foreign.meta = type(foreign.meta)(**{**foreign.meta.__dict__, "model_id": "0123456789abcdef"})
    save_features(foreign, store / "coffee.jpg.npz")
    with make_client(export, photos, tmp_path / "out", features=store) as client:
        assert client.post("/api/open", json={"image": "chelsea.jpg"}).json()["source"] == "store"
        refused = client.post("/api/open", json={"image": "coffee.jpg"})
        assert refused.status_code == 409
        assert "0123456789abcdef" in refused.json()["error"] and "\n" not in refused.json()["error"]


def test_bad_input_gets_one_line_4xx_and_the_server_keeps_serving(export: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    with make_client(export, photos, out, max_upload_mb=1) as client:
        sid = client.post("/api/sessions", json={"image": "chelsea.jpg", "label": "cat"}).json()["session"]
        cases = [
            (client.post("/api/open", json={"image": "broken.jpg"}), 422),
            (client.get("/files/../photos/chelsea.jpg"), 404),
            (client.post("/api/open", json={"image": "missing.jpg"}), 404),
            (client.post("/api/open", content=b"{not json", headers={"Content-Type": "application/json"}), 400),
            (client.post(f"/api/sessions/{sid}/click", json={"x": 451, "y": 10, "positive": True}), 400),
            (client.post(f"/api/sessions/{sid}/click", json={"x": -1, "y": 10, "positive": True}), 400),
            (client.post(f"/api/sessions/{sid}/click", json={"x": 1.5, "y": 10, "positive": True}), 400),
            (client.post(f"/api/sessions/{sid}/undo", json={}), 409),
            (client.post("/api/sessions/nope/click", json={"x": 1, "y": 1, "positive": True}), 404),
            (client.post("/api/sessions", json={"image": "chelsea.jpg", "label": ""}), 400),
            (
                client.post(
                    "/cvat/interactor",
                    json={
                        "image": base64.b64encode(b"not an image").decode(),
                        "pos_points": [[1, 1]],
                        "neg_points": [],
                    },
                ),
                415,
            ),
            (client.post("/cvat/interactor", json={"image": "@@@", "pos_points": [[1, 1]], "neg_points": []}), 400),
            (
                client.post(
                    "/cvat/interactor",
                    json={
                        "image": base64.b64encode(b"x" * (2 << 20)).decode(),
                        "pos_points": [[1, 1]],
                        "neg_points": [],
                    },
                ),
                413,
            ),
            (
                client.post(
                    "/predict",
                    json={
                        "tasks": [{"data": {"image": "elsewhere.jpg"}}],
                        "label_config": LS_CONFIG,
                        "params": {"context": {"result": [keypoint(50, 50, True, 451, 300)]}},
                    },
                ),
                404,
            ),
            (client.get("/no/such/route"), 404),
        ]
        for response, status in cases:
            assert response.status_code == status, (response.request.url, response.text)
            error = response.json()["error"]
            assert error and "\n" not in error and "Traceback" not in error
        # a save that fails leaves nothing behind: no PNG, no JSON
        bad_save = client.post(
            "/api/save",
            json={
                "image": "chelsea.jpg",
                "objects": [{"session": sid, "label": "cat"}, {"session": "expired-or-wrong", "label": "x"}],
                "revision": 0,
            },
        )
        assert bad_save.status_code == 404
        assert not out.exists() or (not any(out.rglob("*.png")) and not (out / "annotations.json").exists())
        assert client.get("/api/images").status_code == 200
        ok = client.post(f"/api/sessions/{sid}/click", json={"x": 220, "y": 150, "positive": True})
        assert ok.status_code == 200


def test_idle_sessions_expire_with_410(runtime, photos: Path) -> None:
    encoder, decoder = runtime
    registry = SessionRegistry(decoder, idle_seconds=0.0)
    session = registry.open("chelsea.jpg", encoder.encode(photos / "chelsea.jpg"), "cat")
    with pytest.raises(Exception, match="idle") as caught:
        registry.get(session.id)
    assert caught.value.status == 410


def test_concurrent_clicks_on_shared_decoder_match_sequential(
    export: Path, runtime, photos: Path, tmp_path: Path
) -> None:
    annotator = Annotator(Settings(images=photos, model=export, out=tmp_path / "out", threads=2, prefetch=0))
    plans = {i: [(100 + 40 * i, 120, True), (30 + 20 * i, 250, False)] for i in range(3)}
    sessions = {i: annotator.new_session("chelsea.jpg", f"o{i}")["session"] for i in plans}
    errors: list[BaseException] = []

    def annotate(i: int) -> None:
        try:
            for x, y, positive in plans[i]:
                annotator.click(sessions[i], x, y, positive)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=annotate, args=(i,)) for i in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    annotator.close()
    assert not errors
    for i, plan in plans.items():
        got = np.array(annotator.sessions.get(sessions[i]).clicks.mask)
        assert np.array_equal(got, runtime_mask(runtime, photos / "chelsea.jpg", plan)), i


def keypoint(x_pct: float, y_pct: float, positive: bool, width: int, height: int) -> dict:
    """A smart keypoint as Label Studio sends it in params.context.result (label-studio-ml-backend's SAM example)."""
    return {
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x_pct, "y": y_pct, "width": 0.3189792663476874, "labels": ["Cat"], "keypointlabels": ["Cat"]},
        "is_positive": positive,
        "id": "fBWv1t0S2L",
        "from_name": "tag2",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
    }
