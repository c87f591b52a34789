"""The accuracy part of ``report.json``: parity with the FP32 reference and interactive quality per row
(:mod:`.accuracy`), the dataset's problems, and the export's own parity gate beside them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interformer_edge.core.typed_json import FLAT, OMIT_NONE

from .configs import BenchConfig

MIOU_PREFIX, NOC_PREFIX = "miou@", "noc@"


@dataclass(frozen=True)
class Scores:
    """Interactive quality over sessions, or its difference from the reference's: mean IoU after ``k``
    clicks (``miou@k``), mean clicks to reach an IoU of ``t`` % (``noc@t``) and the mean IoU after each
    click (``iou_curve``; None in a difference)."""

    miou_at: dict[int, float]
    noc_at: dict[int, float]
    iou_curve: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"{MIOU_PREFIX}{k}": v for k, v in self.miou_at.items()}
        out.update({f"{NOC_PREFIX}{t}": v for t, v in self.noc_at.items()})
        if self.iou_curve is not None:
            out["iou_curve"] = list(self.iou_curve)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scores:
        """From :func:`~interformer_edge.core.evaluation.summarize`'s keys (other keys are ignored)."""

        def at(prefix: str) -> dict[int, float]:
            return {int(k[len(prefix) :]): v for k, v in data.items() if k.startswith(prefix)}

        curve = data.get("iou_curve")
        return cls(at(MIOU_PREFIX), at(NOC_PREFIX), None if curve is None else list(curve))

    def minus(self, other: Scores) -> Scores:
        """The difference ``self - other`` of the scores both have (no curve)."""
        return Scores(
            {k: v - other.miou_at[k] for k, v in self.miou_at.items()},
            {t: v - other.noc_at[t] for t, v in self.noc_at.items()},
        )


@dataclass(frozen=True)
class Parity:
    """A row's decoder on the reference's inputs, over all clicks compared: mask IoU against the reference
    mask (mean, min, mean per click index), the shares of identical masks and of equal pixels, and the
    logit difference (max, mean; None when not finite, e.g. against a NaN output)."""

    clicks_compared: int
    mask_iou_mean: float
    mask_iou_min: float
    mask_iou_per_click: list[float]
    identical_masks: float
    pixel_agreement: float
    logit_max_abs_diff: float | None
    logit_mean_abs_diff: float | None


@dataclass(frozen=True)
class AccuracyRow:
    """One row's parity, its own sessions' quality and that quality's difference from the reference's;
    ``seconds`` spent on its encoder and decoder runs."""

    config: BenchConfig = field(metadata=FLAT)
    reference: bool
    parity: Parity
    quality: Scores
    delta_vs_reference: Scores
    seconds: float


@dataclass(frozen=True)
class ObjectCurves:
    """One object's IoU after each click of each row's own session (by row name); ``size`` ``[H, W]``."""

    name: str
    size: list[int]
    ious: dict[str, list[float]]


@dataclass(frozen=True)
class Evaluation:
    """What :func:`.accuracy.evaluate` measured: the reference row's name, the objects evaluated, a row per
    configuration (none without objects) and the per-object curves."""

    reference: str
    objects: int
    rows: list[AccuracyRow]
    per_object: list[ObjectCurves]


@dataclass(frozen=True)
class GateResult:
    """The export's parity gate on one backend's decoder: worst logit difference and mask agreement."""

    logit_max_abs_diff: float
    mask_agreement_min: float
    passed: bool


@dataclass(frozen=True)
class ExportGate:
    """The export's parity gate (PyTorch eager vs each backend, FP32) as its manifest records it."""

    passed: bool
    sizes: list[str]
    abs_tolerance: float
    decoder: dict[str, GateResult]


@dataclass(frozen=True, kw_only=True)
class AccuracyReport:
    """The accuracy part: its settings, the export's gate, then what :class:`Evaluation` holds and the
    dataset's problems (files skipped, not counted); ``skipped`` says why there are no rows."""

    dataset: str
    threads: int
    clicks: int
    limit: int | None
    zoom_in: bool
    export_gate: ExportGate
    reference: str | None = field(default=None, metadata=OMIT_NONE)
    objects: int | None = field(default=None, metadata=OMIT_NONE)
    rows: list[AccuracyRow] = field(default_factory=list)
    per_object: list[ObjectCurves] | None = field(default=None, metadata=OMIT_NONE)
    problems: list[str] = field(default_factory=list)
    dataset_size: int | None = field(default=None, metadata=OMIT_NONE)
    skipped: str | None = field(default=None, metadata=OMIT_NONE)
