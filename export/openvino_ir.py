"""ONNX → OpenVINO IR (``.xml`` + ``.bin``), FP32 weights by default or FP16 weights on request."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from interformer_edge.core.spec import OPENVINO_RT_INFO_SECTION as RT_INFO_SECTION

# OpenVINO on CPUs with AMX/AVX512-BF16 runs bf16 by default; parity and the manifest's numbers assume f32.


def bin_path(xml: Path) -> Path:
    """The weights file OpenVINO writes beside ``xml``."""
    return xml.with_suffix(".bin")


def convert(onnx_path: Path, xml_path: Path, metadata: Mapping[str, str], fp16: bool) -> list[Path]:
    """Convert an ONNX file to IR at ``xml_path`` with ``metadata`` in ``rt_info[interformer_edge]``.

    ``openvino.save_model`` compresses weights to FP16 unless told otherwise, so the flag is always
    passed explicitly. Returns the files written (xml and bin).
    """
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    model.set_rt_info("fp16" if fp16 else "fp32", [RT_INFO_SECTION, "weights"])
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    del model
    return [xml_path, bin_path(xml_path)]


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
