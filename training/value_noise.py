"""Smooth random value-noise fields, shared by procedural textures, noise-blob shapes and patchwork
backgrounds."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def value_noise(rng: np.random.Generator, h: int, w: int, cells: int, smooth: bool = False) -> np.ndarray:
    """Smooth random field (h, w) float32 in ~[0, 1]: a coarse random grid upsampled.

    Corner-aligned interpolation (``grid_mode=False``) so no border band is clamped to a constant,
    which would otherwise make thresholded outlines run straight along the image axes.
    ``smooth`` uses cubic interpolation (no creases on iso-lines, which matters when the field is
    thresholded into an outline) at quarter resolution, then a cheap bilinear upsample.
    """
    gh, gw = max(2, round(cells * h / max(h, w)) + 1), max(2, round(cells * w / max(h, w)) + 1)
    grid = rng.random((gh, gw), dtype=np.float32)
    if smooth:
        sh, sw = max(gh, -(-h // 4)), max(gw, -(-w // 4))
        grid = ndi.zoom(grid, (sh / gh, sw / gw), order=3, grid_mode=False)
        gh, gw = grid.shape
    return ndi.zoom(grid, (h / gh, w / gw), order=1, grid_mode=False)[:h, :w]
