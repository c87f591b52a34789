"""Facts about the machine a benchmark ran on: CPU model, cores, the ISA features that decide which
precision is fast, OS, and package versions. Standard library (+ psutil, a lean dependency) only.

The ISA flags of interest:

* x86: ``avx2``, ``fma``, ``avx512f``, ``avx512_vnni`` / ``avx_vnni`` (int8 dot products),
  ``avx512_bf16``, ``avx512_fp16``, ``amx_tile`` / ``amx_int8`` / ``amx_bf16``;
* ARM: ``asimd``, ``asimddp`` (int8 dot product: Cortex-A76 / Raspberry Pi 5 has it, A72 / Pi 4 not),
  ``asimdhp`` / ``fphp`` (fp16 arithmetic), ``i8mm``, ``bf16``, ``sve``, ``sve2``.

On aarch64 the flags come from both ``/proc/cpuinfo`` and the kernel's ``AT_HWCAP`` auxiliary vector:
under qemu-user the two differ (the file is whatever is mounted there, the vector follows ``QEMU_CPU``),
and the vector is what numpy and onnxruntime pick their kernels by.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

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
PACKAGES: tuple[str, ...] = ("interformer-edge", "numpy", "onnxruntime", "openvino", "torch", "pillow",
                             "matplotlib", "typer", "rich", "psutil")  # fmt: skip


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
    facts["int8_dot_product"] = bool(has & ({"asimddp", "i8mm"} if arm else {"avx512_vnni", "avx_vnni", "amx_int8"}))
    facts["fp16_arithmetic"] = bool(has & ({"asimdhp", "fphp"} if arm else {"avx512_fp16"}))
    facts["bf16_arithmetic"] = bool(has & ({"bf16"} if arm else {"avx512_bf16", "amx_bf16"}))
    return facts


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what thread counts should be compared with."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def package_versions() -> dict[str, str | None]:
    """Installed versions (from package metadata, nothing is imported); None when not installed."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_facts(emulated: str | None = None) -> dict[str, Any]:
    """Everything above as one JSON-able dict.

    Args:
        emulated: a label such as ``"EMULATED (qemu cortex-a76) — not Raspberry Pi figures"`` when the
            caller knows the CPU is emulated (timings are then not the named CPU's); None on real hardware.
    """
    import psutil

    blocks = read_cpuinfo()
    return {
        "cpu_model": cpu_model(blocks),
        "architecture": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": usable_cores(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "isa": isa_flags(blocks),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "emulated": emulated or None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
