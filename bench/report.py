"""The report in the terminal: machine line, latency / memory / accuracy tables, skipped rows, problems,
notes, failures and the headline (``report.md`` is :mod:`.markdown`; ``report.json`` :mod:`.report_model`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .accuracy_results import AccuracyReport, ExportGate
from .report_model import Report
from .tables import Table as TextTable
from .tables import latency_table, memory_table, report_accuracy_table

LATENCY_TITLE = (
    "Latency (ms): encoder per image, decoder per click; speed-up = PyTorch eager p50 / row p50; "
    "floor = decoder FLOPs at this host's measured GEMM peak"
)


def gate_text(gate: ExportGate) -> str:
    """One sentence on the export's parity gate (PyTorch eager vs each backend)."""
    parts = [
        f"{backend} max |Δlogit| {v.logit_max_abs_diff:.1e}, masks {100 * v.mask_agreement_min:.4f} %"
        for backend, v in gate.decoder.items()
    ]
    verdict = "passed" if gate.passed else "FAILED"
    return f"Export parity gate vs PyTorch eager (decoder, sizes {', '.join(gate.sizes)}): {verdict}; " + "; ".join(
        parts
    )


def accuracy_title(acc: AccuracyReport) -> str:
    return (
        f"Accuracy on {acc.objects} objects of {acc.dataset} ({acc.clicks} clicks, "
        f"{acc.threads} threads); parity vs {acc.reference}"
    )


def _rich(title: str, table: TextTable, numeric_from: int) -> Table:
    header, body = table
    out = Table(title=title, title_justify="left")
    for index, name in enumerate(header):
        out.add_column(name, justify="right" if index >= numeric_from else "left")
    for row in body:
        out.add_row(*row)
    return out


def print_report(report: Report, console: Console) -> None:
    """The terminal view: machine line, latency / memory / accuracy tables, skipped rows, problems, headline."""
    machine = report.machine
    if machine.emulated:
        console.print(f"[bold yellow]{machine.emulated}[/]", highlight=False)
    isa = ", ".join(machine.isa.of_interest) or "none of interest"
    console.print(
        f"{machine.cpu_model} · {machine.cores_usable} usable cores · {machine.architecture} ({isa}) · {machine.os}",
        highlight=False,
    )
    ov = report.openvino
    if ov:
        console.print(
            f"OpenVINO {ov.version}: default inference precision here {ov.default_inference_precision}",
            highlight=False,
        )
    artifact = report.artifact
    console.print(
        f"artifact {artifact.dir} · model {artifact.model_id} ({artifact.architecture}) · "
        f"decoder precisions {', '.join(artifact.decoder_variants)}",
        highlight=False,
    )
    if report.latency:
        console.print(_rich(LATENCY_TITLE, latency_table(report.latency), 2))
    if report.memory:
        console.print(_rich("Memory: fresh process, 1 image + clicks", memory_table(report.memory), 2))
    acc = report.accuracy
    if acc:
        if acc.rows:
            console.print(_rich(accuracy_title(acc), report_accuracy_table(report, acc), 3))
        console.print(gate_text(acc.export_gate), highlight=False)
        if acc.skipped:
            console.print(f"accuracy skipped: {acc.skipped}", highlight=False)
        for problem in acc.problems:
            console.print(f"[yellow]dataset problem (skipped, not counted):[/] {problem}", highlight=False)
    if not report.baseline.available:
        console.print(f"PyTorch eager baseline: not measured: {report.baseline.note}", highlight=False)
    for skip in report.skipped:
        console.print(f"skipped {skip.backend} {skip.label}: {skip.reason}", highlight=False)
    for note in report.notes or []:
        console.print(f"note: {note}", highlight=False)
    for failure in report.failures:
        console.print(f"[red]failed:[/] {failure.text()}", highlight=False)
    if report.headline:
        console.print(f"[bold]{report.headline.text}[/]", highlight=False)
