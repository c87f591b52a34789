"""Click encoding for InterFormer: reference labels, their updates and the zoom-in roi (the automatic
clicker of the evaluation protocol is in :mod:`.clicker`).

This is the one implementation the toolkit uses (runtime, export checks, evaluation). numpy only.

A reference label is an (H, W) uint8 map with the codes of ``spec``: 0 definite background,
1 possible background, 2 unknown, 3 possible foreground, 4 definite foreground. An interaction is:

1. ``ref = add_click(ref, click)``: the new click's own label, merged into the running one;
2. the model predicts ``pred`` (H, W) from the image and ``ref``, with ``zoom_roi(prev_pred, ref)``
   once zoom-in has started (``spec.ZOOM_START_CLICK``);
3. ``ref = update_ref_label_with_prediction(ref, pred)``.

Every function reproduces the official InterFormer code (``interformer/utils/click.py``,
``uncertainty.py``, ``zoom_in.py``, ``segmentors/zoom_in.py``) with exact Euclidean distances,
which is what OpenCV's own precise distance transform returns. Two known deviations:

* the automatic clicker picks deterministically among equally good pixels (see :func:`.clicker.next_click`);
* for small images (< 2**14 pixels) or single-threaded OpenCV, cv2 runs Intel IPP's transform,
  which can return an exact integer distance 1 ulp high (opencv/opencv#24082). The official code
  then leaves out pixels lying *exactly* on an integer radius (seen for radius 13 = 5 + 8, not for
  the default 5) and may drop some of the tied clicker candidates. This module does not copy that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .spec import (
    CLICK_INNER_RADIUS,
    CLICK_OUTER_RADIUS,
    NUM_REF_LABELS,
    REF_BACKGROUND,
    REF_FOREGROUND,
    REF_POSSIBLY_BACKGROUND,
    REF_POSSIBLY_FOREGROUND,
    REF_UNKNOWN,
    SIZE_DIVISOR,
    ZOOM_EXPAND_RATIO,
    ZOOM_MIN_SIZE,
)

__all__ = [
    "MERGE_TABLE",
    "Click",
    "add_click",
    "clicks_to_ref_label",
    "initial_ref_label",
    "merge_ref_labels",
    "update_ref_label_with_prediction",
    "zoom_roi",
]


@dataclass(frozen=True)
class Click:
    """One click at integer pixel (y, x); positive = "this is the object"."""

    y: int
    x: int
    is_positive: bool


def check_click(click: Click, height: int, width: int) -> None:
    if not (0 <= click.y < height and 0 <= click.x < width):
        raise ValueError(f"click {click} lies outside a {height}x{width} image")


def _build_merge_table() -> np.ndarray:
    """MERGE_TABLE[previous, new] per official ``update_ref_label`` (see ``merge_ref_labels``)."""
    # A "possibly" code moves an unknown pixel towards itself and its opposite back to unknown.
    soft_moves = {
        REF_POSSIBLY_BACKGROUND: {REF_UNKNOWN: REF_POSSIBLY_BACKGROUND, REF_POSSIBLY_FOREGROUND: REF_UNKNOWN},
        REF_POSSIBLY_FOREGROUND: {REF_UNKNOWN: REF_POSSIBLY_FOREGROUND, REF_POSSIBLY_BACKGROUND: REF_UNKNOWN},
    }
    table = np.empty((NUM_REF_LABELS, NUM_REF_LABELS), dtype=np.uint8)
    for prev in range(NUM_REF_LABELS):
        for new in range(NUM_REF_LABELS):
            if new in (REF_BACKGROUND, REF_FOREGROUND):
                table[prev, new] = new  # definite codes overwrite
            else:  # unknown (2) changes nothing
                table[prev, new] = soft_moves.get(new, {}).get(prev, prev)
    table.setflags(write=False)
    return table


#: (5, 5) uint8 lookup table: ``MERGE_TABLE[previous, new]`` is the merged code.
MERGE_TABLE: np.ndarray = _build_merge_table()


def initial_ref_label(shape: tuple[int, int]) -> np.ndarray:
    """The reference label before any click: (H, W) uint8 filled with ``REF_UNKNOWN`` (2)."""
    return np.full(shape, REF_UNKNOWN, dtype=np.uint8)


def _disk_union(points: list[tuple[int, int]], shape: tuple[int, int], radius: float) -> np.ndarray:
    """(H, W) bool: pixels whose distance to the nearest point is <= radius.

    The distance is compared as the official code does: float32 sqrt of the exact squared distance
    (what ``cv2.distanceTransform`` precise L2 returns) against the radius cast to float32.
    """
    h, w = shape
    out = np.zeros(shape, dtype=bool)
    r32 = np.float32(radius)
    if not r32 >= 0:  # negative or NaN radius: no pixel qualifies (the clicked pixel has distance 0)
        return out
    reach = int(min(np.ceil(r32), h + w)) + 1
    for y, x in points:
        y0, y1 = max(y - reach, 0), min(y + reach + 1, h)
        x0, x1 = max(x - reach, 0), min(x + reach + 1, w)
        dy = np.arange(y0, y1) - y
        dx = np.arange(x0, x1) - x
        d2 = (dy[:, None] ** 2 + dx[None, :] ** 2).astype(np.float32)
        out[y0:y1, x0:x1] |= np.sqrt(d2) <= r32
    return out


def clicks_to_ref_label(
    clicks: Sequence[Click],
    shape: tuple[int, int],
    inner_radius: float = CLICK_INNER_RADIUS,
    outer_radius: float = CLICK_OUTER_RADIUS,
) -> np.ndarray:
    """The reference label of a set of clicks on their own (official ``points_to_ref_label``).

    Starting from all-unknown (2):

    * the outer disks (distance <= inner + outer radius) of positive clicks become 3 and of
      negative clicks 1; pixels inside outer disks of both kinds become 2;
    * the inner disks (distance <= inner radius) become 4 (positive) / 0 (negative), the two kinds
      written in the order of their first appearance in ``clicks``, so where a positive and a
      negative inner disk overlap, the kind that appeared later wins.

    Distances are exact Euclidean distances to the nearest click of the same kind.

    Args:
        clicks: the clicks, in the order they were made; each must lie inside ``shape``.
        shape: (H, W) of the label.
        inner_radius, outer_radius: radii in pixels (official defaults 5 and 0).

    Returns:
        (H, W) uint8 reference label with codes 0..4.
    """
    h, w = shape
    label = initial_ref_label((h, w))
    if not clicks:
        return label
    points: dict[bool, list[tuple[int, int]]] = {}  # insertion order = order of first appearance
    for click in clicks:
        check_click(click, h, w)
        points.setdefault(bool(click.is_positive), []).append((int(click.y), int(click.x)))

    outer = {pos: _disk_union(pts, (h, w), inner_radius + outer_radius) for pos, pts in points.items()}
    for pos, mask in outer.items():
        label[mask] = REF_POSSIBLY_FOREGROUND if pos else REF_POSSIBLY_BACKGROUND
    if len(outer) == 2:
        label[outer[True] & outer[False]] = REF_UNKNOWN
    for pos, pts in points.items():
        label[_disk_union(pts, (h, w), inner_radius)] = REF_FOREGROUND if pos else REF_BACKGROUND
    return label


def merge_ref_labels(previous: ArrayLike, new: ArrayLike) -> np.ndarray:
    """Merge a new click label into the running reference label (official ``update_ref_label``).

    Per pixel, by the new code: 0 and 4 overwrite; 2 keeps the previous code; 1 turns a previous
    2 into 1 and 3 into 2 (0, 1, 4 stay); 3 turns a previous 2 into 3 and 1 into 2 (0, 3, 4 stay).
    The full table is ``MERGE_TABLE[previous, new]``.

    Args:
        previous, new: (H, W) integer maps with codes 0..4 (same shape).

    Returns:
        (H, W) uint8 merged label (a new array).
    """
    prev = np.asarray(previous)
    new_arr = np.asarray(new)
    if prev.shape != new_arr.shape:
        raise ValueError(f"shape mismatch: {prev.shape} vs {new_arr.shape}")
    prev_idx = prev.astype(np.intp, copy=False)
    new_idx = new_arr.astype(np.intp, copy=False)
    if prev_idx.size and (
        min(prev_idx.min(), new_idx.min()) < 0 or max(prev_idx.max(), new_idx.max()) >= NUM_REF_LABELS
    ):
        raise ValueError(f"reference labels must hold codes 0..{NUM_REF_LABELS - 1}")
    return MERGE_TABLE[prev_idx, new_idx]


def add_click(
    ref_label: ArrayLike,
    click: Click,
    inner_radius: float = CLICK_INNER_RADIUS,
    outer_radius: float = CLICK_OUTER_RADIUS,
) -> np.ndarray:
    """Add one click: build its own label (``clicks_to_ref_label([click])``) and merge it in.

    Args:
        ref_label: (H, W) running reference label, codes 0..4.
        click: the new click (inside the image).

    Returns:
        (H, W) uint8 updated reference label (a new array).
    """
    ref = np.asarray(ref_label)
    if ref.ndim != 2:
        raise ValueError(f"expected an (H, W) reference label, got shape {ref.shape}")
    new = clicks_to_ref_label([click], (ref.shape[0], ref.shape[1]), inner_radius, outer_radius)
    return merge_ref_labels(ref, new)


def update_ref_label_with_prediction(ref_label: ArrayLike, pred_mask: ArrayLike) -> np.ndarray:
    """Fold a prediction into the reference label (official ``update_ref_label_by_prediction``).

    The official code applies the "possibly foreground" update on ``pred == 1`` and then the
    "possibly background" update on ``pred == 0``. Per pixel that is: where pred == 1, 2 -> 3 and
    1 -> 2; where pred == 0, 2 -> 1 and 3 -> 2; 0 and 4 never change, nor does any pixel whose
    prediction is neither 0 nor 1.

    Args:
        ref_label: (H, W) integer map with codes 0..4.
        pred_mask: (H, W) integer/bool prediction (1 = object, 0 = background).

    Returns:
        (H, W) uint8 updated reference label (a new array).
    """
    # The same table as merging a 3/1/2 label, written as uint8 arithmetic: it runs once per click on the
    # whole canvas, where the table's 64-bit index arrays cost 5-7 ms at 512x512 against 0.2 ms.
    ref = np.asarray(ref_label)
    pred = np.asarray(pred_mask)
    if ref.shape != pred.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {pred.shape}")
    if ref.size and (ref.min() < 0 or ref.max() >= NUM_REF_LABELS):
        raise ValueError(f"reference labels must hold codes 0..{NUM_REF_LABELS - 1}")
    ref = ref.astype(np.uint8, copy=False)
    # (ref - k) <= 1 in wrapping uint8 arithmetic selects the codes k and k + 1.
    raised = (pred == 1) & ((ref - np.uint8(REF_POSSIBLY_BACKGROUND)) <= 1)  # 1 -> 2, 2 -> 3
    lowered = (pred == 0) & ((ref - np.uint8(REF_UNKNOWN)) <= 1)  # 2 -> 1, 3 -> 2
    return ref + raised.view(np.uint8) - lowered.view(np.uint8)


def _round_f32(value: np.float32) -> int:
    """torch.round on a float32 value: round half to even."""
    return int(np.rint(value))


def zoom_roi(
    pred_mask: ArrayLike,
    ref_label: ArrayLike,
    expand_ratio: float = ZOOM_EXPAND_RATIO,
    min_size: int = ZOOM_MIN_SIZE,
    stride: int = SIZE_DIVISOR,
) -> tuple[int, int, int, int]:
    """The zoom-in region (official ``ClickSegmentorZoomIn.get_roi``).

    1. Bounding box of ``(pred == 1) | (ref == 0) | (ref == 4)``, right/bottom exclusive; the whole
       image if that mask is empty.
    2. ``expand_bbox``: each side moved away from the box centre by ``expand_ratio`` and rounded
       half-to-even (in float32, as the official torch code), then clipped to the image; then, if
       ``min_size > 0``, each side is pushed out to at least ``centre -/+ min_size / 2`` (rounded
       half-to-even, clipped).
    3. left/up floored and right/bottom ceiled to multiples of ``stride``. There is no clipping
       after this step: for an (H, W) that is a multiple of ``stride`` (the padded image the model
       sees, as in the official demo) the roi stays inside the image, otherwise right/bottom may
       reach the next multiple of ``stride``.

    The caller passes the previous prediction and the reference label that already contains the
    new click (the official order).

    Args:
        pred_mask: (H, W) prediction (1 = object).
        ref_label: (H, W) reference label, codes 0..4.
        expand_ratio: expansion of the box about its centre (demo: 1.4).
        min_size: minimum side before snapping (demo: 32).
        stride: snapping grid, the largest feature stride (32).

    Returns:
        (left, up, right, bottom) Python ints, right/bottom exclusive.
    """
    pred = np.asarray(pred_mask)
    ref = np.asarray(ref_label)
    if pred.shape != ref.shape or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) maps of one shape, got {pred.shape} and {ref.shape}")
    height, width = pred.shape
    mask = (pred == 1) | (ref == REF_FOREGROUND) | (ref == REF_BACKGROUND)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        box = (0, 0, width, height)
    else:
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)

    f32 = np.float32
    ratio = f32(expand_ratio)  # torch multiplies a float32 tensor by the Python scalar in float32
    left, up, right, bottom = (f32(v) for v in box)
    xc, yc = (left + right) / f32(2.0), (up + bottom) / f32(2.0)
    new_left = max(_round_f32(xc - ratio * (xc - left)), 0)
    new_right = min(_round_f32(xc - ratio * (xc - right)), width)
    new_up = max(_round_f32(yc - ratio * (yc - up)), 0)
    new_bottom = min(_round_f32(yc - ratio * (yc - bottom)), height)
    if min_size > 0:
        half = f32(min_size / 2.0)
        new_left = min(new_left, max(_round_f32(xc - half), 0))
        new_right = max(new_right, min(_round_f32(xc + half), width))
        new_up = min(new_up, max(_round_f32(yc - half), 0))
        new_bottom = max(new_bottom, min(_round_f32(yc + half), height))

    def floor_to(v: int) -> int:
        return (v // stride) * stride

    def ceil_to(v: int) -> int:
        return -((-v) // stride) * stride

    return floor_to(new_left), floor_to(new_up), ceil_to(new_right), ceil_to(new_bottom)
