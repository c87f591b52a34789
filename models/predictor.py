"""PyTorch reference predictor: the eager model behind the backend-independent predictor interface."""

from __future__ import annotations

import numpy as np
import torch

from interformer_edge.core.preprocess import normalize_image, pad_ref_label

from .interformer import InterFormer, upsample_logits


class TorchPredictor:
    """Encodes one ``(H, W, 3)`` uint8 image once; each call answers one click.

    ``predictor(ref_label (H, W) uint8, roi or None) -> mask (H, W) bool``. The roi is used only by
    models with refine stages, as in the official zoom-in segmentor.
    """

    def __init__(self, model: InterFormer, image: np.ndarray) -> None:
        self.model = model.eval()
        self.height, self.width = image.shape[:2]
        padded = normalize_image(image)
        self.padded = padded.shape[2:]
        with torch.no_grad():
            self.features = model.encode(torch.from_numpy(padded))

    def logits(self, ref_label: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Logits ``(classes, H, W)`` float32 at the image's own size."""
        ref = torch.from_numpy(pad_ref_label(ref_label, self.padded))
        roi_t = torch.tensor(roi, dtype=torch.int64) if roi is not None and self.model.cfg.has_refine else None
        with torch.no_grad():
            out = upsample_logits(self.model.decode(self.features, ref, roi_t), *self.padded)
        return out[0, :, : self.height, : self.width].numpy()

    def __call__(self, ref_label: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
        logits = self.logits(ref_label, roi)
        return logits[1] > logits[0]
