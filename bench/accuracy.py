"""Accuracy: parity with the FP32 reference, click by click, and interactive quality per configuration.

For every object of the dataset:

1. the **reference** (FP32 on the first backend, ONNX Runtime when installed) runs a standard
   automatic-clicker session (:func:`~interformer_edge.core.evaluation.run_session`); the decoder
   input of each click (reference label, roi) and the logits are kept — once, shared by every row;
2. **parity**: every configuration (the reference too, which checks that it is deterministic) runs
   its decoder on exactly those inputs, with features from its own encoder, so differences are the
   configuration's alone: per-click mask IoU against the reference mask and the logit difference;
3. **quality**: every other configuration runs its own session (its own masks decide where the
   clicker clicks next) → mIoU@k, NoC@85/90 and the IoU-per-click curve, as a user would see them.

Objects are full-size images (the evaluation protocol never rescales); configurations sharing an
encoder (e.g. the FP32 and INT8 decoders of one backend) share its features.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interformer_edge.core.dataset import EvalDataset, Sample
from interformer_edge.core.evaluation import MIOU_AT_CLICKS, Roi, SessionResult, iou, run_session, summarize
from interformer_edge.core.preprocess import pad_ref_label
from interformer_edge.core.progress import Countdown
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.features import ImageFeatures

from .accuracy_results import AccuracyRow, Evaluation, ObjectCurves, Parity, Scores
from .configs import BenchConfig

# (H, W) uint8 reference label at the image size, roi on the padded canvas or None → (2, H, W) float32 logits.
LogitsFn = Callable[[np.ndarray, Roi | None], np.ndarray]


def runtime_logits(decoder: Decoder, features: ImageFeatures) -> LogitsFn:
    """A :data:`LogitsFn` on one image's features (encoded at full size) with a runtime decoder."""
    feed = decoder.image_inputs(features)  # once per image, not per click
    padded = features.meta.padded_size
    height, width = features.meta.encoded_size

    def logits(ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        out = decoder.run(feed, pad_ref_label(ref_label, padded, dtype=np.uint8), roi)
        return out[0, :, :height, :width]

    return logits


@dataclass
class Participant:
    """One configuration in the accuracy run: ``start(image, cache)`` encodes an ``(H, W, 3)`` uint8 image
    (``cache`` is per image, for encoders shared between configurations) and returns its :data:`LogitsFn`."""

    config: BenchConfig
    start: Callable[[np.ndarray, dict[Any, Any]], LogitsFn]


@dataclass
class _Tally:
    """Running sums of one configuration over all objects."""

    parity_ious: list[list[float]] = field(default_factory=list)  # [click index] → IoU per object
    identical: int = 0
    compared: int = 0
    agreement: float = 0.0  # sum over clicks of the fraction of equal pixels
    max_abs: float = 0.0
    sum_abs: float = 0.0
    values: int = 0
    sessions: list[SessionResult] = field(default_factory=list)
    seconds: float = 0.0

    def add_parity(
        self, index: int, mask: np.ndarray, ref_mask: np.ndarray, logits: np.ndarray, ref_logits: np.ndarray
    ) -> None:
        while len(self.parity_ious) <= index:
            self.parity_ious.append([])
        self.parity_ious[index].append(iou(mask, ref_mask))
        self.identical += bool(np.array_equal(mask, ref_mask))
        self.agreement += float(np.mean(mask == ref_mask))
        self.compared += 1
        diff = np.abs(logits.astype(np.float64) - ref_logits)
        finite = bool(np.isfinite(diff).all())
        self.max_abs = max(self.max_abs, float(diff.max()) if finite else float("inf"))
        self.sum_abs += float(diff.sum()) if finite else float("inf")
        self.values += diff.size

    def parity(self) -> Parity:
        flat = [v for per_click in self.parity_ious for v in per_click]
        return Parity(
            clicks_compared=self.compared,
            mask_iou_mean=float(np.mean(flat)),
            mask_iou_min=float(np.min(flat)),
            mask_iou_per_click=[float(np.mean(v)) for v in self.parity_ious],
            identical_masks=self.identical / self.compared,
            pixel_agreement=self.agreement / self.compared,
            logit_max_abs_diff=self.max_abs,
            logit_mean_abs_diff=self.sum_abs / max(1, self.values),
        )


def usable_samples(dataset: EvalDataset, limit: int | None) -> Iterator[Sample]:
    """The dataset's usable objects in list order, at most ``limit`` of them; unusable files land in
    ``dataset.problems`` (reported, skipped, not counted towards the limit)."""
    for count, sample in enumerate(dataset, start=1):
        yield sample
        if limit and count >= limit:
            return


def evaluate(
    samples: Iterable[Sample],
    reference: Participant,
    others: list[Participant],
    clicks: int,
    zoom_in: bool,
    zoom_start: int,
    progress: Callable[[str], None] | None = None,
    total: int | None = None,
) -> Evaluation:
    """Run the protocol of the module docstring: a row per configuration (none when there was no object)
    and the per-object curves. ``total``: how many samples to expect, for the progress lines' count and
    estimate."""
    everyone = [reference, *others]
    tallies = {p.config.name: _Tally() for p in everyone}
    per_object: list[ObjectCurves] = []
    countdown = Countdown(total) if total else None
    for number, sample in enumerate(samples, start=1):
        if progress is not None:
            position = countdown(number - 1) if countdown is not None else str(number)
            progress(f"object {position}: {sample.name} ({sample.image.shape[0]}x{sample.image.shape[1]})")
        curves = _evaluate_object(sample, everyone, tallies, clicks, zoom_in, zoom_start)
        per_object.append(ObjectCurves(sample.name, list(sample.mask.shape), curves))
    rows = []
    if per_object:
        ref_quality = _quality(tallies[reference.config.name].sessions, clicks)
        for participant in everyone:
            tally = tallies[participant.config.name]
            quality = _quality(tally.sessions, clicks)
            rows.append(
                AccuracyRow(
                    participant.config,
                    participant is reference,
                    tally.parity(),
                    quality,
                    quality.minus(ref_quality),
                    round(tally.seconds, 2),
                )
            )
    return Evaluation(reference.config.name, len(per_object), rows, per_object)


def _evaluate_object(
    sample: Sample, everyone: list[Participant], tallies: dict[str, _Tally], clicks: int, zoom_in: bool, zoom_start: int
) -> dict[str, list[float]]:
    """Steps 1-3 of the module docstring for one object (``everyone[0]`` is the reference); returns the
    IoU-per-click curve of each configuration's own session."""
    reference = everyone[0]
    cache: dict[Any, Any] = {}
    runners: dict[str, LogitsFn] = {}
    for participant in everyone:
        started = time.perf_counter()
        runners[participant.config.name] = participant.start(sample.image, cache)
        tallies[participant.config.name].seconds += time.perf_counter() - started

    steps: list[tuple[np.ndarray, Roi | None, np.ndarray]] = []
    run_reference = runners[reference.config.name]

    def recording(ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        logits = run_reference(ref_label, roi)
        steps.append((ref_label.copy(), roi, np.array(logits, dtype=np.float32)))
        return logits[1] > logits[0]

    started = time.perf_counter()
    ref_result = run_session(recording, sample.mask, clicks, zoom_in=zoom_in, zoom_start=zoom_start)
    tallies[reference.config.name].seconds += time.perf_counter() - started
    tallies[reference.config.name].sessions.append(ref_result)
    curves = {reference.config.name: ref_result.ious}

    for participant in everyone:
        name = participant.config.name
        tally, run = tallies[name], runners[name]
        started = time.perf_counter()
        for index, (ref_label, roi, ref_logits) in enumerate(steps):
            logits = run(ref_label, roi)
            tally.add_parity(index, logits[1] > logits[0], ref_logits[1] > ref_logits[0], logits, ref_logits)
        if participant is not reference:

            def predict(ref_label: np.ndarray, roi: Roi | None, run: LogitsFn = run) -> np.ndarray:
                logits = run(ref_label, roi)
                return logits[1] > logits[0]

            result = run_session(predict, sample.mask, clicks, zoom_in=zoom_in, zoom_start=zoom_start)
            tally.sessions.append(result)
            curves[name] = result.ious
        tally.seconds += time.perf_counter() - started
    return curves


def _quality(sessions: list[SessionResult], clicks: int) -> Scores:
    return Scores.from_json(summarize(sessions, at_clicks=[k for k in MIOU_AT_CLICKS if k <= clicks]))
