"""The benchmark's outputs: ``report.json`` (everything), ``report.md`` (for people), and rich tables.

``report.json`` layout (``format`` ``interformer-bench-report``, ``version`` 1):

* ``machine``: CPU model, cores, ISA flags, OS, package versions, ``emulated`` label; ``openvino``: its
  CPU name, capabilities and default inference precision;
* ``artifact``: the export (model id, checkpoint, quantized variants with their gates, file sizes);
* ``settings``, ``configs`` (the rows) and ``skipped`` (rows that do not exist here, with reasons);
* ``latency``: per backend × precision × threads × size, ``encoder`` and ``decoder`` statistics in ms
  (``p50_ms``, ``p90_ms``, ``p99_ms``, ...) and ``speedup_vs_pytorch`` (PyTorch p50 / row p50);
* ``memory``: per backend × precision, the probe's ``peak_rss_bytes`` and RSS after each stage, and
  ``disk_bytes``;
* ``accuracy``: ``reference``, ``rows`` with ``parity`` (vs the reference) and ``quality`` (``miou@k``,
  ``noc@85``, ``noc@90``, ``iou_curve``), ``per_object`` curves, and the dataset's ``problems``;
* ``headline``: the decoder and encoder p50 of every row at one size and thread count, as a sentence.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from .configs import PYTORCH
from .tables import MIB, latency_table, memory_table, mib_text, precision_label, report_accuracy_table

HEADLINE_SIZE = "512x512"  # the size the headline prefers (the official demo's working size)


# ------------------------------------------------------------------------------------------ headline


def headline(report: dict[str, Any]) -> dict[str, Any] | None:
    """The rows at one size (512x512 if measured, else the first) and the largest thread count, fastest
    decoder first, as numbers and as one sentence."""
    rows = report.get("latency") or []
    if not rows:
        return None
    sizes = [r["size"] for r in rows]
    size = HEADLINE_SIZE if HEADLINE_SIZE in sizes else sizes[0]
    threads = max(r["threads"] for r in rows if r["size"] == size)
    chosen = sorted(
        (r for r in rows if r["size"] == size and r["threads"] == threads), key=lambda r: r["decoder"]["p50_ms"]
    )
    decoder = {row_name(r): r["decoder"]["p50_ms"] for r in chosen}
    encoder = {row_name(r): r["encoder"]["p50_ms"] for r in chosen}
    parts = []
    for row in chosen:
        speedup = (row.get("speedup_vs_pytorch") or {}).get("decoder")
        extra = f" ({speedup:.2f}x PyTorch)" if speedup and row["backend"] != PYTORCH else ""
        parts.append(f"{row_name(row)} {row['decoder']['p50_ms']:.1f} ms{extra}")
    text = f"at {size}, {threads} thread(s), decoder per click (p50): " + ", ".join(parts)
    text += "; encoder per image (p50): " + ", ".join(f"{n} {v:.1f} ms" for n, v in encoder.items())
    label = (report.get("machine") or {}).get("emulated")
    if label:
        text = f"[{label}] {text}"
    return {
        "size": size,
        "threads": threads,
        "decoder_p50_ms": decoder,
        "encoder_p50_ms": encoder,
        "int8_vs_fp32": _int8_vs_fp32(chosen),
        "text": text,
    }


def _int8_vs_fp32(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per backend: FP32 decoder p50 / INT8 decoder p50 (> 1: INT8 is faster)."""
    by = {(r["backend"], r["precision"]): r["decoder"]["p50_ms"] for r in rows if not r.get("static")}
    return {
        backend: round(by[backend, "fp32"] / by[backend, "int8"], 3)
        for backend, precision in by
        if precision == "int8" and (backend, "fp32") in by
    }


def row_name(row: dict[str, Any]) -> str:
    """``onnxruntime int8``, ``openvino default (bf16)``, ``pytorch eager``."""
    if row["backend"] == PYTORCH:
        return "pytorch eager"
    return f"{row['backend']} {precision_label(row)}"


def gate_text(gate: dict[str, Any]) -> str:
    """One sentence on the export's parity gate (PyTorch eager vs each backend)."""
    parts = [
        f"{backend} max |Δlogit| {v['logit_max_abs_diff']:.1e}, masks {100 * v['mask_agreement_min']:.4f} %"
        for backend, v in gate.get("decoder", {}).items()
    ]
    verdict = "passed" if gate.get("passed") else "FAILED"
    return (
        f"Export parity gate vs PyTorch eager (decoder, sizes {', '.join(gate.get('sizes', []))}): {verdict}; "
        + "; ".join(parts)
    )


def failure_text(failure: dict[str, Any]) -> str:
    """``latency: openvino int8, 2 threads: <error>``."""
    what = " ".join(str(failure[k]) for k in ("backend", "precision") if k in failure)
    what += " static" if failure.get("static") else ""
    threads = f", {failure['threads']} threads" if "threads" in failure else ""
    return f"{failure['part']}{': ' + what if what else ''}{threads}: {failure['error']}"


# -------------------------------------------------------------------------------------------- writing


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """Strict JSON: non-finite floats (e.g. a logit difference against a NaN output) become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def _rich(title: str, table: tuple[list[str], list[list[str]]], numeric_from: int) -> Table:
    header, body = table
    out = Table(title=title, title_justify="left")
    for index, name in enumerate(header):
        out.add_column(name, justify="right" if index >= numeric_from else "left")
    for row in body:
        out.add_row(*row)
    return out


def print_report(report: dict[str, Any], console: Console) -> None:
    """The terminal view: machine line, latency / memory / accuracy tables, skipped rows, problems, headline."""
    machine = report["machine"]
    label = machine.get("emulated")
    if label:
        console.print(f"[bold yellow]{label}[/]", highlight=False)
    isa = ", ".join(machine["isa"]["of_interest"]) or "none of interest"
    console.print(
        f"{machine['cpu_model']} · {machine['cores_usable']} usable cores · {machine['architecture']} "
        f"({isa}) · {machine['os']}",
        highlight=False,
    )
    ov = report.get("openvino")
    if ov:
        console.print(
            f"OpenVINO {ov.get('version')}: default inference precision here {ov.get('default_inference_precision')}",
            highlight=False,
        )
    artifact = report["artifact"]
    console.print(
        f"artifact {artifact['dir']} · model {artifact['model_id']} ({artifact['architecture']}) · "
        f"decoder precisions {', '.join(artifact['decoder_precisions'])}",
        highlight=False,
    )
    if report.get("latency"):
        title = (
            "Latency (ms): encoder per image, decoder per click; speed-up = PyTorch eager p50 / row p50; "
            "floor = decoder FLOPs at this host's measured GEMM peak"
        )
        console.print(_rich(title, latency_table(report["latency"]), 2))
    if report.get("memory"):
        console.print(_rich("Memory: fresh process, 1 image + clicks", memory_table(report["memory"]), 2))
    acc = report.get("accuracy")
    if acc:
        if acc.get("rows"):
            title = (
                f"Accuracy on {acc['objects']} objects of {acc['dataset']} ({acc['clicks']} clicks, "
                f"{acc['threads']} threads); parity vs {acc['reference']}"
            )
            console.print(_rich(title, report_accuracy_table(report), 3))
        if acc.get("export_gate"):
            console.print(gate_text(acc["export_gate"]), highlight=False)
        if acc.get("skipped"):
            console.print(f"accuracy skipped: {acc['skipped']}", highlight=False)
        for problem in acc.get("problems", []):
            console.print(f"[yellow]dataset problem (skipped, not counted):[/] {problem}", highlight=False)
    baseline = report.get("baseline") or {}
    if not baseline.get("available"):
        console.print(f"PyTorch eager baseline: not measured: {baseline.get('note')}", highlight=False)
    for skip in report.get("skipped", []):
        console.print(f"skipped {skip['backend']} {skip['precision']}: {skip['reason']}", highlight=False)
    for note in report.get("notes", []):
        console.print(f"note: {note}", highlight=False)
    for failure in report.get("failures", []):
        console.print(f"[red]failed:[/] {failure_text(failure)}", highlight=False)
    if report.get("headline"):
        console.print(f"[bold]{report['headline']['text']}[/]", highlight=False)


# ------------------------------------------------------------------------------------------- markdown


def _md_table(table: tuple[list[str], list[list[str]]]) -> str:
    header, body = table
    lines = [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _turns_text(settings: dict[str, Any]) -> str:
    """How the decoders were timed against each other (:func:`interformer_edge.core.timing.measure_in_turn`)."""
    return (
        "; the decoders of one size and thread count take turns (one timed call each per round, a "
        f"{settings['turn_pause_s'] * 1000:.0f} ms untimed pause before each), PyTorch eager is timed after them "
        "on its own"
    )


def to_markdown(report: dict[str, Any], plots: list[str]) -> str:
    """``report.md``: the same tables as the terminal, machine facts, and the plots."""
    machine, artifact = report["machine"], report["artifact"]
    out = ["# interformer-bench report", ""]
    if machine.get("emulated"):
        out += [f"> **{machine['emulated']}**", ""]
    if report.get("headline"):
        out += [f"**{report['headline']['text']}**", ""]
    versions = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    out += [
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']} ({machine['architecture']}), {machine['cores_usable']} usable cores "
        f"({machine['cores_logical']} logical, {machine['cores_physical']} physical), "
        f"{machine['memory_total_bytes'] / 2**30:.1f} GiB RAM",
        f"- ISA flags of interest: {', '.join(machine['isa']['of_interest']) or 'none'} "
        f"(int8 dot product: {'yes' if machine['isa']['int8_dot_product'] else 'no'}, "
        f"fp16 arithmetic: {'yes' if machine['isa']['fp16_arithmetic'] else 'no'}, "
        f"bf16: {'yes' if machine['isa']['bf16_arithmetic'] else 'no'})",
        f"- OS: {machine['os']}, kernel {machine['kernel']}, Python {machine['python']}",
        f"- Packages: {versions}",
        f"- Load average at start: {', '.join(f'{v:.2f}' for v in machine['load_average'] or [])}; at the end: "
        f"{', '.join(f'{v:.2f}' for v in machine.get('load_average_end') or [])} (other work on the machine "
        "inflates the timings)",
    ]
    ov = report.get("openvino")
    if ov:
        caps = ", ".join(ov.get("optimization_capabilities") or [])
        out.append(
            f"- OpenVINO CPU: {ov.get('cpu')}, capabilities {caps}, "
            f"default inference precision **{ov.get('default_inference_precision')}**"
        )
    out += [
        "",
        "## Artifact",
        "",
        f"- `{artifact['dir']}`: model {artifact['model_id']} ({artifact['architecture']}), from "
        f"`{artifact['source_checkpoint']['path']}`, exported {artifact['created']}",
        f"- decoder precisions: {', '.join(artifact['decoder_precisions'])}; all files "
        f"{artifact['sizes']['total_bytes'] / MIB:.1f} MiB",
        "",
        "| graph | precision | format | MiB |",
        "|---|---|---|---|",
        *[
            f"| {g['graph']} | {g['precision']} | {g['format']} | {mib_text(g['bytes'])} |"
            for g in artifact["sizes"]["graphs"]
        ],
    ]
    settings = report["settings"]
    timing = settings["timing"]
    if report.get("latency"):
        out += [
            "",
            "## Latency (ms)",
            "",
            f"Encoder per image and decoder per click (the third click of a session on a bundled photo); "
            f"{timing['warmup']} warm-up runs, then at least {timing['min_runs']} timed runs and until "
            f"{timing['budget_s']} s{_turns_text(settings)}. "
            "Speed-up: PyTorch eager p50 / row p50 at the same size and threads, "
            "same run. An encoder marked (= fp32) is the same graph as that row's and was measured once. "
            "Decoder floor: the decoder's Conv/MatMul FLOPs at the size (counted from the ONNX graph on the "
            "timed click) at this host's GEMM peak of the row's precision and threads (the fastest run of a "
            "1024-cubed product timed taking turns with the decoders); floor / p50 is the share of the peak "
            "the row reaches.",
            "",
            _md_table(latency_table(report["latency"])),
        ]
        floors = {r["size"]: r["floor"] for r in report["latency"] if r.get("floor")}
        peaks = sorted(
            {
                (r["threads"], r["floor"]["peak_precision"], r["floor"]["peak_gflops"])
                for r in report["latency"]
                if r.get("floor")
            }
        )
        if floors:
            sizes = ", ".join(f"{size} {f['gflop']} GFLOP" for size, f in floors.items())
            gemm = ", ".join(f"{p} {t} thr {g} GFLOP/s" for t, p, g in peaks)
            out += ["", f"Decoder FLOPs per click: {sizes}; GEMM peak: {gemm}."]
    if report.get("memory"):
        out += [
            "",
            "## Memory",
            "",
            f"Peak RSS of a fresh process that loads the configuration, encodes one photo and serves "
            f"{settings['memory_clicks']} clicks.",
            "",
            _md_table(memory_table(report["memory"])),
        ]
    acc = report.get("accuracy")
    if acc:
        out += ["", "## Accuracy", ""]
        if acc.get("rows"):
            out += [
                f"{acc['objects']} objects of `{acc['dataset']}`, {acc['clicks']} clicks, automatic clicker, "
                f"{acc['threads']} threads. Parity: each row's decoder on the reference's inputs "
                f"({acc['reference']}), per-click mask IoU and logits; quality: each row's own sessions.",
                "",
                _md_table(report_accuracy_table(report)),
            ]
            curves = [(row_name(r), r["quality"]["iou_curve"]) for r in acc["rows"] if r.get("quality")]
            if curves:
                clicks = max(len(c) for _, c in curves)
                out += [
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
        gate = acc.get("export_gate")
        if gate:
            out += ["", gate_text(gate)]
        if acc.get("skipped"):
            out += [f"Accuracy skipped: {acc['skipped']}"]
        if acc.get("problems"):
            out += ["", "Dataset files skipped (not counted):", "", *[f"- {p}" for p in acc["problems"]]]
    notes = []
    baseline = report.get("baseline") or {}
    if not baseline.get("available"):
        notes.append(f"PyTorch eager baseline not measured: {baseline.get('note')}")
    notes += [f"skipped {s['backend']} {s['precision']}: {s['reason']}" for s in report.get("skipped", [])]
    notes += report.get("notes", [])
    notes += [f"FAILED: {failure_text(f)}" for f in report.get("failures", [])]
    if notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    if plots:
        out += ["", "## Plots", "", *[f"![{p}]({p})" for p in plots]]
    out += [
        "",
        f"Bench time: {report['seconds'].get('total', 0):.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in report['seconds'].items() if k != 'total')}). "
        f"Command: `{report['tool']['command']}`",
        "",
    ]
    return "\n".join(out)
