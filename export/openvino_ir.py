"""ONNX → OpenVINO IR (``.xml`` + ``.bin``), FP32 weights by default or FP16 weights on request."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.spec import LOGITS_OUTPUT, LOGITS_RESIZE_SCOPE
from interformer_edge.core.spec import OPENVINO_RT_INFO_SECTION as RT_INFO_SECTION

# OpenVINO on CPUs with AMX/AVX512-BF16 runs bf16 by default; parity and the manifest's numbers assume f32.


def bin_path(xml: Path) -> Path:
    """The weights file OpenVINO writes beside ``xml``."""
    return xml.with_suffix(".bin")


def convert(
    onnx_path: Path, xml_path: Path, metadata: Mapping[str, str], fp16: bool, logits_by_matmul: bool = False
) -> list[Path]:
    """Convert an ONNX file to IR at ``xml_path`` with ``metadata`` in ``rt_info[interformer_edge]``.

    ``openvino.save_model`` compresses weights to FP16 unless told otherwise, so the flag is always
    passed explicitly. ``logits_by_matmul`` applies :func:`resize_logits_by_matmul` (the decoder).
    Returns the files written (xml and bin).
    """
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if logits_by_matmul:
        resize_logits_by_matmul(model)
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    model.set_rt_info("fp16" if fp16 else "fp32", [RT_INFO_SECTION, "weights"])
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    del model
    return [xml_path, bin_path(xml_path)]


def resize_logits_by_matmul(model: Any) -> None:
    """Replace the bilinear resize that makes the ``logits`` output ``(1, K, H, W)`` from ``(1, K, h, w)``
    by two matrix products, ``rows (H, h) @ logits @ cols (W, w)ᵀ``, in place.

    Why: OpenVINO's CPU Interpolate on a map of two channels (a planar layout: nothing to vectorise
    across) takes 2.5-3 ms at 512x512, longer than any of the decoder's convolutions but the largest;
    the two products take about 1 ms (docs/click-latency.md). The matrices hold PyTorch's bilinear weights
    (``align_corners=False``: source ``(i + 0.5) * h / H - 0.5`` clamped at 0, right neighbour
    clamped at the last row), computed from the shapes in the graph, so the IR still serves every
    size and a fixed-size IR folds them to constants; the logits agree to float rounding (the parity
    gate checks). Operations are named ``{LOGITS_RESIZE_SCOPE}/…`` so that INT8 keeps them float.
    """
    import openvino.opset13 as ops

    results = [r for r in model.get_results() if LOGITS_OUTPUT in r.input_value(0).get_names()]
    resize = results[0].input_value(0).get_node() if len(results) == 1 else None
    if resize is None or resize.get_type_name() != "Interpolate":
        raise ValueError(f"the model has no Interpolate making its {LOGITS_OUTPUT!r} output")
    attrs = resize.get_attributes()
    if (attrs["mode"], attrs["coordinate_transformation_mode"]) != ("linear_onnx", "half_pixel") or any(
        attrs["pads_begin"] + attrs["pads_end"]
    ):
        raise ValueError(f"the {LOGITS_OUTPUT!r} resize is not a plain bilinear one: {attrs}")
    if attrs["shape_calculation_mode"] != "sizes" or resize.get_input_size() != 2:
        raise ValueError(f"the {LOGITS_OUTPUT!r} resize does not give its output sizes for all four axes")
    names = itertools.count()

    def named(node: Any) -> Any:
        node.set_friendly_name(f"{LOGITS_RESIZE_SCOPE}/{next(names)}")
        return node

    def const(value: float | int) -> Any:
        return named(ops.constant(np.asarray(value, np.float32 if isinstance(value, float) else np.int64)))

    def axis_length(shape: Any, axis: int) -> Any:
        return named(ops.gather(shape, const(axis), const(0)))  # scalar int64

    def weights(n_in: Any, n_out: Any) -> Any:
        """``(n_out, n_in)`` float32 bilinear resize matrix of one axis (scalar int64 lengths)."""
        scale = named(ops.divide(named(ops.convert(n_in, "f32")), named(ops.convert(n_out, "f32"))))
        out_pos = named(ops.range(const(0.0), named(ops.convert(n_out, "f32")), const(1.0), "f32"))
        shifted = named(ops.subtract(named(ops.multiply(named(ops.add(out_pos, const(0.5))), scale)), const(0.5)))
        source = named(ops.maximum(shifted, const(0.0)))
        left_f = named(ops.floor(source))
        left = named(ops.convert(left_f, "i64"))
        right = named(ops.minimum(named(ops.add(left, const(1))), named(ops.subtract(n_in, const(1)))))
        right_weight = named(ops.subtract(source, left_f))
        left_weight = named(ops.subtract(const(1.0), right_weight))
        in_pos = named(ops.unsqueeze(named(ops.range(const(0), n_in, const(1), "i64")), const(0)))  # (1, n_in)

        def column(t: Any) -> Any:
            return named(ops.unsqueeze(t, const(1)))  # (n_out, 1)

        def tap(index: Any, weight: Any) -> Any:
            hit = named(ops.convert(named(ops.equal(in_pos, column(index))), "f32"))
            return named(ops.multiply(column(weight), hit))

        return named(ops.add(tap(left, left_weight), tap(right, right_weight)))

    logits, sizes = resize.input_value(0), resize.input_value(1)
    in_shape = named(ops.shape_of(logits, "i64"))
    rows = weights(axis_length(in_shape, 2), axis_length(sizes, 2))
    cols = weights(axis_length(in_shape, 3), axis_length(sizes, 3))
    resized = named(ops.matmul(named(ops.matmul(rows, logits, False, False)), cols, False, True))
    resized.output(0).set_names(resize.output(0).get_names())
    for target in list(resize.output(0).get_target_inputs()):
        target.replace_source_output(resized.output(0))
    model.validate_nodes_and_infer_types()


def read_rt_info(xml_path: Path) -> dict[str, str]:
    """``rt_info[interformer_edge]`` of an IR file as plain strings."""
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    info = model.get_rt_info()
    if RT_INFO_SECTION not in info:
        return {}
    section = info[RT_INFO_SECTION]
    node = section.astype(dict) if hasattr(section, "astype") else section
    return {str(k): (v.astype(str) if hasattr(v, "astype") else str(v)) for k, v in node.items()}
