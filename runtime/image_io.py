"""Reading images and masks as the models expect them (numpy + Pillow only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file is missing, unreadable, empty or of an unsupported kind."""


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"image {path} is empty ({image.width}x{image.height})")
    return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow image → ``(H, W, 3)`` uint8 RGB, honouring EXIF orientation.

    16-bit and float images are scaled to 0..255 by their type's range; alpha is dropped
    (the model was trained on opaque RGB); palette and grayscale images are expanded.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max() <= 1.0 else 255.0
        gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def read_rgb(path: str | Path) -> np.ndarray:
    """Read ``path`` as ``(H, W, 3)`` uint8 RGB (see :func:`to_rgb_array`)."""
    return to_rgb_array(_open(path))


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as ``(H, W)`` bool: object where the value is above half the range."""
    image = ImageOps.exif_transpose(_open(path))
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., :3].max(axis=2)
    if image.mode == "P":
        return array > 0  # palette indices: 0 is background
    if image.mode == "1":
        return array.astype(bool)
    peak = 65535 if array.dtype == np.uint16 else 255
    return array > peak // 2
