"""X-AnyLabeling's own Remote-Server client against our server: polygons that match the runtime's mask.

The client is the ``RemoteServer`` class of the PyPI package ``x-anylabeling-cvhub`` 4.2.1, run in its
own virtualenv (``scripts/tool_envs.py``) with Qt offscreen, configured as a user does: the app's
config file with ``remote_server_settings: {server_url, api_key}``. It lists our models, then sends
marks as its canvas makes them (points with label 1/0, a rectangle), with the mask fineness slider's
``epsilon_factor``; the shapes it builds are rasterised here and compared with the runtime's mask.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from live_server import LiveServer
from tool_servers import iou, runtime_mask, tool_python

from interformer_edge.annotate.shapes import rasterize
from interformer_edge.assets import PHOTOS_DIR

pytestmark = pytest.mark.bundled_model

API_KEY = "xal-" + uuid.uuid4().hex

# Run in X-AnyLabeling's environment: argv = app config, image; stdin = the plan; stdout = what the client got.
CLIENT = r"""
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QApplication
app = QApplication([])
import anylabeling.config as config
config.current_config_file = sys.argv[1]
from anylabeling.services.auto_labeling.remote_server import RemoteServer
messages = []
model = RemoteServer(
    {"type": "remote_server", "name": "remote_server-r20251104", "display_name": "Remote-Server", "timeout": 120},
    on_message=messages.append,
)
models = model.get_available_models()
model.set_model_id(next(iter(models), None))  # none: the server refused the key
image_path = sys.argv[2]
image = QImage(image_path)
answers = []
for step in json.load(sys.stdin):
    model.set_auto_labeling_marks(step["marks"])
    model.set_mask_fineness(step["epsilon"])
    started = __import__("time").perf_counter()
    result = model.predict_shapes(image, image_path)
    answers.append({
        "seconds": __import__("time").perf_counter() - started,
        "replace": result.replace,
        "shapes": [
            {"label": s.label, "shape_type": s.shape_type, "score": s.score,
             "points": [[p.x(), p.y()] for p in s.points]}
            for s in result.shapes
        ],
    })
print(json.dumps({"models": models, "mode": model.get_batch_processing_mode(), "answers": answers,
                  "messages": [str(m) for m in messages]}))
"""


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


@pytest.fixture(scope="module")
def runtime(export: Path):
    from interformer_edge.runtime import Decoder, Encoder

    return Encoder(export, threads=2), Decoder(export, threads=2)


def run_client(python: Path, url: str, api_key: str, image: Path, plan: list[dict], home: Path) -> dict:
    settings = home / "xanylabelingrc.yaml"
    settings.write_text(json.dumps({"remote_server_settings": {"server_url": url, "api_key": api_key}}))  # YAML
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(home))
    done = subprocess.run(
        [str(python), "-c", CLIENT, str(settings), str(image)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=home,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def polygons_mask(shapes: list[dict], height: int, width: int) -> np.ndarray:
    assert all(s["shape_type"] == "polygon" and s["label"] == "AUTOLABEL_OBJECT" for s in shapes), shapes
    return rasterize([np.array(s["points"]) for s in shapes], height, width)


def point(x: int, y: int, positive: bool = True) -> dict:
    """A mark as X-AnyLabeling's canvas makes it (update_auto_labeling_marks)."""
    return {"type": "point", "data": [x, y], "label": 1 if positive else 0}


def test_x_anylabeling_client_gets_the_runtime_mask_as_polygons(
    export: Path, runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from interformer_edge.annotate.guard import AccessPolicy
    from interformer_edge.annotate.server import build_app
    from interformer_edge.annotate.service import Annotator, Settings

    caplog.set_level(logging.INFO, logger="interformer_edge.annotate")
    python = tool_python("x-anylabeling")
    photos = tmp_path / "photos"
    photos.mkdir()
    image = photos / "coffee.jpg"
    shutil.copy(PHOTOS_DIR / "coffee.jpg", image)
    height, width = 341, 512
    one, two = [point(250, 170)], [point(250, 170), point(40, 30, positive=False)]
    three = [*two, point(300, 120)]
    box = {"type": "rectangle", "data": [180, 100, 330, 260], "label": 1}
    plan = [
        {"marks": one, "epsilon": 0.0},
        {"marks": two, "epsilon": 0.0},
        {"marks": three, "epsilon": 0.0},  # several marks at once; one decoder run more than the last request
        {"marks": three, "epsilon": 0.001},  # X-AnyLabeling's default mask fineness
        {"marks": three, "epsilon": 0.01},  # its coarsest
        {"marks": [box], "epsilon": 0.0},  # a rectangle: its centre as a click, the mask cut to it
        {"marks": [], "epsilon": 0.001},  # cleared: nothing to segment
        {"marks": [{**box, "label": 0}], "epsilon": 0.001},  # a negative rectangle: refused, the client says why
    ]
    annotator = Annotator(Settings(images=photos, model=export, out=tmp_path / "out", threads=2, prefetch=0))
    started = time.monotonic()
    with LiveServer(build_app(annotator, policy=AccessPolicy(token=API_KEY))) as url:
        got = run_client(python, url, API_KEY, image, plan, tmp_path)
        refused = run_client(python, url, "wrong-key", image, plan[:1], tmp_path)
    elapsed = time.monotonic() - started

    ((model_id, info),) = got["models"].items()
    assert model_id == "interformer" and info["display_name"].startswith("InterFormer")
    assert got["mode"] is None  # no batch run: a click model needs clicks
    answers = got["answers"]
    expected = {
        "one": runtime_mask(runtime, image, [(250, 170, True)]),
        "two": runtime_mask(runtime, image, [(250, 170, True), (40, 30, False)]),
        "three": runtime_mask(runtime, image, [(250, 170, True), (40, 30, False), (300, 120, True)]),
        "box": runtime_mask(runtime, image, [(255, 180, True)]),
    }
    expected["box"][:, :180] = expected["box"][:, 330:] = False
    expected["box"][:100] = expected["box"][260:] = False
    ious = {
        "one": iou(polygons_mask(answers[0]["shapes"], height, width), expected["one"]),
        "two": iou(polygons_mask(answers[1]["shapes"], height, width), expected["two"]),
        "three": iou(polygons_mask(answers[2]["shapes"], height, width), expected["three"]),
        "three@0.001": iou(polygons_mask(answers[3]["shapes"], height, width), expected["three"]),
        "three@0.01": iou(polygons_mask(answers[4]["shapes"], height, width), expected["three"]),
        "box": iou(polygons_mask(answers[5]["shapes"], height, width), expected["box"]),
    }
    print(f"\nX-AnyLabeling polygons vs the runtime, IoU: {json.dumps({k: round(v, 4) for k, v in ious.items()})}")
    print(f"X-AnyLabeling client, {len(plan)} requests + 1 refused: {elapsed:.1f} s")
    # every answer at least 0.95 but at the slider's coarsest end (0.01 of the perimeter: 15 px here)
    assert all(v >= 0.95 for k, v in ious.items() if k != "three@0.01") and ious["three@0.01"] >= 0.9, ious
    assert ious["one"] >= 0.99 and ious["two"] >= 0.99 and ious["three"] >= 0.99  # exact outlines, minus specks
    assert not np.array_equal(expected["one"], expected["two"])
    vertices = [sum(len(s["points"]) for s in a["shapes"]) for a in answers[2:5]]
    assert vertices[0] > vertices[1] > vertices[2]  # epsilon_factor respected
    assert all(s["score"] is not None and 0.5 < s["score"] <= 1.0 for s in answers[0]["shapes"])
    assert answers[0]["replace"] is False and answers[6]["shapes"] == [] and answers[7]["shapes"] == []
    assert any("400" in m for m in got["messages"]), got["messages"]  # the negative rectangle
    assert refused["models"] == {} and refused["answers"][0]["shapes"] == []  # the guard: a wrong Token header
    encoded = [r for r in caplog.records if "ready (encoded" in r.getMessage()]
    assert len(encoded) == 1  # the image is sent with every request: encoded once, found by its sha256 after
