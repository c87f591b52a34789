"""Which rows a benchmark has: backend × precision, mapped onto the export's graphs and OpenVINO hints.

A *precision* names a row; it decides which decoder file runs and how OpenVINO computes:

=========  ==================================  =====================================================
precision  decoder graph (manifest variant)    OpenVINO ``INFERENCE_PRECISION_HINT``
=========  ==================================  =====================================================
fp32       the exported decoder                ``f32`` (pinned: OpenVINO would otherwise pick bf16/f16)
int8       ``decoder.int8.*`` (quantized)      ``f32`` for the layers kept in float
bf16       the exported decoder                ``bf16`` (only where the CPU supports it)
fp16       the exported decoder                ``f16`` (only where the CPU supports it)
default    the exported decoder                the device's own default (``"device"``): what an
                                               unconfigured OpenVINO app gets (bf16 on AVX512-BF16/
                                               AMX x86, f16 on Cortex-A76 class ARM)
int8-      ``decoder.int8.*``                  the device's default for the layers kept in float
default                                        (a row only where that default is not f32)
=========  ==================================  =====================================================

Any other quantized variant the manifest lists is a precision of its own, like ``int8``. The encoder
always runs its FP32 graph (only the decoder is quantized) with the row's hint, so rows with the same
``encoder_key`` share the encoder. ONNX Runtime's CPU provider computes in the graph's own types, so it
has only the graph-variant rows. Rows that cannot exist here are *skipped with a reason*, never dropped
silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interformer_edge.core.manifest import BASE_PRECISION, Manifest
from interformer_edge.runtime.backends import BACKENDS, FORMAT_OF

PYTORCH = "pytorch"  # the eager baseline's backend name in reports
HINT_PRECISIONS: dict[str, str] = {"bf16": "bf16", "fp16": "f16"}  # row precision → OpenVINO hint
DEFAULT_PRECISION = "default"
# Suffix of a quantized variant run with OpenVINO's device default for its float layers ("int8-default").
DEFAULT_SUFFIX = "-" + DEFAULT_PRECISION
# What OPTIMIZATION_CAPABILITIES must list for a hint row to be meaningful (else OpenVINO falls back).
HINT_CAPABILITY: dict[str, str] = {"bf16": "BF16", "f16": "FP16"}


@dataclass(frozen=True)
class BenchConfig:
    """One backend × precision row.

    ``variant``: the manifest's decoder variant (``fp32``, ``int8``); ``hint``: the precision argument of
    :func:`~interformer_edge.runtime.backends.load_graph` (``f32``/``bf16``/``f16``/``device``);
    ``computes_in``: what the backend actually computes the float layers in (for ``default``: the device
    default resolved on this machine).
    """

    backend: str
    precision: str
    variant: str = BASE_PRECISION
    hint: str = "f32"
    computes_in: str = "f32"
    static: bool = False  # the decoder compiled for the image size (Decoder(static_shapes=True))

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}{' static' if self.static else ''}"

    @property
    def encoder_key(self) -> tuple[str, str]:
        """Rows with the same key run the same encoder graph with the same settings."""
        return self.backend, self.hint

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "variant": self.variant,
            "hint": self.hint,
            "computes_in": self.computes_in,
            "static": self.static,
        }


@dataclass(frozen=True)
class Skipped:
    """A requested row that does not exist here, and why."""

    backend: str
    precision: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "precision": self.precision, "reason": self.reason}


def known_precisions(manifest: Manifest) -> list[str]:
    """Every precision name this export can be asked for (existing or not on this machine)."""
    names = [
        *manifest.precisions("decoder"),
        "int8",
        *HINT_PRECISIONS,
        DEFAULT_PRECISION,
        *_quantized_defaults(manifest),
        "int8" + DEFAULT_SUFFIX,
    ]
    return list(dict.fromkeys(names))


def _quantized_defaults(manifest: Manifest) -> list[str]:
    return [v + DEFAULT_SUFFIX for v in manifest.precisions("decoder") if v != BASE_PRECISION]


def default_precisions(manifest: Manifest) -> list[str]:
    """The rows of a plain ``interformer-bench``: every decoder precision the export has, plus what
    OpenVINO's device default gives, for the exported decoder and for each quantized one."""
    return [*manifest.precisions("decoder"), DEFAULT_PRECISION, *_quantized_defaults(manifest)]


def openvino_facts() -> dict[str, Any]:
    """OpenVINO's view of the CPU: name, optimization capabilities, default inference precision.

    Uses the runtime's one shared ``Core`` (a second Core per process can crash it, see
    ``runtime.backends.openvino_core``).
    """
    from interformer_edge.runtime.backends import openvino_core, openvino_device_precision

    core = openvino_core()
    facts: dict[str, Any] = {
        "version": None,
        "cpu": None,
        "optimization_capabilities": [],
        "default_inference_precision": None,
    }
    try:
        import openvino

        facts["version"] = openvino.__version__
        facts["cpu"] = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        facts["optimization_capabilities"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        facts["default_inference_precision"] = openvino_device_precision()
    except Exception as err:  # a property this OpenVINO version lacks must not stop the benchmark
        facts["error"] = f"{type(err).__name__}: {err}"
    return facts


def plan_configs(
    manifest: Manifest,
    backends: Sequence[str],
    precisions: Sequence[str],
    openvino: dict[str, Any] | None,
) -> tuple[list[BenchConfig], list[Skipped]]:
    """The rows for ``backends`` × ``precisions`` that exist for this export on this machine.

    Args:
        manifest: the export's manifest.
        backends: installed backends to benchmark (``onnxruntime``, ``openvino``).
        precisions: row names (see the module docstring).
        openvino: :func:`openvino_facts` when OpenVINO is among ``backends``.

    Returns:
        ``(configs, skipped)`` in the order asked for.
    """
    variants = manifest.precisions("decoder")
    configs: list[BenchConfig] = []
    skipped: list[Skipped] = []
    caps = set((openvino or {}).get("optimization_capabilities") or [])
    device_default = (openvino or {}).get("default_inference_precision") or "f32"
    for backend in backends:
        fmt = FORMAT_OF[backend]
        for precision in precisions:

            def skip(reason: str, backend: str = backend, precision: str = precision) -> None:
                skipped.append(Skipped(backend, precision, reason))

            if fmt not in manifest.graphs["encoder"].files or fmt not in manifest.graphs["decoder"].files:
                exported = ", ".join(manifest.graphs["encoder"].files)
                skip(f"the export has no {fmt} graphs (exported formats: {exported})")
            elif precision in variants:
                files = manifest.files_of("decoder", precision)
                if fmt not in files:
                    skip(f"the export has no {fmt} {precision} decoder (has {', '.join(files)})")
                    continue
                computes = "f32" if precision == BASE_PRECISION else f"{precision} (float layers f32)"
                configs.append(BenchConfig(backend, precision, variant=precision, computes_in=computes))
            elif precision == "int8":
                skip("the export has no int8 decoder (interformer-quantize adds it)")
            elif precision.endswith(DEFAULT_SUFFIX) and precision != DEFAULT_PRECISION:
                variant = precision[: -len(DEFAULT_SUFFIX)]
                if variant not in variants or fmt not in manifest.files_of("decoder", variant):
                    skip(f"the export has no {fmt} {variant} decoder")
                elif backend != "openvino":
                    skip(f"{backend} computes in the graph's own types (no precision hint): the {variant} row")
                elif device_default == "f32":
                    skip(f"OpenVINO's device default here is f32: the {variant} row")
                else:
                    configs.append(
                        BenchConfig(
                            backend,
                            precision,
                            variant=variant,
                            hint="device",
                            computes_in=f"{variant} (float layers {device_default})",
                        )
                    )
            elif precision in HINT_PRECISIONS or precision == DEFAULT_PRECISION:
                if backend != "openvino":
                    skip(
                        f"{backend} computes in the graph's own types (no precision hint): "
                        f"{'same as' if precision == DEFAULT_PRECISION else 'not available beside'} fp32"
                    )
                    continue
                if precision == DEFAULT_PRECISION:
                    if device_default == "f32" and BASE_PRECISION in precisions:
                        skip("OpenVINO's device default here is f32: the fp32 row")
                        continue
                    configs.append(BenchConfig(backend, precision, hint="device", computes_in=device_default))
                    continue
                hint = HINT_PRECISIONS[precision]
                if HINT_CAPABILITY[hint] not in caps:
                    skip(f"this CPU has no {precision} support in OpenVINO (capabilities: {', '.join(sorted(caps))})")
                    continue
                configs.append(BenchConfig(backend, precision, hint=hint, computes_in=hint))
            else:
                skip(f"unknown precision for this export (has {', '.join(variants)})")
    return configs, skipped


def check_backends(names: Sequence[str], installed: Sequence[str]) -> str | None:
    """A one-line problem with the requested backends, or None."""
    for name in names:
        if name not in BACKENDS:
            return f"unknown backend {name!r}; use {', '.join(BACKENDS)}"
        if name not in installed:
            extra = ' (pip install ".[openvino]")' if name == "openvino" else ""
            return f"{name} is not installed{extra}"
    return None
