"""Small building blocks shared by several modules."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth for residual branches (training only; identity in eval)."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def adaptive_windows(in_size: Tensor | int, out_size: Tensor | int) -> tuple[Tensor, Tensor]:
    """Start (inclusive) and end (exclusive) of PyTorch's adaptive pooling windows, each ``(out_size,)``.

    start = floor(i * in / out), end = ceil((i + 1) * in / out), in exact integer arithmetic.
    Every operand is non-negative, so truncating division equals floor division; it exports to a
    single ONNX ``Div`` where floor division costs eight nodes (sign correction) per division.
    """
    n_in = torch.as_tensor(in_size, dtype=torch.int64)
    n_out = torch.as_tensor(out_size, dtype=torch.int64)
    i = torch.arange(n_out, dtype=torch.int64)
    start = torch.div(i * n_in, n_out, rounding_mode="trunc")
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="trunc")
    return start, end


def adaptive_max_pool_axis(x: Tensor, dim: int, out_size: Tensor | int) -> Tensor:
    """Adaptive max pooling along one axis of ``x`` (bit-exact with ``F.adaptive_max_pool2d``).

    Each window is gathered with its last index repeated up to the longest window length, so
    the graph needs no loop and no data-dependent shapes beyond the output size.
    """
    start, end = adaptive_windows(x.shape[dim], out_size)
    longest = torch.max(end - start)
    offsets = torch.arange(longest, dtype=torch.int64)
    index = torch.minimum(start[:, None] + offsets[None, :], (end - 1)[:, None])
    gathered = x.index_select(dim, index.reshape(-1))
    shape = list(x.shape)
    shape[dim : dim + 1] = [start.shape[0], -1]
    return gathered.reshape(shape).amax(dim + 1)


def adaptive_max_pool2d(x: Tensor, out_h: Tensor | int, out_w: Tensor | int) -> Tensor:
    """``(B, C, H, W) -> (B, C, out_h, out_w)``; max over a rectangle is separable."""
    return adaptive_max_pool_axis(adaptive_max_pool_axis(x, 2, out_h), 3, out_w)


def adaptive_avg_pool2d(x: Tensor, out_size: int) -> Tensor:
    """``(B, C, H, W) -> (B, C, out, out)`` as ``F.adaptive_avg_pool2d`` (window averages), any H, W.

    Written as two small averaging matrices so that non-divisible dynamic sizes export to ONNX.
    """

    def averaging_matrix(in_size: Tensor | int) -> Tensor:
        start, end = adaptive_windows(in_size, out_size)
        pos = torch.arange(torch.as_tensor(in_size), dtype=torch.int64)
        inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
        return inside.to(x.dtype) / (end - start).to(x.dtype)[:, None]

    rows = averaging_matrix(x.shape[2])  # (out, H)
    cols = averaging_matrix(x.shape[3])  # (out, W)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
