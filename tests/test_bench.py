"""``interformer-bench`` end to end: every row that exists is measured, accuracy is filled, the report has the
layout it had before it had types. Behaviour only: no timing is asserted (the CI machine is shared).
Refusals and the lean install: test_bench_cli.py; the pieces: test_bench_units.py."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench_helpers import FAST, PREVIOUS_REPORT, add_fake_int8, bench, make_dataset

from interformer_edge.bench.report_model import read_report, report_json
from interformer_edge.core.manifest import load_manifest

CLICKS = 5
THREADS = (1, 2)
SIZES = ("64x64", "96x64")


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


# Objects whose keys are data (row names, backends, packages), not the report's layout.
DATA_KEYED = {
    "headline.decoder_p50_ms",
    "headline.encoder_p50_ms",
    "headline.int8_vs_fp32",
    "accuracy.per_object.ious",
    "accuracy.export_gate.decoder",
    "artifact.export_tools",
    "artifact.quantized.files",
    "artifact.quantized.calibration",
    "artifact.quantized.gates",
    "machine.packages",
    "machine.isa",  # ARM hosts add the flags /proc/cpuinfo and the kernel list
}


def layout(value: Any, path: str = "", found: dict[str, set[tuple[str, ...]]] | None = None) -> dict:
    """Every JSON object's key path (list items collapsed) → the key sequences seen there, in order."""
    found = {} if found is None else found
    if isinstance(value, dict):
        if path not in DATA_KEYED:
            found.setdefault(path, set()).add(tuple(value))
        for key, item in value.items():
            layout(item, f"{path}.{key}".lstrip("."), found)
    elif isinstance(value, list):
        for item in value:
            layout(item, path, found)
    return found


def test_the_report_has_the_layout_of_the_previous_code(full_run: tuple[dict, Path, Path]) -> None:
    """Same keys in the same order and nesting as a report.json the code wrote before the report had types,
    and written back unchanged once read."""
    report, out, _ = full_run
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the previous report has OpenVINO rows; without OpenVINO this one has other keys")
    previous = json.loads(PREVIOUS_REPORT.read_text())
    assert layout(report) == layout(previous)
    text = (out / "report.json").read_text()
    assert report_json(read_report(text)) == text
