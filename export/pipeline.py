"""Export orchestration: checkpoint → ONNX (+ OpenVINO IR) → parity gate → manifest, atomically.

Everything is built inside a hidden temporary folder in the output folder and moved into place only
at the end (the manifest last), so a failed export leaves nothing behind and a reader never sees a
manifest that describes half-written files. A failed *parity gate* is not a failed export: the
files and the manifest (with ``parity.passed = false``) are written, and the caller decides.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import interformer_edge
from interformer_edge.core import sizes, versions
from interformer_edge.core.manifest import (
    GRAPH_ROLES,
    ArtifactFile,
    ClickSettings,
    GraphSpec,
    Manifest,
    ParityCheck,
    Preprocessing,
    SourceCheckpoint,
    ZoomSettings,
    artifact_names,
    describe_file,
    sha256_file,
    write_manifest,
)
from interformer_edge.core.peak_memory import peak_rss_bytes
from interformer_edge.core.spec import (
    CLICK_INNER_RADIUS,
    CLICK_OUTER_RADIUS,
    CONTEXT_ONNX,
    CONTEXT_OV,
    DECODER_ONNX,
    DECODER_OV,
    DEFAULT_OPSET,
    ENCODER_ONNX,
    ENCODER_OV,
    MANIFEST_FORMAT_VERSION,
    MANIFEST_NAME,
    MAX_IMAGE_SIDE,
    PIXEL_MEAN,
    PIXEL_STD,
    REF_BACKGROUND,
    REF_FOREGROUND,
    REF_POSSIBLY_BACKGROUND,
    REF_POSSIBLY_FOREGROUND,
    REF_UNKNOWN,
    SIZE_DIVISOR,
    ZOOM_EXPAND_RATIO,
    ZOOM_MIN_SIZE,
    ZOOM_START_CLICK,
)
from interformer_edge.models import CheckpointError, InterFormer, load_interformer, preset

from . import onnx_graphs as onnx_export
from . import openvino_ir as ov_export
from .parity import (
    GateSettings,
    Reference,
    Runner,
    SizeCase,
    check_context,
    check_decoder,
    check_encoder,
    graph_passes,
    make_cases,
    make_report,
    onnxruntime_runner,
    openvino_runner,
    torch_references,
)

FORMATS = ("onnx", "openvino")
ROLES = GRAPH_ROLES  # in pipeline order: each graph's outputs feed the next one's end-to-end check
MIN_OPSET = 17  # LayerNormalization
MAX_OPSET = 20  # highest the TorchScript exporter emits
TEMP_PREFIX = ".interformer-export-"
_FILES = {("encoder", "onnx"): ENCODER_ONNX, ("context", "onnx"): CONTEXT_ONNX, ("decoder", "onnx"): DECODER_ONNX,
          ("encoder", "openvino"): ENCODER_OV, ("context", "openvino"): CONTEXT_OV,
          ("decoder", "openvino"): DECODER_OV}  # fmt: skip


class ExportError(Exception):
    """Bad input or an environment problem; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``checkpoint=None`` means the bundled default; ``arch=None`` infers it from shapes."""

    checkpoint: Path | None = None
    arch: str | None = None
    out_dir: Path = Path("interformer_export")
    formats: tuple[str, ...] = FORMATS
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    static_size: tuple[int, int] | None = None
    unsafe_load: bool = False
    simplify: bool = True
    gate: GateSettings = field(default_factory=GateSettings)


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    manifest: Manifest
    seconds: float
    peak_rss_bytes: int
    step_seconds: dict[str, float]
    step_peak_rss: dict[str, int]
    warnings: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.manifest.parity.passed


Progress = Callable[[str], None]


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` → ``(H, W)``: positive multiples of 32 no larger than the maximum image side."""
    try:
        return sizes.parse_size(text)
    except ValueError as err:
        raise ExportError(str(err)) from None


def check_size(size: tuple[int, int]) -> None:
    try:
        sizes.check_size(size)
    except ValueError as err:
        raise ExportError(str(err)) from None


def validate(options: ExportOptions) -> None:
    """Reject bad options before any work or any file (raises :class:`ExportError`)."""
    if options.arch is not None:
        try:
            preset(options.arch)
        except ValueError as err:
            raise ExportError(str(err)) from None
    if not options.formats or any(f not in FORMATS for f in options.formats):
        raise ExportError(f"formats must be a non-empty subset of {', '.join(FORMATS)}, got {options.formats}")
    if not MIN_OPSET <= options.opset <= MAX_OPSET:
        raise ExportError(f"opset {options.opset} is not supported (use {MIN_OPSET}..{MAX_OPSET})")
    if options.static_size is not None:
        check_size(options.static_size)
    for size in options.gate.sizes:
        check_size(size)
    if options.static_size is not None and any(s != options.static_size for s in options.gate.sizes):
        raise ExportError("with a static size the parity gate can only run at that size")
    if not options.gate.sizes:
        raise ExportError("the parity gate needs at least one size")


def resolve_checkpoint(checkpoint: Path | None) -> Path:
    if checkpoint is not None:
        return Path(checkpoint)
    from interformer_edge.assets import default_checkpoint

    try:
        return default_checkpoint()
    except FileNotFoundError as err:
        raise ExportError(f"{err}; pass --checkpoint") from None


def load_model(checkpoint: Path, arch: str | None, unsafe_load: bool) -> InterFormer:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the --unsafe-load warning is the CLI's to print
            return load_interformer(checkpoint, cfg=preset(arch) if arch else None, allow_pickle=unsafe_load)
    except CheckpointError as err:
        raise ExportError(str(err)) from None


def tool_versions() -> dict[str, str]:
    return versions.tool_versions(("interformer_edge", "torch", "numpy", "onnx", "onnxruntime", "onnxslim", "openvino"))


class _Steps:
    """Times named steps, notes the process's peak RSS after each, and tells the progress callback
    when one starts."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self._current: tuple[str, float] | None = None

    def start(self, name: str) -> None:
        self.stop()
        self._current = (name, time.perf_counter())
        if self.progress is not None:
            self.progress(name)

    def stop(self) -> None:
        if self._current is not None:
            name, start = self._current
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.peak_rss[name] = peak_rss_bytes()  # monotonic: the step where it jumps set the peak
            self._current = None


def _common_metadata(model: InterFormer, options: ExportOptions, checkpoint_sha: str) -> dict[str, str]:
    return {
        "manifest_format_version": str(MANIFEST_FORMAT_VERSION),
        "version": interformer_edge.__version__,
        "architecture": json.dumps(model.cfg.to_dict()),
        "color_order": "RGB",
        "input_range": "[0, 255]",
        "pixel_mean": json.dumps(list(PIXEL_MEAN)),
        "pixel_std": json.dumps(list(PIXEL_STD)),
        "size_divisor": str(SIZE_DIVISOR),
        "max_image_side": str(MAX_IMAGE_SIDE),
        "uses_roi": json.dumps(model.cfg.has_refine),
        "static_size": "" if options.static_size is None else "{}x{}".format(*options.static_size),
        "source_checkpoint_sha256": checkpoint_sha,
    }


_SIGNATURES = {
    "encoder": onnx_export.encoder_signature,
    "context": onnx_export.context_signature,
    "decoder": onnx_export.decoder_signature,
}


def _signature(model: InterFormer, role: str, static_size: tuple[int, int] | None) -> tuple:
    return _SIGNATURES[role](model, static_size)


def _check_graph(
    backend: str,
    role: str,
    run: Runner,
    cases: Sequence[SizeCase],
    refs: Sequence[Reference],
    settings: GateSettings,
    fp16: bool,
    upstream: list | None,
) -> tuple[list[ParityCheck], list | None]:
    """Parity checks of one graph, and what the next graph's end-to-end check takes from it.

    ``upstream``: the previous graph's outputs on this backend (features, then features plus context).
    """
    if role == "encoder":
        return check_encoder(backend, run, cases, refs, settings, fp16=fp16)
    if role == "context":
        return check_context(backend, run, cases, refs, settings, fp16=fp16, own_features=upstream)
    return check_decoder(backend, run, cases, refs, settings, fp16=fp16, own_inputs=upstream), None


def _build_onnx(
    model: InterFormer, role: str, options: ExportOptions, metadata: dict[str, str], work: Path, notes: list[str]
) -> tuple[Path, Path | None]:
    """Trace ``role``, stamp it, and (optionally) simplify it. Returns (raw file, simplified file or None)."""
    inputs, outputs = _signature(model, role, options.static_size)
    raw_dir = work / "raw"
    raw_dir.mkdir(exist_ok=True)
    raw = raw_dir / _FILES[(role, "onnx")]
    onnx_export.trace_to_onnx(model, role, raw, options.opset, options.static_size)
    proto = onnx_export.load(raw)
    onnx_export.fuse_one_hot_layout(proto)
    onnx_export.set_io_shapes(proto, inputs + outputs)
    onnx_export.set_metadata(proto, {**metadata, "opset": str(options.opset), "simplified": "false"})
    onnx_export.save(proto, raw)
    if not options.simplify:
        return raw, None
    try:
        slim = onnx_export.simplify(proto, lift_bytes=4096 if role == "encoder" else None)
    except Exception as err:  # a simplifier crash must not fail the export
        notes.append(f"onnxslim failed on the {role} ({type(err).__name__}: {err}); kept the unsimplified graph")
        return raw, None
    del proto
    onnx_export.set_io_shapes(slim, inputs + outputs)
    onnx_export.set_metadata(slim, {**metadata, "opset": str(options.opset), "simplified": "true"})
    candidate = work / _FILES[(role, "onnx")]
    onnx_export.save(slim, candidate)
    return raw, candidate


def _install(work: Path, out_dir: Path, names: Sequence[str]) -> None:
    """Move the finished files from ``work`` into ``out_dir``; the manifest goes last."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # never leave an old manifest over new files
    for name in names:
        if name != MANIFEST_NAME:
            os.replace(work / name, out_dir / name)
    os.replace(work / MANIFEST_NAME, out_dir / MANIFEST_NAME)


def run_export(options: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Export, gate and install; see the module docstring. Raises :class:`ExportError` on bad input."""
    validate(options)
    started = time.perf_counter()
    checkpoint = resolve_checkpoint(options.checkpoint)
    if not checkpoint.is_file():
        raise ExportError(f"checkpoint not found: {checkpoint}")
    out_dir = Path(options.out_dir)
    created_out = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out_dir))
    except OSError as err:
        raise ExportError(f"cannot write to output folder {out_dir}: {err.strerror or err}") from None
    steps = _Steps(progress)
    try:
        result = _export_into(options, checkpoint, work, out_dir, steps, started)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created_out:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return result


def _export_into(
    options: ExportOptions, checkpoint: Path, work: Path, out_dir: Path, steps: _Steps, started: float
) -> ExportResult:
    notes: list[str] = []
    steps.start("loading checkpoint")
    model = load_model(checkpoint, options.arch, options.unsafe_load)
    checkpoint_sha = sha256_file(checkpoint)
    metadata = _common_metadata(model, options, checkpoint_sha)
    settings = options.gate
    signatures = {role: _signature(model, role, options.static_size) for role in ROLES}

    steps.start("PyTorch reference outputs")
    cases = make_cases(settings.sizes, model.cfg.has_refine)
    refs = torch_references(model, cases)

    built: dict[str, tuple[Path, Path | None]] = {}
    for role in ROLES:
        steps.start(f"tracing the {role} to ONNX")
        graph_meta = onnx_export.graph_metadata(role, metadata, *signatures[role])
        built[role] = _build_onnx(model, role, options, graph_meta, work, notes)
    # From here on only files and numpy references are needed: free the weights (1.2 GiB for Tiny)
    # before ONNX Runtime and OpenVINO load their own copies.
    del model
    gc.collect()

    checks: list[ParityCheck] = []
    chosen: dict[str, Path] = {}
    simplified: dict[str, bool] = {}
    upstream = None
    for role in ROLES:
        raw, slim = built[role]
        steps.start(f"checking the ONNX {role} on ONNX Runtime")
        candidates = [(slim, True), (raw, False)] if slim is not None else [(raw, False)]
        for index, (path, is_slim) in enumerate(candidates):
            run = onnxruntime_runner(path, settings.threads)
            role_checks, produced = _check_graph("onnxruntime", role, run, cases, refs, settings, False, upstream)
            del run
            last = index == len(candidates) - 1
            if graph_passes(role_checks, role) or last:
                if not is_slim and slim is not None:
                    notes.append(f"the simplified {role} failed parity; kept the unsimplified graph")
                break
        final = work / _FILES[(role, "onnx")]
        if path != final:
            shutil.copyfile(path, final)
        chosen[role] = final
        simplified[role] = is_slim
        checks += role_checks
        upstream = produced

    upstream = None
    if "openvino" in options.formats:
        for role in ROLES:
            steps.start(f"converting the {role} to OpenVINO IR")
            graph_meta = onnx_export.graph_metadata(role, metadata, *signatures[role])
            xml = work / _FILES[(role, "openvino")]
            ov_export.convert(chosen[role], xml, {**graph_meta, "opset": str(options.opset)}, options.fp16)
            steps.start(f"checking the OpenVINO {role}")
            run = openvino_runner(xml, settings.threads)
            role_checks, upstream = _check_graph("openvino", role, run, cases, refs, settings, options.fp16, upstream)
            del run
            checks += role_checks
    del refs, cases, upstream

    steps.start("writing the manifest")
    report = make_report(checks, settings)
    graphs: dict[str, GraphSpec] = {}
    shipped: list[str] = []
    for role in ROLES:
        inputs, outputs = signatures[role]
        files = {}
        for fmt in options.formats:
            name = _FILES[(role, fmt)]
            files[fmt] = name
            shipped += artifact_names(name, fmt)
        graphs[role] = GraphSpec(inputs=inputs, outputs=outputs, files=files)
    shipped = [n for n in shipped if (work / n).is_file()]
    artifacts: tuple[ArtifactFile, ...] = tuple(describe_file(work / n, work) for n in shipped)
    steps.stop()
    manifest = Manifest(
        format_version=MANIFEST_FORMAT_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        architecture=json.loads(metadata["architecture"]),
        preprocessing=Preprocessing(
            color_order="RGB",
            input_range=(0.0, 255.0),
            mean=PIXEL_MEAN,
            std=PIXEL_STD,
            size_divisor=SIZE_DIVISOR,
            max_image_side=MAX_IMAGE_SIDE,
            pad_value=0.0,
        ),
        clicks=ClickSettings(
            inner_radius=CLICK_INNER_RADIUS,
            outer_radius=CLICK_OUTER_RADIUS,
            ref_label_codes={
                "background": REF_BACKGROUND,
                "possibly_background": REF_POSSIBLY_BACKGROUND,
                "unknown": REF_UNKNOWN,
                "possibly_foreground": REF_POSSIBLY_FOREGROUND,
                "foreground": REF_FOREGROUND,
            },
        ),
        zoom_in=ZoomSettings(
            uses_roi=json.loads(metadata["uses_roi"]),
            expand_ratio=ZOOM_EXPAND_RATIO,
            min_size=ZOOM_MIN_SIZE,
            stride=SIZE_DIVISOR,
            start_click=ZOOM_START_CLICK,
        ),
        graphs=graphs,
        static_size=options.static_size,
        opset=options.opset,
        openvino_weights=("fp16" if options.fp16 else "fp32") if "openvino" in options.formats else None,
        onnx_simplified=simplified,
        tools=tool_versions(),
        source_checkpoint=SourceCheckpoint(
            path=str(checkpoint.resolve()), size=checkpoint.stat().st_size, sha256=checkpoint_sha
        ),
        files=artifacts,
        export_seconds=round(time.perf_counter() - started, 3),
        parity=report,
    )
    write_manifest(manifest, work)
    _install(work, out_dir, [*shipped, MANIFEST_NAME])
    return ExportResult(
        out_dir=out_dir,
        manifest=manifest,
        seconds=manifest.export_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        step_seconds=dict(steps.seconds),
        step_peak_rss=dict(steps.peak_rss),
        warnings=tuple(notes),
    )
