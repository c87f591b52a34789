"""Facts about the machine a benchmark ran on: CPU model, cores, the ISA features that decide which
precision is fast (and the INT8 class, from :mod:`interformer_edge.core.cpu`), OS, and package
versions. Standard library (+ psutil, a lean dependency) only.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from interformer_edge.core.cpu import cpu_model, isa_flags, read_cpuinfo
from interformer_edge.core.versions import package_versions

PACKAGES: tuple[str, ...] = ("interformer-edge", "numpy", "onnxruntime", "openvino", "torch", "pillow",
                             "matplotlib", "typer", "rich", "psutil")  # fmt: skip


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
        "packages": package_versions(PACKAGES),
        "emulated": emulated or None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
