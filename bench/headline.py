"""The report's headline: every row's decoder and encoder p50 at one size and thread count, as one sentence."""

from __future__ import annotations

from collections.abc import Sequence

from interformer_edge.core.manifest import BASE_PRECISION
from interformer_edge.runtime.backends import DEFAULT_COMPUTE

from .configs import PYTORCH, QUANTIZED
from .measurements import LatencyRow
from .report_model import Headline, Report
from .tables import row_name

HEADLINE_SIZE = "512x512"  # the size the headline prefers (the official demo's working size)


def headline(report: Report) -> Headline | None:
    """The rows at one size (512x512 if measured, else the first) and the largest thread count, fastest
    decoder first, as numbers and as one sentence (None without latency rows)."""
    rows = report.latency or []
    if not rows:
        return None
    sizes = [r.size for r in rows]
    size = HEADLINE_SIZE if HEADLINE_SIZE in sizes else sizes[0]
    threads = max(r.threads for r in rows if r.size == size)
    chosen = sorted((r for r in rows if r.size == size and r.threads == threads), key=lambda r: r.decoder.p50_ms)
    decoder = {row_name(r.config): r.decoder.p50_ms for r in chosen}
    encoder = {row_name(r.config): r.encoder.p50_ms for r in chosen}
    parts = []
    for row in chosen:
        speedup = row.speedup_vs_pytorch.decoder if row.speedup_vs_pytorch else None
        extra = f" ({speedup:.2f}x PyTorch)" if speedup and row.config.backend != PYTORCH else ""
        parts.append(f"{row_name(row.config)} {row.decoder.p50_ms:.1f} ms{extra}")
    text = f"at {size}, {threads} thread(s), decoder per click (p50): " + ", ".join(parts)
    text += "; encoder per image (p50): " + ", ".join(f"{n} {v:.1f} ms" for n, v in encoder.items())
    if report.machine.emulated:
        text = f"[{report.machine.emulated}] {text}"
    return Headline(size, threads, decoder, encoder, _int8_vs_fp32(chosen), text)


def _int8_vs_fp32(rows: Sequence[LatencyRow]) -> dict[str, float]:
    """Per backend: FP32 decoder p50 / INT8 decoder p50 (> 1: INT8 is faster), both with float layers in f32
    and shapes not fixed."""
    fp32, int8 = (BASE_PRECISION, DEFAULT_COMPUTE), (QUANTIZED, DEFAULT_COMPUTE)
    p50 = {
        (r.config.backend, r.config.variant, r.config.compute): r.decoder.p50_ms for r in rows if not r.config.static
    }
    return {
        backend: round(p50[(backend, *fp32)] / p50[(backend, *int8)], 3)
        for backend, variant, compute in p50
        if (variant, compute) == int8 and (backend, *fp32) in p50
    }
