"""OpenVINO INT8 through NNCF post-training quantization of the FP32 IR.

NNCF inserts FakeQuantize operations that OpenVINO's CPU plugin executes as integer kernels. The
``mixed`` preset (symmetric weights, asymmetric activations) suits the decoder's one-sided
activations (after Hardswish/ReLU). Layers are named as in the ONNX graph they were converted from,
so the float-kept layers found on ONNX Runtime map across: a convolution ``/x/Conv`` becomes
``/x/Conv/WithoutBiases`` in the IR.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.spec import LOGITS_RESIZE_SCOPE
from interformer_edge.core.spec import OPENVINO_RT_INFO_SECTION as RT_INFO_SECTION

NNCF_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
# As on ONNX Runtime, only convolutions and matrix products get integer inputs. NNCF would also
# quantize the inputs of residual additions, resizes and concatenations; on the bundled model that
# cost accuracy and gained nothing in size (docs/int8.md).
FLOAT_OP_TYPES: tuple[str, ...] = ("Add", "Interpolate", "Concat")


def _range_estimator(method: str) -> Any:
    """NNCF ``RangeEstimatorParameters`` of a calibration method name."""
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # "entropy" → NNCF's histogram-optimal ranges, "percentile" → mean of per-sample quantiles.
    return {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "entropy": RangeEstimatorParametersSet.HISTOGRAM,
        "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
    }[method]


def _check_layers_exist(model: Any, onnx_layers: Sequence[str]) -> None:
    """Fail loudly if a float-kept ONNX layer has no IR operation (the name mapping broke)."""
    names = [op.get_friendly_name() for op in model.get_ops()]
    for layer, pattern in zip(onnx_layers, ignored_patterns(onnx_layers), strict=True):
        if not any(re.fullmatch(pattern, name) for name in names):
            raise ValueError(f"no OpenVINO operation corresponds to the ONNX layer {layer!r}")


def ignored_patterns(onnx_layers: Sequence[str]) -> list[str]:
    """NNCF name patterns of the IR operations made from the ONNX nodes ``onnx_layers``."""
    return [re.escape(name) + r"(/WithoutBiases)?$" for name in onnx_layers]


def quantize_openvino(
    fp32_xml: Path,
    out_xml: Path,
    feeds: Sequence[Mapping[str, np.ndarray]],
    method: str,
    keep_float: Sequence[str],
    metadata: Mapping[str, str],
    overflow_fix: str,
    float_regions: Sequence[str] = (),
) -> None:
    """Write the NNCF INT8 IR of ``fp32_xml`` to ``out_xml`` (+ ``.bin``).

    Args:
        feeds: calibration input dicts (all are used).
        method: ``minmax``, ``entropy`` (histogram) or ``percentile`` (mean quantile).
        keep_float: ONNX node names whose IR operations stay float.
        metadata: written into the IR's ``rt_info`` section ``interformer_edge``.
        overflow_fix: NNCF's ``enable`` (7-bit weights on every layer, accurate on x86 without VNNI) or
            ``disable`` (full 8-bit weights); see :mod:`.targets`.
        float_regions: regular expressions of ONNX node names (``--keep-float``) whose IR operations all
            stay float. ONNX Runtime quantizes convolutions and matrix products only, so there the names
            of those suffice; NNCF also gives integer inputs to element-wise operations, reductions and
            poolings, which inside a normalization written out (PatchMerging's) ruins it.
    """
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from interformer_edge.runtime.backends import openvino_core

    if method not in NNCF_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use {', '.join(NNCF_METHODS)}")
    nncf.set_log_level(logging.ERROR)
    model = openvino_core().read_model(str(fp32_xml))
    data = list(feeds)
    # validate=False: a model may lack some of the float op types (the layer names are checked below).
    patterns = ignored_patterns(keep_float) + [f"(?:{region}).*" for region in float_regions]
    patterns.append(re.escape(LOGITS_RESIZE_SCOPE) + "/.*")  # the logits' resize (see export) stays float
    ignored = nncf.IgnoredScope(patterns=patterns, types=list(FLOAT_OP_TYPES), validate=False)
    _check_layers_exist(model, keep_float)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(data),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(data),
        ignored_scope=ignored,
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=_range_estimator(method), overflow_fix=OverflowFix(overflow_fix)
        ),
    )
    for key, value in metadata.items():
        quantized.set_rt_info(value, [RT_INFO_SECTION, key])
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
