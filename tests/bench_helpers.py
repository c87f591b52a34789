"""Helpers of the benchmark tests (test_bench.py, test_bench_cli.py, test_bench_units.py): a small dataset with
bad files, a fake INT8 variant, and the command line run in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from interformer_edge.bench.cli import app
from interformer_edge.core.manifest import QuantizedGraph, load_manifest, with_quantized, write_manifest

# Fast timing for behaviour tests: no timing is asserted (the CI machine is shared).
FAST = ["--runs", "2", "--budget", "0", "--warmup", "1", "--memory-clicks", "3"]
# report.json of the code before the report had types (interformer-bench of a small Light export with a fake
# int8 decoder: both backends, the default rows with their static twins, 1 thread, 64x64, 1 object x 5 clicks).
PREVIOUS_REPORT = Path(__file__).parent / "data" / "bench_report_v1.json"


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
    interformer-quantize records a real one: enough to prove the variant is benchmarked as its own row."""
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
    """``interformer-bench ARGS`` in-process: (exit status, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
