"""Simulated click sessions for training (the official iterative click sampling)."""

from __future__ import annotations

import numpy as np

from interformer_edge.runtime.clicks import (
    Click,
    add_click,
    click_candidates,
    initial_ref_label,
    update_ref_label_with_prediction,
)

# The official recipe: the first click aims at the object's centre, later ones at the inner part
# (distance > max / 1.7) of the largest error region.
FIRST_CLICK_INNER_K = 1.0
LATER_CLICK_INNER_K = 1.7


def sample_num_clicks(rng: np.random.Generator, max_clicks: int = 20, gamma: float = 0.6) -> int:
    """Number of extra simulated clicks, P(k) ∝ gamma**k for k = 0..max_clicks."""
    probs = gamma ** np.arange(max_clicks + 1)
    return int(rng.choice(max_clicks + 1, p=probs / probs.sum()))


def random_click(
    pred: np.ndarray, gt: np.ndarray, clicks: list[Click], inner_k: float, rng: np.random.Generator
) -> Click | None:
    """A click drawn uniformly among the official clicker's candidates (as the official training does)."""
    found = click_candidates(pred, gt, clicks, inner_k)
    if found is None:
        return None
    candidates, is_positive = found
    ys, xs = np.nonzero(candidates)
    pick = int(rng.integers(len(ys)))
    return Click(int(ys[pick]), int(xs[pick]), is_positive)


class BatchSession:
    """Reference labels and click histories of a training batch of ``(H, W)`` ground-truth masks."""

    def __init__(self, gts: np.ndarray, rng: np.random.Generator) -> None:
        self.gts = gts.astype(bool)
        self.rng = rng
        self.clicks: list[list[Click]] = [[] for _ in gts]
        self.ref_labels = np.stack([initial_ref_label(gt.shape) for gt in self.gts])
        self.click(np.zeros_like(self.gts), FIRST_CLICK_INNER_K)

    def click(self, preds: np.ndarray, inner_k: float = LATER_CLICK_INNER_K) -> None:
        """One more click per sample from its current prediction ``preds`` ``(B, H, W)`` bool."""
        for i, (pred, gt) in enumerate(zip(preds, self.gts, strict=True)):
            new = random_click(pred, gt, self.clicks[i], inner_k, self.rng)
            if new is not None:
                self.clicks[i].append(new)
                self.ref_labels[i] = add_click(self.ref_labels[i], new)

    def update_with_prediction(self, preds: np.ndarray) -> None:
        for i, pred in enumerate(preds):
            self.ref_labels[i] = update_ref_label_with_prediction(self.ref_labels[i], pred)
