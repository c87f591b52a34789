"""``interformer-quantize``: INT8 click decoder for an export folder, calibrated on click sessions, accuracy-gated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from interformer_edge.core.cli_kit import EXIT_GATE_FAILED, command_app, fail, warn
from interformer_edge.core.manifest import BROWSER_GATE
from interformer_edge.core.progress import ProgressReporter, cli_console
from interformer_edge.core.sizes import parse_size
from interformer_edge.core.spec import EVAL_MAX_CLICKS
from interformer_edge.runtime.backends import BACKENDS

from .gate import DEFAULT_MAX_NOC90_DELTA, DEFAULT_MIN_IOU, GateThresholds
from .options import METHODS, PATCH_MERGING_LAYERS, STAGE0_BOTTLENECK_LAYERS, QuantizeError, QuantizeOptions
from .pipeline import COMMAND, run_quantize
from .results import QuantizeResult
from .targets import DEFAULT_TARGET, TARGETS

_DEFAULTS = QuantizeOptions(export_dir=Path("interformer_export"))

app = command_app()


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as err:
        raise QuantizeError(f"--latency-size: {err}") from None


def summary_table(result: QuantizeResult) -> Table:
    """FP32 vs INT8 per backend: size, quick latency, accuracy, what stayed float, verdict."""
    calibration = result.calibration
    title = (
        f"INT8 click decoder for {result.export_dir} — target {calibration['target']}, "
        f"gated on {calibration['build_host']['class']} ({calibration['build_host']['model']})"
    )
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("backend", "left"),
        ("file", "left"),
        ("size FP32 → INT8", "right"),
        ("latency FP32 → INT8", "right"),
        ("IoU vs FP32", "right"),
        ("NoC@85 FP32 → INT8", "right"),
        ("NoC@90 FP32 → INT8", "right"),
        ("float layers", "right"),
        ("gate", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for o in result.outcomes:
        r = o.result
        ratio = o.fp32_size_bytes / o.size_bytes if o.size_bytes else float("nan")
        lat = o.latency_ms
        table.add_row(
            o.backend,
            o.file if o.passed else f"({o.file} not installed)",
            f"{o.fp32_size_bytes / 2**20:.2f} → {o.size_bytes / 2**20:.2f} MiB ({ratio:.1f}x)",
            f"{lat['fp32']:.1f} → {lat['int8']:.1f} ms ({lat['fp32'] / lat['int8']:.2f}x) @{lat['size']}"
            if lat
            else "not measured",
            f"{r.mean_iou_vs_fp32:.4f}",
            f"{r.noc85_fp32:.2f} → {r.noc85:.2f}",
            f"{r.noc90_fp32:.2f} → {r.noc90:.2f}",
            str(len(o.float_layers)),
            "[green]pass[/]" if o.passed else "[red]FAIL[/]",
        )
        if o.device_default is not None:  # the same file as it runs with the device's default compute type
            d = o.device_default.result
            table.add_row(
                o.backend,
                f"  same, float layers {o.device_default.computes_in}",
                "",
                "",
                f"{d.mean_iou_vs_fp32:.4f}",
                f"{d.noc85_fp32:.2f} → {d.noc85:.2f}",
                f"{d.noc90_fp32:.2f} → {d.noc90:.2f}",
                "",
                "[green]pass[/]" if d.passed else "[red]FAIL[/]",
            )
    if result.browser is not None:  # the ONNX Runtime INT8 file as onnxruntime-web runs it in a browser
        b, lat = result.browser, result.browser["latency_ms"]
        table.add_row(
            f"{BROWSER_GATE} {b['onnxruntime_web']}",
            f"{b['file']} ({b['browser']}, {b['threads']} threads)",
            "",
            f"{lat['fp32']:.1f} → {lat['int8']:.1f} ms ({lat['fp32'] / lat['int8']:.2f}x) @{lat['size']}",
            f"{b['mean_iou_vs_fp32']:.4f}",
            f"{b['noc85_fp32']:.2f} → {b['noc85']:.2f}",
            f"{b['noc90_fp32']:.2f} → {b['noc90']:.2f}",
            "",
            "[green]pass[/]" if b["passed"] else "[red]FAIL[/]",
        )
    return table


def device_default_warnings(result: QuantizeResult) -> list[str]:
    """One line per installed INT8 decoder that fails the gate when run with the device's default compute type."""
    return [
        f"the {o.backend} INT8 decoder FAILED the gate with the device's default {o.device_default.computes_in} "
        "float layers (installed: it passed in f32, the runtime's default); do not run it with compute=device "
        "on this host"
        for o in result.outcomes
        if o.passed and o.device_default is not None and not o.device_default.result.passed
    ]


@app.command()
def main(
    export_dir: Annotated[
        Path, typer.Argument(help="Export folder written by interformer-export (manifest.json + graphs).")
    ] = _DEFAULTS.export_dir,
    target: Annotated[
        str,
        typer.Option(
            help="Which CPUs the INT8 decoder must be accurate on: "
            + "; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values())
            + ". Recorded in the manifest; the runtime warns on a CPU the target does not cover."
        ),
    ] = DEFAULT_TARGET,
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help="Comma-separated backends to build INT8 decoders for: onnxruntime (static QDQ), openvino (NNCF).",
        ),
    ] = ",".join(BACKENDS),
    calib: Annotated[
        Path | None,
        typer.Option(
            help="Calibration images: a GrabCut-layout folder (img/, gt/, list/val.txt) or a plain folder of images "
            "(targets then come from the model's own one-click masks). Default: the bundled assets/calib "
            "(24 training-split scenes)."
        ),
    ] = None,
    heldout: Annotated[
        Path | None,
        typer.Option(
            help="Held-out GrabCut-layout folder for the accuracy gate (never the calibration images). "
            "Default: the bundled assets/heldout (100 objects)."
        ),
    ] = None,
    num_sessions: Annotated[
        int,
        typer.Option(
            help="Simulated click sessions for calibration (each 1..--calib-clicks clicks on a calibration image; "
            "every click's decoder input is a sample)."
        ),
    ] = _DEFAULTS.num_sessions,
    calib_clicks: Annotated[int, typer.Option(help="Longest calibration session, in clicks.")] = _DEFAULTS.calib_clicks,
    max_samples: Annotated[
        int, typer.Option(help="Calibration samples kept at most (drawn evenly from all sessions).")
    ] = _DEFAULTS.max_samples,
    method: Annotated[
        str,
        typer.Option(
            help=f"Activation range method: {', '.join(METHODS)} (ONNX Runtime: MinMax/Entropy/99.999th percentile; "
            "NNCF: min-max/histogram/mean quantile)."
        ),
    ] = _DEFAULTS.method,
    min_iou: Annotated[
        float, typer.Option(help="Gate: least mean IoU of INT8 vs FP32 masks over all held-out clicks.")
    ] = DEFAULT_MIN_IOU,
    max_noc_delta: Annotated[
        float, typer.Option(help="Gate: largest allowed |NoC@90(INT8) - NoC@90(FP32)| on the held-out set.")
    ] = DEFAULT_MAX_NOC90_DELTA,
    gate_clicks: Annotated[
        int, typer.Option(help="Clicks per held-out session (standard protocol: 20).")
    ] = EVAL_MAX_CLICKS,
    gate_limit: Annotated[
        int | None, typer.Option(help="Gate on the first N held-out objects only (default: all).")
    ] = None,
    keep_float: Annotated[
        list[str] | None,
        typer.Option(
            help="Regular expression of ONNX node names to keep in float (repeatable; on OpenVINO every operation "
            "that matches, on ONNX Runtime the convolutions and matrix products, the only ones it quantizes). "
            "When given, the same patterns apply on every backend. Default, per backend: PatchMerging, "
            f"normalized after its convolution ({PATCH_MERGING_LAYERS}), and on ONNX Runtime also stage 0's "
            f"inverted bottleneck, slower there in INT8 ({STAGE0_BOTTLENECK_LAYERS})."
        ),
    ] = None,
    quantize_all: Annotated[
        bool, typer.Option("--quantize-all", help="Quantize every Conv/MatMul, ignoring the default --keep-float set.")
    ] = False,
    max_float_layers: Annotated[
        int,
        typer.Option(
            help="When the gate fails: keep up to this many extra layers float, most sensitive first "
            "(measured), before giving up."
        ),
    ] = _DEFAULTS.max_float_layers,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads for calibration, the gate and the latency check. Default: the backends' own."),
    ] = None,
    latency_size: Annotated[str, typer.Option(help="Canvas HxW for the quick FP32-vs-INT8 latency check.")] = "512x512",
    latency_runs: Annotated[
        int,
        typer.Option(
            help="Timed runs per decoder in that check (median); 0 skips it (interformer-bench measures latency "
            "properly, as the quick start does next)."
        ),
    ] = _DEFAULTS.latency_runs,
    seed: Annotated[int, typer.Option(help="Seed of the calibration sessions.")] = _DEFAULTS.seed,
    browser: Annotated[
        bool,
        typer.Option(
            "--browser",
            help="Also gate the ONNX Runtime INT8 decoder as the annotator's page runs it (onnxruntime-web, "
            "WebAssembly, in headless chromium), on the same held-out sessions, and time it beside FP32 there; "
            "recorded as the onnxruntime-web gate. interformer-annotate serves INT8 to pages only when that gate "
            "passed and INT8 was the faster. Needs Playwright (the browser extra) and a chromium.",
        ),
    ] = False,
    browser_only: Annotated[
        bool,
        typer.Option(
            "--browser-only",
            help="Only the --browser gate, on the INT8 decoder an earlier run installed: no calibration, "
            "nothing rebuilt (the held-out and gate options apply).",
        ),
    ] = False,
    chromium: Annotated[
        Path, typer.Option(help="The chromium executable --browser drives (Debian: apt-get install chromium).")
    ] = _DEFAULTS.chromium,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress (bars on a terminal, lines in a log); only the table and errors."
        ),
    ] = False,
) -> None:
    """Build the INT8 click decoder of an export: ONNX Runtime static QDQ and/or OpenVINO NNCF.

    Calibrates on decoder inputs from simulated click sessions, then gates each backend's INT8 decoder on
    held-out click sessions against FP32 (mean mask IoU and NoC@90 difference). A failing backend gets its
    most sensitive layers (measured one at a time) kept in float and is retried. Passing files are written
    beside the FP32 ones (decoder.int8.onnx, decoder.int8.xml/.bin) and recorded in manifest.json with the
    calibration settings and gate results; use them with Decoder(export, variant="int8"). Where OpenVINO's
    device default compute type is not f32 (bf16 on AVX512-BF16/AMX CPUs), the OpenVINO INT8 decoder is
    also gated as it runs with that type for its float layers (compute=device); recorded, and a warning if
    it fails.

    With --browser the ONNX Runtime INT8 decoder is also gated as the annotator's page runs it
    (onnxruntime-web in headless chromium) and timed beside FP32 there; --browser-only does just that on
    an export quantized before.

    Exit status: 0 every gate passed; 2 bad input (nothing written); 3 the gate failed on a backend
    (its files are not installed; passing backends are) or in the browser (recorded: pages keep FP32);
    1 a crash.
    """
    # Redirected output: wide tables, no hard wraps, progress as lines (rich draws bars only on a terminal).
    err = cli_console(stderr=True)
    out = cli_console()
    try:
        options = QuantizeOptions(
            export_dir=export_dir,
            backends=tuple(b.strip().lower() for b in backends.split(",") if b.strip()),
            target=target.lower(),
            calib_dir=calib,
            heldout_dir=heldout,
            num_sessions=num_sessions,
            calib_clicks=calib_clicks,
            max_samples=max_samples,
            method=method.lower(),
            thresholds=GateThresholds(min_iou=min_iou, max_noc90_delta=max_noc_delta),
            gate_clicks=gate_clicks,
            gate_limit=gate_limit,
            keep_float=() if quantize_all else tuple(keep_float) if keep_float else None,
            max_float_layers=max_float_layers,
            threads=threads,
            latency_size=_size(latency_size),
            latency_runs=latency_runs,
            seed=seed,
            browser=browser or browser_only,
            browser_only=browser_only,
            chromium=chromium,
        )
        if quiet:
            result = run_quantize(options)
        else:
            with ProgressReporter(err) as progress:
                result = run_quantize(options, progress)
    except QuantizeError as error:
        fail(COMMAND, error)
    for problem in result.problems:
        err.print(f"{COMMAND}: skipped {problem}", markup=False, highlight=False)
    out.print(summary_table(result))
    for o in result.outcomes:
        out.print(f"{o.backend}: kept float: {', '.join(o.float_layers) or 'nothing'}", highlight=False)
    for warning in device_default_warnings(result):
        warn(COMMAND, warning)
    out.print(f"done in {result.seconds:.0f} s; manifest: {result.export_dir / 'manifest.json'}", highlight=False)
    if not result.passed:
        failed = ", ".join(o.backend for o in result.outcomes if not o.passed)
        if failed:
            err.print(
                f"{COMMAND}: accuracy gate FAILED on {failed}; those INT8 files were not installed", highlight=False
            )
        if result.browser is not None and not result.browser["passed"]:
            err.print(
                f"{COMMAND}: accuracy gate FAILED in the browser ({BROWSER_GATE}); the annotator's pages keep the FP32 "
                "decoder",
                highlight=False,
            )
        raise typer.Exit(EXIT_GATE_FAILED)


if __name__ == "__main__":
    app()
