"""interformer-quantize when the gate fails: the most sensitive layers are kept float and retried, and
nothing is installed. Its own file so that it runs beside test_quantize.py's end-to-end run."""

from __future__ import annotations

from pathlib import Path

import pytest
from quantize_helpers import calibration_and_heldout, copy_export, snapshot
from typer.testing import CliRunner

from interformer_edge.core.cli_kit import EXIT_GATE_FAILED
from interformer_edge.quantize.cli import app


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return calibration_and_heldout(tmp_path_factory.mktemp("quantize_data"))


def test_a_failing_gate_keeps_sensitive_layers_float_and_installs_nothing(
    light_export: Path, tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    export = copy_export(light_export, tmp_path)
    before = snapshot(export)
    calib, heldout = folders
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # the export folder given as a relative path, as users type it
    args = [
        "export",
        "--calib",
        str(calib),
        "--heldout",
        str(heldout),
        "--backends",
        "onnxruntime",
        "--num-sessions",
        "3",
        "--calib-clicks",
        "3",
        "--gate-clicks",
        "3",
        "--threads",
        "1",
        "--min-iou",
        "1.0",
        "--max-noc-delta",
        "0",
        "--max-float-layers",
        "2",
        "--keep-float",
        "^/neck/",
        "--latency-size",
        "64x96",
        "--quiet",
    ]
    outcome = runner.invoke(app, args)
    assert outcome.exit_code == EXIT_GATE_FAILED, outcome.output
    assert "gate FAILED on onnxruntime" in outcome.output
    assert "kept float" in outcome.output and "/decode_head/" in outcome.output  # the fallback measured the head
    assert snapshot(export) == before  # nothing installed, manifest untouched, no temporary files
