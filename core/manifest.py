"""The export manifest: one JSON file beside the exported graphs that tells a torch-free runtime everything.

The exporter writes it with :func:`write_manifest`; the runtime, quantize and bench read it with
:func:`load_manifest`, which checks the format version, that every listed file exists and (by
default) that its sha256 matches. Any problem raises :class:`ManifestError` with a one-line message.

Symbolic dimensions in tensor shapes are strings: ``"H"``/``"W"`` are the padded image height and
width (multiples of ``size_divisor``), ``"H/4"`` etc. the feature-map sides.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .cpu import INT8_TARGET_COVERAGE, LEGACY_TARGET
from .messages import first_line
from .spec import GRAPH_ROLES, MANIFEST_FORMAT_VERSION, MANIFEST_NAME
from .typed_json import JsonShapeError, read_dataclass

SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (MANIFEST_FORMAT_VERSION,)
# The graphs the exporter writes; quantized variants (``Manifest.quantized``) add other precisions.
BASE_PRECISION = "fp32"
INT8_VARIANT = "int8"  # the quantized decoder variant interformer-quantize writes
# The key of ``QuantizedGraph.gates`` for the INT8 ONNX decoder as onnxruntime-web runs it in a browser
# (WebAssembly integer kernels, not native ONNX Runtime's): written by ``interformer-quantize --browser``,
# read by ``interformer-annotate`` before it serves that decoder to pages.
BROWSER_GATE = "onnxruntime-web"


class ManifestError(ValueError):
    """An export folder or its manifest is missing, malformed, stale or tampered with; the message says which."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` mixes ints and symbolic dims (``"H"``, ``"W/4"``)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphSpec:
    """Signature of one graph and its file per format (``{"onnx": "decoder.onnx", "openvino": "decoder.xml"}``)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: dict[str, str]

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB ``0..255`` image becomes the encoder input.

    ``image = (rgb - mean) / std`` as float32 ``(1, 3, H, W)``, then zero-padded bottom/right (value 0
    after normalization) so both sides are multiples of ``size_divisor``; the longer side must not
    exceed ``max_image_side`` after padding.
    """

    color_order: str
    input_range: tuple[float, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size_divisor: int
    max_image_side: int
    pad_value: float
    layout: str = "NCHW"


@dataclass(frozen=True)
class ClickSettings:
    """Click disks of the reference label (pixels) and the label codes (name → code)."""

    inner_radius: int
    outer_radius: int
    ref_label_codes: dict[str, int]


@dataclass(frozen=True)
class ZoomSettings:
    """Zoom-in (roi) protocol; ``uses_roi`` says whether the decoder has a ``roi`` input at all."""

    uses_roi: bool
    expand_ratio: float
    min_size: int
    stride: int
    start_click: int


@dataclass(frozen=True)
class ArtifactFile:
    """A file of the export folder (name relative to it), its size in bytes and sha256 (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SourceCheckpoint:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ParityCheck:
    """Worst case of one output of one graph on one backend at one size, over all label/roi cases.

    ``judged_by`` is ``"max_abs"`` (FP32), ``"mask"`` (FP16 logits) or ``"info"`` (reported, not gating).
    ``max_abs_diff`` is None when the output was not finite or had the wrong shape; ``error`` holds the
    first line of the exception when the backend could not run the graph at all.
    """

    backend: str
    graph: str
    output: str
    size: str
    cases: int
    max_abs_diff: float | None
    mask_agreement: float | None
    judged_by: str
    passed: bool
    error: str | None = None


@dataclass(frozen=True)
class ParityReport:
    passed: bool
    abs_tolerance: float
    min_mask_agreement: float
    sizes: tuple[str, ...]
    checks: tuple[ParityCheck, ...]

    def failures(self) -> list[ParityCheck]:
        return [c for c in self.checks if not c.passed]


@dataclass(frozen=True)
class QuantizedGraph:
    """Another precision of one graph (e.g. the INT8 click decoder), stored beside the FP32 files.

    ``files`` maps a format to its file, like :attr:`GraphSpec.files`; the signature is the FP32
    graph's. ``calibration`` records how it was calibrated and ``gates`` the accuracy gate per backend
    (metrics, thresholds, the layers kept in float); both are plain JSON written by ``interformer-quantize``.
    ``target`` is the INT8 target it was quantized for and ``covers`` the CPU classes that target runs
    accurately on (:mod:`.cpu`); variants written before targets existed read as the full-range target.
    """

    graph: str
    precision: str
    files: dict[str, str]
    calibration: dict[str, Any]
    gates: dict[str, Any]
    created: str
    target: str = LEGACY_TARGET
    covers: tuple[str, ...] = INT8_TARGET_COVERAGE[LEGACY_TARGET]


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs to use an export folder; mirrors ``manifest.json`` one to one."""

    format_version: int
    created: str
    architecture: dict[str, Any]
    preprocessing: Preprocessing
    clicks: ClickSettings
    zoom_in: ZoomSettings
    graphs: dict[str, GraphSpec]
    static_size: tuple[int, int] | None
    opset: int
    openvino_weights: str | None
    onnx_simplified: dict[str, bool]
    tools: dict[str, str]
    source_checkpoint: SourceCheckpoint
    files: tuple[ArtifactFile, ...]
    export_seconds: float
    parity: ParityReport
    quantized: tuple[QuantizedGraph, ...] = ()
    # Where the manifest was loaded from; not serialized.
    root: Path | None = field(default=None, compare=False, metadata={"serialized": False})

    def precisions(self, graph: str) -> list[str]:
        """The precisions ``graph`` exists in: ``fp32`` first, then its quantized variants."""
        return [BASE_PRECISION] + [q.precision for q in self.quantized if q.graph == graph]

    def files_of(self, graph: str, precision: str = BASE_PRECISION) -> dict[str, str]:
        """Format → file name of ``graph`` in ``precision`` (raises :class:`ManifestError` if absent)."""
        if precision == BASE_PRECISION and graph in self.graphs:
            return self.graphs[graph].files
        variant = self.quantized_variant(graph, precision)
        if variant is not None:
            return variant.files
        raise ManifestError(f"the export has no {precision} {graph} (has: {self._available()})")

    def quantized_variant(self, graph: str, precision: str) -> QuantizedGraph | None:
        """The quantized variant ``precision`` of ``graph`` (None for ``fp32`` or a variant the export lacks)."""
        return next((q for q in self.quantized if (q.graph, q.precision) == (graph, precision)), None)

    def graph_path(self, graph: str, fmt: str = "onnx", precision: str = BASE_PRECISION) -> Path:
        """Absolute path of ``graph`` (``encoder``/``decoder``) in format ``fmt`` (``onnx``/``openvino``)
        and ``precision`` (``fp32`` or a quantized variant such as ``int8``)."""
        if self.root is None:
            raise ManifestError("this manifest was not loaded from a folder")
        files = self.files_of(graph, precision)
        if fmt not in files:
            raise ManifestError(f"the export has no {fmt} {precision} {graph} (has: {self._available()})")
        return self.root / files[fmt]

    def graph_files(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every graph the export holds as ``(graph, precision, {format: file})``, FP32 ones first."""
        kinds = [(role, BASE_PRECISION, g.files) for role, g in self.graphs.items()]
        return kinds + [(q.graph, q.precision, q.files) for q in self.quantized]

    def _available(self) -> str:
        kinds = self.graph_files()
        return ", ".join(f"{fmt} {precision} {role}" for role, precision, files in kinds for fmt in files) or "nothing"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("root")
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no inf/nan
    return value


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: str | Path, root: str | Path | None = None) -> ArtifactFile:
    """Size and sha256 of ``path``, named relative to ``root`` (default: its folder)."""
    path = Path(path)
    name = path.relative_to(root).as_posix() if root is not None else path.name
    return ArtifactFile(name=name, size=path.stat().st_size, sha256=sha256_file(path))


def artifact_names(name: str, fmt: str) -> list[str]:
    """The files one graph of format ``fmt`` may consist of: ``x.onnx`` (+ external ``x.onnx.data``),
    or ``x.xml`` + ``x.bin``. Callers keep the ones that exist."""
    if fmt == "onnx":
        return [name, name + ".data"]
    return [name, Path(name).with_suffix(".bin").as_posix()]


def with_quantized(manifest: Manifest, variant: QuantizedGraph, root: str | Path) -> Manifest:
    """``manifest`` with ``variant`` added (replacing one of the same graph and precision) and its files,
    found in ``root``, described (size, sha256) among the manifest's files."""
    root = Path(root)
    old = [q for q in manifest.quantized if (q.graph, q.precision) == (variant.graph, variant.precision)]
    dropped = {n for q in old for fmt, name in q.files.items() for n in artifact_names(name, fmt)}
    names = [n for fmt, name in variant.files.items() for n in artifact_names(name, fmt) if (root / n).is_file()]
    files = [f for f in manifest.files if f.name not in dropped and f.name not in names]
    files += [describe_file(root / n, root) for n in names]
    quantized = [q for q in manifest.quantized if q not in old] + [variant]
    return replace(manifest, files=tuple(files), quantized=tuple(quantized))


# ---------------------------------------------------------------- parsing


def _check_values(manifest: Manifest) -> Manifest:
    """What the types cannot say: values a runtime divides by, allocates with or indexes by must make
    sense, every graph role is there, and quantized variants name an exported graph."""
    pre, clk, zoom = manifest.preprocessing, manifest.clicks, manifest.zoom_in
    missing_roles = set(GRAPH_ROLES) - set(manifest.graphs)
    if missing_roles:
        raise ManifestError(f"manifest lacks graphs {sorted(missing_roles)}")
    for q in manifest.quantized:
        if q.graph not in manifest.graphs or q.precision == BASE_PRECISION:
            raise ManifestError(f"manifest lists a quantized {q.precision} {q.graph}, which cannot be")
    checks = [
        (1 <= pre.size_divisor <= 1024, "preprocessing.size_divisor must be 1..1024"),
        (pre.size_divisor <= pre.max_image_side <= 1 << 16, "preprocessing.max_image_side must be size_divisor..65536"),
        (all(math.isfinite(v) and v > 0 for v in pre.std), "preprocessing.std must be positive numbers"),
        (
            all(math.isfinite(v) for v in (*pre.mean, *pre.input_range, pre.pad_value)),
            "preprocessing mean, input_range and pad_value must be finite",
        ),
        (0 <= clk.inner_radius <= 1024 and 0 <= clk.outer_radius <= 1024, "click radii must be 0..1024"),
        (math.isfinite(zoom.expand_ratio) and 0 < zoom.expand_ratio <= 100, "zoom_in.expand_ratio must be in (0, 100]"),
        (
            0 <= zoom.min_size <= 1 << 16 and 1 <= zoom.stride <= 1024 and zoom.start_click >= 0,
            "zoom_in min_size, stride and start_click out of range",
        ),
        (
            manifest.static_size is None or all(0 < v <= 1 << 16 for v in manifest.static_size),
            "static_size must be two positive sides",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ManifestError(f"manifest value out of range: {message}")
    return manifest


def manifest_from_dict(data: Any) -> Manifest:
    """Parse and type-check a manifest JSON object (no file checks); values are range-checked too."""
    if not isinstance(data, Mapping):
        raise ManifestError("manifest must be a JSON object")
    version = data.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        if not isinstance(version, int) or isinstance(version, bool):
            raise ManifestError("manifest lacks an integer 'format_version'")
        hint = (
            "; export the model again with this version's interformer-export"
            if version < MANIFEST_FORMAT_VERSION
            else ""
        )
        raise ManifestError(
            f"manifest format version {version} is not supported by this runtime "
            f"(supports {SUPPORTED_FORMAT_VERSIONS}){hint}"
        )
    try:
        manifest = read_dataclass(Manifest, data, "")
    except JsonShapeError as err:
        raise ManifestError(f"manifest {err}") from None
    return _check_values(manifest)


def _check_files(manifest: Manifest, root: Path, verify_hashes: bool) -> None:
    listed = {f.name: f for f in manifest.files}
    for role, precision, files in manifest.graph_files():
        for fmt, name in files.items():
            if name not in listed:
                raise ManifestError(f"the {fmt} {precision} {role} file {name!r} is not among the manifest's files")
    for entry in manifest.files:
        path = root / entry.name
        if "\x00" in entry.name or Path(entry.name).is_absolute() or ".." in Path(entry.name).parts:
            raise ManifestError(f"manifest file name {entry.name!r} points outside the export folder")
        if not path.is_file():
            raise ManifestError(f"{path} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise ManifestError(f"{path} has {size} bytes, the manifest says {entry.size}: stale or damaged export")
        if verify_hashes and sha256_file(path) != entry.sha256:
            raise ManifestError(f"{path} does not match its sha256 in the manifest: stale or damaged export")


def load_manifest(directory: str | Path, verify_hashes: bool = True, require_parity: bool = True) -> Manifest:
    """Read ``<directory>/manifest.json`` and check it against the folder.

    Args:
        directory: an export folder (or the manifest file itself).
        verify_hashes: also compare every file's sha256 (reads all bytes; sizes are always compared).
        require_parity: refuse an export whose parity gate failed.

    Raises:
        ManifestError: with a one-line reason.
    """
    path = Path(directory)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no export manifest at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, UTF-8 or a 5000-digit number
        raise ManifestError(f"{path} is not a readable JSON manifest ({first_line(err, limit=200)})") from None
    manifest = manifest_from_dict(data)
    root = path.parent.resolve()
    _check_files(manifest, root, verify_hashes)
    if require_parity and not manifest.parity.passed:
        failed = ", ".join(sorted({f"{c.backend} {c.output}@{c.size}" for c in manifest.parity.failures()}))
        raise ManifestError(f"{root} failed its export parity gate ({failed or 'see manifest'})")
    return replace(manifest, root=root)


def write_manifest(manifest: Manifest, directory: str | Path) -> Path:
    """Write ``manifest.json`` into ``directory`` atomically (temporary file, then rename; umask mode)."""
    text = json.dumps(manifest.to_dict(), indent=2, allow_nan=False) + "\n"
    return write_atomic(Path(directory) / MANIFEST_NAME, text)


def symbolic_shape(dims: Sequence[int | str]) -> tuple[int | str, ...]:
    """Normalise a shape for :class:`TensorSpec` (ints stay ints, anything else becomes its string)."""
    return tuple(d if isinstance(d, int) else str(d) for d in dims)
