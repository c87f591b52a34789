"""Image and reference-label preparation shared by every backend (numpy only)."""

from __future__ import annotations

import numpy as np

from .spec import PIXEL_MEAN, PIXEL_STD, REF_UNKNOWN, SIZE_DIVISOR


def padded_shape(height: int, width: int, divisor: int = SIZE_DIVISOR) -> tuple[int, int]:
    """Size after zero-padding bottom/right to a multiple of ``divisor``."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def normalize_image(
    image: np.ndarray,
    mean: tuple[float, float, float] = PIXEL_MEAN,
    std: tuple[float, float, float] = PIXEL_STD,
    divisor: int = SIZE_DIVISOR,
) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(1, 3, Hp, Wp)`` float32, normalized then zero-padded bottom/right.

    Padding happens after normalization (zeros in normalized space), as in the official pipeline.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image is empty ({height}x{width})")
    pad_h, pad_w = padded_shape(height, width, divisor)
    normalized = (image.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    out = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
    out[0, :, :height, :width] = normalized.transpose(2, 0, 1)
    return out


def pad_ref_label(ref_label: np.ndarray, padded: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` codes → ``(1, 1, Hp, Wp)`` float32, the padding marked unknown."""
    out = np.full((1, 1, *padded), REF_UNKNOWN, dtype=np.float32)
    out[0, 0, : ref_label.shape[0], : ref_label.shape[1]] = ref_label
    return out
