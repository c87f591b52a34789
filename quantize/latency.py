"""The quantizer's quick latency check: FP32 vs INT8 decoder of one backend, in process, on random
features of one canvas size (``interformer-bench`` is the real benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.spec import (
    FEATURE_CHANNELS,
    FEATURE_NAMES,
    FEATURE_STRIDES,
    LOGITS_OUTPUT,
    REF_FOREGROUND,
    REF_LABEL_INPUT,
    REF_UNKNOWN,
    ROI_INPUT,
)
from interformer_edge.core.timing import TimingPolicy, measure
from interformer_edge.runtime.backends import Graph, load_graph
from interformer_edge.runtime.decoder import context_inputs
from interformer_edge.runtime.export import Export, RuntimeSettings


def latency_inputs(context: Graph, size: tuple[int, int], uses_roi: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Decoder inputs of a ``size`` (H, W) canvas for timing: random features ``(1, C, H/s, W/s)`` through
    the ``context`` graph, ``ref_label`` ``(1, 1, H, W)`` uint8 with one positive click in the middle, and
    with ``uses_roi`` the whole canvas as ``roi`` ``(1, 4)`` int64."""
    height, width = size
    rng = np.random.default_rng(seed)
    features = {
        name: rng.standard_normal((1, channels, height // stride, width // stride), dtype=np.float32)
        for name, channels, stride in zip(FEATURE_NAMES, FEATURE_CHANNELS, FEATURE_STRIDES, strict=True)
    }
    feed = context_inputs(context, features)
    ref = np.full((1, 1, height, width), REF_UNKNOWN, dtype=np.uint8)
    ref[0, 0, height // 2 - 5 : height // 2 + 5, width // 2 - 5 : width // 2 + 5] = REF_FOREGROUND
    feed[REF_LABEL_INPUT] = ref
    if uses_roi:
        feed[ROI_INPUT] = np.asarray([[0, 0, width, height]], dtype=np.int64)
    return feed


def compare_latency(
    export: Export, backend: str, int8_path: Path, size: tuple[int, int], threads: int | None, runs: int, seed: int
) -> dict[str, Any]:
    """Quick in-process decoder latency of ``export``'s FP32 decoder vs the INT8 file ``int8_path`` on
    ``backend`` (ms, median of exactly ``runs``), at ``size`` (H, W)."""
    settings = RuntimeSettings(backend, threads)
    context = export.graph("context", settings)
    feed = latency_inputs(context, size, export.manifest.zoom_in.uses_roi, seed)
    fp32 = export.graph("decoder", settings)
    int8 = load_graph(int8_path, backend=backend, threads=threads)
    result: dict[str, Any] = {"size": "{}x{}".format(*size), "threads": threads or "default"}
    for name, graph in (("fp32", fp32), ("int8", int8)):
        stats = measure(lambda g=graph: g.run(feed)[LOGITS_OUTPUT], TimingPolicy(warmup=3, min_runs=runs, budget_s=0.0))
        result[name] = round(stats.p50_ms, 2)
    return result
