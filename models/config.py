"""Architecture description of an InterFormer model: presets and inference from a checkpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from interformer_edge.core.spec import FEATURE_CHANNELS

# Pooling ratios of the four I-MSA stages (official default, not recoverable from tensor shapes).
DEFAULT_POOL_RATIOS: tuple[tuple[int, ...], ...] = ((12, 16, 20, 24), (6, 8, 10, 12), (3, 4, 5, 6), (1, 2, 3, 4))


@dataclass(frozen=True)
class InterFormerConfig:
    """Everything needed to build the network; field names follow the official configs.

    ``neck_refine_start[i]`` is the number of coarse blocks of stage ``i``; the remaining
    ``neck_depths[i] - neck_refine_start[i]`` blocks are zoom-in refine blocks.
    """

    name: str = "custom"
    # MAE ViT backbone
    img_size: int = 512  # training size; sets the 32x32 position tables for patch 16
    patch_size: int = 16
    embed_dims: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: int = 4
    # SimpleFPN
    fpn_dims: tuple[int, int, int, int] = FEATURE_CHANNELS
    # I-MSA neck
    neck_depths: tuple[int, ...] = (1, 1, 2, 1)
    neck_refine_start: tuple[int, ...] = (1, 1, 2, 1)
    neck_num_heads: tuple[int, ...] = (1, 2, 4, 8)
    neck_mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
    pool_ratios: tuple[tuple[int, ...], ...] = field(default=DEFAULT_POOL_RATIOS)
    # UPerHead
    head_channels: int = 64
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    num_classes: int = 2

    @property
    def grid_size(self) -> int:
        """Side of the square token grid the position tables were trained for (32 for 512/16)."""
        return self.img_size // self.patch_size

    @property
    def refine_depths(self) -> tuple[int, ...]:
        return tuple(d - s for d, s in zip(self.neck_depths, self.neck_refine_start, strict=True))

    @property
    def has_refine(self) -> bool:
        """Whether the neck has zoom-in refine blocks (Tiny has, Light has not)."""
        return any(d > 0 for d in self.refine_depths)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InterFormerConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown architecture fields: {sorted(unknown)}")
        values = {k: _as_tuple(v) for k, v in data.items()}
        return cls(**values)


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


PRESETS: dict[str, InterFormerConfig] = {
    # InterFormer-Light: MAE ViT-B, I-MSA depths (1,1,2,1), no refine stages.
    "light": InterFormerConfig(name="light", embed_dims=768, depth=12, num_heads=12, neck_depths=(1, 1, 2, 1)),
    # InterFormer-Tiny: MAE ViT-L, I-MSA depths (2,2,6,3) with zoom-in refine stages.
    "tiny": InterFormerConfig(name="tiny", embed_dims=1024, depth=24, num_heads=16, neck_depths=(2, 2, 6, 3)),
}


def preset(name: str) -> InterFormerConfig:
    """Look up a named architecture (``light`` or ``tiny``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def _count_indices(keys: list[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def config_from_state_dict(state_dict: Mapping[str, Any], name: str = "custom") -> InterFormerConfig:
    """Infer the architecture from tensor shapes (keys without a ``module.`` prefix).

    Widths, depths, stages and MLP ratios come from shapes; attention heads follow MAE
    (width / 64) and the I-MSA heads and pooling ratios are the official defaults, since
    no tensor shape records them.
    """
    keys = list(state_dict)
    try:
        pos_embed = state_dict["backbone.pos_embed"]
        patch_w = state_dict["backbone.patch_embed.projection.weight"]
        embed_dims = int(pos_embed.shape[-1])
        grid = round((int(pos_embed.shape[1]) - 1) ** 0.5)
        patch = int(patch_w.shape[-1])
        depth = _count_indices(keys, r"backbone\.layers\.(\d+)\.")
        ffn_hidden = int(state_dict["backbone.layers.0.ffn.layers.0.0.weight"].shape[0])
        fpn_dims = (
            int(state_dict["backbone.fpn.rescale_ops.0.5.weight"].shape[0]),
            int(state_dict["backbone.fpn.rescale_ops.1.2.weight"].shape[0]),
            int(state_dict["backbone.fpn.rescale_ops.2.0.weight"].shape[0]),
            int(state_dict["backbone.fpn.rescale_ops.3.2.weight"].shape[0]),
        )
        num_stages = _count_indices(keys, r"neck\.stages\.(\d+)\.")
        coarse = tuple(_count_indices(keys, rf"neck\.stages\.{i}\.blocks\.(\d+)\.") for i in range(num_stages))
        refine = tuple(_count_indices(keys, rf"neck\.refine_stages\.{i}\.blocks\.(\d+)\.") for i in range(num_stages))
        mlp_ratios = tuple(
            int(state_dict[f"neck.stages.{i}.blocks.0.mlp.0.weight"].shape[0]) // fpn_dims[i] for i in range(num_stages)
        )
        conv_seg = state_dict["decode_head.conv_seg.weight"]
        num_scales = _count_indices(keys, r"decode_head\.psp_modules\.(\d+)\.")
    except KeyError as err:
        raise ValueError(f"not an InterFormer checkpoint: missing {err.args[0]!r}") from None
    if grid * grid + 1 != int(pos_embed.shape[1]):
        raise ValueError(f"backbone.pos_embed has {pos_embed.shape[1]} tokens: not a square grid plus cls")
    if num_stages != 4 or num_scales != 4:
        raise ValueError(f"expected 4 neck stages and 4 pooling scales, found {num_stages} and {num_scales}")
    base = InterFormerConfig()
    return replace(
        base,
        name=name,
        img_size=grid * patch,
        patch_size=patch,
        embed_dims=embed_dims,
        depth=depth,
        num_heads=max(1, embed_dims // 64),
        mlp_ratio=ffn_hidden // embed_dims,
        fpn_dims=fpn_dims,
        neck_depths=tuple(c + r for c, r in zip(coarse, refine, strict=True)),
        neck_refine_start=coarse,
        neck_mlp_ratios=mlp_ratios,
        head_channels=int(conv_seg.shape[1]),
        num_classes=int(conv_seg.shape[0]),
    )
