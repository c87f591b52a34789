"""The OpenVINO decoder's logits resize written as two matrix products (``resize_logits_by_matmul``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interformer_edge.core.spec import LOGITS_OUTPUT, LOGITS_RESIZE_SCOPE, REF_LABEL_INPUT
from interformer_edge.export.openvino_ir import convert

# The small graphs here are traced with torch.onnx's TorchScript exporter, as the exporter's are.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _ResizeToLabel(nn.Module):
    """What the decoder ends with: quarter-size logits resized bilinearly to the reference label's size."""

    def forward(self, quarter: Tensor, ref_label: Tensor) -> Tensor:
        return F.interpolate(quarter, size=ref_label.shape[2:], mode="bilinear", align_corners=False)


class _NoResize(nn.Module):
    def forward(self, quarter: Tensor, ref_label: Tensor) -> Tensor:
        return quarter * 2.0 + ref_label[:, :, :1, :1]


def _onnx(module: nn.Module, path: Path) -> Path:
    inputs = (torch.zeros(1, 2, 4, 6), torch.zeros(1, 1, 16, 24))
    torch.onnx.export(
        module,
        inputs,
        str(path),
        input_names=["quarter", REF_LABEL_INPUT],
        output_names=[LOGITS_OUTPUT],
        dynamic_axes={"quarter": {2: "h", 3: "w"}, REF_LABEL_INPUT: {2: "H", 3: "W"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def test_logits_resize_by_matmul_matches_pytorch_bilinear_at_every_size(tmp_path: Path) -> None:
    xml = tmp_path / "resize.xml"
    convert(_onnx(_ResizeToLabel(), tmp_path / "resize.onnx"), xml, {}, fp16=False, logits_by_matmul=True)
    model = ov.Core().read_model(str(xml))
    kinds = {op.get_type_name() for op in model.get_ordered_ops()}
    assert "Interpolate" not in kinds and "MatMul" in kinds
    products = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    assert all(op.get_friendly_name().startswith(f"{LOGITS_RESIZE_SCOPE}/") for op in products)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(0)
    # x4 as in the decoder (edges clamp), plus sizes that are not multiples of the input (other weights).
    for (h, w), (big_h, big_w) in [((8, 12), (32, 48)), ((5, 7), (20, 28)), ((6, 9), (13, 31)), ((1, 3), (4, 12))]:
        quarter = rng.normal(size=(1, 2, h, w)).astype(np.float32) * 10
        label = np.zeros((1, 1, big_h, big_w), np.float32)
        got = compiled({"quarter": quarter, REF_LABEL_INPUT: label})[LOGITS_OUTPUT]
        expected = F.interpolate(torch.from_numpy(quarter), size=(big_h, big_w), mode="bilinear", align_corners=False)
        assert got.shape == (1, 2, big_h, big_w)
        np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)


def test_logits_resize_pass_refuses_a_graph_without_that_resize(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Interpolate"):
        convert(_onnx(_NoResize(), tmp_path / "plain.onnx"), tmp_path / "plain.xml", {}, False, logits_by_matmul=True)
    assert not (tmp_path / "plain.xml").exists()
