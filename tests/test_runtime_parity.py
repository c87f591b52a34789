"""Acceptance: 20 automatic clicks through the torch-free runtime match the PyTorch reference after every click.

The runtime drives the official protocol (``run_session``: clicker, reference labels, zoom-in) on
features that went through the feature store (float16 on disk); at every click PyTorch's
``TorchPredictor`` answers the same reference label and roi, and the masks must agree on at least
99.9 % of the pixels. Models: the bundled default checkpoint when it is present (otherwise a small
random Light-neck model, see ``conftest.default_export``) and a small random Tiny-neck model with
refine stages, which zooms in from the second click.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interformer_edge.assets import HELDOUT_DIR
from interformer_edge.core.evaluation import Roi, run_session
from interformer_edge.core.image_io import read_mask, read_rgb
from interformer_edge.core.manifest import load_manifest
from interformer_edge.core.spec import EVAL_MAX_CLICKS
from interformer_edge.models import load_interformer
from interformer_edge.models.predictor import TorchPredictor
from interformer_edge.runtime import ClickSession, Decoder, Encoder, load_features, save_features

MIN_AGREEMENT = 0.999
SAMPLE = "synth_0001"
SAMPLE_SCALE = 0.45  # ~150x207: not a multiple of 32 (padding is exercised), small enough for 2 cores


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch with 2 threads on 2 busy cores is ~30x slower (OpenMP spinning); the reference needs no speed."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def heldout_sample() -> tuple[np.ndarray, np.ndarray]:
    image, gt = read_rgb(HELDOUT_DIR / "img" / f"{SAMPLE}.jpg"), read_mask(HELDOUT_DIR / "gt" / f"{SAMPLE}.png")
    size = (round(image.shape[1] * SAMPLE_SCALE), round(image.shape[0] * SAMPLE_SCALE))
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    gt = np.asarray(Image.fromarray(gt).resize(size, Image.Resampling.NEAREST))
    return image, gt


class TorchOracle:
    """The PyTorch reference on one image, remembering answers: both backends usually ask the same questions."""

    def __init__(self, checkpoint: str, image: np.ndarray) -> None:
        with torch_threads(1):
            self.predictor = TorchPredictor(load_interformer(checkpoint), image)
        self.answers: dict[tuple[str, Roi | None], np.ndarray] = {}

    def __call__(self, ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        key = (hashlib.sha1(ref_label.tobytes()).hexdigest(), roi)
        if key not in self.answers:
            with torch_threads(1):
                self.answers[key] = self.predictor(ref_label, roi)
        return self.answers[key]


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    return heldout_sample()


@pytest.fixture(scope="module")
def oracles() -> dict[str, TorchOracle]:
    return {}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("model", ["default", "tiny"])
def test_twenty_clicks_match_pytorch_after_every_click(
    model: str,
    backend: str,
    sample: tuple[np.ndarray, np.ndarray],
    oracles: dict[str, TorchOracle],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    if model == "default":
        export, kind = request.getfixturevalue("default_export")
    else:
        export, kind = request.getfixturevalue("tiny_export"), "random small tiny"
    image, gt = sample
    checkpoint = load_manifest(export).source_checkpoint.path
    oracle = oracles.setdefault(model, TorchOracle(checkpoint, image))

    encoder = Encoder(export, backend=backend, threads=1)
    decoder = Decoder(export, backend=backend, threads=1)
    stored = save_features(encoder.encode(image, name=SAMPLE), tmp_path / f"{SAMPLE}.npz")  # float16 on disk
    features = load_features(stored, decoder.model_id)
    session = ClickSession(decoder, features)
    assert session.zoom_in == decoder.uses_roi == (model == "tiny")

    agreements: list[float] = []
    masks: list[np.ndarray] = []
    rois: list[Roi | None] = []

    def predict(ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        mask = session.predict(ref_label, roi)
        agreements.append(float(np.mean(mask == oracle(ref_label, roi))))
        masks.append(mask)
        rois.append(roi)
        return mask

    result = run_session(predict, gt, zoom_in=decoder.uses_roi)
    assert len(agreements) == EVAL_MAX_CLICKS, f"the clicker stopped early ({kind})"
    worst = int(np.argmin(agreements))
    assert agreements[worst] >= MIN_AGREEMENT, f"{kind}, {backend}: click {worst + 1}: {agreements[worst]:.4%}"
    assert len({m.tobytes() for m in masks}) > 3, "masks do not react to clicks: the comparison would be vacuous"
    if decoder.uses_roi:
        whole = (0, 0, *features.meta.padded_size[::-1])
        assert rois[0] is None and all(r is not None for r in rois[1:])
        assert any(r != whole for r in rois[1:]), "zoom-in never cropped"

    # The stateful session follows the same protocol: replaying the clicks gives the same masks, one run each.
    replay = ClickSession(decoder, features)
    for click, expected in zip(result.clicks, masks, strict=True):
        np.testing.assert_array_equal(replay.add_click(click.y, click.x, click.is_positive), expected)
    assert replay.decoder_runs == len(result.clicks)
