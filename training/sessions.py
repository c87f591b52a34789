"""Simulated click sessions for training (the official iterative click sampling)."""

from __future__ import annotations

import numpy as np

from interformer_edge.core.clicker import TRAIN_FIRST_CLICK_INNER_K, TRAIN_LATER_CLICK_INNER_K, random_click
from interformer_edge.core.clicks import Click, add_click, initial_ref_label, update_ref_label_with_prediction


def sample_num_clicks(rng: np.random.Generator, max_clicks: int = 20, gamma: float = 0.6) -> int:
    """Number of extra simulated clicks, P(k) ∝ gamma**k for k = 0..max_clicks."""
    probs = gamma ** np.arange(max_clicks + 1)
    return int(rng.choice(max_clicks + 1, p=probs / probs.sum()))


class BatchSession:
    """Reference labels and click histories of a training batch of ``(H, W)`` ground-truth masks."""

    def __init__(self, gts: np.ndarray, rng: np.random.Generator) -> None:
        self.gts = gts.astype(bool)
        self.rng = rng
        self.clicks: list[list[Click]] = [[] for _ in gts]
        self.ref_labels = np.stack([initial_ref_label(gt.shape) for gt in self.gts])
        self.click(np.zeros_like(self.gts), TRAIN_FIRST_CLICK_INNER_K)

    def click(self, preds: np.ndarray, inner_k: float = TRAIN_LATER_CLICK_INNER_K) -> None:
        """One more click per sample from its current prediction ``preds`` ``(B, H, W)`` bool."""
        for i, (pred, gt) in enumerate(zip(preds, self.gts, strict=True)):
            new = random_click(pred, gt, self.clicks[i], inner_k, self.rng)
            if new is not None:
                self.clicks[i].append(new)
                self.ref_labels[i] = add_click(self.ref_labels[i], new)

    def update_with_prediction(self, preds: np.ndarray) -> None:
        for i, pred in enumerate(preds):
            self.ref_labels[i] = update_ref_label_with_prediction(self.ref_labels[i], pred)
