"""Decoders of the annotation tools' mask encodings, written from the format descriptions for the tests
(COCO: pycocotools maskApi.c rleFrString; Label Studio: label_studio_converter brush.py / thi.ng rle-pack),
independent of ``interformer_edge.annotate.rle``."""

from __future__ import annotations

import numpy as np


def coco_string_to_counts(text: str) -> list[int]:
    """COCO's compressed counts (maskApi.c rleFrString): 5-bit groups, 0x20 continues, 0x10 of the last is the sign,
    from the third count on a delta to the count two before."""
    counts, i = [], 0
    while i < len(text):
        x, k, more = 0, 0, 1
        while more:
            c = ord(text[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = c & 0x20
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_to_mask(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for count in coco_string_to_counts(rle["counts"]):
        flat[position : position + count] = value
        position, value = position + count, not value
    assert position == height * width
    return flat.reshape((width, height)).T  # column-major


def brush_to_mask(data: list[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE (thi.ng rle-pack): header, then (repeat flag, size class, length - 1, value(s))."""
    bits = "".join(f"{byte:08b}" for byte in data)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        value = int(bits[pos : pos + n], 2)
        pos += n
        return value

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeat:
            out[i:j] = read(word)
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    assert num == height * width * 4
    return out.reshape(height, width, 4)[:, :, 3] > 0
