"""``interformer-bench``: latency, memory, size and interactive accuracy of an export on this machine."""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from interformer_edge.core.atomic import write_atomic
from interformer_edge.core.manifest import Manifest, ManifestError, load_manifest
from interformer_edge.core.sizes import parse_size
from interformer_edge.core.spec import EVAL_MAX_CLICKS, MANIFEST_NAME
from interformer_edge.core.timing import DEFAULT_BUDGET_S, DEFAULT_MIN_RUNS, DEFAULT_WARMUP, TimingPolicy
from interformer_edge.runtime.backends import installed_backends

from .configs import check_backends, default_precisions, known_precisions, openvino_facts, plan_configs
from .machine import usable_cores
from .plots import write_plots
from .report import failure_text, headline, print_report, to_json, to_markdown
from .suite import PARTS, BenchOptions, run_bench

EXIT_FAILURES = 1  # some configuration failed to load or run; the report is written and lists it
EXIT_BAD_INPUT = 2  # nothing was measured or written
DEFAULT_EXPORT_DIR = Path("interformer_export")  # where a plain `interformer-export` writes
DEFAULT_OUT = Path("interformer_bench")
DEFAULT_SIZES = "512x512"
# Accuracy objects by default: the first 20 of the bundled held-out set keep a full default bench of
# the bundled model (5 configurations with INT8, 20 clicks each) at about 3 minutes on 2 quiet cores
# and under 10 with a training job beside it; --limit 0 runs all 100.
DEFAULT_LIMIT = 20
REPORT_JSON, REPORT_MD = "report.json", "report.md"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


class BadInputError(Exception):
    """A one-line reason to refuse the run before measuring anything."""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_threads(text: str) -> tuple[int, ...]:
    values = _split(text)
    if not values or not all(v.isdigit() and int(v) >= 1 for v in values):
        raise BadInputError(f"--threads {text!r}: expected positive integers such as 1,2,4")
    return tuple(dict.fromkeys(int(v) for v in values))


def parse_sizes(text: str, manifest: Manifest) -> tuple[tuple[int, int], ...]:
    """``"512x512,320x480"`` → sizes the export can run: multiples of its size divisor, within its
    maximum side, and only its own size for a static-size export."""
    pre = manifest.preprocessing
    sizes = []
    for part in _split(text):
        try:
            size = parse_size(part, pre.size_divisor, pre.max_image_side)
        except ValueError as err:
            raise BadInputError(str(err)) from None
        if manifest.static_size is not None and size != manifest.static_size:
            raise BadInputError(
                f"size {part}: this is a static-size export; it only runs "
                f"{manifest.static_size[0]}x{manifest.static_size[1]}"
            )
        sizes.append(size)
    if not sizes:
        raise BadInputError("--sizes is empty")
    return tuple(dict.fromkeys(sizes))


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before a long run rather than after."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {out}: {probe} is not writable")


def resolve_export(artifact_dir: Path | None, console: Console, quiet: bool) -> Path:
    """The folder to benchmark; with no argument, ``./interformer_export``, exported from the bundled
    default checkpoint first if it does not exist (needs torch)."""
    if artifact_dir is not None:
        return artifact_dir
    folder = DEFAULT_EXPORT_DIR
    if folder.exists() and (folder / MANIFEST_NAME).exists():
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise BadInputError(f"{folder} exists but holds no {MANIFEST_NAME}; pass an export folder")
    try:
        from interformer_edge.export.pipeline import ExportError, ExportOptions, run_export
    except ImportError as err:
        raise BadInputError(
            f"no export at ./{folder} and torch is not installed ({err.name or err}) to make one: run "
            "interformer-export on a workstation and pass the folder it writes"
        ) from None
    if not quiet:
        console.print(f"no export at ./{folder}: exporting the bundled default model there first", highlight=False)
    try:
        with console.status("exporting the bundled default model…"):
            run_export(ExportOptions(out_dir=folder))
    except ExportError as err:
        raise BadInputError(f"exporting the bundled default model failed: {err}") from None
    return folder


def _default_dataset() -> Path | None:
    try:
        from interformer_edge.assets import HELDOUT_DIR
    except ImportError:
        return None
    return Path(HELDOUT_DIR) if Path(HELDOUT_DIR, "img").is_dir() else None


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
    precisions: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated rows: fp32 (OpenVINO pinned to f32), int8 (the quantized decoder), bf16 / fp16 "
            "(OpenVINO hint, where the CPU supports it), default (what OpenVINO picks by itself: bf16 on "
            "AVX512-BF16/AMX x86, f16 on Cortex-A76). Default: every decoder precision of the export + default.",
            show_default=False,
        ),
    ] = None,
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
    ] = 20,
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
    console = Console(width=None if Console().is_terminal else 140)
    err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 140)
    command = "interformer-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        options, manifest = _options(
            artifact_dir,
            backends,
            precisions,
            threads,
            sizes,
            dataset,
            clicks,
            limit,
            TimingPolicy(warmup=warmup, min_runs=runs, budget_s=budget),
            memory_clicks,
            parts,
            baseline,
            emulated,
            out,
            command,
            err_console,
            quiet,
        )
        options = replace(options, static_shapes=static_shapes)
    except BadInputError as err:
        err_console.print(f"interformer-bench: error: {err}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if emulated:
        err_console.print(f"[bold yellow]{emulated}[/]", highlight=False)
    report = _run_with_progress(options, manifest, err_console, quiet)
    report["headline"] = headline(report)
    out.mkdir(parents=True, exist_ok=True)
    plots, note = write_plots(report, out)
    if note:
        report.setdefault("notes", []).append(note)
    report["outputs"] = [REPORT_JSON, REPORT_MD, *plots]
    write_atomic(out / REPORT_JSON, to_json(report))
    write_atomic(out / REPORT_MD, to_markdown(report, plots))
    if quiet:
        if report.get("headline"):
            console.print(report["headline"]["text"], highlight=False)
        for problem in (report.get("accuracy") or {}).get("problems", []):
            err_console.print(f"dataset problem (skipped, not counted): {problem}", highlight=False)
        for failure in report["failures"]:
            err_console.print(f"failed: {failure_text(failure)}", highlight=False)
    else:
        print_report(report, console)
    console.print(
        f"wrote {', '.join(str(out / name) for name in report['outputs'])} ({report['seconds']['total']:.0f} s)",
        highlight=False,
    )
    if report["failures"]:
        raise typer.Exit(EXIT_FAILURES)


def _options(
    artifact_dir: Path | None,
    backends: str | None,
    precisions: str | None,
    threads: str | None,
    sizes: str,
    dataset: Path | None,
    clicks: int,
    limit: int,
    timing: TimingPolicy,
    memory_clicks: int,
    parts: str,
    baseline: bool,
    emulated: str | None,
    out: Path,
    command: str,
    console: Console,
    quiet: bool,
) -> tuple[BenchOptions, Manifest]:
    """Check every flag and the export (raises :class:`BadInputError`), in the order a user would fix them."""
    wanted_parts = tuple(_split(parts))
    unknown = [p for p in wanted_parts if p not in PARTS]
    if unknown or not wanted_parts:
        raise BadInputError(f"--parts {parts!r}: choose from {', '.join(PARTS)}")
    thread_counts = parse_threads(threads) if threads else tuple(dict.fromkeys((1, usable_cores())))
    installed = installed_backends()
    backend_names = tuple(_split(backends)) if backends else tuple(installed)
    problem = check_backends(backend_names, installed) if backend_names else "no inference backend is installed"
    if problem:
        raise BadInputError(problem)
    check_writable(out)
    if "accuracy" in wanted_parts:
        dataset = dataset if dataset is not None else _default_dataset()
        if dataset is None:
            raise BadInputError(
                "no dataset: the bundled held-out set is missing; pass --dataset or drop accuracy from --parts"
            )
        if not (dataset / "img").is_dir():
            raise BadInputError(
                f"--dataset {dataset} is not a dataset folder (expected {dataset / 'img'}, gt/, list/val.txt)"
            )
    folder = resolve_export(artifact_dir, console, quiet)
    try:
        manifest = load_manifest(folder)
    except ManifestError as err:
        raise BadInputError(str(err)) from None
    size_list = parse_sizes(sizes, manifest)
    names = tuple(dict.fromkeys(_split(precisions))) if precisions else tuple(default_precisions(manifest))
    known = known_precisions(manifest)
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise BadInputError(
            f"--precisions {precisions!r}: unknown {', '.join(bad) or 'empty'}; choose from {', '.join(known)}"
        )
    ov = openvino_facts() if "openvino" in backend_names else None
    configs, skipped = plan_configs(manifest, backend_names, names, ov)
    if not configs:
        reasons = "; ".join(f"{s.backend} {s.precision}: {s.reason}" for s in skipped)
        raise BadInputError(f"nothing to benchmark ({reasons})")
    options = BenchOptions(
        export_dir=folder,
        backends=backend_names,
        precisions=names,
        threads=thread_counts,
        sizes=size_list,
        dataset=dataset if "accuracy" in wanted_parts else None,
        clicks=clicks,
        limit=limit or None,
        timing=timing,
        parts=wanted_parts,
        baseline=baseline,
        emulated=emulated or None,
        memory_clicks=memory_clicks,
        command=command,
    )
    return options, manifest


def _run_with_progress(options: BenchOptions, manifest: Manifest, console: Console, quiet: bool) -> dict[str, Any]:
    """Run the bench with its steps on stderr: a live status line on a terminal, one line per step
    (elapsed time first) when stderr goes to a log file."""
    if quiet:
        return run_bench(options, manifest)
    started = time.perf_counter()
    if not console.is_terminal:

        def line(step: str) -> None:
            console.print(
                f"[{time.perf_counter() - started:5.0f} s] {step}", markup=False, highlight=False, soft_wrap=True
            )

        return run_bench(options, manifest, line)
    with console.status("starting…") as status:

        def progress(step: str) -> None:
            status.update(f"[{time.perf_counter() - started:5.0f} s] {step}…")

        return run_bench(options, manifest, progress)


if __name__ == "__main__":
    app()
