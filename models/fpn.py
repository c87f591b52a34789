"""SimpleFPN: one ViT map at stride 16 → four maps at strides 4, 8, 16, 32."""

from __future__ import annotations

from torch import Tensor, nn


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm with one group: LayerNorm over (C, H, W), as in the official SimpleFPN.
    return nn.GroupNorm(1, channels)


def _upsample_x4(in_dim: int, out_dim: int) -> nn.Sequential:
    dim = max(in_dim // 2, 2 * out_dim)
    return nn.Sequential(
        nn.ConvTranspose2d(in_dim, dim, 2, stride=2), _norm(dim), nn.GELU(),
        nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), _norm(dim // 2),
        nn.Conv2d(dim // 2, out_dim, 1), _norm(out_dim), nn.GELU(),
    )  # fmt: skip


def _upsample_x2(in_dim: int, out_dim: int) -> nn.Sequential:
    dim = max(in_dim // 2, out_dim)
    return nn.Sequential(
        nn.ConvTranspose2d(in_dim, dim, 2, stride=2), _norm(dim),
        nn.Conv2d(dim, out_dim, 1), _norm(out_dim), nn.GELU(),
    )  # fmt: skip


def _same_scale(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1), _norm(out_dim), nn.GELU())


def _downsample_x2(in_dim: int, out_dim: int) -> nn.Sequential:
    dim = max(2 * in_dim, out_dim)
    return nn.Sequential(
        nn.Conv2d(in_dim, dim, 2, stride=2), _norm(dim),
        nn.Conv2d(dim, out_dim, 1), _norm(out_dim), nn.GELU(),
    )  # fmt: skip


class SimpleFPN(nn.Module):
    """``(B, C, H/16, W/16)`` → ``(B, d0, H/4, W/4), (B, d1, H/8, W/8), (B, d2, H/16, W/16), (B, d3, H/32, W/32)``."""

    def __init__(self, in_dim: int, out_dims: tuple[int, int, int, int]) -> None:
        super().__init__()
        builders = (_upsample_x4, _upsample_x2, _same_scale, _downsample_x2)
        self.rescale_ops = nn.ModuleList(build(in_dim, d) for build, d in zip(builders, out_dims, strict=True))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f0, f1, f2, f3 = (op(x) for op in self.rescale_ops)
        return f0, f1, f2, f3
