"""ONNX Runtime static INT8: QDQ format, per-channel int8 weights (full or 7-bit range), uint8 or int8
activations (the target's scheme, :mod:`.targets`).

Only ``Conv`` and ``MatMul`` with constant weights are quantized (the ops ONNX Runtime runs as
integer kernels, ``QLinearConv`` / ``QLinearMatMul`` after its QDQ fusion); normalizations,
softmax, resizes and the pooling index arithmetic stay float. uint8 activations with int8 weights
is ONNX Runtime's fast combination on x86 (VNNI) and on ARM64.

Activation ranges are computed once per method and cached in a JSON file, so that re-quantizing
with other layers kept in float (the sensitivity search) costs no further calibration runs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

QUANTIZED_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul")
ORT_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")


def quantizable_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that INT8 quantization turns into integer kernels (Conv/MatMul with a constant weight)."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in QUANTIZED_OP_TYPES and len(node.input) > 1 and node.input[1] in constants
    ]


def matching_layers(layers: Sequence[str], patterns: Iterable[str]) -> list[str]:
    """The layers whose name matches any of the regular expressions ``patterns`` (``re.search``)."""
    compiled = [re.compile(p) for p in patterns]
    return [name for name in layers if any(p.search(name) for p in compiled)]


class _Reader:
    """ONNX Runtime's calibration reader protocol over a list of input dicts."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._feeds):
            return None
        self._index += 1
        return dict(self._feeds[self._index - 1])

    def rewind(self) -> None:
        self._index = 0

    def set_range(self, start_index: int, end_index: int) -> None:  # part of the protocol, unused here
        self._feeds = self._feeds[start_index:end_index]
        self._index = 0


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer warns through the root logger on every call that it would like a shape
    pre-processing pass (which cannot infer this decoder's dynamic shapes and is not needed)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(
    fp32_path: Path,
    out_path: Path,
    feeds: Sequence[Mapping[str, np.ndarray]],
    method: str,
    keep_float: Sequence[str],
    cache_path: Path,
    metadata: Mapping[str, str],
    reduce_range: bool,
    activations: str = "uint8",
) -> None:
    """Write the INT8 QDQ model of ``fp32_path`` to ``out_path``.

    Args:
        feeds: calibration input dicts (ignored when ``cache_path`` already holds the ranges).
        method: ``minmax``, ``entropy`` or ``percentile`` (99.999th percentile).
        keep_float: node names left in float.
        cache_path: JSON file of the activation ranges, written on first use, reused afterwards.
        metadata: ``metadata_props`` for the output (replacing the FP32 model's keys of the same name).
        reduce_range: 7-bit weights, so that x86 kernels without VNNI cannot saturate (see :mod:`.targets`).
        activations: ``uint8`` (u8s8) or ``int8`` (s8s8, faster on x86 VNNI, saturates without it).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in ORT_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use {', '.join(ORT_METHODS)}")
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    with _quiet_root_logger():
        quantize_static(
            str(fp32_path),
            str(out_path),
            _Reader(feeds) if not cache_path.is_file() else None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type={"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[activations],
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OP_TYPES),
            nodes_to_exclude=list(keep_float),
            calibrate_method=calibrate,
            extra_options=extra,
            calibration_cache_path=str(cache_path),
        )
    model = onnx.load(str(out_path))
    # Shape hints are not needed to run the graph and are a sizeable part of a small decoder file.
    model.graph.ClearField("value_info")
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out_path))
