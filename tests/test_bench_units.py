"""The benchmark's pieces: which rows exist, the floors' FLOPs and peaks, timing, machine facts, the INT8
target column, and report.json read into types and written back."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from bench_helpers import PREVIOUS_REPORT, add_fake_int8

from interformer_edge.bench import floor
from interformer_edge.bench.artifact import QuantizedFacts
from interformer_edge.bench.configs import plan_configs, row_choices, row_label
from interformer_edge.bench.machine import OpenVinoFacts
from interformer_edge.bench.report_model import read_report, report_json
from interformer_edge.bench.tables import int8_target_text
from interformer_edge.core.cpu import cpu_model, isa_flags, read_cpuinfo
from interformer_edge.core.manifest import load_manifest
from interformer_edge.core.timing import TimingPolicy, measure, measure_in_turn
from interformer_edge.core.typed_json import JsonShapeError

CPUINFO = Path(__file__).resolve().parents[1] / "scripts" / "arm64" / "cpuinfo"


def test_int8_with_the_device_default_is_a_row_only_where_that_default_is_not_f32(
    light_export: Path, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    add_fake_int8(export)
    manifest = load_manifest(export)
    backends, rows = ["onnxruntime", "openvino"], ["int8", "int8-default"]
    configs, skipped = plan_configs(manifest, backends, rows, OpenVinoFacts(default_inference_precision="bf16"))
    (row,) = [c for c in configs if c.label == "int8-default"]
    assert (row.backend, row.variant, row.compute, row.computes_in) == (
        "openvino",
        "int8",
        "device",
        "int8 (float layers bf16)",
    )
    assert ("onnxruntime", "int8-default") in {(s.backend, s.label) for s in skipped}
    configs, skipped = plan_configs(manifest, backends, rows, OpenVinoFacts(default_inference_precision="f32"))
    assert [c.label for c in configs] == ["int8", "int8"]
    assert {(s.backend, s.label) for s in skipped} == {
        ("onnxruntime", "int8-default"),
        ("openvino", "int8-default"),
    }


def test_flops_are_counted_from_the_shapes_each_layer_ran_with(tmp_path: Path) -> None:
    """A 3x3 conv 4 -> 6 channels, a depthwise 3x3 conv and a matrix product on an 8x8 map."""
    from onnx import TensorProto, helper, numpy_helper, save

    weights = [
        numpy_helper.from_array(np.ones(shape, np.float32), name)
        for name, shape in (("w", (6, 4, 3, 3)), ("d", (6, 1, 3, 3)), ("b", (8, 5)))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Conv", ["y", "d"], ["z"], pads=[1, 1, 1, 1], group=6, name="depthwise"),
        helper.make_node("Relu", ["z"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "b"], ["o"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        weights,
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    conv = 2 * (6 * 8 * 8) * (4 * 3 * 3)
    depthwise = 2 * (6 * 8 * 8) * (1 * 3 * 3)
    matmul = 2 * (6 * 8 * 5) * 8
    assert (
        floor.decoder_flops(tmp_path / "g.onnx", {"x": np.ones((1, 4, 8, 8), np.float32)})
        == conv + depthwise + matmul
        == 38400
    )
    # float32 from both backends (the faster counts), int8 from ONNX Runtime, bf16 from OpenVINO (f32 where the
    # CPU has no bf16); each probe is a ready product that runs.
    probes = {p: floor.peak_probes(1, p, side=128) for p in ("fp32", "int8", "bf16")}
    assert {p: len(found) for p, found in probes.items()} == {"fp32": 2, "int8": 1, "bf16": 1}
    for probe in (probe for found in probes.values() for probe in found):
        probe()
    with pytest.raises(ValueError, match="no peak"):
        floor.peak_probes(1, "fp16")
    assert floor.gflops(0.002, side=100) == pytest.approx(1.0)  # 2 * 100**3 FLOP in 2 ms
    assert floor.floor_entry(2 * 10**9, 100.0, 40.0) == {
        "gflop": 2.0,
        "peak_gflops": 100.0,
        "floor_ms": 20.0,
        "efficiency": 0.5,
    }


def test_int8_target_column_says_whether_the_target_covers_the_host() -> None:
    quantized = [QuantizedFacts("decoder", "int8", target="vnni", covers=["x86-vnni", "arm64"])]
    assert int8_target_text("int8", quantized, "x86-avx2") == "vnni, does NOT cover x86-avx2"
    assert int8_target_text("int8", quantized, "arm64") == "vnni, covers arm64"
    assert int8_target_text("fp32", quantized, "arm64") == "–"


def test_calls_timed_in_turn_alternate_and_each_gets_its_runs() -> None:
    """One timed run of each call per round, warm-up rounds first; a call stops once it has enough (here: its
    minimum runs, the budget being 0), the others go on taking turns."""
    calls: list[str] = []
    policy = TimingPolicy(warmup=1, min_runs=3, budget_s=0.0)
    stats = measure_in_turn({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, policy)
    assert calls == ["a", "b"] * 4
    assert stats["a"].runs == stats["b"].runs == 3
    slow_calls: list[str] = []

    def slow() -> None:
        slow_calls.append("slow")
        time.sleep(0.02)

    # budget 0.05 s: the fast call needs its 3 runs only once they took 0.05 s, so it keeps going while the
    # slow one (3 runs ≥ 0.06 s) is done after its third
    stats = measure_in_turn(
        {"slow": slow, "fast": lambda: slow_calls.append("fast")}, TimingPolicy(warmup=0, min_runs=3, budget_s=0.05)
    )
    assert slow_calls[:6] == ["slow", "fast"] * 3 and stats["slow"].runs == 3
    assert stats["fast"].runs > 3 and slow_calls[6:] == ["fast"] * (stats["fast"].runs - 3)

    # a call with its own policy (the benchmark's peak GEMMs) warms up and stops by that one
    order: list[str] = []
    own = {"probe": TimingPolicy(warmup=0, min_runs=2, budget_s=0.0)}
    stats = measure_in_turn(
        {"row": lambda: order.append("row"), "probe": lambda: order.append("probe")},
        TimingPolicy(warmup=1, min_runs=4, budget_s=0.0),
        own_policies=own,
    )
    assert order == ["row", "row", "probe", "row", "probe", "row", "row"]
    assert (stats["row"].runs, stats["probe"].runs) == (4, 2)


def test_timing_runs_warmup_then_at_least_the_minimum() -> None:
    calls = []
    stats = measure(lambda: calls.append(1), TimingPolicy(warmup=2, min_runs=5, budget_s=0.0))
    assert len(calls) == 7 and stats.runs == 5
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


@pytest.mark.parametrize("board, core, dotprod", [("pi5", "Cortex-A76", True), ("pi4", "Cortex-A72", False)])
def test_machine_facts_of_a_raspberry_pi(board: str, core: str, dotprod: bool) -> None:
    blocks = read_cpuinfo(CPUINFO / f"{board}.txt")
    assert core in cpu_model(blocks) and "Raspberry Pi" in cpu_model(blocks)
    if isa_flags(blocks).get("hwcap") is None:  # on a real aarch64 host the kernel's view is added
        assert ("asimddp" in isa_flags(blocks)["of_interest"]) == dotprod
        assert isa_flags(blocks)["int8_dot_product"] == dotprod


def test_every_row_is_a_variant_and_a_compute_type_named_as_before(light_export: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    add_fake_int8(export)
    assert row_choices(load_manifest(export)) == {
        "fp32": ("fp32", "f32"),
        "int8": ("int8", "f32"),
        "bf16": ("fp32", "bf16"),
        "fp16": ("fp32", "f16"),
        "default": ("fp32", "device"),
        "int8-default": ("int8", "device"),
    }
    assert row_label("int4", "f32") == "int4" and row_label("int4", "device") == "int4-default"
    hints = {"optimization_capabilities": ["FP32", "BF16"], "default_inference_precision": "bf16"}
    configs, skipped = plan_configs(load_manifest(export), ["openvino"], ["bf16", "fp16"], OpenVinoFacts(**hints))
    assert [(c.variant, c.compute, c.computes_in) for c in configs] == [("fp32", "bf16", "bf16")]
    assert [(s.label, s.reason) for s in skipped] == [
        ("fp16", "this CPU has no fp16 support in OpenVINO (capabilities: BF16, FP32)")
    ]


def test_a_report_of_the_previous_code_reads_into_types_and_writes_back_unchanged() -> None:
    text = PREVIOUS_REPORT.read_text()
    report = read_report(text)
    assert report_json(report) == text  # same keys, order, nesting and numbers
    assert read_report(report_json(report)) == report
    row = report.latency[0] if report.latency else None
    assert row is not None and row.config.label == "fp32" and row.decoder.p50_ms > 0
    assert report.accuracy is not None and report.accuracy.rows[0].quality.miou_at[1] > 0


def test_a_report_that_lacks_a_key_or_has_a_wrong_type_is_refused_by_name() -> None:
    data = json.loads(PREVIOUS_REPORT.read_text())
    del data["latency"][0]["decoder"]["p50_ms"]
    with pytest.raises(JsonShapeError, match="latency"):
        read_report(json.dumps(data))
    data = json.loads(PREVIOUS_REPORT.read_text())
    data["settings"]["threads"] = ["two"]
    with pytest.raises(JsonShapeError, match=r"settings\.threads"):
        read_report(json.dumps(data))
