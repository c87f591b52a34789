"""Comparisons of model outputs (numpy only): what the export gate, the runtime checks and bench share."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def logits_to_mask(logits: ArrayLike) -> np.ndarray:
    """``(1, 2, H, W)`` or ``(2, H, W)`` logits → ``(H, W)`` uint8 mask (1 = object).

    ``logits[1] > logits[0]`` equals ``argmax`` over the class axis, ties going to background as in
    ``argmax``, without materialising an index array.
    """
    arr = np.asarray(logits)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"expected batch 1, got logits of shape {arr.shape}")
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != 2:
        raise ValueError(f"expected (1, 2, H, W) or (2, H, W) logits, got shape {arr.shape}")
    return (arr[1] > arr[0]).astype(np.uint8)


def max_abs_diff(a: ArrayLike, b: ArrayLike) -> float:
    """Largest ``|a - b|`` over all elements (float64); ``inf`` if shapes differ or a value is not finite."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        return float("inf")
    if x.size == 0:
        return 0.0
    diff = np.abs(x - y)
    # NaN would compare false against any tolerance and slip through a gate.
    return float(diff.max()) if np.isfinite(diff).all() else float("inf")


def mask_agreement(logits_a: ArrayLike, logits_b: ArrayLike) -> float:
    """Fraction of pixels (0..1) whose predicted class (:func:`logits_to_mask`) is the same; 0 on shape mismatch."""
    mask_a = logits_to_mask(logits_a)
    mask_b = logits_to_mask(logits_b)
    if mask_a.shape != mask_b.shape:
        return 0.0
    if mask_a.size == 0:
        return 1.0
    return float(np.count_nonzero(mask_a == mask_b)) / mask_a.size
