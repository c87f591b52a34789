"""interformer-annotate under load, in process (no HTTP): many annotators and tool requests at once on one model.

16 simulated annotators open click sessions and click, while CVAT and Label Studio requests replay
their clicks, all released together by a barrier and all on the annotator's one decoder, context
graph and encoder. Nothing may fail, no click may be lost, and every mask must equal the mask of the
same clicks made alone by the runtime's :class:`ClickSession` (same backend, same thread count).
"""

from __future__ import annotations

import base64
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotation_decoders import brush_to_mask
from PIL import Image

from interformer_edge.annotate.service import Annotator, Settings
from interformer_edge.runtime import ClickSession, Decoder, Encoder
from interformer_edge.runtime.features import ImageFeatures

pytestmark = pytest.mark.bundled_model

IMAGES = ("chelsea.jpg", "coffee.jpg")
ANNOTATORS = 16
TOOL_THREADS = 3  # each of CVAT and Label Studio
Click = tuple[int, int, bool]  # (x, y, positive) in image pixels, as the page sends them

LS_CONFIG = """
<View>
    <Image name="image" value="$image"/>
    <BrushLabels name="tag" toName="image"><Label value="Cat"/></BrushLabels>
    <KeyPointLabels name="tag2" toName="image" smart="true"><Label value="Cat"/></KeyPointLabels>
</View>
"""


@pytest.fixture(scope="module")
def export(default_export: tuple[Path, str]) -> Path:
    return default_export[0]


def annotator_plan(index: int) -> tuple[str, list[Click]]:
    """Annotator ``index``'s image and three clicks (inside both photos: chelsea is 451x300, coffee 512x341)."""
    return IMAGES[index % 2], [
        (100 + 17 * index, 80 + 9 * index, True),
        (30 + 11 * index, 40 + 5 * index, False),
        (200 + 7 * index, 150 + 3 * index, True),
    ]


def cvat_plan(index: int) -> tuple[str, list[list[Click]]]:
    """CVAT thread ``index``'s image and its two requests' clicks (the second adds a negative point).

    Two threads share coffee.jpg: CVAT's requests for one image share one replayed session, so they
    take turns rewinding and replaying it.
    """
    first = (250 - 20 * index, 170 + 10 * index, True)
    return ("coffee.jpg", "coffee.jpg", "chelsea.jpg")[index], [[first], [first, (40 + 15 * index, 30, False)]]


def ls_plan(index: int) -> list[list[Click]]:
    """Label Studio thread ``index``'s two requests' clicks on chelsea.jpg (the second adds a point)."""
    first = (222 - 30 * index, 179 - 20 * index, True)
    return [[first], [first, (45 + 10 * index, 30 + 5 * index, False)]]


def cvat_body(image: bytes, clicks: list[Click]) -> dict[str, Any]:
    """As CVAT's lambda manager posts to an interactor (as in tests/test_annotate.py)."""
    return {
        "image": base64.b64encode(image).decode("ascii"),
        "pos_points": [[x, y] for x, y, positive in clicks if positive],
        "neg_points": [[x, y] for x, y, positive in clicks if not positive],
        "threshold": 0.5,
    }


def ls_body(clicks: list[Click], width: int, height: int) -> dict[str, Any]:
    """A Label Studio ``/predict`` body for chelsea.jpg, a served file (nothing is fetched), with smart keypoints.

    Percentages aim at pixel centres, so they map back to exactly these pixels.
    """
    points = [
        {
            "original_width": width,
            "original_height": height,
            "value": {"x": (x + 0.5) * 100 / width, "y": (y + 0.5) * 100 / height, "keypointlabels": ["Cat"]},
            "is_positive": positive,
            "from_name": "tag2",
            "to_name": "image",
            "type": "keypointlabels",
        }
        for x, y, positive in clicks
    ]
    return {
        "tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=photos/chelsea.jpg"}}],
        "label_config": LS_CONFIG,
        "params": {"context": {"result": points}},
    }


def sequential_mask(decoder: Decoder, features: ImageFeatures, clicks: list[Click]) -> np.ndarray:
    """``(H, W)`` bool: the runtime's mask for ``clicks``, made alone in this thread."""
    session = ClickSession(decoder, features)
    for x, y, positive in clicks:
        session.add_click(y, x, positive)
    return np.array(session.mask)


def run_together(workers: list[Callable[[], None]]) -> list[str]:
    """Run the workers in threads released at once; returns the tracebacks of those that raised."""
    barrier = threading.Barrier(len(workers))
    errors: list[str] = []

    def target(work: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=120)
            work()
        except BaseException:  # reported by the test
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=target, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    return errors


# Both backends, and both ways of compiling the decoder (static: compiled per image size, as the CLI serves).
@pytest.mark.parametrize(("backend", "static_shapes"), [("onnxruntime", False), ("openvino", True)])
def test_annotators_and_tools_at_once_get_the_masks_of_sequential_clicks(
    export: Path, photos: Path, tmp_path: Path, backend: str, static_shapes: bool
) -> None:
    settings = Settings(
        images=photos,
        model=export,
        out=tmp_path / "out",
        threads=1,
        prefetch=0,
        backend=backend,
        static_shapes=static_shapes,
    )
    annotator = Annotator(settings)
    sessions: dict[int, str] = {}
    replies: dict[int, list[list[list[Any]]]] = {i: [] for i in range(ANNOTATORS)}  # each click's reply["clicks"]
    cvat_masks: dict[tuple[int, int], np.ndarray] = {}
    ls_masks: dict[tuple[int, int], np.ndarray] = {}
    width, height = Image.open(photos / "chelsea.jpg").size

    def annotate(index: int) -> None:
        image, clicks = annotator_plan(index)
        sessions[index] = annotator.new_session(image, f"object {index}")["session"]
        for x, y, positive in clicks:
            replies[index].append(annotator.click(sessions[index], x, y, positive)["clicks"])

    def cvat(index: int) -> None:
        image, requests = cvat_plan(index)
        data = (photos / image).read_bytes()
        for step, clicks in enumerate(requests):
            cvat_masks[index, step] = np.array(annotator.cvat(cvat_body(data, clicks))["mask"], dtype=bool)

    def label_studio(index: int) -> None:
        for step, clicks in enumerate(ls_plan(index)):
            result = annotator.predict(ls_body(clicks, width, height))["results"][0]["result"][0]
            ls_masks[index, step] = brush_to_mask(result["value"]["rle"], height, width)

    workers = [lambda i=i: annotate(i) for i in range(ANNOTATORS)]
    workers += [lambda i=i: cvat(i) for i in range(TOOL_THREADS)]
    workers += [lambda i=i: label_studio(i) for i in range(TOOL_THREADS)]
    try:
        errors = run_together(workers)
        final = {i: np.array(annotator.sessions.get(sid).clicks.mask) for i, sid in sessions.items()}
    finally:
        annotator.close()
    assert not errors, "\n".join(errors)
    assert all(mask.any() for mask in final.values())  # the clicks make objects: equal masks mean something

    # The same clicks alone, on a runtime of the same backend and thread count.
    encoder = Encoder(export, backend, threads=1)
    decoder = Decoder(export, backend, threads=1, static_shapes=static_shapes)
    features = {name: encoder.encode(photos / name) for name in IMAGES}
    for index in range(ANNOTATORS):
        image, clicks = annotator_plan(index)
        assert replies[index] == [[list(c) for c in clicks[: n + 1]] for n in range(len(clicks))], index
        assert np.array_equal(final[index], sequential_mask(decoder, features[image], clicks)), index
    for index in range(TOOL_THREADS):
        image, requests = cvat_plan(index)
        for step, clicks in enumerate(requests):
            expected = sequential_mask(decoder, features[image], clicks)
            assert expected.any() and np.array_equal(cvat_masks[index, step], expected), ("cvat", index, step)
        for step, clicks in enumerate(ls_plan(index)):
            expected = sequential_mask(decoder, features["chelsea.jpg"], clicks)
            assert np.array_equal(ls_masks[index, step], expected), ("label studio", index, step)
