"""The full InterFormer and its two exportable halves.

Parameter names equal the official mmseg ones (``backbone.*``, ``neck.*``, ``decode_head.*``), so
official checkpoints load unchanged. The image side runs once per image; the click side runs
once per click on the cached features.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import InterFormerConfig
from .fpn import SimpleFPN
from .imsa import IMSA
from .uper_head import UPerHead
from .vit import MAEViT

Features = tuple[Tensor, Tensor, Tensor, Tensor]


class MAEWithFPN(MAEViT):
    """Normalized image ``(B, 3, H, W)`` (H, W multiples of 32) → 4 maps at strides 4/8/16/32."""

    def __init__(self, cfg: InterFormerConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__(
            cfg.embed_dims, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.img_size, cfg.patch_size, drop_path_rate
        )
        self.fpn = SimpleFPN(cfg.embed_dims, cfg.fpn_dims)

    def forward(self, image: Tensor) -> Features:  # type: ignore[override]
        return self.fpn(super().forward(image))


class InterFormer(nn.Module):
    """Backbone (ViT + SimpleFPN), I-MSA neck and UPerHead with the official module names."""

    def __init__(self, cfg: InterFormerConfig, backbone_drop_path: float = 0.0, neck_drop_path: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = MAEWithFPN(cfg, backbone_drop_path)
        self.neck = IMSA(cfg, neck_drop_path)
        self.decode_head = UPerHead(cfg.fpn_dims, cfg.head_channels, cfg.pool_scales, cfg.num_classes)

    def encode(self, image: Tensor) -> Features:
        """``(B, 3, H, W)`` normalized RGB → ``(B, 32, H/4, W/4), …, (B, 256, H/32, W/32)``."""
        return self.backbone(image)

    def decode(
        self,
        features: Features | list[Tensor],
        ref_label: Tensor,
        roi: Tensor | None = None,
        context: list[Tensor] | tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        """Features + reference label ``(B, 1, H, W)`` (+ roi) → logits ``(B, classes, H/4, W/4)``.

        ``context``: the neck's :meth:`~.imsa.IMSA.image_context` of these features, when already computed.
        """
        return self.decode_head(self.neck(features, ref_label, roi, context))

    def forward(self, image: Tensor, ref_label: Tensor, roi: Tensor | None = None) -> Tensor:
        """Full pass: logits ``(B, classes, H, W)`` at the (padded) input size."""
        return upsample_logits(self.decode(self.encode(image), ref_label, roi), image.shape[2], image.shape[3])


def upsample_logits(logits: Tensor, height: Tensor | int, width: Tensor | int) -> Tensor:
    """Bilinear (align_corners False) resize of ``(B, K, H/4, W/4)`` logits to ``(B, K, height, width)``."""
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)


class ImageEncoder(nn.Module):
    """Export view of the image side: ``image (1, 3, H, W)`` → ``feat0 … feat3``."""

    def __init__(self, model: InterFormer) -> None:
        super().__init__()
        self.backbone = model.backbone

    def forward(self, image: Tensor) -> Features:
        return self.backbone(image)


class ImageContext(nn.Module):
    """Export view of the click side's per-image part: ``feat0 … feat3`` → ``ctx0 … ctx3``.

    ``ctx_i`` ``(1, N_i, 2 C_i)``: the key/value tokens of I-MSA stage ``i``'s first block, which
    depend on the features only (``N_i``: FPN level ``i``'s pooled pixel count, a function of H, W).
    """

    def __init__(self, model: InterFormer) -> None:
        super().__init__()
        self.neck = model.neck

    def forward(self, feat0: Tensor, feat1: Tensor, feat2: Tensor, feat3: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.neck.image_context((feat0, feat1, feat2, feat3)))


class ClickDecoder(nn.Module):
    """Export view of the click side, once per click.

    Inputs ``feat0`` (as :class:`ImageEncoder` returns it), ``ctx0 … ctx3`` (as :class:`ImageContext`
    returns them for the same image), ``ref_label (1, 1, H, W)`` (float or integer codes 0..4) and, for
    models with refine stages, ``roi (1, 4)`` int64 (left, up, right, bottom; the whole image means no
    zoom-in). Output: logits ``(1, classes, H, W)`` at the padded size.
    """

    def __init__(self, model: InterFormer) -> None:
        super().__init__()
        self.neck = model.neck
        self.decode_head = model.decode_head
        self.uses_roi = model.cfg.has_refine

    def forward(
        self,
        feat0: Tensor,
        ctx0: Tensor,
        ctx1: Tensor,
        ctx2: Tensor,
        ctx3: Tensor,
        ref_label: Tensor,
        roi: Tensor | None = None,
    ) -> Tensor:
        neck = self.neck((feat0,), ref_label, roi if self.uses_roi else None, context=(ctx0, ctx1, ctx2, ctx3))
        return upsample_logits(self.decode_head(neck), ref_label.shape[2], ref_label.shape[3])


def build_interformer(cfg: InterFormerConfig) -> InterFormer:
    """A randomly initialised model in eval mode (load a checkpoint to make it useful)."""
    return InterFormer(cfg).eval()
