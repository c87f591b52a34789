"""The tool endpoints of interformer-annotate with the bundled model: CVAT's interactor (the route and the nuclio
function) and the Label Studio ML backend; masks compared with the runtime's for the same clicks."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from annotation_decoders import brush_to_mask
from PIL import Image
from test_annotate import LS_CONFIG, keypoint, make_client, runtime_mask

from interformer_edge.assets import PHOTOS_DIR
from interformer_edge.runtime import Decoder, Encoder

pytestmark = pytest.mark.bundled_model


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


@pytest.fixture(scope="module")
def runtime(export: Path) -> tuple[Encoder, Decoder]:
    return Encoder(export, threads=2), Decoder(export, threads=2)  # the server's thread count: the same sums


def cvat_body(image: bytes, pos: list[list[int]], neg: list[list[int]]) -> dict:
    """As CVAT's lambda manager posts to an interactor (serverless/.../nuclio/main.py reads these keys)."""
    return {"image": base64.b64encode(image).decode("ascii"), "pos_points": pos, "neg_points": neg, "threshold": 0.5}


def test_cvat_interactor_masks_equal_the_runtime(export: Path, runtime, photos: Path, tmp_path: Path) -> None:
    image = (photos / "coffee.jpg").read_bytes()
    with make_client(export, photos, tmp_path / "out") as client:
        first = client.post("/cvat/interactor", json=cvat_body(image, [[250, 170]], []))
        second = client.post("/cvat/interactor", json=cvat_body(image, [[250, 170]], [[40, 30]]))
    assert first.status_code == second.status_code == 200
    one = np.array(first.json()["mask"], dtype=np.uint8)
    two = np.array(second.json()["mask"], dtype=np.uint8)
    assert one.shape == (341, 512) and set(np.unique(one)) <= {0, 1}
    assert np.array_equal(one.astype(bool), runtime_mask(runtime, photos / "coffee.jpg", [(250, 170, True)]))
    assert np.array_equal(
        two.astype(bool), runtime_mask(runtime, photos / "coffee.jpg", [(250, 170, True), (40, 30, False)])
    )


def test_nuclio_handler_answers_like_the_route(export: Path, runtime, photos: Path, monkeypatch) -> None:
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("nuclio_main", Path(__file__).parents[1] / "annotate/nuclio/main.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    monkeypatch.setenv("INTERFORMER_EXPORT", str(export))
    monkeypatch.setenv("INTERFORMER_THREADS", "2")

    class Response:
        def __init__(self, **kwargs: object) -> None:
            self.__dict__.update(kwargs)

    log = SimpleNamespace(info=lambda *a: None)
    context = SimpleNamespace(logger=log, user_data=SimpleNamespace(), Response=Response)
    main.init_context(context)
    body = cvat_body((photos / "coffee.jpg").read_bytes(), [[250, 170]], [])
    answer = main.handler(context, SimpleNamespace(body=body))
    assert answer.status_code == 200
    mask = np.array(json.loads(answer.body)["mask"], dtype=bool)
    assert np.array_equal(mask, runtime_mask(runtime, photos / "coffee.jpg", [(250, 170, True)]))
    bad = main.handler(context, SimpleNamespace(body=b"{oops"))
    assert bad.status_code == 400 and "JSON" in json.loads(bad.body)["error"]
    spec_text = (Path(main.__file__).parent / "function.yaml").read_text()
    assert "type: interactor" in spec_text and "min_pos_points: 1" in spec_text and "min_neg_points: 0" in spec_text


class _LabelStudioFiles(BaseHTTPRequestHandler):
    """A stand-in for Label Studio's /data/upload/ route: serves one file to a request with the right token."""

    payload = b""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Token secret-token" or not self.path.startswith("/data/upload/"):
            self.send_response(401 if self.path.startswith("/data/upload/") else 404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


def test_label_studio_backend_masks_equal_the_runtime(export: Path, runtime, photos: Path, tmp_path: Path) -> None:
    _LabelStudioFiles.payload = (PHOTOS_DIR / "rocket.jpg").read_bytes()
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _LabelStudioFiles)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        with make_client(
            export,
            photos,
            tmp_path / "out",
            label_studio_url=f"http://127.0.0.1:{fake.server_port}",
            label_studio_token="secret-token",
        ) as client:
            assert client.get("/health").json()["status"] == "UP"
            assert "model_version" in client.post("/setup", json={"project": "1.1", "schema": LS_CONFIG}).json()
            points = [keypoint(49.44, 59.97, True, 451, 300), keypoint(10.0, 10.0, False, 451, 300)]
            body = {
                "tasks": [{"id": 7, "data": {"image": "/data/local-files/?d=photos/chelsea.jpg"}}],
                "project": "1.1",
                "label_config": LS_CONFIG,
                "params": {"context": {"result": points}},
            }
            reply = client.post("/predict", json=body)
            assert reply.status_code == 200, reply.text
            empty = client.post("/predict", json={**body, "params": {}}).json()
            # "Retrieve predictions": no clicks in the request, the task's saved smart keypoints are used
            annotated = {**body["tasks"][0], "annotations": [{"id": 1, "result": points, "was_cancelled": False}]}
            saved = client.post("/predict", json={**body, "tasks": [annotated, body["tasks"][0]], "params": {}})
            own_url = {**body, "tasks": [{"id": 7, "data": {"image": "http://127.0.0.1:8000/files/chelsea.jpg"}}]}
            again = client.post("/predict", json=own_url)  # a URL this server handed out: the same image
            inline = "data:image/jpeg;base64," + base64.b64encode((photos / "chelsea.jpg").read_bytes()).decode()
            inlined = client.post("/predict", json={**body, "tasks": [{"id": 7, "data": {"image": inline}}]})
            uploaded = client.post(
                "/predict",
                json={
                    "tasks": [{"id": 8, "data": {"image": "/data/upload/3/abc-rocket.jpg"}}],
                    "label_config": LS_CONFIG,
                    "params": {"context": {"result": [keypoint(50.0, 40.0, True, 512, 342)]}},
                },
            )
            assert uploaded.status_code == 200, uploaded.text
    finally:
        fake.shutdown()
    # one (empty) prediction per task without keypoints, not an empty list Label Studio logs as an error
    assert [r["result"] for r in empty["results"]] == [[]]
    result = reply.json()["results"][0]["result"][0]
    from_saved, without = saved.json()["results"]
    assert from_saved["result"][0]["value"]["rle"] == result["value"]["rle"] and without["result"] == []
    assert (result["type"], result["from_name"], result["to_name"]) == ("brushlabels", "tag", "image")
    assert result["value"]["format"] == "rle" and result["value"]["brushlabels"] == ["Cat"]
    # percent of original_width / original_height -> pixels: x = 49.44% of 451 = 222.97 -> 222, y = 179.9 -> 179
    expected = runtime_mask(runtime, photos / "chelsea.jpg", [(222, 179, True), (45, 30, False)])
    assert np.array_equal(brush_to_mask(result["value"]["rle"], 300, 451), expected)
    assert again.json()["results"][0]["result"][0]["value"]["rle"] == result["value"]["rle"]
    assert inlined.json()["results"][0]["result"][0]["value"]["rle"] == result["value"]["rle"]
    rocket = uploaded.json()["results"][0]["result"][0]["value"]["rle"]
    rocket_rgb = np.asarray(Image.open(PHOTOS_DIR / "rocket.jpg").convert("RGB"))
    assert np.array_equal(brush_to_mask(rocket, 342, 512), runtime_mask(runtime, rocket_rgb, [(256, 136, True)]))
