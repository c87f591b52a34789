"""interformer-export of a model with refine stages (Tiny neck: a roi input, zoom-in) through the CLI.

Its own file so that this export and test_export.py's run on different test workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from export_helpers import assert_onnx_matches_pytorch, cli, small_checkpoint

from interformer_edge.core.manifest import load_manifest
from interformer_edge.core.spec import DECODER_ONNX
from interformer_edge.export.onnx_graphs import read_metadata


@pytest.fixture(scope="module")
def tiny_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, Path]:
    """Tiny neck through the CLI; the gate at the 1024-token size (all three sizes are checked against
    PyTorch by the test below), without onnxslim (test_export.py's Light export runs it;
    on the Tiny neck's three times larger graph it is most of the export's time): (CLI result, out dir,
    checkpoint)."""
    root = tmp_path_factory.mktemp("tiny")
    checkpoint = small_checkpoint(root / "small_tiny.pth", "tiny")
    out = root / "export"
    result = cli("--checkpoint", str(checkpoint), "--out", str(out), "--parity-sizes", "256x1024", "--no-simplify")
    return result, out, checkpoint


def test_cli_export_of_refine_model(tiny_cli: tuple[object, Path, Path]) -> None:
    result, out, _ = tiny_cli
    assert result.exit_code == 0, result.output
    assert "Parity gate passed" in result.stdout and "256x1024" in result.stdout
    manifest = load_manifest(out)
    assert manifest.zoom_in.uses_roi
    roi = manifest.graphs["decoder"].inputs[-1]
    assert (roi.name, roi.dtype, roi.shape) == ("roi", "int64", (1, 4))
    assert manifest.parity.passed and manifest.onnx_simplified == {"encoder": False, "context": False, "decoder": False}
    assert read_metadata(out / DECODER_ONNX)["uses_roi"] == "true"


def test_exported_onnx_files_match_pytorch_at_three_sizes(tiny_cli: tuple[object, Path, Path]) -> None:
    _, out, checkpoint = tiny_cli
    assert_onnx_matches_pytorch(out, checkpoint, uses_roi=True)
