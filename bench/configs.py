"""Which rows a benchmark has: backend × decoder variant × compute type (× static shapes).

A row is described in the words of :mod:`interformer_edge.runtime.export`: the **backend**, the
decoder **variant** that runs (``fp32``, ``int8``) and the type OpenVINO **computes** float layers in
(``f32``, ``bf16``, ``f16``, ``device``: the CPU's own default). Its **label**, the name a user asks
for it by (``--rows``) and sees in the tables and ``report.json`` (as ``precision``), follows from
the variant and the compute type:

========  ========================  ==========  ==========================================================
label     variant                   compute     row
========  ========================  ==========  ==========================================================
fp32      fp32 (the exported one)   f32         the exported decoder; OpenVINO pinned to f32
int8      int8 (quantized)          f32         ``decoder.int8.*``, float layers in f32
bf16      fp32                      bf16        OpenVINO computing in bf16 (only where the CPU supports it)
fp16      fp32                      f16         OpenVINO computing in f16 (likewise)
default   fp32                      device      what an unconfigured OpenVINO app gets (bf16 on
                                                AVX512-BF16/AMX x86, f16 on Cortex-A76 class ARM)
int8-     int8                      device      the INT8 decoder, float layers in the device's default
default                                         (a row only where that default is not f32)
========  ========================  ==========  ==========================================================

Any other quantized variant the manifest lists is a row of its own, like ``int8``. The encoder
always runs its FP32 graph (only the decoder is quantized) in the row's compute type, so rows with
the same ``encoder_key`` share the encoder. ONNX Runtime's CPU provider computes in the graph's own
types, so it has only the ``f32`` rows. Rows that cannot exist here are *skipped with a reason*,
never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from interformer_edge.core.manifest import BASE_PRECISION, INT8_VARIANT, Manifest
from interformer_edge.runtime.backends import BACKENDS, COMPUTE_TYPES, DEFAULT_COMPUTE, DEVICE_COMPUTE, FORMAT_OF

from .machine import OpenVinoFacts, openvino_facts

PYTORCH = "pytorch"  # the eager baseline's backend name in reports
DEFAULT_LABEL = "default"  # a row's label word for the compute type DEVICE_COMPUTE
QUANTIZED = INT8_VARIANT  # a row even before the export has it: skipped with a reason
# What OPTIMIZATION_CAPABILITIES must list for a compute type to be meaningful (else OpenVINO falls back).
REQUIRED_CAPABILITY: dict[str, str] = {"bf16": "BF16", "f16": "FP16"}


def float_name(compute: str) -> str:
    """A compute type in the variants' spelling: OpenVINO writes ``f32``/``f16`` where the export's files
    say ``fp32``/``fp16``; ``bf16`` and anything else read the same in both."""
    return "fp" + compute[1:] if compute[:1] == "f" and compute[1:].isdigit() else compute


def row_label(variant: str, compute: str) -> str:
    """The label of a row (see the module docstring): ``int8``, ``fp16``, ``default``, ``int8-default``."""
    suffix = "" if compute == DEFAULT_COMPUTE else DEFAULT_LABEL if compute == DEVICE_COMPUTE else float_name(compute)
    if not suffix:
        return variant
    return suffix if variant == BASE_PRECISION else f"{variant}-{suffix}"


@dataclass(frozen=True)
class BenchConfig:
    """One row: ``backend`` × decoder ``variant`` × ``compute`` type, with the decoder compiled per image
    size when ``static``. ``computes_in``: what the backend actually computes float layers in (for
    ``device``, the default resolved on this machine).

    In ``report.json`` a row is ``backend``, ``precision`` (its :attr:`label`), ``variant``, ``hint`` (the
    compute type), ``computes_in`` and ``static``.
    """

    backend: str
    variant: str = BASE_PRECISION
    compute: str = DEFAULT_COMPUTE
    computes_in: str = "f32"
    static: bool = False

    @property
    def label(self) -> str:
        return row_label(self.variant, self.compute)

    @property
    def name(self) -> str:
        return f"{self.backend} {self.label}{' static' if self.static else ''}"

    @property
    def encoder_key(self) -> tuple[str, str]:
        """Rows with the same key run the same encoder graph with the same settings."""
        return self.backend, self.compute

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.label,
            "variant": self.variant,
            "hint": self.compute,
            "computes_in": self.computes_in,
            "static": self.static,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchConfig:
        return cls(data["backend"], data["variant"], data["hint"], data["computes_in"], bool(data["static"]))


PYTORCH_ROW = BenchConfig(PYTORCH)  # the eager baseline: the FP32 model in float32


@dataclass(frozen=True)
class Skipped:
    """A requested row that does not exist here, and why."""

    backend: str
    label: str = field(metadata={"key": "precision"})
    reason: str


@dataclass(frozen=True)
class BenchPlan:
    """The rows of one benchmark, decided once: those that exist here, those skipped, and the OpenVINO
    facts they were decided by (None without OpenVINO among the backends)."""

    configs: list[BenchConfig]
    skipped: list[Skipped]
    openvino: OpenVinoFacts | None


def row_choices(manifest: Manifest) -> dict[str, tuple[str, str]]:
    """Every row label this export can be asked for (existing or not on this machine) → ``(variant, compute)``."""
    variants = manifest.precisions("decoder")
    quantized = [v for v in variants if v != BASE_PRECISION]
    hints = [c for c in COMPUTE_TYPES if c not in (DEFAULT_COMPUTE, DEVICE_COMPUTE)]
    rows = [
        *[(v, DEFAULT_COMPUTE) for v in (*variants, QUANTIZED)],
        *[(BASE_PRECISION, c) for c in (*hints, DEVICE_COMPUTE)],
        *[(v, DEVICE_COMPUTE) for v in (*quantized, QUANTIZED)],
    ]
    return {row_label(*row): row for row in dict.fromkeys(rows)}


def default_rows(manifest: Manifest) -> list[str]:
    """The rows of a plain ``interformer-bench``: every decoder variant the export has, each also with
    OpenVINO's device default."""
    variants = manifest.precisions("decoder")
    return [*variants, *[row_label(v, DEVICE_COMPUTE) for v in variants]]


def plan_bench(manifest: Manifest, backends: Sequence[str], rows: Sequence[str]) -> BenchPlan:
    """:func:`plan_configs` with OpenVINO's facts read here (once) when it is among ``backends``."""
    openvino = openvino_facts() if "openvino" in backends else None
    configs, skipped = plan_configs(manifest, backends, rows, openvino)
    return BenchPlan(configs, skipped, openvino)


def plan_configs(
    manifest: Manifest,
    backends: Sequence[str],
    rows: Sequence[str],
    openvino: OpenVinoFacts | None,
) -> tuple[list[BenchConfig], list[Skipped]]:
    """The rows for ``backends`` × ``rows`` that exist for this export on this machine.

    Args:
        manifest: the export's manifest.
        backends: installed backends to benchmark (``onnxruntime``, ``openvino``).
        rows: row labels (see the module docstring).
        openvino: :func:`~.machine.openvino_facts` when OpenVINO is among ``backends``.

    Returns:
        ``(configs, skipped)`` in the order asked for.
    """
    choices = row_choices(manifest)
    configs: list[BenchConfig] = []
    skipped: list[Skipped] = []
    for backend in backends:
        for label in rows:
            planned = _plan_row(manifest, backend, label, choices.get(label), rows, openvino)
            if isinstance(planned, BenchConfig):
                configs.append(planned)
            else:
                skipped.append(Skipped(backend, label, planned))
    return configs, skipped


def _plan_row(
    manifest: Manifest,
    backend: str,
    label: str,
    choice: tuple[str, str] | None,
    rows: Sequence[str],
    openvino: OpenVinoFacts | None,
) -> BenchConfig | str:
    """The row ``label`` on ``backend``, or why it does not exist here."""
    variants = manifest.precisions("decoder")
    fmt = FORMAT_OF[backend]
    if fmt not in manifest.graphs["encoder"].files or fmt not in manifest.graphs["decoder"].files:
        return f"the export has no {fmt} graphs (exported formats: {', '.join(manifest.graphs['encoder'].files)})"
    if choice is None:
        return f"unknown precision for this export (has {', '.join(variants)})"
    variant, compute = choice
    device_default = (openvino.default_inference_precision if openvino else None) or "f32"
    own_types = f"{backend} computes in the graph's own types (no precision hint)"
    if compute == DEFAULT_COMPUTE:
        if variant not in variants:
            return f"the export has no {variant} decoder (interformer-quantize adds it)"
        files = manifest.files_of("decoder", variant)
        if fmt not in files:
            return f"the export has no {fmt} {variant} decoder (has {', '.join(files)})"
        computes = "f32" if variant == BASE_PRECISION else f"{variant} (float layers f32)"
        return BenchConfig(backend, variant, compute, computes)
    if variant != BASE_PRECISION:  # a quantized decoder with OpenVINO's device default for its float layers
        if variant not in variants or fmt not in manifest.files_of("decoder", variant):
            return f"the export has no {fmt} {variant} decoder"
        if backend != "openvino":
            return f"{own_types}: the {variant} row"
        if device_default == "f32":
            return f"OpenVINO's device default here is f32: the {variant} row"
        return BenchConfig(backend, variant, compute, f"{variant} (float layers {device_default})")
    if backend != "openvino":
        return f"{own_types}: {'same as' if compute == DEVICE_COMPUTE else 'not available beside'} {BASE_PRECISION}"
    if compute == DEVICE_COMPUTE:
        if device_default == "f32" and BASE_PRECISION in rows:
            return f"OpenVINO's device default here is f32: the {BASE_PRECISION} row"
        return BenchConfig(backend, variant, compute, device_default)
    capabilities = sorted(set(openvino.optimization_capabilities if openvino else []))
    if REQUIRED_CAPABILITY[compute] not in capabilities:
        return f"this CPU has no {label} support in OpenVINO (capabilities: {', '.join(capabilities)})"
    return BenchConfig(backend, variant, compute, compute)


def check_backends(names: Sequence[str], installed: Sequence[str]) -> str | None:
    """A one-line problem with the requested backends, or None."""
    for name in names:
        if name not in BACKENDS:
            return f"unknown backend {name!r}; use {', '.join(BACKENDS)}"
        if name not in installed:
            extra = ' (pip install ".[openvino]")' if name == "openvino" else ""
            return f"{name} is not installed{extra}"
    return None
