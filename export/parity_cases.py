"""The parity gate's inputs: a synthetic image per size, reference labels built with the runtime's
click code and, for refine models, rois (the cases every backend is judged on)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from interformer_edge.core.clicks import Click, add_click, update_ref_label_with_prediction, zoom_roi
from interformer_edge.core.spec import (
    CLICK_IMAGE_INPUTS,
    NUM_REF_LABELS,
    PIXEL_MEAN,
    PIXEL_STD,
    REF_LABEL_INPUT,
    REF_UNKNOWN,
    ROI_INPUT,
    SIZE_DIVISOR,
)

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class DecoderCase:
    """``ref_label`` ``(1, 1, H, W)`` uint8 and, for refine models, ``roi`` ``(1, 4)`` int64."""

    name: str
    ref_label: np.ndarray
    roi: np.ndarray | None


@dataclass(frozen=True)
class SizeCase:
    """One image size: normalized image ``(1, 3, H, W)`` float32 and its decoder cases."""

    size: tuple[int, int]
    image: np.ndarray
    decoder_cases: tuple[DecoderCase, ...]

    @property
    def label(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB test image (smooth background, a few solid ellipses, sensor noise), normalized.

    Returns ``(1, 3, H, W)`` float32 as the encoder expects it.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    slope = rng.uniform(-60, 60, (3, 2)).astype(np.float32)
    rgb = base[:, None, None] + slope[:, 0, None, None] * yy / height + slope[:, 1, None, None] * xx / width
    for _ in range(4):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * width
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        rgb[:, inside] = rng.uniform(0, 255, 3).astype(np.float32)[:, None]
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape).astype(np.float32), 0, 255)
    mean = np.asarray(PIXEL_MEAN, np.float32)[:, None, None]
    std = np.asarray(PIXEL_STD, np.float32)[:, None, None]
    return ((rgb - mean) / std)[None].astype(np.float32)


def _ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.uint8)


def reference_labels(height: int, width: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Realistic reference labels ``(H, W)`` uint8 with the prediction that preceded them.

    * ``one_click``: a positive click on the object (codes 2, 4);
    * ``three_clicks``: positive, negative, then a correction after folding in a prediction (all codes);
    * ``blocks``: random codes in 32x32 blocks (every code, many boundaries).
    """
    rng = np.random.default_rng(seed)
    cy, cx, ry, rx = 0.55 * height, 0.45 * width, 0.22 * height, 0.2 * width
    previous = _ellipse(height, width, cy + 0.05 * height, cx - 0.04 * width, ry, rx)  # an imperfect prediction
    empty = np.full((height, width), REF_UNKNOWN, np.uint8)
    one = add_click(empty, Click(int(cy), int(cx), True))
    three = add_click(one, Click(int(0.12 * height), int(0.88 * width), False))
    three = update_ref_label_with_prediction(three, previous)
    three = add_click(three, Click(int(cy + 0.8 * ry), int(cx), True))
    cells = rng.integers(0, NUM_REF_LABELS, (-(-height // 32), -(-width // 32)), dtype=np.uint8)
    blocks = np.kron(cells, np.ones((32, 32), np.uint8))[:height, :width]
    return {"one_click": (one, previous), "three_clicks": (three, previous), "blocks": (blocks, previous)}


def reference_rois(height: int, width: int, ref_label: np.ndarray, previous: np.ndarray) -> dict[str, np.ndarray]:
    """Rois ``(1, 4)`` int64: the zoom-in box of a click sequence, one touching bottom/right, the whole image."""
    zoom = zoom_roi(previous, ref_label)
    side_h = max(SIZE_DIVISOR, height // 2 // SIZE_DIVISOR * SIZE_DIVISOR)
    side_w = max(SIZE_DIVISOR, width // 2 // SIZE_DIVISOR * SIZE_DIVISOR)
    boxes = {"zoom": zoom, "corner": (width - side_w, height - side_h, width, height), "whole": (0, 0, width, height)}
    return {name: np.asarray([box], np.int64) for name, box in boxes.items()}


def make_cases(sizes: Sequence[tuple[int, int]], uses_roi: bool) -> list[SizeCase]:
    """Gate inputs per size: three labels; for refine models each paired with one of the three rois."""
    cases = []
    for index, (height, width) in enumerate(sizes):
        labels = reference_labels(height, width, seed=index)
        ref3, prev3 = labels["three_clicks"]
        # Paired, not crossed: every label and every roi is covered at a third of the (slow, eager)
        # PyTorch reference cost. The zoom box goes with the clicks it was computed from.
        rois = dict(zip(labels, ("whole", "zoom", "corner"), strict=True))
        boxes = reference_rois(height, width, ref3, prev3) if uses_roi else {}
        decoder_cases = [
            DecoderCase(
                f"{name}/{rois[name]}" if uses_roi else name,
                ref[None, None].copy(),
                boxes[rois[name]] if uses_roi else None,
            )
            for name, (ref, _) in labels.items()
        ]
        cases.append(SizeCase((height, width), synthetic_image(height, width, seed=index), tuple(decoder_cases)))
    return cases


def decoder_feed(image_inputs: dict[str, np.ndarray], case: DecoderCase) -> Feed:
    """``image_inputs``: features and context (extra entries are ignored)."""
    feed = {name: image_inputs[name] for name in CLICK_IMAGE_INPUTS}
    feed[REF_LABEL_INPUT] = case.ref_label
    if case.roi is not None:
        feed[ROI_INPUT] = case.roi
    return feed
