"""The compute floor of a click: the decoder's arithmetic at a size, the host's measured peak, efficiency.

* **FLOPs** are counted from the exported FP32 decoder graph itself, on the click the latency rows
  time: ONNX Runtime runs it once with profiling on (basic graph optimisations only, so nodes keep
  their ONNX shapes) and every Conv, MatMul and Gemm contributes ``2 x`` its multiply-adds, read off
  the shapes it actually ran with. Everything else (norms, softmax, resizes, gathers, layout) counts
  zero: the floor is the time the multiply-adds alone would take.
* **Peak** is measured in the same run: a 1024 x 1024 x 1024 matrix product at the row's thread
  count, its fastest run: float32 through ONNX Runtime's ``MatMul`` and OpenVINO's (the faster of the
  two), 8-bit through ONNX Runtime's ``MatMulInteger`` (uint8 activations x int8 weights, the kernels
  the INT8 decoders use), bfloat16 through OpenVINO with its bf16 hint (the precision of OpenVINO's
  default rows on a bf16 CPU). The benchmark times these products taking turns with the decoders
  (:func:`peak_probes`), so that a shared host's slower and faster minutes fall on both alike.
* **Efficiency** = floor time / measured p50, floor time = FLOPs / peak of the row's precision.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.manifest import Manifest
from interformer_edge.runtime.backends import installed_backends

GEMM_SIDE = 1024
# Precisions with a measured peak; a row computing in another precision (fp16) gets no floor.
PEAK_PRECISIONS = ("fp32", "int8", "bf16")
_COUNTED = {"Conv", "MatMul", "Gemm"}
_PROFILE_SUFFIX = "_kernel_time"


def available(manifest: Manifest) -> bool:
    """Whether floors can be measured here: an ONNX decoder, ONNX Runtime to profile it and time the GEMMs,
    and the ``onnx`` package to build the GEMM graphs (a workstation package: a lean device install has no
    floor column)."""
    return (
        "onnx" in manifest.graphs["decoder"].files
        and "onnxruntime" in installed_backends()
        and importlib.util.find_spec("onnx") is not None
    )


def _shape(entry: Mapping[str, list[int]]) -> list[int]:
    return next(iter(entry.values()))


def node_flops(
    op: str, inputs: list[list[int]], outputs: list[list[int]], weight_shape: list[int] | None = None
) -> int:
    """FLOPs (2 x multiply-adds) of one Conv/MatMul/Gemm run, from the shapes it ran with.

    Conv: ``2 * |output| * (C_in / groups) * kh * kw`` from the weight ``(C_out, C_in/groups, kh, kw)``;
    MatMul/Gemm: ``2 * |output| * K`` with ``K`` the last axis of the first input (no transposed A).
    ``weight_shape`` stands in for an input the profiler left out (a pre-packed constant weight).
    """
    out = int(np.prod(outputs[0]))
    if op == "Conv":
        weight = inputs[1] if len(inputs) > 1 else weight_shape
        if weight is None:
            raise ValueError("a Conv without a known weight shape")
        return 2 * out * int(np.prod(weight[1:]))
    return 2 * out * int(inputs[0][-1])


def decoder_flops(onnx_path: Path, feed: Mapping[str, np.ndarray]) -> int:
    """FLOPs of one run of the ONNX graph at ``onnx_path`` on ``feed`` (see the module docstring)."""
    import onnx
    import onnxruntime as ort

    weights = _weight_shapes(onnx.load(str(onnx_path), load_external_data=False))
    with tempfile.TemporaryDirectory(prefix="interformer-flops-") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        session.run(None, dict(feed))
        events = json.loads(Path(session.end_profiling()).read_text())
    total = 0
    for event in events:
        args = event.get("args", {})
        if (
            event.get("cat") != "Node"
            or not event["name"].endswith(_PROFILE_SUFFIX)
            or args.get("op_name") not in _COUNTED
        ):
            continue
        name = event["name"][: -len(_PROFILE_SUFFIX)]
        inputs = [_shape(e) for e in args.get("input_type_shape", [])]
        outputs = [_shape(e) for e in args.get("output_type_shape", [])]
        total += node_flops(args["op_name"], inputs, outputs, weights.get(name))
    return total


def _weight_shapes(model: Any) -> dict[str, list[int]]:
    """Node name → shape of its constant second input (a Conv weight the profiler may not list)."""
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    return {
        node.name: dims[node.input[1]] for node in model.graph.node if len(node.input) > 1 and node.input[1] in dims
    }


def peak_probes(threads: int, precision: str, side: int = GEMM_SIDE) -> list[Callable[[], object]]:
    """Ready ``side``-cubed matrix products at ``threads`` threads whose fastest run gives the peak of
    ``precision`` (float32: ONNX Runtime's and, when installed, OpenVINO's)."""
    if precision not in PEAK_PRECISIONS:
        raise ValueError(f"no peak for precision {precision!r}; measured: {', '.join(PEAK_PRECISIONS)}")
    has_openvino = "openvino" in installed_backends()
    if precision == "bf16":
        if not has_openvino:
            raise ValueError("the bf16 peak is measured with OpenVINO, which is not installed")
        return [_openvino_gemm(threads, "bf16", side)]
    probes = [_onnxruntime_gemm(threads, precision, side)]
    if precision == "fp32" and has_openvino:
        probes.append(_openvino_gemm(threads, "f32", side))
    return probes


def gflops(seconds: float, side: int = GEMM_SIDE) -> float:
    """GFLOP/s of one ``side``-cubed matrix product that took ``seconds``."""
    return 2.0 * side**3 / seconds / 1e9


def _onnxruntime_gemm(threads: int, precision: str, side: int) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if precision == "fp32":
        weight = numpy_helper.from_array(rng.standard_normal((side, side)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        a = rng.standard_normal((side, side)).astype(np.float32)
    else:
        weight = numpy_helper.from_array(rng.integers(-64, 65, (side, side)).astype(np.int8), "w")
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        a = rng.integers(0, 256, (side, side)).astype(np.uint8)
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("a", a_type, [side, side])],
        [helper.make_tensor_value_info("y", y_type, [side, side])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


def _openvino_gemm(threads: int, hint: str, side: int) -> Callable[[], object]:
    """A float32 product compiled with OpenVINO's ``hint`` (``f32``/``bf16``), as the decoder rows are."""
    import openvino as ov
    import openvino.opset13 as ops

    from interformer_edge.runtime.backends import openvino_config, openvino_core

    rng = np.random.default_rng(0)
    a = rng.standard_normal((side, side)).astype(np.float32)
    parameter = ops.parameter([side, side], np.float32, name="a")
    weight = ops.constant(rng.standard_normal((side, side)).astype(np.float32))
    model = ov.Model([ops.matmul(parameter, weight, False, False)], [parameter], "gemm")
    request = openvino_core().compile_model(model, "CPU", openvino_config(threads, hint)).create_infer_request()
    return lambda: request.infer({0: a})


def floor_entry(flops: int | None, peak_gflops: float | None, p50_ms: float) -> dict[str, float] | None:
    """The floor of one latency row: its FLOPs, the peak used, the floor time and the efficiency."""
    if not flops or not peak_gflops or p50_ms <= 0:
        return None
    floor_ms = flops / (peak_gflops * 1e9) * 1e3
    return {
        "gflop": round(flops / 1e9, 3),
        "peak_gflops": round(peak_gflops, 1),
        "floor_ms": round(floor_ms, 2),
        "efficiency": round(floor_ms / p50_ms, 3),
    }
