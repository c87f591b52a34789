"""How much memory the image encoder needs for a canvas size, and whether this machine has it.

The ViT backbone attends globally: every one of the ``N = (Hp / patch) * (Wp / patch)`` tokens to
every other, so the encoder's working memory grows with ``N²``, the fourth power of the image side.
ONNX Runtime builds the relative-position index (int64, ``N²``) and per head the attention logits,
the gathered position bias and the softmax (float32, ``N²`` each) at once. Doubling the side costs
about 16x the memory; a 5000x5000 photo at full size would need hundreds of GiB.

:func:`estimate_encoder_bytes` is a fit to measurements of peak RSS growth during one encode on
ONNX Runtime (CPU, 2 threads) with two exported models, at 512, 1024 and 1536 px squares:

* 3 heads, width 192 (the bundled default): +84, +1168, +4872 MiB;
* 1 head, width 64: +48, +643, +2778 MiB.

Per token pair that is about ``19.5 + 10.2 * heads`` bytes and per token ``17.5 KB + 400 B * width``;
the estimate rounds both up (``20 + 12 * heads``, ``18 KB + 420 B * width``), so it lies a little
above every measurement (e.g. 1281 vs 1168 MiB at 1024 px for the default model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from .errors import MemoryBudgetError

# Bytes per token pair (N²) and per token (N) of the fit described in the module docstring.
PAIR_BYTES_SHARED = 20
PAIR_BYTES_PER_HEAD = 12
TOKEN_BYTES_SHARED = 18_000
TOKEN_BYTES_PER_CHANNEL = 420
# The official ViT-B (InterFormer Light/Tiny) when the manifest does not say.
_DEFAULT_ARCH = {"patch_size": 16, "num_heads": 12, "embed_dims": 768}


def estimate_encoder_bytes(architecture: Mapping[str, Any], padded_size: tuple[int, int]) -> int:
    """Peak extra memory (bytes) of one encoder run on a ``padded_size`` ``(Hp, Wp)`` canvas.

    ``architecture`` is the manifest's ``architecture`` (``patch_size``, ``num_heads``, ``embed_dims``).
    """
    arch = {**_DEFAULT_ARCH, **{k: v for k, v in architecture.items() if k in _DEFAULT_ARCH}}
    patch = int(arch["patch_size"])
    tokens = (padded_size[0] // patch) * (padded_size[1] // patch)
    pair = PAIR_BYTES_SHARED + PAIR_BYTES_PER_HEAD * int(arch["num_heads"])
    token = TOKEN_BYTES_SHARED + TOKEN_BYTES_PER_CHANNEL * int(arch["embed_dims"])
    return tokens * tokens * pair + tokens * token


def available_bytes() -> int:
    """Memory this process can still take: the system's available memory, or less under a cgroup limit."""
    available = int(psutil.virtual_memory().available)
    try:  # containers: cgroup v2 limit minus what the group already uses
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, available)


def largest_fitting_side(architecture: Mapping[str, Any], budget: int, divisor: int) -> int:
    """The longest square side (a multiple of ``divisor``) whose estimate fits in ``budget`` bytes (0: none)."""
    side = 0
    while estimate_encoder_bytes(architecture, (side + divisor, side + divisor)) <= budget:
        side += divisor
        if side >= 1 << 16:
            break
    return side


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_encoder_memory(
    architecture: Mapping[str, Any],
    image_size: tuple[int, int],
    padded_size: tuple[int, int],
    divisor: int,
    available: int | None = None,
) -> int:
    """Raise :class:`MemoryBudgetError` (one line naming ``max_side``) if encoding would not fit in memory.

    Args:
        image_size: ``(H, W)`` of the image as read; padded_size: the encoder canvas it gets.
        available: bytes free (default: :func:`available_bytes`); tests pass a figure.

    Returns:
        The estimate in bytes.
    """
    need = estimate_encoder_bytes(architecture, padded_size)
    free = available_bytes() if available is None else available
    if need > free:
        fits = largest_fitting_side(architecture, free // 2, divisor)  # leave the rest to everything else
        advice = f"max_side={fits} needs half of that" if fits else "not even the smallest size fits: free memory"
        raise MemoryBudgetError(
            f"encoding the {image_size[0]}x{image_size[1]} image on a {padded_size[0]}x{padded_size[1]} canvas "
            f"needs about {gib(need)} of memory (it grows with the fourth power of the side), "
            f"only {gib(free)} is available: pass a smaller max_side ({advice})"
        )
    return need
