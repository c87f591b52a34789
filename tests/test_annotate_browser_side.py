"""The server's part when the page decodes clicks itself: what it downloads, and how its saves are checked.

The payload is read back with the module's own reader, but its tensors are compared with the decoder's
per-image inputs computed here, and the files with the export's and the vendored package's bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interformer_edge.annotate.browser_decode import BrowserSide, OrtWeb, page_variant, read_payload
from interformer_edge.annotate.errors import RequestError
from interformer_edge.annotate.service import Annotator, Settings
from interformer_edge.core.manifest import ArtifactFile, QuantizedGraph, load_manifest
from interformer_edge.runtime import ClickSession, Decoder, Encoder

pytestmark = pytest.mark.bundled_model
ORT_WEB_VERSION_FILE = "annotate/static/vendor/onnxruntime-web/version.json"


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


def client_for(export: Path, photos: Path, out: Path, **options: object):
    from starlette.testclient import TestClient

    from interformer_edge.annotate.server import build_app

    settings = Settings(images=photos, model=export, out=out, threads=1, prefetch=0, **options)
    return TestClient(build_app(Annotator(settings)), base_url="http://127.0.0.1:8000")


def png_b64(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_page_gets_the_decoder_runtime_and_each_images_inputs(export: Path, photos: Path, tmp_path: Path) -> None:
    with client_for(export, photos, tmp_path / "out") as client:
        info = client.get("/api/model").json()
        assert info["decode"] == "browser"
        assert info["inputs"]["ref_label"] == "ref_label" and info["clicks"]["inner_radius"] > 0
        decoder = client.get(info["decoder"]["url"])
        assert decoder.status_code == 200 and decoder.content == (export / "decoder.onnx").read_bytes()
        assert "immutable" in decoder.headers["cache-control"]
        assert client.get("/model/0000000000000000/decoder.onnx").status_code == 404
        base = info["ort"]["base"]
        vendored = Path(__file__).parents[1] / "annotate/static/vendor/onnxruntime-web"
        for name, media in (
            ("ort.wasm.min.mjs", "text/javascript"),
            ("ort-wasm-simd-threaded.wasm", "application/wasm"),
        ):
            answer = client.get(base + name)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(media)
            assert answer.content == (vendored / name).read_bytes()
            assert "immutable" in answer.headers["cache-control"]
        record = json.loads((vendored / "version.json").read_text())
        assert base == f"/static/ort/{record['version']}/"
        assert client.get(f"/static/ort/0.0.1/{name}").status_code == 404  # another version: no stale file
        assert client.get(base + "version.json").status_code == 404  # only the runtime's files
        for name, digest in record["files"].items():
            assert hashlib.sha256((vendored / name).read_bytes()).hexdigest() == digest

        page = client.get("/")  # cross-origin isolated, so the decoder may use threads
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"

        payload = client.get("/api/features/chelsea.jpg")
        assert payload.status_code == 200 and payload.headers["content-type"] == "application/octet-stream"
        header, tensors = read_payload(payload.content)
        encoder, decoder_ = Encoder(export, threads=1), Decoder(export, threads=1)
        features = encoder.encode(photos / "chelsea.jpg")
        expected = decoder_.image_inputs(features)
        assert header["original_size"] == [300, 451] and header["padded_size"] == list(features.meta.padded_size)
        assert [t["name"] for t in header["tensors"]] == ["feat0", "ctx0", "ctx1", "ctx2", "ctx3"]
        for name, values in tensors.items():
            assert values.shape == expected[name].shape, name
        assert np.array_equal(tensors["feat0"], expected["feat0"])  # float32: float16 would move mask edges
        for name in ("ctx0", "ctx1", "ctx2", "ctx3"):
            assert tensors[name].dtype == np.float16 and np.array_equal(
                tensors[name], expected[name].astype(np.float16)
            )
        # the data is all there is besides a small header
        wire = expected["feat0"].nbytes + sum(expected[f"ctx{i}"].nbytes // 2 for i in range(4))
        assert wire <= len(payload.content) < wire + 4096
        again = client.get("/api/features/chelsea.jpg", headers={"If-None-Match": payload.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert client.get("/api/features/../etc/passwd").status_code == 404
        worker = client.get(info["page_modules"] + "worker.mjs")  # the page's own modules
        assert worker.status_code == 200 and worker.headers["content-type"].startswith("text/javascript")
        assert worker.content == (Path(__file__).parents[1] / "annotate/static/decode/worker.mjs").read_bytes()
        for wrong in ("../index.html", "missing.mjs", "..%2Findex.html"):
            assert client.get(info["page_modules"] + wrong).status_code == 404, wrong


def test_a_saved_browser_object_is_the_pages_mask_checked_by_its_clicks(
    export: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    clicks = [[220, 150, True], [60, 40, False]]
    session = ClickSession(Decoder(export, threads=1), Encoder(export, threads=1).encode(photos / "chelsea.jpg"))
    for x, y, positive in clicks:
        session.add_click(y, x, positive)
    mask = np.array(session.mask)
    assert mask.any()
    with client_for(export, photos, out) as client:
        forged = np.zeros_like(mask)
        forged[:100, :100] = True
        refusals = [
            ({"label": "cat", "clicks": clicks, "mask": png_b64(forged)}, 422),  # not what the clicks give
            ({"label": "cat", "clicks": clicks, "mask": png_b64(mask[:, :-1])}, 400),  # another size
            ({"label": "cat", "clicks": [[9999, 1, True]], "mask": png_b64(mask)}, 400),
            ({"label": "cat", "clicks": [[1, 1, "yes"]], "mask": png_b64(mask)}, 400),
            ({"label": "cat", "clicks": clicks, "mask": "@@"}, 400),
        ]
        for item, status in refusals:
            answer = client.post("/api/save", json={"image": "chelsea.jpg", "revision": 0, "objects": [item]})
            assert answer.status_code == status, (item["clicks"], answer.text)
            assert "\n" not in answer.json()["error"]
        assert not (out / "annotations.json").exists() and not list(out.rglob("*.png"))
        saved = client.post(
            "/api/save",
            json={
                "image": "chelsea.jpg",
                "revision": 0,
                "objects": [{"label": "cat", "clicks": clicks, "mask": png_b64(mask)}],
            },
        )
        assert saved.status_code == 200, saved.text
        assert np.array_equal(np.asarray(Image.open(out / "masks/chelsea.jpg/00_cat.png")) > 127, mask)
        document = json.loads((out / "annotations.json").read_text())
        assert document["annotations"][0]["interformer_clicks"] == clicks


def test_server_mode_when_asked(export: Path, photos: Path, tmp_path: Path) -> None:
    with client_for(export, photos, tmp_path / "out", decode="server") as client:
        assert client.get("/api/model").json()["decode"] == "server"
        sid = client.post("/api/sessions", json={"image": "chelsea.jpg", "label": "cat"}).json()["session"]
        assert client.post(f"/api/sessions/{sid}/click", json={"x": 220, "y": 150, "positive": True}).status_code == 200


def with_browser_gate(manifest, record: dict | None, digest: str = "ab" * 32):
    """``manifest`` with an INT8 ONNX decoder (file digest ``digest``) whose onnxruntime-web gate is ``record``."""
    variant = QuantizedGraph(
        graph="decoder",
        precision="int8",
        files={"onnx": "decoder.int8.onnx"},
        calibration={},
        gates={"onnxruntime": {"passed": True}} | ({} if record is None else {"onnxruntime-web": record}),
        created="",
    )
    files = (*manifest.files, ArtifactFile("decoder.int8.onnx", 1, digest))
    return replace(manifest, quantized=(variant,), files=files)


def test_pages_get_int8_only_where_its_browser_gate_passed_for_this_file_and_runtime(export: Path) -> None:
    manifest = load_manifest(export)
    vendored = json.loads((Path(__file__).parents[1] / ORT_WEB_VERSION_FILE).read_text())["version"]
    ort_web = OrtWeb(vendored, {})
    passed = {
        "passed": True,
        "mean_iou_vs_fp32": 0.99,
        "onnxruntime_web": vendored,
        "sha256": "ab" * 32,
        "latency_ms": {"fp32": 220.0, "int8": 192.0, "size": "512x512"},
    }
    assert page_variant(with_browser_gate(manifest, passed), "auto", ort_web)[0] == "int8"
    assert page_variant(with_browser_gate(manifest, passed), "fp32", ort_web)[0] == "fp32"
    slower = passed | {"latency_ms": {"fp32": 180.0, "int8": 192.0, "size": "512x512"}}
    assert page_variant(with_browser_gate(manifest, slower), "auto", ort_web)[0] == "fp32"
    assert page_variant(with_browser_gate(manifest, slower), "int8", ort_web)[0] == "int8"  # asked: gated, slower
    refused = {
        "no INT8 decoder": manifest,
        "not gated in a browser": with_browser_gate(manifest, None),
        "failed": with_browser_gate(manifest, passed | {"passed": False}),
        "another onnxruntime-web": with_browser_gate(manifest, passed | {"onnxruntime_web": vendored + ".0"}),
        "another file": with_browser_gate(manifest, passed, digest="cd" * 32),
    }
    for why, case in refused.items():
        variant, reason = page_variant(case, "auto", ort_web)
        assert variant == "fp32" and reason, why
        with pytest.raises(RequestError, match="cannot run the INT8 decoder"):
            page_variant(case, "int8", ort_web)
    with pytest.raises(RequestError, match="one of auto, fp32, int8"):
        page_variant(manifest, "bf16", ort_web)

    # Saves of pages running INT8 are checked with the wider bar; FP32 on both sides with the narrow one.
    decoder = Decoder(export, threads=1)
    int8_pages = BrowserSide(with_browser_gate(manifest, passed), decoder, "model", "browser", True, "int8")
    fp32_pages = BrowserSide(with_browser_gate(manifest, passed), decoder, "model", "browser", True, "fp32")
    assert (int8_pages.file.variant, fp32_pages.file.variant) == ("int8", "fp32")
    assert (int8_pages.save_check_iou, fp32_pages.save_check_iou) == (0.8, 0.9)
