"""The request and response shapes of the annotation tools that plug interactive models in.

CVAT interactor (``cvat-ai/cvat`` ``serverless/.../nuclio/main.py``): the body is
``{"image": <base64 image file>, "pos_points": [[x, y], ...], "neg_points": [[x, y], ...],
"threshold": 0.5}`` in pixels; the answer ``{"mask": <H x W list of 0/1>}``. Two optional fields of
ours: ``"output": "polygon"`` answers ``{"points": [[x, y], ...], "polygons": [[[x, y], ...], ...]}``
(the largest part, then every part, each one ring with its holes joined in: see :mod:`.shapes`;
pixel-corner coordinates) simplified by ``"epsilon_factor"`` (default 0.001 of each ring's perimeter),
and ``"output": "box"`` answers ``{"box": [x1, y1, x2, y2]}`` (the tight box, ``null`` for an empty mask).

Label Studio ML backend (``HumanSignal/label-studio-ml-backend`` ``label_studio_ml/api.py``):
``/predict`` gets ``{"tasks": [...], "label_config": "<View>...", "params": {"context": {"result":
[...]}}}``; each smart keypoint of the context is ``{"type": "keypointlabels", "original_width": W,
"original_height": H, "is_positive": bool, "value": {"x": %, "y": %, "keypointlabels": [label]}}``
with ``x``, ``y`` in percent of the image size. The answer is ``{"results": [{"result":
[{"type": "brushlabels", "value": {"format": "rle", "rle": [...], "brushlabels": [label]}, ...}],
"score", "model_version"}]}`` with Label Studio's brush RLE.
"""

from __future__ import annotations

import base64
import binascii
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

from interformer_edge.core.preprocess import resize_bilinear
from interformer_edge.runtime.session import ClickSession

from .errors import RequestError
from .limits import MAX_CLICKS_PER_OBJECT
from .rle import brush_rle
from .sessions import Click
from .shapes import DEFAULT_EPSILON_FACTOR, TOOL_MAX_HOLES, TOOL_MAX_PARTS, mask_box, mask_polygons, polygon_points


def check_click_count(count: int) -> None:
    """A 400 for more clicks than one object may have (each costs a decoder run)."""
    if count > MAX_CLICKS_PER_OBJECT:
        raise RequestError(f"{count} clicks for one object: at most {MAX_CLICKS_PER_OBJECT} are taken")


def is_xy_pair(value: Any) -> bool:
    """``[x, y]`` of two finite numbers (a bool is no number), as tools send a point."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _point(value: Any, height: int, width: int, what: str) -> tuple[int, int]:
    """A pixel ``[x, y]`` (numbers, rounded down) as ``(y, x)``; outside the image is a 400."""
    if not is_xy_pair(value):
        raise RequestError(f"{what} must be [x, y] pixel pairs, got {str(value)[:60]}")
    x, y = math.floor(value[0]), math.floor(value[1])
    if not (0 <= x < width and 0 <= y < height):
        raise RequestError(f"{what} ({value[0]}, {value[1]}) lies outside the {width}x{height} image")
    return y, x


# --------------------------------------------------------------------------------------------- CVAT


Point = tuple[Any, bool, str]  # ([x, y] as sent, positive, the key it came from)
CVAT_OUTPUTS = ("mask", "polygon", "box")


@dataclass(frozen=True)
class CvatRequest:
    image: bytes
    points: list[Point]
    threshold: float
    output: str = "mask"
    epsilon_factor: float = DEFAULT_EPSILON_FACTOR


def check_epsilon_factor(value: Any) -> float:
    """An ``epsilon_factor`` (polygon simplification, a fraction of each ring's perimeter): 0 <= f < 1."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0.0 <= value < 1.0):
        raise RequestError(f"epsilon_factor must be a number from 0 (exact outline) to below 1, got {value!r}")
    return float(value)


def parse_cvat(body: Any) -> CvatRequest:
    """Check a CVAT interactor body; the clicks are the positive points, then the negative ones, in order."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object with image, pos_points and neg_points")
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise RequestError("image must be a base64 string of an image file")
    if "," in image[:100] and image.startswith("data:"):  # a data URL: keep the payload
        image = image.split(",", 1)[1]
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image is not valid base64") from None
    points = []
    for key, positive in (("pos_points", True), ("neg_points", False)):
        value = body.get(key, [])
        if not isinstance(value, list):
            raise RequestError(f"{key} must be a list of [x, y] pairs")
        points += [(p, positive, key) for p in value]
    threshold = body.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 < threshold < 1.0:
        raise RequestError(f"threshold must be a number between 0 and 1 (exclusive), got {threshold!r}")
    if not any(positive for _, positive, _ in points):
        raise RequestError("at least one positive point is needed (min_pos_points: 1)")
    check_click_count(len(points))
    output = body.get("output", "mask")
    if output not in CVAT_OUTPUTS:
        raise RequestError(f"output must be one of {', '.join(CVAT_OUTPUTS)} (default mask), got {str(output)[:20]!r}")
    epsilon_factor = check_epsilon_factor(body.get("epsilon_factor", DEFAULT_EPSILON_FACTOR))
    return CvatRequest(data, points, float(threshold), output, epsilon_factor)


def cvat_clicks(points: list[Point], height: int, width: int) -> list[Click]:
    """The points as clicks ``(y, x, positive)`` on an ``height x width`` image (off the image: a 400)."""
    return [(*_point(value, height, width, key), positive) for value, positive, key in points]


def thresholded_mask(session: ClickSession, threshold: float) -> np.ndarray:
    """``(H, W)`` bool: object probability above ``threshold`` (0.5 gives the session's own mask)."""
    if session.logit_difference is None:
        return np.zeros((session.height, session.width), dtype=bool)
    if threshold == 0.5:
        return np.asarray(session.mask)
    cut = math.log(threshold / (1.0 - threshold))  # probability > t  <=>  logit difference > logit(t)
    diff = session.logit_difference
    if diff.shape != (session.height, session.width):
        diff = resize_bilinear(diff, (session.height, session.width))
    return diff > cut


def cvat_response(
    mask: np.ndarray, output: str = "mask", epsilon_factor: float = DEFAULT_EPSILON_FACTOR
) -> dict[str, Any]:
    """The answer in the requested ``output``: the mask (CVAT's default), polygons, or the tight box."""
    if output == "polygon":
        parts = mask_polygons(mask, epsilon_factor, max_parts=TOOL_MAX_PARTS, max_holes=TOOL_MAX_HOLES)
        rings = [polygon_points(part.bridged()) for part in parts]
        return {"points": rings[0] if rings else [], "polygons": rings}
    if output == "box":
        box = mask_box(mask)
        return {"box": list(box) if box is not None else None}
    return {"mask": mask.astype(np.uint8).tolist()}


# ------------------------------------------------------------------------------------- Label Studio


@dataclass(frozen=True)
class LabelConfig:
    """What a Label Studio labelling config tells the backend: where to answer and which task field is the image."""

    brush_from: str
    brush_to: str
    image_key: str


def parse_label_config(text: Any) -> LabelConfig:
    """The first ``BrushLabels`` tag and its ``Image`` tag (the ``$field`` of the task data it shows)."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError("label_config is missing: Label Studio sends the project's labelling config")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise RequestError(f"label_config is not valid XML ({err})") from None
    tags = list(root.iter())
    brush = next((t for t in tags if t.tag.lower() == "brushlabels"), None)
    if brush is None or not brush.get("name") or not brush.get("toName"):
        raise RequestError("label_config needs a BrushLabels tag (name, toName) to put the masks in")
    image = next((t for t in tags if t.tag.lower() == "image" and t.get("name") == brush.get("toName")), None)
    if image is None or not (image.get("value") or "").startswith("$"):
        raise RequestError(f'label_config has no Image tag named {brush.get("toName")!r} with value="$field"')
    return LabelConfig(brush.get("name"), brush.get("toName"), image.get("value")[1:])


@dataclass(frozen=True)
class KeypointContext:
    """The smart keypoints of one Label Studio request, in the order given."""

    width: int
    height: int
    percent_points: list[tuple[float, float, bool]]  # (x %, y %, positive)
    label: str


def parse_context(body: dict[str, Any]) -> KeypointContext | None:
    """The keypoints of ``params.context.result`` (or a top-level ``context``); None when there are none."""
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise RequestError("params must be an object")
    context = params.get("context", body.get("context"))
    if not context:
        return None
    if not isinstance(context, dict) or not isinstance(context.get("result", []), list):
        raise RequestError("context must be an object with a result list")
    points, size, label = [], None, None
    for item in context.get("result", []):
        if not isinstance(item, dict) or item.get("type") != "keypointlabels":
            continue  # rectangles and other hints: this model takes clicks only
        value = item.get("value")
        try:
            x, y = float(value["x"]), float(value["y"])
            this_size = (int(item["original_width"]), int(item["original_height"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise RequestError(
                "a keypointlabels result needs value.x, value.y, original_width and original_height"
            ) from None
        if not (math.isfinite(x) and math.isfinite(y)) or min(this_size) <= 0:
            raise RequestError("a keypoint has a non-finite position or the image size is not positive")
        if size is not None and this_size != size:
            raise RequestError("the keypoints disagree on original_width / original_height")
        size = this_size
        labels = value.get("keypointlabels") or value.get("labels") or []
        label = labels[0] if isinstance(labels, list) and labels and isinstance(labels[0], str) else label
        positive = item.get("is_positive", True)
        if not isinstance(positive, bool):
            raise RequestError(f"is_positive must be true or false, got {str(positive)[:20]!r}")
        points.append((x, y, positive))
    if not points:
        return None
    check_click_count(len(points))
    return KeypointContext(size[0], size[1], points, label or "object")


def keypoint_clicks(context: KeypointContext, height: int, width: int) -> list[Click]:
    """Percent positions → pixels of the image as read (``(y, x, positive)``); a point off the image is a 400."""
    if (context.width, context.height) != (width, height):
        raise RequestError(
            f"the keypoints are for a {context.width}x{context.height} image, the task's image is {width}x{height}"
        )
    clicks = []
    for x_pct, y_pct, positive in context.percent_points:
        if not (0.0 <= x_pct <= 100.0 and 0.0 <= y_pct <= 100.0):
            raise RequestError(f"keypoint ({x_pct:.3g}%, {y_pct:.3g}%) lies outside the image")
        x = min(width - 1, int(x_pct * width / 100.0))
        y = min(height - 1, int(y_pct * height / 100.0))
        clicks.append((y, x, positive))
    return clicks


def brush_result(
    mask: np.ndarray, config: LabelConfig, label: str, score: float, model_version: str, result_id: str
) -> dict[str, Any]:
    """One task's prediction: a ``brushlabels`` result with the mask in Label Studio's RLE."""
    height, width = mask.shape
    return {
        "result": [
            {
                "id": result_id,
                "from_name": config.brush_from,
                "to_name": config.brush_to,
                "type": "brushlabels",
                "original_width": int(width),
                "original_height": int(height),
                "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle(mask), "brushlabels": [label]},
                "score": score,
                "readonly": False,
            }
        ],
        "score": score,
        "model_version": model_version,
    }
