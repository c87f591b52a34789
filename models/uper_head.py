"""UPerHead (PPM + FPN fusion) of mmseg, on the four I-MSA outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import adaptive_avg_pool2d


class ConvBNReLU(nn.Module):
    """mmcv ConvModule with BN: conv without bias, BatchNorm, ReLU (keys ``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class AdaptiveAvgPool(nn.Module):
    """``(B, C, H, W) -> (B, C, s, s)``, exportable for any H, W."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool2d(x, self.size)


def _resize_to(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=(like.shape[2], like.shape[3]), mode="bilinear", align_corners=False)


class UPerHead(nn.Module):
    """Four maps ``(B, C_i, H/2^(i+2), W/2^(i+2))`` → class logits ``(B, num_classes, H/4, W/4)``."""

    def __init__(
        self, in_channels: tuple[int, ...], channels: int, pool_scales: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        top = in_channels[-1]
        self.psp_modules = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool(scale), ConvBNReLU(top, channels, 1)) for scale in pool_scales
        )
        self.bottleneck = ConvBNReLU(top + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def _pyramid_pooling(self, top: Tensor) -> Tensor:
        pooled = [_resize_to(module(top), top) for module in self.psp_modules]
        return self.bottleneck(torch.cat([top, *pooled], dim=1))

    def forward(self, inputs: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self._pyramid_pooling(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize_to(laterals[i], laterals[i - 1])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]
        outs.append(laterals[-1])
        outs = [outs[0]] + [_resize_to(out, outs[0]) for out in outs[1:]]
        return self.conv_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))
