"""interformer-quantize's command line: bad input is one line, exit 2 and nothing written; --help explains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from quantize_helpers import calibration_and_heldout, copy_export, snapshot
from typer.testing import CliRunner

from interformer_edge.core.cli_kit import EXIT_BAD_INPUT
from interformer_edge.core.manifest import QuantizedGraph, load_manifest, with_quantized, write_manifest
from interformer_edge.quantize.cli import app


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return calibration_and_heldout(tmp_path_factory.mktemp("quantize_data"))


def with_int8(export: Path) -> None:
    """Record the export's FP32 ONNX decoder, copied, as its INT8 variant (what a browser gate needs to start)."""
    shutil.copy(export / "decoder.onnx", export / "decoder.int8.onnx")
    manifest = load_manifest(export)
    variant = QuantizedGraph("decoder", "int8", {"onnx": "decoder.int8.onnx"}, {}, {}, "now")
    write_manifest(with_quantized(manifest, variant, export), export)


@pytest.mark.parametrize(
    "problem",
    [
        "no manifest",
        "tampered",
        "empty calib",
        "unreadable calib",
        "same folders",
        "bad method",
        "bad backend",
        "bad target",
        "negative latency runs",
        "browser without onnxruntime",
        "browser only before quantizing",
        "browser only without chromium",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    problem: str, light_export: Path, tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    export = copy_export(light_export, tmp_path)
    calib, heldout = folders
    extra: list[str] = []
    expected = ""
    if problem == "no manifest":
        (export / "manifest.json").unlink()
        expected = "no export manifest"
    elif problem == "tampered":
        data = bytearray((export / "decoder.onnx").read_bytes())
        data[-1] ^= 0xFF
        (export / "decoder.onnx").write_bytes(bytes(data))
        expected = "does not match its sha256"
    elif problem == "empty calib":
        calib = tmp_path / "empty"
        calib.mkdir()
        expected = "no usable calibration images"
    elif problem == "unreadable calib":
        calib = tmp_path / "unreadable"
        calib.mkdir()
        (calib / "a.png").write_bytes(b"\x89PNG broken")
        expected = "no usable calibration images in"
    elif problem == "same folders":
        heldout = calib
        expected = "must differ"
    elif problem == "bad method":
        extra = ["--method", "magic"]
        expected = "unknown calibration method 'magic'"
    elif problem == "bad target":
        extra = ["--target", "avx9"]
        expected = "unknown INT8 target 'avx9'; use portable, vnni"
    elif problem == "negative latency runs":
        extra = ["--latency-runs", "-1"]
        expected = "--latency-runs must be >= 0"
    elif problem == "browser without onnxruntime":
        extra = ["--browser", "--backends", "openvino"]
        expected = "--browser gates the ONNX Runtime INT8 decoder"
    elif problem == "browser only before quantizing":
        extra = ["--browser-only"]
        expected = "has no ONNX Runtime INT8 decoder yet"
    elif problem == "browser only without chromium":
        # an INT8 decoder recorded (its FP32 file, copied), so that only the chromium is missing
        with_int8(export)
        extra = ["--browser-only", "--chromium", str(tmp_path / "no-chromium")]
        expected = "--browser: no chromium at"
    else:
        extra = ["--backends", "tensorrt"]
        expected = "backends must be"
    before = snapshot(export)
    outcome = CliRunner().invoke(
        app, [str(export), "--calib", str(calib), "--heldout", str(heldout), "--num-sessions", "1", "--quiet", *extra]
    )
    assert outcome.exit_code == EXIT_BAD_INPUT, outcome.output
    assert expected in outcome.output
    assert snapshot(export) == before


def test_help_explains_every_option() -> None:
    outcome = CliRunner().invoke(app, ["--help"])
    assert outcome.exit_code == 0
    for flag in (
        "--calib",
        "--heldout",
        "--num-sessions",
        "--method",
        "--min-iou",
        "--max-noc-delta",
        "--keep-float",
        "--max-float-layers",
        "--gate-limit",
        "--backends",
        "--target",
        "--latency-runs",
        "--browser",
        "--browser-only",
        "--chromium",
    ):
        assert flag in outcome.output
