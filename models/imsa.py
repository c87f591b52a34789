"""I-MSA neck: the click side's multi-scale pooling attention over cached image features.

Stage ``i`` works at stride ``4 * 2**i``. Its coarse blocks attend from the running map (stage 0:
FPN level 0 plus the reference-label embedding) to the raw FPN level; PatchMerging then feeds the
next stage. Beside that, the coarse output goes through the optional zoom-in refine blocks and a
GroupNorm to become neck output ``i``.

Shape-dependent numbers (pooled sizes, crop boxes) are tensor expressions, so the module traces
to one ONNX graph that serves every image size and zoom-in box.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interformer_edge.core.spec import FEATURE_STRIDES, MAX_IMAGE_SIDE, NUM_REF_LABELS

from .config import InterFormerConfig
from .layers import DropPath, multi_adaptive_max_pool2d


def official_pooled_size(size: int, target: int, ratio: int) -> int:
    """Pooled side for one pooling ratio, with the official float64 arithmetic and round-half-to-even.

    ``target`` is the stage's fixed size for a 512 input (128, 64, 32, 16), not the actual size.
    """
    pooled = min(target / ratio, size)
    return round(size / round(size / pooled))


@functools.lru_cache(maxsize=64)
def _pooled_size_rows(target: int, ratios: tuple[int, ...], max_size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple([1] + [official_pooled_size(s, target, r) for s in range(1, max_size + 1)]) for r in ratios)


def pooled_size_table(target: int, ratios: tuple[int, ...], max_size: int) -> Tensor:
    """``(len(ratios), max_size + 1)`` int64 lookup of :func:`official_pooled_size` (entry 0 unused)."""
    return torch.tensor(_pooled_size_rows(target, ratios, max_size), dtype=torch.int64)


class PoolingAttention(nn.Module):
    """Queries from ``x`` ``(B, C, h, w)``; keys/values from a map ``(B, C, H, W)`` max-pooled at several ratios
    (:meth:`keys_values`, which :meth:`forward` takes precomputed)."""

    def __init__(self, target: int, max_size: int, embed_dims: int, num_heads: int, ratios: tuple[int, ...]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ratios = ratios
        self.max_size = max_size
        self.scale = (embed_dims // num_heads) ** -0.5
        self.query_proj = nn.Linear(embed_dims, embed_dims)
        self.key_value_proj = nn.Linear(embed_dims, 2 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.dconvs = nn.ModuleList(nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims) for _ in ratios)
        # Pooled sizes of the ratios that pool (ratio 1 keeps the map), indexed by the input side, and
        # the largest size each can take (the block sizes of the stacked pooling windows).
        self.pooled = tuple(i for i, ratio in enumerate(ratios) if ratio != 1)
        table = pooled_size_table(target, tuple(ratios[i] for i in self.pooled), max_size)
        self.register_buffer("pool_sizes", table, persistent=False)
        self.capacity = tuple(int(row[1:].max()) for row in table)

    def keys_values(self, kv: Tensor) -> Tensor:
        """Normalized key/value map ``(B, C, H, W)`` → key/value tokens ``(B, N, 2C)``, N the pooled pixel count."""
        kv_h, kv_w = kv.shape[2], kv.shape[3]
        if isinstance(kv_h, int) and max(kv_h, kv_w) > self.max_size:
            raise ValueError(f"feature map {kv_h}x{kv_w} exceeds this stage's maximum side {self.max_size}")
        # Ratio 1 is never pooled; an unchanged size pools with 1-pixel windows, i.e. not at all.
        levels = [kv] * len(self.ratios)
        if self.pooled:
            maps = multi_adaptive_max_pool2d(kv, self.pool_sizes[:, kv_h], self.pool_sizes[:, kv_w], self.capacity)
            for i, level in zip(self.pooled, maps, strict=True):
                levels[i] = level
        pooled = []
        for level, dconv in zip(levels, self.dconvs, strict=True):
            level = level + dconv(level)
            pooled.append(level.flatten(2).transpose(1, 2))
        return self.key_value_proj(self.norm(torch.cat(pooled, dim=1)))

    def forward(self, x: Tensor, keys_values: Tensor) -> Tensor:
        """Queries from ``x`` ``(B, C, h, w)`` over ``keys_values`` ``(B, N, 2C)`` → ``(B, C, h, w)``.

        The map stays channels-first throughout: the projections are 1x1 convolutions with the Linear
        weights, and the two products take their transposes as GEMM flags, so no ``(h*w, C)`` copy of
        the map is made per click (the same sums as token-major attention, in another order).
        """
        batch, channels, height, width = x.shape
        head_dims = channels // self.num_heads
        key, value = keys_values.chunk(2, dim=-1)
        # (B, heads, head_dims, N): small, one column per pooled token.
        key = key.reshape(batch, -1, self.num_heads, head_dims).permute(0, 2, 3, 1)
        value = value.reshape(batch, -1, self.num_heads, head_dims).permute(0, 2, 3, 1)
        # The softmax scale goes into the query projection: one multiply of C x C weights, not of the
        # (h*w, N) scores.
        weight, bias = self.query_proj.weight * self.scale, self.query_proj.bias * self.scale
        query = F.conv2d(x, weight[:, :, None, None], bias)
        query = query.reshape(batch, self.num_heads, head_dims, height * width)  # (B, heads, head_dims, h*w)
        attn = query.transpose(-2, -1) @ key  # (B, heads, h*w, N)
        out = value @ attn.softmax(dim=-1).transpose(-2, -1)  # (B, heads, head_dims, h*w)
        out = out.reshape(batch, channels, height, width)
        return F.conv2d(out, self.proj.weight[:, :, None, None], self.proj.bias)


class InvertedBottleneck(nn.Sequential):
    """1x1 expand · Hardswish · depthwise 3x3 · Hardswish · 1x1 project (keys 0, 2, 4)."""

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__(
            nn.Conv2d(embed_dims, hidden_dims, 1),
            nn.Hardswish(),
            nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims),
            nn.Hardswish(),
            nn.Conv2d(hidden_dims, embed_dims, 1),
        )


class PoolingBlock(nn.Module):
    """``x += attn(GN x, GN kv); x += mlp(GN x)`` on maps ``(B, C, h, w)``."""

    def __init__(
        self, target: int, max_size: int, embed_dims: int, num_heads: int, mlp_ratio: int,
        ratios: tuple[int, ...], drop_path: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = nn.GroupNorm(1, embed_dims)
        self.norm_kv = nn.GroupNorm(1, embed_dims)
        self.attn = PoolingAttention(target, max_size, embed_dims, num_heads, ratios)
        self.norm2 = nn.GroupNorm(1, embed_dims)
        self.mlp = InvertedBottleneck(embed_dims, mlp_ratio * embed_dims)
        self.drop_path = DropPath(drop_path)

    def context(self, kv: Tensor) -> Tensor:
        """The part that depends on ``kv`` ``(B, C, H, W)`` only: key/value tokens ``(B, N, 2C)``."""
        return self.attn.keys_values(self.norm_kv(kv))

    def forward(self, x: Tensor, kv: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        """The block on ``x`` ``(B, C, h, w)`` with keys/values from the map ``kv`` or, computed before,
        its :meth:`context`."""
        if context is None:
            if kv is None:
                raise ValueError("a pooling block needs its key/value map or its context")
            context = self.context(kv)
        x = x + self.drop_path(self.attn(self.norm1(x), context))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """3x3/stride-2 patch merging: ``(B, C, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))``.

    Equivalent to ``nn.Unfold(3, stride=2, padding=1)`` (channel-major 9C vectors), LayerNorm, Linear,
    computed without the ``(B, 9C, h, w)`` patch map: the Linear of the normalized patch is
    ``(conv(x) - mean * sum(W)) / std`` with ``W`` the Linear's weights (times the norm's scale) as a
    3x3/stride-2 convolution, and the patch mean and mean square are 3x3/stride-2 average poolings
    of the channel means of ``x`` and ``x²`` (zero padding counted, as unfold pads with zeros).
    """

    def __init__(self, in_dims: int, out_dims: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(9 * in_dims)
        self.reduction = nn.Linear(9 * in_dims, out_dims, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        channels = self.norm.normalized_shape[0] // 9  # from the weights, so the kernel exports as a constant
        moments = torch.cat([x.mean(dim=1, keepdim=True), x.pow(2).mean(dim=1, keepdim=True)], dim=1)
        moments = F.avg_pool2d(moments, 3, stride=2, padding=1, count_include_pad=True)  # (B, 2, h, w)
        mean, mean_square = moments[:, :1], moments[:, 1:]
        # E[v²] - E[v]² rounds to a slightly negative number for a constant patch. (INT8 keeps this
        # whole block float: see quantize.options.DEFAULT_KEEP_FLOAT.)
        std = torch.sqrt((mean_square - mean.pow(2)).clamp(min=0.0) + self.norm.eps)
        kernel = (self.reduction.weight * self.norm.weight).reshape(-1, channels, 3, 3)  # (C_out, C, 3, 3)
        projected = F.conv2d(x, kernel, stride=2, padding=1)  # (B, C_out, h, w)
        kernel_sum = kernel.sum(dim=(1, 2, 3))[None, :, None, None]
        bias = (self.reduction.weight * self.norm.bias).sum(dim=1)[None, :, None, None]
        return (projected - mean * kernel_sum) / std + bias


class CoarseStage(nn.Module):
    """Coarse blocks of one stage; the first attends to the raw FPN level, later ones to themselves.

    The first block's keys/values depend on the FPN level only, so they are the stage's per-image
    context (:meth:`context`): computed once per image, they serve every click.
    """

    def __init__(self, blocks: list[PoolingBlock], downsample: PatchMerging | None) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("an I-MSA stage needs at least one coarse block (it is where the FPN level enters)")
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def context(self, fpn_level: Tensor) -> Tensor:
        """FPN level ``(B, C, H, W)`` → the first block's key/value tokens ``(B, N, 2C)``."""
        return self.blocks[0].context(fpn_level)

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, C, H, W)`` and :meth:`context` → (input of the next stage, this stage's output), both maps."""
        x = self.blocks[0](x, context=context)
        for block in self.blocks[1:]:
            x = block(x, x)
        next_input = x if self.downsample is None else self.downsample(x)
        return next_input, x


class RefineStage(nn.Module):
    """Zoom-in refine blocks: run on the roi crop (the crop is its own key/value) and paste back."""

    def __init__(self, blocks: list[PoolingBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, roi: Tensor | None) -> Tensor:
        """``x`` ``(1, C, h, w)``; ``roi`` ``(4,)`` int64 (left, up, right, bottom) at this stage's scale."""
        if roi is None:
            for block in self.blocks:
                x = block(x, x)
            return x
        left, up, right, bottom = roi[0], roi[1], roi[2], roi[3]
        crop = x[:, :, up:bottom, left:right]
        for block in self.blocks:
            crop = block(crop, crop)
        height, width = x.shape[2], x.shape[3]
        pasted = F.pad(crop, (left, width - right, up, height - bottom))
        rows = torch.arange(height)
        cols = torch.arange(width)
        inside = ((rows >= up) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))[None, :]
        return torch.where(inside, pasted, x)


class IMSA(nn.Module):
    """Neck: 4 FPN maps + reference label (+ roi) → 4 maps with the same shapes.

    Inputs: ``features`` ``(B, 32, H/4, W/4) … (B, 256, H/32, W/32)``; ``ref_label`` ``(B, 1, H, W)``
    with codes 0..4; ``roi`` ``(4,)`` or ``(1, 4)`` int64 image-pixel box (multiples of 32, right/bottom
    exclusive) or None for no zoom-in. A roi requires batch 1 and only affects the refine stages.
    """

    def __init__(self, cfg: InterFormerConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        dims = cfg.fpn_dims
        self.patch_embed = nn.Parameter(torch.zeros(NUM_REF_LABELS, dims[0]))
        total = sum(cfg.neck_depths)
        rates = torch.linspace(0, drop_path_rate, total).tolist() if total else []
        self.stages = nn.ModuleList()
        self.refine_stages = nn.ModuleList()
        first_block = 0
        for i, (depth, coarse) in enumerate(zip(cfg.neck_depths, cfg.neck_refine_start, strict=True)):
            target = cfg.img_size // FEATURE_STRIDES[i]
            max_size = MAX_IMAGE_SIDE // FEATURE_STRIDES[i]

            def block(rate: float, i: int = i, target: int = target, max_size: int = max_size) -> PoolingBlock:
                return PoolingBlock(
                    target, max_size, dims[i], cfg.neck_num_heads[i], cfg.neck_mlp_ratios[i], cfg.pool_ratios[i], rate
                )

            stage_rates = rates[first_block : first_block + depth]
            first_block += depth
            downsample = PatchMerging(dims[i], dims[i + 1]) if i + 1 < len(dims) else None
            self.stages.append(CoarseStage([block(r) for r in stage_rates[:coarse]], downsample))
            refine = [block(r) for r in stage_rates[coarse:]]
            self.refine_stages.append(RefineStage(refine) if refine else nn.Identity())
            self.add_module(f"norm{i}", nn.GroupNorm(1, dims[i]))

    def embed_reference(self, level0: Tensor, ref_label: Tensor) -> Tensor:
        """Add the embedding of ``ref_label`` ``(B, 1, H, W)`` to ``level0`` ``(B, C, H/4, W/4)``.

        The official code embeds at full resolution and then resizes bilinearly to a quarter. Both
        steps are linear, and a 4x bilinear reduction (half-pixel centres) averages exactly the pixels
        at rows/columns ``4i+1`` and ``4i+2`` with weight 1/4 each: so the same values come from
        four quarter-resolution samples of the label (their one-hot counts, a quarter each, times
        the embedding table; a matrix product rather than a table lookup, whose gradient would be
        accumulated in a thread-dependent order). Counts and product stay channels-first, so the
        exported graph has no transpose of the ``(B, C, H/4, W/4)`` result.
        """
        codes = torch.arange(NUM_REF_LABELS, device=ref_label.device)[None, :, None, None]  # (1, 5, 1, 1)
        samples = [ref_label[:, :, dy::4, dx::4].long() for dy in (1, 2) for dx in (1, 2)]  # 4 x (B, 1, H/4, W/4)
        counts = sum((sample == codes).to(level0.dtype) for sample in samples)  # (B, 5, H/4, W/4)
        embedded = torch.matmul(self.patch_embed.t(), (counts * 0.25).flatten(2))  # (B, C, H/4 * W/4)
        return level0 + embedded.reshape(level0.shape)

    def image_context(self, features: tuple[Tensor, ...] | list[Tensor]) -> list[Tensor]:
        """What the neck computes from the features alone, once per image: per stage ``i`` the first
        block's key/value tokens ``(B, N_i, 2 C_i)`` (N_i: the pooled pixel count of FPN level ``i``)."""
        return [stage.context(level) for stage, level in zip(self.stages, features, strict=True)]

    def forward(
        self,
        features: tuple[Tensor, ...] | list[Tensor],
        ref_label: Tensor,
        roi: Tensor | None = None,
        context: list[Tensor] | tuple[Tensor, ...] | None = None,
    ) -> list[Tensor]:
        """Neck outputs; with ``context`` (:meth:`image_context` of the same features) only ``features[0]``
        is read."""
        if context is None:
            context = self.image_context(features)
        if roi is not None:
            roi = roi.reshape(4).to(torch.int64)
            if isinstance(features[0].shape[0], int):
                _check_roi(roi, features[0].shape[0], ref_label.shape[2], ref_label.shape[3])
        x = self.embed_reference(features[0], ref_label)
        outputs = []
        for i, (stage, refine) in enumerate(zip(self.stages, self.refine_stages, strict=True)):
            x, out = stage(x, context[i])
            if isinstance(refine, RefineStage):
                out = refine(out, None if roi is None else torch.div(roi, FEATURE_STRIDES[i], rounding_mode="trunc"))
            outputs.append(getattr(self, f"norm{i}")(out))
        return outputs


def _check_roi(roi: Tensor, batch: int, height: int, width: int) -> None:
    if batch != 1:
        raise ValueError(f"zoom-in needs batch size 1, got {batch}")
    left, up, right, bottom = (int(v) for v in roi)
    if any(v % FEATURE_STRIDES[-1] for v in (left, up, right, bottom)):
        raise ValueError(f"roi {roi.tolist()} must be multiples of {FEATURE_STRIDES[-1]}")
    if not (0 <= left < right <= width and 0 <= up < bottom <= height):
        raise ValueError(f"roi {roi.tolist()} is empty or outside the {height}x{width} image")
