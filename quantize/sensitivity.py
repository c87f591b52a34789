"""Which layers hurt most when quantized, by measurement (one-at-a-time fallback).

Starting from the fully quantized decoder, each quantizable layer in turn is put back to float
and the decoder's error against FP32 is measured on a few calibration inputs (never the gate's
held-out objects). A layer's sensitivity is how much error disappears when it alone stays float.
Re-quantizing is cheap because the activation ranges are cached (see :mod:`.onnxrt`).

The error of a decoder on a sample is ``1 - IoU`` of its mask with the FP32 mask plus a small
weight on the mean absolute logit difference, so that ties in mask agreement are broken by how
close the logits are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interformer_edge.core.evaluation import iou
from interformer_edge.core.spec import LOGITS_OUTPUT
from interformer_edge.runtime.backends import load_graph

LOGIT_WEIGHT = 0.01

Feed = Mapping[str, np.ndarray]
Quantizer = Callable[[Path, Sequence[str]], None]  # (output path, layers kept float) -> writes a model


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    error_saved: float  # error(all quantized) - error(all but this layer quantized); larger = more sensitive


def _mask(logits: np.ndarray) -> np.ndarray:
    return logits[0, 1] > logits[0, 0]


def decoder_error(path: Path, feeds: Sequence[Feed], references: Sequence[np.ndarray], threads: int | None) -> float:
    """Mean error (module docstring) of the ONNX decoder at ``path`` against FP32 ``references`` logits."""
    graph = load_graph(path, backend="onnxruntime", threads=threads)
    errors = []
    for feed, reference in zip(feeds, references, strict=True):
        logits = graph.run(dict(feed))[LOGITS_OUTPUT]
        mask_error = 1.0 - iou(_mask(logits), _mask(reference))
        errors.append(mask_error + LOGIT_WEIGHT * float(np.mean(np.abs(logits - reference))))
    return float(np.mean(errors))


def rank_layers(
    fp32_path: Path,
    layers: Sequence[str],
    always_float: Sequence[str],
    quantize: Quantizer,
    feeds: Sequence[Feed],
    work_dir: Path,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[LayerSensitivity]:
    """``layers`` ordered from most to least sensitive (see the module docstring).

    Args:
        fp32_path: the FP32 ONNX decoder (gives the reference logits).
        layers: candidate layers (quantized in the base model).
        always_float: layers kept float in every model measured (e.g. the default keep-float set).
        quantize: writes an INT8 model keeping the given layers float.
        feeds: measurement inputs (calibration sessions, not the gate's objects).
        progress: called with the number of layers measured.
    """
    fp32 = load_graph(fp32_path, backend="onnxruntime", threads=threads)
    references = [fp32.run(dict(feed))[LOGITS_OUTPUT] for feed in feeds]
    probe = work_dir / "sensitivity.onnx"
    quantize(probe, list(always_float))
    base = decoder_error(probe, feeds, references, threads)
    ranked = []
    for index, layer in enumerate(layers):
        quantize(probe, [*always_float, layer])
        ranked.append(LayerSensitivity(layer, base - decoder_error(probe, feeds, references, threads)))
        if progress is not None:
            progress(index + 1)
    probe.unlink(missing_ok=True)
    return sorted(ranked, key=lambda s: -s.error_saved)
