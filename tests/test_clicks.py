"""Behaviour tests of the numpy click encoding (core/clicks.py, core/distance.py).

scipy is used here only as an independent reference; the runtime itself is numpy-only.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from interformer_edge.core import spec
from interformer_edge.core.clicks import (
    MERGE_TABLE,
    Click,
    add_click,
    clicks_to_ref_label,
    initial_ref_label,
    merge_ref_labels,
    update_ref_label_with_prediction,
    zoom_roi,
)
from interformer_edge.core.distance import distance_to_nearest_zero, squared_distance_to_nearest_zero

BG, PBG, UNK, PFG, FG = 0, 1, 2, 3, 4


# ----------------------------------------------------------------------------- distance transform


def _scipy_sq(mask: np.ndarray, pad: bool) -> np.ndarray:
    m = np.pad(mask != 0, 1) if pad else mask != 0
    d = distance_transform_edt(m)
    d2 = np.rint(d.astype(np.float64) ** 2).astype(np.int64)
    return d2[1:-1, 1:-1] if pad else d2


@pytest.mark.parametrize("pad", [False, True])
def test_edt_matches_scipy_on_random_masks(pad: bool) -> None:
    rng = np.random.default_rng(1234)
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(1, 48, size=2))
        mask = rng.random((h, w)) < rng.choice([0.05, 0.5, 0.9, 0.99, 1.0])
        if not pad and mask.all():
            continue  # no zero pixel: covered by test_edt_without_any_zero
        np.testing.assert_array_equal(squared_distance_to_nearest_zero(mask, pad), _scipy_sq(mask, pad))


@pytest.mark.parametrize("pad", [False, True])
def test_edt_matches_scipy_on_large_shapes(pad: bool) -> None:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:300, :257]
    blobs = ((yy - 150) ** 2 / 120**2 + (xx - 100) ** 2 / 90**2) < 1
    sparse_zeros = rng.random((300, 257)) > 0.0005
    one_zero = np.ones((300, 257), bool)
    one_zero[299, 0] = False
    for mask in (blobs, ~blobs, sparse_zeros, one_zero, blobs & sparse_zeros):
        d2 = squared_distance_to_nearest_zero(mask, pad)
        np.testing.assert_array_equal(d2, _scipy_sq(mask, pad))
        d = distance_to_nearest_zero(mask, pad)
        assert d.dtype == np.float32
        np.testing.assert_array_equal(d, np.sqrt(d2.astype(np.float32)))


def test_edt_all_zero_and_border_cases() -> None:
    zeros = np.zeros((5, 7), np.uint8)
    assert not distance_to_nearest_zero(zeros).any()
    assert not distance_to_nearest_zero(zeros, pad_border=True).any()

    ones = np.ones((5, 7), bool)
    # With padding the nearest zero is outside the image: distance to the closest border + 1.
    yy, xx = np.mgrid[:5, :7]
    to_border = np.minimum.reduce([yy + 1, 5 - yy, xx + 1, 7 - xx]).astype(np.float32)
    np.testing.assert_array_equal(distance_to_nearest_zero(ones, pad_border=True), to_border)

    corner = np.ones((4, 4), bool)
    corner[0, 0] = False
    expected = np.sqrt((yy[:4, :4] ** 2 + xx[:4, :4] ** 2).astype(np.float32))
    np.testing.assert_array_equal(distance_to_nearest_zero(corner), expected)

    row = np.array([[1, 1, 0, 1, 1, 1]])
    np.testing.assert_array_equal(squared_distance_to_nearest_zero(row), [[4, 1, 0, 1, 4, 9]])
    np.testing.assert_array_equal(squared_distance_to_nearest_zero(row, True), [[1, 1, 0, 1, 1, 1]])
    col = row.T
    np.testing.assert_array_equal(squared_distance_to_nearest_zero(col), [[4], [1], [0], [1], [4], [9]])


def test_edt_without_any_zero() -> None:
    ones = np.ones((3, 4), bool)
    assert np.isinf(distance_to_nearest_zero(ones)).all()
    assert (squared_distance_to_nearest_zero(ones) == -1).all()


# ----------------------------------------------------------------------------- reference labels


def _reference_points_to_ref_label(clicks: list[Click], shape: tuple[int, int], inner: float, outer: float):
    """Straight re-statement of the official algorithm (one global transform per mode, scipy EDT)."""
    label = np.full(shape, UNK, np.uint8)
    if not clicks:
        return label
    modes: dict[bool, np.ndarray] = {}
    for c in clicks:
        m = modes.setdefault(c.is_positive, np.ones(shape, bool))
        m[c.y, c.x] = False
    dists = {k: distance_transform_edt(m).astype(np.float32) for k, m in modes.items()}
    outer_masks = {k: d <= np.float32(inner + outer) for k, d in dists.items()}
    for k, m in outer_masks.items():
        label[m] = PFG if k else PBG
    if len(outer_masks) == 2:
        label[outer_masks[True] & outer_masks[False]] = UNK
    for k, d in dists.items():
        label[d <= np.float32(inner)] = FG if k else BG
    return label


def test_single_click_disk_has_81_pixels() -> None:
    label = clicks_to_ref_label([Click(20, 20, True)], (41, 41), inner_radius=5, outer_radius=0)
    assert label.dtype == np.uint8 and label.shape == (41, 41)
    count = sum(1 for y in range(-5, 6) for x in range(-5, 6) if y * y + x * x <= 25)
    assert count == 81
    assert (label == FG).sum() == 81
    assert set(np.unique(label)) == {UNK, FG}
    # The disk's extremes: (15, 20) and (20, 25) are in, (16, 16) (distance^2 = 32) is out.
    assert label[15, 20] == FG and label[20, 25] == FG and label[16, 16] == UNK and label[17, 16] == FG

    neg = clicks_to_ref_label([Click(20, 20, False)], (41, 41))
    assert (neg == BG).sum() == 81 and set(np.unique(neg)) == {BG, UNK}


def test_disk_clipped_at_image_corner() -> None:
    label = clicks_to_ref_label([Click(0, 0, True)], (30, 30))
    assert (label == FG).sum() == sum(1 for y in range(6) for x in range(6) if y * y + x * x <= 25)


def test_outer_ring() -> None:
    label = clicks_to_ref_label([Click(20, 20, True)], (41, 41), inner_radius=5, outer_radius=3)
    yy, xx = np.mgrid[:41, :41]
    d2 = (yy - 20) ** 2 + (xx - 20) ** 2
    np.testing.assert_array_equal(label == FG, d2 <= 25)
    np.testing.assert_array_equal(label == PFG, (d2 > 25) & (d2 <= 64))
    neg = clicks_to_ref_label([Click(20, 20, False)], (41, 41), inner_radius=5, outer_radius=3)
    np.testing.assert_array_equal(neg == PBG, (d2 > 25) & (d2 <= 64))


def test_overlap_later_mode_wins() -> None:
    pos, neg = Click(10, 10, True), Click(10, 16, False)  # disks overlap on x in 11..15
    a = clicks_to_ref_label([pos, neg], (21, 30))
    b = clicks_to_ref_label([neg, pos], (21, 30))
    assert a[10, 13] == BG and b[10, 13] == FG
    assert a[10, 5] == FG and a[10, 21] == BG  # far sides untouched by the other disk
    # Order of *first appearance* of each mode, not of the last click: pos, neg, pos -> neg still wins.
    c = clicks_to_ref_label([pos, neg, Click(10, 11, True)], (21, 30))
    assert c[10, 13] == BG


def test_outer_rings_of_both_kinds_become_unknown() -> None:
    pos, neg = Click(10, 5, True), Click(10, 20, False)  # 15 apart: inner disks (5) apart, rings (8) overlap
    label = clicks_to_ref_label([pos, neg], (21, 30), inner_radius=5, outer_radius=3)
    assert label[10, 12] == UNK and label[10, 13] == UNK  # within 8 of both
    assert label[10, 11] == PFG  # 6 from pos, 9 from neg
    assert label[10, 14] == PBG  # 9 from pos, 6 from neg
    assert label[10, 10] == FG and label[10, 15] == BG


def test_clicks_to_ref_label_matches_restated_official_algorithm() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(8, 60, size=2))
        n = int(rng.integers(1, 8))
        clicks = [Click(int(rng.integers(h)), int(rng.integers(w)), bool(rng.random() < 0.5)) for _ in range(n)]
        inner = float(rng.choice([3, 5, 5.5, 7]))
        outer = float(rng.choice([0, 2, 4.5]))
        got = clicks_to_ref_label(clicks, (h, w), inner, outer)
        np.testing.assert_array_equal(got, _reference_points_to_ref_label(clicks, (h, w), inner, outer))


def test_no_clicks_and_out_of_bounds() -> None:
    np.testing.assert_array_equal(clicks_to_ref_label([], (3, 4)), np.full((3, 4), UNK))
    with pytest.raises(ValueError):
        clicks_to_ref_label([Click(3, 0, True)], (3, 4))
    with pytest.raises(ValueError):
        clicks_to_ref_label([Click(-1, 0, True)], (3, 4))


# ----------------------------------------------------------------------------- merge / updates

# EXPECTED_MERGE[previous][new], written out from the official update_ref_label:
# new 0 / 4 overwrite, new 2 keeps, new 1: 2->1, 3->2; new 3: 2->3, 1->2.
EXPECTED_MERGE = [
    # new: 0  1  2  3  4
    [0, 0, 0, 0, 4],  # previous 0
    [0, 1, 1, 2, 4],  # previous 1
    [0, 1, 2, 3, 4],  # previous 2
    [0, 2, 3, 3, 4],  # previous 3
    [0, 4, 4, 4, 4],  # previous 4
]


def test_merge_table_all_pairs() -> None:
    np.testing.assert_array_equal(MERGE_TABLE, EXPECTED_MERGE)
    prev, new = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    merged = merge_ref_labels(prev.astype(np.uint8), new.astype(np.uint8))
    assert merged.dtype == np.uint8
    np.testing.assert_array_equal(merged, EXPECTED_MERGE)


def test_merge_accepts_float_labels_and_checks_shapes() -> None:
    np.testing.assert_array_equal(merge_ref_labels(np.full((2, 2), 2.0), np.full((2, 2), 3.0)), 3)
    with pytest.raises(ValueError):
        merge_ref_labels(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        merge_ref_labels(np.full((2, 2), -1), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        merge_ref_labels(np.zeros((2, 2)), np.full((2, 2), 5))


def test_add_click_is_build_then_merge() -> None:
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 5, size=(40, 50)).astype(np.uint8)
    click = Click(7, 45, True)
    got = add_click(ref, click, inner_radius=5, outer_radius=2)
    expected = merge_ref_labels(ref, clicks_to_ref_label([click], (40, 50), 5, 2))
    np.testing.assert_array_equal(got, expected)
    # On a fresh label the result is just the click's own label.
    fresh = add_click(initial_ref_label((40, 50)), click)
    np.testing.assert_array_equal(fresh, clicks_to_ref_label([click], (40, 50)))


def test_prediction_update_table() -> None:
    prev = np.array([[0, 1, 2, 3, 4]] * 2, np.uint8)
    pred = np.array([[1] * 5, [0] * 5])
    got = update_ref_label_with_prediction(prev, pred)
    np.testing.assert_array_equal(got, [[0, 2, 3, 3, 4], [0, 1, 1, 2, 4]])


def test_prediction_update_never_changes_definite_codes() -> None:
    rng = np.random.default_rng(11)
    ref = rng.integers(0, 5, size=(64, 64)).astype(np.uint8)
    for _ in range(5):
        pred = rng.integers(0, 2, size=(64, 64))
        new = update_ref_label_with_prediction(ref, pred)
        definite = (ref == BG) | (ref == FG)
        np.testing.assert_array_equal(new[definite], ref[definite])
        assert not ((new == BG) | (new == FG))[~definite].any()
        ref = new
    # Repeated foreground predictions walk 1 -> 2 -> 3 and stop there.
    r = np.array([[1]], np.uint8)
    steps = []
    for _ in range(3):
        r = update_ref_label_with_prediction(r, np.array([[1]]))
        steps.append(int(r[0, 0]))
    assert steps == [2, 3, 3]


# ----------------------------------------------------------------------------- zoom roi


def test_roi_hand_example() -> None:
    pred = np.zeros((256, 256), np.uint8)
    pred[100:180, 120:200] = 1
    ref = initial_ref_label((256, 256))
    # box (120, 100, 200, 180), centre (160, 140), half sides 40 -> 56: (104, 84, 216, 196) -> snap.
    assert zoom_roi(pred, ref, stride=1) == (104, 84, 216, 196)
    assert zoom_roi(pred, ref) == (96, 64, 224, 224)


def test_roi_min_size_rounds_half_to_even() -> None:
    pred = np.zeros((64, 64), np.uint8)
    pred[0, 10] = 1  # box (10, 0, 11, 1), centre (10.5, 0.5)
    # right: round(10.5 + 16) = round(26.5) = 26; bottom: round(16.5) = 16 (half to even).
    assert zoom_roi(pred, initial_ref_label((64, 64)), stride=1) == (0, 0, 26, 16)
    assert zoom_roi(pred, initial_ref_label((64, 64))) == (0, 0, 32, 32)


def test_roi_ratio_rounds_half_to_even() -> None:
    pred = np.zeros((64, 64), np.uint8)
    pred[20:22, 10:12] = 1  # box (10, 20, 12, 22), centre (11, 21): 11 -/+ 1.5 = 9.5 / 12.5
    assert zoom_roi(pred, initial_ref_label((64, 64)), expand_ratio=1.5, min_size=0, stride=1) == (
        10,
        20,
        12,
        22,
    )


def test_roi_uses_definite_reference_codes_only() -> None:
    pred = np.zeros((128, 128), np.uint8)
    ref = initial_ref_label((128, 128))
    assert zoom_roi(pred, ref) == (0, 0, 128, 128)  # empty -> whole image
    ref[5, 5] = PFG
    ref[120, 120] = PBG
    assert zoom_roi(pred, ref) == (0, 0, 128, 128)  # soft codes are ignored: still empty
    ref[70, 70] = BG
    assert zoom_roi(pred, ref) == (32, 32, 96, 96)
    ref[70, 70] = FG
    assert zoom_roi(pred, ref) == (32, 32, 96, 96)


def test_roi_invariants_random() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = 32 * int(rng.integers(1, 12)), 32 * int(rng.integers(1, 12))
        pred = np.zeros((h, w), np.uint8)
        ref = initial_ref_label((h, w))
        if rng.random() < 0.9:
            y0, x0 = int(rng.integers(h)), int(rng.integers(w))
            pred[y0 : y0 + int(rng.integers(1, h)), x0 : x0 + int(rng.integers(1, w))] = 1
        if rng.random() < 0.5:
            ref[int(rng.integers(h)), int(rng.integers(w))] = rng.choice([BG, FG])
        ratio = float(rng.choice([1.0, 1.4, 2.0]))
        left, up, right, bottom = zoom_roi(pred, ref, expand_ratio=ratio)
        assert all(isinstance(v, int) for v in (left, up, right, bottom))
        assert all(v % spec.SIZE_DIVISOR == 0 for v in (left, up, right, bottom))
        assert 0 <= left < right <= w and 0 <= up < bottom <= h
        assert right - left >= spec.ZOOM_MIN_SIZE and bottom - up >= spec.ZOOM_MIN_SIZE
        mask = (pred == 1) | (ref == BG) | (ref == FG)
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert left <= xs.min() and xs.max() < right and up <= ys.min() and ys.max() < bottom
        else:
            assert (left, up, right, bottom) == (0, 0, w, h)


def test_roi_size_not_multiple_of_stride_is_snapped_past_the_edge() -> None:
    # Official behaviour: no clipping after snapping, so an unpadded 50x50 map gives right = 64.
    pred = np.zeros((50, 50), np.uint8)
    pred[40:50, 40:50] = 1
    # box (40, 40, 50, 50) -> expanded (38, 38, 50, 50) after clipping; min size pushes left/up to 29.
    assert zoom_roi(pred, initial_ref_label((50, 50)), stride=1) == (29, 29, 50, 50)
    assert zoom_roi(pred, initial_ref_label((50, 50))) == (0, 0, 64, 64)
