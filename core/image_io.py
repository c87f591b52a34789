"""Reading images and masks as the models expect them (numpy + Pillow only)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file is missing, unreadable, empty or of an unsupported kind."""


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    return _load(path, str(path))


def _load(source: Path | io.BytesIO, where: str) -> Image.Image:
    try:
        image = Image.open(source)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # Pillow names the file object it was given; from bytes that is a BytesIO repr, not the image's name.
        raise ImageReadError(f"cannot read image {where}: {str(err).replace(repr(source), repr(where))}") from None
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"image {where} is empty ({image.width}x{image.height})")
    return image


_EXIF_ORIENTATION = 0x0112
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that turn the picture by 90 degrees


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file as :func:`read_rgb` will return it (EXIF orientation applied),
    read from the file's header without decoding the pixels.

    Raises:
        ImageReadError: not a readable image file.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(_EXIF_ORIENTATION) in _SWAPPED_ORIENTATIONS
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    return (width, height) if turned else (height, width)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow image → ``(H, W, 3)`` uint8 RGB, honouring EXIF orientation.

    16-bit and float images are scaled to 0..255 by their type's range; alpha is dropped
    (the model was trained on opaque RGB); palette and grayscale images are expanded.

    Raises:
        ImageReadError: the image is empty or its mode cannot be converted to RGB.
    """
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"image is empty ({image.width}x{image.height})")
    try:
        return _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError) as err:  # e.g. "conversion from La to RGB not supported"
        raise ImageReadError(f"cannot convert a {image.mode} image to RGB: {err}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode == "I" or image.mode.startswith("I;16"):  # I;16, I;16B, I;16L, I;16N
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


def as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """An in-memory image → ``(H, W, 3)`` uint8 RGB.

    Accepts a Pillow image (any mode, see :func:`to_rgb_array`) or an array: ``(H, W)`` or
    ``(H, W, 1)`` grayscale, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (alpha dropped), as uint8 or
    uint16 (scaled by 255/65535). Anything else — floats (whose range is ambiguous), other channel
    counts, other ranks, a zero-size image — raises :class:`ImageReadError`.
    """
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        channels = array.shape[2]
    elif array.ndim == 2:
        channels = 1
    else:
        raise ImageReadError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image array, got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"image is empty ({array.shape[0]}x{array.shape[1]})")
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageReadError(f"expected a uint8 or uint16 image array, got {array.dtype} (scale it to 0..255 uint8)")
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array.reshape(array.shape[0], array.shape[1], 1), 3, axis=2))
    return np.ascontiguousarray(array[..., :3])


def read_rgb(path: str | Path) -> np.ndarray:
    """Read ``path`` as ``(H, W, 3)`` uint8 RGB (see :func:`to_rgb_array`)."""
    return to_rgb_array(_open(path))


def decode_rgb(data: bytes, where: str) -> np.ndarray:
    """The bytes of an image file (read from a path or a URI, named ``where`` in errors) as ``(H, W, 3)``
    uint8 RGB, exactly as :func:`read_rgb` reads the file."""
    return to_rgb_array(_load(io.BytesIO(data), where))


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
