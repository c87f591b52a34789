"""The host's CPU: model, the ISA flags that pick kernels, and its class as far as INT8 kernels care.

INT8 convolutions and matrix products multiply uint8 activations by int8 weights. How the products
are summed depends on the CPU, and that decides whether a decoder quantized elsewhere stays accurate:

* ``x86-avx2`` (x86 without VNNI: AVX2/AVX-512F-only parts): ``vpmaddubsw`` adds two u8 x s8 products
  into a *saturating int16*; with full-range 8-bit weights (|w| up to 127) a pair can reach
  2 x 255 x 127 = 64770 > 32767 and is clipped. 7-bit weights (|w| <= 63) keep every pair in range.
* ``x86-vnni`` (AVX-512 VNNI, AVX-VNNI, AMX): ``vpdpbusd`` accumulates u8 x s8 in int32: no saturation.
* ``arm64`` (no dot product, e.g. Cortex-A72, Raspberry Pi 4): widening 8 -> 16-bit products,
  pairwise accumulated into int32: no saturation.
* ``arm64-dotprod`` (``asimddp``, e.g. Cortex-A76, Raspberry Pi 5): ``sdot``/``udot`` into int32.

:data:`INT8_TARGET_COVERAGE` says which classes each INT8 target of ``interformer-quantize`` was
measured accurate on; the quantizer records the coverage in the manifest and the runtime warns once
when an INT8 decoder runs on a class its target does not cover.

The flags of interest:

* x86: ``avx2``, ``fma``, ``avx512f``, ``avx512_vnni`` / ``avx_vnni`` (int8 dot products),
  ``avx512_bf16``, ``avx512_fp16``, ``amx_tile`` / ``amx_int8`` / ``amx_bf16``;
* ARM: ``asimd``, ``asimddp`` (int8 dot product: Cortex-A76 / Raspberry Pi 5 has it, A72 / Pi 4 not),
  ``asimdhp`` / ``fphp`` (fp16 arithmetic), ``i8mm``, ``bf16``, ``sve``, ``sve2``.

On aarch64 the flags come from both ``/proc/cpuinfo`` and the kernel's ``AT_HWCAP`` auxiliary vector:
under qemu-user the two differ (the file is whatever is mounted there, the vector follows ``QEMU_CPU``),
and the vector is what numpy and onnxruntime pick their kernels by, so it decides the class.
Standard library only.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

X86_AVX2 = "x86-avx2"
X86_VNNI = "x86-vnni"
ARM64 = "arm64"
ARM64_DOTPROD = "arm64-dotprod"
UNKNOWN = "unknown"
CPU_CLASSES: tuple[str, ...] = (X86_AVX2, X86_VNNI, ARM64, ARM64_DOTPROD)

# INT8 targets of interformer-quantize -> CPU classes whose kernels run them accurately.
PORTABLE_TARGET = "portable"
VNNI_TARGET = "vnni"
INT8_TARGET_COVERAGE: dict[str, tuple[str, ...]] = {
    PORTABLE_TARGET: CPU_CLASSES,
    VNNI_TARGET: (X86_VNNI, ARM64, ARM64_DOTPROD),
}
# INT8 decoders quantized before targets were recorded used full-range weights, as the vnni target does.
LEGACY_TARGET = VNNI_TARGET

X86_INT8_DOT = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
ARM_INT8_DOT = frozenset({"asimddp", "i8mm"})
X86_FLAGS: tuple[str, ...] = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16",
)  # fmt: skip
ARM_FLAGS: tuple[str, ...] = ("asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2")
# Linux arm64 AT_HWCAP / AT_HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h), for the flags above.
AT_HWCAP, AT_HWCAP2 = 16, 26
HWCAP_BITS: dict[str, int] = {"fphp": 9, "asimd": 1, "asimdhp": 10, "asimddp": 20, "sve": 22}
HWCAP2_BITS: dict[str, int] = {"sve2": 1, "i8mm": 13, "bf16": 14}
# "CPU part" of /proc/cpuinfo on ARM → core name (the common ones on boards people run this on).
ARM_PARTS: dict[str, str] = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}  # fmt: skip


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per block (processor entries; a Pi adds a trailing board block)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    blocks: list[dict[str, str]] = []
    for chunk in text.split("\n\n"):
        entry = {}
        for line in chunk.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                entry[key.strip()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def _first(blocks: list[dict[str, str]], *keys: str) -> str | None:
    for key in keys:
        for block in blocks:
            if block.get(key):
                return block[key]
    return None


def cpu_model(blocks: list[dict[str, str]]) -> str:
    """A readable CPU name: x86 ``model name``; ARM core name from ``CPU part`` plus the board ``Model``."""
    name = _first(blocks, "model name")
    if name:
        return name
    part = _first(blocks, "CPU part")
    core = ARM_PARTS.get(part.lower(), f"ARM part {part}") if part else None
    board = _first(blocks, "Model", "Hardware")
    parts = [p for p in (core, board) if p]
    return " · ".join(parts) if parts else (platform.processor() or platform.machine() or "unknown")


def _hwcaps() -> set[str] | None:
    """The aarch64 ISA features the kernel (or qemu) reports for this process; None elsewhere."""
    if platform.machine() not in ("aarch64", "arm64") or not sys.platform.startswith("linux"):
        return None
    try:
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        caps, caps2 = int(getauxval(AT_HWCAP)), int(getauxval(AT_HWCAP2))
    except (OSError, AttributeError):
        return None
    found = {name for name, bit in HWCAP_BITS.items() if caps >> bit & 1}
    return found | {name for name, bit in HWCAP2_BITS.items() if caps2 >> bit & 1}


def isa_flags(blocks: list[dict[str, str]]) -> dict[str, Any]:
    """The flags of interest present here, and what they mean for int8 / fp16 / bf16 speed."""
    listed = set((_first(blocks, "flags", "Features") or "").split())
    hw = _hwcaps()
    arm = hw is not None or platform.machine() in ("aarch64", "arm64") or "asimd" in listed
    interest = ARM_FLAGS if arm else X86_FLAGS
    present = sorted(f for f in interest if f in listed or (hw is not None and f in hw))
    facts: dict[str, Any] = {"of_interest": present}
    if hw is not None:  # both views, since under emulation they can disagree
        facts["cpuinfo"] = sorted(f for f in interest if f in listed)
        facts["hwcap"] = sorted(f for f in interest if f in hw)
    has = set(present)
    facts["int8_dot_product"] = bool(has & (ARM_INT8_DOT if arm else X86_INT8_DOT))
    # The kernels follow the hwcaps where the kernel reports them (under qemu cpuinfo may say otherwise).
    facts["int8_class"] = classify(arm, set(facts["hwcap"]) if hw is not None else has, platform.machine())
    facts["fp16_arithmetic"] = bool(has & ({"asimdhp", "fphp"} if arm else {"avx512_fp16"}))
    facts["bf16_arithmetic"] = bool(has & ({"bf16"} if arm else {"avx512_bf16", "amx_bf16"}))
    return facts


def classify(arm: bool, flags: set[str], machine: str) -> str:
    """The INT8 class of an ARM (``arm``) or x86 CPU with the flags of interest ``flags``; ``machine`` is
    ``platform.machine()`` (``unknown`` for other architectures)."""
    if arm:
        return ARM64_DOTPROD if "asimddp" in flags else ARM64
    if flags & X86_INT8_DOT:
        return X86_VNNI
    if machine.lower() in ("x86_64", "amd64", "i386", "i686") or "avx2" in flags:
        return X86_AVX2
    return UNKNOWN


@dataclass(frozen=True)
class HostCpu:
    """The host for reports and warnings: its INT8 class (one of :data:`CPU_CLASSES` or ``unknown``),
    CPU model and the flags of interest present."""

    cpu_class: str
    model: str
    flags: tuple[str, ...]

    def describe(self) -> str:
        """One line: ``x86-vnni (Intel Xeon ...; avx2 avx512_vnni ...)``."""
        return f"{self.cpu_class} ({self.model}; {' '.join(self.flags) or 'no flags of interest'})"

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.cpu_class, "model": self.model, "flags": list(self.flags)}


@functools.lru_cache(maxsize=1)
def host_cpu() -> HostCpu:
    """This host's :class:`HostCpu` (read once). Without ``/proc/cpuinfo`` (macOS, Windows) an x86 host
    counts as ``x86-avx2``, the class with the fewest guarantees."""
    blocks = read_cpuinfo()
    facts = isa_flags(blocks)
    return HostCpu(facts["int8_class"], cpu_model(blocks), tuple(facts["of_interest"]))


_log = logging.getLogger("interformer_edge")
_warned: set[tuple[str, str]] = set()


def check_int8_target(target: str, covers: tuple[str, ...] | list[str], what: str = "int8 decoder") -> bool:
    """Warn once per (target, class) when ``what`` runs on a host class its target does not cover.

    Returns whether the host is covered (an ``unknown`` host is not)."""
    host = host_cpu()
    if host.cpu_class in covers:
        return True
    if (target, host.cpu_class) not in _warned:
        _warned.add((target, host.cpu_class))
        _log.warning(
            "interformer-edge: this %s was quantized for INT8 target %r (accurate on %s), but this CPU is %s; "
            "its masks may differ from what the gate measured: re-quantize with --target %s or use fp32",
            what,
            target,
            ", ".join(covers) or "nothing recorded",
            host.describe(),
            PORTABLE_TARGET,
        )
    return False
