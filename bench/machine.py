"""Facts about the machine a benchmark ran on: CPU model, cores, the ISA features that decide which
precision is fast (and the INT8 class, from :mod:`interformer_edge.core.cpu`), OS, package versions,
and OpenVINO's view of the CPU. Standard library (+ psutil, a lean dependency) only; OpenVINO is
imported only when its facts are asked for.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interformer_edge.core.cpu import cpu_model, isa_flags, read_cpuinfo
from interformer_edge.core.typed_json import OMIT_NONE
from interformer_edge.core.versions import package_versions

PACKAGES: tuple[str, ...] = ("interformer-edge", "numpy", "onnxruntime", "openvino", "torch", "pillow",
                             "matplotlib", "typer", "rich", "psutil")  # fmt: skip


@dataclass(frozen=True)
class IsaFacts:
    """The ISA flags of interest present here and what they mean (see :func:`~interformer_edge.core.cpu.isa_flags`);
    on ARM also which flags ``/proc/cpuinfo`` and the kernel's hwcaps list."""

    of_interest: list[str]
    cpuinfo: list[str] | None = field(default=None, metadata=OMIT_NONE)
    hwcap: list[str] | None = field(default=None, metadata=OMIT_NONE)
    int8_dot_product: bool = False
    int8_class: str = "unknown"
    fp16_arithmetic: bool = False
    bf16_arithmetic: bool = False


@dataclass(frozen=True)
class MachineFacts:
    """The machine a report was measured on. ``emulated``: a label such as ``"EMULATED (qemu cortex-a76) —
    not Raspberry Pi figures"`` when the CPU is emulated (timings are then not the named CPU's);
    ``load_average`` at the start and ``load_average_end`` at the end (the machine may be shared)."""

    cpu_model: str
    architecture: str
    cores_logical: int | None
    cores_physical: int | None
    cores_usable: int
    memory_total_bytes: int
    isa: IsaFacts
    os: str
    kernel: str
    python: str
    packages: dict[str, str | None]
    emulated: str | None
    load_average: list[float] | None
    load_average_end: list[float] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class OpenVinoFacts:
    """OpenVINO's view of the CPU: its version, the CPU's name, its optimization capabilities (``BF16``,
    ``FP16``, ...) and the type it computes float layers in by default (``f32``, ``bf16``, ``f16``);
    ``error``: a property this OpenVINO could not report."""

    version: str | None = None
    cpu: str | None = None
    optimization_capabilities: list[str] = field(default_factory=list)
    default_inference_precision: str | None = None
    error: str | None = field(default=None, metadata=OMIT_NONE)


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what thread counts should be compared with."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def machine_facts(emulated: str | None = None) -> MachineFacts:
    """This machine's facts; ``emulated``: the label of an emulated CPU, None on real hardware."""
    import psutil

    blocks = read_cpuinfo()
    return MachineFacts(
        cpu_model=cpu_model(blocks),
        architecture=platform.machine(),
        cores_logical=os.cpu_count(),
        cores_physical=psutil.cpu_count(logical=False),
        cores_usable=usable_cores(),
        memory_total_bytes=psutil.virtual_memory().total,
        isa=IsaFacts(**isa_flags(blocks)),
        os=_os_name(),
        kernel=platform.release(),
        python=platform.python_version(),
        packages=package_versions(PACKAGES),
        emulated=emulated or None,
        load_average=load_average(),
    )


def openvino_facts() -> OpenVinoFacts:
    """OpenVINO's view of this CPU (see :class:`OpenVinoFacts`).

    Uses the runtime's one shared ``Core`` (a second Core per process can crash it, see
    ``runtime.backends.openvino_core``).
    """
    from interformer_edge.runtime.backends import openvino_core, openvino_device_precision

    core = openvino_core()
    found: dict[str, Any] = {}
    try:
        import openvino

        found["version"] = openvino.__version__
        found["cpu"] = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        found["optimization_capabilities"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        found["default_inference_precision"] = openvino_device_precision()
    except Exception as err:  # a property this OpenVINO version lacks must not stop the benchmark
        found["error"] = f"{type(err).__name__}: {err}"
    return OpenVinoFacts(**found)
