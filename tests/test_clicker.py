"""Behaviour tests of the automatic clicker (core/clicker.py) against an independent restatement with scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from interformer_edge.core.clicker import click_candidates, next_click
from interformer_edge.core.clicks import Click


def _official_candidates(pred, gt, clicks):
    """Independent restatement with scipy: returns (candidate mask, is_positive) or None."""
    pred, gt = pred == 1, gt == 1
    ignore = np.zeros_like(pred)
    for c in clicks:
        ignore[c.y, c.x] = True
    fn = ~pred & gt & ~ignore
    fp = pred & ~gt & ~ignore
    nd = distance_transform_edt(np.pad(fn, 1))[1:-1, 1:-1].astype(np.float32)
    pd = distance_transform_edt(np.pad(fp, 1))[1:-1, 1:-1].astype(np.float32)
    if nd.max() == 0 and pd.max() == 0:
        return None
    if nd.max() > pd.max():
        return nd == nd.max(), True
    return pd == pd.max(), False


def test_clicker_perfect_prediction_gives_none() -> None:
    gt = np.zeros((20, 20), np.uint8)
    gt[5:10, 5:10] = 1
    assert next_click(gt, gt, []) is None
    assert click_candidates(gt, gt, []) is None
    assert next_click(np.zeros((8, 8)), np.zeros((8, 8))) is None


def test_clicker_first_click_is_central_and_positive() -> None:
    gt = np.zeros((40, 40), np.uint8)
    gt[10:21, 5:16] = 1  # 11x11 square, centre (15, 10)
    click = next_click(np.zeros_like(gt), gt, [])
    assert click == Click(15, 10, True)
    # Whole image is object: border counts as outside, so the centre wins (4x4: 4 ties, first in row-major).
    assert next_click(np.zeros((5, 5)), np.ones((5, 5))) == Click(2, 2, True)
    cands, positive = click_candidates(np.zeros((4, 4)), np.ones((4, 4)))
    assert positive
    np.testing.assert_array_equal(np.argwhere(cands), [[1, 1], [1, 2], [2, 1], [2, 2]])
    assert next_click(np.zeros((4, 4)), np.ones((4, 4))) == Click(1, 1, True)


def test_clicker_tie_is_negative() -> None:
    gt = np.zeros((30, 30), np.uint8)
    pred = np.zeros((30, 30), np.uint8)
    gt[2:7, 2:7] = 1  # false negative 5x5
    pred[20:25, 20:25] = 1  # false positive 5x5, same max distance
    click = next_click(pred, gt, [])
    assert click is not None and not click.is_positive
    assert 20 <= click.y < 25 and 20 <= click.x < 25
    pred[20:25, 20] = 0  # false positive now 5x4: smaller, so the false negative wins
    click = next_click(pred, gt, [])
    assert click is not None and click.is_positive and click == Click(4, 4, True)


def test_clicker_ignores_only_the_clicked_pixel() -> None:
    gt = np.zeros((9, 9), np.uint8)
    gt[1:8, 1:8] = 1
    pred = np.zeros_like(gt)
    first = next_click(pred, gt, [])
    assert first == Click(4, 4, True)
    second = next_click(pred, gt, [first])
    # The click's disk is not removed, only the pixel: the next pick is still near the centre.
    assert second is not None and second != first and second.is_positive
    assert max(abs(second.y - 4), abs(second.x - 4)) <= 2


def test_clicker_never_repeats_and_stays_in_error_region() -> None:
    rng = np.random.default_rng(21)
    for _ in range(20):
        gt = (rng.random((24, 24)) < 0.5).astype(np.uint8)
        pred = (rng.random((24, 24)) < 0.5).astype(np.uint8)
        clicks: list[Click] = []
        for _ in range(40):
            click = next_click(pred, gt, clicks)
            expected = _official_candidates(pred, gt, clicks)
            if click is None:
                assert expected is None
                break
            cands, positive = expected
            assert cands[click.y, click.x] and click.is_positive == positive
            assert (click.y, click.x) not in {(c.y, c.x) for c in clicks}
            if click.is_positive:
                assert gt[click.y, click.x] == 1 and pred[click.y, click.x] == 0
            else:
                assert gt[click.y, click.x] == 0 and pred[click.y, click.x] == 1
            clicks.append(click)


def test_clicker_runs_out_of_errors() -> None:
    gt = np.zeros((6, 6), np.uint8)
    gt[2, 1:4] = 1  # three false-negative pixels
    pred = np.zeros_like(gt)
    clicks: list[Click] = []
    while (c := next_click(pred, gt, clicks)) is not None:
        clicks.append(c)
        assert len(clicks) <= 3
    assert sorted((c.y, c.x) for c in clicks) == [(2, 1), (2, 2), (2, 3)]


def test_candidates_match_restated_official_rule_on_random_maps() -> None:
    rng = np.random.default_rng(99)
    yy, xx = np.mgrid[:96, :128]
    for _ in range(30):
        cy, cx, r = rng.integers(10, 90), rng.integers(10, 120), rng.integers(5, 40)
        gt = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        pred = np.roll(gt, (int(rng.integers(-8, 9)), int(rng.integers(-8, 9))), axis=(0, 1))
        clicks = [Click(int(rng.integers(96)), int(rng.integers(128)), True) for _ in range(3)]
        got = click_candidates(pred, gt, clicks)
        expected = _official_candidates(pred, gt, clicks)
        if expected is None:
            assert got is None
            continue
        assert got is not None
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1] == expected[1]
        click = next_click(pred, gt, clicks)
        first = np.argwhere(expected[0])[0]
        assert click == Click(int(first[0]), int(first[1]), expected[1])


def test_clicker_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        next_click(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        next_click(np.zeros((4, 4)), np.ones((4, 4)), [Click(4, 0, True)])
