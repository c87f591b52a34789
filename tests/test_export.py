"""interformer-export: dynamic/static graphs, the parity gate, the manifest and clean failure on bad input.

Checkpoints are small random-weight models in the official mmcv layout (reduced ViT, width 64, one
layer) with the real Light neck; test_export_refine.py exports the Tiny neck (refine stages, a ``roi`` input).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from export_helpers import (
    GATE_SIZES,
    SMALL,
    assert_onnx_matches_pytorch,
    cli,
    normalized_image,
    sha256,
    small_checkpoint,
)

import interformer_edge.export.pipeline as pipeline
from interformer_edge.core.manifest import ManifestError, load_manifest
from interformer_edge.core.metrics import logits_to_mask, mask_agreement, max_abs_diff
from interformer_edge.core.spec import (
    CONTEXT_ONNX,
    CONTEXT_OV,
    DECODER_ONNX,
    DECODER_OV,
    ENCODER_ONNX,
    ENCODER_OV,
    LOGITS_RESIZE_SCOPE,
    MANIFEST_FORMAT_VERSION,
    MANIFEST_NAME,
    PIXEL_MEAN,
    PIXEL_STD,
)
from interformer_edge.export.cli import EXIT_BAD_INPUT, EXIT_GATE_FAILED
from interformer_edge.export.onnx_graphs import read_metadata
from interformer_edge.export.openvino_ir import read_rt_info
from interformer_edge.export.parity import GateSettings
from interformer_edge.export.pipeline import ExportOptions, run_export
from interformer_edge.models import load_interformer


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {"light": small_checkpoint(root / "small_light.pth", "light")}


@pytest.fixture(scope="module")
def light_export_result(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> pipeline.ExportResult:
    """Light neck through the Python API, dynamic shapes, default gate sizes, ONNX + OpenVINO."""
    out = tmp_path_factory.mktemp("light") / "export"
    return run_export(ExportOptions(checkpoint=checkpoints["light"], out_dir=out, gate=GateSettings(GATE_SIZES)))


# --------------------------------------------------------------------------------- accuracy


def test_exported_onnx_files_match_pytorch_at_three_sizes(
    checkpoints: dict[str, Path], light_export_result: pipeline.ExportResult
) -> None:
    assert_onnx_matches_pytorch(light_export_result.out_dir, checkpoints["light"], uses_roi=False)


def test_api_export_passes_gate_and_writes_a_truthful_manifest(
    light_export_result: pipeline.ExportResult, checkpoints: dict[str, Path]
) -> None:
    out = light_export_result.out_dir
    assert light_export_result.passed
    manifest = load_manifest(out)
    data = json.loads((out / MANIFEST_NAME).read_text())
    assert data["format_version"] == MANIFEST_FORMAT_VERSION
    model_cfg = load_interformer(checkpoints["light"]).cfg
    assert data["architecture"] == json.loads(json.dumps(model_cfg.to_dict()))
    assert data["preprocessing"]["mean"] == list(PIXEL_MEAN) and data["preprocessing"]["std"] == list(PIXEL_STD)
    assert data["preprocessing"]["color_order"] == "RGB" and data["preprocessing"]["size_divisor"] == 32
    assert data["zoom_in"]["uses_roi"] is False
    assert data["source_checkpoint"]["sha256"] == sha256(checkpoints["light"])
    assert set(data["tools"]) >= {"torch", "onnx", "onnxruntime", "openvino", "onnxslim", "interformer_edge"}
    # Every artifact is listed with its true size and hash, and nothing else lies around.
    listed = {f["name"]: f for f in data["files"]}
    assert set(listed) == {
        ENCODER_ONNX,
        CONTEXT_ONNX,
        DECODER_ONNX,
        ENCODER_OV,
        CONTEXT_OV,
        DECODER_OV,
        "encoder.bin",
        "context.bin",
        "decoder.bin",
    }
    for name, entry in listed.items():
        assert entry["size"] == (out / name).stat().st_size and entry["sha256"] == sha256(out / name)
    assert sorted(p.name for p in out.iterdir()) == sorted([*listed, MANIFEST_NAME])
    # Signatures: dynamic dims are symbolic, the decoder of a Light model has no roi.
    enc, dec = manifest.graphs["encoder"], manifest.graphs["decoder"]
    assert enc.inputs[0].shape == (1, 3, "H", "W")
    assert enc.outputs[0].shape == (1, 32, "H/4", "W/4")
    assert manifest.graphs["context"].input_names() == ["feat0", "feat1", "feat2", "feat3"]
    assert manifest.graphs["context"].outputs[0].shape == (1, "ctx0_tokens", 64)
    assert dec.input_names() == ["feat0", "ctx0", "ctx1", "ctx2", "ctx3", "ref_label"]
    assert dec.outputs[0].shape == (1, 2, "H", "W")
    # The gate covered every size for every output of both backends.
    checks = manifest.parity.checks
    assert {c.size for c in checks} == {"320x480", "512x512", "256x1024"}
    assert {(c.backend, c.output) for c in checks} >= {("onnxruntime", "feat3"), ("openvino", "logits")}
    assert all(c.max_abs_diff is not None and c.max_abs_diff <= 1e-3 for c in checks if c.judged_by == "max_abs")
    # Key facts inside the graphs themselves.
    meta = read_metadata(out / DECODER_ONNX)
    assert meta["role"] == "decoder" and meta["uses_roi"] == "false"
    assert meta["source_checkpoint_sha256"] == data["source_checkpoint"]["sha256"]
    pre = data["preprocessing"]  # the same facts as the manifest's, for a reader with only the graph
    assert (meta["color_order"], meta["input_range"]) == ("RGB", "[0, 255]") and pre["input_range"] == [0, 255]
    assert json.loads(meta["pixel_mean"]) == pre["mean"] and json.loads(meta["pixel_std"]) == pre["std"]
    assert (int(meta["size_divisor"]), int(meta["max_image_side"])) == (pre["size_divisor"], pre["max_image_side"])
    rt_info = read_rt_info(out / ENCODER_OV)
    assert rt_info["role"] == "encoder" and rt_info["weights"] == "fp32"
    decoder_ops = ov.Core().read_model(str(out / DECODER_OV)).get_ordered_ops()  # logits resized by phases
    assert "Interpolate" in {op.get_type_name() for op in decoder_ops}  # the head's own resizes stay
    assert any(op.get_friendly_name().startswith(f"{LOGITS_RESIZE_SCOPE}/") for op in decoder_ops)
    image_type = onnx.load(str(out / ENCODER_ONNX)).graph.input[0].type.tensor_type
    assert [d.dim_param or d.dim_value for d in image_type.shape.dim] == [1, 3, "H", "W"]


# ------------------------------------------------------------------------------------- gate


def test_gate_fails_with_table_when_tolerance_is_impossible(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "strict"
    result = cli(
        "-c",
        str(checkpoints["light"]),
        "-o",
        str(out),
        "--tolerance",
        "1e-12",
        "--parity-sizes",
        "64x96",
        "--format",
        "onnx",
        "--no-simplify",
    )
    assert result.exit_code == EXIT_GATE_FAILED
    assert "FAILED" in result.stdout and "FAIL" in result.stdout and "64x96" in result.stdout
    # The manifest records the failure, and a runtime refuses the folder unless told otherwise.
    assert json.loads((out / MANIFEST_NAME).read_text())["parity"]["passed"] is False
    with pytest.raises(ManifestError, match="parity gate"):
        load_manifest(out)
    assert not load_manifest(out, require_parity=False).parity.passed


def test_gate_catches_corrupted_openvino_weights(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_convert = pipeline.ov_export.convert

    def convert_corrupted(
        onnx_path: Path, xml: Path, metadata: dict[str, str], fp16: bool, **passes: bool
    ) -> list[Path]:
        if xml.stem == "decoder":  # a wrong but well-formed IR: its classifier weights are off by 0.5
            proto = onnx.load(str(onnx_path))
            init = next(i for i in proto.graph.initializer if i.name.endswith("conv_seg.weight"))
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + 0.5, init.name))
            onnx_path = onnx_path.with_name("corrupted.onnx")
            onnx.save(proto, str(onnx_path))
        return real_convert(onnx_path, xml, metadata, fp16, **passes)

    monkeypatch.setattr(pipeline.ov_export, "convert", convert_corrupted)
    result = cli("-c", str(checkpoints["light"]), "-o", str(tmp_path / "x"), "--parity-sizes", "64x96", "--no-simplify")
    assert result.exit_code == EXIT_GATE_FAILED
    failed = json.loads((tmp_path / "x" / MANIFEST_NAME).read_text())["parity"]["checks"]
    assert {(c["backend"], c["output"]) for c in failed if not c["passed"]} == {("openvino", "logits")}
    assert "openvino" in result.stdout and "FAIL" in result.stdout


def test_broken_simplification_falls_back_to_traced_graph(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def simplify_wrongly(proto: onnx.ModelProto, lift_bytes: int | None = None) -> onnx.ModelProto:
        """A "simplifier" that keeps the encoder as it is and damages the decoder's classifier."""
        slim = onnx.ModelProto()
        slim.CopyFrom(proto)
        init = next((i for i in slim.graph.initializer if i.name.endswith("conv_seg.weight")), None)
        if init is not None:  # only the decoder holds the classifier
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + 1.0, init.name))
        return slim

    monkeypatch.setattr(pipeline.onnx_export, "simplify", simplify_wrongly)
    result = run_export(
        ExportOptions(
            checkpoint=checkpoints["light"], out_dir=tmp_path / "fb", formats=("onnx",), gate=GateSettings(SMALL)
        )
    )
    assert result.passed
    assert result.manifest.onnx_simplified == {"encoder": True, "context": True, "decoder": False}
    assert any("unsimplified" in w for w in result.warnings)
    assert read_metadata(tmp_path / "fb" / DECODER_ONNX)["simplified"] == "false"


# ---------------------------------------------------------------------- static and fp16


def test_static_graphs_reject_other_sizes(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "static"
    result = cli("-c", str(checkpoints["light"]), "-o", str(out), "--static", "64x96", "--no-simplify")
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    assert manifest.static_size == (64, 96) and manifest.parity.sizes == ("64x96",)
    assert manifest.graphs["decoder"].inputs[5].shape == (1, 1, 64, 96)
    enc = ort.InferenceSession(str(out / ENCODER_ONNX), providers=["CPUExecutionProvider"])
    assert enc.get_outputs()[0].shape == [1, 32, 16, 24]
    enc.run(None, {"image": normalized_image(64, 96, 0)})
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        enc.run(None, {"image": normalized_image(96, 64, 0)})
    compiled = ov.Core().compile_model(str(out / ENCODER_OV), "CPU")
    with pytest.raises(Exception):  # noqa: B017 - OpenVINO raises a bare RuntimeError-like type
        compiled({"image": normalized_image(96, 64, 0)})


def test_fp16_ir_is_judged_by_mask_agreement(
    checkpoints: dict[str, Path], tmp_path: Path, light_export_result: pipeline.ExportResult
) -> None:
    out = tmp_path / "fp16"
    result = run_export(
        ExportOptions(
            checkpoint=checkpoints["light"], out_dir=out, fp16=True, simplify=False, gate=GateSettings(((64, 96),))
        )
    )
    assert result.passed
    ov_checks = [c for c in result.manifest.parity.checks if c.backend == "openvino"]
    assert {c.judged_by for c in ov_checks if c.output == "logits"} == {"mask"}
    assert {c.judged_by for c in ov_checks if c.graph == "encoder"} == {"info"}
    assert all(c.mask_agreement >= 0.999 for c in ov_checks if c.output == "logits")
    assert result.manifest.openvino_weights == "fp16" and read_rt_info(out / DECODER_OV)["weights"] == "fp16"
    fp32_bin = (light_export_result.out_dir / "decoder.bin").stat().st_size
    assert (out / "decoder.bin").stat().st_size < 0.6 * fp32_bin


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "case", ["missing", "corrupt", "wrong_arch", "unknown_arch", "static", "unwritable", "comma_in_out"]
)
def test_bad_input_gives_one_line_and_leaves_nothing(case: str, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["-c", str(checkpoints["light"]), "-o", str(out)]
    if case == "missing":
        args[1] = str(tmp_path / "nope.pth")
    elif case == "corrupt":
        bad = tmp_path / "bad.pth"
        bad.write_bytes(b"\x80\x04 this is not a checkpoint" * 10)
        args[1] = str(bad)
    elif case == "wrong_arch":
        args += ["--arch", "tiny"]  # a reduced Light checkpoint does not fit the full Tiny preset
    elif case == "unknown_arch":
        args += ["--arch", "huge"]
    elif case == "static":
        args += ["--static", "500x512"]
    elif case == "comma_in_out":
        out = tmp_path / "a,b"
        args[3] = str(out)
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        out = blocker / "out"
        args[3] = str(out)
    result = cli(*args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interformer-export: error:"), result.stderr
    assert not out.exists()
    inputs = {"corrupt": {"bad.pth"}, "unwritable": {"a_file"}}.get(case, set())
    assert {p.name for p in tmp_path.iterdir()} == inputs  # no output folder, no temporary leftovers


def test_failed_export_into_existing_folder_keeps_its_contents(
    checkpoints: dict[str, Path], tmp_path: Path, light_export_result: pipeline.ExportResult
) -> None:
    out = tmp_path / "existing"
    shutil.copytree(light_export_result.out_dir, out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    result = cli("-c", str(tmp_path / "nope.pth"), "-o", str(out))
    assert result.exit_code == EXIT_BAD_INPUT
    assert {p.name: sha256(p) for p in out.iterdir()} == before
    load_manifest(out)


def test_help_explains_every_flag() -> None:
    text = cli("--help").stdout
    for flag in (
        "--checkpoint",
        "--arch",
        "--out",
        "--format",
        "--opset",
        "--fp16",
        "--static",
        "--unsafe-load",
        "--parity-sizes",
        "--tolerance",
        "--min-mask-agreement",
        "--no-simplify",
    ):
        assert flag in text, flag


# ------------------------------------------------------------------- manifest and metrics


def test_manifest_reader_rejects_damaged_exports(light_export_result: pipeline.ExportResult, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(light_export_result.out_dir, out)
    load_manifest(out)
    decoder = out / DECODER_ONNX
    data = bytearray(decoder.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    decoder.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(out)
    load_manifest(out, verify_hashes=False)  # sizes only: the fast path
    (out / "encoder.bin").unlink()
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(out, verify_hashes=False)
    raw = json.loads((out / MANIFEST_NAME).read_text())
    raw["format_version"] = 99
    (out / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="format version 99"):
        load_manifest(out)
    with pytest.raises(ManifestError, match="no export manifest"):
        load_manifest(tmp_path / "nowhere")


def test_metrics() -> None:
    a = np.zeros((1, 2, 2, 3), np.float32)
    a[0, 1, 0] = 1.0  # first row: class 1
    b = a.copy()
    b[0, 1, 1, 0] = 2.0  # one more pixel flips
    assert logits_to_mask(a).tolist() == [[1, 1, 1], [0, 0, 0]]
    assert mask_agreement(a, b) == pytest.approx(5 / 6)
    assert max_abs_diff(a, b) == 2.0
    assert max_abs_diff(a, b[..., :2]) == float("inf")
    b[0, 0, 0, 0] = np.nan
    assert max_abs_diff(a, b) == float("inf")
