"""``interformer-bench``: latency, memory, size and interactive accuracy of an export on this machine.

The command line only reads flags into :class:`~.options.BenchFlags`, has them checked
(:func:`~.options.check_flags`), runs :func:`~.run.run_benchmark` and shows the result.
"""

from __future__ import annotations

import shlex
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from interformer_edge.core.cli_kit import EXIT_OK, command_app, fail, warn
from interformer_edge.core.progress import cli_console
from interformer_edge.core.spec import EVAL_MAX_CLICKS
from interformer_edge.core.timing import DEFAULT_BUDGET_S, DEFAULT_MIN_RUNS, DEFAULT_WARMUP, TimingPolicy

from .default_export import export_folder
from .options import DEFAULT_LIMIT, DEFAULT_MEMORY_CLICKS, PARTS, BadInputError, BenchFlags, check_flags, plan_rows
from .report import print_report
from .result import BenchResult
from .run import run_benchmark
from .steps import silent, step_lines

COMMAND = "interformer-bench"
DEFAULT_OUT = Path("interformer_bench")
DEFAULT_SIZES = "512x512"
ROWS_HELP = (
    "Comma-separated rows, each a decoder variant and the type OpenVINO computes float layers in: fp32 (the "
    "exported decoder; OpenVINO pinned to f32), int8 (the quantized decoder), bf16 / fp16 (OpenVINO computing "
    "in that type, where the CPU supports it), default (what OpenVINO picks by itself: bf16 on AVX512-BF16/AMX "
    "x86, f16 on Cortex-A76), int8-default (the int8 decoder, float layers in that default). Default: every "
    "decoder variant of the export, each also with OpenVINO's default."
)

app = command_app()


@app.command()
def main(
    artifact_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Export folder (manifest.json + graphs, from interformer-export / interformer-quantize). Default: "
            "./interformer_export, exported from the bundled default model first if missing (needs torch).",
            show_default=False,
        ),
    ] = None,
    backends: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated backends: onnxruntime, openvino. Default: every installed one.", show_default=False
        ),
    ] = None,
    rows: Annotated[str | None, typer.Option(help=ROWS_HELP, show_default=False)] = None,
    precisions: Annotated[str | None, typer.Option(hidden=True, help="--rows' old name.")] = None,
    threads: Annotated[
        str | None,
        typer.Option(help="Comma-separated thread counts. Default: 1 and the usable cores.", show_default=False),
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Comma-separated HxW image sizes for latency (multiples of 32); memory uses the first.")
    ] = DEFAULT_SIZES,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="Accuracy dataset in the GrabCut/Berkeley/DAVIS layout (img/, gt/, list/val.txt). Default: the "
            "bundled held-out set (100 synthetic objects, 256-480 px).",
            show_default=False,
        ),
    ] = None,
    clicks: Annotated[int, typer.Option(min=1, help="Clicks per object (automatic clicker).")] = EVAL_MAX_CLICKS,
    limit: Annotated[
        int,
        typer.Option(
            min=0,
            help="Accuracy objects: the first N usable ones of the dataset; 0: all. Accuracy is the slow part: "
            "each object costs about clicks x configurations x 2 decoder runs.",
        ),
    ] = DEFAULT_LIMIT,
    runs: Annotated[
        int, typer.Option(min=1, help="Minimum timed runs per latency measurement (then more until --budget).")
    ] = DEFAULT_MIN_RUNS,
    budget: Annotated[
        float, typer.Option(min=0.0, help="Seconds of timed runs per latency measurement, after the minimum runs.")
    ] = DEFAULT_BUDGET_S,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed warm-up runs per measurement.")] = DEFAULT_WARMUP,
    memory_clicks: Annotated[
        int, typer.Option(min=1, help="Clicks the fresh memory-probe process serves after encoding one photo.")
    ] = DEFAULT_MEMORY_CLICKS,
    parts: Annotated[str, typer.Option(help="Comma-separated parts to run: latency, memory, accuracy.")] = ",".join(
        PARTS
    ),
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline/--no-baseline",
            help="Measure PyTorch eager as the baseline row (when torch is installed and "
            "the export's checkpoint is found with its sha256).",
        ),
    ] = True,
    emulated: Annotated[
        str | None,
        typer.Option(
            help="Label the run as emulated (e.g. 'EMULATED (qemu cortex-a76) - not Raspberry Pi figures'): "
            "shown in the terminal, report.json and report.md.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder for report.json, report.md and the PNG plots (created; those files are replaced).",
        ),
    ] = DEFAULT_OUT,
    static_shapes: Annotated[
        bool,
        typer.Option(
            "--static-shapes/--no-static-shapes",
            help="Also time every runtime row with its decoder compiled for the "
            "image size (Decoder(static_shapes=True)), as a row of its own "
            "marked 'static'.",
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the headline and problems.")] = False,
) -> None:
    """Benchmark an export on this machine: latency (encoder per image, decoder per click; p50/p90/p99 for
    every backend x precision x threads x size, with the speed-up over PyTorch eager measured in the same run),
    peak memory of a fresh process, artifact sizes, parity with the FP32 reference click by click, and
    interactive accuracy (mIoU@1/3/5, NoC@85/90, IoU per click) on a dataset.

    Works without torch (then there is no PyTorch row). Dataset files with missing masks or unreadable
    images are reported and skipped, never counted. An export from another format version or with
    hash mismatches is refused.

    Exit status: 0 done; 1 some configuration failed to load or run (the report is written and says
    which), or a crash; 2 bad input (nothing measured or written).
    """
    console, err_console = cli_console(), cli_console(stderr=True)
    if precisions is not None:
        warn(COMMAND, "--precisions is deprecated, use --rows")
        rows = rows if rows is not None else precisions
    flags = BenchFlags(
        export_dir=artifact_dir,
        backends=backends,
        rows=rows,
        threads=threads,
        sizes=sizes,
        dataset=dataset,
        clicks=clicks,
        limit=limit,
        timing=TimingPolicy(warmup=warmup, min_runs=runs, budget_s=budget),
        memory_clicks=memory_clicks,
        parts=parts,
        baseline=baseline,
        emulated=emulated,
        out=out,
        static_shapes=static_shapes,
        command=f"{COMMAND} " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    try:
        options = check_flags(flags, lambda folder: export_folder(folder, err_console, quiet))
        plan = plan_rows(options)
    except BadInputError as err:
        fail(COMMAND, err)
    if emulated:
        err_console.print(f"[bold yellow]{emulated}[/]", highlight=False)
    with nullcontext(silent) if quiet else step_lines(err_console) as say:
        result = run_benchmark(options, plan, say)
    show(result, out, console, err_console, quiet)
    if result.exit_status != EXIT_OK:
        raise typer.Exit(result.exit_status)


def show(result: BenchResult, out: Path, console: Console, err_console: Console, quiet: bool) -> None:
    """The report in the terminal (with ``quiet``: the headline, and dataset problems and failures on
    stderr), then which files were written."""
    report = result.report
    if quiet:
        if report.headline:
            console.print(report.headline.text, highlight=False)
        for problem in report.accuracy.problems if report.accuracy else []:
            err_console.print(f"dataset problem (skipped, not counted): {problem}", highlight=False)
        for failure in report.failures:
            err_console.print(f"failed: {failure.text()}", highlight=False)
    else:
        print_report(report, console)
    console.print(
        f"wrote {', '.join(str(out / name) for name in report.outputs)} ({report.seconds['total']:.0f} s)",
        highlight=False,
    )


if __name__ == "__main__":
    app()
