"""What was benchmarked: the export's identity, its quantized variants and its files' sizes on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interformer_edge.core.manifest import BASE_PRECISION, Manifest, artifact_names
from interformer_edge.runtime.backends import FORMAT_OF
from interformer_edge.runtime.export import Export

from .configs import PYTORCH, BenchConfig

AS_PRECISION: dict[str, Any] = {"key": "precision"}  # the manifest's word for a graph's variant


@dataclass(frozen=True)
class GraphSize:
    """One graph's files in one variant and format (``x.onnx`` + ``x.onnx.data``, ``x.xml`` + ``x.bin``)."""

    graph: str
    variant: str = field(metadata=AS_PRECISION)
    format: str
    files: list[str]
    bytes: int | None


@dataclass(frozen=True)
class ArtifactSizes:
    graphs: list[GraphSize]
    total_bytes: int


@dataclass(frozen=True)
class QuantizedFacts:
    """A quantized variant as the manifest records it: files, calibration, gates, the INT8 ``target`` it was
    quantized for and the CPU classes that target ``covers``."""

    graph: str
    variant: str = field(metadata=AS_PRECISION)
    files: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    target: str = "?"
    covers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckpointFacts:
    path: str
    sha256: str


@dataclass(frozen=True)
class ArtifactFacts:
    """The export: folder, model id, architecture, source checkpoint, variants, sizes."""

    dir: str
    model_id: str
    architecture: str
    uses_roi: bool
    static_size: list[int] | None
    created: str
    manifest_format_version: int
    source_checkpoint: CheckpointFacts
    export_tools: dict[str, Any]
    export_parity_passed: bool
    decoder_variants: list[str] = field(metadata={"key": "decoder_precisions"})
    quantized: list[QuantizedFacts]
    sizes: ArtifactSizes


def describe_artifact(export: Export) -> ArtifactFacts:
    """The facts of ``export`` for the report."""
    manifest = export.manifest
    return ArtifactFacts(
        dir=str(export.root),
        model_id=export.model_id,
        architecture=manifest.architecture.get("name", "?"),
        uses_roi=manifest.zoom_in.uses_roi,
        static_size=list(manifest.static_size) if manifest.static_size else None,
        created=manifest.created,
        manifest_format_version=manifest.format_version,
        source_checkpoint=CheckpointFacts(manifest.source_checkpoint.path, manifest.source_checkpoint.sha256),
        export_tools=manifest.tools,
        export_parity_passed=manifest.parity.passed,
        decoder_variants=manifest.precisions("decoder"),
        quantized=[
            QuantizedFacts(q.graph, q.precision, q.files, q.calibration, q.gates, q.created, q.target, list(q.covers))
            for q in manifest.quantized
        ],
        sizes=artifact_sizes(manifest),
    )


def graph_bytes(manifest: Manifest, graph: str, fmt: str, variant: str) -> int | None:
    """Bytes on disk of one graph in one format and variant (None: the export does not have it)."""
    sizes = {f.name: f.size for f in manifest.files}
    files = manifest.files_of(graph, variant)
    if fmt not in files:
        return None
    return sum(sizes.get(name, 0) for name in artifact_names(files[fmt], fmt))


def artifact_sizes(manifest: Manifest) -> ArtifactSizes:
    """Every graph's size per format and variant, and the total of all files."""
    listed = {f.name for f in manifest.files}
    graphs = [
        GraphSize(
            role,
            variant,
            fmt,
            [n for n in artifact_names(files[fmt], fmt) if n in listed],
            graph_bytes(manifest, role, fmt, variant),
        )
        for role, variant, files in manifest.graph_files()
        for fmt in files
    ]
    return ArtifactSizes(graphs, sum(f.size for f in manifest.files))


def deploy_bytes(manifest: Manifest, config: BenchConfig) -> int | None:
    """What a device running ``config`` needs on disk: the FP32 encoder plus the row's decoder (None for PyTorch)."""
    if config.backend == PYTORCH:
        return None
    fmt = FORMAT_OF[config.backend]
    encoder = graph_bytes(manifest, "encoder", fmt, BASE_PRECISION)
    decoder = graph_bytes(manifest, "decoder", fmt, config.variant)
    return None if encoder is None or decoder is None else encoder + decoder
