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
    onnx_path: Path, xml_path: Path, metadata: Mapping[str, str], fp16: bool, logits_by_phases: bool = False
) -> list[Path]:
    """Convert an ONNX file to IR at ``xml_path`` with ``metadata`` in ``rt_info[interformer_edge]``.

    ``openvino.save_model`` compresses weights to FP16 unless told otherwise, so the flag is always
    passed explicitly. ``logits_by_phases`` applies :func:`resize_logits_by_phases` (the decoder).
    Returns the files written (xml and bin).
    """
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if logits_by_phases:
        resize_logits_by_phases(model)
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    model.set_rt_info("fp16" if fp16 else "fp32", [RT_INFO_SECTION, "weights"])
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    del model
    return [xml_path, bin_path(xml_path)]


def resize_logits_by_phases(model: Any) -> None:
    """Rewrite the bilinear resize that makes the ``logits`` output ``(1, K, H, W)`` from ``(1, K, H/4, W/4)``
    as its four phases per axis, in place.

    Why: OpenVINO's CPU Interpolate on a map of two channels (a planar layout: nothing to vectorise
    across) takes 2.5-3 ms at 512x512, longer than any of the decoder's convolutions but the largest;
    the phases take about 1 ms (docs/click-latency.md). Along each axis, output ``4k + r`` of a 4x
    resize with ``align_corners=False`` lies at source ``k + (2r - 3) / 8``, so with the map
    edge-padded by one (PyTorch clamps the source at both ends) the phases are
    ``0.375 x[k-1] + 0.625 x[k]``, ``0.125 x[k-1] + 0.875 x[k]``, ``0.875 x[k] + 0.125 x[k+1]``,
    ``0.625 x[k] + 0.375 x[k+1]``, interleaved. Element-wise operations only: OpenVINO keeps a graph's
    tail after its last convolution in f32 under a bf16 hint (two matrix products would have run in
    bf16 and moved the logits by up to 1.4). The decoder's logits are always a quarter of the
    reference label's size (both padded to multiples of 32), so the factor is always 4; the logits
    agree to float rounding (the parity gate checks). Operations are named ``{LOGITS_RESIZE_SCOPE}/…``
    so that INT8 keeps them float.
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
    names = itertools.count()

    def named(node: Any) -> Any:
        node.set_friendly_name(f"{LOGITS_RESIZE_SCOPE}/{next(names)}")
        return node

    def const(value: Any) -> Any:
        return named(ops.constant(np.asarray(value, np.float32 if isinstance(value, float) else np.int64)))

    def times_four(x: Any, axis: int) -> Any:
        """``x`` ``(1, K, h, w)`` resized 4x along ``axis`` (2 or 3)."""
        pads = [1 if a == axis else 0 for a in range(4)]
        padded = named(ops.pad(x, const(pads), const(pads), "edge"))

        def shifted(start: int, stop: int) -> Any:  # padded[start : len + stop] along the axis
            return named(ops.slice(padded, const([start]), const([stop]), const([1]), const([axis])))

        before, centre, after = shifted(0, -2), shifted(1, -1), shifted(2, np.iinfo(np.int64).max)

        def mix(a: Any, weight_a: float, b: Any, weight_b: float) -> Any:
            return named(ops.add(named(ops.multiply(a, const(weight_a))), named(ops.multiply(b, const(weight_b)))))

        phases = [
            mix(before, 0.375, centre, 0.625),
            mix(before, 0.125, centre, 0.875),
            mix(centre, 0.875, after, 0.125),
            mix(centre, 0.625, after, 0.375),
        ]
        stacked = named(ops.concat([named(ops.unsqueeze(p, const(axis + 1))) for p in phases], axis + 1))
        shape = named(ops.shape_of(stacked, "i64"))  # phase axis right after ``axis``: merge the two
        kept = [named(ops.slice(shape, const([0]), const([axis]), const([1]))), const([-1])]
        if axis + 2 < 5:
            kept.append(named(ops.slice(shape, const([axis + 2]), const([5]), const([1]))))
        return named(ops.reshape(stacked, named(ops.concat(kept, 0)), False))

    resized = times_four(times_four(resize.input_value(0), 3), 2)
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
