"""The automatic-clicker protocol (core/evaluation.py) with stand-in predictors."""

from __future__ import annotations

import numpy as np
import pytest

from interformer_edge.core.clicks import Click
from interformer_edge.core.evaluation import SessionResult, iou, run_session, summarize, zoom_roi_padded
from interformer_edge.core.spec import REF_FOREGROUND


def square_gt(height: int = 70, width: int = 90) -> np.ndarray:
    gt = np.zeros((height, width), dtype=bool)
    gt[20:50, 30:70] = True
    return gt


def test_iou_of_known_masks() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert iou(a, b) == pytest.approx(4 / 12)
    assert iou(a, a) == 1.0
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_oracle_predictor_needs_one_click() -> None:
    gt = square_gt()
    result = run_session(lambda ref, roi: gt, gt, max_clicks=20)
    assert result.ious == [1.0] * 20
    assert result.clicks_to_reach(0.9) == 1
    assert len(result.clicks) == 1 and result.clicks[0].is_positive


def test_clicks_follow_errors_of_a_painting_predictor() -> None:
    """A predictor that only knows its definite-foreground pixels improves click by click."""
    gt = square_gt()
    seen_rois = []

    def predict(ref: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
        seen_rois.append(roi)
        return ref == REF_FOREGROUND

    result = run_session(predict, gt, max_clicks=8, zoom_in=True)
    assert len(result.ious) == 8
    assert result.ious[-1] > result.ious[0]
    assert all(c.is_positive and gt[c.y, c.x] for c in result.clicks)
    assert len({(c.y, c.x) for c in result.clicks}) == len(result.clicks)
    assert seen_rois[0] is None and all(r is not None for r in seen_rois[1:])
    for left, up, right, bottom in seen_rois[1:]:
        assert left % 32 == up % 32 == right % 32 == bottom % 32 == 0
        assert 0 <= left < right <= 96 and 0 <= up < bottom <= 96  # padded canvas of 70x90


def test_a_session_stopped_early_keeps_its_noc_and_miou() -> None:
    """A predictor that paints its definite foreground, then nearly the whole object from the third call
    on (a corner stays wrong, so the clicker keeps clicking): the session may stop at 90 % IoU once past
    ``stop_after`` clicks, with the full session's NoC and mIoU."""
    gt = square_gt()
    nearly = gt.copy()
    ys, xs = np.nonzero(gt)
    nearly[ys.min() : ys.min() + 3, xs.min() : xs.min() + 3] = False

    def run(stop_after: int | None) -> tuple[list[float], int]:
        calls = []

        def predict(ref: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
            calls.append(1)
            return nearly if len(calls) >= 3 else ref == REF_FOREGROUND

        result = run_session(predict, gt, max_clicks=12, stop_after=stop_after)
        return result.ious, len(calls)

    full, full_calls = run(None)
    assert full_calls == 12 and 0.9 <= full[2] < 1.0 and full[1] < 0.85
    for stop_after, calls in ((1, 3), (5, 5)):
        ious, made = run(stop_after)
        assert made == calls and len(ious) == 12
        summary, reference = summarize([SessionResult(ious=ious)]), summarize([SessionResult(ious=full)])
        assert {k: summary[k] for k in ("noc@85", "noc@90", "miou@1", "miou@3", "miou@5")} == {
            k: reference[k] for k in ("noc@85", "noc@90", "miou@1", "miou@3", "miou@5")
        }


def test_never_reaching_the_threshold_counts_the_whole_budget() -> None:
    gt = square_gt()
    result = run_session(lambda ref, roi: np.zeros_like(gt), gt, max_clicks=5)
    assert result.clicks_to_reach(0.85) == 5


def test_summary_over_known_curves() -> None:
    a = SessionResult(ious=[0.5, 0.86, 0.95, 0.95, 0.95])
    b = SessionResult(ious=[0.9, 0.9, 0.9, 0.9, 0.95])
    summary = summarize([a, b])
    assert summary["miou@1"] == pytest.approx(0.7)
    assert summary["miou@3"] == pytest.approx(0.925)
    assert summary["noc@85"] == pytest.approx((2 + 1) / 2)
    assert summary["noc@90"] == pytest.approx((3 + 1) / 2)
    assert summary["iou_curve"][1] == pytest.approx(0.88)


def test_roi_on_padded_canvas_contains_the_clicked_object() -> None:
    gt = square_gt(75, 101)
    ref = np.full(gt.shape, 2, np.uint8)
    ref[35, 50] = REF_FOREGROUND
    left, up, right, bottom = zoom_roi_padded(gt, ref)
    assert left <= 30 and up <= 20 and right >= 70 and bottom >= 50
    assert right <= 128 and bottom <= 96


def test_clicks_are_recorded_in_order() -> None:
    gt = square_gt()
    result = run_session(lambda ref, roi: ref == REF_FOREGROUND, gt, max_clicks=3)
    assert all(isinstance(c, Click) for c in result.clicks)
    assert len(result.clicks) == 3
