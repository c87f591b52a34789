"""Calibration inputs for the click decoder: what annotators really feed it.

A :class:`DecoderSample` is one decoder call of a simulated click session: the encoder features of
a calibration image plus the reference label (and zoom-in roi) of one click. Sessions follow the
runtime's own :class:`~interformer_edge.runtime.session.ClickSession` (prediction updates, zoom-in
from the second click for models with refine stages) with the FP32 decoder; each session makes
1–``max_clicks`` clicks, drawn like the official training clicker: the first at the object's
centre, later ones uniformly inside the inner part of the largest error region. Decoder inputs of
every click are kept, so the activation ranges cover first clicks, corrections and zoomed crops.

Calibration images come from a folder in the GrabCut layout (``img/``, ``gt/``, ``list/val.txt``,
the bundled ``assets/calib`` by default) or a plain folder of images. Without masks, an image's
target is the FP32 model's own mask after one positive click at a random point (a plausible
object), and sessions then correct towards it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interformer_edge.core.clicker import TRAIN_FIRST_CLICK_INNER_K, TRAIN_LATER_CLICK_INNER_K, random_click
from interformer_edge.core.dataset import IMAGE_SUFFIXES, open_dataset
from interformer_edge.core.evaluation import Roi
from interformer_edge.core.image_io import ImageReadError, read_rgb
from interformer_edge.core.spec import REF_LABEL_INPUT, ROI_INPUT
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder
from interformer_edge.runtime.features import ImageFeatures
from interformer_edge.runtime.session import ClickSession

# A pseudo target must cover at least this share of the image to be worth a session.
MIN_TARGET_SHARE = 0.002


class CalibrationError(ValueError):
    """Unusable calibration input (empty folder, nothing readable); the message says what to do."""


@dataclass(frozen=True)
class CalibrationImage:
    """One calibration image ``(H, W, 3)`` uint8 and its object mask ``(H, W)`` bool (None: no mask)."""

    name: str
    image: np.ndarray
    mask: np.ndarray | None


@dataclass(frozen=True)
class DecoderSample:
    """One decoder call: features (shared by the samples of one image), reference label, roi."""

    image_name: str
    features: dict[str, np.ndarray]  # the decoder's per-image inputs (Decoder.image_inputs): feat0, ctx0..ctx3
    ref_label: np.ndarray  # (1, 1, Hp, Wp) uint8 codes 0..4
    roi: np.ndarray | None  # (1, 4) int64 left, up, right, bottom; None for models without a roi input

    def feed(self) -> dict[str, np.ndarray]:
        """The decoder's input dict (names as in the manifest's decoder signature)."""
        inputs = dict(self.features)
        inputs[REF_LABEL_INPUT] = self.ref_label
        if self.roi is not None:
            inputs[ROI_INPUT] = self.roi
        return inputs


def read_calibration_images(folder: str | Path, problems: list[str]) -> list[CalibrationImage]:
    """Images (with masks if the folder has ``gt/``) of ``folder``; unreadable files go to ``problems``.

    Raises:
        CalibrationError: the folder is missing or holds no usable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder not found: {folder}")
    images: list[CalibrationImage] = []
    if (folder / "img").is_dir() and (folder / "gt").is_dir():
        dataset = open_dataset(folder)
        images = [CalibrationImage(s.name, s.image, s.mask) for s in dataset]
        problems.extend(dataset.problems)
    else:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                images.append(CalibrationImage(path.stem, read_rgb(path), None))
            except ImageReadError as err:  # the reason without the folder, which the message names once
                reason = str(err).removeprefix(f"cannot read image {path}: ").replace(str(path), path.name)
                problems.append(f"{path.name}: {reason}")
    if not images:
        raise CalibrationError(f"no usable calibration images in {folder}{_problem_summary(problems)}")
    return images


def _problem_summary(problems: list[str], shown: int = 5) -> str:
    """``: 5 unreadable: a.jpg: why; b.jpg: why; …`` (empty without problems)."""
    if not problems:
        return ""
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return f": {len(problems)} unreadable: " + "; ".join(problems[:shown]) + more


class RecordingDecoder:
    """A :class:`Decoder` that also keeps the inputs of every call it answers (for calibration)."""

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        self.calls: list[tuple[np.ndarray, Roi | None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)  # everything else is the wrapped decoder's

    def run(self, feed: dict[str, np.ndarray], ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        self.calls.append((ref_label.copy(), roi))
        return self._decoder.run(feed, ref_label, roi)


def pseudo_target(
    decoder: Decoder, features: ImageFeatures, rng: np.random.Generator, attempts: int = 5
) -> np.ndarray | None:
    """The FP32 mask after one positive click at a random pixel (retried if it is nearly empty)."""
    height, width = features.meta.original_size
    for _ in range(attempts):
        session = ClickSession(decoder, features)
        mask = session.add_click(int(rng.integers(height)), int(rng.integers(width)), positive=True)
        if mask.mean() >= MIN_TARGET_SHARE:
            return np.array(mask)
    return None


def simulate_sessions(
    encoder: Encoder,
    decoder: Decoder,
    images: list[CalibrationImage],
    num_sessions: int,
    max_clicks: int = 20,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[DecoderSample]:
    """Decoder inputs of ``num_sessions`` simulated sessions over ``images`` (cycled in a seeded order).

    Each session has a uniformly drawn length of 1..``max_clicks`` clicks (fewer if the target is
    reached). ``progress`` is called with the number of finished sessions.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    encoded: dict[str, tuple[ImageFeatures, dict[str, np.ndarray], np.ndarray | None]] = {}
    samples: list[DecoderSample] = []
    for index in range(num_sessions):
        item = images[int(order[index % len(images)])]
        if item.name not in encoded:
            features = encoder.encode(item.image, name=item.name)
            target = item.mask if item.mask is not None else pseudo_target(decoder, features, rng)
            encoded[item.name] = (features, decoder.image_inputs(features), target)
        features, feed, target = encoded[item.name]
        if target is not None:
            samples += _one_session(
                decoder, item.name, features, feed, target, int(rng.integers(1, max_clicks + 1)), rng
            )
        if progress is not None:
            progress(index + 1)
    if not samples:
        raise CalibrationError("no calibration session produced a decoder input (no usable object in the images)")
    return samples


def _one_session(
    decoder: Decoder,
    name: str,
    features: ImageFeatures,
    feed: dict[str, np.ndarray],
    target: np.ndarray,
    length: int,
    rng: np.random.Generator,
) -> list[DecoderSample]:
    recorder = RecordingDecoder(decoder)
    session = ClickSession(recorder, features)  # type: ignore[arg-type]  # duck-typed Decoder
    for step in range(length):
        inner_k = TRAIN_FIRST_CLICK_INNER_K if step == 0 else TRAIN_LATER_CLICK_INNER_K
        click = random_click(session.mask, target, session.clicks, inner_k, rng)
        if click is None:
            break
        session.add_click(click.y, click.x, click.is_positive)
    padded_h, padded_w = features.meta.padded_size
    samples = []
    for ref_label, roi in recorder.calls:
        box = None
        if decoder.uses_roi:
            box = np.asarray([roi if roi is not None else (0, 0, padded_w, padded_h)], dtype=np.int64)
        samples.append(DecoderSample(name, feed, ref_label, box))
    return samples


def subsample(samples: list[DecoderSample], limit: int, seed: int = 0) -> list[DecoderSample]:
    """At most ``limit`` samples, drawn without replacement (order kept), so long sessions don't dominate."""
    if len(samples) <= limit:
        return samples
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), size=limit, replace=False))
    return [samples[int(i)] for i in keep]


def feeds(samples: list[DecoderSample]) -> Iterator[dict[str, np.ndarray]]:
    """The decoder input dicts of ``samples``, one at a time."""
    return (sample.feed() for sample in samples)
