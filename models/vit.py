"""MAE ViT with BEiT relative position bias and layer scale (the image side of InterFormer).

Any input whose sides are multiples of the patch size works. Position tables trained on the
``grid x grid`` token grid are resized with PyTorch's legacy ``nearest`` rule, and, as in the
official code, left untouched whenever the token count equals ``grid * grid`` (e.g. a 16x64 grid
reuses the 32x32 tables as they are). All resizing is expressed as index gathers so that the same
code traces to an ONNX graph with dynamic height and width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import DropPath


def nearest_source_index(out_size: Tensor | int, in_size: int) -> Tensor:
    """Source indices of ``F.interpolate(mode='nearest')`` along one axis, shape ``(out_size,)``.

    Mirrors PyTorch's CPU kernel: ``min(floor(dst * float32(in / out)), in - 1)`` in float32.
    """
    out = torch.as_tensor(out_size)
    scale = torch.tensor(float(in_size), dtype=torch.float32) / out.to(torch.float32)
    dst = torch.arange(out, dtype=torch.int64).to(torch.float32)
    return torch.clamp(torch.floor(dst * scale).to(torch.int64), max=in_size - 1)


def token_grid_index(height: Tensor | int, width: Tensor | int, grid: int) -> Tensor:
    """For each of the ``height * width`` tokens, the flat index of its source token in the trained grid.

    Returns ``(height * width,)`` int64. Equal token counts keep the identity mapping (official quirk).
    """
    rows = nearest_source_index(height, grid)
    cols = nearest_source_index(width, grid)
    resized = (rows[:, None] * grid + cols[None, :]).reshape(-1)
    identity = torch.arange(resized.shape[0], dtype=torch.int64)
    same_count = torch.as_tensor(height) * torch.as_tensor(width) == grid * grid
    return torch.where(same_count, identity, resized)


def relative_position_index_for(source_tokens: Tensor, grid: int) -> Tensor:
    """Index into the relative bias table for the current tokens, ``(T + 1, T + 1)`` int64.

    ``source_tokens`` (``(T,)``) are flat indices into the trained ``grid x grid`` token grid. Row 0
    (cls → tokens) uses table entry N-3, column 0 (tokens → cls) N-2 and the corner N-1, where
    N = (2*grid - 1)**2 + 3. With the identity mapping this is BEiT's buffer; otherwise it equals
    nearest-resizing the trained bias over keys, then queries, computed from grid coordinates so no
    1025x1025 constant lands in exported graphs.
    """
    n_table = (2 * grid - 1) ** 2 + 3
    ys = torch.div(source_tokens, grid, rounding_mode="trunc")  # indices are non-negative: trunc == floor
    xs = source_tokens - ys * grid
    tokens = (ys[:, None] - ys[None, :] + grid - 1) * (2 * grid - 1) + (xs[:, None] - xs[None, :] + grid - 1)
    top = torch.cat([torch.full_like(tokens[:1, :1], n_table - 1), torch.full_like(tokens[:1], n_table - 3)], 1)
    body = torch.cat([torch.full_like(tokens[:, :1], n_table - 2), tokens], dim=1)
    return torch.cat([top, body], dim=0)


def canonical_relative_position_index(grid: int) -> Tensor:
    """BEiT's ``relative_position_index`` buffer for the trained grid, ``(grid² + 1, grid² + 1)``."""
    return relative_position_index_for(torch.arange(grid * grid), grid)


class RelPosAttention(nn.Module):
    """Multi-head self-attention with a learned relative position bias (BEiT/MAE style).

    Input and output ``(B, 1 + T, C)``; ``rel_index`` is ``(1 + T, 1 + T)`` into the bias table.
    """

    def __init__(self, embed_dims: int, num_heads: int, grid: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (embed_dims // num_heads) ** -0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=True)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, num_heads))
        # Kept only so official checkpoints load strictly; the forward derives the index itself.
        self.register_buffer("relative_position_index", canonical_relative_position_index(grid))

    def forward(self, x: Tensor, rel_index: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[rel_index].permute(2, 0, 1)
        attn = (attn + bias.unsqueeze(0)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj(x)


class FeedForward(nn.Module):
    """Two-layer MLP with exact GELU; keys ``layers.0.0`` and ``layers.1`` as in mmcv's FFN."""

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, hidden_dims), nn.GELU()), nn.Linear(hidden_dims, embed_dims)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer with layer-scale gammas: x += g1·attn(ln1 x); x += g2·ffn(ln2 x)."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: int, grid: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.gamma_1 = nn.Parameter(torch.ones(embed_dims))
        self.gamma_2 = nn.Parameter(torch.ones(embed_dims))
        self.ln1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = RelPosAttention(embed_dims, num_heads, grid)
        self.ln2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = FeedForward(embed_dims, mlp_ratio * embed_dims)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, rel_index: Tensor) -> Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.ln1(x), rel_index))
        return x + self.drop_path(self.gamma_2 * self.ffn(self.ln2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution: ``(B, 3, H, W) -> (B, C, H/p, W/p)``."""

    def __init__(self, embed_dims: int, patch_size: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, embed_dims, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x)


class MAEViT(nn.Module):
    """ViT trunk without final norm; returns the last layer as a map ``(B, C, H/16, W/16)``."""

    def __init__(
        self,
        embed_dims: int,
        depth: int,
        num_heads: int,
        mlp_ratio: int,
        img_size: int = 512,
        patch_size: int = 16,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(embed_dims, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dims))
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth > 0 else []
        self.layers = nn.ModuleList(EncoderLayer(embed_dims, num_heads, mlp_ratio, self.grid, rate) for rate in rates)

    def forward(self, image: Tensor) -> Tensor:
        x = self.patch_embed(image)
        batch, channels, height, width = x.shape
        source = token_grid_index(height, width, self.grid)
        x = x.flatten(2).transpose(1, 2)
        pos = torch.cat([self.pos_embed[:, :1], self.pos_embed[:, 1:][:, source]], dim=1)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1) + pos
        rel_index = relative_position_index_for(source, self.grid)
        for layer in self.layers:
            x = layer(x, rel_index)
        return x[:, 1:].transpose(1, 2).reshape(batch, channels, height, width)
