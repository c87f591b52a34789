"""Helpers of the exporter tests (test_export.py, test_export_refine.py): small checkpoints, inputs, the CLI,
and the check that exported graphs compute what PyTorch computes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from conftest import small_checkpoint as conftest_small_checkpoint
from typer.testing import CliRunner

from interformer_edge.core.metrics import mask_agreement, max_abs_diff
from interformer_edge.core.spec import CONTEXT_ONNX, DECODER_ONNX, ENCODER_ONNX, PIXEL_MEAN, PIXEL_STD
from interformer_edge.export.cli import app
from interformer_edge.models import (
    ImageContext,
    ImageEncoder,
    load_interformer,
    upsample_logits,
)

GATE_SIZES = ((320, 480), (512, 512), (256, 1024))  # 256x1024 has exactly 32*32 = 1024 tokens
SMALL = ((64, 96),)  # for tests about behaviour rather than accuracy


def small_checkpoint(path: Path, neck: str, seed: int = 0) -> Path:
    """:func:`conftest.small_checkpoint` as the exporter's accuracy tests use it (not click-sensitive)."""
    return conftest_small_checkpoint(path, neck, seed, click_sensitive=False)


def cli(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def normalized_image(height: int, width: int, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)
    image = (rgb - np.asarray(PIXEL_MEAN, np.float32)) / np.asarray(PIXEL_STD, np.float32)
    return image.transpose(2, 0, 1)[None].copy()


def assert_onnx_matches_pytorch(out: Path, checkpoint: Path, uses_roi: bool) -> None:
    """Independently of the exporter's gate: one encoder, one context and one decoder file serve every size
    of GATE_SIZES, and context + decoder give the logits of the whole PyTorch click side."""
    model = load_interformer(checkpoint)
    encoder, context = ImageEncoder(model), ImageContext(model)
    enc = ort.InferenceSession(str(out / ENCODER_ONNX), providers=["CPUExecutionProvider"])
    ctx = ort.InferenceSession(str(out / CONTEXT_ONNX), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / DECODER_ONNX), providers=["CPUExecutionProvider"])
    assert ("roi" in [i.name for i in dec.get_inputs()]) == uses_roi
    for index, (height, width) in enumerate(GATE_SIZES):
        image = normalized_image(height, width, index)
        ref = np.random.default_rng(index).integers(0, 5, (1, 1, height, width)).astype(np.uint8)
        roi = np.asarray([[32, 0, width // 2 // 32 * 32, height - 32]], np.int64)
        with torch.no_grad():
            feats = encoder(torch.from_numpy(image))
            # The whole click side in one eager pass (no split into context and decoder).
            logits = model.decode(feats, torch.from_numpy(ref), torch.from_numpy(roi) if uses_roi else None)
            logits = upsample_logits(logits, height, width).numpy()
        onnx_feats = enc.run(None, {"image": image})
        for expected, actual in zip(feats, onnx_feats, strict=True):
            assert actual.shape == tuple(expected.shape)
            assert max_abs_diff(actual, expected.numpy()) <= 1e-3
        onnx_context = ctx.run(None, {f"feat{i}": f.numpy() for i, f in enumerate(feats)})
        for expected, actual in zip(context(*feats), onnx_context, strict=True):
            assert actual.shape == tuple(expected.shape)
            assert max_abs_diff(actual, expected.detach().numpy()) <= 1e-3
        feed = {"feat0": feats[0].numpy(), "ref_label": ref} | {f"ctx{i}": c for i, c in enumerate(onnx_context)}
        if uses_roi:
            feed["roi"] = roi
        onnx_logits = dec.run(None, feed)[0]
        assert onnx_logits.shape == (1, 2, height, width)
        assert max_abs_diff(onnx_logits, logits) <= 1e-3
        assert mask_agreement(onnx_logits, logits) >= 0.999
