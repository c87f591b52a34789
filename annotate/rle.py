"""Mask encodings the annotation formats use: COCO RLE (compressed string) and Label Studio's brush RLE.

COCO RLE (as ``pycocotools.mask.encode`` writes it): the ``(H, W)`` mask is read in column-major
order and stored as alternating run lengths, zeros first (a leading 0 when the first pixel is set).
The compressed ``counts`` string writes each run (from the third on, as the difference to the run two
before it) as little-endian groups of 5 bits, 6 bits a character (bit 5: more groups follow, bit 4 of
the last group: the sign), offset by 48 (``'0'``).

Label Studio brush RLE (``label_studio_converter.brush``, after thi.ng ``rle-pack``): the mask becomes
``H*W*4`` bytes (RGBA, every channel 0 or 255, row-major), written as a bit stream: 32 bits value
count, 5 bits word size - 1 (8 bit words), four 4-bit run-size classes - 1 (3, 4, 8, 16 bits), then
chunks ``1 | class (2 bits) | run length - 1 | value`` for repeats (or ``0 | class | n - 1 | n values``
for literals), zero-padded to whole bytes, returned as a list of byte values.
"""

from __future__ import annotations

import numpy as np

BRUSH_WORD_BITS = 8
BRUSH_RUN_CLASSES: tuple[int, int, int, int] = (3, 4, 8, 16)  # bits of a run length, Label Studio's default
BRUSH_CHANNELS = 4  # RGBA: Label Studio keeps the alpha channel of each brush pixel


def _runs(flat: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal values of a 1-d array (empty for an empty array)."""
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    return np.diff(edges)


def coco_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO run lengths of an ``(H, W)`` bool mask (column-major, zeros first)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    runs = _runs(flat).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return runs


def compress_counts(counts: list[int]) -> str:
    """COCO's compressed string for uncompressed run lengths (see the module docstring)."""
    chars = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: negative differences end at -1
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(chars)


def decompress_counts(text: str) -> list[int]:
    """Run lengths from a COCO compressed string (the inverse of :func:`compress_counts`)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("truncated COCO RLE string")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"invalid character {text[position]!r} in a COCO RLE string")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def coco_rle(mask: np.ndarray) -> dict[str, object]:
    """``{"size": [H, W], "counts": <compressed string>}`` of an ``(H, W)`` bool mask."""
    height, width = mask.shape
    return {"size": [int(height), int(width)], "counts": compress_counts(coco_counts(mask))}


def decode_coco_rle(rle: dict[str, object]) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO RLE (compressed string or uncompressed list of counts).

    Raises:
        ValueError: malformed RLE, or counts that do not add up to ``H * W``.
    """
    try:
        height, width = (int(v) for v in rle["size"])  # type: ignore[union-attr]
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed COCO RLE ({err})") from None
    runs = decompress_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]  # type: ignore[union-attr]
    if sum(runs) != height * width or any(r < 0 for r in runs):
        raise ValueError(f"COCO RLE counts add up to {sum(runs)}, not {height}x{width}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((height, width), order="F")


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO ``[x, y, width, height]`` of the set pixels (all zeros for an empty mask)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE (list of byte values) of an ``(H, W)`` bool mask (see the module docstring)."""
    flat = np.repeat(np.asarray(mask, dtype=bool).ravel(), BRUSH_CHANNELS)
    bits = [f"{flat.size:032b}", f"{BRUSH_WORD_BITS - 1:05b}"]
    bits += [f"{size - 1:04b}" for size in BRUSH_RUN_CLASSES]
    longest = 1 << BRUSH_RUN_CLASSES[-1]
    start = 0
    for length in _runs(flat).tolist():
        word = f"{255 if flat[start] else 0:08b}"
        start += length
        while length > 0:  # a run longer than the largest class is written as several repeats
            chunk = min(length, longest)
            length -= chunk
            size_class = next(i for i, size in enumerate(BRUSH_RUN_CLASSES) if chunk <= 1 << size)
            if chunk == 1:  # a literal of one value (runs here are >= 4 long, kept for completeness)
                bits.append(f"0{size_class:02b}{0:0{BRUSH_RUN_CLASSES[size_class]}b}{word}")
            else:
                bits.append(f"1{size_class:02b}{chunk - 1:0{BRUSH_RUN_CLASSES[size_class]}b}{word}")
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big"))
