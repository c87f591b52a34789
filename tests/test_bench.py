# Over 400 lines on purpose: the benchmark's exports are built once per module; one test per behaviour of the tool.
"""``interformer-bench``: every row that exists is measured, accuracy is filled, bad input is refused,
and it runs without torch. Behaviour only: no timing is asserted (the CI machine is shared)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from interformer_edge.bench import floor
from interformer_edge.bench.cli import EXIT_BAD_INPUT, app
from interformer_edge.bench.configs import plan_configs
from interformer_edge.bench.tables import int8_target_text
from interformer_edge.core.cpu import cpu_model, isa_flags, read_cpuinfo
from interformer_edge.core.manifest import QuantizedGraph, load_manifest, with_quantized, write_manifest
from interformer_edge.core.timing import TimingPolicy, measure, measure_in_turn

CLICKS = 5
THREADS = (1, 2)
SIZES = ("64x64", "96x64")
FAST = ["--runs", "2", "--budget", "0", "--warmup", "1", "--memory-clicks", "3"]
CPUINFO = Path(__file__).resolve().parents[1] / "scripts" / "arm64" / "cpuinfo"


def make_dataset(root: Path) -> Path:
    """Three usable objects in the GrabCut layout, plus one image without a mask and one unreadable image."""
    rng = np.random.default_rng(0)
    for folder in ("img", "gt", "list"):
        (root / folder).mkdir(parents=True)
    names = []
    for index, (height, width) in enumerate([(64, 80), (72, 64), (64, 64)]):
        name = f"obj{index}"
        yy, xx = np.mgrid[0:height, 0:width]
        mask = (yy - height / 2) ** 2 / (height / 3.5) ** 2 + (xx - width / 2 - index * 4) ** 2 / (width / 4) ** 2 < 1
        rgb = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        rgb[mask] += np.array([150, 120, 40 * index], dtype=np.uint8)
        Image.fromarray(rgb).save(root / "img" / f"{name}.png")
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(root / "gt" / f"{name}.png")
        names.append(name)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "img" / "nomask.png")
    (root / "img" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(root / "gt" / "broken.png")
    (root / "list" / "val.txt").write_text("\n".join(["obj0", "nomask", "obj1", "broken", "obj2"]) + "\n")
    return root


def add_fake_int8(export: Path) -> None:
    """Register copies of the FP32 decoder (ONNX and OpenVINO IR) as an "int8" variant, as
    interformer-quantize records a real one: enough to prove the variant is benchmarked as its own precision."""
    shutil.copyfile(export / "decoder.onnx", export / "decoder.int8.onnx")
    files = {"onnx": "decoder.int8.onnx"}
    if (export / "decoder.xml").is_file():
        shutil.copyfile(export / "decoder.xml", export / "decoder.int8.xml")
        shutil.copyfile(export / "decoder.bin", export / "decoder.int8.bin")
        files["openvino"] = "decoder.int8.xml"
    variant = QuantizedGraph(
        graph="decoder", precision="int8", files=files, calibration={"method": "test copy"}, gates={}, created="now"
    )
    write_manifest(with_quantized(load_manifest(export), variant, export), export)


def bench(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("bench_data") / "set")


@pytest.fixture(scope="module")
def full_run(light_export: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """One full bench (every installed backend, fp32 + int8 + OpenVINO's default, two thread counts, two
    sizes, memory, accuracy; without the static-shape twins, which test_a_configuration_that_fails... has)
    of the small Light export with a fake int8 decoder: (report, out dir, export)."""
    root = tmp_path_factory.mktemp("bench_full")
    export = root / "export"
    shutil.copytree(light_export, export)
    add_fake_int8(export)
    out = root / "out"
    code, stdout, stderr = bench(
        str(export),
        "--threads",
        ",".join(map(str, THREADS)),
        "--sizes",
        ",".join(SIZES),
        "--dataset",
        str(dataset),
        "--clicks",
        str(CLICKS),
        "--limit",
        "0",
        "--out",
        str(out),
        "--no-static-shapes",
        *FAST,
    )
    assert code == 0, stdout + stderr
    (root / "stderr.log").write_text(stderr)  # what a user's log file holds
    return json.loads((out / "report.json").read_text()), out, export


def test_int8_with_the_device_default_is_a_row_only_where_that_default_is_not_f32(
    light_export: Path, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    add_fake_int8(export)
    manifest = load_manifest(export)
    backends, precisions = ["onnxruntime", "openvino"], ["int8", "int8-default"]
    configs, skipped = plan_configs(manifest, backends, precisions, {"default_inference_precision": "bf16"})
    (row,) = [c for c in configs if c.precision == "int8-default"]
    assert (row.backend, row.variant, row.hint, row.computes_in) == (
        "openvino",
        "int8",
        "device",
        "int8 (float layers bf16)",
    )
    assert ("onnxruntime", "int8-default") in {(s.backend, s.precision) for s in skipped}
    configs, skipped = plan_configs(manifest, backends, precisions, {"default_inference_precision": "f32"})
    assert [c.precision for c in configs] == ["int8", "int8"]
    assert {(s.backend, s.precision) for s in skipped} == {
        ("onnxruntime", "int8-default"),
        ("openvino", "int8-default"),
    }


def test_help_explains_every_flag() -> None:
    code, stdout, _ = bench("--help")
    assert code == 0
    for flag in (
        "--backends",
        "--precisions",
        "--threads",
        "--sizes",
        "--dataset",
        "--clicks",
        "--limit",
        "--runs",
        "--budget",
        "--parts",
        "--baseline",
        "--emulated",
        "--out",
        "--static-shapes",
    ):
        assert flag in stdout


def test_progress_in_a_log_counts_each_step_with_an_estimate(full_run: tuple[dict, Path, Path]) -> None:
    report, out, _ = full_run
    lines = (out.parent / "stderr.log").read_text().splitlines()
    assert all(re.match(r"\[\s*\d+ s\] ", line) for line in lines), lines  # elapsed time first, one line each
    units = {(r["backend"], r["precision"], r["threads"]) for r in report["latency"]}
    latency = [re.search(r"\] latency (\d+)/(\d+)(, about .+ left)?: ", line) for line in lines]
    counted = [(int(m[1]), int(m[2]), m[3] is not None) for m in latency if m]
    total = len(units) + len(THREADS) * len(SIZES)  # loading each configuration, then timing each size's decoders
    assert [c[:2] for c in counted] == [(i, total) for i in range(1, total + 1)]
    timing = [line for line in lines if re.search(r"\] latency \d+/\d+.*: \d+ decoders at \d+ thread\(s\), ", line)]
    assert len(timing) == len(THREADS) * len(SIZES), timing
    assert not counted[0][2] and all(c[2] for c in counted[1:])  # an estimate once one unit is done
    objects = [line for line in lines if "] accuracy: object " in line]
    # Counted against the dataset's files: unusable ones (reported as problems) end the count early.
    assert len(objects) == report["accuracy"]["objects"] < report["accuracy"]["dataset_size"]
    assert f"object 1/{report['accuracy']['dataset_size']}: " in objects[0]
    memory_lines = [line for line in lines if re.search(r"\] memory \d+/\d+", line)]
    assert len(memory_lines) == len(report["memory"])
    for part in ("latency", "memory", "accuracy"):
        done = rf"\] {part}: done in (\d+ s|\d+ min \d+ s|\d+ h \d+ min)$"  # core.progress.duration's forms
        assert any(re.search(done, line) for line in lines), part


def test_report_has_machine_facts_and_every_latency_row(full_run: tuple[dict, Path, Path]) -> None:
    report, _, _ = full_run
    machine = report["machine"]
    assert machine["cpu_model"] and machine["cores_usable"] >= 1 and machine["os"] and machine["python"]
    assert isinstance(machine["isa"]["of_interest"], list) and "int8_dot_product" in machine["isa"]
    assert machine["packages"]["numpy"] and machine["packages"]["onnxruntime"]
    assert machine["emulated"] is None

    configs = {(c["backend"], c["precision"]) for c in report["configs"]}
    assert {("onnxruntime", "fp32"), ("onnxruntime", "int8")} <= configs
    if importlib.util.find_spec("openvino") is not None:
        assert {("openvino", "fp32"), ("openvino", "int8")} <= configs
        assert report["openvino"]["default_inference_precision"]
    # what does not exist here is listed with a reason, not dropped
    assert all(s["reason"] for s in report["skipped"])
    assert ("onnxruntime", "default") in {(s["backend"], s["precision"]) for s in report["skipped"]}

    rows = report["latency"]
    runtime_rows = [r for r in rows if r["backend"] != "pytorch"]
    seen = sorted((r["backend"], r["precision"], r["static"], r["threads"], r["size"]) for r in runtime_rows)
    expected = sorted((b, p, False, t, s) for b, p in configs for t in THREADS for s in SIZES)
    assert seen == expected  # static twins (on by default): test_a_configuration_that_fails_is_reported...
    for row in rows:
        for graph in ("encoder", "decoder"):
            stats = row[graph]
            assert stats["runs"] >= 2
            assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    # the INT8 variant runs the FP32 encoder: measured once, shared
    assert all(r["encoder_shared_with"] == "fp32" for r in runtime_rows if r["precision"] == "int8")
    # every float32, bf16 and int8 row has its floor: the same FLOPs per size, a peak per precision and threads
    floored = [r for r in rows if r["variant"] == "int8" or r["computes_in"] in ("f32", "bf16")]
    assert floored and all(r["floor"]["gflop"] > 0 and r["floor"]["efficiency"] > 0 for r in floored)
    assert all(
        r["floor"]["peak_precision"]
        == ("int8" if r["variant"] == "int8" else {"f32": "fp32", "bf16": "bf16"}[r["computes_in"]])
        for r in floored
    )
    for size in SIZES:
        assert len({r["floor"]["gflop"] for r in floored if r["size"] == size}) == 1
    small, large = ({r["floor"]["gflop"] for r in floored if r["size"] == s}.pop() for s in SIZES)
    assert large > small  # 96x64 has 1.5x the pixels of 64x64
    assert report["headline"]["size"] in SIZES and report["headline"]["threads"] == max(THREADS)


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


def test_pytorch_eager_is_the_baseline_when_torch_and_the_checkpoint_are_there(
    full_run: tuple[dict, Path, Path],
) -> None:
    report, _, export = full_run
    checkpoint = Path(load_manifest(export).source_checkpoint.path)
    if importlib.util.find_spec("torch") is None or not checkpoint.is_file():
        assert not report["baseline"]["available"] and report["baseline"]["note"]
        assert all(r["backend"] != "pytorch" for r in report["latency"])
        pytest.skip("no torch or no source checkpoint here: the baseline is (correctly) absent")
    assert report["baseline"]["available"]
    eager = {(r["threads"], r["size"]) for r in report["latency"] if r["backend"] == "pytorch"}
    assert eager == {(t, s) for t in THREADS for s in SIZES}
    for row in report["latency"]:
        speedup = row["speedup_vs_pytorch"]
        assert speedup is not None and speedup["encoder"] > 0 and speedup["decoder"] > 0
        if row["backend"] == "pytorch":
            assert speedup == {"encoder": 1.0, "decoder": 1.0}
    assert any(r["backend"] == "pytorch" for r in report["memory"])


def test_memory_and_sizes(full_run: tuple[dict, Path, Path]) -> None:
    report, _, _ = full_run
    runtime = [r for r in report["memory"] if r["backend"] != "pytorch"]
    assert {(r["backend"], r["precision"]) for r in runtime} == {
        (c["backend"], c["precision"]) for c in report["configs"]
    }
    for row in report["memory"]:
        assert "error" not in row, row
        assert row["peak_rss_bytes"] >= row["rss_after_load_bytes"] > row["rss_baseline_bytes"] > 0
        assert row["clicks"] == 3
    assert all(r["disk_bytes"] > 0 for r in runtime)
    graphs = {(g["graph"], g["precision"], g["format"]) for g in report["artifact"]["sizes"]["graphs"]}
    assert ("decoder", "int8", "onnx") in graphs and ("encoder", "fp32", "onnx") in graphs


def test_accuracy_parity_and_quality(full_run: tuple[dict, Path, Path]) -> None:
    report, _, _ = full_run
    acc = report["accuracy"]
    # two bad files reported by name and skipped; only the three usable objects count
    assert acc["objects"] == 3
    assert len(acc["problems"]) == 2
    assert any(p.startswith("nomask:") and "mask" in p for p in acc["problems"])
    assert any(p.startswith("broken:") for p in acc["problems"])
    assert [o["name"] for o in acc["per_object"]] == ["obj0", "obj1", "obj2"]

    rows = {(r["backend"], r["precision"]): r for r in acc["rows"]}
    assert acc["reference"] == "onnxruntime fp32"
    for config in report["configs"]:
        row = rows[config["backend"], config["precision"]]
        quality = row["quality"]
        for key in ("miou@1", "miou@3", "miou@5", "noc@85", "noc@90"):
            assert quality[key] is not None
        assert len(quality["iou_curve"]) == CLICKS
        assert 1 <= quality["noc@90"] <= CLICKS
        assert 0.0 <= row["parity"]["mask_iou_min"] <= row["parity"]["mask_iou_mean"] <= 1.0
    assert all(r["backend"] != "pytorch" for r in acc["rows"])
    # how closely the export follows PyTorch eager: its own parity gate, reported beside
    assert acc["export_gate"]["passed"] and acc["export_gate"]["decoder"]["onnxruntime"]["logit_max_abs_diff"] < 1e-3
    reference = rows["onnxruntime", "fp32"]
    assert reference["reference"]
    # FP32 against itself: exact (the reference is deterministic)
    assert reference["parity"]["mask_iou_mean"] == 1.0 and reference["parity"]["mask_iou_min"] == 1.0
    assert reference["parity"]["logit_max_abs_diff"] == 0.0 and reference["parity"]["identical_masks"] == 1.0
    # the "int8" here is a copy of the FP32 graph: its own precision row, with exact parity
    int8 = rows["onnxruntime", "int8"]
    assert int8["variant"] == "int8" and int8["parity"]["mask_iou_mean"] == 1.0
    assert int8["quality"]["iou_curve"] == reference["quality"]["iou_curve"]


def test_outputs_written(full_run: tuple[dict, Path, Path]) -> None:
    report, out, _ = full_run
    markdown = (out / "report.md").read_text()
    for section in ("## Machine", "## Latency", "## Memory", "## Accuracy"):
        assert section in markdown
    assert report["headline"]["text"] in markdown
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("latency.png", "iou_vs_clicks.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert name in report["outputs"]
    else:
        assert any("matplotlib" in note for note in report["notes"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    # Beside the parity: the INT8 row's target (this fake variant records none: read as full-range, vnni)
    # and this host's class, covered or not.
    host_class = report["machine"]["isa"]["int8_class"]
    assert "| INT8 target vs host |" in markdown and "| vnni, " in markdown
    assert f"cover {host_class}" in markdown.replace("covers", "cover")


def test_int8_target_column_says_whether_the_target_covers_the_host() -> None:
    quantized = [{"graph": "decoder", "precision": "int8", "target": "vnni", "covers": ["x86-vnni", "arm64"]}]
    assert int8_target_text("int8", quantized, "x86-avx2") == "vnni, does NOT cover x86-avx2"
    assert int8_target_text("int8", quantized, "arm64") == "vnni, covers arm64"
    assert int8_target_text("fp32", quantized, "arm64") == "–"


def test_damaged_or_foreign_exports_are_refused(light_export: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    data = bytearray((export / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (export / "decoder.onnx").write_bytes(bytes(data))
    out = tmp_path / "out"
    code, _, stderr = bench(str(export), "--out", str(out))
    assert code == EXIT_BAD_INPUT
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256" in lines[0] and lines[0].startswith("interformer-bench: error:")
    assert not out.exists()

    shutil.copyfile(light_export / "decoder.onnx", export / "decoder.onnx")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["format_version"] = 99
    (export / "manifest.json").write_text(json.dumps(manifest))
    code, _, stderr = bench(str(export), "--out", str(out))
    assert code == EXIT_BAD_INPUT and "format version 99" in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "100x100"], "multiples of"),
        (["--precisions", "fp8"], "fp8"),
        (["--backends", "tensorflow"], "unknown backend"),
        (["--threads", "0"], "--threads"),
        (["--parts", "speed"], "--parts"),
        (["--dataset", "/nonexistent/set"], "not a dataset folder"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    light_export: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code, _, stderr = bench(str(light_export), "--out", str(out), *args)
    assert code == EXIT_BAD_INPUT and message in stderr
    assert not out.exists()


def test_a_configuration_that_fails_is_reported_and_the_rest_measured(
    light_export: Path, dataset: Path, tmp_path: Path
) -> None:
    """An int8 decoder file that is in the manifest (hashes match) but is not a loadable graph."""
    export = tmp_path / "export"
    shutil.copytree(light_export, export)
    (export / "decoder.int8.onnx").write_bytes(b"not an onnx graph")
    variant = QuantizedGraph(
        graph="decoder", precision="int8", files={"onnx": "decoder.int8.onnx"}, calibration={}, gates={}, created="now"
    )
    write_manifest(with_quantized(load_manifest(export), variant, export), export)
    out = tmp_path / "out"
    code, stdout, _ = bench(
        str(export),
        "--backends",
        "onnxruntime",
        "--precisions",
        "fp32,int8",
        "--threads",
        "1",
        "--sizes",
        "64x64",
        "--parts",
        "latency,accuracy",
        "--dataset",
        str(dataset),
        "--clicks",
        "2",
        "--limit",
        "1",
        "--no-baseline",
        "--out",
        str(out),
        *FAST,
    )
    assert code == 1
    report = json.loads((out / "report.json").read_text())
    failed = sorted((f["part"], f["precision"], f["static"]) for f in report["failures"])
    assert failed == [("accuracy", "int8", False), ("latency", "int8", False), ("latency", "int8", True)]
    assert [(r["precision"], r["static"], r["threads"]) for r in report["latency"]] == [
        ("fp32", False, 1),
        ("fp32", True, 1),
    ]
    assert [r["precision"] for r in report["accuracy"]["rows"]] == ["fp32"]
    assert "failed" in stdout and "decoder.int8.onnx" in stdout


def _without_torch(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter where ``import torch`` fails, as on a lean install."""
    shim = (
        "import sys; sys.modules['torch'] = None; from interformer_edge.bench.cli import app; "
        f"sys.argv = ['interformer-bench', *{args!r}]; app()"
    )
    return subprocess.run([sys.executable, "-c", shim], capture_output=True, text=True, cwd=cwd, check=False)


def test_runs_without_torch(light_export: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _without_torch(
        [
            str(light_export),
            "--backends",
            "onnxruntime",
            "--precisions",
            "fp32",
            "--threads",
            "1",
            "--sizes",
            "64x64",
            "--dataset",
            str(dataset),
            "--clicks",
            "2",
            "--limit",
            "1",
            "--emulated",
            "EMULATED test label",
            "--out",
            str(out),
            *FAST,
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert not report["baseline"]["available"] and "torch" in report["baseline"]["note"]
    assert all(r["backend"] != "pytorch" for r in report["latency"] + report["memory"] + report["accuracy"]["rows"])
    assert report["latency"][0]["speedup_vs_pytorch"] is None
    assert report["accuracy"]["objects"] == 1 and report["accuracy"]["rows"][0]["quality"]["miou@1"] is not None
    assert report["machine"]["emulated"] == "EMULATED test label"
    assert "EMULATED test label" in (out / "report.md").read_text() and "EMULATED test label" in done.stdout

    # no export argument, no ./interformer_export and no torch to make one: a clear refusal
    done = _without_torch(["--out", str(tmp_path / "out2")], tmp_path)
    assert done.returncode == EXIT_BAD_INPUT and "interformer-export" in done.stderr
    assert not (tmp_path / "out2").exists()


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
