"""Exact Euclidean distance transform in pure numpy (no scipy, no cv2: it runs on a Raspberry Pi).

The official code uses ``cv2.distanceTransform(mask, cv2.DIST_L2, 0)`` (the "precise" Felzenszwalb
transform, float32 output). This module computes the same quantity exactly, in integers:

1. along each column, the distance to the nearest zero above/below, from cumulative index scans;
2. along each row, the exact ``min over x' of g(x')**2 + (x - x')**2`` by sweeping the offset
   ``k = |x - x'|`` upwards and stopping as soon as ``k**2`` reaches the largest value still open
   (no farther column can then improve any pixel).

The sweep costs one pass over the image per offset, so the run time grows with the largest distance
in the image (not with its area squared).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["distance_to_nearest_zero", "squared_distance_to_nearest_zero"]

# Returned by ``squared_distance_to_nearest_zero`` where no zero pixel exists at all.
NO_ZERO: int = -1


def squared_distance_to_nearest_zero(mask: ArrayLike, pad_border: bool = False) -> np.ndarray:
    """Exact squared Euclidean distance from every pixel to the nearest zero pixel.

    Args:
        mask: (H, W) array of any dtype; pixels equal to 0 are the zeros ("background"),
            every other value is foreground.
        pad_border: treat the ring just outside the image as zeros (the official
            ``mask_to_distance(mask, boundary_padding=True)``), so a foreground pixel on the border
            is at distance 1.

    Returns:
        (H, W) int64 array of squared distances (0 on zero pixels). If the mask has no zero pixel
        at all (only possible with ``pad_border=False``), every entry is ``NO_ZERO`` (-1).
    """
    feat = np.asarray(mask) != 0
    if feat.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {feat.shape}")
    if pad_border:
        feat = np.pad(feat, 1)
    h, w = feat.shape
    if feat.size == 0 or feat.all():
        out = np.full((h, w), NO_ZERO, dtype=np.int64)
        return out[1:-1, 1:-1] if pad_border else out

    big = h + w  # larger than any vertical distance inside the image
    # Integers stay exact; int32 is enough (and faster) unless the image is enormous.
    dtype = np.int32 if 2 * big * big < np.iinfo(np.int32).max else np.int64

    # Pass 1: vertical distance to the nearest zero in the same column (``big`` if none).
    rows = np.arange(h, dtype=dtype)[:, None]
    above = np.maximum.accumulate(np.where(feat, dtype(-big), rows), axis=0)
    below = np.minimum.accumulate(np.where(feat, dtype(h - 1 + big), rows)[::-1], axis=0)[::-1]
    g = np.minimum(np.minimum(rows - above, below - rows), dtype(big))
    g2 = g * g

    # Pass 2: exact lower envelope along rows, sweeping the horizontal offset k.
    d2 = g2.copy()
    active = np.flatnonzero(d2.max(axis=1) > 1)  # rows that an offset k >= 1 may still improve
    k = 1
    while k < w and active.size:
        sub_g2 = g2[active]
        sub_d2 = d2[active]
        # Keep working on the same row subset until a quarter of it has finished.
        while k < w:
            kk = k * k
            np.minimum(sub_d2[:, k:], sub_g2[:, :-k] + dtype(kk), out=sub_d2[:, k:])
            np.minimum(sub_d2[:, :-k], sub_g2[:, k:] + dtype(kk), out=sub_d2[:, :-k])
            k += 1
            open_rows = sub_d2.max(axis=1) > k * k  # rows an offset >= k could still lower
            if not open_rows.all() and open_rows.sum() * 4 <= open_rows.size * 3:
                break
        d2[active] = sub_d2
        active = active[open_rows]

    out = d2.astype(np.int64)
    if pad_border:
        out = out[1:-1, 1:-1]
    return out


def distance_to_nearest_zero(mask: ArrayLike, pad_border: bool = False) -> np.ndarray:
    """Exact Euclidean distance to the nearest zero pixel, as float32 like ``cv2.distanceTransform``.

    Each value is the correctly rounded float32 square root of an exact integer squared distance,
    which is what OpenCV's precise (``maskSize=0``) L2 transform returns for images up to roughly
    2000 pixels a side (its float32 envelope arithmetic is exact there).

    Args:
        mask: (H, W) array; 0 = zero pixel, anything else = foreground.
        pad_border: treat the outside of the image as zeros (see ``squared_distance_to_nearest_zero``).

    Returns:
        (H, W) float32 distances; ``inf`` everywhere if the mask has no zero pixel.
    """
    d2 = squared_distance_to_nearest_zero(mask, pad_border)
    if d2.size and d2.flat[0] == NO_ZERO:
        return np.full(d2.shape, np.inf, dtype=np.float32)
    return np.sqrt(d2.astype(np.float32))
