"""``report.json`` as types: :class:`Report` and its parts, written and read back by :func:`report_json` and
:func:`read_report` (``format`` ``interformer-bench-report``, ``version`` 1).

Layout, in order of the keys:

* ``tool``, ``created``; ``machine``: CPU model, cores, ISA flags, OS, package versions, ``emulated``
  label; ``openvino``: its CPU name, capabilities and default inference precision;
* ``artifact``: the export (model id, checkpoint, quantized variants with their gates, file sizes);
* ``settings``, ``configs`` (the rows) and ``skipped`` (rows that do not exist here, with reasons);
  ``baseline``: whether PyTorch eager was measured; ``seconds`` per part;
* ``latency``: per row × threads × size, ``encoder`` and ``decoder`` statistics in ms (``p50_ms``,
  ``p90_ms``, ``p99_ms``, ...), ``speedup_vs_pytorch`` (PyTorch p50 / row p50) and ``floor``;
* ``memory``: per row, the probe's ``peak_rss_bytes`` and RSS after each stage, and ``disk_bytes``;
* ``accuracy``: ``reference``, ``rows`` with ``parity`` (vs the reference) and ``quality`` (``miou@k``,
  ``noc@85``, ``noc@90``, ``iou_curve``), ``per_object`` curves, and the dataset's ``problems``;
* ``failures``; ``headline``: the decoder and encoder p50 of every row at one size and thread count,
  as a sentence; ``notes``; ``outputs``: the files written beside ``report.json``.

A part that did not run has no key (``latency``, ``memory``, ``accuracy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from interformer_edge.core.sizes import size_text
from interformer_edge.core.timing import TimingPolicy
from interformer_edge.core.typed_json import OMIT_NONE, dumps, read_json

from .accuracy_results import AccuracyReport
from .artifact import ArtifactFacts
from .configs import BenchConfig, Skipped
from .machine import MachineFacts, OpenVinoFacts
from .measurements import Failure, LatencyRow, MemoryRow
from .options import BenchOptions

REPORT_FORMAT = "interformer-bench-report"
REPORT_VERSION = 1


@dataclass(frozen=True)
class ToolFacts:
    name: str
    version: str
    command: str


@dataclass(frozen=True)
class ReportSettings:
    """The options a report was measured with (the export folder as the user named it)."""

    export_dir: str
    backends: list[str]
    rows: list[str] = field(metadata={"key": "precisions"})
    threads: list[int]
    sizes: list[str]
    dataset: str | None
    clicks: int
    limit: int | None
    timing: TimingPolicy
    turn_pause_s: float
    parts: list[str]
    baseline: bool
    memory_clicks: int
    static_shapes: bool

    @classmethod
    def of(cls, options: BenchOptions, turn_pause_s: float) -> ReportSettings:
        return cls(
            export_dir=str(options.export_dir or options.export.root),
            backends=list(options.backends),
            rows=list(options.rows),
            threads=list(options.threads),
            sizes=[size_text(s) for s in options.sizes],
            dataset=str(options.dataset) if options.dataset else None,
            clicks=options.clicks,
            limit=options.limit,
            timing=options.timing,
            turn_pause_s=turn_pause_s,
            parts=list(options.parts),
            baseline=options.baseline,
            memory_clicks=options.memory_clicks,
            static_shapes=options.static_shapes,
        )


@dataclass(frozen=True)
class BaselineFacts:
    """Whether PyTorch eager was measured, from which checkpoint, and how it was found (or why not)."""

    available: bool
    checkpoint: str | None
    note: str


@dataclass(frozen=True)
class Headline:
    """The rows at one size and thread count, fastest decoder first: p50 by row name, the INT8/FP32 decoder
    ratio per backend, and all of it as one sentence."""

    size: str
    threads: int
    decoder_p50_ms: dict[str, float]
    encoder_p50_ms: dict[str, float]
    int8_vs_fp32: dict[str, float]
    text: str


@dataclass(frozen=True, kw_only=True)
class Report:
    """One benchmark run (see the module docstring)."""

    format: str = REPORT_FORMAT
    version: int = REPORT_VERSION
    tool: ToolFacts
    created: str
    machine: MachineFacts
    openvino: OpenVinoFacts | None
    artifact: ArtifactFacts
    settings: ReportSettings
    configs: list[BenchConfig]
    skipped: list[Skipped]
    baseline: BaselineFacts
    seconds: dict[str, float]
    latency: list[LatencyRow] | None = field(default=None, metadata=OMIT_NONE)
    memory: list[MemoryRow] | None = field(default=None, metadata=OMIT_NONE)
    accuracy: AccuracyReport | None = field(default=None, metadata=OMIT_NONE)
    failures: list[Failure] = field(default_factory=list)
    headline: Headline | None = None
    notes: list[str] | None = field(default=None, metadata=OMIT_NONE)
    outputs: list[str] = field(default_factory=list)


def report_json(report: Report) -> str:
    """``report.json``'s text: strict JSON (non-finite numbers as null), indented."""
    return dumps(report)


def read_report(text: str) -> Report:
    """A report from ``report.json``'s text; raises :class:`~interformer_edge.core.typed_json.JsonShapeError`
    (a ValueError) naming the first key that does not fit."""
    return read_json(Report, json.loads(text))
