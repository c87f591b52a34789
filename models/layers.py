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


def _max_over_windows(x: Tensor, dim: int, start: Tensor, end: Tensor) -> Tensor:
    """Max of ``x`` along ``dim`` over the windows ``[start[i], end[i])``: ``dim`` becomes ``len(start)``.

    Each window is gathered with its last index repeated up to the longest window length, so
    the graph needs no loop and no data-dependent shapes beyond the output size.
    """
    longest = torch.max(end - start)
    offsets = torch.arange(longest, dtype=torch.int64)
    index = torch.minimum(start[:, None] + offsets[None, :], (end - 1)[:, None])
    gathered = x.index_select(dim, index.reshape(-1))
    shape = list(x.shape)
    shape[dim : dim + 1] = [start.shape[0], -1]
    return gathered.reshape(shape).amax(dim + 1)


def stacked_adaptive_windows(
    in_size: Tensor | int, out_sizes: Tensor, capacity: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Adaptive pooling windows of several output sizes at once, ``(sum(capacity),)`` starts and ends.

    Block ``j`` holds ``capacity[j]`` windows: those of ``out_sizes[j]`` (``(len(capacity),)`` int64,
    each at most ``capacity[j]``), the last one repeated to fill the block. Fixed block sizes keep the
    shapes rectangular, so one computation serves every pooling ratio of an attention layer.
    """
    block = torch.tensor([j for j, c in enumerate(capacity) for _ in range(c)], dtype=torch.int64)
    local = torch.tensor([i for c in capacity for i in range(c)], dtype=torch.int64)
    n_in = torch.as_tensor(in_size, dtype=torch.int64)
    n_out = out_sizes.index_select(0, block)
    i = torch.minimum(local, n_out - 1)
    start = torch.div(i * n_in, n_out, rounding_mode="trunc")  # non-negative: trunc == floor
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="trunc")
    return start, end


def multi_adaptive_max_pool2d(x: Tensor, out_h: Tensor, out_w: Tensor, capacity: tuple[int, ...]) -> list[Tensor]:
    """``F.adaptive_max_pool2d(x, (out_h[j], out_w[j]))`` for every ``j``, bit-exact, in one pass per axis.

    ``x`` ``(B, C, H, W)``; ``out_h``/``out_w`` ``(k,)`` int64 with ``out_*[j] <= capacity[j]``. The
    stacked windows (:func:`stacked_adaptive_windows`) pool both axes into a ``(B, C, sum(capacity),
    sum(capacity))`` grid whose diagonal blocks are the results. Computing all sizes together instead
    of one by one cuts the exported graph of an I-MSA attention layer to about a third.
    """
    rows = _max_over_windows(x, 2, *stacked_adaptive_windows(x.shape[2], out_h, capacity))
    grid = _max_over_windows(rows, 3, *stacked_adaptive_windows(x.shape[3], out_w, capacity))
    pooled, offset = [], 0
    for j, size in enumerate(capacity):
        pooled.append(grid[:, :, offset : offset + out_h[j], offset : offset + out_w[j]])
        offset += size
    return pooled


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
