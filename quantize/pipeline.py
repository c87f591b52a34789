# Over 400 lines on purpose: the quantizer's options, results and step order in one place (steps: sibling modules).
"""INT8 click decoder for an export folder: calibrate → quantize per backend → gate → install.

1. Calibration inputs from simulated click sessions on the calibration images (:mod:`.calibration`).
2. FP32 reference sessions on the held-out objects (:mod:`.gate`), shared by every candidate.
3. Per backend: quantize with the target's scheme (:mod:`.targets`; ONNX Runtime QDQ :mod:`.onnxrt`,
   OpenVINO NNCF :mod:`.nncf_ov`) and gate.
   If the gate fails, layers are ranked by measured sensitivity (:mod:`.sensitivity`, once) and the
   most sensitive 1, 2, 4, … are kept float until it passes or ``max_float_layers`` is reached.
   Where OpenVINO's device default is not f32 (bf16 on AVX512-BF16 / AMX x86, f16 on some ARM), the
   passing OpenVINO decoder is gated a second time as it runs with ``precision="device"`` (its float
   layers, and the context graph, in that precision): recorded beside the f32 verdict, not installed
   or withheld by it, since the file is the same and f32 is the runtime's default.
4. A quick in-process latency comparison FP32 vs INT8 per backend (:mod:`.latency`; ``latency_runs=0``
   skips it, e.g. when ``interformer-bench`` runs next).
5. The passing files are moved beside the FP32 ones and recorded in the manifest (:mod:`.install`;
   written last, atomically). Everything is built in a hidden temporary folder inside the export folder, so a
   failure or an interruption leaves the export as it was.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interformer_edge.core.cpu import host_cpu
from interformer_edge.core.dataset import open_dataset
from interformer_edge.core.manifest import (
    Manifest,
    ManifestError,
    artifact_names,
    load_manifest,
)
from interformer_edge.core.spec import (
    DECODER_INT8_ONNX,
    DECODER_INT8_OV,
    EVAL_MAX_CLICKS,
)
from interformer_edge.core.versions import tool_versions
from interformer_edge.runtime.backends import BACKENDS, FORMAT_OF, installed_backends, openvino_device_precision
from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.encoder import Encoder

from . import calibration, gate, nncf_ov, onnxrt, sensitivity
from .install import install_variant
from .latency import compare_latency
from .targets import DEFAULT_TARGET, TARGETS, get_target

PRECISION = "int8"
METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
INT8_FILES = {"onnxruntime": DECODER_INT8_ONNX, "openvino": DECODER_INT8_OV}
TEMP_PREFIX = ".interformer-quantize-"
# Kept float by default, per backend, by measurement on the bundled model (see docs/int8.md).
# PatchMerging normalizes each patch after its (3x3, stride-2) convolution, with statistics from poolings
# of the map and its square: the convolution reads the un-normalized map, and on OpenVINO, where a
# pattern keeps the whole region float, NNCF would otherwise also quantize the poolings, squares and
# divisions. Quick gate, 20 objects, OpenVINO mean IoU vs FP32: region quantized 0.976, only its
# convolution float 0.986, all float 0.994 (ONNX Runtime, convolution quantized or float: 0.992 / 0.994).
PATCH_MERGING_LAYERS = r"^/neck/stages\.\d+/downsample/"
# Stage 0's inverted bottleneck works on 8x-expanded stride-4 maps around Hardswish. ONNX Runtime has no
# integer kernel for Hardswish, so there INT8 adds quantize/dequantize passes over the largest tensors
# and the decoder got slower (p50 60.2 → 68.2 ms); OpenVINO fuses them into its integer convolutions and
# got faster (43.9 → 36.9 ms; 60.1 → 56.3 ms with oneDNN capped at AVX2). Same process, 40 alternating
# rounds, 512x512, 2 threads, AMD EPYC Zen 4 (avx2 avx512_vnni), load 1.0 (docs/int8.md).
STAGE0_BOTTLENECK_LAYERS = r"^/neck/stages\.0/blocks\.\d+/mlp/"
DEFAULT_KEEP_FLOAT: dict[str, tuple[str, ...]] = {
    "onnxruntime": (STAGE0_BOTTLENECK_LAYERS, PATCH_MERGING_LAYERS),
    "openvino": (PATCH_MERGING_LAYERS,),
}


class QuantizeError(Exception):
    """Bad input or an unusable environment; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class QuantizeOptions:
    """What to quantize and how; ``None`` folders mean the bundled calibration and held-out sets."""

    export_dir: Path
    backends: tuple[str, ...] = BACKENDS
    target: str = DEFAULT_TARGET
    calib_dir: Path | None = None
    heldout_dir: Path | None = None
    num_sessions: int = 48
    calib_clicks: int = EVAL_MAX_CLICKS
    max_samples: int = 240
    method: str = "minmax"
    thresholds: gate.GateThresholds = field(default_factory=gate.GateThresholds)
    gate_clicks: int = EVAL_MAX_CLICKS
    gate_limit: int | None = None
    keep_float: tuple[str, ...] | None = None  # None: DEFAULT_KEEP_FLOAT of each backend
    max_float_layers: int = 16
    sensitivity_samples: int = 12
    threads: int | None = None
    latency_size: tuple[int, int] = (512, 512)
    latency_runs: int = 20
    seed: int = 0

    def keep_float_patterns(self, backend: str) -> tuple[str, ...]:
        """The ``keep_float`` patterns that apply on ``backend`` (its default unless set)."""
        return DEFAULT_KEEP_FLOAT[backend] if self.keep_float is None else self.keep_float


@dataclass
class BackendOutcome:
    """What happened on one backend: the gate of the last attempt and every attempt's summary."""

    backend: str
    file: str
    passed: bool
    result: gate.GateResult
    float_layers: list[str]
    attempts: list[dict[str, Any]]
    size_bytes: int = 0
    fp32_size_bytes: int = 0
    latency_ms: dict[str, Any] = field(default_factory=dict)
    quantize_seconds: float = 0.0
    # The gate of the same file run with OpenVINO's device default precision, where that is not f32.
    device_default: DeviceDefaultGate | None = None

    def record(self) -> dict[str, Any]:
        """The manifest's ``gates[backend]`` entry."""
        device = {} if self.device_default is None else {"device_default": self.device_default.record()}
        return {
            **self.result.to_dict(),
            "float_layers": self.float_layers,
            "attempts": self.attempts,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "fp32_size_bytes": self.fp32_size_bytes,
            "latency_ms": self.latency_ms,
            "quantize_seconds": round(self.quantize_seconds, 1),
            **device,
        }


@dataclass
class DeviceDefaultGate:
    """The accuracy gate of an INT8 decoder run with the device's default float precision (``computes_in``)."""

    computes_in: str
    result: gate.GateResult

    def record(self) -> dict[str, Any]:
        return {"computes_in": self.computes_in, **self.result.to_dict()}


@dataclass
class QuantizeResult:
    export_dir: Path
    outcomes: list[BackendOutcome]
    calibration: dict[str, Any]
    problems: list[str]
    manifest: Manifest
    seconds: float

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)


class Progress:
    """Progress reporting hooks; the CLI draws bars, the default does nothing."""

    def step(self, name: str, total: int | None = None) -> Callable[[int], None]:
        """A new step; returns a callback taking the number of units done so far."""
        return lambda done: None

    def note(self, message: str) -> None:
        """A line worth showing (e.g. a gate verdict)."""


def validate(options: QuantizeOptions) -> None:
    """Reject bad options before any work (raises :class:`QuantizeError`)."""
    if not options.backends or any(b not in BACKENDS for b in options.backends):
        raise QuantizeError(f"backends must be a non-empty subset of {', '.join(BACKENDS)}, got {options.backends}")
    missing = [b for b in {"onnxruntime", *options.backends} if b not in installed_backends()]
    if missing:
        # ONNX Runtime is always needed: it runs the FP32 reference and the sensitivity search.
        raise QuantizeError(f"backend not installed: {', '.join(sorted(missing))}")
    if options.target not in TARGETS:
        raise QuantizeError(f"unknown INT8 target {options.target!r}; use {', '.join(TARGETS)}")
    if options.method not in METHODS:
        raise QuantizeError(f"unknown calibration method {options.method!r}; use {', '.join(METHODS)}")
    checks = [
        (options.num_sessions >= 1, "--num-sessions must be at least 1"),
        (1 <= options.calib_clicks <= 100, "--calib-clicks must be 1..100"),
        (options.max_samples >= 1, "--max-samples must be at least 1"),
        (1 <= options.gate_clicks <= 100, "--gate-clicks must be 1..100"),
        (options.gate_limit is None or options.gate_limit >= 1, "--gate-limit must be at least 1"),
        (0.0 < options.thresholds.min_iou <= 1.0, "--min-iou must be in (0, 1]"),
        (options.thresholds.max_noc90_delta >= 0.0, "--max-noc-delta must be >= 0"),
        (options.max_float_layers >= 0, "--max-float-layers must be >= 0"),
        (options.threads is None or options.threads >= 1, "--threads must be at least 1"),
        (options.latency_runs >= 0, "--latency-runs must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise QuantizeError(message)


def _load(export_dir: Path, backends: tuple[str, ...]) -> Manifest:
    try:
        manifest = load_manifest(export_dir)
    except ManifestError as err:
        raise QuantizeError(str(err)) from None
    if "onnx" not in manifest.graphs["decoder"].files:
        # The ONNX decoder names the layers, gives the FP32 reference and is what NNCF's IR came from.
        raise QuantizeError(f"{export_dir} has no ONNX decoder; export with --format onnx,openvino")
    for backend in backends:
        if FORMAT_OF[backend] not in manifest.graphs["decoder"].files:
            raise QuantizeError(f"{export_dir} has no {FORMAT_OF[backend]} decoder to quantize for {backend}")
    return manifest


def _default_dir(name: str) -> Path:
    from interformer_edge import assets

    return getattr(assets, name)


def run_quantize(options: QuantizeOptions, progress: Progress | None = None) -> QuantizeResult:
    """Quantize, gate and install (module docstring). Raises :class:`QuantizeError` on bad input."""
    started = time.perf_counter()
    progress = progress or Progress()
    validate(options)
    export_dir = Path(options.export_dir).resolve()  # graph files are joined onto it: keep paths absolute
    manifest = _load(export_dir, options.backends)
    calib_dir = Path(options.calib_dir) if options.calib_dir is not None else _default_dir("CALIB_DIR")
    heldout_dir = Path(options.heldout_dir) if options.heldout_dir is not None else _default_dir("HELDOUT_DIR")
    if calib_dir.resolve() == heldout_dir.resolve():
        raise QuantizeError("the calibration and held-out folders must differ: the gate never uses calibration images")
    problems: list[str] = []
    try:
        calib_images = calibration.read_calibration_images(calib_dir, problems)
    except calibration.CalibrationError as err:
        raise QuantizeError(str(err)) from None
    try:
        heldout = open_dataset(heldout_dir, limit=options.gate_limit)
    except FileNotFoundError as err:
        raise QuantizeError(f"held-out set: {err}") from None

    encoder = Encoder(export_dir, "onnxruntime", options.threads, manifest=manifest)
    fp32 = Decoder(export_dir, "onnxruntime", options.threads, manifest=manifest)

    tick = progress.step("simulating calibration click sessions", options.num_sessions)
    try:
        samples = calibration.simulate_sessions(
            encoder, fp32, calib_images, options.num_sessions, options.calib_clicks, options.seed, tick
        )
    except calibration.CalibrationError as err:
        raise QuantizeError(str(err)) from None
    samples = calibration.subsample(samples, options.max_samples, options.seed)

    tick = progress.step("encoding the held-out images", len(heldout))
    objects = []
    for index, sample in enumerate(heldout):
        objects.append(gate.GateObject(sample.name, encoder.encode(sample.image, name=sample.name), sample.mask))
        tick(index + 1)
    problems += [f"held-out {p}" for p in heldout.problems]
    if not objects:
        raise QuantizeError(f"no usable held-out objects in {heldout_dir}")
    tick = progress.step("FP32 reference sessions", len(objects))
    references = gate.reference_sessions(fp32, objects, options.gate_clicks, tick)
    del encoder

    target = get_target(options.target)
    calib_record = {
        "target": target.name,
        "scheme": target.scheme.to_dict(),
        "build_host": host_cpu().to_dict(),
        "method": options.method,
        "num_sessions": options.num_sessions,
        "session_clicks": f"1..{options.calib_clicks}",
        "samples": len(samples),
        "images": len({s.image_name for s in samples}),
        "source": str(calib_dir.resolve()) if options.calib_dir is not None else "bundled assets/calib",
        "heldout": str(heldout_dir.resolve()) if options.heldout_dir is not None else "bundled assets/heldout",
        "gate_objects": len(objects),
        "gate_clicks": options.gate_clicks,
        "keep_float_patterns": {b: list(options.keep_float_patterns(b)) for b in options.backends},
        "seed": options.seed,
        "tools": _tool_versions(),
    }
    work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=export_dir))
    try:
        outcomes = [
            _quantize_backend(backend, manifest, options, samples, references, fp32, work, progress)
            for backend in options.backends
        ]
        if options.latency_runs > 0:
            for outcome in outcomes:
                outcome.latency_ms = compare_latency(
                    manifest,
                    outcome.backend,
                    work / outcome.file,
                    options.latency_size,
                    options.threads,
                    options.latency_runs,
                    options.seed,
                )
        manifest = install_variant(export_dir, work, manifest, outcomes, calib_record, PRECISION)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return QuantizeResult(export_dir, outcomes, calib_record, problems, manifest, time.perf_counter() - started)


def _metadata(manifest: Manifest, options: QuantizeOptions) -> dict[str, str]:
    return {
        "precision": PRECISION,
        "calibration_method": options.method,
        "int8_target": options.target,
        "source_checkpoint_sha256": manifest.source_checkpoint.sha256,
        "fp32_decoder_sha256": _sha_of(manifest, manifest.graphs["decoder"].files["onnx"]),
    }


def _sha_of(manifest: Manifest, name: str) -> str:
    return next((f.sha256 for f in manifest.files if f.name == name), "")


def _quantize_backend(
    backend: str,
    manifest: Manifest,
    options: QuantizeOptions,
    samples: list[calibration.DecoderSample],
    references: list[gate.ReferenceSession],
    fp32: Decoder,
    work: Path,
    progress: Progress,
) -> BackendOutcome:
    started = time.perf_counter()
    fmt = FORMAT_OF[backend]
    fp32_onnx = manifest.graph_path("decoder", "onnx")
    import onnx

    layers = onnxrt.quantizable_layers(onnx.load(str(fp32_onnx), load_external_data=False))
    keep_float_patterns = options.keep_float_patterns(backend)
    base_float = onnxrt.matching_layers(layers, keep_float_patterns)
    out = work / INT8_FILES[backend]
    feeds = [s.feed() for s in samples]
    cache = work / f"ranges-{options.method}.json"
    metadata = _metadata(manifest, options)
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
                manifest.graph_path("decoder", fmt),
                path,
                feeds,
                options.method,
                keep_float,
                metadata,
                scheme.nncf_overflow_fix,
                float_regions=keep_float_patterns,
            )

    def gate_file(what: str, precision: str = "f32") -> gate.GateResult:
        candidate = Decoder(
            manifest.root or options.export_dir, backend, options.threads, precision, graph_file=out, manifest=manifest
        )
        tick = progress.step(f"{backend}: accuracy gate{'' if precision == 'f32' else f' ({what})'}", len(references))
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
        return gate_file(f"{len(keep_float)} layers float")

    keep = list(base_float)
    result = attempt(keep)
    attempts = [_attempt_record(keep, result)]
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
        attempts.append(_attempt_record(keep, result))
        if extra >= len(ranking):
            break
        extra *= 2
    device_default = None
    if backend == "openvino" and result.passed:
        computes_in = openvino_device_precision()
        if computes_in != "f32":
            what = f"float layers {computes_in}, the device default"
            device_default = DeviceDefaultGate(computes_in, gate_file(what, precision="device"))
    files = [work / n for n in artifact_names(INT8_FILES[backend], fmt) if (work / n).is_file()]
    fp32_files = [
        manifest.root / n
        for n in artifact_names(manifest.graphs["decoder"].files[fmt], fmt)
        if manifest.root is not None and (manifest.root / n).is_file()
    ]
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


def _attempt_record(keep_float: list[str], result: gate.GateResult) -> dict[str, Any]:
    return {
        "float_layers": len(keep_float),
        "mean_iou_vs_fp32": round(result.mean_iou_vs_fp32, 5),
        "noc90_delta": round(result.noc90_delta, 3),
        "passed": result.passed,
    }


def _tool_versions() -> dict[str, str]:
    return tool_versions(("interformer_edge", "onnxruntime", "openvino", "nncf", "onnx"))
