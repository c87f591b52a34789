"""The parity gate: PyTorch vs ONNX Runtime vs OpenVINO on the exported files.

Each graph is judged on identical inputs: the encoder on a synthetic image per size, the context on
the *PyTorch* features of that image, the decoder on the PyTorch features and context with several
reference labels (built with the runtime's click code) and, for refine models, several rois. A
further check ("logits e2e", one realistic case per size) feeds the backend's own features through
its own context graph into its decoder; it is reported for information, since a deep random-weight
encoder can amplify float noise beyond what either graph alone shows.

FP32 outputs are judged by max abs diff (and logits also by mask agreement); FP16 OpenVINO weights
are judged by mask agreement only, their feature diffs being reported for information.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from interformer_edge.core.clicks import Click, add_click, update_ref_label_with_prediction, zoom_roi
from interformer_edge.core.manifest import ParityCheck, ParityReport
from interformer_edge.core.messages import first_line
from interformer_edge.core.metrics import mask_agreement, max_abs_diff
from interformer_edge.core.spec import (
    CLICK_IMAGE_INPUTS,
    CONTEXT_NAMES,
    FEATURE_NAMES,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    NUM_REF_LABELS,
    PIXEL_MEAN,
    PIXEL_STD,
    REF_LABEL_INPUT,
    ROI_INPUT,
    SIZE_DIVISOR,
)
from interformer_edge.models import ClickDecoder, ImageContext, ImageEncoder, InterFormer
from interformer_edge.runtime.backends import load_graph

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((320, 480), (512, 512), (256, 1024))  # 256x1024: 1024 tokens
DEFAULT_ABS_TOLERANCE = 1e-3
DEFAULT_MIN_MASK_AGREEMENT = 0.999

Feed = dict[str, np.ndarray]
Runner = Callable[[Feed], dict[str, np.ndarray]]


@dataclass(frozen=True)
class GateSettings:
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE
    min_mask_agreement: float = DEFAULT_MIN_MASK_AGREEMENT
    threads: int | None = None  # None: each backend's default


@dataclass(frozen=True)
class DecoderCase:
    """``ref_label`` ``(1, 1, H, W)`` uint8 and, for refine models, ``roi`` ``(1, 4)`` int64."""

    name: str
    ref_label: np.ndarray
    roi: np.ndarray | None


@dataclass(frozen=True)
class SizeCase:
    """One image size: normalized image ``(1, 3, H, W)`` float32 and its decoder cases."""

    size: tuple[int, int]
    image: np.ndarray
    decoder_cases: tuple[DecoderCase, ...]

    @property
    def label(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


@dataclass(frozen=True)
class Reference:
    """PyTorch outputs for one :class:`SizeCase`: the features, the context and the logits of every decoder case."""

    features: dict[str, np.ndarray]
    context: dict[str, np.ndarray]
    logits: tuple[np.ndarray, ...]


# ------------------------------------------------------------------------------------------ cases


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB test image (smooth background, a few solid ellipses, sensor noise), normalized.

    Returns ``(1, 3, H, W)`` float32 as the encoder expects it.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    slope = rng.uniform(-60, 60, (3, 2)).astype(np.float32)
    rgb = base[:, None, None] + slope[:, 0, None, None] * yy / height + slope[:, 1, None, None] * xx / width
    for _ in range(4):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * width
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        rgb[:, inside] = rng.uniform(0, 255, 3).astype(np.float32)[:, None]
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape).astype(np.float32), 0, 255)
    mean = np.asarray(PIXEL_MEAN, np.float32)[:, None, None]
    std = np.asarray(PIXEL_STD, np.float32)[:, None, None]
    return ((rgb - mean) / std)[None].astype(np.float32)


def _ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.uint8)


def reference_labels(height: int, width: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Realistic reference labels ``(H, W)`` uint8 with the prediction that preceded them.

    * ``one_click``: a positive click on the object (codes 2, 4);
    * ``three_clicks``: positive, negative, then a correction after folding in a prediction (all codes);
    * ``blocks``: random codes in 32x32 blocks (every code, many boundaries).
    """
    rng = np.random.default_rng(seed)
    cy, cx, ry, rx = 0.55 * height, 0.45 * width, 0.22 * height, 0.2 * width
    previous = _ellipse(height, width, cy + 0.05 * height, cx - 0.04 * width, ry, rx)  # an imperfect prediction
    empty = np.full((height, width), 2, np.uint8)
    one = add_click(empty, Click(int(cy), int(cx), True))
    three = add_click(one, Click(int(0.12 * height), int(0.88 * width), False))
    three = update_ref_label_with_prediction(three, previous)
    three = add_click(three, Click(int(cy + 0.8 * ry), int(cx), True))
    cells = rng.integers(0, NUM_REF_LABELS, (-(-height // 32), -(-width // 32)), dtype=np.uint8)
    blocks = np.kron(cells, np.ones((32, 32), np.uint8))[:height, :width]
    return {"one_click": (one, previous), "three_clicks": (three, previous), "blocks": (blocks, previous)}


def reference_rois(height: int, width: int, ref_label: np.ndarray, previous: np.ndarray) -> dict[str, np.ndarray]:
    """Rois ``(1, 4)`` int64: the zoom-in box of a click sequence, one touching bottom/right, the whole image."""
    zoom = zoom_roi(previous, ref_label)
    side_h = max(SIZE_DIVISOR, height // 2 // SIZE_DIVISOR * SIZE_DIVISOR)
    side_w = max(SIZE_DIVISOR, width // 2 // SIZE_DIVISOR * SIZE_DIVISOR)
    boxes = {"zoom": zoom, "corner": (width - side_w, height - side_h, width, height), "whole": (0, 0, width, height)}
    return {name: np.asarray([box], np.int64) for name, box in boxes.items()}


def make_cases(sizes: Sequence[tuple[int, int]], uses_roi: bool) -> list[SizeCase]:
    """Gate inputs per size: three labels; for refine models each paired with one of the three rois."""
    cases = []
    for index, (height, width) in enumerate(sizes):
        labels = reference_labels(height, width, seed=index)
        ref3, prev3 = labels["three_clicks"]
        # Paired, not crossed: every label and every roi is covered at a third of the (slow, eager)
        # PyTorch reference cost. The zoom box goes with the clicks it was computed from.
        rois = dict(zip(labels, ("whole", "zoom", "corner"), strict=True))
        boxes = reference_rois(height, width, ref3, prev3) if uses_roi else {}
        decoder_cases = [
            DecoderCase(
                f"{name}/{rois[name]}" if uses_roi else name,
                ref[None, None].copy(),
                boxes[rois[name]] if uses_roi else None,
            )
            for name, (ref, _) in labels.items()
        ]
        cases.append(SizeCase((height, width), synthetic_image(height, width, seed=index), tuple(decoder_cases)))
    return cases


def decoder_feed(image_inputs: dict[str, np.ndarray], case: DecoderCase) -> Feed:
    """``image_inputs``: features and context (extra entries are ignored)."""
    feed = {name: image_inputs[name] for name in CLICK_IMAGE_INPUTS}
    feed[REF_LABEL_INPUT] = case.ref_label
    if case.roi is not None:
        feed[ROI_INPUT] = case.roi
    return feed


# ------------------------------------------------------------------------------------- references


def torch_references(model: InterFormer, cases: Sequence[SizeCase]) -> list[Reference]:
    """PyTorch outputs through the same export views (:class:`ImageEncoder`, :class:`ImageContext`,
    :class:`ClickDecoder`)."""
    encoder, context_view = ImageEncoder(model).eval(), ImageContext(model).eval()
    decoder = ClickDecoder(model).eval()
    refs = []
    with torch.no_grad():
        for case in cases:
            feats = encoder(torch.from_numpy(case.image))
            ctx = context_view(*feats)
            features = {name: f.numpy().copy() for name, f in zip(FEATURE_NAMES, feats, strict=True)}
            context = {name: c.numpy().copy() for name, c in zip(CONTEXT_NAMES, ctx, strict=True)}
            logits = []
            for dc in case.decoder_cases:
                roi = None if dc.roi is None else torch.from_numpy(dc.roi)
                out = decoder(feats[0], *ctx, torch.from_numpy(dc.ref_label), roi)
                logits.append(out.numpy().copy())
            refs.append(Reference(features, context, tuple(logits)))
    return refs


# ---------------------------------------------------------------------------------------- runners


def onnxruntime_runner(path: Path, threads: int | None = None) -> Runner:
    """Run an ONNX file on ONNX Runtime's CPU provider through the runtime's backend layer."""
    return load_graph(path, backend="onnxruntime", threads=threads).run


def openvino_runner(xml: Path, threads: int | None = None) -> Runner:
    """Run an IR file on the OpenVINO CPU plugin pinned to f32 (this CPU would otherwise use bf16);
    the runtime's backend layer shares one ``ov.Core`` per process, which OpenVINO needs."""
    return load_graph(xml, backend="openvino", threads=threads, precision="f32").run


# ----------------------------------------------------------------------------------------- checks


@dataclass
class _Worst:
    """Running worst case of one output over the cases of one size."""

    cases: int = 0
    diff: float = 0.0
    agreement: float | None = None
    error: str | None = None

    def add(self, actual: np.ndarray | None, expected: np.ndarray, with_mask: bool) -> None:
        self.cases += 1
        if actual is None:
            self.diff = float("inf")
            return
        self.diff = max(self.diff, max_abs_diff(actual, expected))
        if with_mask:
            agree = mask_agreement(actual, expected) if actual.shape == expected.shape else 0.0
            self.agreement = agree if self.agreement is None else min(self.agreement, agree)


def _judge(
    backend: str, graph: str, output: str, size: str, worst: _Worst, judged_by: str, settings: GateSettings
) -> ParityCheck:
    finite = np.isfinite(worst.diff) and worst.error is None
    if judged_by == "max_abs":
        passed = finite and worst.diff <= settings.abs_tolerance
        if worst.agreement is not None:
            passed = passed and worst.agreement >= settings.min_mask_agreement
    elif judged_by == "mask":
        passed = worst.error is None and (worst.agreement or 0.0) >= settings.min_mask_agreement
    else:  # "info": reported, fails only when the graph could not run or produced garbage
        passed = finite
    return ParityCheck(
        backend=backend, graph=graph, output=output, size=size, cases=worst.cases,
        max_abs_diff=worst.diff if np.isfinite(worst.diff) else None, mask_agreement=worst.agreement,
        judged_by=judged_by, passed=bool(passed), error=worst.error,
    )  # fmt: skip


def _check_maps(
    backend: str,
    graph: str,
    names: Sequence[str],
    run: Runner,
    feeds: Sequence[Feed],
    expected: Sequence[dict[str, np.ndarray]],
    labels: Sequence[str],
    settings: GateSettings,
    fp16: bool,
) -> tuple[list[ParityCheck], list[dict[str, np.ndarray] | None]]:
    """Compare the outputs ``names`` of ``run`` on each feed; also returns the outputs (None on error)."""
    checks: list[ParityCheck] = []
    produced: list[dict[str, np.ndarray] | None] = []
    for feed, reference, label in zip(feeds, expected, labels, strict=True):
        worst = {name: _Worst() for name in names}
        try:
            out: dict[str, np.ndarray] | None = run(feed)
        except Exception as err:  # any backend failure is a gate failure, recorded as such
            out = None
            for w in worst.values():
                w.error = first_line(err, with_type=True, limit=200)
        for name in names:
            actual = None if out is None else out.get(name)
            if out is not None and actual is None:
                worst[name].error = f"no output named {name!r}"
            if actual is not None and actual.shape != reference[name].shape:
                worst[name].error = f"{name} has shape {actual.shape}, expected {reference[name].shape}"
                actual = None
            worst[name].add(actual, reference[name], with_mask=False)
            checks.append(_judge(backend, graph, name, label, worst[name], "info" if fp16 else "max_abs", settings))
        produced.append(out)
    return checks, produced


def check_encoder(
    backend: str,
    run: Runner,
    cases: Sequence[SizeCase],
    refs: Sequence[Reference],
    settings: GateSettings,
    fp16: bool = False,
) -> tuple[list[ParityCheck], list[dict[str, np.ndarray] | None]]:
    """Compare the encoder's four maps at every size; also returns the backend's features (None on error)."""
    return _check_maps(
        backend,
        "encoder",
        FEATURE_NAMES,
        run,
        [{IMAGE_INPUT: case.image} for case in cases],
        [ref.features for ref in refs],
        [case.label for case in cases],
        settings,
        fp16,
    )


def check_context(
    backend: str,
    run: Runner,
    cases: Sequence[SizeCase],
    refs: Sequence[Reference],
    settings: GateSettings,
    fp16: bool = False,
    own_features: Sequence[dict[str, np.ndarray] | None] | None = None,
) -> tuple[list[ParityCheck], list[dict[str, np.ndarray] | None]]:
    """Compare the context on the PyTorch features at every size.

    Also returns, per size, the backend's own features with its context of them (for the decoder's
    end-to-end check; None where either failed or ``own_features`` is not given).
    """
    checks, _ = _check_maps(
        backend,
        "context",
        CONTEXT_NAMES,
        run,
        [{n: ref.features[n] for n in FEATURE_NAMES} for ref in refs],
        [ref.context for ref in refs],
        [case.label for case in cases],
        settings,
        fp16,
    )
    own: list[dict[str, np.ndarray] | None] = []
    for features in own_features or [None] * len(cases):
        try:
            own.append(None if features is None else {**features, **run({n: features[n] for n in FEATURE_NAMES})})
        except Exception:  # the gating checks above already record a failing graph
            own.append(None)
    return checks, own


def check_decoder(
    backend: str,
    run: Runner,
    cases: Sequence[SizeCase],
    refs: Sequence[Reference],
    settings: GateSettings,
    fp16: bool = False,
    own_inputs: Sequence[dict[str, np.ndarray] | None] | None = None,
) -> list[ParityCheck]:
    """Compare logits on the PyTorch features and context (gating) and, given ``own_inputs`` (the
    backend's features and context, see :func:`check_context`), end to end (info)."""
    checks: list[ParityCheck] = []
    for index, (case, ref) in enumerate(zip(cases, refs, strict=True)):
        variants = [("logits", {**ref.features, **ref.context}, "mask" if fp16 else "max_abs")]
        if own_inputs is not None and own_inputs[index] is not None:
            variants.append(("logits e2e", own_inputs[index], "info"))  # type: ignore[arg-type]
        for output, features, judged_by in variants:
            worst = _Worst()
            pairs = list(zip(case.decoder_cases, ref.logits, strict=True))
            if output == "logits e2e":  # informational: the realistic clicks-plus-zoom case is enough
                pairs = pairs[1:2]
            for dc, expected in pairs:
                try:
                    outputs = run(decoder_feed(features, dc))
                    if LOGITS_OUTPUT not in outputs:
                        raise KeyError(f"no output named {LOGITS_OUTPUT!r}")
                    actual: np.ndarray | None = outputs[LOGITS_OUTPUT]
                except Exception as err:  # recorded as a failed check
                    worst.error = worst.error or first_line(err, with_type=True, limit=200)
                    actual = None
                worst.add(actual, expected, with_mask=True)
            checks.append(_judge(backend, "decoder", output, case.label, worst, judged_by, settings))
    return checks


@dataclass(frozen=True)
class Gate:
    """One run of the gate: its settings, the cases at its sizes and PyTorch's outputs on them."""

    settings: GateSettings
    cases: list[SizeCase]
    refs: list[Reference]

    @classmethod
    def of(cls, model: InterFormer, settings: GateSettings) -> Gate:
        cases = make_cases(settings.sizes, model.cfg.has_refine)
        return cls(settings, cases, torch_references(model, cases))

    def check(
        self, backend: str, graph: str, run: Runner, fp16: bool = False, upstream: list | None = None
    ) -> tuple[list[ParityCheck], list | None]:
        """Parity checks of one graph (encoder, context or decoder) and what the next graph's end-to-end
        check takes from it. ``upstream``: what the previous graph's check returned on this backend."""
        args = (backend, run, self.cases, self.refs, self.settings)
        if graph == "encoder":
            return check_encoder(*args, fp16=fp16)
        if graph == "context":
            return check_context(*args, fp16=fp16, own_features=upstream)
        return check_decoder(*args, fp16=fp16, own_inputs=upstream), None


def graph_passes(checks: Sequence[ParityCheck], graph: str) -> bool:
    return all(c.passed for c in checks if c.graph == graph)


def make_report(checks: Sequence[ParityCheck], settings: GateSettings) -> ParityReport:
    return ParityReport(
        passed=all(c.passed for c in checks) and bool(checks),
        abs_tolerance=settings.abs_tolerance,
        min_mask_agreement=settings.min_mask_agreement,
        sizes=tuple(f"{h}x{w}" for h, w in settings.sizes),
        checks=tuple(checks),
    )


def parity_table(report: ParityReport, only_failures: bool = False) -> Table:
    """A rich table of the gate: one row per backend, graph output and size."""
    verdict = "[green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    table = Table(
        title=f"Parity gate {verdict} (abs ≤ {report.abs_tolerance:g}, mask ≥ {report.min_mask_agreement:.3%})",
        title_justify="left",
    )
    for column in ("backend", "output", "size", "cases", "max |Δ|", "mask agree", "judged by", "status"):
        table.add_column(column, justify="right" if column in ("cases", "max |Δ|", "mask agree") else "left")
    for c in report.checks:
        if only_failures and c.passed:
            continue
        diff = "n/a" if c.max_abs_diff is None else f"{c.max_abs_diff:.2e}"
        agree = "" if c.mask_agreement is None else f"{c.mask_agreement:.4%}"
        status = "[green]ok[/]" if c.passed else f"[bold red]FAIL[/]{' ' + c.error if c.error else ''}"
        table.add_row(c.backend, c.output, c.size, str(c.cases), diff, agree, c.judged_by, status)
    return table
