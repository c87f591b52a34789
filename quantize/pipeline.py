"""INT8 click decoder for an export folder: calibrate → quantize per backend → gate → install.

1. Calibration inputs from simulated click sessions on the calibration images, and
2. FP32 reference sessions on the held-out objects, shared by every candidate (:mod:`.inputs`).
3. Per backend: quantize with the target's scheme (:mod:`.targets`; ONNX Runtime QDQ :mod:`.onnxrt`,
   OpenVINO NNCF :mod:`.nncf_ov`) and gate, keeping the most sensitive layers float while the gate
   fails; OpenVINO's device default compute type is gated too (:mod:`.candidates`).
4. A quick in-process latency comparison FP32 vs INT8 per backend (:mod:`.latency`; ``latency_runs=0``
   skips it, e.g. when ``interformer-bench`` runs next).
5. The passing files are moved beside the FP32 ones and recorded in the manifest (:mod:`.install`;
   written last, atomically). Everything is built in a hidden temporary folder inside the export folder, so a
   failure or an interruption leaves the export as it was.
6. With ``browser``: the installed ONNX Runtime INT8 decoder is gated again as onnxruntime-web runs it in
   headless chromium, on the same references (:mod:`.browser_gate`), and that gate is recorded
   (``browser_only``: this step alone, on the INT8 decoder a previous run installed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from interformer_edge.core.manifest import BROWSER_GATE, INT8_VARIANT, ManifestError
from interformer_edge.core.progress import ProgressReporter
from interformer_edge.runtime.backends import FORMAT_OF
from interformer_edge.runtime.export import Export, RuntimeSettings, open_export

from .browser_gate import browser_gate, check_browser
from .candidates import quantize_backend
from .gate import ReferenceSession
from .inputs import open_heldout, prepare_inputs, reference_inputs
from .install import install_variant, record_gate
from .latency import compare_latency
from .options import QuantizeError, QuantizeOptions, validate
from .results import QuantizeResult, calibration_record

TEMP_PREFIX = ".interformer-quantize-"
COMMAND = "interformer-quantize"


def _open(export_dir: Path, backends: tuple[str, ...]) -> Export:
    """The export folder, checked to hold the decoders to quantize (else :class:`QuantizeError`)."""
    try:
        export = open_export(Path(export_dir).resolve())  # graph files are joined onto it: keep paths absolute
    except ManifestError as err:
        raise QuantizeError(str(err)) from None
    decoder_files = export.manifest.graphs["decoder"].files
    if "onnx" not in decoder_files:
        # The ONNX decoder names the layers, gives the FP32 reference and is what NNCF's IR came from.
        raise QuantizeError(f"{export.root} has no ONNX decoder; export with --format onnx,openvino")
    for backend in backends:
        if FORMAT_OF[backend] not in decoder_files:
            raise QuantizeError(f"{export.root} has no {FORMAT_OF[backend]} decoder to quantize for {backend}")
    return export


def run_quantize(options: QuantizeOptions, progress: ProgressReporter | None = None) -> QuantizeResult:
    """Quantize, gate and install (module docstring); ``progress`` reports the long steps (None: silent).

    Raises:
        QuantizeError: bad input or an unusable environment (nothing is written).
    """
    started = time.perf_counter()
    progress = progress or ProgressReporter(Console(quiet=True), terminal=False)
    validate(options)
    if options.browser:
        check_browser(options.chromium)
    if options.browser_only:
        return _browser_only(options, progress, started)
    export = _open(options.export_dir, options.backends)
    inputs = prepare_inputs(export, options, progress)
    calib_record = calibration_record(options, inputs)
    work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=export.root))
    try:
        outcomes = [
            quantize_backend(export, backend, options, inputs.samples, inputs.references, work, progress)
            for backend in options.backends
        ]
        if options.latency_runs > 0:
            for outcome in outcomes:
                outcome.latency_ms = compare_latency(
                    export,
                    outcome.backend,
                    work / outcome.file,
                    options.latency_size,
                    options.threads,
                    options.latency_runs,
                    options.seed,
                )
        export = install_variant(export, work, outcomes, calib_record, INT8_VARIANT)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    browser = None
    if options.browser and any(o.backend == "onnxruntime" and o.passed for o in outcomes):
        export, browser = _gate_in_browser(export, inputs.references, options, progress)
    seconds = time.perf_counter() - started
    return QuantizeResult(export.root, outcomes, calib_record, inputs.problems, export.manifest, seconds, browser)


def _gate_in_browser(
    export: Export, references: list[ReferenceSession], options: QuantizeOptions, progress: ProgressReporter
) -> tuple[Export, dict]:
    tick = progress.step("INT8 decoder in the browser (onnxruntime-web)", len(references))
    threads = options.threads or min(4, os.cpu_count() or 1)  # what the annotator's page takes by default
    record = browser_gate(
        export,
        references,
        options.gate_clicks,
        options.thresholds,
        threads,
        options.latency_size,
        options.latency_runs,
        options.chromium,
        tick,
    )
    return record_gate(export, INT8_VARIANT, BROWSER_GATE, record), record


def _browser_only(options: QuantizeOptions, progress: ProgressReporter, started: float) -> QuantizeResult:
    """Gate the INT8 decoder a previous run installed, in the browser only (step 6 alone)."""
    export = _open(options.export_dir, ())
    installed = export.manifest.quantized_variant("decoder", INT8_VARIANT)
    if installed is None or "onnx" not in installed.files:
        raise QuantizeError(f"{export.root} has no ONNX Runtime INT8 decoder yet: run {COMMAND} without --browser-only")
    fp32_settings = RuntimeSettings("onnxruntime", options.threads)
    heldout = open_heldout(options)
    references, problems = reference_inputs(
        heldout, export.encoder(fp32_settings), export.decoder(fp32_settings), options.gate_clicks, progress
    )
    export, record = _gate_in_browser(export, references, options, progress)
    seconds = time.perf_counter() - started
    return QuantizeResult(export.root, [], installed.calibration, problems, export.manifest, seconds, record)
