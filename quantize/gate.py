"""The INT8 accuracy gate: held-out click sessions, INT8 against FP32.

For every held-out object the FP32 decoder runs the standard automatic-clicker session once (the
reference, shared by every candidate). A candidate decoder is then measured two ways:

* **agreement**: on every FP32 click's exact inputs (reference label, roi) the candidate's mask
  is compared with the FP32 mask — mean IoU per click and over all clicks;
* **interactive quality**: the candidate runs its own sessions, giving NoC@85/90 and mIoU@k to
  compare with FP32's.

Both come from one pass where they can: as long as the candidate's own session asks the decoder
about the same inputs as the FP32 session did (same masks so far, so the same next click), its
answers are also the agreement answers; only the clicks after the sessions part ways are run a
second time on the FP32 inputs. The decoder is deterministic, so the figures are those of two passes.

Sessions stop once they have made the clicks mIoU@k reports (k ≤ 5) and reached 90 % IoU (see
``stop_after`` in :func:`~interformer_edge.core.evaluation.run_session`): the later clicks cannot
change NoC@85/90 or mIoU@k, so those figures are the full sessions' and the agreement covers every
click up to there (about a third of a 20-click budget on the bundled model).

It passes when the mean IoU vs FP32 reaches ``min_iou`` and |ΔNoC@90| stays within
``max_noc90_delta``. Held-out objects are never calibration images (the pipeline takes them from
another folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from interformer_edge.core.evaluation import MIOU_AT_CLICKS, Roi, SessionResult, iou, run_session, summarize
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.features import ImageFeatures
from interformer_edge.runtime.session import ClickSession

DEFAULT_MIN_IOU = 0.98
DEFAULT_MAX_NOC90_DELTA = 0.2
# Sessions may stop once past the last mIoU@k click and at 90 % IoU (see the module docstring).
STOP_AFTER = max(MIOU_AT_CLICKS)


@dataclass(frozen=True)
class GateThresholds:
    min_iou: float = DEFAULT_MIN_IOU
    max_noc90_delta: float = DEFAULT_MAX_NOC90_DELTA

    def accept(self, mean_iou: float, noc90_delta: float) -> bool:
        """Whether an INT8 decoder with these figures passes.

        NoC@90 averages are multiples of 1/objects, so their float difference can land a rounding step
        past a limit it equals (4.45 - 4.25 = 0.20000000000000018): that counts as the limit.
        """
        return mean_iou >= self.min_iou and abs(noc90_delta) <= self.max_noc90_delta + 1e-9


@dataclass(frozen=True)
class GateObject:
    """A held-out object: its features (from the FP32 encoder) and ground-truth mask ``(H, W)`` bool."""

    name: str
    features: ImageFeatures
    gt: np.ndarray


@dataclass
class ReferenceSession:
    """The FP32 session of one object: its result and, per click, the decoder inputs (``ref_label``
    ``(H, W)`` uint8 at the image size, roi on the padded canvas or None) and the ``(H, W)`` bool mask."""

    obj: GateObject
    result: SessionResult
    inputs: list[tuple[np.ndarray, Roi | None]]
    masks: list[np.ndarray]


@dataclass(frozen=True)
class GateResult:
    """Gate metrics of one candidate (JSON-ready through :meth:`to_dict`)."""

    passed: bool
    objects: int
    clicks: int
    mean_iou_vs_fp32: float
    iou_vs_fp32_per_click: list[float]
    min_iou_vs_fp32: float  # worst single click
    noc85_fp32: float
    noc85: float
    noc90_fp32: float
    noc90: float
    miou_fp32: dict[str, float]
    miou: dict[str, float]
    thresholds: dict[str, float]

    @property
    def noc90_delta(self) -> float:
        return self.noc90 - self.noc90_fp32

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["noc90_delta"] = self.noc90_delta
        data["noc85_delta"] = self.noc85 - self.noc85_fp32
        return data


def _predictor(decoder: Decoder, obj: GateObject) -> ClickSession:
    return ClickSession(decoder, obj.features)


class _Recording:
    """A predictor that keeps every input it was asked about and the mask it answered."""

    def __init__(self, session: ClickSession) -> None:
        self.session = session
        self.inputs: list[tuple[np.ndarray, Roi | None]] = []
        self.masks: list[np.ndarray] = []

    def __call__(self, ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        mask = self.session.predict(ref_label, roi)
        self.inputs.append((ref_label.copy(), roi))
        self.masks.append(mask)
        return mask


def reference_sessions(
    decoder: Decoder, objects: Sequence[GateObject], clicks: int, progress: Callable[[int], None] | None = None
) -> list[ReferenceSession]:
    """Run the FP32 sessions and keep what the candidates are compared on; ``progress`` is called with the
    number of objects done."""
    references = []
    for index, obj in enumerate(objects):
        recording = _Recording(_predictor(decoder, obj))
        result = run_session(recording, obj.gt, clicks, zoom_in=decoder.uses_roi, stop_after=STOP_AFTER)
        references.append(ReferenceSession(obj, result, recording.inputs, recording.masks))
        if progress is not None:
            progress(index + 1)
    return references


class _Agreeing:
    """The candidate's own-session predictor; while its inputs equal the reference session's, it also
    scores each answer against the FP32 mask of that click."""

    def __init__(self, session: ClickSession, reference: ReferenceSession) -> None:
        self.session = session
        self.reference = reference
        self.ious: list[float] = []  # IoU vs FP32 of the leading clicks whose inputs were the reference's
        self.parted = False

    def __call__(self, ref_label: np.ndarray, roi: Roi | None) -> np.ndarray:
        mask = self.session.predict(ref_label, roi)
        step = len(self.ious)
        if not self.parted and step < len(self.reference.inputs):
            fp32_label, fp32_roi = self.reference.inputs[step]
            if fp32_roi == roi and np.array_equal(fp32_label, ref_label):
                self.ious.append(iou(mask, self.reference.masks[step]))
            else:
                self.parted = True
        return mask


def evaluate(
    candidate: Decoder,
    references: Sequence[ReferenceSession],
    clicks: int,
    thresholds: GateThresholds = GateThresholds(),
    progress: Callable[[int], None] | None = None,
) -> GateResult:
    """Measure ``candidate`` against the FP32 ``references`` (see the module docstring); ``progress`` is
    called with the number of objects done."""
    per_click: list[list[float]] = [[] for _ in range(clicks)]
    own: list[SessionResult] = []
    for index, ref in enumerate(references):
        agreeing = _Agreeing(_predictor(candidate, ref.obj), ref)
        own.append(run_session(agreeing, ref.obj.gt, clicks, zoom_in=candidate.uses_roi, stop_after=STOP_AFTER))
        for step, ((ref_label, roi), fp32_mask) in enumerate(zip(ref.inputs, ref.masks, strict=True)):
            if step < len(agreeing.ious):
                per_click[step].append(agreeing.ious[step])
            else:  # the sessions have parted: ask the FP32 session's own question
                per_click[step].append(iou(agreeing.session.predict(ref_label, roi), fp32_mask))
        if progress is not None:
            progress(index + 1)
    fp32 = summarize([r.result for r in references])
    int8 = summarize(own)
    values = [v for step in per_click for v in step]
    mean_iou = float(np.mean(values)) if values else 1.0
    noc90_delta = float(int8["noc@90"]) - float(fp32["noc@90"])
    passed = thresholds.accept(mean_iou, noc90_delta)
    return GateResult(
        passed=passed,
        objects=len(references),
        clicks=clicks,
        mean_iou_vs_fp32=mean_iou,
        iou_vs_fp32_per_click=[float(np.mean(step)) if step else float("nan") for step in per_click],
        min_iou_vs_fp32=float(min(values)) if values else 1.0,
        noc85_fp32=float(fp32["noc@85"]),
        noc85=float(int8["noc@85"]),
        noc90_fp32=float(fp32["noc@90"]),
        noc90=float(int8["noc@90"]),
        miou_fp32={k: float(v) for k, v in fp32.items() if k.startswith("miou@")},  # type: ignore[arg-type]
        miou={k: float(v) for k, v in int8.items() if k.startswith("miou@")},  # type: ignore[arg-type]
        thresholds=asdict(thresholds),
    )
