"""Export-friendly building blocks against their PyTorch definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interformer_edge.models.imsa import PatchMerging, pooled_size_table
from interformer_edge.models.layers import adaptive_avg_pool2d, multi_adaptive_max_pool2d


@pytest.mark.parametrize(("height", "width"), [(1, 1), (7, 5), (24, 24), (33, 17), (96, 130)])
def test_stacked_adaptive_max_pooling_is_bit_exact(height: int, width: int) -> None:
    """Every pooled size of an I-MSA layer (incl. unchanged sizes and size 1) equals F.adaptive_max_pool2d."""
    x = torch.randn(2, 3, height, width)
    table = pooled_size_table(96, (12, 16, 20, 24), 256)
    capacity = tuple(int(row[1:].max()) for row in table)
    out_h, out_w = table[:, height], table[:, width]
    for j, pooled in enumerate(multi_adaptive_max_pool2d(x, out_h, out_w, capacity)):
        expected = F.adaptive_max_pool2d(x, (int(out_h[j]), int(out_w[j])))
        assert pooled.shape == expected.shape
        assert torch.equal(pooled, expected)


def test_stacked_pooling_with_arbitrary_sizes_up_to_the_capacity() -> None:
    x = torch.randn(1, 2, 19, 23)
    sizes = torch.tensor([19, 1, 6], dtype=torch.int64)  # identity, global, non-divisible
    for j, pooled in enumerate(multi_adaptive_max_pool2d(x, sizes, sizes, (19, 3, 8))):
        assert torch.equal(pooled, F.adaptive_max_pool2d(x, int(sizes[j])))


@pytest.mark.parametrize(("height", "width", "out"), [(6, 6, 3), (7, 11, 6), (5, 3, 2)])
def test_adaptive_avg_pool_matches_pytorch(height: int, width: int, out: int) -> None:
    x = torch.randn(1, 4, height, width)
    torch.testing.assert_close(adaptive_avg_pool2d(x, out), F.adaptive_avg_pool2d(x, out))


@pytest.mark.parametrize(("height", "width"), [(16, 16), (7, 10), (1, 3)])
def test_patch_merging_equals_unfold_layernorm_linear(height: int, width: int) -> None:
    """The channels-first form computes the official token-major merge: unfold, LayerNorm, Linear."""
    torch.manual_seed(0)
    merge = PatchMerging(5, 8)
    with torch.no_grad():  # a norm that is not the identity, so the affine part is checked too
        merge.norm.weight.uniform_(0.5, 1.5)
        merge.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 5, height, width) * 3 + 1
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    tokens = F.unfold(x, 3, stride=2, padding=1).transpose(1, 2)  # (B, h*w, 9C), channel-major
    expected = merge.reduction(merge.norm(tokens)).transpose(1, 2).reshape(2, 8, out_h, out_w)
    torch.testing.assert_close(merge(x), expected, atol=1e-5, rtol=1e-5)
