"""``interformer-export``: checkpoint → encoder/decoder ONNX + OpenVINO IR + manifest, behind a parity gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from interformer_edge.core.cli_kit import EXIT_BAD_INPUT, EXIT_GATE_FAILED, command_app, fail, warn
from interformer_edge.core.peak_memory import peak_rss_bytes
from interformer_edge.core.progress import cli_console
from interformer_edge.core.sizes import parse_size, size_text
from interformer_edge.core.spec import DEFAULT_OPSET, GRAPH_FORMATS, MANIFEST_NAME

from .parity import DEFAULT_ABS_TOLERANCE, DEFAULT_MIN_MASK_AGREEMENT, DEFAULT_SIZES, GateSettings, parity_table
from .pipeline import ExportError, ExportOptions, ExportResult, run_export

COMMAND = "interformer-export"

app = command_app()


def _size_list(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(parse_size(part) for part in text.split(",") if part.strip())


def _summary(result: ExportResult) -> Table:
    table = Table(title=f"Export to {result.out_dir}", title_justify="left")
    table.add_column("file")
    table.add_column("size", justify="right")
    for entry in result.manifest.files:
        table.add_row(entry.name, f"{entry.size / 2**20:.2f} MiB")
    total = sum(f.size for f in result.manifest.files)
    table.add_row("[bold]total[/]", f"[bold]{total / 2**20:.2f} MiB[/]")
    return table


def _footer(result: ExportResult) -> str:
    simplified = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result.manifest.onnx_simplified.items())
    return (
        f"export time {result.seconds:.1f} s · peak RSS {result.peak_rss_bytes / 2**30:.2f} GiB · "
        f"ONNX simplified: {simplified}"
    )


@app.command()
def main(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            "-c",
            help="Model checkpoint (official mmcv .pth or a bare state dict). "
            "Default: the bundled interformer_small_synthetic.pth.",
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="Architecture preset: light or tiny (strict load). Default: inferred from the checkpoint's "
            "tensor shapes, which also covers reduced variants."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output folder (created if needed). Existing export files in it are replaced."
        ),
    ] = Path("interformer_export"),
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            help="Comma-separated formats to write: onnx, openvino. ONNX is always built and "
            "gated on ONNX Runtime, since the IR is converted from it.",
        ),
    ] = ",".join(GRAPH_FORMATS),
    opset: Annotated[int, typer.Option(help="ONNX opset (17..20).")] = DEFAULT_OPSET,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Store OpenVINO IR weights as FP16 (compress_to_fp16); ONNX stays FP32. "
            "The gate then judges OpenVINO by mask agreement only.",
        ),
    ] = False,
    static: Annotated[
        str | None,
        typer.Option(
            help="Fixed HxW (multiples of 32) instead of dynamic sizes; the graphs reject every other size "
            "and the gate runs at this size."
        ),
    ] = None,
    unsafe_load: Annotated[
        bool,
        typer.Option(
            "--unsafe-load",
            help="Allow full unpickling of checkpoints that hold Python objects (only for files you trust).",
        ),
    ] = False,
    simplify: Annotated[
        bool,
        typer.Option(
            "--simplify/--no-simplify",
            help="Simplify the ONNX graphs with onnxslim (dynamic shapes kept; "
            "falls back to the traced graph if parity breaks).",
        ),
    ] = True,
    parity_sizes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated HxW sizes for the parity gate. Default: "
            f"{','.join(size_text(s) for s in DEFAULT_SIZES)} (or the --static size)."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Max abs diff allowed for FP32 features and logits.")
    ] = DEFAULT_ABS_TOLERANCE,
    min_mask_agreement: Annotated[
        float, typer.Option(help="Minimum fraction of pixels whose predicted class must agree.")
    ] = DEFAULT_MIN_MASK_AGREEMENT,
    threads: Annotated[
        int | None, typer.Option(help="Threads for ONNX Runtime/OpenVINO during the gate. Default: theirs.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the gate verdict.")] = False,
) -> None:
    """Export an InterFormer checkpoint as three graphs with manifest.json, behind a parity gate.

    encoder.onnx: image (1, 3, H, W) → feat0..feat3, once per image. context.onnx: feat0..feat3 →
    ctx0..ctx3 (the click side's per-image part), once per image. decoder.onnx: feat0 + ctx0..ctx3 +
    ref_label (1, 1, H, W) uint8 [+ roi (1, 4) int64 for models with refine stages] → logits (1, 2, H, W),
    once per click. Plus OpenVINO IR of each. The gate compares PyTorch, ONNX Runtime and OpenVINO.

    Exit status: 0 ok; 2 bad input (nothing is written); 3 parity gate failed (files and manifest are
    written, the manifest records the failure); 1 a crash.
    """
    out_console = cli_console()
    err_console = cli_console(stderr=True)
    try:
        static_size = parse_size(static) if static else None
        sizes = _size_list(parity_sizes) if parity_sizes else ((static_size,) if static_size else DEFAULT_SIZES)
    except ValueError as err:  # a malformed or unsupported size
        fail(COMMAND, err, EXIT_BAD_INPUT)
    options = ExportOptions(
        checkpoint=checkpoint,
        arch=arch,
        out_dir=out,
        formats=tuple(f.strip().lower() for f in formats.split(",") if f.strip()),
        opset=opset,
        fp16=fp16,
        static_size=static_size,
        unsafe_load=unsafe_load,
        simplify=simplify,
        gate=GateSettings(sizes=sizes, abs_tolerance=tolerance, min_mask_agreement=min_mask_agreement, threads=threads),
    )
    if unsafe_load:
        warn(COMMAND, "--unsafe-load unpickles arbitrary Python objects; only use it for checkpoints you trust")
    try:
        result = _run_with_progress(options, err_console, quiet)
    except ExportError as err:
        fail(COMMAND, err, EXIT_BAD_INPUT)

    for note in result.warnings:
        warn(COMMAND, note)
    report = result.manifest.parity
    if not quiet or not report.passed:
        out_console.print(parity_table(report, only_failures=quiet))
    if not quiet:
        out_console.print(_summary(result))
        out_console.print(_footer(result), highlight=False)
    out_console.print(f"manifest: {result.out_dir / MANIFEST_NAME}", highlight=False)
    if not report.passed:
        err_console.print(
            f"{COMMAND}: parity gate FAILED ({len(report.failures())} checks); "
            "the files are written and the manifest records the failure",
            highlight=False,
        )
        raise typer.Exit(EXIT_GATE_FAILED)


def _run_with_progress(options: ExportOptions, console: Console, quiet: bool) -> ExportResult:
    """Run the export with a live status line; each finished step is printed with its duration."""
    if quiet:
        return run_export(options)
    current: list[tuple[str, float]] = []

    def finish_step() -> None:
        if current:
            name, start = current.pop()
            rss = peak_rss_bytes() / 2**30
            console.print(
                f"[green]✓[/] {name} [dim]({time.perf_counter() - start:.1f} s, peak RSS {rss:.2f} GiB)[/]",
                highlight=False,
            )

    with console.status("starting…") as status:

        def progress(step: str) -> None:
            finish_step()
            current.append((step, time.perf_counter()))
            status.update(f"{step}…")

        result = run_export(options, progress)
        finish_step()  # only on success: a failed step is reported by the error line instead
        return result


if __name__ == "__main__":
    app()
