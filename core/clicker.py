"""The automatic clicker of InterFormer's evaluation and training protocol: where the next click goes.

Given a prediction and the ground truth, the next click lies in the larger error region (false
negatives: a positive click; false positives: a negative one), at a pixel farthest from that region's
border, as the official code does (``interformer/utils/click.py``; exact Euclidean distances). Ties
are broken deterministically (:func:`next_click`) or at random among near-maximal pixels for training
and calibration (:func:`random_click`). The reference-label side of a click is in :mod:`.clicks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .clicks import Click, check_click
from .distance import distance_to_nearest_zero

__all__ = ["TRAIN_FIRST_CLICK_INNER_K", "TRAIN_LATER_CLICK_INNER_K", "click_candidates", "next_click", "random_click"]

# float32 machine epsilon (torch.finfo(torch.float).eps): the official clicker's threshold is
# max / (sfc_inner_k + eps).
_F32_EPS = float(np.finfo(np.float32).eps)


def _error_distances(
    pred_mask: ArrayLike, gt_mask: ArrayLike, previous_clicks: Sequence[Click]
) -> tuple[np.ndarray, np.ndarray]:
    """(false-negative, false-positive) float32 (H, W) distance maps of the official clicker."""
    pred = np.asarray(pred_mask) == 1
    gt = np.asarray(gt_mask) == 1
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) masks of one shape, got {pred.shape} and {gt.shape}")
    clicked = np.zeros(pred.shape, dtype=bool)
    for click in previous_clicks:
        check_click(click, *pred.shape)
        clicked[click.y, click.x] = True  # only the clicked pixel itself, not its disk
    fneg = ~pred & gt & ~clicked
    fpos = pred & ~gt & ~clicked
    return distance_to_nearest_zero(fneg, pad_border=True), distance_to_nearest_zero(fpos, pad_border=True)


def click_candidates(
    pred_mask: ArrayLike,
    gt_mask: ArrayLike,
    previous_clicks: Sequence[Click] = (),
    sfc_inner_k: float = 1.0,
) -> tuple[np.ndarray, bool] | None:
    """The pixels the official clicker (``utils.click``) chooses among.

    * Error maps: false negatives ``(pred != 1) & (gt == 1)`` and false positives
      ``(pred == 1) & (gt != 1)``, each without the previously clicked pixels (just those pixels).
    * Each error map's distance to its nearest non-error pixel, with the outside of the image
      counting as non-error (one pixel of zero padding), in float32.
    * No click if both maxima are 0. Positive only if the false-negative maximum is strictly larger;
      a tie gives a negative click.
    * Candidates: pixels whose distance exceeds ``max / (sfc_inner_k + float32 eps)``. With the
      evaluation value ``sfc_inner_k=1`` these are the pixels at the maximum distance (exactly so
      for images up to about 2000 pixels a side). Training uses 1.7 (the inner part of the error
      region); a negative value gives the whole error region.

    Args:
        pred_mask: (H, W) current prediction (1 = object; any other value = not object).
        gt_mask: (H, W) ground truth (1 = object; any other value = not object).
        previous_clicks: clicks made so far (all must lie inside the image).
        sfc_inner_k: >= 1 or negative (the official code rejects values in [0, 1)).

    Returns:
        ``(candidates, is_positive)`` with ``candidates`` an (H, W) bool mask (at least one True),
        or ``None`` when the official clicker makes no click.
    """
    if sfc_inner_k >= 1.0:
        scale = 1.0 / (sfc_inner_k + _F32_EPS)
    elif sfc_inner_k < 0.0:
        scale = 0.0
    else:
        raise ValueError(f"sfc_inner_k must be >= 1 or negative, got {sfc_inner_k}")
    ndist, pdist = _error_distances(pred_mask, gt_mask, previous_clicks)
    ndmax, pdmax = ndist.max(initial=np.float32(0)), pdist.max(initial=np.float32(0))
    if ndmax == 0 and pdmax == 0:
        return None
    is_positive = bool(ndmax > pdmax)
    dist, dmax = (ndist, ndmax) if is_positive else (pdist, pdmax)
    # float32 distances against a threshold rounded to float32, as numpy does in the official code.
    candidates = dist > np.float32(float(dmax) * scale)
    return candidates, is_positive


# The official training clicker: the first click aims at the object's centre, later ones anywhere in
# the inner part (distance > max / 1.7) of the largest error region.
TRAIN_FIRST_CLICK_INNER_K = 1.0
TRAIN_LATER_CLICK_INNER_K = 1.7


def random_click(
    pred_mask: ArrayLike,
    gt_mask: ArrayLike,
    previous_clicks: Sequence[Click],
    sfc_inner_k: float,
    rng: np.random.Generator,
) -> Click | None:
    """A click drawn uniformly among the official clicker's candidates (``click_candidates``), as the
    official training does; ``None`` when there is nothing to correct."""
    found = click_candidates(pred_mask, gt_mask, previous_clicks, sfc_inner_k)
    if found is None:
        return None
    candidates, is_positive = found
    ys, xs = np.nonzero(candidates)
    pick = int(rng.integers(len(ys)))
    return Click(int(ys[pick]), int(xs[pick]), is_positive)


def next_click(
    pred_mask: ArrayLike,
    gt_mask: ArrayLike,
    previous_clicks: Sequence[Click] = (),
    sfc_inner_k: float = 1.0,
) -> Click | None:
    """The official evaluation clicker, made deterministic.

    Same decision as ``click_candidates`` (which documents the rules). The official code draws one
    candidate at random (``random.choice``); this port takes the first candidate in row-major order
    (smallest y, then smallest x), the convention of the RITM / SimpleClick evaluation clickers.

    Args:
        pred_mask: (H, W) current prediction (1 = object).
        gt_mask: (H, W) ground truth (1 = object).
        previous_clicks: clicks made so far.
        sfc_inner_k: candidate-region factor, see ``click_candidates`` (evaluation: 1).

    Returns:
        The next ``Click``, or ``None`` when there is nothing left to correct (both error maps empty
        after removing the clicked pixels). Never a previously clicked pixel.
    """
    found = click_candidates(pred_mask, gt_mask, previous_clicks, sfc_inner_k)
    if found is None:
        return None
    candidates, is_positive = found
    index = int(np.argmax(candidates))  # first True in row-major order
    y, x = divmod(index, candidates.shape[1])
    return Click(y=y, x=x, is_positive=is_positive)
