"""INT8 targets: which quantization scheme a decoder gets, chosen by where it will run.

Both backends quantize the same layers (Conv/MatMul with constant weights) with per-output-channel
symmetric int8 weights and asymmetric uint8 activations per tensor; the targets differ in the weight
range, which decides whether x86 CPUs without VNNI stay accurate (see :mod:`interformer_edge.core.cpu`):

* ``portable`` (default): 7-bit weights (-64..63). No u8 x s8 pair sum can leave int16, so the
  AVX2 kernels (``vpmaddubsw``) compute what VNNI and ARM compute. ONNX Runtime: ``reduce_range``;
  OpenVINO/NNCF: ``overflow_fix=enable`` on every layer.
* ``vnni``: full 8-bit weights, and int8 activations on ONNX Runtime (s8s8): faster on x86 VNNI/AMX
  and one more bit of weight precision, but wrong on x86 without VNNI, where pair sums saturate.

The measurements behind both choices (accuracy on VNNI, emulated and real AVX2 hosts; speed of each
scheme): ``docs/int8-targets.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from interformer_edge.core.cpu import INT8_TARGET_COVERAGE, PORTABLE_TARGET, VNNI_TARGET


@dataclass(frozen=True)
class Int8Scheme:
    """How one target quantizes, per backend (recorded in the manifest)."""

    weight_bits: int  # 7: reduced range, safe on every CPU class; 8: full range
    ort_reduce_range: bool  # ONNX Runtime quantize_static(reduce_range=...)
    nncf_overflow_fix: str  # NNCF AdvancedQuantizationParameters(overflow_fix=...): enable | disable
    ort_activations: str  # ONNX Runtime activation type: uint8 (u8s8) | int8 (s8s8)
    weights: str = "int8 per output channel, symmetric"
    activations: str = "per tensor, asymmetric (ONNX Runtime QDQ: ort_activations); NNCF mixed preset (OpenVINO)"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Int8Target:
    name: str
    scheme: Int8Scheme
    summary: str

    @property
    def covers(self) -> tuple[str, ...]:
        """The CPU classes this target's decoders are accurate on (the runtime warns on the others)."""
        return INT8_TARGET_COVERAGE[self.name]


TARGETS: dict[str, Int8Target] = {
    PORTABLE_TARGET: Int8Target(
        PORTABLE_TARGET,
        Int8Scheme(weight_bits=7, ort_reduce_range=True, nncf_overflow_fix="enable", ort_activations="uint8"),
        "7-bit weights: the same masks on x86 AVX2, x86 VNNI/AMX and ARM64 with or without dot product",
    ),
    VNNI_TARGET: Int8Target(
        VNNI_TARGET,
        Int8Scheme(weight_bits=8, ort_reduce_range=False, nncf_overflow_fix="disable", ort_activations="int8"),
        "full 8-bit weights, s8s8 on ONNX Runtime: about 1.2x faster on x86 VNNI/AMX; x86 VNNI/AMX and ARM64 only "
        "(saturates on x86 without VNNI)",
    ),
}
DEFAULT_TARGET = PORTABLE_TARGET


def get_target(name: str) -> Int8Target:
    """The target called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown INT8 target {name!r}; use {', '.join(TARGETS)}") from None
