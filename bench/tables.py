"""The benchmark report's tables as plain rows of strings (header, rows), shared by the terminal and
``report.md``: latency, memory and accuracy, with their number formats."""

from __future__ import annotations

from collections.abc import Sequence

from interformer_edge.core.timing import Stats

from .accuracy_results import AccuracyReport
from .artifact import QuantizedFacts
from .configs import DEFAULT_LABEL, PYTORCH, BenchConfig
from .measurements import LatencyRow, MemoryRow
from .report_model import Report

MIB = 2**20
Table = tuple[list[str], list[list[str]]]


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def mib_text(value: int | None) -> str:
    return "–" if value is None else f"{value / MIB:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def precision_label(config: BenchConfig) -> str:
    """The row's label (``fp32``, ``int8``, ...), for OpenVINO's device default with what it resolved to
    (``default (bf16)``), and ``static`` for a decoder compiled per size."""
    shapes = " static" if config.static else ""
    if config.label == DEFAULT_LABEL:
        return f"{DEFAULT_LABEL} ({config.computes_in}){shapes}"
    return config.label + shapes


def row_name(config: BenchConfig) -> str:
    """``onnxruntime int8``, ``openvino default (bf16)``, ``pytorch eager``."""
    if config.backend == PYTORCH:
        return "pytorch eager"
    return f"{config.backend} {precision_label(config)}"


def _triple(stats: Stats) -> str:
    return f"{_ms(stats.p50_ms)}/{_ms(stats.p90_ms)}/{_ms(stats.p99_ms)}"


def latency_table(rows: Sequence[LatencyRow]) -> Table:
    header = [
        "backend",
        "precision",
        "threads",
        "size",
        "image p50/p90/p99 (encoder + context)",
        "decoder p50/p90/p99",
        "runs",
        "speed-up enc",
        "speed-up dec",
        "decoder floor ms",
        "floor / p50",
    ]
    body = []
    for r in rows:
        speed = r.speedup_vs_pytorch
        shared = f" (= {r.encoder_shared_with})" if r.encoder_shared_with else ""
        floor = r.measured_floor
        body.append(
            [
                r.config.backend,
                precision_label(r.config),
                str(r.threads),
                r.size,
                _triple(r.encoder) + shared,
                _triple(r.decoder),
                f"{r.encoder.runs}/{r.decoder.runs}",
                _times(speed.encoder if speed else None),
                _times(speed.decoder if speed else None),
                _ms(floor.floor_ms if floor else None),
                "–" if floor is None else f"{100 * floor.efficiency:.0f} %",
            ]
        )
    return header, body


def memory_table(rows: Sequence[MemoryRow]) -> Table:
    header = [
        "backend",
        "precision",
        "threads",
        "size",
        "peak RSS MiB",
        "imports MiB",
        "loaded MiB",
        "click ms",
        "on disk MiB",
    ]
    body = []
    for r in rows:
        name = [r.config.backend, precision_label(r.config), str(r.threads), r.size]
        if r.probe is None:
            body.append([*name, f"failed: {r.error}", "", "", "", mib_text(r.disk_bytes)])
            continue
        body.append(
            [
                *name,
                mib_text(r.probe.peak_rss_bytes),
                mib_text(r.probe.rss_baseline_bytes),
                mib_text(r.probe.rss_after_load_bytes),
                _ms(r.probe.click_ms_mean),
                mib_text(r.disk_bytes),
            ]
        )
    return header, body


def int8_target_text(variant: str, quantized: Sequence[QuantizedFacts], host_class: str) -> str:
    """``portable, covers x86-avx2`` for a row running a quantized decoder variant (``–`` for the others):
    whether the target it was quantized for covers this host's CPU class, so the parity beside it is the proof."""
    found = next((q for q in quantized if q.graph == "decoder" and q.variant == variant), None)
    if found is None:
        return "–"
    covered = host_class in found.covers
    return f"{found.target}, {'covers' if covered else 'does NOT cover'} {host_class}"


def accuracy_table(acc: AccuracyReport, quantized: Sequence[QuantizedFacts] = (), host_class: str = "unknown") -> Table:
    ks = sorted({k for r in acc.rows for k in r.quality.miou_at})
    last = ks[-1] if ks else None
    header = [
        "backend",
        "precision",
        "INT8 target vs host",
        "mask IoU vs ref mean / min",
        "same mask",
        "max |Δlogit|",
        *[f"mIoU@{k}" for k in ks],
        "NoC@85",
        "NoC@90",
        f"ΔmIoU@{last}" if last else "Δ",
    ]
    body = []
    for r in acc.rows:
        p, q, d = r.parity, r.quality, r.delta_vs_reference
        body.append(
            [
                r.config.backend,
                precision_label(r.config) + (" (ref)" if r.reference else ""),
                int8_target_text(r.config.variant, quantized, host_class),
                f"{_num(p.mask_iou_mean, 4)} / {_num(p.mask_iou_min, 4)}",
                f"{100 * p.identical_masks:.0f} %",
                _sci(p.logit_max_abs_diff),
                *[_num(q.miou_at.get(k)) for k in ks],
                _num(q.noc_at.get(85), 2),
                _num(q.noc_at.get(90), 2),
                "–" if last is None or last not in d.miou_at else f"{d.miou_at[last]:+.4f}",
            ]
        )
    return header, body


def report_accuracy_table(report: Report, acc: AccuracyReport) -> Table:
    """:func:`accuracy_table` of ``report``'s accuracy part ``acc``, with the export's INT8 targets and the
    host's INT8 class."""
    return accuracy_table(acc, report.artifact.quantized, report.machine.isa.int8_class)
