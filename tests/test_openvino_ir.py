"""The OpenVINO decoder's 4x logits resize written as its phases (``resize_logits_by_phases``)."""

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
ELEMENTWISE_AND_LAYOUT = {"Constant", "Pad", "Slice", "Multiply", "Add", "Unsqueeze", "Concat", "ShapeOf", "Reshape"}


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


def test_logits_resize_by_phases_matches_pytorch_bilinear_at_every_size(tmp_path: Path) -> None:
    xml = tmp_path / "resize.xml"
    convert(_onnx(_ResizeToLabel(), tmp_path / "resize.onnx"), xml, {}, fp16=False, logits_by_phases=True)
    model = ov.Core().read_model(str(xml))
    ops = model.get_ordered_ops()
    assert "Interpolate" not in {op.get_type_name() for op in ops}
    # Element-wise and data movement only: OpenVINO keeps such a graph tail in f32 under a bf16 hint.
    scope = {op.get_type_name() for op in ops if op.get_friendly_name().startswith(f"{LOGITS_RESIZE_SCOPE}/")}
    assert scope and scope <= ELEMENTWISE_AND_LAYOUT, scope
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(0)
    # The decoder's factor is always 4 (both sides padded to multiples of 32); edges clamp, odd sizes too.
    for h, w in [(8, 12), (5, 7), (1, 3), (6, 9)]:
        quarter = rng.normal(size=(1, 2, h, w)).astype(np.float32) * 10
        label = np.zeros((1, 1, 4 * h, 4 * w), np.float32)
        got = compiled({"quarter": quarter, REF_LABEL_INPUT: label})[LOGITS_OUTPUT]
        expected = F.interpolate(torch.from_numpy(quarter), size=(4 * h, 4 * w), mode="bilinear", align_corners=False)
        assert got.shape == (1, 2, 4 * h, 4 * w)
        np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)


def test_logits_resize_pass_refuses_a_graph_without_that_resize(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Interpolate"):
        convert(_onnx(_NoResize(), tmp_path / "plain.onnx"), tmp_path / "plain.xml", {}, False, logits_by_phases=True)
    assert not (tmp_path / "plain.xml").exists()
