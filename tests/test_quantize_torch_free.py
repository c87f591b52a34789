"""interformer-quantize runs without torch (the README: it uses the exported graphs), both backends included:
a process in which ``import torch`` finds nothing quantizes, gates and installs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from quantize_helpers import calibration_and_heldout, copy_export

# As if torch were not installed: find_spec("torch") is None (NNCF looks for it that way) and importing fails.
RUN_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None
from interformer_edge.quantize.cli import app
try:
    app(sys.argv[1:])
finally:
    loaded = sorted(m for m, module in sys.modules.items() if m.split(".")[0] == "torch" and module is not None)
    print("TORCH_MODULES=" + ",".join(loaded), file=sys.stderr)
"""


def test_quantize_runs_without_torch(light_export: Path, tmp_path: Path) -> None:
    export = copy_export(light_export, tmp_path)
    calib, heldout = calibration_and_heldout(tmp_path / "data")
    args = [str(export), "--calib", str(calib), "--heldout", str(heldout), "--num-sessions", "2"]
    args += ["--calib-clicks", "2", "--gate-clicks", "2", "--min-iou", "0.5", "--max-noc-delta", "4"]
    args += ["--max-float-layers", "0", "--latency-runs", "0", "--threads", "1", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_TORCH, *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "TORCH_MODULES=\n" in done.stderr, done.stderr
    (variant,) = json.loads((export / "manifest.json").read_text())["quantized"]
    assert set(variant["gates"]) == {"onnxruntime", "openvino"}
