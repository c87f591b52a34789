"""Scene layout: placing shapes in the frame and sampling a target with distractors above (occluding)
and below it, within the promised range of visible target area."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage as ndi

from .polygon_fill import fill_polygons
from .shapes import Shape, ellipse_outline, make_shape

# Promised range of the target's visible area as a fraction of the image area.
MIN_AREA_FRACTION: Final[float] = 0.03
MAX_AREA_FRACTION: Final[float] = 0.60
# Occluders may hide at most this share of the target (otherwise the "object" is just fragments).
_MIN_VISIBLE_SHARE: Final[float] = 0.45


def _place(shape: Shape, centre: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """Rasterise ``shape`` centred at ``centre`` (y, x) into a (H, W) bool mask (clipped)."""
    h, w = size
    if shape.bitmap is None:
        return fill_polygons([p + np.asarray(centre) for p in shape.polys], size)
    out = np.zeros(size, bool)
    bh, bw = shape.bitmap.shape
    y0, x0 = round(centre[0] - bh / 2), round(centre[1] - bw / 2)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + bh, h), min(x0 + bw, w)
    if ye > ys and xe > xs:
        out[ys:ye, xs:xe] = shape.bitmap[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


def _extent(shape: Shape) -> tuple[float, float, float, float]:
    """Bounding box (ymin, ymax, xmin, xmax) of ``shape`` relative to its placement centre."""
    if shape.bitmap is not None:
        bh, bw = shape.bitmap.shape
        return -bh / 2, bh / 2, -bw / 2, bw / 2
    pts = np.concatenate(shape.polys)
    return float(pts[:, 0].min()), float(pts[:, 0].max()), float(pts[:, 1].min()), float(pts[:, 1].max())


def _random_centre(
    rng: np.random.Generator, shape: Shape, size: tuple[int, int], near_border: bool
) -> tuple[float, float]:
    """Placement centre (y, x) for ``shape`` in a frame of ``size`` (H, W).

    Normally the whole shape is kept in view when it fits (real photos mostly frame their
    objects); ``near_border`` instead puts the centre close to or past an edge so the object is
    cut by the image border.
    """
    h, w = size
    y0, y1, x0, x1 = _extent(shape)
    if not near_border:
        # Range of centres keeping the shape inside; if it is larger than the frame, centre it
        # roughly (it will be cut on both sides anyway).
        lo_y, hi_y = -y0, h - 1 - y1
        lo_x, hi_x = -x0, w - 1 - x1
        cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else rng.uniform(0.35 * h, 0.65 * h)
        cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else rng.uniform(0.35 * w, 0.65 * w)
        return cy, cx
    cy, cx = rng.uniform(0.0, h), rng.uniform(0.0, w)
    if rng.random() < 0.5:
        cy = rng.uniform(-0.05, 0.12) * h if rng.random() < 0.5 else rng.uniform(0.88, 1.05) * h
    else:
        cx = rng.uniform(-0.05, 0.12) * w if rng.random() < 0.5 else rng.uniform(0.88, 1.05) * w
    return cy, cx


@dataclass
class Layout:
    """Full-frame bool masks in painting order (bottom to top) and the target's position in it."""

    masks: list[np.ndarray]
    target: int
    visible: np.ndarray  # (H, W) bool: target minus everything painted above it


def _fragmented(mask: np.ndarray, dominant: float = 0.85) -> bool:
    """True if the largest connected part of ``mask`` (H, W) bool holds < ``dominant`` of its area."""
    lab, n = ndi.label(mask)
    if n <= 1:
        return False
    return np.bincount(lab.ravel())[1:].max() < dominant * np.count_nonzero(mask)


def sample_layout(rng: np.random.Generator, size: tuple[int, int]) -> Layout:
    """Sample target + distractors until the target's visible area is in the promised range."""
    h, w = size
    img_area = float(h * w)
    for _ in range(12):
        frac = math.exp(rng.uniform(math.log(0.035), math.log(0.6)))
        tshape = make_shape(rng, frac * img_area)
        tcentre = _random_centre(rng, tshape, size, near_border=rng.random() < 0.2)
        tmask = _place(tshape, tcentre, size)
        t_area = int(tmask.sum())
        if not MIN_AREA_FRACTION * img_area <= t_area <= MAX_AREA_FRACTION * img_area:
            continue
        below: list[np.ndarray] = []
        above: list[np.ndarray] = []
        visible = tmask.copy()
        n_distractors = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.08, 0.17, 0.25, 0.25, 0.15, 0.10]))
        for _ in range(n_distractors):
            dfrac = math.exp(rng.uniform(math.log(0.01), math.log(0.3)))
            dshape = make_shape(rng, dfrac * img_area)
            if rng.random() < 0.4:
                # Adjacent to the target: touching/overlapping objects are the hard, realistic case.
                ys, xs = np.nonzero(tmask)
                j = int(rng.integers(len(ys)))
                dcentre = (float(ys[j]) + rng.normal(0, 0.1 * h), float(xs[j]) + rng.normal(0, 0.1 * w))
            else:
                dcentre = _random_centre(rng, dshape, size, near_border=rng.random() < 0.3)
            dmask = _place(dshape, dcentre, size)
            if not dmask.any():
                continue
            if rng.random() < 0.5:
                hidden = visible & dmask
                new_visible = visible & ~dmask
                # Occlude only if the target stays a substantial, in-range object.
                if hidden.any() and new_visible.sum() >= max(_MIN_VISIBLE_SHARE * t_area, MIN_AREA_FRACTION * img_area):
                    above.append(dmask)
                    visible = new_visible
                    continue
            below.append(dmask)
        # Occlusion that shatters the target into scattered pieces makes an ill-posed click target:
        # un-occlude (move occluders under the target) until one piece dominates.
        while above and _fragmented(visible):
            below.append(above.pop())
            visible = tmask & ~np.logical_or.reduce(above) if above else tmask.copy()
        if visible.sum() >= MIN_AREA_FRACTION * img_area:
            return Layout([*below, tmask, *above], len(below), visible)
    # Deterministic fallback (rare): a centred ellipse, no distractors.
    outline = ellipse_outline(rng, 0.15 * img_area)
    tmask = fill_polygons([outline + np.array([h / 2, w / 2])], size)
    return Layout([tmask], 0, tmask.copy())
