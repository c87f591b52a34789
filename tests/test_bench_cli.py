"""``interformer-bench`` refusing bad input before any work, reporting a row that fails while measuring the
others, and running without torch; its help and the deprecated ``--precisions``."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bench_helpers import FAST, bench, make_dataset

from interformer_edge.core.cli_kit import EXIT_BAD_INPUT
from interformer_edge.core.manifest import QuantizedGraph, load_manifest, with_quantized, write_manifest


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("bench_cli_data") / "set")


def test_help_explains_every_flag() -> None:
    code, stdout, _ = bench("--help")
    assert code == 0
    for flag in (
        "--backends",
        "--rows",
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
    assert "--precisions" not in stdout  # the deprecated spelling still works, unlisted


def test_the_old_precisions_flag_works_with_a_deprecation_line(light_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = bench(str(light_export), "--out", str(out), "--precisions", "fp8")
    lines = stderr.strip().splitlines()
    assert lines[0] == "interformer-bench: warning: --precisions is deprecated, use --rows"
    assert code == EXIT_BAD_INPUT and len(lines) == 2 and "unknown fp8" in lines[1]  # read as --rows fp8
    assert not out.exists()


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
        (["--rows", "fp8"], "fp8"),
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
        "--rows",
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
    row = ["backend", "precision", "variant", "hint", "computes_in", "static"]  # the keys of a row, in order
    assert {tuple(f) for f in report["failures"]} == {("part", *row, "threads", "error"), ("part", *row, "error")}
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
            "--rows",
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


def test_openvino_is_asked_about_the_cpu_once(
    light_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line checks that some row exists before measuring, and the run uses the facts (and rows)
    that check found."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("OpenVINO is not installed")
    from interformer_edge.runtime import backends

    asked: list[str] = []
    original = backends.openvino_device_precision
    monkeypatch.setattr(backends, "openvino_device_precision", lambda: asked.append("device") or original())
    out = tmp_path / "out"
    code, _, stderr = bench(
        str(light_export), "--backends", "openvino", "--rows", "fp32", "--threads", "1", "--sizes", "64x64",
        "--parts", "memory", "--no-baseline", "--out", str(out), *FAST,
    )  # fmt: skip
    assert code == 0, stderr
    assert asked == ["device"]
    assert json.loads((out / "report.json").read_text())["openvino"]["default_inference_precision"] == original()
