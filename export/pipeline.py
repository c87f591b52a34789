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

from interformer_edge.core import sizes, versions
from interformer_edge.core.manifest import (
    GraphSpec,
    Manifest,
    ParityCheck,
    SourceCheckpoint,
    TensorSpec,
    artifact_names,
    describe_file,
    sha256_file,
    write_manifest,
)
from interformer_edge.core.peak_memory import peak_rss_bytes
from interformer_edge.core.spec import (
    DEFAULT_OPSET,
    GRAPH_FILES,
    GRAPH_FORMATS,
    GRAPH_ROLES,
    MANIFEST_FORMAT_VERSION,
    MANIFEST_NAME,
)
from interformer_edge.models import CheckpointError, InterFormer, load_interformer, preset

from . import conventions
from . import onnx_graphs as onnx_export
from . import openvino_ir as ov_export
from .parity import Gate, GateSettings, graph_passes, make_report, onnxruntime_runner, openvino_runner

MIN_OPSET = 17  # LayerNormalization
MAX_OPSET = 20  # highest the TorchScript exporter emits
TEMP_PREFIX = ".interformer-export-"
TOOLS = ("interformer_edge", "torch", "numpy", "onnx", "onnxruntime", "onnxslim", "openvino")  # versions recorded


class ExportError(Exception):
    """Bad input or an environment problem; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``checkpoint=None`` means the bundled default; ``arch=None`` infers it from shapes."""

    checkpoint: Path | None = None
    arch: str | None = None
    out_dir: Path = Path("interformer_export")
    formats: tuple[str, ...] = GRAPH_FORMATS
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


StepStarted = Callable[[str], None]  # told each step's name as it starts (the CLI shows it as progress)


def validate(options: ExportOptions) -> None:
    """Reject bad options before any work or any file (raises :class:`ExportError`)."""
    if options.arch is not None:
        try:
            preset(options.arch)
        except ValueError as err:
            raise ExportError(str(err)) from None
    if not options.formats or any(f not in GRAPH_FORMATS for f in options.formats):
        raise ExportError(f"formats must be a non-empty subset of {', '.join(GRAPH_FORMATS)}, got {options.formats}")
    if not MIN_OPSET <= options.opset <= MAX_OPSET:
        raise ExportError(f"opset {options.opset} is not supported (use {MIN_OPSET}..{MAX_OPSET})")
    try:
        for size in ([] if options.static_size is None else [options.static_size]) + list(options.gate.sizes):
            sizes.check_size(size)
    except ValueError as err:
        raise ExportError(str(err)) from None
    if options.static_size is not None and any(s != options.static_size for s in options.gate.sizes):
        raise ExportError("with a static size the parity gate can only run at that size")
    if not options.gate.sizes:
        raise ExportError("the parity gate needs at least one size")
    if "openvino" in options.formats and "," in str(Path(options.out_dir).resolve()):
        # openvino.convert_model splits its path argument at commas (a list of model files).
        raise ExportError(
            f"the OpenVINO converter cannot read files under {Path(options.out_dir).resolve()} (a comma in the path): "
            "choose another --out, or --formats onnx"
        )


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


class _Steps:
    """Times named steps, notes the process's peak RSS after each, and tells the progress callback
    when one starts."""

    def __init__(self, progress: StepStarted | None) -> None:
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


@dataclass
class _Job:
    """What the steps of one export share: the options, the temporary folder, the step timer and the
    warnings for the user."""

    options: ExportOptions
    work: Path
    steps: _Steps
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Graphs:
    """What the steps after tracing need to know of the model (which is freed before the gate)."""

    metadata: dict[str, str]  # stamped into every graph
    signatures: dict[str, tuple[tuple[TensorSpec, ...], ...]]  # role -> (inputs, outputs)
    opset: int

    @classmethod
    def of(cls, model: InterFormer, options: ExportOptions, checkpoint_sha: str) -> _Graphs:
        signatures = {role: onnx_export.signature(model, role, options.static_size) for role in GRAPH_ROLES}
        return cls(conventions.common_metadata(model, options.static_size, checkpoint_sha), signatures, options.opset)

    def spec(self, role: str, formats: Sequence[str]) -> GraphSpec:
        """What the manifest says of graph ``role``: its signature and its file per format."""
        return GraphSpec(*self.signatures[role], files={fmt: GRAPH_FILES[(role, fmt)] for fmt in formats})

    def stamp(self, role: str) -> dict[str, str]:
        """The metadata of graph ``role``: the common one plus its role, signature and opset."""
        return {**onnx_export.graph_metadata(role, self.metadata, *self.signatures[role]), "opset": str(self.opset)}


def run_export(options: ExportOptions, progress: StepStarted | None = None) -> ExportResult:
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
        result = _export_into(_Job(options, work, steps), checkpoint, out_dir, started)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created_out:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return result


def _export_into(job: _Job, checkpoint: Path, out_dir: Path, started: float) -> ExportResult:
    model, source = _load(job, checkpoint)
    graphs = _Graphs.of(model, job.options, source.sha256)
    gate = _torch_references(job, model)
    traced = {role: _trace_to_onnx(job, model, role, graphs) for role in GRAPH_ROLES}
    # From here on only files and numpy references are needed: free the weights (1.2 GiB for Tiny)
    # before ONNX Runtime and OpenVINO load their own copies.
    del model
    gc.collect()
    onnx_files, simplified, checks = _gate_onnx(job, gate, traced)
    if "openvino" in job.options.formats:
        checks += _convert_and_gate_openvino(job, gate, graphs, onnx_files)
    del gate  # the references
    manifest, shipped = _write_manifest(job, graphs, source, simplified, checks, started)
    _install(job.work, out_dir, [*shipped, MANIFEST_NAME])
    return _result(job, out_dir, manifest)


def _load(job: _Job, checkpoint: Path) -> tuple[InterFormer, SourceCheckpoint]:
    job.steps.start("loading checkpoint")
    model = load_model(checkpoint, job.options.arch, job.options.unsafe_load)
    size, sha = checkpoint.stat().st_size, sha256_file(checkpoint)
    return model, SourceCheckpoint(path=str(checkpoint.resolve()), size=size, sha256=sha)


def _torch_references(job: _Job, model: InterFormer) -> Gate:
    """The gate's cases and PyTorch's outputs on them."""
    job.steps.start("PyTorch reference outputs")
    return Gate.of(model, job.options.gate)


def _trace_to_onnx(job: _Job, model: InterFormer, role: str, graphs: _Graphs) -> tuple[Path, Path | None]:
    """Trace ``role``, stamp it, and (optionally) simplify it. Returns (raw file, simplified file or None)."""
    job.steps.start(f"tracing the {role} to ONNX")
    inputs, outputs = graphs.signatures[role]
    stamp = graphs.stamp(role)
    raw = job.work / "raw" / GRAPH_FILES[(role, "onnx")]
    raw.parent.mkdir(exist_ok=True)
    onnx_export.trace_to_onnx(model, role, raw, job.options.opset, job.options.static_size)
    proto = onnx_export.load(raw)
    onnx_export.stamp_and_save(proto, inputs + outputs, {**stamp, "simplified": "false"}, raw)
    if not job.options.simplify:
        return raw, None
    try:
        slim = onnx_export.simplify(proto, lift_bytes=4096 if role == "encoder" else None)
    except Exception as err:  # a simplifier crash must not fail the export
        job.notes.append(f"onnxslim failed on the {role} ({type(err).__name__}: {err}); kept the unsimplified graph")
        return raw, None
    del proto
    candidate = job.work / GRAPH_FILES[(role, "onnx")]
    onnx_export.stamp_and_save(slim, inputs + outputs, {**stamp, "simplified": "true"}, candidate)
    return raw, candidate


def _gate_onnx(
    job: _Job, gate: Gate, traced: dict[str, tuple[Path, Path | None]]
) -> tuple[dict[str, Path], dict[str, bool], list[ParityCheck]]:
    """Gate the graphs on ONNX Runtime and put the kept files in place.

    Returns each role's file, whether it is the simplified graph, and the parity checks."""
    files: dict[str, Path] = {}
    simplified: dict[str, bool] = {}
    checks: list[ParityCheck] = []
    upstream = None
    for role in GRAPH_ROLES:
        job.steps.start(f"checking the ONNX {role} on ONNX Runtime")
        path, simplified[role], role_checks, upstream = _pick_onnx(job, gate, role, *traced[role], upstream)
        files[role] = job.work / GRAPH_FILES[(role, "onnx")]
        if path != files[role]:
            shutil.copyfile(path, files[role])
        checks += role_checks
    return files, simplified, checks


def _pick_onnx(
    job: _Job, gate: Gate, role: str, raw: Path, slim: Path | None, upstream: list | None
) -> tuple[Path, bool, list[ParityCheck], list | None]:
    """Gate the simplified graph and, if it fails, the unsimplified one; the last one gated is kept.

    Returns its file, whether it is the simplified one, its checks and its outputs for the next graph."""
    for path in [p for p in (slim, raw) if p is not None]:
        run = onnxruntime_runner(path, gate.settings.threads)
        role_checks, produced = gate.check("onnxruntime", role, run, upstream=upstream)
        del run
        if graph_passes(role_checks, role):
            break
    if slim is not None and path == raw:
        job.notes.append(f"the simplified {role} failed parity; kept the unsimplified graph")
    return path, path == slim, role_checks, produced


def _convert_and_gate_openvino(
    job: _Job, gate: Gate, graphs: _Graphs, onnx_files: dict[str, Path]
) -> list[ParityCheck]:
    """Convert the kept ONNX graphs to OpenVINO IR and gate them."""
    checks: list[ParityCheck] = []
    upstream = None
    for role in GRAPH_ROLES:
        job.steps.start(f"converting the {role} to OpenVINO IR")
        xml = job.work / GRAPH_FILES[(role, "openvino")]
        ov_export.convert(
            onnx_files[role], xml, graphs.stamp(role), job.options.fp16, logits_by_phases=role == "decoder"
        )
        job.steps.start(f"checking the OpenVINO {role}")
        run = openvino_runner(xml, gate.settings.threads)
        role_checks, upstream = gate.check("openvino", role, run, job.options.fp16, upstream)
        del run
        checks += role_checks
    return checks


def _write_manifest(
    job: _Job,
    graphs: _Graphs,
    source: SourceCheckpoint,
    simplified: dict[str, bool],
    checks: list[ParityCheck],
    started: float,
) -> tuple[Manifest, list[str]]:
    """Describe the files to ship and write the manifest into the temporary folder; returns both."""
    job.steps.start("writing the manifest")
    report = make_report(checks, job.options.gate)
    names = [n for role in GRAPH_ROLES for f in job.options.formats for n in artifact_names(GRAPH_FILES[(role, f)], f)]
    shipped = [n for n in names if (job.work / n).is_file()]
    artifacts = tuple(describe_file(job.work / n, job.work) for n in shipped)
    job.steps.stop()
    manifest = Manifest(
        format_version=MANIFEST_FORMAT_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        architecture=json.loads(graphs.metadata["architecture"]),
        preprocessing=conventions.preprocessing(),
        clicks=conventions.click_settings(),
        zoom_in=conventions.zoom_settings(uses_roi=json.loads(graphs.metadata["uses_roi"])),
        graphs={role: graphs.spec(role, job.options.formats) for role in GRAPH_ROLES},
        static_size=job.options.static_size,
        opset=job.options.opset,
        openvino_weights=("fp16" if job.options.fp16 else "fp32") if "openvino" in job.options.formats else None,
        onnx_simplified=simplified,
        tools=versions.tool_versions(TOOLS),
        source_checkpoint=source,
        files=artifacts,
        export_seconds=round(time.perf_counter() - started, 3),
        parity=report,
    )
    write_manifest(manifest, job.work)
    return manifest, shipped


def _install(work: Path, out_dir: Path, names: Sequence[str]) -> None:
    """Move the finished files from ``work`` into ``out_dir``; the manifest goes last."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # never leave an old manifest over new files
    for name in names:
        if name != MANIFEST_NAME:
            os.replace(work / name, out_dir / name)
    os.replace(work / MANIFEST_NAME, out_dir / MANIFEST_NAME)


def _result(job: _Job, out_dir: Path, manifest: Manifest) -> ExportResult:
    return ExportResult(
        out_dir=out_dir,
        manifest=manifest,
        seconds=manifest.export_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        step_seconds=dict(job.steps.seconds),
        step_peak_rss=dict(job.steps.peak_rss),
        warnings=tuple(job.notes),
    )
