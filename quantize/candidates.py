"""Step 3 of a quantization, for one backend: quantize, gate, and keep layers float until the gate passes.

The first candidate keeps the default (or given) float layers. If its gate fails, the layers are ranked
by measured sensitivity (:mod:`.sensitivity`, once, on ONNX Runtime) and the most sensitive 1, 2, 4, …
are kept float as well until the gate passes or ``max_float_layers`` is reached.

Where OpenVINO's device default compute type is not f32 (bf16 on AVX512-BF16 / AMX x86, f16 on some
ARM), the passing OpenVINO decoder is gated a second time as it runs with ``compute="device"`` (its
float layers, and the context graph, in that type): recorded beside the f32 verdict, not installed or
withheld by it, since the file is the same and f32 is the runtime's default.
"""

from __future__ import annotations

import time
from pathlib import Path

import onnx

from interformer_edge.core.manifest import INT8_VARIANT, artifact_names
from interformer_edge.core.progress import ProgressReporter
from interformer_edge.runtime.backends import FORMAT_OF, openvino_device_precision
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.export import DEFAULT_COMPUTE, DEVICE_COMPUTE, Export

from . import calibration, gate, nncf_ov, onnxrt, sensitivity
from .options import QuantizeOptions
from .results import INT8_FILES, BackendOutcome, DeviceDefaultGate, attempt_record
from .targets import get_target


def _decoder_file(export: Export, fmt: str) -> Path:
    """The export's FP32 decoder file of format ``fmt`` (``onnx``: the ``.onnx``; ``openvino``: the ``.xml``)."""
    return export.root / export.manifest.graphs["decoder"].files[fmt]


def _metadata(export: Export, options: QuantizeOptions) -> dict[str, str]:
    """What an INT8 file says about itself (ONNX ``metadata_props``, the IR's ``rt_info``); the keys are
    those of the files already written (``precision`` names the variant, as in the manifest)."""
    manifest = export.manifest
    fp32_name = manifest.graphs["decoder"].files["onnx"]
    return {
        "precision": INT8_VARIANT,
        "calibration_method": options.method,
        "int8_target": options.target,
        "source_checkpoint_sha256": manifest.source_checkpoint.sha256,
        "fp32_decoder_sha256": next((f.sha256 for f in manifest.files if f.name == fp32_name), ""),
    }


def quantize_backend(
    export: Export,
    backend: str,
    options: QuantizeOptions,
    samples: list[calibration.DecoderSample],
    references: list[gate.ReferenceSession],
    work: Path,
    progress: ProgressReporter,
) -> BackendOutcome:
    """Build and gate ``backend``'s INT8 decoder in ``work`` (module docstring); nothing is installed here."""
    started = time.perf_counter()
    fmt = FORMAT_OF[backend]
    fp32_onnx = _decoder_file(export, "onnx")
    layers = onnxrt.quantizable_layers(onnx.load(str(fp32_onnx), load_external_data=False))
    keep_float_patterns = options.keep_float_patterns(backend)
    base_float = onnxrt.matching_layers(layers, keep_float_patterns)
    out = work / INT8_FILES[backend]
    feeds = [s.feed() for s in samples]
    cache = work / f"ranges-{options.method}.json"
    metadata = _metadata(export, options)
    scheme = get_target(options.target).scheme

    def ort_quantize(path: Path, keep_float: list[str]) -> None:
        onnxrt.quantize_onnx(
            fp32_onnx,
            path,
            feeds,
            options.method,
            keep_float,
            cache,
            metadata,
            scheme.ort_reduce_range,
            scheme.ort_activations,
        )

    def quantize(path: Path, keep_float: list[str]) -> None:
        if backend == "onnxruntime":
            ort_quantize(path, keep_float)
        else:
            nncf_ov.quantize_openvino(
                _decoder_file(export, fmt),
                path,
                feeds,
                options.method,
                keep_float,
                metadata,
                scheme.nncf_overflow_fix,
                float_regions=keep_float_patterns,
            )

    def gate_candidate(what: str, compute: str = DEFAULT_COMPUTE) -> gate.GateResult:
        candidate = Decoder(export, backend, options.threads, compute, graph_file=out)
        suffix = "" if compute == DEFAULT_COMPUTE else f" ({what})"
        tick = progress.step(f"{backend}: accuracy gate{suffix}", len(references))
        result = gate.evaluate(candidate, references, options.gate_clicks, options.thresholds, tick)
        progress.note(
            f"{backend} INT8 ({what}): mean IoU vs FP32 "
            f"{result.mean_iou_vs_fp32:.4f}, NoC@90 {result.noc90:.2f} vs {result.noc90_fp32:.2f} → "
            f"{'pass' if result.passed else 'fail'}"
        )
        return result

    def attempt(keep_float: list[str]) -> gate.GateResult:
        progress.step(f"{backend}: quantizing ({len(keep_float)} layers float)")
        quantize(out, keep_float)
        return gate_candidate(f"{len(keep_float)} layers float")

    keep = list(base_float)
    result = attempt(keep)
    attempts = [attempt_record(keep, result)]
    extra = 1
    ranking: list[sensitivity.LayerSensitivity] | None = None
    while not result.passed and extra <= options.max_float_layers:
        if ranking is None:
            candidates = [name for name in layers if name not in base_float]
            tick = progress.step("ranking layers by measured sensitivity (ONNX Runtime)", len(candidates))
            probe_feeds = [
                s.feed() for s in calibration.subsample(samples, options.sensitivity_samples, options.seed + 1)
            ]
            ranking = sensitivity.rank_layers(
                fp32_onnx, candidates, base_float, ort_quantize, probe_feeds, work, options.threads, tick
            )
        keep = base_float + [s.layer for s in ranking[:extra]]
        result = attempt(keep)
        attempts.append(attempt_record(keep, result))
        if extra >= len(ranking):
            break
        extra *= 2
    device_default = None
    if backend == "openvino" and result.passed:
        computes_in = openvino_device_precision()
        if computes_in != DEFAULT_COMPUTE:
            what = f"float layers {computes_in}, the device default"
            device_default = DeviceDefaultGate(computes_in, gate_candidate(what, compute=DEVICE_COMPUTE))
    files = [work / n for n in artifact_names(INT8_FILES[backend], fmt) if (work / n).is_file()]
    fp32_name = export.manifest.graphs["decoder"].files[fmt]
    fp32_files = [export.root / n for n in artifact_names(fp32_name, fmt) if (export.root / n).is_file()]
    return BackendOutcome(
        backend=backend,
        file=INT8_FILES[backend],
        passed=result.passed,
        result=result,
        float_layers=keep,
        attempts=attempts,
        size_bytes=sum(f.stat().st_size for f in files),
        fp32_size_bytes=sum(f.stat().st_size for f in fp32_files),
        quantize_seconds=time.perf_counter() - started,
        device_default=device_default,
    )
