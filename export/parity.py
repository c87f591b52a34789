"""The parity gate: PyTorch vs ONNX Runtime vs OpenVINO on the exported files.

Each graph is judged on identical inputs (:mod:`.parity_cases`): the encoder on a synthetic image
per size, the context on the *PyTorch* features of that image, the decoder on the PyTorch features
and context with several reference labels (built with the runtime's click code) and, for refine
models, several rois. A further check ("logits e2e", one realistic case per size) feeds the
backend's own features through its own context graph into its decoder; it is reported for
information, since a deep random-weight encoder can amplify float noise beyond what either graph alone shows.

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

from interformer_edge.core.manifest import ParityCheck, ParityReport
from interformer_edge.core.messages import first_line
from interformer_edge.core.metrics import mask_agreement, max_abs_diff
from interformer_edge.core.spec import (
    CONTEXT_NAMES,
    FEATURE_NAMES,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
)
from interformer_edge.models import ClickDecoder, ImageContext, ImageEncoder, InterFormer
from interformer_edge.runtime.backends import load_graph

from .parity_cases import Feed, SizeCase, decoder_feed, make_cases

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((320, 480), (512, 512), (256, 1024))  # 256x1024: 1024 tokens
DEFAULT_ABS_TOLERANCE = 1e-3
DEFAULT_MIN_MASK_AGREEMENT = 0.999

Runner = Callable[[Feed], dict[str, np.ndarray]]


@dataclass(frozen=True)
class GateSettings:
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE
    min_mask_agreement: float = DEFAULT_MIN_MASK_AGREEMENT
    threads: int | None = None  # None: each backend's default


@dataclass(frozen=True)
class Reference:
    """PyTorch outputs for one :class:`SizeCase`: the features, the context and the logits of every decoder case."""

    features: dict[str, np.ndarray]
    context: dict[str, np.ndarray]
    logits: tuple[np.ndarray, ...]


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
