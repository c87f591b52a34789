"""X-AnyLabeling's Remote-Server API: ``GET /v1/models`` and ``POST /v1/predict``, answered with polygons.

X-AnyLabeling 4.2.1 (``anylabeling/services/auto_labeling/remote_server.py``) lists the models, then
posts the whole image with every click::

    {"model": "interformer", "image": "data:image/jpeg;base64,...",
     "params": {"marks": [{"type": "point", "data": [x, y], "label": 1 | 0},
                          {"type": "rectangle", "data": [x1, y1, x2, y2], "label": 1}],
                "conf_threshold": 0.0, "iou_threshold": 0.0, "epsilon_factor": 0.001}}

and reads ``{"data": {"shapes": [{"label", "shape_type", "points", "score", ...}], "description",
"replace"}}``. Its ``Token`` header (the API key in its settings) is checked by :mod:`.guard` like
every other route.

* **Marks** are clicks in the order given: a point with ``label`` 1 is a positive click, 0 a negative
  one. A positive **rectangle** is a positive click at its centre, and the mask is cut to the
  rectangle (the object is inside the box drawn round it); a negative rectangle has no meaning for a
  click model and is refused (400), as is any other mark type.
* **Features** are cached by the image's sha256 (the same cache as CVAT's requests), and the clicks are
  replayed through :class:`~.sessions.ReplaySessions`: a request that adds one mark to the previous
  one costs one decoder run.
* ``conf_threshold`` in (0, 1) is the probability a pixel needs to be in the mask (0, X-AnyLabeling's
  default: 0.5, the model's own mask); ``epsilon_factor`` (X-AnyLabeling's "mask fineness", default
  0.001) simplifies each outline within that fraction of its perimeter, as ``cv2.approxPolyDP`` does.
* **Shapes**: one ``polygon`` per part of the mask (:func:`~.shapes.mask_polygons`), holes joined into
  their part by a zero-width cut (X-AnyLabeling's polygons have no holes); parts and holes smaller than
  :data:`MIN_PART_FRACTION` of the mask are left out, at most :data:`~.shapes.TOOL_MAX_PARTS` parts. The
  label is ``AUTOLABEL_OBJECT``, X-AnyLabeling's placeholder until "Finish object" names it; ``score``
  is the mean object probability over the mask; ``replace`` is false (the shapes join the canvas).
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
from typing import Any

import numpy as np

from .errors import NotFoundError, RequestError
from .interactor import CvatInteractor
from .sessions import Click
from .shapes import DEFAULT_EPSILON_FACTOR, TOOL_MAX_HOLES, TOOL_MAX_PARTS, mask_polygons, polygon_points
from .tools import check_click_count, check_epsilon_factor, is_xy_pair, thresholded_mask

MODEL_KEY = "interformer"
OBJECT_LABEL = "AUTOLABEL_OBJECT"  # X-AnyLabeling's label for a shape still being clicked
MIN_PART_FRACTION = 0.001  # parts and holes below this share of the mask's area are specks, not shapes
# X-AnyLabeling's "mask fineness" slider runs 1..100 for epsilon 0.0001..0.01; 10 is the default 0.001.
FINENESS_SLIDER_DEFAULT = 10


def _model_info(display_name: str) -> dict[str, Any]:
    """One entry of ``/v1/models``: the widgets X-AnyLabeling shows for it (names from its auto-labeling
    panel: add/remove point, add rectangle, clear, finish object, mask fineness)."""
    widgets = [
        {"name": "button_add_point", "value": None},
        {"name": "button_remove_point", "value": None},
        {"name": "button_add_rect", "value": None},
        {"name": "button_clear", "value": None},
        {"name": "button_finish_object", "value": None},
        {"name": "mask_fineness_slider", "value": FINENESS_SLIDER_DEFAULT},
        {"name": "mask_fineness_value_label", "value": None},
    ]
    return {
        "display_name": display_name,
        "widgets": widgets,
        "params": {"epsilon_factor": DEFAULT_EPSILON_FACTOR, "conf_threshold": 0.5},
        # None: no "run on all images" (a click model has nothing to do without clicks).
        "batch_processing_mode": None,
        "available_tasks": [],
    }


def _mark_point(value: Any, height: int, width: int, what: str) -> tuple[float, float]:
    """An ``[x, y]`` in pixels (X-AnyLabeling truncates to integers; the far edge ``x = W`` is allowed)."""
    if not is_xy_pair(value):
        raise RequestError(f"a {what} needs data [x, y] in pixels, got {str(value)[:60]}")
    x, y = float(value[0]), float(value[1])
    if not (0.0 <= x <= width and 0.0 <= y <= height):
        raise RequestError(f"a {what} at ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return x, y


def parse_marks(marks: Any, height: int, width: int) -> tuple[list[Click], list[tuple[float, float, float, float]]]:
    """The clicks ``(y, x, positive)`` of ``marks`` in order, and the positive rectangles ``(x1, y1, x2, y2)``."""
    if not isinstance(marks, list):
        raise RequestError("params.marks must be a list of {type, data, label} marks")
    check_click_count(len(marks))
    clicks: list[Click] = []
    boxes = []
    for mark in marks:
        if not isinstance(mark, dict):
            raise RequestError("each mark must be an object {type, data, label}")
        kind, label = mark.get("type"), mark.get("label", 1)
        if label not in (0, 1) or isinstance(label, bool):
            raise RequestError(f"a mark's label must be 1 (add) or 0 (remove), got {str(label)[:20]!r}")
        if kind == "point":
            x, y = _mark_point(mark.get("data"), height, width, "point")
            clicks.append((min(int(y), height - 1), min(int(x), width - 1), label == 1))
        elif kind == "rectangle":
            data = mark.get("data")
            if not isinstance(data, (list, tuple)) or len(data) != 4:
                raise RequestError(f"a rectangle needs data [x1, y1, x2, y2], got {str(data)[:60]}")
            x1, y1 = _mark_point(list(data[:2]), height, width, "rectangle")
            x2, y2 = _mark_point(list(data[2:]), height, width, "rectangle")
            if label == 0:
                raise RequestError(
                    "a negative rectangle cannot steer a click model: mark what is not the object with negative points"
                )
            left, right, top, bottom = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            cx, cy = min(int((left + right) / 2), width - 1), min(int((top + bottom) / 2), height - 1)
            clicks.append((cy, cx, True))
            boxes.append((left, top, right, bottom))
        else:
            raise RequestError(f"mark type {str(kind)[:20]!r} is not taken: InterFormer takes points and rectangles")
    return clicks, boxes


def _score(session: Any) -> float | None:
    """Mean object probability over the mask, at the decoder's resolution (None before any click)."""
    diff = session.logit_difference
    if diff is None:
        return None
    inside = diff > 0
    if not inside.any():
        return None
    return round(float(np.mean(1.0 / (1.0 + np.exp(-np.clip(diff[inside], -60.0, 60.0))))), 4)


class XAnyLabelingServer:
    """``/v1/models`` and ``/v1/predict`` of X-AnyLabeling's remote server, on the annotator's model.

    Args:
        interactor: decodes images and caches their features by content hash; its replay sessions run the clicks.
        model_version: shown in X-AnyLabeling's model list.
    """

    def __init__(self, interactor: CvatInteractor, model_version: str) -> None:
        self.interactor = interactor
        self.model_version = model_version

    def models(self) -> dict[str, Any]:
        return {"success": True, "data": {MODEL_KEY: _model_info(f"InterFormer ({self.model_version})")}}

    def predict(self, body: Any, cancel: threading.Event | None = None) -> dict[str, Any]:
        """The polygons of the mask for ``params.marks`` on ``image`` (see the module docstring)."""
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object {model, image, params}")
        if body.get("model", MODEL_KEY) != MODEL_KEY:
            raise NotFoundError(f"no model {str(body.get('model'))[:40]!r} here: GET /v1/models lists {MODEL_KEY!r}")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise RequestError("params must be an object")
        image = body.get("image")
        if not isinstance(image, str) or not image:
            raise RequestError("image must be the image file as a data URI (data:image/...;base64,...)")
        payload = image.split(",", 1)[1] if image.startswith("data:") and "," in image[:200] else image
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("image is not valid base64") from None
        epsilon_factor = check_epsilon_factor(params.get("epsilon_factor", DEFAULT_EPSILON_FACTOR))
        threshold = params.get("conf_threshold", 0.0)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold < 1.0:
            raise RequestError(f"conf_threshold must be a number from 0 to below 1, got {threshold!r}")
        threshold = float(threshold) if threshold > 0.0 else 0.5
        cached = self.interactor.features_of_bytes(data, "image")
        height, width = cached.features.meta.original_size
        clicks, boxes = parse_marks(params.get("marks", []), height, width)
        if not clicks:  # "clear", or a request before any mark: nothing to segment yet
            return {"success": True, "data": {"shapes": [], "description": "", "replace": False}}
        key = "xanylabeling:" + cached.features.meta.image_name

        def render(session: Any) -> tuple[np.ndarray, float | None]:
            return np.array(thresholded_mask(session, threshold)), _score(session)

        mask, score = self.interactor.replays.run(key, cached.features, clicks, render, cancel)
        if boxes:
            inside = np.zeros_like(mask)
            for left, top, right, bottom in boxes:  # pixels whose centre lies in a box
                inside[
                    max(0, math.ceil(top - 0.5)) : max(0, math.ceil(bottom - 0.5)),
                    max(0, math.ceil(left - 0.5)) : max(0, math.ceil(right - 0.5)),
                ] = True
            mask &= inside
        min_area = MIN_PART_FRACTION * float(mask.sum())
        parts = mask_polygons(mask, epsilon_factor, min_area, max_parts=TOOL_MAX_PARTS, max_holes=TOOL_MAX_HOLES)
        shapes = []
        for part in parts:
            ring = polygon_points(part.bridged())
            shapes.append(
                {
                    "label": OBJECT_LABEL,
                    "shape_type": "polygon",
                    "points": [*ring, ring[0]],  # closed, as X-AnyLabeling's own servers send polygons
                    "score": score,
                    "group_id": None,
                    "description": None,
                    "difficult": False,
                    "attributes": {},
                    "kie_linking": [],
                }
            )
        return {"success": True, "data": {"shapes": shapes, "description": "", "replace": False}}
