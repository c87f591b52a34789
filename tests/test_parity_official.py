"""The port against golden outputs of the official InterFormer code (see tests/goldens/README.md).

The goldens use a reduced ViT (width 128, 2 layers, 2 heads; 32x32 training grid) with the
official Light and Tiny necks and deterministic weights from ``golden_weights.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from golden_weights import golden_value

from interformer_edge.core.spec import PIXEL_MEAN, PIXEL_STD
from interformer_edge.models import InterFormerConfig, build_interformer

GOLDENS = Path(__file__).parent / "goldens"
TOLERANCE = 1e-4
MODEL_FILES = sorted(GOLDENS.glob("*_reduced_*.npz"))


def golden_model(config: dict) -> torch.nn.Module:
    backbone = config["backbone"]
    cfg = InterFormerConfig(
        name="golden",
        img_size=backbone["img_size"],
        patch_size=backbone["patch_size"],
        embed_dims=backbone["embed_dims"],
        depth=backbone["num_layers"],
        num_heads=backbone["num_heads"],
        mlp_ratio=backbone["mlp_ratio"],
        fpn_dims=tuple(backbone["fpn_out_dims"]),
        neck_depths=tuple(config["neck_depths"]),
        neck_refine_start=tuple(config["refine_start"]),
    )
    model = build_interformer(cfg)
    state = {
        k: torch.from_numpy(golden_value(k, tuple(v.shape))) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    model.load_state_dict(state)
    return model


def golden_image(img_small: np.ndarray) -> torch.Tensor:
    image = np.repeat(np.repeat(img_small, 4, axis=0), 4, axis=1).astype(np.float32)
    image = (image - np.asarray(PIXEL_MEAN, np.float32)) / np.asarray(PIXEL_STD, np.float32)
    return torch.from_numpy(image.transpose(2, 0, 1)[None].copy())


def assert_close(golden: np.lib.npyio.NpzFile, name: str, actual: torch.Tensor) -> None:
    assert tuple(actual.shape) == tuple(golden[f"{name}_shape"]), name
    flat = actual.detach().numpy().reshape(-1)[:: int(golden[f"{name}_stride"])]
    diff = np.abs(flat - golden[name]).max()
    assert diff <= TOLERANCE, f"{name}: max abs diff {diff:.2e}"


def test_goldens_present() -> None:
    names = {p.stem for p in MODEL_FILES}
    assert {"light_reduced_64x96", "light_reduced_160x128", "light_reduced_256x1024"} <= names
    assert {"tiny_reduced_128x128", "tiny_reduced_160x224"} <= names


@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def test_matches_official(path: Path) -> None:
    golden = np.load(path)
    model = golden_model(json.loads(str(golden["config"])))
    state = model.state_dict()
    for i in range(3):  # generator drift would make every later comparison meaningless
        key = str(golden[f"checksum_{i}_key"])
        value = golden_value(key, tuple(state[key].shape)).astype(np.float64).sum()
        assert value == pytest.approx(float(golden[f"checksum_{i}"]), rel=1e-12), key
    image = golden_image(golden["img_small"])
    ref_label = torch.from_numpy(golden["ref_label"].astype(np.float32))
    with torch.no_grad():
        features = model.encode(image)
        for level, feature in enumerate(features):
            assert_close(golden, f"fpn{level}", feature)
        for case, roi in enumerate(golden["rois"]):
            roi_tensor = None if roi[0] < 0 else torch.from_numpy(roi.astype(np.int64))
            outputs = model.neck(features, ref_label, roi_tensor)
            for level, output in enumerate(outputs):
                assert_close(golden, f"case{case}_neck{level}", output)
            assert_close(golden, f"case{case}_logits", model.decode_head(outputs))
