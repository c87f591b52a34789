"""``report.md``: the terminal's tables for people, with the machine facts, the timing protocol and the plots."""

from __future__ import annotations

from .report import gate_text
from .report_model import Report, ReportSettings
from .tables import MIB, Table, latency_table, memory_table, mib_text, report_accuracy_table, row_name


def _md_table(table: Table) -> str:
    header, body = table
    lines = [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _turns_text(settings: ReportSettings) -> str:
    """How the decoders were timed against each other (:func:`interformer_edge.core.timing.measure_in_turn`)."""
    return (
        "; the decoders of one size and thread count take turns (one timed call each per round, a "
        f"{settings.turn_pause_s * 1000:.0f} ms untimed pause before each), PyTorch eager is timed after them "
        "on its own"
    )


def _machine(report: Report) -> list[str]:
    machine = report.machine
    isa = machine.isa
    versions = ", ".join(f"{k} {v}" for k, v in machine.packages.items() if v)
    lines = [
        "## Machine",
        "",
        f"- CPU: {machine.cpu_model} ({machine.architecture}), {machine.cores_usable} usable cores "
        f"({machine.cores_logical} logical, {machine.cores_physical} physical), "
        f"{machine.memory_total_bytes / 2**30:.1f} GiB RAM",
        f"- ISA flags of interest: {', '.join(isa.of_interest) or 'none'} "
        f"(int8 dot product: {'yes' if isa.int8_dot_product else 'no'}, "
        f"fp16 arithmetic: {'yes' if isa.fp16_arithmetic else 'no'}, "
        f"bf16: {'yes' if isa.bf16_arithmetic else 'no'})",
        f"- OS: {machine.os}, kernel {machine.kernel}, Python {machine.python}",
        f"- Packages: {versions}",
        f"- Load average at start: {', '.join(f'{v:.2f}' for v in machine.load_average or [])}; at the end: "
        f"{', '.join(f'{v:.2f}' for v in machine.load_average_end or [])} (other work on the machine "
        "inflates the timings)",
    ]
    ov = report.openvino
    if ov:
        caps = ", ".join(ov.optimization_capabilities)
        lines.append(
            f"- OpenVINO CPU: {ov.cpu}, capabilities {caps}, "
            f"default inference precision **{ov.default_inference_precision}**"
        )
    return lines


def _artifact(report: Report) -> list[str]:
    artifact = report.artifact
    return [
        "",
        "## Artifact",
        "",
        f"- `{artifact.dir}`: model {artifact.model_id} ({artifact.architecture}), from "
        f"`{artifact.source_checkpoint.path}`, exported {artifact.created}",
        f"- decoder precisions: {', '.join(artifact.decoder_variants)}; all files "
        f"{artifact.sizes.total_bytes / MIB:.1f} MiB",
        "",
        "| graph | precision | format | MiB |",
        "|---|---|---|---|",
        *[f"| {g.graph} | {g.variant} | {g.format} | {mib_text(g.bytes)} |" for g in artifact.sizes.graphs],
    ]


def _latency(report: Report) -> list[str]:
    if not report.latency:
        return []
    timing = report.settings.timing
    lines = [
        "",
        "## Latency (ms)",
        "",
        f"Encoder per image and decoder per click (the third click of a session on a bundled photo); "
        f"{timing.warmup} warm-up runs, then at least {timing.min_runs} timed runs and until "
        f"{timing.budget_s} s{_turns_text(report.settings)}. "
        "Speed-up: PyTorch eager p50 / row p50 at the same size and threads, "
        "same run. An encoder marked (= fp32) is the same graph as that row's and was measured once. "
        "Decoder floor: the decoder's Conv/MatMul FLOPs at the size (counted from the ONNX graph on the "
        "timed click) at this host's GEMM peak of the row's precision and threads (the fastest run of a "
        "1024-cubed product timed taking turns with the decoders); floor / p50 is the share of the peak "
        "the row reaches.",
        "",
        _md_table(latency_table(report.latency)),
    ]
    floored = [(r, r.measured_floor) for r in report.latency if r.measured_floor]
    floors = {r.size: f for r, f in floored}
    peaks = sorted({(r.threads, f.peak_precision, f.peak_gflops) for r, f in floored})
    if floors:
        sizes = ", ".join(f"{size} {f.gflop} GFLOP" for size, f in floors.items())
        gemm = ", ".join(f"{p} {t} thr {g} GFLOP/s" for t, p, g in peaks)
        lines += ["", f"Decoder FLOPs per click: {sizes}; GEMM peak: {gemm}."]
    return lines


def _memory(report: Report) -> list[str]:
    if not report.memory:
        return []
    return [
        "",
        "## Memory",
        "",
        f"Peak RSS of a fresh process that loads the configuration, encodes one photo and serves "
        f"{report.settings.memory_clicks} clicks.",
        "",
        _md_table(memory_table(report.memory)),
    ]


def _accuracy(report: Report) -> list[str]:
    acc = report.accuracy
    if not acc:
        return []
    lines = ["", "## Accuracy", ""]
    if acc.rows:
        lines += [
            f"{acc.objects} objects of `{acc.dataset}`, {acc.clicks} clicks, automatic clicker, "
            f"{acc.threads} threads. Parity: each row's decoder on the reference's inputs "
            f"({acc.reference}), per-click mask IoU and logits; quality: each row's own sessions.",
            "",
            _md_table(report_accuracy_table(report, acc)),
        ]
        curves = [(row_name(r.config), r.quality.iou_curve) for r in acc.rows if r.quality.iou_curve is not None]
        if curves:
            clicks = max(len(c) for _, c in curves)
            lines += [
                "",
                "Mean IoU after each click:",
                "",
                _md_table(
                    (
                        ["row", *[str(k) for k in range(1, clicks + 1)]],
                        [[name, *[f"{v:.3f}" for v in curve]] for name, curve in curves],
                    )
                ),
            ]
    lines += ["", gate_text(acc.export_gate)]
    if acc.skipped:
        lines += [f"Accuracy skipped: {acc.skipped}"]
    if acc.problems:
        lines += ["", "Dataset files skipped (not counted):", "", *[f"- {p}" for p in acc.problems]]
    return lines


def _notes(report: Report) -> list[str]:
    notes = []
    if not report.baseline.available:
        notes.append(f"PyTorch eager baseline not measured: {report.baseline.note}")
    notes += [f"skipped {s.backend} {s.label}: {s.reason}" for s in report.skipped]
    notes += report.notes or []
    notes += [f"FAILED: {f.text()}" for f in report.failures]
    return ["", "## Notes", "", *[f"- {n}" for n in notes]] if notes else []


def to_markdown(report: Report, plots: list[str]) -> str:
    """``report.md``: the same tables as the terminal, machine facts, and the plots."""
    out = ["# interformer-bench report", ""]
    if report.machine.emulated:
        out += [f"> **{report.machine.emulated}**", ""]
    if report.headline:
        out += [f"**{report.headline.text}**", ""]
    out += [*_machine(report), *_artifact(report), *_latency(report), *_memory(report), *_accuracy(report)]
    out += _notes(report)
    if plots:
        out += ["", "## Plots", "", *[f"![{p}]({p})" for p in plots]]
    seconds = report.seconds
    out += [
        "",
        f"Bench time: {seconds.get('total', 0):.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items() if k != 'total')}). "
        f"Command: `{report.tool.command}`",
        "",
    ]
    return "\n".join(out)
