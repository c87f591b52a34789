"""Normalized focal loss of the official InterFormer recipe (binary, on two-class logits)."""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = torch.finfo(torch.float32).eps


def normalized_focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.5, gamma: float = 2.0) -> Tensor:
    """Mean over the batch of the per-image normalized focal loss.

    ``logits`` ``(B, 2, H, W)`` (foreground probability = sigmoid(l1 - l0)); ``target`` ``(B, H, W)``
    in {0, 1}. The focal weights ``(1 - p_t)^gamma`` are rescaled per image to sum to the pixel
    count, and that rescaling is not differentiated through (as in the official loss).
    """
    prob = torch.sigmoid(logits[:, 1] - logits[:, 0])
    target = target.to(prob.dtype)
    alpha_t = torch.where(target > 0, alpha, 1.0 - alpha)
    p_t = 1.0 - (prob - target).abs()
    beta = (1.0 - p_t) ** gamma
    pixels = float(target.shape[-2] * target.shape[-1])
    scale = (pixels / (beta.sum(dim=(-2, -1), keepdim=True) + _EPS)).detach()
    loss = -alpha_t * scale * beta * torch.log((p_t + _EPS).clamp(max=1.0))
    return loss.flatten(1).mean(dim=1).mean()
