"""Canvas sizes written ``HxW`` on a command line: one parser and one rule for every tool."""

from __future__ import annotations

from .spec import MAX_IMAGE_SIDE, SIZE_DIVISOR


def check_size(size: tuple[int, int], divisor: int = SIZE_DIVISOR, max_side: int = MAX_IMAGE_SIDE) -> None:
    """Raise ValueError (one line) unless both sides are positive multiples of ``divisor`` ≤ ``max_side``."""
    height, width = size
    if height <= 0 or width <= 0 or height % divisor or width % divisor:
        raise ValueError(f"size {height}x{width}: both sides must be positive multiples of {divisor}")
    if max(height, width) > max_side:
        raise ValueError(f"size {height}x{width}: sides must not exceed {max_side}")


def parse_size(text: str, divisor: int = SIZE_DIVISOR, max_side: int = MAX_IMAGE_SIDE) -> tuple[int, int]:
    """``"512x320"`` → ``(512, 320)`` (height, width), checked by :func:`check_size`; ValueError otherwise."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise ValueError(f"size {text!r} is not HxW (e.g. 512x512)")
    size = (int(parts[0]), int(parts[1]))
    check_size(size, divisor, max_side)
    return size


def size_text(size: tuple[int, int]) -> str:
    """``(512, 320)`` → ``"512x320"`` (height x width), the inverse of :func:`parse_size`."""
    return f"{size[0]}x{size[1]}"
