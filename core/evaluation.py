"""The standard automatic-clicker protocol (NoC / mIoU), independent of the inference backend.

A *predictor* is any callable ``predict(ref_label, roi) -> mask``: ``ref_label`` ``(H, W)`` uint8
codes 0..4 at the image's own size, ``roi`` ``(left, up, right, bottom)`` or ``None``, and the
returned mask ``(H, W)`` bool. PyTorch models, ONNX Runtime and OpenVINO sessions all plug in here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .clicker import next_click
from .clicks import (
    Click,
    add_click,
    initial_ref_label,
    update_ref_label_with_prediction,
    zoom_roi,
)
from .preprocess import padded_shape
from .spec import (
    CLICK_INNER_RADIUS,
    CLICK_OUTER_RADIUS,
    EVAL_MAX_CLICKS,
    SIZE_DIVISOR,
    ZOOM_EXPAND_RATIO,
    ZOOM_MIN_SIZE,
    ZOOM_START_CLICK,
)

Roi = tuple[int, int, int, int]
Predictor = Callable[[np.ndarray, Roi | None], np.ndarray]
IOU_THRESHOLDS = (0.85, 0.90)
# The clicks at which mIoU@k is reported.
MIOU_AT_CLICKS: tuple[int, ...] = (1, 3, 5)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground IoU of two ``(H, W)`` bool masks (1.0 when both are empty)."""
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def zoom_roi_padded(
    pred: np.ndarray,
    ref_label: np.ndarray,
    divisor: int = SIZE_DIVISOR,
    expand_ratio: float = ZOOM_EXPAND_RATIO,
    min_size: int = ZOOM_MIN_SIZE,
) -> Roi:
    """Zoom-in box computed on the padded canvas the model sees (the official box is not clipped
    after stride snapping, so it is only valid on padded maps)."""
    height, width = pred.shape
    pad_h, pad_w = padded_shape(height, width, divisor)
    canvas_pred = np.zeros((pad_h, pad_w), dtype=bool)
    canvas_pred[:height, :width] = pred
    canvas_ref = np.full((pad_h, pad_w), 2, dtype=np.uint8)
    canvas_ref[:height, :width] = ref_label
    return zoom_roi(canvas_pred, canvas_ref, expand_ratio, min_size, divisor)


@dataclass
class SessionResult:
    """One simulated annotation session: IoU after each click and the clicks made."""

    ious: list[float] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)

    def clicks_to_reach(self, threshold: float) -> int:
        """NoC: the first click count whose IoU reaches ``threshold`` (the click budget if never)."""
        for count, value in enumerate(self.ious, start=1):
            if value >= threshold:
                return count
        return len(self.ious)


def run_session(
    predict: Predictor,
    gt: np.ndarray,
    max_clicks: int = EVAL_MAX_CLICKS,
    zoom_in: bool = False,
    zoom_start: int = ZOOM_START_CLICK,
    inner_radius: int = CLICK_INNER_RADIUS,
    outer_radius: int = CLICK_OUTER_RADIUS,
    stop_after: int | None = None,
) -> SessionResult:
    """Click ``max_clicks`` times with the automatic clicker and record the IoU after each click.

    Follows the official ``interact_test``: click from the previous prediction, encode it into the
    reference label, (optionally) zoom in from click ``zoom_start`` on, predict, then let the
    prediction update the soft labels. When the clicker has nothing left to correct, the
    prediction cannot change any more and the last IoU is repeated.

    ``stop_after``: stop early once at least this many clicks are made and the IoU has reached the
    highest of :data:`IOU_THRESHOLDS`; the remaining entries repeat the last IoU. NoC@85/90 and
    mIoU@k for ``k <= stop_after`` are then those of the full session (a NoC is fixed by the first
    click that reaches its threshold); the later IoUs and ``clicks`` are not.
    """
    gt = np.asarray(gt, dtype=bool)
    ref_label = initial_ref_label(gt.shape)
    pred = np.zeros_like(gt)
    result = SessionResult()
    for step in range(max_clicks):
        click = next_click(pred, gt, result.clicks)
        if click is None and step > 0:
            result.ious.extend([result.ious[-1]] * (max_clicks - step))
            break
        if click is not None:
            result.clicks.append(click)
            ref_label = add_click(ref_label, click, inner_radius, outer_radius)
        roi = zoom_roi_padded(pred, ref_label) if zoom_in and step >= zoom_start else None
        pred = np.asarray(predict(ref_label, roi), dtype=bool)
        result.ious.append(iou(pred, gt))
        if stop_after is not None and step + 1 >= stop_after and result.ious[-1] >= max(IOU_THRESHOLDS):
            result.ious.extend([result.ious[-1]] * (max_clicks - step - 1))
            break
        ref_label = update_ref_label_with_prediction(ref_label, pred)
    return result


def summarize(
    results: Sequence[SessionResult], at_clicks: Iterable[int] = MIOU_AT_CLICKS
) -> dict[str, float | list[float]]:
    """mIoU@k (for the ``at_clicks`` within the click budget), NoC@85/90 and the mean IoU-per-click
    curve over sessions."""
    if not results:
        raise ValueError("no sessions to summarize")
    curves = np.asarray([r.ious for r in results], dtype=np.float64)
    summary: dict[str, float | list[float]] = {"sessions": float(len(results))}
    for k in (k for k in at_clicks if k <= curves.shape[1]):
        summary[f"miou@{k}"] = float(curves[:, k - 1].mean())
    for threshold in IOU_THRESHOLDS:
        summary[f"noc@{round(threshold * 100)}"] = float(np.mean([r.clicks_to_reach(threshold) for r in results]))
    summary["iou_curve"] = curves.mean(axis=0).tolist()
    return summary
