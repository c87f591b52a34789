"""Image and reference-label preparation shared by every backend, and the resizes around it (numpy + Pillow)."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike
from PIL import Image

from .spec import PIXEL_MEAN, PIXEL_STD, REF_UNKNOWN, SIZE_DIVISOR


def padded_shape(height: int, width: int, divisor: int = SIZE_DIVISOR) -> tuple[int, int]:
    """Size after zero-padding bottom/right to a multiple of ``divisor``."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def normalize_image(
    image: np.ndarray,
    mean: tuple[float, float, float] = PIXEL_MEAN,
    std: tuple[float, float, float] = PIXEL_STD,
    divisor: int = SIZE_DIVISOR,
    pad_value: float = 0.0,
    padded: tuple[int, int] | None = None,
) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(1, 3, Hp, Wp)`` float32, normalized then zero-padded bottom/right.

    Padding happens after normalization (zeros in normalized space), as in the official pipeline.
    ``padded`` forces the canvas size (a static-size graph); by default it is the next multiple of
    ``divisor``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image is empty ({height}x{width})")
    pad_h, pad_w = padded if padded is not None else padded_shape(height, width, divisor)
    if pad_h < height or pad_w < width:
        raise ValueError(f"a {height}x{width} image does not fit a {pad_h}x{pad_w} canvas")
    normalized = (image.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    out = np.full((1, 3, pad_h, pad_w), pad_value, dtype=np.float32)
    out[0, :, :height, :width] = normalized.transpose(2, 0, 1)
    return out


def pad_ref_label(ref_label: np.ndarray, padded: tuple[int, int], dtype: DTypeLike = np.float32) -> np.ndarray:
    """``(H, W)`` codes → ``(1, 1, Hp, Wp)`` ``dtype`` (float32 for PyTorch, uint8 for the exported
    decoder), the padding marked unknown."""
    out = np.full((1, 1, *padded), REF_UNKNOWN, dtype=dtype)
    out[0, 0, : ref_label.shape[0], : ref_label.shape[1]] = ref_label
    return out


def fit_size(height: int, width: int, max_side: int | None) -> tuple[int, int, float]:
    """``(height', width', scale)`` with the longer side at most ``max_side`` (never enlarged).

    ``scale`` is ``max_side / max(height, width)`` (1.0 when the image already fits); each side is
    rounded to the nearest pixel and kept >= 1, so the per-axis factors ``height' / height`` and
    ``width' / width`` can differ slightly from ``scale``.
    """
    if max_side is None or max(height, width) <= max_side:
        return height, width, 1.0
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 → ``(h, w, 3)`` uint8 with Pillow's bilinear filter (antialiased when shrinking)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of one axis, half-pixel centres (``align_corners=False``), edge-clamped."""
    coords = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    coords = np.clip(coords, 0.0, n_in - 1)
    lower = np.floor(coords).astype(np.intp)
    upper = np.minimum(lower + 1, n_in - 1)
    return lower, upper, (coords - lower).astype(np.float32)


def resize_bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` float map → ``(H, W)`` float32, bilinear as PyTorch's ``interpolate(align_corners=False)``
    (no antialiasing). Used to bring logits back to the original image size."""
    height, width = size
    src = np.asarray(array, dtype=np.float32)
    if src.shape == (height, width):
        return src
    y0, y1, wy = _bilinear_axis(src.shape[0], height)
    x0, x1, wx = _bilinear_axis(src.shape[1], width)
    rows = src[y0] + (src[y1] - src[y0]) * wy[:, None]  # (H, w): interpolate along y first
    return rows[:, x0] + (rows[:, x1] - rows[:, x0]) * wx[None, :]
